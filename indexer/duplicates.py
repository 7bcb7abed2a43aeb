"""Duplicate finding inside one collection: exact copies by content hash, near-duplicates by similarity.

Near-duplicates come from searching the index with its own vectors in batches (top-k per item), joined
with union-find, so memory is O(N·k) — never an N×N similarity matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .store import MilvusStore, VectorIndex


@dataclass
class DuplicateGroup:
    """Images that are copies of each other: ``kind`` is "exact" (same bytes) or "near" (score ≥ threshold)."""

    kind: str
    paths: list[str]
    score: float = 1.0  # the lowest similarity that joined the group
    ids: list[int] = field(default_factory=list, repr=False)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def exact_duplicates(store: MilvusStore, filter: str = "") -> list[DuplicateGroup]:
    """Groups of files with identical content (same sha256), largest first."""
    by_hash: dict[str, list[tuple[int, str]]] = {}
    for rows in store.iterate(filter, fields=("path", "sha256")):
        for r in rows:
            by_hash.setdefault(r["sha256"], []).append((int(r["id"]), r["path"]))
    groups = [
        DuplicateGroup("exact", [p for _, p in sorted(items, key=lambda t: t[1])], 1.0, [i for i, _ in items])
        for items in by_hash.values()
        if len(items) > 1
    ]
    return sorted(groups, key=lambda g: (-len(g.paths), g.paths[0]))


def near_duplicates(
    store: MilvusStore,
    index: VectorIndex,
    threshold: float = 0.9,
    k: int = 10,
    batch_size: int = 256,
    filter: str = "",
) -> list[DuplicateGroup]:
    """Groups of images whose similarity is ≥ ``threshold`` to another member (exact copies included)."""
    uf = _UnionFind()
    weakest: dict[tuple[int, int], float] = {}
    paths: dict[int, str] = {}
    for rows in store.iterate(filter, fields=("path", "vector"), batch_size=batch_size):
        ids = [int(r["id"]) for r in rows]
        paths.update((int(r["id"]), r["path"]) for r in rows)
        results = store.search([r["vector"] for r in rows], k + 1, index, filter=filter)
        for qid, hits in zip(ids, results, strict=True):
            for h in hits:
                hid, score = int(h["id"]), float(h["distance"])
                if hid != qid and score >= threshold:
                    paths[hid] = h["entity"]["path"]
                    uf.union(qid, hid)
                    key = (min(qid, hid), max(qid, hid))
                    weakest[key] = score
    members: dict[int, list[int]] = {}
    for node in list(uf.parent):
        members.setdefault(uf.find(node), []).append(node)
    low: dict[int, float] = {}
    for (a, _), score in weakest.items():
        root = uf.find(a)
        low[root] = min(low.get(root, 1.0), score)
    groups = [
        DuplicateGroup("near", sorted(paths[i] for i in ids), low.get(root, 1.0), sorted(ids))
        for root, ids in members.items()
        if len(ids) > 1
    ]
    return sorted(groups, key=lambda g: (-len(g.paths), g.paths[0]))


def find_duplicates(
    store: MilvusStore, index: VectorIndex, threshold: float = 0.9, k: int = 10, filter: str = ""
) -> list[DuplicateGroup]:
    """Exact-duplicate groups first, then near-duplicate groups that are not just one exact group."""
    exact = exact_duplicates(store, filter)
    exact_sets = {frozenset(g.paths) for g in exact}
    near = [
        g for g in near_duplicates(store, index, threshold, k, filter=filter) if frozenset(g.paths) not in exact_sets
    ]
    return exact + near
