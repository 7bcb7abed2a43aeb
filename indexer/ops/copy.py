"""Copying an index to another Milvus — the step from Milvus Lite to a server when a collection outgrows one
machine's process (docs/NOTES.md, "dups at scale") — with nothing lost and nothing re-embedded.

The target collection is made with the source's recipe, fingerprint, vector index and settings, and marked
:mod:`pending` (op ``copy``) before its first row: until the last row and decision have landed it refuses to be
used, and says which command finishes. Rows are upserted by primary key, so running the copy again after a kill
rewrites what had landed and goes on; the marker goes last, after the counts agree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus.schema import STORED_FIELDS
from poolvec.indexer.milvus.side import PROP_GRAPH, PROP_WRITES
from poolvec.indexer.milvus.store import PROP_CONFIG, PROP_FINGERPRINT, PROP_INDEX, MilvusStore
from poolvec.indexer.ops import pending
from poolvec.indexer.ops.sync import IndexReport, Writer

#: Rows per upsert (and their bytes at most: Milvus refuses requests over 64 MB).
BATCH = 500
BATCH_BYTES = 16 << 20
#: Progress callback: ``(rows copied, rows in the source)``.
Progress = Callable[[int, int], None]


@dataclass
class CopyReport:
    """What a copy did: rows and review decisions written to the target, and the seconds it took."""

    rows: int = 0
    decisions: int = 0
    seconds: float = 0.0


def copy_index(source: MilvusStore, target: MilvusStore, progress: Progress | None = None) -> CopyReport:
    """Copy ``source``'s collection (rows, vectors, recipe, settings, review decisions) to ``target``. A target that
    exists must be an unfinished copy of the same index (it is finished); any other is refused."""
    started = time.perf_counter()
    where = f"{source.uri} (collection {source.collection!r})"
    if not source.exists():
        raise IndexerError(f"no index to copy at {where}")
    state = pending.get(source)
    if state is not None:
        raise pending.refuse(state, where)
    recipe, fingerprint, index = source.read_config()
    marker = {"op": "copy", "from": source.uri, "from_collection": source.collection, "to": target.uri}
    if target.exists():
        _, theirs, _ = target.read_config()
        unfinished = pending.get(target)
        if theirs != fingerprint or unfinished is None or unfinished.get("op") != "copy":
            raise IndexerError(
                f"{target.uri} already has a collection {target.collection!r}: choose another --to-collection, or "
                "drop it first"
            )
    else:
        target.create(recipe, index)
    pending.save(target, marker)
    props = source.properties()
    target.set_property(PROP_FINGERPRINT, props.get(PROP_FINGERPRINT) or fingerprint)
    own = (PROP_CONFIG, PROP_FINGERPRINT, PROP_INDEX, pending.PROP_PENDING, PROP_GRAPH, PROP_WRITES)
    for key, value in props.items():  # the kept neighbour graph stays behind: the target's first dups makes its own
        if key.startswith("poolvec.") and key not in own:
            target.set_property(key, value)
    report = CopyReport()
    total = source.count()
    # the indexer's own writer: bounded upserts, and Lite's rows sealed as they land (it indexes only sealed ones)
    writer = Writer(target, IndexReport(), batch_rows=BATCH, batch_bytes=BATCH_BYTES)
    for page in source.scan("", ("vector", *STORED_FIELDS)):
        for row in page:
            writer.put(row, existed=False, fresh=False)
        if progress is not None:
            progress(writer.report.added, total)
    writer.flush()
    report.rows = writer.report.added
    decisions = source.decisions_all()
    if decisions:
        target.decisions_put(decisions)
    report.decisions = len(decisions)
    target.flush()
    landed = target.count()
    if landed != total:
        raise IndexerError(f"the copy at {target.uri} holds {landed} rows, the source {total}: run the copy again")
    pending.clear(target)
    report.seconds = time.perf_counter() - started
    return report


__all__ = ["BATCH", "CopyReport", "copy_index"]
