"""``tune``: re-fit an index's learned whitening on its photos as they are now, and re-embed every row with it.

Raw (pre-projection) vectors are not stored — a Milvus 2.3 collection holds one vector field — so every image
is embedded again from its file: the cost of indexing the collection once more, plus the fit.

The rewrite is resumable and never applied twice (:mod:`indexer.pending`): the new config is written first, in
the pending marker, with the largest primary key rewritten so far; rows are rewritten in primary-key order, and
the marker is advanced after each batch. Re-embedding a row from its file is idempotent, so a batch repeated
after a kill -9 gives the same vectors. While the marker is there, the index refuses searches and additions (its
rows are in two embeddings) and says how to finish: run ``tune`` again, which resumes. At the end the new config
replaces the old one and the marker goes, in that order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from extractor import Extractor

from . import pending as marker
from .store import MilvusStore

#: Rows re-embedded per batch (one property update each).
BATCH = 64
#: Row fields kept as they are when a row is re-embedded.
KEEP = ("path", "root", "dirs", "size", "mtime_ns", "width", "height", "sha256")

#: Progress while re-embedding: ``(rows done, rows in all)``.
RewriteProgress = Callable[[int, int], None]


@dataclass
class TuneReport:
    """What a tune did: rows re-embedded, rows removed (file gone or changed since it was indexed), seconds."""

    rewritten: int = 0
    removed: list[tuple[str, str]] = field(default_factory=list)
    resumed: bool = False
    dba_cleared: bool = False
    tuning: dict[str, Any] | None = None


def start(store: MilvusStore, config: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """Record the new config as pending, before any row changes."""
    return marker.save(store, {"op": "tune", "config": store.pack(config), "fingerprint": fingerprint, "after": -1})


def rewrite(
    store: MilvusStore,
    extractor: Extractor,
    state: dict[str, Any],
    progress: RewriteProgress | None = None,
) -> TuneReport:
    """Re-embed every row after ``state["after"]`` (in primary-key order) with ``extractor``; finish the swap."""
    report = TuneReport()
    ids = sorted(int(r["id"]) for rows in store.iterate("", fields=("path",)) for r in rows)
    todo = [i for i in ids if i > int(state["after"])]
    done = len(ids) - len(todo)
    for start_at in range(0, len(todo), BATCH):
        chunk = todo[start_at : start_at + BATCH]
        rows = store.get(chunk, fields=KEEP)
        usable, gone = [], []
        for pk in chunk:
            row = rows.get(pk)
            if row is None:
                continue
            why = _changed(row)
            if why is None:
                usable.append(row)
            else:
                gone.append(pk)
                report.removed.append((row["path"], why))
        fresh = []
        for row, item in zip(usable, extractor.embed_iter([r["path"] for r in usable]), strict=True):
            if item.error is not None:
                gone.append(int(row["id"]))
                report.removed.append((row["path"], item.error))
                continue
            fresh.append({**{k: row[k] for k in KEEP}, "id": int(row["id"]), "vector": _floats(item.vector)})
        store.upsert(fresh)
        store.delete(gone)
        report.rewritten += len(fresh)
        state["after"] = chunk[-1]
        marker.save(store, state)
        done += len(chunk)
        if progress is not None:
            progress(done, len(ids))
    store.flush()
    return report


def finish(store: MilvusStore, state: dict[str, Any], dba_property: str) -> bool:
    """Make the pending config the collection's own, clear DBA (its vectors were replaced) and the marker.
    Returns whether DBA had been applied."""
    from .store import PROP_CONFIG, PROP_FINGERPRINT

    props = store.properties()
    had_dba = bool(props.get(dba_property))
    store.set_property(PROP_CONFIG, state["config"])
    store.set_property(PROP_FINGERPRINT, state["fingerprint"])
    if had_dba:
        store.set_property(dba_property, "")
    marker.clear(store)
    store.drop_blobs(keep=store.blob_digests(state["config"]))
    return had_dba


def _changed(row: dict[str, Any]) -> str | None:
    """Why a row's file can no longer give its vector (gone, or changed since it was indexed), or None."""
    try:
        st = os.stat(row["path"])
    except OSError as e:
        return f"file is gone ({e.strerror or e}); removed from the index"
    if st.st_size != int(row["size"]) or st.st_mtime_ns != int(row["mtime_ns"]):
        return "file changed since it was indexed; removed — run `poolvec index` to add it again"
    return None


def _floats(v: Any) -> list[float]:
    return np.asarray(v, dtype=np.float32).tolist()


__all__ = ["TuneReport", "finish", "rewrite", "start"]
