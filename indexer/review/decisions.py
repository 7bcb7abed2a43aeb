"""The user's decisions about duplicates, stored with the index (a side collection: Lite and server alike, dropped
with the collection): "not duplicates" for two or more pictures, "keep" for one.

Decisions name file *content* (sha256), not paths: they follow ``reroot``, ``tune`` and ``dba`` (which keep the
content hash), survive ``prune`` (a file indexed again later gets its decision back), and a new copy of a picture
decided about is new content, so its group shows again.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from poolvec.indexer.milvus.store import MilvusStore

DISTINCT = "distinct"
KEEP = "keep"


@dataclass(frozen=True)
class Decisions:
    """A snapshot of the stored decisions: content pairs that are not duplicates, and content to keep."""

    distinct: frozenset[tuple[str, str]]
    keep: frozenset[str]

    @classmethod
    def load(cls, store: MilvusStore) -> Decisions:
        rows = store.decisions_all()
        return cls(
            frozenset((a, b) for k, a, b, _ in rows if k == DISTINCT), frozenset(a for k, a, _, _ in rows if k == KEEP)
        )

    def are_distinct(self, a: str, b: str) -> bool:
        """Whether the user said the pictures of content ``a`` and ``b`` are not duplicates."""
        return (min(a, b), max(a, b)) in self.distinct


def distinct_rows(hashes: list[str]) -> list[tuple[str, str, str, int]]:
    """Rows saying every pair of ``hashes`` is not a duplicate (a whole group at once)."""
    now = int(time.time())
    unique = sorted(set(hashes))
    return [(DISTINCT, a, b, now) for a, b in itertools.combinations(unique, 2)]


def keep_rows(hashes: list[str]) -> list[tuple[str, str, str, int]]:
    """Rows saying the pictures of ``hashes`` are to be kept."""
    now = int(time.time())
    return [(KEEP, h, "", now) for h in sorted(set(hashes))]


__all__ = ["DISTINCT", "KEEP", "Decisions", "distinct_rows", "keep_rows"]
