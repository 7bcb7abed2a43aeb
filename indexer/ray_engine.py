"""Indexing on Ray Data (``engine="ray"``): the plan on the driver, decoding and embedding on an actor pool.

The driver tunes a new index once (:meth:`ImageIndex._ensure_collection`) and plans with the single-process rules
(:func:`indexer.sync.plan`: unchanged, reused by sha256, to embed). Ray Data then reads the files to embed —
on the driver's node unless every node sees them (``shared_files``), so that actors on other machines need no
shared folder — and a pool of actors, each holding the extractor rebuilt from the stored config
(:meth:`Extractor.from_config`), decodes and embeds them on CPU or GPU. A Milvus server receives the rows straight
from the workers (:class:`indexer.ray_sink.MilvusDatasink`); a Milvus Lite database from the driver, the one
process that may open it. Rows are keyed by path id: a task that Ray retries after a worker died, or a run
started again, never duplicates one.

Ray is imported here only inside functions, and this module only when the Ray engine is asked for.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from extractor.embedded import Embedded
from extractor.errors import ExtractorError, ImageError
from extractor.images import DEFAULT_MAX_BYTES, EncodedImage

from . import sync
from .errors import IndexerError
from .sync import IndexReport, Progress

if TYPE_CHECKING:
    from collections.abc import Callable

    from .index import ImageIndex

INSTALL_HINT = 'the Ray engine needs Ray: pip install "poolvec[ray]" (or pip install "ray[data]>=2.51")'
#: Files per block of the planned dataset: the unit Ray retries when a reading task dies.
FILES_PER_BLOCK = 256
#: Ray's label of every node with its id (placing the reading tasks on the driver's node).
NODE_ID_LABEL = "ray.io/node-id"
#: Seconds between progress updates while workers write to a Milvus server.
PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True)
class RayOptions:
    """How ``engine="ray"`` runs.

    Args:
        address: the Ray cluster (``"auto"``, ``"host:6379"``, ``"ray://host:10001"``); ``None``: the one
            ``RAY_ADDRESS`` or a local ``ray start`` names, else a Ray started in this process.
        actors: embedding actors (each loads the model once).
        gpus_per_actor: GPUs per actor (0: CPU; fractions share a GPU).
        cpus_per_actor: CPUs Ray reserves per actor; also its torch threads, unless ``threads`` says otherwise.
        threads: torch threads per actor (default: ``cpus_per_actor``, at least 1).
        batch_size: files per actor call.
        shared_files: every node sees the files at the same paths (a network file system): read them anywhere,
            instead of on the driver's node.
        init: more ``ray.init`` arguments when this process starts Ray (e.g. ``{"num_cpus": 2}``).
    """

    address: str | None = None
    actors: int = 2
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    threads: int | None = None
    batch_size: int = 32
    shared_files: bool = False
    init: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.actors < 1 or self.batch_size < 1 or self.cpus_per_actor <= 0 or self.gpus_per_actor < 0:
            raise IndexerError(
                "Ray engine: actors and batch_size must be ≥ 1, cpus_per_actor > 0 and gpus_per_actor ≥ 0, got "
                f"actors={self.actors}, batch_size={self.batch_size}, cpus_per_actor={self.cpus_per_actor}, "
                f"gpus_per_actor={self.gpus_per_actor}"
            )
        if self.threads is not None and self.threads < 1:
            raise IndexerError(f"Ray engine: threads must be ≥ 1, got {self.threads}")

    @property
    def torch_threads(self) -> int:
        """Torch threads in each actor."""
        return self.threads or max(1, int(self.cpus_per_actor))


def options(engine: str | RayOptions) -> RayOptions:
    """The options for ``engine`` (``"ray"``: the defaults); refuses other names, and says how to install Ray."""
    if isinstance(engine, str) and engine != "ray":
        raise IndexerError(f"engine must be 'local' or 'ray', got {engine!r}")
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise IndexerError(INSTALL_HINT) from None
    return engine if isinstance(engine, RayOptions) else RayOptions()


def index_files(
    index: ImageIndex,
    files: list[str],
    roots: list[str],
    opts: RayOptions,
    progress: Progress | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    known: dict[str, Embedded] | None = None,
) -> IndexReport:
    """Index ``files`` (``roots[i]``: the folder of ``files[i]``) into ``index``, which exists and is tuned.

    As :func:`indexer.sync.sync`, with the forward passes on Ray: ``known`` (the files embedded while tuning)
    and reused vectors are stored from the driver, the rest by the workers (server) or the driver (Lite).
    """
    known = known or {}
    store = index.store
    report = IndexReport()
    writer = sync.Writer(store, report, transform)
    total, done = len(files), 0

    def tick(path: str, n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total, path)

    # The driver's extractor, when it has one (tuned, or given), sets the limits; it is not built just for them.
    ex = index._extractor
    limits = {"max_bytes": ex.max_bytes, "max_pixels": ex.max_pixels} if ex is not None else {}
    todo: list[dict[str, Any]] = []
    try:
        for path, info in sync.plan(
            store, files, roots, report, writer, tick, limits.get("max_bytes", DEFAULT_MAX_BYTES)
        ):
            if path in known:
                writer.embedded(known[path], info)
                tick(path)
            else:  # names travel as bytes: Arrow strings must be UTF-8, file names need not be
                todo.append({**info, "path": os.fsencode(path), "root": os.fsencode(info["root"])})
        writer.flush()
        if todo:
            ray = _connect(opts)
            assert index.config is not None
            config = ray.put(index.config)  # held until the end: restarted actors rebuild from it
            runtime = {**index._runtime, **limits}

            def dataset(progress: Any = None) -> Any:
                return _dataset(ray, todo, config, runtime, opts, progress)

            try:
                if store.is_lite:
                    for batch in dataset().iter_batches(batch_size=None, batch_format="numpy"):
                        for item, info in results(batch):
                            writer.embedded(item, info)
                            tick(item.source)
                else:
                    _write_to_server(ray, dataset, index, report, lambda n: tick("", n) if n else None)
            except Exception as e:
                plain = _plain(e)
                if plain is None:
                    raise
                raise plain from None
    finally:
        writer.flush()  # keep what was embedded, also on Ctrl-C
    if report.added or report.updated:
        store.flush()
    return report


def _connect(opts: RayOptions) -> Any:
    """Ray, connected to the cluster the options name (or a local Ray), with its progress bars off: ours count."""
    import ray
    import ray.data

    if not ray.is_initialized():
        ray.init(address=opts.address, include_dashboard=False, configure_logging=False, **opts.init)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": ours show
    context.print_on_execution_start = False
    return ray


def _dataset(
    ray: Any, todo: list[dict[str, Any]], config: Any, runtime: dict[str, Any], opts: RayOptions, progress: Any = None
) -> Any:
    """The planned files → (read) → bytes → (actor pool: decode + embed) → vectors and their metadata.

    ``progress``: a :class:`indexer.ray_sink.ProgressCounter` actor the embedders tell how many files they did."""
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    reading: dict[str, Any] = {}
    if not opts.shared_files:
        reading["label_selector"] = {NODE_ID_LABEL: ray.get_runtime_context().get_node_id()}
    # Small jobs are cut finer, so that every actor gets a share.
    batch = max(1, min(opts.batch_size, math.ceil(len(todo) / opts.actors)))
    blocks = max(math.ceil(len(todo) / FILES_PER_BLOCK), math.ceil(len(todo) / batch))
    ds = ray.data.from_items(todo, override_num_blocks=blocks)
    # Reading is I/O: no CPU reserved, so that it never waits for the actors' CPUs; at most 2 reads per actor.
    ds = ds.map_batches(
        read_files,
        batch_size=batch,
        batch_format="numpy",
        compute=TaskPoolStrategy(size=min(blocks, 2 * opts.actors)),
        num_cpus=0,
        **reading,
    )
    actor_runtime = {**runtime, "workers": 1}  # one decode thread ahead of the forward pass
    return ds.map_batches(
        Embedder,
        batch_size=batch,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=opts.actors),
        num_cpus=opts.cpus_per_actor,
        num_gpus=opts.gpus_per_actor or None,
        fn_constructor_kwargs={
            "config": config,
            "runtime": actor_runtime,
            "threads": opts.torch_threads,
            "progress": progress,
        },
    )


def read_files(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data step: each planned file's bytes (``data``), or why it could not be read (``error``)."""
    datas, errors = [], []
    for path in batch["path"]:
        try:
            with open(bytes(path), "rb") as f:
                datas.append(f.read())
            errors.append("")
        except OSError as e:
            datas.append(b"")
            errors.append(f"cannot read: {e.strerror or e}")
    return {**batch, "data": _objects(datas), "error": _objects(errors)}


