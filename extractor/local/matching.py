"""Matching two sets of descriptors: Lowe's ratio test, and mutual nearest neighbours. Pure functions on arrays.

Descriptors are rows compared by inner product (unit vectors: RootSIFT, or L2-normalised feature-map cells), so
the nearest neighbour is the most similar row and squared distances are ``2 - 2·similarity``.
"""

from __future__ import annotations

import numpy as np


def _similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32) @ np.asarray(b, np.float32).T


def ratio_matches(a: np.ndarray, b: np.ndarray, ratio: float = 0.75) -> np.ndarray:
    """Lowe's ratio test (Lowe 2004): row i of ``a`` matches its nearest row j of ``b`` when
    ‖a_i − b_j‖ < ratio · ‖a_i − b_second‖. Returns ``[M, 2]`` index pairs (i, j), i ascending."""
    if len(a) == 0 or len(b) < 2:
        return np.zeros((0, 2), np.int64)
    sims = _similarities(a, b)
    top2 = np.argpartition(-sims, 1, axis=1)[:, :2]
    rows = np.arange(len(a))
    s0, s1 = sims[rows, top2[:, 0]], sims[rows, top2[:, 1]]
    best = np.where(s0 >= s1, top2[:, 0], top2[:, 1])
    first, second = np.maximum(s0, s1), np.minimum(s0, s1)
    d1 = np.sqrt(np.clip(2.0 - 2.0 * first, 0.0, None))
    d2 = np.sqrt(np.clip(2.0 - 2.0 * second, 0.0, None))
    keep = d1 < ratio * d2
    return np.stack([rows[keep], best[keep]], axis=1).astype(np.int64)


def mutual_matches(a: np.ndarray, b: np.ndarray, min_similarity: float = -1.0) -> np.ndarray:
    """Mutual nearest neighbours: i and j match when each is the other's most similar row (and their similarity is
    at least ``min_similarity``). Returns ``[M, 2]`` index pairs (i, j), i ascending."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.int64)
    sims = _similarities(a, b)
    ab, ba = sims.argmax(axis=1), sims.argmax(axis=0)
    rows = np.arange(len(a))
    keep = (ba[ab] == rows) & (sims[rows, ab] >= min_similarity)
    return np.stack([rows[keep], ab[keep]], axis=1).astype(np.int64)


__all__ = ["mutual_matches", "ratio_matches"]
