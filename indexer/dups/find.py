"""Duplicate finding inside one collection: exact copies by content hash, near-duplicates by similarity.

Near-duplicates come from searching the index with its own vectors in batches (top-k per item), joined
with union-find, so memory is O(N·k) — never an N×N similarity matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.milvus.vector_index import VectorIndex

#: Default thresholds, from precision/recall of duplicate pairs on the two copy-detection sets
#: (scripts/eval_dups.py; docs/EVALUATION.md, "Duplicate pairs"). Normalised scores (the default): the lowest grid
#: value with pair precision ≥ 95 % on both sets, 0.15 → precision 99 / 95 %, recall 59 / 48 % with tuned vectors
#: (plain GeM: precision 100 / 98 %, recall 44 / 23 %). Raw cosines of tuned vectors reach 95 % on both only at a
#: recall of 15–18 %; 0.5 (precision ≥ 90 % on both) gives 99 / 90 %, recall 35 / 29 %. Raw cosines of plain GeM
#: keep the earlier 0.9 (precision 100 / 95 %, recall 4 / 8 %).
THRESHOLD_NORMALIZED = 0.15
THRESHOLD_WHITENED = 0.5
THRESHOLD_PLAIN = 0.9
#: β of the score normalisation (SSCD's value; 0.5 and 1 measured alike, 1 slightly higher µAP).
NORMALIZE_BETA = 1.0
#: Neighbours left out of an image's background: its nearest one is the candidate copy (with it, the two images of a
#: two-image collection would cancel out). Measured alike on the sets (µAP 83.8 vs 84.0 and 75.3 vs 75.6).
SKIP = 1


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
    normalize: float | None = None,
) -> list[DuplicateGroup]:
    """Groups of images whose similarity is ≥ ``threshold`` to another member (exact copies included).

    With ``normalize=β`` the similarity is first normalised (:func:`normalise_edges`); every image's k
    neighbours are then kept until the pass ends (O(N·k) memory, as before).
    """
    uf = _UnionFind()
    weakest: dict[tuple[int, int], float] = {}
    paths: dict[int, str] = {}
    edges: list[tuple[int, int, float]] = []
    for rows in store.iterate(filter, fields=("path", "vector"), batch_size=batch_size):
        ids = [int(r["id"]) for r in rows]
        paths.update((int(r["id"]), r["path"]) for r in rows)
        results = store.search([r["vector"] for r in rows], k + 1, index, filter=filter)
        for qid, hits in zip(ids, results, strict=True):
            for h in hits:
                hid, score = int(h["id"]), float(h["distance"])
                if hid == qid:
                    continue
                paths.setdefault(hid, h["entity"]["path"])
                if normalize is not None or score >= threshold:
                    edges.append((qid, hid, score))
    if normalize is not None:
        edges = normalise_edges(edges, k, normalize)
    for qid, hid, score in edges:
        if score >= threshold:
            uf.union(qid, hid)
            key = (min(qid, hid), max(qid, hid))
            weakest[key] = max(weakest.get(key, -np.inf), score)  # the pair's score, seen from either end
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


def normalise_edges(edges: list[tuple[int, int, float]], k: int, beta: float) -> list[tuple[int, int, float]]:
    """Score normalisation (Pizzi et al., SSCD 2022), made symmetric: each neighbour edge (a, b, s), listed best
    first per image, becomes s − β·(b_a + b_b)/2, where b_x is the mean score of x's k nearest other images but
    the first (:data:`SKIP`), 0 when it has no other.

    Images in crowded parts of the space (night skies, textures, documents) have a high b and need a higher raw
    score to count as copies, so that one threshold means the same for every image.
    """
    rows: dict[int, list[float]] = {}
    for a, _, s in edges:
        rows.setdefault(a, []).append(s)
    background = {a: float(np.mean(v[SKIP:k])) if len(v) > SKIP else 0.0 for a, v in rows.items()}
    return [(a, b, s - beta * (background[a] + background.get(b, background[a])) / 2) for a, b, s in edges]


def find_duplicates(
    store: MilvusStore,
    index: VectorIndex,
    threshold: float = 0.9,
    k: int = 10,
    filter: str = "",
    normalize: float | None = None,
) -> list[DuplicateGroup]:
    """Exact-duplicate groups first, then near-duplicate groups that are not just one exact group."""
    exact = exact_duplicates(store, filter)
    exact_sets = {frozenset(g.paths) for g in exact}
    near = [
        g
        for g in near_duplicates(store, index, threshold, k, filter=filter, normalize=normalize)
        if frozenset(g.paths) not in exact_sets
    ]
    return exact + near
