"""Duplicate finding inside one collection: exact copies by content hash, near-duplicates by similarity.

The collection is read once (:func:`read_rows`); near-duplicates come from each image's top-k neighbours found in this
process (:mod:`.graph`), joined with union-find, so memory is O(N·k) besides the vectors — never an N×N matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from poolvec.indexer.dups.graph import Progress, Rows, gather, nearest, normalised, pairs, same_hash
from poolvec.indexer.milvus.store import MilvusStore

#: Default thresholds, from precision/recall of duplicate pairs on the two copy-detection sets
#: (scripts/eval_dups.py; docs/EVALUATION.md, "Duplicate pairs"). Normalised scores (the default): the lowest grid
#: value with pair precision ≥ 95 % on both sets, 0.15 → precision 99 / 95 %, recall 59 / 48 % with tuned vectors
#: (plain GeM: precision 100 / 98 %, recall 44 / 23 %). Raw cosines of tuned vectors reach 95 % on both only at a
#: recall of 15–18 %; 0.5 (precision ≥ 90 % on both) gives 99 / 90 %, recall 35 / 29 %. Raw cosines of plain GeM
#: keep the earlier 0.9 (precision 100 / 95 %, recall 4 / 8 %).
THRESHOLD_NORMALIZED = 0.15
#: With verification (the default): pairs scoring at least this are verified by local features (the candidates); pairs
#: scoring at least ``SURE_*`` are joined without looking. Measured on three sets (docs/EVALUATION.md, "Verification").
VERIFY_FROM_NORMALIZED = 0.0
VERIFY_FROM_RAW = 0.3
#: Pairs that cannot be verified (an image with too few keypoints) are joined from this score.
UNVERIFIABLE_NORMALIZED = 0.2
SURE_NORMALIZED = 0.3
SURE_RAW = 0.9
#: Pairs from this score that do not verify at first get a second look with richer features.
RETRY_NORMALIZED = 0.1
RETRY_RAW = 0.5
THRESHOLD_WHITENED = 0.5
THRESHOLD_PLAIN = 0.9
#: The fraction of both images a verified pair's matched region must cover to join groups freely (:func:`whole`).
WHOLE = 0.5
#: β of the score normalisation (SSCD's value; 0.5 and 1 measured alike, 1 slightly higher µAP).
NORMALIZE_BETA = 1.0
#: Neighbours left out of an image's background: its nearest one is the candidate copy (with it, the two images of a
#: two-image collection would cancel out). Measured alike on the sets (µAP 83.8 vs 84.0 and 75.3 vs 75.6).
SKIP = 1
#: Rows read per page (Milvus Lite costs a pass over every row per call, plus ~0.25 ms a row: few, large pages).
PAGE = 5000


@dataclass(frozen=True)
class Pair:
    """Two images of a near-duplicate group and why they were joined: their ``score`` (normalised or raw, as the
    search was made) and, when verified, the ``inliers`` and matched ``box_a``/``box_b`` (fractions of each image;
    ``verified`` None: the pair was joined on its score alone)."""

    a: int
    b: int
    score: float
    verified: bool | None = None
    inliers: int = 0
    box_a: tuple[float, float, float, float] | None = None
    box_b: tuple[float, float, float, float] | None = None
    agreement: float | None = None


@dataclass
class DuplicateGroup:
    """Images that are copies of each other: ``kind`` is "exact" (same bytes) or "near" (joined by ``pairs``);
    ``paths`` sorted, ``ids`` in the same order."""

    kind: str
    paths: list[str]
    score: float = 1.0  # the lowest score that joined the group
    ids: list[int] = field(default_factory=list, repr=False)
    pairs: list[Pair] = field(default_factory=list, repr=False)


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


def read_rows(store: MilvusStore, filter: str = "", page: int = PAGE, progress: Progress | None = None) -> Rows:
    """Every row of the collection (or of ``filter``) read once, in pages: ids, paths, sha256 and float16 vectors."""
    total = store.count()
    pages = store.scan(filter, ("path", "sha256", "vector"), page, count=total)
    return gather(pages, None if filter else total, progress)


def exact_duplicates(rows: Rows) -> list[DuplicateGroup]:
    """Groups of files with identical content (same sha256), largest first; O(N)."""
    groups = [
        DuplicateGroup("exact", [rows.paths[i] for i in members], 1.0, [int(rows.ids[i]) for i in members])
        for members in (sorted(m, key=lambda i: rows.paths[i]) for m in same_hash(rows))
    ]
    return sorted(groups, key=lambda g: (-len(g.paths), g.paths[0]))


#: An edge of the neighbour graph: (image id, neighbour id, score).
Edge = tuple[int, int, float]
#: Decides which candidate edges join groups: gets the edges (each pair once) and the paths by id, returns pairs.
Judge = Callable[[list[Edge], dict[int, str]], list[Pair]]


def candidate_edges(
    rows: Rows,
    k: int = 10,
    normalize: float | None = None,
    floor: float = -np.inf,
    progress: Progress | None = None,
) -> tuple[list[Edge], dict[int, str]]:
    """Every image's ``k`` nearest other images (:func:`~.graph.nearest`), scored (normalised with β = ``normalize``:
    :func:`~.graph.normalised`), each pair once with its best score, those scoring at least ``floor``; and the
    paths of the images they join, by id. O(N·k) memory."""
    scores, found = nearest(rows.vectors, k, progress=progress)
    if normalize is not None:
        scores = normalised(scores, found, normalize, SKIP)
    a, b, s = pairs(scores, found, floor)
    ids = rows.ids
    edges = [(int(ids[x]), int(ids[y]), float(v)) for x, y, v in zip(a.tolist(), b.tolist(), s.tolist(), strict=True)]
    paths = {int(ids[i]): rows.paths[i] for i in np.unique(np.concatenate([a, b])).tolist()}
    return edges, paths


def by_threshold(threshold: float) -> Judge:
    """The judge of unverified duplicates: a pair is joined when its score is at least ``threshold``."""
    return lambda edges, _paths: [Pair(a, b, s) for a, b, s in edges if s >= threshold]


def near_duplicates(
    rows: Rows,
    threshold: float = 0.9,
    k: int = 10,
    normalize: float | None = None,
    judge: Judge | None = None,
    progress: Progress | None = None,
) -> list[DuplicateGroup]:
    """Groups of images joined by pairs that ``judge`` accepts (default: score ≥ ``threshold``; every judge looks at
    pairs from ``threshold`` only), exact copies included, largest first."""
    edges, paths = candidate_edges(rows, k, normalize, threshold, progress)
    return group(paths, (judge or by_threshold(threshold))(edges, paths))


def whole(pair: Pair) -> bool:
    """A verified pair whose matched region covers at least :data:`WHOLE` of both images: the same picture (resized,
    mirrored, rotated, lightly cropped), not a part of one found in the other."""
    return bool(pair.verified) and all(b is not None and _area(b) >= WHOLE for b in (pair.box_a, pair.box_b))


def _area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def strongest(pairs: list[Pair]) -> list[Pair]:
    """The pairs that may join groups: every :func:`whole` pair (copies of one whole picture are copies of each
    other), and each image's strongest other pair — verified pairs by inliers, before pairs joined on their score
    alone — so that a partial match (two photos pasted into one background, two screenshots of one app, two photos
    with one caption) cannot chain two groups together. Measured: docs/EVALUATION.md, "Verification"."""
    best: dict[int, tuple[tuple[int, float], Pair]] = {}
    for p in pairs:
        weight = (1, float(p.inliers)) if p.verified else (0, p.score)
        for node in (p.a, p.b):
            if node not in best or weight > best[node][0]:
                best[node] = (weight, p)
    kept = {(p.a, p.b): p for _, p in best.values()}
    kept.update(((p.a, p.b), p) for p in pairs if whole(p))
    return [kept[k] for k in sorted(kept)]


def group(paths: dict[int, str], pairs: list[Pair]) -> list[DuplicateGroup]:
    """The connected groups of ``pairs`` (union-find), each with the pairs that joined it."""
    uf = _UnionFind()
    for p in pairs:
        uf.union(p.a, p.b)
    members: dict[int, list[int]] = {}
    for node in list(uf.parent):
        members.setdefault(uf.find(node), []).append(node)
    joined: dict[int, list[Pair]] = {}
    for p in pairs:
        joined.setdefault(uf.find(p.a), []).append(p)
    groups = [
        DuplicateGroup(
            "near",
            [paths[i] for i in ids],
            min((p.score for p in joined.get(root, [])), default=1.0),
            ids,
            sorted(joined.get(root, []), key=lambda p: (p.a, p.b)),
        )
        for root, ids in ((r, sorted(m, key=lambda i: paths[i])) for r, m in members.items())
        if len(ids) > 1
    ]
    return sorted(groups, key=lambda g: (-len(g.paths), g.paths[0]))


def find_duplicates(
    store: MilvusStore,
    threshold: float = 0.9,
    k: int = 10,
    filter: str = "",
    normalize: float | None = None,
    judge: Judge | None = None,
    progress: Progress | None = None,
) -> Iterator[DuplicateGroup]:
    """Exact-duplicate groups first (as soon as the collection, or ``filter``, has been read once), then the
    near-duplicate groups that are not just one exact group."""
    rows = read_rows(store, filter, progress=progress)
    exact = exact_duplicates(rows)
    yield from exact
    exact_sets = {frozenset(g.paths) for g in exact}
    for g in near_duplicates(rows, threshold, k, normalize, judge, progress):
        if frozenset(g.paths) not in exact_sets:
            yield g
