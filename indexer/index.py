"""``ImageIndex``: a folder of images ↔ a Milvus collection, searchable by image.

One object, one URI (as pymilvus's ``MilvusClient``): a path is Milvus Lite, ``http://host:19530`` a server.
The collection remembers the embedding config that produced its vectors; opening it rebuilds the same
:class:`~extractor.Extractor`, and a different config is refused with the fields that differ.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from PIL import Image

from extractor import IMAGE_EXTENSIONS, Embedded, Extractor, ExtractorError, ImageInput, Tuning, iter_image_files
from extractor.priors import lw_index
from extractor.tuning import TuneProgress
from pooling import from_dict as pooling_from_dict

from . import dba, duplicates, filters, pending, retune, sync
from .config import FORMAT_VERSION, diff, fingerprint, same_recipe, with_provenance, without_states
from .duplicates import DuplicateGroup
from .errors import BackendError, ConfigMismatchError, IndexerError
from .lite import DEFAULT_COLLECTION, DEFAULT_URI
from .store import META_FIELDS, MilvusStore, VectorIndex
from .sync import IndexReport, Progress

if TYPE_CHECKING:
    from .ray_engine import RayOptions

#: How :meth:`ImageIndex.add_folder` embeds: in this process, or on Ray (``"ray"`` or its options).
Engine = Literal["local", "ray"] | "RayOptions"


@dataclass(frozen=True)
class Hit:
    """One search result: the image path, its similarity (inner product of unit vectors = cosine), id, metadata."""

    path: str
    score: float
    id: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


class ImageIndex:
    """A searchable index of images in one Milvus collection.

    Args:
        uri: Milvus Lite database path (default ``./poolvec.db``) or ``http(s)://host:port`` of a server.
        collection: collection name; one index per collection.
        extractor: the embedder for a new index, or to check against an existing one (a different config is
            refused). ``None``: an existing index rebuilds its own; a new one uses ``Extractor()``.
        token: Milvus server token (``user:password`` or an API key).
        vector_index: the Milvus vector index for a new collection (HNSW by default).
        batch_size, workers, device, optimize: runtime settings for the rebuilt extractor (they do not change
            the vectors beyond float rounding).
        timeout: seconds to wait for a Milvus server.
        fit_limit: images sampled (evenly) from the first folder to fit pooling that learns from data (PCA…).
        tuning: how a new index whose pooling has a learned whitening (``lw``, the default) fits it on its own
            photos before indexing them (:class:`extractor.Tuning`); ``False`` keeps the extractor's fit as it is
            (the packaged one, for the default backbone). Re-fit later with :meth:`tune`.
    """

    def __init__(
        self,
        uri: str | os.PathLike[str] = DEFAULT_URI,
        collection: str = DEFAULT_COLLECTION,
        *,
        extractor: Extractor | None = None,
        token: str | None = None,
        vector_index: VectorIndex | None = None,
        batch_size: int | None = None,
        workers: int = 2,
        device: str = "auto",
        optimize: bool | str = "auto",
        timeout: float = 10.0,
        fit_limit: int = 2000,
        tuning: Tuning | bool = True,
    ) -> None:
        self.uri = os.fspath(uri)
        self.collection = collection
        self.store = MilvusStore(self.uri, collection, token=token, timeout=timeout)
        self._runtime = {"batch_size": batch_size, "workers": workers, "device": device, "optimize": optimize}
        self.fit_limit = fit_limit
        self.tuning: Tuning | None = Tuning() if tuning is True else (tuning or None)
        self._extractor = extractor
        self._known: dict[str, Embedded] = {}  # sampled images embedded while tuning, reused by the first sync
        self._config: dict[str, Any] | None = None
        self._fingerprint: str | None = None
        self._pending: dict[str, Any] | None = None  # an interrupted tune, dba or reroot (indexer.pending)
        self.vector_index = vector_index or VectorIndex()
        if self.store.exists():
            stored, stored_fp, self.vector_index = self.store.read_config()
            if int(stored.get("format", 1)) > FORMAT_VERSION:
                raise IndexerError(
                    f"collection {collection!r} was written by a newer poolvec (format {stored['format']}); upgrade"
                )
            self._config, self._fingerprint = stored, stored_fp or fingerprint(stored)
            self._pending = pending.get(self.store)
            if extractor is not None and self._pending is None:
                self._extractor = self._check(extractor)
            self.store.load()

    # -- embedder ------------------------------------------------------------------------------------------
    @property
    def extractor(self) -> Extractor:
        """The embedder of this index (rebuilt from the stored config on first use)."""
        if self._extractor is None:
            try:
                self._extractor = (
                    Extractor.from_config(self._config, **self._runtime) if self._config else Extractor(**self._runtime)
                )
            except ExtractorError as e:
                raise IndexerError(f"cannot rebuild the embedder of {self.collection!r}: {e}") from None
        return self._extractor

    @extractor.setter
    def extractor(self, extractor: Extractor) -> None:
        """Embed with ``extractor``: a new index is built with it; an existing one takes it if it makes the stored
        vectors (the same recipe: with the index's own fit), and refuses any other config, naming what differs."""
        self._extractor = extractor if self._config is None or self._pending is not None else self._check(extractor)

    @property
    def config(self) -> dict[str, Any] | None:
        """The stored embedding config (None until the first image is added)."""
        return self._config

    def _check(self, extractor: Extractor) -> Extractor:
        """The extractor to use with this index: ``extractor`` itself if it makes the stored vectors; a twin with the
        stored fitted pooling if it is the same recipe and the index tuned itself; else a clear refusal."""
        assert self._config is not None
        wanted = extractor.config()
        if fingerprint(wanted) == self._fingerprint:
            return extractor
        if self._config.get("tuning") and same_recipe(self._config, wanted):
            return extractor.with_pipeline(pooling_from_dict(self._config["pooling"]))
        changes = diff(without_states(self._config), without_states(wanted)) or ["fitted parameters differ"]
        raise ConfigMismatchError(
            f"collection {self.collection!r} was built with another embedding config — "
            + "; ".join(changes[:6])
            + ". Use the same settings, or another --collection / --db."
        )

    def _ensure_collection(self, sample: list[str], on_tune: TuneProgress | None = None) -> bool:
        """Create the collection on first write (False, and nothing created, while there is nothing to store);
        pooling that learns from data is fitted on ``sample`` first (``lw``: by :meth:`_tune_extractor`)."""
        if self._config is not None:
            return True
        if not sample:
            return False
        ex = self.extractor
        record = None
        if lw_index(ex.pipeline) is not None and (self.tuning is not None or ex.pipeline.needs_fit):
            ex = self._extractor = ex.with_pipeline(pooling_from_dict(ex.pipeline.to_dict()))  # the caller's stays
            record = self._tune_extractor(ex, sample, on_tune)
        elif ex.pipeline.needs_fit:
            ex.fit(sample[:: max(1, len(sample) // self.fit_limit)], limit=self.fit_limit)
        config = with_provenance(ex.config())
        if record is not None:
            config["tuning"] = record
        try:
            self.store.create(ex.dim, config, fingerprint(config), self.vector_index)
        except BackendError:
            if not self.store.exists():  # not a race with another shard creating the same collection
                raise
            self._config, self._fingerprint, self.vector_index = self.store.read_config()
            self._extractor = self._check(ex)
            return True
        self._config, self._fingerprint = config, fingerprint(config)
        return True

    def _tune_extractor(self, ex: Extractor, files: list[str], on_tune: TuneProgress | None) -> dict[str, Any] | None:
        """Fit ``ex``'s learned whitening on an even sample of ``files`` and seeded edits of them; keep the sampled
        images' vectors for indexing. Returns what was done, for the stored config; None when no image could be
        used and the extractor keeps its packaged fit (the files' failures are then reported by the sync)."""
        tuning = self.tuning or Tuning()
        try:
            ex.fit(files, tuning=tuning, progress=on_tune)
        except ExtractorError as e:
            if ex.pipeline.needs_fit:
                raise IndexerError(f"cannot tune the new index: {e}") from None
            return None
        fit = ex.last_fit
        assert fit is not None
        if fit.originals:
            names = list(fit.originals)
            done = ex.pipeline.apply_post(np.stack([fit.originals[k].vector for k in names])).numpy()
            self._known = {
                k: Embedded(k, v, None, fit.originals[k].width, fit.originals[k].height)
                for k, v in zip(names, done, strict=True)
            }
        return {
            **tuning.to_dict(),
            "sampled": fit.images,
            "per_image": fit.per_image,
            "pairs": len(fit.pairs),
            "failed": len(fit.failed),
            "prior": ex.prior.name if ex.prior is not None and tuning.prior_weight > 0 else None,
            "seconds": round(fit.seconds, 1),
        }

    # -- writing -------------------------------------------------------------------------------------------
    def add_folder(
        self,
        root: str | os.PathLike[str],
        *,
        recursive: bool = True,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        follow_symlinks: bool = False,
        prune: bool = False,
        shard: tuple[int, int] | None = None,
        progress: Progress | None = None,
        on_tune: TuneProgress | None = None,
        engine: Engine = "local",
    ) -> IndexReport:
        """Sync the images under ``root`` into the index.

        New and changed files (by path, size, mtime) are embedded, unchanged ones skipped, files whose content
        is already indexed reuse that vector; with ``prune`` the rows of files that are gone are deleted.
        ``shard=(i, n)`` takes only this process's share of the files (stable by path), so n processes or
        machines can split one job into the same Milvus server. A new index tunes itself on these files first
        (see ``tuning``; ``on_tune(done, total)`` reports its progress). ``engine="ray"`` (or a
        :class:`indexer.ray_engine.RayOptions`) embeds on a Ray cluster's actors: same rules, same vectors.
        """
        _ray_options(engine)
        top = Path(root).expanduser().absolute()
        if not top.exists():
            raise IndexerError(f"{root}: no such file or directory")
        unread: list[tuple[str, str]] = []
        scan = iter_image_files(
            top,
            recursive=recursive,
            extensions=extensions,
            follow_symlinks=follow_symlinks,
            on_skip=lambda path, why: unread.append((path, why)),
        )
        files = [str(p) for p in scan]
        base = str(top if top.is_dir() else top.parent)
        self._ensure_collection(files, on_tune)
        if shard is not None:
            files = _shard(files, *shard)
        report = self._sync(files, [base] * len(files), progress, on_tune, engine)
        report.failed[:0] = unread
        if prune and top.is_dir():
            report.removed = sync.prune(self.store, base)
        return report

    def add(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        progress: Progress | None = None,
        on_tune: TuneProgress | None = None,
        engine: Engine = "local",
    ) -> IndexReport:
        """Index image files (each file's folder is its root); unchanged files are skipped. ``engine`` as in
        :meth:`add_folder`."""
        files = [os.path.abspath(os.fspath(p)) for p in paths]
        return self._sync(files, [os.path.dirname(p) for p in files], progress, on_tune, engine)

    def _refuse_if_pending(self, unless: str | None = None) -> None:
        """Refuse to use an index that an interrupted rewrite left half done (but the command that finishes it)."""
        if self._pending is not None and self._pending["op"] != unless:
            raise pending.refuse(self._pending, f"{self.uri} (collection {self.collection!r})")

    def _sync(
        self,
        files: list[str],
        roots: list[str],
        progress: Progress | None,
        on_tune: TuneProgress | None = None,
        engine: Engine = "local",
    ) -> IndexReport:
        self._refuse_if_pending()
        ray = _ray_options(engine)  # before tuning: a missing Ray is said at once
        if not self._ensure_collection(files, on_tune):
            return IndexReport()
        transform = dba.transform(self.store, self.vector_index)
        known, self._known = self._known, {}
        if ray is not None:
            from . import ray_engine

            return ray_engine.index_files(self, files, roots, ray, progress, transform, known)
        return sync.sync(self.store, self.extractor, files, roots, progress, transform, known)

    def tune(
        self,
        tuning: Tuning | None = None,
        *,
        on_tune: TuneProgress | None = None,
        progress: retune.RewriteProgress | None = None,
    ) -> retune.TuneReport:
        """Re-fit the learned whitening on the collection as it is now, then re-embed every image with it.

        Costs a fit plus one more pass over every file (raw vectors are not stored). Resumable: interrupted, it
        leaves the index refusing searches until ``tune`` is run again, which finishes the same fit. Rows whose
        files are gone or changed are removed (and listed). DBA, if applied, is cleared (apply it again).
        """
        if self._config is None:
            raise IndexerError("the index is empty: add images before tuning it")
        self._refuse_if_pending(unless="tune")
        state = self._pending
        resumed = state is not None
        if state is None:
            if lw_index(pooling_from_dict(self._config["pooling"])) is None:
                raise IndexerError(
                    f"the pooling of {self.collection!r} ({self._config['pooling']['spec']}) has no learned whitening "
                    "(lw) to tune; build a new index with the default pooling, or add '| lw | l2' to yours"
                )
            ex = self._untuned_extractor()
            files = sorted(r["path"] for r in sync.iter_rows(self.store, ("path",)) if os.path.isfile(r["path"]))
            if not files:
                raise IndexerError("none of the indexed files exists any more: nothing to tune on")
            self.tuning = tuning or self.tuning or Tuning()
            record = self._tune_extractor(ex, files, on_tune)
            config = {**with_provenance(ex.config()), "tuning": record}
            state = retune.start(self.store, config, fingerprint(config))
            self._pending = state
        else:
            config = self.store.unpack(state["config"])
            ex = Extractor.from_config(config, **self._runtime)
            record = config.get("tuning")
        self._known = {}
        report = retune.rewrite(self.store, ex, state, progress)
        report.resumed = resumed
        report.dba_cleared = retune.finish(self.store, state, dba.PROP_DBA)
        report.tuning = record
        self._config, self._fingerprint, self._extractor, self._pending = config, state["fingerprint"], ex, None
        return report

    def _untuned_extractor(self) -> Extractor:
        """This index's extractor with its fitted parameters dropped (the packaged prior, where one matches)."""
        assert self._config is not None
        return Extractor.from_config(without_states(self._config), **self._runtime)

    def apply_dba(self, n: int = 5, alpha: float = 3.0, progress: Progress | None = None) -> int:
        """Database-side augmentation, once: every vector becomes the α-weighted mean of itself and its top-n
        neighbours; later additions are augmented the same way. Returns the rows rewritten."""
        if self._config is None:
            raise IndexerError("the index is empty: add images before applying DBA")
        self._refuse_if_pending(unless="dba")
        rows = dba.apply(self.store, self.vector_index, n, alpha, progress=progress)
        self._pending = None
        return rows

    def remove(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Delete the rows of these files (whether or not the files still exist); returns how many were indexed."""
        if self._config is None:
            return 0
        self._refuse_if_pending()
        ids = [sync.path_id(os.path.abspath(os.fspath(p))) for p in paths]
        found = list(self.store.get(ids, fields=("path",)))
        self.store.delete(found)
        return len(found)

    def reroot(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> int:
        """Point every entry under folder ``old`` to the same relative path under ``new`` (photos moved)."""
        if self._config is None:
            return 0
        self._refuse_if_pending(unless="reroot")
        moved = sync.reroot(self.store, os.path.abspath(os.fspath(old)), os.path.abspath(os.fspath(new)))
        self._pending = None
        return moved

    # -- reading -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.store.count() if self._config is not None else 0

    def search(self, query: ImageInput | np.ndarray, k: int = 10, **options: Any) -> list[Hit]:
        """The ``k`` indexed images most similar to ``query`` (a path, PIL image, image array/tensor, or vector).

        Options as in :meth:`search_many`.
        """
        return self.search_many([query], k=k, **options)[0]

    def search_many(
        self,
        queries: Iterable[ImageInput | np.ndarray],
        k: int = 10,
        *,
        under: str | os.PathLike[str] | None = None,
        where: str | None = None,
        min_score: float | None = None,
        size: filters.Range | None = None,
        mtime: filters.Range | None = None,
        width: filters.Range | None = None,
        height: filters.Range | None = None,
        qe: int = 0,
        qe_alpha: float = 3.0,
    ) -> list[list[Hit]]:
        """Batched search: one list of hits (best first) per query, in order.

        Filters: ``under`` a folder; ``size`` (bytes), ``mtime`` (POSIX seconds), ``width``/``height`` (pixels) as
        ``(low, high)`` with ``None`` for an open end; ``where`` a raw Milvus expression; ``min_score`` drops
        weaker hits. ``qe=n`` re-queries with α-query-expansion over the top ``n`` hits (Radenović et al. 2018):
        q' = q + Σ sᵢ^α·vᵢ, normalised.
        """
        if k < 1:
            raise IndexerError(f"k must be ≥ 1, got {k}")
        if qe < 0:
            raise IndexerError(f"qe (query expansion over the top n hits) must be ≥ 0, got {qe}")
        self._refuse_if_pending()
        if self._config is None:
            raise IndexerError(f"the index {self.uri} (collection {self.collection!r}) is empty: add images first")
        expr = filters.build(under_folder=under, size=size, mtime=mtime, width=width, height=height, where=where)
        vectors = self._query_vectors(list(queries))
        try:
            if qe > 0:
                vectors = dba.augment(self.store, self.vector_index, vectors, qe, qe_alpha, False, filter=expr)
            results = self.store.search(vectors.tolist(), k, self.vector_index, filter=expr)
        except BackendError as e:
            if where is None:
                raise
            self.store.count()  # the backend answers without the expression: it is the expression it refused
            raise IndexerError(f"--where: Milvus refused {where!r}: {e}") from None
        return [
            [
                Hit(
                    path=h["entity"]["path"],
                    score=float(h["distance"]),
                    id=int(h["id"]),
                    meta={f: h["entity"][f] for f in META_FIELDS if f != "path"},
                )
                for h in hits
                if min_score is None or float(h["distance"]) >= min_score
            ]
            for hits in results
        ]

    def find_duplicates(
        self,
        threshold: float | None = None,
        *,
        k: int = 10,
        under: str | os.PathLike[str] | None = None,
        normalize: bool = True,
    ) -> list[DuplicateGroup]:
        """Groups of copies: exact (same bytes) first, then near-duplicates with similarity ≥ ``threshold``.

        ``normalize`` (the default) compares normalised scores instead of cosines
        (:func:`indexer.duplicates.normalise_edges`: each image's similarity to its nearest others is taken off),
        which found 1.2–3× more true pairs at 95 % precision on the copy-detection sets. ``threshold``
        defaults to what measured best for the kind of score and this index's embedding (:meth:`default_threshold`).
        """
        if self._config is None:
            return []
        self._refuse_if_pending()
        if threshold is None:
            threshold = self.default_threshold(normalize)
        low = -1.0 if normalize else 0.0
        if not low < threshold <= 1:
            raise IndexerError(f"threshold must be in ({low:g}, 1], got {threshold}")
        expr = filters.build(under_folder=under)
        beta = duplicates.NORMALIZE_BETA if normalize else None
        return duplicates.find_duplicates(self.store, self.vector_index, threshold, k, expr, normalize=beta)

    def default_threshold(self, normalize: bool = False) -> float:
        """The ``dups`` threshold for this index: tuned (learned-whitening) embeddings score copies lower than plain
        GeM, so they get their own (docs/EVALUATION.md, "Duplicate pairs")."""
        whitened = self._config is not None and lw_index(pooling_from_dict(self._config["pooling"])) is not None
        if normalize:
            return duplicates.THRESHOLD_NORMALIZED
        return duplicates.THRESHOLD_WHITENED if whitened else duplicates.THRESHOLD_PLAIN

    def _query_vectors(self, queries: list[Any]) -> np.ndarray:
        dim = int(self._config["dim"])  # type: ignore[index]
        rows: list[np.ndarray | None] = [None] * len(queries)
        images: list[tuple[int, Any]] = []
        for i, q in enumerate(queries):
            if isinstance(q, (np.ndarray, torch.Tensor)) and q.ndim == 1:
                v = np.asarray(q.detach().cpu() if isinstance(q, torch.Tensor) else q, dtype=np.float32)
                if v.shape != (dim,):
                    raise IndexerError(f"query vector has {v.shape[0]} dimensions, the index has {dim}")
                if not np.isfinite(v).all() or not np.abs(v).max() > 0:
                    raise IndexerError("the query vector is all zeros or holds NaN/infinity: it matches nothing")
                rows[i] = v
            elif isinstance(q, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
                images.append((i, q))
            else:
                raise IndexerError(f"cannot search with a {type(q).__name__}: give a path, an image or a vector")
        if images:
            for (i, _), item in zip(images, self.extractor.embed_iter([q for _, q in images]), strict=True):
                if item.error is not None:
                    raise IndexerError(f"{item.source}: {item.error}")
                rows[i] = item.vector
        return np.stack(rows).astype(np.float32)  # type: ignore[arg-type]

    def info(self) -> dict[str, Any]:
        """What the index holds and how it was built."""
        from importlib import metadata

        backend = "Milvus Lite" if self.store.is_lite else "Milvus server"
        if self.store.is_lite:
            with contextlib.suppress(metadata.PackageNotFoundError):
                backend += f" {metadata.version('milvus-lite')}"
        return {
            "uri": self.uri,
            "backend": backend,
            "collection": self.collection,
            "count": len(self),
            "dim": self._config.get("dim") if self._config else None,
            "fingerprint": self._fingerprint,
            "vector_index": {
                "kind": self.vector_index.kind,
                "params": self.vector_index.params,
                "metric": self.vector_index.metric,
            },
            "config": self._config,
            "dba": dba.settings(self.store) if self._config else None,
        }

    def drop(self) -> bool:
        """Delete the collection and its stored config. A Milvus Lite database left with no collection is removed
        too (its folder held nothing else); returns whether it was."""
        self.store.drop()
        self._config = self._fingerprint = None
        return self.store.remove_if_empty()

    def close(self) -> None:
        """Release the client."""
        self.store.close()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ImageIndex({self.uri!r}, collection={self.collection!r})"


def _ray_options(engine: Engine) -> RayOptions | None:
    """None for the single-process engine; Ray's options (Ray itself checked for) for ``"ray"``."""
    if engine == "local":
        return None
    from . import ray_engine  # imports Ray only when it is asked for

    return ray_engine.options(engine)


def _shard(files: list[str], i: int, n: int) -> list[str]:
    """The files of shard ``i`` of ``n`` (by the stable path id, so every process agrees)."""
    if not (n >= 1 and 0 <= i < n):
        raise IndexerError(f"shard must be I/N with 0 ≤ I < N, got {i}/{n}")
    return [f for f in files if sync.path_id(f) % n == i]
