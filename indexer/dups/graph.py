"""The neighbour graph of a collection, built in this process: its rows read once, in pages, and every image's
nearest others found by faiss over those vectors (one search per stored row through Milvus cost Milvus Lite a pass
over every row each; docs/NOTES.md, "dups at scale").

Exact search (every row against every other) up to :data:`EXACT_UPTO` rows; beyond, an inverted-file index
(IVF, Jégou et al. 2011) holding the vectors as float16, searched ``nprobe`` cells deep — copies are the nearest of
neighbours, which IVF finds first (measured: docs/BENCHMARKS.md, "dups at scale"). Memory: the vectors once as
float16 (2 bytes a dimension), the IVF's own float16 copy, and ``k`` neighbours a row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

#: Up to this many rows the neighbour graph is exact (faiss's flat inner-product search, BLAS in float32 chunks).
EXACT_UPTO = 10_000
#: Cells searched per query in the IVF beyond :data:`EXACT_UPTO`, and rows sampled per cell to train it: 100 000
#: rows shaped like ours, 1 % planted copies, found 1 000 of 1 000 in 20 s (16 cells: 33 s; docs/BENCHMARKS.md,
#: "dups at scale").
NPROBE = 8
TRAIN_PER_CELL = 20
#: Queries searched at once (each chunk converted from float16: CHUNK × dim × 4 bytes held).
CHUNK = 4096
#: Progress callback: ``(stage, done, total or None)``, stage "read" (rows) or "neighbours" (rows).
Progress = Callable[[str, int, int | None], None]


@dataclass
class Rows:
    """Every row of a collection (or of a filter) as this process holds it for ``dups``: ids, paths and sha256 in
    the order read, and the vectors as float16."""

    ids: np.ndarray
    paths: list[str]
    sha256: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def gather(pages: Iterator[list[dict]], total: int | None = None, progress: Progress | None = None) -> Rows:
    """The rows of ``pages`` (dicts with ``id``, ``path``, ``sha256`` and ``vector``), the vectors kept as float16 in
    one array grown by doubling (``total``: the expected count, to allocate once)."""
    vectors = np.empty((0, 0), dtype=np.float16)
    ids: list[int] = []
    paths: list[str] = []
    shas: list[str] = []
    for page in pages:
        if not page:
            continue
        block = np.asarray([r["vector"] for r in page], dtype=np.float32)
        n = len(ids)
        if n + len(block) > len(vectors):
            grown = np.empty((max(2 * len(vectors), n + len(block), total or 0), block.shape[1]), dtype=np.float16)
            if n:
                grown[:n] = vectors[:n]
            vectors = grown
        vectors[n : n + len(block)] = block
        for r in page:
            ids.append(int(r["id"]))
            paths.append(r["path"])
            shas.append(r["sha256"])
        if progress is not None:
            progress("read", len(ids), total)
    return Rows(np.asarray(ids, dtype=np.int64), paths, shas, vectors[: len(ids)])


def same_hash(rows: Rows) -> list[list[int]]:
    """Positions of rows sharing one sha256 (groups of two or more), each in ascending order: one sort of the hashes
    (numpy's, ~0.05 s at 100 000 rows against 0.3 s for a dict of lists)."""
    keys = np.asarray(rows.sha256)
    if len(keys) < 2:
        return []
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    starts = np.flatnonzero(np.concatenate([[True], ranked[1:] != ranked[:-1]]))
    sizes = np.diff(np.append(starts, len(keys)))
    return [
        order[s : s + n].tolist() for s, n in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True)
    ]


def nearest(
    vectors: np.ndarray, k: int, exact_upto: int = EXACT_UPTO, nprobe: int = NPROBE, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest other rows by inner product: (scores, positions), each N × k, best first; a missing
    neighbour has position −1 and score −inf. The row itself is left out by position, so an identical copy stays."""
    import faiss

    n, dim = vectors.shape
    k = min(k, max(n - 1, 0))
    if n == 0 or k == 0:
        return np.zeros((n, 0), dtype=np.float32), np.zeros((n, 0), dtype=np.int64)
    if n <= exact_upto:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = cells(n)
        index = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(dim), dim, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        index.cp.min_points_per_centroid = TRAIN_PER_CELL  # faiss warns below 39 a cell: measured enough
        sample = np.linspace(0, n - 1, min(n, TRAIN_PER_CELL * nlist)).astype(np.int64)
        index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
        index.nprobe = nprobe
    for s in range(0, n, CHUNK):
        index.add(np.ascontiguousarray(vectors[s : s + CHUNK], dtype=np.float32))
    scores = np.empty((n, k), dtype=np.float32)
    found = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, CHUNK):
        d, i = index.search(np.ascontiguousarray(vectors[s : s + CHUNK], dtype=np.float32), k + 1)
        own = i == np.arange(s, s + len(i))[:, None]
        # drop the row itself where it was found, else the (k+1)-th neighbour
        keep = ~own
        keep[~own.any(axis=1), k] = False
        scores[s : s + len(i)] = d[keep].reshape(len(i), k)
        found[s : s + len(i)] = i[keep].reshape(len(i), k)
        if progress is not None:
            progress("neighbours", s + len(i), n)
    scores[found < 0] = -np.inf
    return scores, found


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The connected components of ``n`` nodes joined by edges ``a[i]``–``b[i]``: each node's label, one per
    component (Shiloach and Vishkin 1982: roots hooked to the smaller root across each edge, then pointer jumping),
    a few numpy passes instead of a union-find in Python."""
    label = np.arange(n)
    while True:
        la, lb = label[a], label[b]
        if np.array_equal(la, lb):
            return label
        low = np.minimum(la, lb)
        np.minimum.at(label, la, low)
        np.minimum.at(label, lb, low)
        while not np.array_equal(jumped := label[label], label):
            label = jumped


def cells(n: int) -> int:
    """IVF cells for ``n`` rows: about 4·√n (faiss's guideline), a power of two."""
    return 2 ** round(math.log2(max(64, 4 * math.sqrt(n))))


def normalised(scores: np.ndarray, found: np.ndarray, beta: float, skip: int) -> np.ndarray:
    """Score normalisation (Pizzi et al., SSCD 2022), made symmetric: s − β·(b_a + b_b)/2, where b_x is the mean
    score of x's neighbours after the first ``skip`` (0 when it has no more)."""
    valid = found >= 0
    rest = valid[:, skip:]
    total = np.where(rest, scores[:, skip:], 0).sum(axis=1, dtype=np.float64)
    count = rest.sum(axis=1)
    background = np.divide(total, count, out=np.zeros(len(scores)), where=count > 0)
    other = background[np.where(valid, found, 0)]
    return (scores - beta * (background[:, None] + other) / 2).astype(np.float32)


def pairs(scores: np.ndarray, found: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each neighbour pair once, with its best score seen from either end, keeping those scoring ≥ ``floor``:
    positions ``a < b`` and scores, as arrays."""
    row = np.repeat(np.arange(len(found)), found.shape[1])
    col, s = found.ravel(), scores.ravel()
    keep = (col >= 0) & (s >= floor)
    row, col, s = row[keep], col[keep], s[keep]
    a, b = np.minimum(row, col), np.maximum(row, col)
    key = a * len(found) + b
    order = np.lexsort((-s, key))
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    pick = order[first]
    return a[pick], b[pick], s[pick]


__all__ = [
    "CHUNK",
    "EXACT_UPTO",
    "NPROBE",
    "Rows",
    "cells",
    "components",
    "gather",
    "nearest",
    "normalised",
    "pairs",
    "same_hash",
]
