"""``ImageIndex``: a folder of images ↔ a Milvus collection, searchable by image.

One object, one URI (as pymilvus's ``MilvusClient``): a path is Milvus Lite, ``http://host:19530`` a server.
The collection remembers the embedding config that produced its vectors; opening it rebuilds the same
:class:`~extractor.Extractor`, and a different config is refused with the fields that differ.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from extractor import IMAGE_EXTENSIONS, Extractor, ExtractorError, ImageInput, iter_image_files

from .config import FORMAT_VERSION, diff, fingerprint, with_provenance
from .errors import ConfigMismatchError, IndexerError
from .store import MilvusStore, VectorIndex

DEFAULT_URI = "./poolvec.db"
DEFAULT_COLLECTION = "images"
#: Rows per upsert: an interrupted run loses at most this many embeddings.
INSERT_BATCH = 64
#: Files checked against the index per round trip.
LOOKUP_BATCH = 256


@dataclass(frozen=True)
class Hit:
    """One search result: the image path, its similarity (inner product of unit vectors = cosine), id, metadata."""

    path: str
    score: float
    id: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass
class IndexReport:
    """What an indexing run did. ``failed`` lists (path, reason) for every file that was skipped."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Files looked at."""
        return self.added + self.updated + self.unchanged + len(self.failed)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed


#: Progress callback: ``(files done, files in total or None, path just finished)``.
Progress = Callable[[int, int | None, str], None]


def path_id(path: str) -> int:
    """Stable 63-bit primary key of an absolute path (the same file always maps to the same row)."""
    digest = hashlib.blake2b(os.fsencode(path), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def file_sha256(path: str) -> str:
    """Content hash of a file (exact duplicates share it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ImageIndex:
    """A searchable index of images in one Milvus collection.

    Args:
        uri: Milvus Lite database path (default ``./poolvec.db``) or ``http(s)://host:port`` of a server.
        collection: collection name; one index per collection.
        extractor: the embedder for a new index, or to check against an existing one (a different config is
            refused). ``None``: an existing index rebuilds its own; a new one uses ``Extractor()``.
        token: Milvus server token (``user:password`` or an API key).
        vector_index: the Milvus vector index for a new collection (HNSW by default).
        batch_size, workers, device: runtime settings for the rebuilt extractor (they do not change vectors).
        timeout: seconds to wait for a Milvus server.
    """

    def __init__(
        self,
        uri: str | os.PathLike[str] = DEFAULT_URI,
        collection: str = DEFAULT_COLLECTION,
        *,
        extractor: Extractor | None = None,
        token: str | None = None,
        vector_index: VectorIndex | None = None,
        batch_size: int = 16,
        workers: int = 1,
        device: str = "auto",
        timeout: float = 10.0,
    ) -> None:
        self.uri = os.fspath(uri)
        self.collection = collection
        self.store = MilvusStore(self.uri, collection, token=token, timeout=timeout)
        self._runtime = {"batch_size": batch_size, "workers": workers, "device": device}
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

    def _ensure_collection(self) -> None:
        if self._config is not None:
            return
        ex = self.extractor
        if ex.pipeline.needs_fit:
            raise IndexerError(f"pooling '{ex.pipeline}' needs fitting before indexing; fit it first")
        config = with_provenance(ex.config())
        self.store.create(ex.dim, config, fingerprint(config), self.vector_index)
        self._config, self._fingerprint = config, fingerprint(config)

    # -- writing -------------------------------------------------------------------------------------------
    def add_folder(
        self,
        root: str | os.PathLike[str],
        *,
        recursive: bool = True,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        follow_symlinks: bool = False,
        progress: Progress | None = None,
    ) -> IndexReport:
        """Index the images under ``root``: new and changed files are embedded, unchanged ones skipped."""
        if not Path(root).expanduser().exists():
            raise IndexerError(f"{root}: no such file or directory")
        files = [
            str(p)
            for p in iter_image_files(root, recursive=recursive, extensions=extensions, follow_symlinks=follow_symlinks)
        ]
        return self.add(files, progress=progress)

    def add(self, paths: Iterable[str | os.PathLike[str]], *, progress: Progress | None = None) -> IndexReport:
        """Index image files (skipping those already indexed and unchanged); returns what happened."""
        self._ensure_collection()
        paths = [os.path.abspath(os.fspath(p)) for p in paths]
        total = len(paths)
        report = IndexReport()
        pending: dict[str, dict[str, Any]] = {}
        done = 0

        def tick(path: str) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total, path)

        def to_embed() -> Iterator[str]:
            for start in range(0, total, LOOKUP_BATCH):
                chunk = paths[start : start + LOOKUP_BATCH]
                stats: dict[str, os.stat_result] = {}
                for p in chunk:
                    try:
                        stats[p] = os.stat(p)
                    except OSError as e:
                        report.failed.append((p, e.strerror or str(e)))
                        tick(p)
                existing = self.store.get([path_id(p) for p in stats], fields=("path", "size", "mtime_ns"))
                for p, st in stats.items():
                    row = existing.get(path_id(p))
                    if row and row["path"] == p and row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns:
                        report.unchanged += 1
                        tick(p)
                        continue
                    pending[p] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "existed": row is not None}
                    yield p

        batch: list[dict[str, Any]] = []
        for item in self.extractor.embed_iter(to_embed()):
            info = pending.pop(item.source)
            if item.error is not None:
                report.failed.append((item.source, item.error))
            else:
                try:
                    digest = file_sha256(item.source)
                except OSError as e:
                    report.failed.append((item.source, f"cannot read: {e.strerror or e}"))
                    tick(item.source)
                    continue
                batch.append(self._row(item.source, item.vector, info, item.width, item.height, digest))
                if info["existed"]:
                    report.updated += 1
                else:
                    report.added += 1
            tick(item.source)
            if len(batch) >= INSERT_BATCH:
                self.store.upsert(batch)
                batch = []
        self.store.upsert(batch)
        return report

    @staticmethod
    def _row(path: str, vector: Any, info: dict[str, Any], width: int, height: int, digest: str) -> dict[str, Any]:
        return {
            "id": path_id(path),
            "vector": np.asarray(vector, dtype=np.float32).tolist(),
            "path": path,
            "size": int(info["size"]),
            "mtime_ns": int(info["mtime_ns"]),
            "width": int(width),
            "height": int(height),
            "sha256": digest,
        }

    # -- reading -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.store.count() if self._config is not None else 0

    def search(self, query: ImageInput | np.ndarray, k: int = 10) -> list[Hit]:
        """The ``k`` indexed images most similar to ``query`` (a path, PIL image, image array/tensor, or vector)."""
        return self.search_many([query], k=k)[0]

    def search_many(self, queries: Iterable[ImageInput | np.ndarray], k: int = 10) -> list[list[Hit]]:
        """Batched :meth:`search`: one list of hits per query, in order."""
        if k < 1:
            raise IndexerError(f"k must be ≥ 1, got {k}")
        if self._config is None:
            raise IndexerError(f"the index {self.uri} (collection {self.collection!r}) is empty: add images first")
        vectors = self._query_vectors(list(queries))
        results = self.store.search(vectors.tolist(), k, self.vector_index)
        return [
            [
                Hit(
                    path=h["entity"]["path"],
                    score=float(h["distance"]),
                    id=int(h["id"]),
                    meta={f: h["entity"][f] for f in ("size", "mtime_ns", "width", "height", "sha256")},
                )
                for h in hits
            ]
            for hits in results
        ]

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
