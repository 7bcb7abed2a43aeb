"""Duplicate pairs shown to correspond: each candidate pair of the neighbour graph is verified by local features
(:mod:`poolvec.extractor.local`), so that look-alikes — two different pyramids, two photos of one beach — are not
grouped, and groups cannot chain through them.

Only pairs scoring at least ``floor`` (the threshold) are looked at. Such a pair is joined when it verifies; a pair
that cannot be verified (an image with too few keypoints: a smooth gradient, a blank page, a star field at low
resolution) is joined on its score alone, from ``unverifiable``; and a pair scoring at least ``sure`` is joined even
when it does not verify (global scores that high were copies in every set measured, whatever local features say:
colour inversion, heavy filters). Each image then keeps its strongest pair only (:func:`~.find.strongest`), so that
groups do not chain.
"""

from __future__ import annotations

from poolvec.extractor.local.features import LocalFeatures
from poolvec.extractor.local.verify import Correspondence, best, correspond
from poolvec.indexer.dups.find import Edge, Judge, Pair, strongest
from poolvec.indexer.verify.cache import FeatureCache
from poolvec.indexer.verify.policy import Verification

#: Pairs whose features are computed together (and held at once, besides the cache).
CHUNK = 512


def verified(
    cache: FeatureCache, policy: Verification, floor: float, unverifiable: float, sure: float, retry: float
) -> Judge:
    """The judge of verified duplicates (see the module's docstring); a pair scoring at least ``retry`` that does not
    verify gets a second look with a query's richer features (a copy small in its picture, its keypoints outnumbered
    by the picture's own)."""

    def decide(edge: Edge, feats: dict[str, LocalFeatures | None], paths: dict[int, str]) -> Pair | None:
        a, b, score = edge
        fa, fb = feats[paths[a]], feats[paths[b]]
        if fa is None or fb is None or min(len(fa), len(fb)) < policy.min_keypoints:
            return Pair(a, b, score) if score >= min(unverifiable, sure) else None
        c = correspond(fa, fb, policy.match)
        if not c.verified:
            flipped = cache.mirrored(paths[a])
            c = best(c, correspond(flipped, fb, policy.match)) if flipped is not None else c
        if not c.verified and score >= retry:
            c = best(c, _detailed(cache, paths[a], paths[b], policy))
        if c.verified:
            return Pair(a, b, score, True, c.inliers, c.box_a, c.box_b, c.agreement)
        return Pair(a, b, score) if score >= sure else None

    def judge(edges: list[Edge], paths: dict[int, str]) -> list[Pair]:
        todo = sorted(e for e in edges if e[2] >= floor)  # by image: its features are reused while cached
        pairs: list[Pair] = []
        for n in range(0, len(todo), CHUNK):  # a chunk's features computed, then its pairs matched, in the threads
            chunk = todo[n : n + CHUNK]
            feats = cache.candidates(paths[i] for e in chunk for i in e[:2])
            pairs += [p for p in cache.map(lambda e: decide(e, feats, paths), chunk) if p is not None]  # noqa: B023
        return strongest(pairs)

    return judge


def _detailed(cache: FeatureCache, a: str, b: str, policy: Verification) -> Correspondence:
    fa, fb = cache.detailed(a), cache.detailed(b)
    if fa is None or fb is None:
        return Correspondence.none()
    return best(correspond(fa, fb, policy.match), correspond(fb, fa, policy.match))


__all__ = ["verified"]
