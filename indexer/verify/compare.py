"""``poolvec compare A B``: whether two images are copies, with the evidence — the global similarity of their
embeddings, and the local correspondence (inliers, the matched region in each image, the matched points)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from poolvec.extractor.local.features import LocalFeatures, mirror, sift
from poolvec.extractor.local.verify import Correspondence, best, correspond
from poolvec.extractor.recipe import Runtime
from poolvec.indexer.verify.cache import open_image
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


def features(source: Any, policy: Verification, runtime: Runtime) -> tuple[LocalFeatures, LocalFeatures]:
    """An image's RootSIFT features at a query's size and count, and its mirror's."""
    img = open_image(source, policy.query_side, runtime)
    plain, flipped = sift(img, policy.query_features), sift(mirror(img), policy.query_features)
    return plain, LocalFeatures(flipped.points, flipped.descriptors, flipped.size, True, flipped.thumb)


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
    runtime = runtime or Runtime()
    fa, fa_mirror = features(a, policy, runtime)
    fb, _ = features(b, policy, runtime)
    forward = best(correspond(fa, fb, policy.match), correspond(fa_mirror, fb, policy.match))
    backward = correspond(fb, fa, policy.match)
    if backward.verified and (not forward.verified or backward.inliers > forward.inliers):
        forward = Correspondence(
            True,
            backward.inliers,
            backward.box_b,
            backward.box_a,
            False,
            backward.points_b,
            backward.points_a,
            backward.agreement,
        )
    return Comparison(str(a), str(b), forward, fa.size, fb.size, similarity)


__all__ = ["Comparison", "compare", "features"]
