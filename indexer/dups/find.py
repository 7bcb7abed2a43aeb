"""Duplicate finding inside one collection: exact copies by content hash, near-duplicates by similarity.

The collection is read once (:func:`read_rows`); near-duplicates come from each image's top-k neighbours found in this
process (:mod:`.graph`), joined as connected components, so memory is O(N·k) besides the vectors — never an N×N
matrix. The whole collection's neighbours are kept with the index until a row is written (:mod:`.kept`): the next run
reads them.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np

from poolvec.indexer.dups import kept
from poolvec.indexer.dups.graph import Progress, Rows, components, gather, nearest, normalised, pairs, same_hash
from poolvec.indexer.dups.kept import Graph
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


@contextmanager
def _many_objects() -> Iterator[None]:
    """Python's cyclic garbage collector paused while many small objects that form no cycles are made (pairs,
    groups): at 100 000 rows its passes were a third of ``dups`` from a kept graph (0.35 of 0.95 s)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_rows(store: MilvusStore, filter: str = "", page: int = PAGE, progress: Progress | None = None) -> Rows:
    """Every row of the collection (or of ``filter``) read once, in pages: ids, paths, sha256 and float16 vectors."""
    total = store.count()
    pages = store.scan(filter, ("path", "sha256", "vector"), page, count=total)
    return gather(pages, None if filter else total, progress)


def searched(
    store: MilvusStore, rows: Rows, k: int = 10, token: str | None = None, progress: Progress | None = None
) -> Graph:
    """The ``k`` nearest others of every row of ``rows``; with the writes ``token`` they were read at (the whole
    collection), searched at least :data:`~.kept.KEEP_K` deep (and :data:`~.kept.SLACK` more) and kept with the index
    for the next run."""
    width = k if token is None else max(k, kept.KEEP_K)
    scores, found = nearest(rows.vectors, width if token is None else width + kept.SLACK, progress=progress)
    graph = Graph(rows.ids, rows.paths, rows.sha256, scores, found)
    if token is not None:
        kept.keep(store, graph, width, token)
    return graph.first(k)


def exact_duplicates(rows: Rows | Graph) -> list[DuplicateGroup]:
    """Groups of files with identical content (same sha256), largest first; O(N)."""
    with _many_objects():
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
    graph: Graph, normalize: float | None = None, floor: float = -np.inf
) -> tuple[list[Edge], dict[int, str]]:
    """The neighbour pairs of ``graph`` scored (normalised with β = ``normalize``: :func:`~.graph.normalised`), each
    pair once with its best score, those scoring at least ``floor``; and the paths of the images they join, by id.
    O(N·k) memory."""
    scores, found = graph.scores, graph.found
    if normalize is not None:
        scores = normalised(scores, found, normalize, SKIP)
    a, b, s = pairs(scores, found, floor)
    ids = graph.ids
    edges = [(int(ids[x]), int(ids[y]), float(v)) for x, y, v in zip(a.tolist(), b.tolist(), s.tolist(), strict=True)]
    paths = {int(ids[i]): graph.paths[i] for i in np.unique(np.concatenate([a, b])).tolist()}
    return edges, paths


def by_threshold(threshold: float) -> Judge:
    """The judge of unverified duplicates: a pair is joined when its score is at least ``threshold``."""

    def judge(edges: list[Edge], _paths: dict[int, str]) -> list[Pair]:
        with _many_objects():
            return [Pair(a, b, s) for a, b, s in edges if s >= threshold]

    return judge


def near_duplicates(
    graph: Graph, threshold: float = 0.9, normalize: float | None = None, judge: Judge | None = None
) -> list[DuplicateGroup]:
    """Groups of images joined by pairs of ``graph`` that ``judge`` accepts (default: score ≥ ``threshold``; every
    judge looks at pairs from ``threshold`` only), exact copies included, largest first."""
    with _many_objects():
        edges, paths = candidate_edges(graph, normalize, threshold)
    joined = (judge or by_threshold(threshold))(edges, paths)  # verification may take minutes: collected as usual
    with _many_objects():
        return group(paths, joined)


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
    """The connected groups of ``pairs`` (:func:`~.graph.components`), each with the pairs that joined it, largest
    first; members and pairs sorted."""
    if not pairs:
        return []
    ends = np.fromiter((x for p in pairs for x in (p.a, p.b)), dtype=np.int64, count=2 * len(pairs))
    nodes, at = np.unique(ends, return_inverse=True)
    label = components(len(nodes), at[0::2], at[1::2])
    by_node = np.argsort(label, kind="stable")
    node_starts = np.flatnonzero(np.diff(label[by_node], prepend=-1))
    pair_label = label[at[0::2]]
    by_pair = np.argsort(pair_label, kind="stable")
    pair_starts = np.searchsorted(pair_label[by_pair], label[by_node][node_starts])
    ids_of = nodes[by_node].tolist()
    node_ends = [*node_starts[1:].tolist(), len(nodes)]
    pair_ends = [*pair_starts[1:].tolist(), len(pairs)]
    order = by_pair.tolist()
    groups = []
    for s, e, ps, pe in zip(node_starts.tolist(), node_ends, pair_starts.tolist(), pair_ends, strict=True):
        ids = sorted(ids_of[s:e], key=paths.__getitem__)
        joined = sorted((pairs[j] for j in order[ps:pe]), key=attrgetter("a", "b"))
        groups.append(DuplicateGroup("near", [paths[i] for i in ids], min(p.score for p in joined), ids, joined))
    groups.sort(key=lambda g: (-len(g.paths), g.paths[0]))
    return groups


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
    near-duplicate groups that are not just one exact group. The whole collection's neighbour graph is read from the
    index when no row was written since a run kept it (:mod:`.kept`), else searched (:func:`searched`) and kept."""
    graph = None if filter else kept.load(store, k)
    if graph is None:
        token = None if filter else store.writes_token()
        rows = read_rows(store, filter, progress=progress)
        exact = exact_duplicates(rows)
        yield from exact
        graph = searched(store, rows, k, token, progress)
        del rows
    else:
        exact = exact_duplicates(graph)
        yield from exact
    exact_sets = {frozenset(g.paths) for g in exact}
    for g in near_duplicates(graph, threshold, normalize, judge):
        if frozenset(g.paths) not in exact_sets:
            yield g