class Embedder:
    """Ray Data actor: the index's extractor, rebuilt once from the stored config; file bytes in, vectors out."""

    def __init__(self, config: dict[str, Any], runtime: dict[str, Any], threads: int, progress: Any = None) -> None:
        import ray
        import torch

        from extractor import Extractor

        torch.set_num_threads(threads)
        if isinstance(config, ray.ObjectRef):
            config = ray.get(config)
        self.extractor = Extractor.from_config(config, **runtime)
        self.progress = progress

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["path"])
        vectors = np.zeros((n, self.extractor.dim), np.float32)
        widths, heights = np.zeros(n, np.int64), np.zeros(n, np.int64)
        errors = [str(e) for e in batch["error"]]
        todo = [i for i in range(n) if not errors[i]]
        images = [EncodedImage(os.fsdecode(bytes(batch["path"][i])), bytes(batch["data"][i])) for i in todo]
        for i, item in zip(todo, self.extractor.embed_iter(images), strict=True):
            if item.error is not None:
                errors[i] = item.error
            else:
                vectors[i], widths[i], heights[i] = item.vector, item.width, item.height
        out = {k: v for k, v in batch.items() if k != "data"}
        out.update(vector=vectors, width=widths, height=heights, error=_objects(errors))
        if self.progress is not None:
            self.progress.add.remote(n)
        return out


