"""Bringing a collection in line with files on disk: embed what is new or changed, reuse, prune.

A file is *unchanged* when a row with its path, size and mtime exists. A new or changed file whose content
hash (sha256) is already in the collection reuses that row's vector instead of being embedded again (a moved
or copied file costs a hash, not a forward pass). Rows are upserted in small batches keyed by a stable id per
path, so an interrupted run loses at most one batch and running it again finishes the job without duplicates.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from poolvec.extractor.embedded import Embedded
from poolvec.extractor.files import file_sha256
from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus import names
from poolvec.indexer.milvus.filters import quote, under
from poolvec.indexer.milvus.schema import MAX_PATH, STORED_FIELDS, make_row, path_id, row_bytes
from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.ops import pending

if TYPE_CHECKING:
    from poolvec.extractor import Extractor

#: Rows per upsert: an interrupted run loses at most this many embeddings.
INSERT_BATCH = 64
#: Rows between flushes: Milvus Lite holds unflushed rows in memory (and brute-forces them per search).
FLUSH_EVERY = 4096
#: Rows moved per batch by ``reroot``.
REROOT_BATCH = 1000
#: Files checked against the collection per round trip.
LOOKUP_BATCH = 256

#: Progress callback: ``(files done, files in total or None, path just finished)``.
Progress = Callable[[int, int | None, str], None]


@dataclass
class IndexReport:
    """What an indexing run did. ``failed`` lists (path, reason) for every file that was skipped."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    reused: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Files looked at."""
        return self.added + self.updated + self.unchanged + len(self.failed)

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def merge(self, other: IndexReport) -> IndexReport:
        """Add another run's counts to this one (several folders in one command)."""
        for name in ("added", "updated", "unchanged", "removed", "reused"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed.extend(other.failed)
        return self


class Writer:
    """Upserts rows in batches keyed by path id and counts them in ``report``: the one way both engines (this
    module's :func:`sync` and :mod:`poolvec.indexer.ops.ray.engine`) store what they embedded or reused.

    ``transform`` maps freshly embedded vectors [B, D] before they are stored (DBA); reused vectors are already
    in their final form. An upsert carries at most ``batch_rows`` rows and, where ``batch_bytes`` is given, rows of
    at most that many bytes as sent (estimated); every ``flush_every`` rows Milvus is asked to seal them (``None``:
    never — a server seals by itself).
    """

    def __init__(
        self,
        store: MilvusStore,
        report: IndexReport,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        batch_rows: int = INSERT_BATCH,
        batch_bytes: int | None = None,
        flush_every: int | None = FLUSH_EVERY,
    ) -> None:
        self.store, self.report, self.transform = store, report, transform
        self.batch_rows, self.batch_bytes, self.flush_every = batch_rows, batch_bytes, flush_every
        self._batch: list[tuple[dict[str, Any], bool]] = []
        self._bytes = 0
        self._written = 0

    def put(self, row: dict[str, Any], existed: bool, fresh: bool = True) -> None:
        """Queue one row (an update when ``existed``); a full batch is upserted."""
        if self.batch_bytes is not None:
            size = row_bytes(row)
            if self._batch and self._bytes + size > self.batch_bytes:
                self.flush()
            self._bytes += size
        self._batch.append((row, fresh))
        if existed:
            self.report.updated += 1
        else:
            self.report.added += 1
        if len(self._batch) >= self.batch_rows:
            self.flush()

    def embedded(self, item: Embedded, info: dict[str, Any]) -> None:
        """Store a freshly embedded file (``info`` as planned by :func:`plan`), or report why it was skipped."""
        if item.error is not None:
            self.report.failed.append((item.source, item.error))
            return
        info.update(width=item.width, height=item.height)
        self.put(make_row(item.source, info["root"], item.vector, info), info["existed"])

    def reuse(self, path: str, info: dict[str, Any], stored: dict[str, Any]) -> None:
        """Store a file whose content is indexed already with that row's vector (no forward pass)."""
        info.update(width=stored["width"], height=stored["height"])
        self.put(make_row(path, info["root"], stored["vector"], info), info["existed"], fresh=False)
        self.report.reused += 1

    def flush(self) -> None:
        """Upsert the queued rows."""
        batch, self._batch, self._bytes = self._batch, [], 0
        if not batch:
            return
        fresh = [row for row, is_fresh in batch if is_fresh]
        if self.transform is not None and fresh:
            vectors = self.transform(np.asarray([r["vector"] for r in fresh], np.float32))
            for row, vec in zip(fresh, vectors, strict=True):
                row["vector"] = vec.tolist()
        self.store.upsert([row for row, _ in batch])
        every = self.flush_every
        if every is not None and (self._written + len(batch)) // every > self._written // every:
            self.store.flush()
        self._written += len(batch)


def plan(
    store: MilvusStore,
    paths: list[str],
    roots: list[str],
    report: IndexReport,
    writer: Writer,
    tick: Callable[[str], None],
    max_bytes: int | None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The sync rules, :data:`LOOKUP_BATCH` files at a time: unchanged files are counted, unusable ones reported,
    files whose content is indexed already stored through ``writer`` with that vector; yields ``(path, info)`` of
    each file to embed (``info``: root, size, mtime_ns, sha256, existed). ``tick(path)`` for every file settled."""
    with ThreadPoolExecutor(2, thread_name_prefix="poolvec-hash") as hasher:
        for start in range(0, len(paths), LOOKUP_BATCH):
            chunk = list(zip(paths[start : start + LOOKUP_BATCH], roots[start : start + LOOKUP_BATCH], strict=True))
            for path, info in _lookup(store, chunk, hasher, report, tick, max_bytes):
                reuse = info.pop("reuse", None)
                if reuse is not None:
                    writer.reuse(path, info, reuse)
                    tick(path)
                    continue
                yield path, info


def sync(
    store: MilvusStore,
    extractor: Extractor,
    paths: list[str],
    roots: list[str],
    progress: Progress | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    known: dict[str, Embedded] | None = None,
) -> IndexReport:
    """Index ``paths`` (absolute; ``roots[i]`` is the folder ``paths[i]`` was found under).

    ``transform`` maps freshly embedded vectors [B, D] before they are stored (DBA); reused vectors are
    already stored in their final form and are not transformed again. ``known`` holds files already embedded
    by this extractor (while tuning): they are stored without a second forward pass.
    """
    known = known or {}
    report = IndexReport()
    writer = Writer(store, report, transform)
    total = len(paths)
    done = 0
    pending: dict[str, dict[str, Any]] = {}

    def tick(path: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, path)

    def to_embed() -> Iterator[str]:
        for path, info in plan(store, paths, roots, report, writer, tick, extractor.max_bytes):
            pending[path] = info
            yield path

    def embedded() -> Iterator[Embedded]:
        wanted: list[str] = []
        for path in to_embed():
            if path in known:
                yield from (extractor.embed_iter(wanted) if wanted else ())
                wanted = []
                yield known[path]
            else:
                wanted.append(path)
                if len(wanted) >= LOOKUP_BATCH:
                    yield from extractor.embed_iter(wanted)
                    wanted = []
        if wanted:
            yield from extractor.embed_iter(wanted)

    try:
        for item in embedded() if known else extractor.embed_iter(to_embed()):
            writer.embedded(item, pending.pop(item.source))
            tick(item.source)
    finally:
        writer.flush()  # keep what was embedded, also on Ctrl-C
    if report.added or report.updated:
        store.flush()  # Milvus Lite indexes only sealed segments; unflushed rows are brute-forced per search
    return report


def _lookup(
    store: MilvusStore,
    chunk: list[tuple[str, str]],
    hasher: ThreadPoolExecutor,
    report: IndexReport,
    tick: Callable[[str], None],
    max_bytes: int | None,
) -> list[tuple[str, dict[str, Any]]]:
    """Sort a chunk of files into unchanged (ticked off), failed, and to-do with their stat, hash and reuse."""
    todo: dict[str, dict[str, Any]] = {}
    for path, root in chunk:
        size = len(names.stored(path).encode("utf-8"))
        if size > MAX_PATH:
            report.failed.append((path, f"path too long to store ({size} bytes as stored > {MAX_PATH})"))
            tick(path)
            continue
        try:
            st = os.stat(path)
        except OSError as e:
            dangling = isinstance(e, FileNotFoundError) and os.path.islink(path)
            reason = "broken symbolic link" if dangling else (e.strerror or str(e))
            report.failed.append((path, reason))
            tick(path)
            continue
        if not stat.S_ISREG(st.st_mode):
            report.failed.append((path, "not a regular file (FIFO, device or socket)"))
            tick(path)
            continue
        if max_bytes is not None and st.st_size > max_bytes:
            report.failed.append((path, f"file too large ({st.st_size} bytes > {max_bytes}); raise max_bytes"))
            tick(path)
            continue
        todo[path] = {"root": root, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    existing = store.get([path_id(p) for p in todo], fields=("path", "size", "mtime_ns"))
    for path in list(todo):
        row, info = existing.get(path_id(path)), todo[path]
        if row and row["path"] == path and row["size"] == info["size"] and row["mtime_ns"] == info["mtime_ns"]:
            report.unchanged += 1
            del todo[path]
            tick(path)
        else:
            info["existed"] = row is not None
    hashes = dict(zip(todo, hasher.map(_try_sha256, todo), strict=True))
    for path, digest in hashes.items():
        if isinstance(digest, OSError):
            report.failed.append((path, f"cannot read: {digest.strerror or digest}"))
            del todo[path]
            tick(path)
        else:
            todo[path]["sha256"] = digest
    if todo:
        known = {}
        wanted = sorted({info["sha256"] for info in todo.values()})
        for row in store.query(
            f"sha256 in [{', '.join(quote(h) for h in wanted)}]", ("sha256", "vector", "width", "height")
        ):
            known.setdefault(row["sha256"], row)
        for info in todo.values():
            if info["sha256"] in known:
                info["reuse"] = known[info["sha256"]]
    return list(todo.items())


def _try_sha256(path: str) -> str | OSError:
    try:
        return file_sha256(path)
    except OSError as e:
        return e


def prune(store: MilvusStore, root: str) -> int:
    """Delete the rows under folder ``root`` whose files no longer exist; returns how many."""
    gone: list[int] = []
    for rows in store.iterate(under(root), fields=("path",)):
        gone.extend(int(r["id"]) for r in rows if not os.path.lexists(r["path"]))
    for start in range(0, len(gone), 1000):
        store.delete(gone[start : start + 1000])
    return len(gone)


def reroot(store: MilvusStore, old: str, new: str) -> int:
    """Move every row under folder ``old`` to the same relative path under ``new``, keeping vectors.

    Safe against kill -9 (:mod:`poolvec.indexer.ops.pending`): the move is recorded first; each batch upserts the
    moved rows,
    then deletes the old ones, so a repeated batch finds those rows already moved (or both, and moves them again to
    the same ids). The marker goes when no row is left under ``old``; a re-run of the same reroot finishes it.
    """
    old, new = old.rstrip("/") or "/", new.rstrip("/") or "/"
    if new == old or new.startswith(old + "/"):
        raise IndexerError(f"cannot re-root {names.shown(old)} into itself ({names.shown(new)})")
    state = pending.get(store)
    if state is not None and (state["op"] != "reroot" or (state["old"], state["new"]) != (old, new)):
        raise pending.refuse(state, f"collection {store.collection!r}")
    moved = 0
    fields = (*STORED_FIELDS, "vector")
    for rows in store.iterate(under(old), fields=fields, batch_size=REROOT_BATCH):
        if state is None:
            state = pending.save(store, {"op": "reroot", "old": old, "new": new})
        fresh = []
        for r in rows:
            path = new + r["path"][len(old) :]
            root = new + r["root"][len(old) :] if r["root"].startswith(old + "/") or r["root"] == old else new
            fresh.append(make_row(path, root, r["vector"], r))
        store.upsert(fresh)
        store.delete([int(r["id"]) for r in rows])
        moved += len(rows)
    store.flush()
    if state is not None:
        pending.clear(store)
    return moved


def iter_rows(store: MilvusStore, fields: Iterable[str], filter: str = "") -> Iterator[dict[str, Any]]:
    """Every row (selected fields), streamed."""
    for rows in store.iterate(filter, fields=tuple(fields)):
        yield from rows
