"""Tuning an index: fit its learned whitening on its own photos (:func:`fit`, also what a new index does first),
and ``tune``: re-fit it on the photos as they are now and re-embed every row with it.

Raw (pre-projection) vectors are not stored — a Milvus 2.3 collection holds one vector field — so every image
is embedded again from its file: the cost of indexing the collection once more, plus the fit.

The rewrite is resumable and never applied twice (:mod:`poolvec.indexer.ops.pending`): the new config is written
first, in
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

from poolvec.extractor import Embedded, Extractor, ExtractorError, Tuning
from poolvec.extractor.recipe import Recipe, TuneRecord
from poolvec.extractor.tuning import TuneProgress
from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus.schema import STORED_FIELDS
from poolvec.indexer.milvus.store import PROP_CONFIG, PROP_FINGERPRINT, MilvusStore
from poolvec.indexer.ops import pending as marker

#: Rows re-embedded per batch (one property update each).
BATCH = 64

#: Progress while re-embedding: ``(rows done, rows in all)``.
RewriteProgress = Callable[[int, int], None]


@dataclass
class TuneReport:
    """What a tune did: rows re-embedded, rows removed (file gone or changed since it was indexed), seconds."""

    rewritten: int = 0
    removed: list[tuple[str, str]] = field(default_factory=list)
    resumed: bool = False
    dba_cleared: bool = False
    tuning: TuneRecord | None = None


def fit(
    extractor: Extractor, files: list[str], tuning: Tuning, on_tune: TuneProgress | None = None
) -> tuple[TuneRecord | None, dict[str, Embedded]]:
    """Fit ``extractor``'s learned whitening on an even sample of ``files`` and seeded edits of them.

    Returns what was done (for the stored recipe) and the sampled images' final vectors by path, which indexing
    reuses instead of embedding them again. ``(None, {})`` when no image could be used and the extractor keeps its
    packaged fit (the files' failures are then reported by the sync).
    """
    try:
        extractor.fit(files, tuning=tuning, progress=on_tune)
    except ExtractorError as e:
        if extractor.pipeline.needs_fit:
            raise IndexerError(f"cannot tune the new index: {e}") from None
        return None, {}
    done = extractor.last_fit
    assert done is not None
    known: dict[str, Embedded] = {}
    if done.originals:
        names = list(done.originals)
        final = extractor.pipeline.apply_post(np.stack([done.originals[k].vector for k in names])).numpy()
        known = {
            k: Embedded(k, v, None, done.originals[k].width, done.originals[k].height)
            for k, v in zip(names, final, strict=True)
        }
    prior = extractor.prior.name if extractor.prior is not None and tuning.prior_weight > 0 else None
    record = TuneRecord(
        images=tuning.images,
        edits=tuning.edits,
        max_per_image=tuning.max_per_image,
        seed=tuning.seed,
        prior_weight=tuning.prior_weight,
        policy=tuning.policy.to_dict(),
        sampled=done.images,
        per_image=done.per_image,
        pairs=len(done.pairs),
        failed=len(done.failed),
        prior=prior,
        seconds=round(done.seconds, 1),
    )
    return record, known


def start(store: MilvusStore, recipe: Recipe) -> dict[str, Any]:
    """Record the new recipe as pending, before any row changes."""
    config = store.pack(recipe.to_dict())
    return marker.save(store, {"op": "tune", "config": config, "fingerprint": recipe.fingerprint(), "after": -1})


def pending_recipe(store: MilvusStore, state: dict[str, Any]) -> Recipe:
    """The recipe an interrupted tune was writing."""
    return Recipe.from_dict(store.unpack(state["config"]))


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
        rows = store.get(chunk, fields=STORED_FIELDS)
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
            fresh.append({**{k: row[k] for k in STORED_FIELDS}, "id": int(row["id"]), "vector": _floats(item.vector)})
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


__all__ = ["TuneReport", "finish", "fit", "pending_recipe", "rewrite", "start"]
