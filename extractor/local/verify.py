"""Whether two images correspond: their local features matched, the matches fitted by one affine map, and the
map's support checked (enough inliers, spread over the image, a sane scale). A verified pair explains itself: the
inliers and the region they cover in each image.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from poolvec.extractor.local.features import LocalFeatures, unmirror_points
from poolvec.extractor.local.geometry import agreement, box, ransac_affine, scales, spread
from poolvec.extractor.local.matching import mutual_matches, ratio_matches


@dataclass(frozen=True)
class MatchPolicy:
    """When two images count as shown to correspond.

    Args:
        ratio: Lowe's ratio for a match (``None``: mutual nearest neighbours instead, for feature-map cells).
        threshold: RANSAC's reprojection error, as a fraction of the candidate image's longer side.
        min_inliers: matches that must agree with the map.
        min_spread: fraction of each image the inliers' bounding box must cover (a clump of matches on one repeated
            texture is not a copy); small, because a copy may be small in the other image (pasted into a collage).
        min_region: fraction of at least one of the images the matched region must cover: copied content is a good
            part of one of the pictures, while a logo, sticker or caption two different pictures share is small in
            both (measured: docs/EVALUATION.md, "Verification").
        max_scale: the map may shrink or enlarge by at most this factor (and its two axes differ by at most it).
        min_agreement: how well the two images' pixels must agree over the matched region once mapped
            (:func:`~.geometry.agreement`): matches on a caption, a sticker or an app's frame shared by two
            different pictures agree with one map, but the pictures do not.
    """

    ratio: float | None = 0.75
    threshold: float = 0.008
    min_inliers: int = 15
    min_spread: float = 0.001
    min_region: float = 0.04
    min_agreement: float = 0.3
    max_scale: float = 8.0


@dataclass(frozen=True)
class Correspondence:
    """The outcome of matching image A (query) with image B (candidate): ``verified``, the ``inliers`` count, the
    matched regions as boxes ``(x0, y0, x1, y1)`` in fractions of each image, whether A was mirrored, and the
    inlier points (pixels of each image) for drawing."""

    verified: bool
    inliers: int
    box_a: tuple[float, float, float, float] | None = None
    box_b: tuple[float, float, float, float] | None = None
    mirrored: bool = False
    points_a: np.ndarray | None = None
    points_b: np.ndarray | None = None
    agreement: float | None = None

    @classmethod
    def none(cls) -> Correspondence:
        return cls(False, 0)

    def swapped(self) -> Correspondence:
        """The same correspondence seen from B (B's boxes and points first; a mirrored A is B's mirror then)."""
        return replace(
            self, box_a=self.box_b, box_b=self.box_a, points_a=self.points_b, points_b=self.points_a, mirrored=False
        )


def correspond(a: LocalFeatures, b: LocalFeatures, policy: MatchPolicy = MatchPolicy()) -> Correspondence:
    """Match ``a``'s features with ``b``'s and check the geometry (see :class:`MatchPolicy`)."""
    if len(a) < 3 or len(b) < 3:
        return Correspondence.none()
    pairs = (
        ratio_matches(a.descriptors, b.descriptors, policy.ratio)
        if policy.ratio is not None
        else mutual_matches(a.descriptors, b.descriptors)
    )
    if len(pairs) < 3:
        return Correspondence(False, 0)
    src, dst = a.points[pairs[:, 0]], b.points[pairs[:, 1]]
    fit = ransac_affine(src, dst, policy.threshold * max(b.size))
    if fit is None:
        return Correspondence(False, 0)
    pa = np.asarray(src, np.float64)[fit.inliers]
    pb = np.asarray(dst, np.float64)[fit.inliers]
    if a.mirrored:
        pa = unmirror_points(pa, a.size[0])
    s_max, s_min = scales(fit.matrix)
    sane = 1 / policy.max_scale <= s_min and s_max <= policy.max_scale and s_max <= policy.max_scale * s_min
    covered = (spread(pa, a.size), spread(pb, b.size))
    verified = (
        fit.count >= policy.min_inliers
        and sane
        and min(covered) >= policy.min_spread
        and max(covered) >= policy.min_region
    )
    agree = None
    if verified and a.thumb is not None and b.thumb is not None:
        agree = agreement(a.thumb, a.size, b.thumb, b.size, fit.matrix, box(pb))
        verified = agree >= policy.min_agreement
    return Correspondence(
        verified,
        fit.count,
        _fraction(box(pa), a.size) if fit.count else None,
        _fraction(box(pb), b.size) if fit.count else None,
        a.mirrored,
        pa,
        pb,
        agree,
    )


def best(*outcomes: Correspondence) -> Correspondence:
    """The strongest of several attempts (e.g. the image and its mirror): verified first, then by inliers."""
    return max(outcomes, key=lambda c: (c.verified, c.inliers))


def _fraction(b: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[float, float, float, float]:
    w, h = float(size[0]), float(size[1])
    return (b[0] / w, b[1] / h, b[2] / w, b[3] / h)


__all__ = ["Correspondence", "MatchPolicy", "best", "correspond"]
