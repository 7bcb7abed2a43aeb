"""Indexing on Ray Data (``engine="ray"``): the plan on the driver, decoding and embedding on an actor pool.

The driver tunes a new index once (:class:`~poolvec.indexer.ImageIndex`) and plans with the single-process rules
(:func:`~poolvec.indexer.ops.sync.plan`: unchanged, reused by sha256, to embed). Ray Data then reads the files to
embed — on the driver's node unless every node sees them (``shared_files``), so that actors on other machines need
no shared folder — and a pool of actors, each holding the extractor rebuilt from the stored recipe
(:meth:`Extractor.from_recipe`), decodes and embeds them on CPU or GPU. A Milvus server receives the rows straight
from the workers (:class:`~.sink.MilvusDatasink`); a Milvus Lite database from the driver, the one process that may
open it. Rows are keyed by path id: a task that Ray retries after a worker died, or a run
started again, never duplicates one.

Ray is imported here only inside functions, and this module only when the Ray engine is asked for.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from typing import TYPE_CHECKING, Any

from poolvec.extractor.errors import ExtractorError, ImageError
from poolvec.indexer.errors import BackendError, IndexerError
from poolvec.indexer.ops import sync
from poolvec.indexer.ops.ray.options import RayOptions
from poolvec.indexer.ops.ray.tasks import Embedder, read_files, results
from poolvec.indexer.ops.sync import IndexReport, Progress

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from poolvec.extractor.embedded import Embedded
    from poolvec.extractor.recipe import Recipe, Runtime
    from poolvec.indexer.milvus.store import MilvusStore
    from poolvec.indexer.milvus.vector_index import VectorIndex

#: Files per block of the planned dataset: the unit Ray retries when a reading task dies.
FILES_PER_BLOCK = 256
#: Ray's label of every node with its id (placing the reading tasks on the driver's node).
NODE_ID_LABEL = "ray.io/node-id"
#: Seconds between progress updates while workers write to a Milvus server.
PROGRESS_EVERY_S = 0.5


def index_files(
    store: MilvusStore,
    recipe: Recipe,
    runtime: Runtime,
    files: list[str],
    roots: list[str],
    opts: RayOptions,
    *,
    vector_index: VectorIndex,
    progress: Progress | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    known: dict[str, Embedded] | None = None,
) -> IndexReport:
    """Index ``files`` (``roots[i]``: the folder of ``files[i]``) into ``store``'s collection, which exists and holds
    ``recipe``; the actors rebuild its extractor with ``runtime`` (one decode thread each).

    As :func:`poolvec.indexer.ops.sync.sync`, with the forward passes on Ray: ``known`` (the files embedded while
    tuning) and reused vectors are stored from the driver, the rest by the workers (server) or the driver (Lite).
    """
    known = known or {}
    report = IndexReport()
    writer = sync.Writer(store, report, transform)
    total, done = len(files), 0

    def tick(path: str, n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total, path)

    todo: list[dict[str, Any]] = []
    try:
        for path, info in sync.plan(store, files, roots, report, writer, tick, runtime.max_bytes):
            if path in known:
                writer.embedded(known[path], info)
                tick(path)
            else:  # names travel as bytes: Arrow strings must be UTF-8, file names need not be
                todo.append({**info, "path": os.fsencode(path), "root": os.fsencode(info["root"])})
        writer.flush()
        if todo:
            ray = _connect(opts)
            shipped = ray.put(recipe)  # held until the end: restarted actors rebuild from it

            def dataset(progress: Any = None) -> Any:
                return _dataset(ray, todo, shipped, runtime.replace(workers=1), opts, progress)

            try:
                if store.is_lite:
                    for batch in dataset().iter_batches(batch_size=None, batch_format="numpy"):
                        for item, info in results(batch):
                            writer.embedded(item, info)
                            tick(item.source)
                else:
                    advance = lambda n: tick("", n) if n else None  # noqa: E731
                    _write_to_server(ray, dataset, store, vector_index, report, advance)
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

    # Ray 2.5x warns on every local start that it turned token authentication on (its default): not the user's news
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    if not ray.is_initialized():
        try:
            ray.init(address=opts.address, include_dashboard=False, configure_logging=False, **opts.init)
        except Exception as e:  # Ray did not start or cannot be reached: the backend's kind (exit 3), one line
            where = f"the Ray cluster at {opts.address}" if opts.address else "a local Ray"
            reason = " ".join(str(e).split())[:300] or type(e).__name__
            raise BackendError(
                f"could not start {where}: {reason} — on a busy machine try again, or index without --engine ray"
            ) from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled": ours show
    context.print_on_execution_start = False
    return ray


def _dataset(
    ray: Any, todo: list[dict[str, Any]], recipe: Any, runtime: Runtime, opts: RayOptions, progress: Any = None
) -> Any:
    """The planned files → (read) → bytes → (actor pool: decode + embed) → vectors and their metadata.

    ``progress``: a :class:`~.sink.ProgressCounter` actor the embedders tell how many files they did."""
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
    return ds.map_batches(
        Embedder,
        batch_size=batch,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=opts.actors),
        num_cpus=opts.cpus_per_actor,
        num_gpus=opts.gpus_per_actor or None,
        fn_constructor_kwargs={
            "recipe": recipe,
            "runtime": runtime,  # one decode thread ahead of the forward pass
            "threads": opts.torch_threads,
            "progress": progress,
        },
    )


def _write_to_server(
    ray: Any,
    dataset: Callable[[Any], Any],
    store: MilvusStore,
    vector_index: VectorIndex,
    report: IndexReport,
    advance: Callable[[int], None],
) -> None:
    """Run ``dataset(progress)`` into the Milvus server from the workers; their counts and failures join ``report``.

    The bar follows the embedders (a counter actor they tell), not the write tasks, which take whole upserts
    (:attr:`MilvusDatasink.min_rows_per_write`); at the end it is set to what was written."""
    from poolvec.indexer.ops.ray.sink import MilvusDatasink, ProgressCounter

    counter = ray.remote(num_cpus=0)(ProgressCounter).remote()
    ds = dataset(counter)
    sink = MilvusDatasink(store.uri, store.collection, store.token, store.timeout, vector_index)
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
