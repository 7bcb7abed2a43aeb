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
from typing import Any

import numpy as np
import torch
from PIL import Image

from extractor import IMAGE_EXTENSIONS, Extractor, ExtractorError, ImageInput, iter_image_files

from . import dba, duplicates, filters, sync
from .config import FORMAT_VERSION, diff, fingerprint, with_provenance
from .duplicates import DuplicateGroup
from .errors import BackendError, ConfigMismatchError, IndexerError
from .store import META_FIELDS, MilvusStore, VectorIndex
from .sync import IndexReport, Progress

DEFAULT_URI = "./poolvec.db"
DEFAULT_COLLECTION = "images"


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
    ) -> None:
        self.uri = os.fspath(uri)
        self.collection = collection
        self.store = MilvusStore(self.uri, collection, token=token, timeout=timeout)
        self._runtime = {"batch_size": batch_size, "workers": workers, "device": device, "optimize": optimize}
        self.fit_limit = fit_limit
        self._extractor = extractor
        self._config: dict[str, Any] | None = None
        self._fingerprint: str | None = None
        self.vector_index = vector_index or VectorIndex()
        if self.store.exists():
            stored, stored_fp, self.vector_index = self.store.read_config()
            if int(stored.get("format", 1)) > FORMAT_VERSION:
                raise IndexerError(
                    f"collection {collection!r} was written by a newer poolvec (format {stored['format']}); upgrade"
                )
            self._config, self._fingerprint = stored, stored_fp or fingerprint(stored)
            if extractor is not None:
                self._check(extractor)
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

    @property
    def config(self) -> dict[str, Any] | None:
        """The stored embedding config (None until the first image is added)."""
        return self._config

    def _check(self, extractor: Extractor) -> None:
        assert self._config is not None
        wanted = extractor.config()
        if fingerprint(wanted) != self._fingerprint:
            changes = diff(self._config, wanted) or ["(fingerprint differs)"]
            raise ConfigMismatchError(
                f"collection {self.collection!r} was built with another embedding config — "
                + "; ".join(changes[:6])
                + ". Use the same settings, or another --collection / --db."
            )

    def _ensure_collection(self, sample: list[str]) -> None:
        """Create the collection on first write; pooling that learns from data is fitted on ``sample`` first."""
        if self._config is not None:
            return
        ex = self.extractor
        if ex.pipeline.needs_fit:
            if not sample:
                raise IndexerError(f"pooling '{ex.pipeline}' learns from data: index a folder of images first")
            ex.fit(sample[:: max(1, len(sample) // self.fit_limit)], limit=self.fit_limit)
        config = with_provenance(ex.config())
        try:
            self.store.create(ex.dim, config, fingerprint(config), self.vector_index)
        except BackendError:
            if not self.store.exists():  # not a race with another shard creating the same collection
                raise
            self._config, self._fingerprint, self.vector_index = self.store.read_config()
            self._check(ex)
            return
        self._config, self._fingerprint = config, fingerprint(config)

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
    ) -> IndexReport:
        """Sync the images under ``root`` into the index.

        New and changed files (by path, size, mtime) are embedded, unchanged ones skipped, files whose content
        is already indexed reuse that vector; with ``prune`` the rows of files that are gone are deleted.
        ``shard=(i, n)`` takes only this process's share of the files (stable by path), so n processes or
        machines can split one job into the same Milvus server.
        """
        top = Path(root).expanduser().absolute()
        if not top.exists():
            raise IndexerError(f"{root}: no such file or directory")
        scan = iter_image_files(top, recursive=recursive, extensions=extensions, follow_symlinks=follow_symlinks)
        files = [str(p) for p in scan]
        base = str(top if top.is_dir() else top.parent)
        self._ensure_collection(files)
        if shard is not None:
            files = _shard(files, *shard)
        report = self._sync(files, [base] * len(files), progress)
        if prune and top.is_dir():
            report.removed = sync.prune(self.store, base)
        return report

    def add(self, paths: Iterable[str | os.PathLike[str]], *, progress: Progress | None = None) -> IndexReport:
        """Index image files (each file's folder is its root); unchanged files are skipped."""
        files = [os.path.abspath(os.fspath(p)) for p in paths]
        return self._sync(files, [os.path.dirname(p) for p in files], progress)

    def _sync(self, files: list[str], roots: list[str], progress: Progress | None) -> IndexReport:
        self._ensure_collection(files)
        transform = None
        dba_settings = dba.settings(self.store)
        if dba_settings is not None:
            n, alpha = int(dba_settings["n"]), float(dba_settings["alpha"])
            transform = lambda v: dba.augment(self.store, self.vector_index, v, n, alpha, include_self=False)  # noqa: E731
        return sync.sync(self.store, self.extractor, files, roots, progress, transform)

    def apply_dba(self, n: int = 5, alpha: float = 3.0, progress: Progress | None = None) -> int:
        """Database-side augmentation, once: every vector becomes the α-weighted mean of itself and its top-n
        neighbours; later additions are augmented the same way. Returns the rows rewritten."""
        if self._config is None:
            raise IndexerError("the index is empty: add images before applying DBA")
        return dba.apply(self.store, self.vector_index, n, alpha, progress=progress)

    def remove(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Delete the rows of these files (whether or not the files still exist); returns how many were indexed."""
        if self._config is None:
            return 0
        ids = [sync.path_id(os.path.abspath(os.fspath(p))) for p in paths]
        found = list(self.store.get(ids, fields=("path",)))
        self.store.delete(found)
        return len(found)

    def reroot(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> int:
        """Point every entry under folder ``old`` to the same relative path under ``new`` (photos moved)."""
        if self._config is None:
            return 0
        return sync.reroot(self.store, os.path.abspath(os.fspath(old)), os.path.abspath(os.fspath(new)))

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
        if self._config is None:
            raise IndexerError(f"the index {self.uri} (collection {self.collection!r}) is empty: add images first")
        expr = filters.build(under_folder=under, size=size, mtime=mtime, width=width, height=height, where=where)
        vectors = self._query_vectors(list(queries))
        if qe > 0:
            vectors = dba.augment(self.store, self.vector_index, vectors, qe, qe_alpha, include_self=False, filter=expr)
        results = self.store.search(vectors.tolist(), k, self.vector_index, filter=expr)
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
        self, threshold: float = 0.9, *, k: int = 10, under: str | os.PathLike[str] | None = None
    ) -> list[DuplicateGroup]:
        """Groups of copies: exact (same bytes) first, then near-duplicates with similarity ≥ ``threshold``."""
        if self._config is None:
            return []
        if not 0 < threshold <= 1:
            raise IndexerError(f"threshold must be in (0, 1], got {threshold}")
        expr = filters.build(under_folder=under)
        return duplicates.find_duplicates(self.store, self.vector_index, threshold, k, expr)

    def _query_vectors(self, queries: list[Any]) -> np.ndarray:
        dim = int(self._config["dim"])  # type: ignore[index]
        rows: list[np.ndarray | None] = [None] * len(queries)
        images: list[tuple[int, Any]] = []
        for i, q in enumerate(queries):
            if isinstance(q, (np.ndarray, torch.Tensor)) and q.ndim == 1:
                v = np.asarray(q.detach().cpu() if isinstance(q, torch.Tensor) else q, dtype=np.float32)
                if v.shape != (dim,):
                    raise IndexerError(f"query vector has {v.shape[0]} dimensions, the index has {dim}")
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

    def drop(self) -> None:
        """Delete the collection and its stored config."""
        self.store.drop()
        self._config = self._fingerprint = None

    def close(self) -> None:
        """Release the client."""
        self.store.close()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ImageIndex({self.uri!r}, collection={self.collection!r})"


def _shard(files: list[str], i: int, n: int) -> list[str]:
    """The files of shard ``i`` of ``n`` (by the stable path id, so every process agrees)."""
    if not (n >= 1 and 0 <= i < n):
        raise IndexerError(f"shard must be I/N with 0 ≤ I < N, got {i}/{n}")
    return [f for f in files if sync.path_id(f) % n == i]