def results(batch: dict[str, np.ndarray]) -> Iterator[tuple[Embedded, dict[str, Any]]]:
    """The embedded files of an output batch: (what the extractor made of it, its planned info)."""
    for i, path in enumerate(batch["path"]):
        error = str(batch["error"][i]) or None
        item = Embedded(
            os.fsdecode(bytes(path)),
            None if error else np.asarray(batch["vector"][i], np.float32),
            error,
            int(batch["width"][i]),
            int(batch["height"][i]),
        )
        info = {
            "root": os.fsdecode(bytes(batch["root"][i])),
            "size": int(batch["size"][i]),
            "mtime_ns": int(batch["mtime_ns"][i]),
            "sha256": str(batch["sha256"][i]),
            "existed": bool(batch["existed"][i]),
        }
        yield item, info


def _write_to_server(
    ray: Any, dataset: Callable[[Any], Any], index: ImageIndex, report: IndexReport, advance: Callable[[int], None]
) -> None:
    """Run ``dataset(progress)`` into the Milvus server from the workers; their counts and failures join ``report``.

    The bar follows the embedders (a counter actor they tell), not the write tasks, which take whole upserts
    (:attr:`MilvusDatasink.min_rows_per_write`); at the end it is set to what was written."""
    from .ray_sink import MilvusDatasink, ProgressCounter

    counter = ray.remote(num_cpus=0)(ProgressCounter).remote()
    ds = dataset(counter)
    store = index.store
    sink = MilvusDatasink(store.uri, store.collection, store.token, store.timeout, index.vector_index)
    stop = threading.Event()
    seen = 0

    def watch() -> None:
        nonlocal seen
        while not stop.wait(PROGRESS_EVERY_S):
            now = ray.get(counter.count.remote())
            advance(now - seen)
            seen = now

    watcher = threading.Thread(target=watch, name="poolvec-ray-progress", daemon=True)
    watcher.start()
    try:
        # Writing waits on Milvus, not on a CPU: none reserved, so that it never waits for the actors' CPUs.
        ds.write_datasink(sink, ray_remote_args={"num_cpus": 0})
    finally:
        stop.set()
        watcher.join()
        ray.kill(counter)  # an actor outlives its handle while the sink still holds one
    written = sink.report
    report.merge(written)
    advance(written.added + written.updated + len(written.failed) - seen)


def _plain(error: BaseException) -> Exception | None:
    """The library error a Ray task raised, as its one line (Ray wraps it in a traceback and appends advice)."""
    cause = getattr(error, "cause", None)
    if not isinstance(cause, (IndexerError, ExtractorError)):
        return None
    kind = ExtractorError if isinstance(cause, ImageError) else type(cause)
    lines = str(cause).splitlines()
    return kind(lines[0] if lines else type(cause).__name__)


def _objects(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
