"""``poolvec compare A B``: whether two images are copies, with the evidence — the global similarity of their
embeddings, and the local correspondence (inliers, the matched region in each image, the matched points)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from poolvec.extractor.local.features import sift
from poolvec.extractor.local.verify import Correspondence, best, correspond
from poolvec.extractor.recipe import Runtime
from poolvec.indexer.verify.cache import FeatureCache, open_image
from poolvec.indexer.verify.policy import Verification


@dataclass(frozen=True)
class Comparison:
    """The verdict on two images: ``correspondence`` (its points are in pixels of images of ``size_a``/``size_b``,
    A's already back in A's own frame when A was mirrored), and the cosine ``similarity`` of their embeddings
    (None when no embedder was given)."""

    a: str
    b: str
    correspondence: Correspondence
    size_a: tuple[int, int]
    size_b: tuple[int, int]
    similarity: float | None = None

    @property
    def verified(self) -> bool:
        return self.correspondence.verified

    def verdict(self) -> str:
        """One line for people: copies or not, and why."""
        c = self.correspondence
        if self.verified:
            how = ", mirrored" if c.mirrored else ""
            return f"copies: {c.inliers} matched points agree with one geometric transform{how}"
        if c.inliers:
            return f"not shown to be copies: only {c.inliers} matched points agree with one transform"
        return "not shown to be copies: no matched points agree with one transform"


def compare(
    a: Any,
    b: Any,
    policy: Verification | None = None,
    runtime: Runtime | None = None,
    similarity: float | None = None,
) -> Comparison:
    """Verify ``a`` against ``b`` (files, PIL images or arrays), as ``search`` verifies a query against a hit; both
    directions are tried (the smaller copy matches best as the query) and A's mirror."""
    policy = policy or Verification()
    cache = FeatureCache(policy, runtime or Runtime())
    try:
        images = [open_image(x, policy.query_side, cache.runtime) for x in (a, b)]  # an unreadable file says why
        fa, fa_mirror = cache.query(images[0])  # type: ignore[misc]  (a decoded image always has features)
        fb = sift(images[1], policy.query_features)
    finally:
        cache.close()
    forward = best(correspond(fa, fb, policy.match), correspond(fa_mirror, fb, policy.match))
    backward = correspond(fb, fa, policy.match)
    if backward.verified and (not forward.verified or backward.inliers > forward.inliers):
        forward = backward.swapped()
    return Comparison(str(a), str(b), forward, fa.size, fb.size, similarity)


__all__ = ["Comparison", "compare"]
