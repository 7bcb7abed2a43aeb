"""The transform between two images from matched points: an affine map fitted robustly (RANSAC), its inliers, and
the region they cover in each image. Pure functions on arrays; the robust fit is OpenCV's ``estimateAffine2D``.

An affine map (rotation, scale, shear, translation) covers what copies undergo — crops, rescaling, pasting,
small rotations, framing; a mirrored copy is matched against the mirrored query (:mod:`.features`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fit:
    """A fitted map ``dst ≈ matrix @ [x, y, 1]`` and which matches agree with it."""

    matrix: np.ndarray  # [2, 3] float64
    inliers: np.ndarray  # [M] bool, per match

    @property
    def count(self) -> int:
        """Matches that agree with the map."""
        return int(self.inliers.sum())


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares affine map taking ``src`` [N, 2] to ``dst`` [N, 2] (N ≥ 3), in float64: ``[2, 3]``."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if len(src) < 3 or len(src) != len(dst):
        raise ValueError(f"an affine map needs at least 3 point pairs, got {len(src)} and {len(dst)}")
    design = np.hstack([src, np.ones((len(src), 1))])
    solution, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return solution.T


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` [N, 2] mapped by an affine ``matrix`` [2, 3]."""
    points = np.asarray(points, np.float64)
    return points @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]


def ransac_affine(
    src: np.ndarray, dst: np.ndarray, threshold: float, *, iterations: int = 2000, confidence: float = 0.995
) -> Fit | None:
    """The affine map that most matches agree with, within ``threshold`` pixels of reprojection error (RANSAC,
    Fischler & Bolles 1981, refined on its inliers by Levenberg–Marquardt: OpenCV's ``estimateAffine2D``); None with
    fewer than 3 matches or when no map is found. Deterministic (OpenCV seeds its RANSAC)."""
    import cv2

    if len(src) < 3:
        return None
    matrix, mask = cv2.estimateAffine2D(
        np.asarray(src, np.float32).reshape(-1, 1, 2),
        np.asarray(dst, np.float32).reshape(-1, 1, 2),
        method=cv2.RANSAC,
        ransacReprojThreshold=float(threshold),
        maxIters=int(iterations),
        confidence=float(confidence),
    )
    if matrix is None or mask is None or not np.isfinite(matrix).all():
        return None
    return Fit(np.asarray(matrix, np.float64), mask.ravel().astype(bool))


def scales(matrix: np.ndarray) -> tuple[float, float]:
    """The affine map's two singular values (its stretch along its principal axes)."""
    s = np.linalg.svd(np.asarray(matrix, np.float64)[:, :2], compute_uv=False)
    return float(s[0]), float(s[1])


def box(points: np.ndarray) -> tuple[float, float, float, float]:
    """The bounding box ``(x0, y0, x1, y1)`` of ``points`` [N, 2]."""
    points = np.asarray(points, np.float64)
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def spread(points: np.ndarray, size: tuple[int, int]) -> float:
    """The fraction of an image of ``size`` (width, height) covered by the bounding box of ``points``."""
    x0, y0, x1, y1 = box(points)
    return (x1 - x0) * (y1 - y0) / max(1.0, float(size[0]) * float(size[1]))


def agreement(
    thumb_a: np.ndarray,
    size_a: tuple[int, int],
    thumb_b: np.ndarray,
    size_b: tuple[int, int],
    matrix: np.ndarray,
    region: tuple[float, float, float, float],
    cells: int = 4,
) -> float:
    """How well image A, mapped into image B by ``matrix`` (A's pixels → B's pixels, at sizes ``size_a``/``size_b``),
    agrees with B over ``region`` (a box in B's pixels): the median, over a ``cells`` × ``cells`` grid of the region,
    of the zero-mean normalised cross-correlation of their grey thumbnails, cells without texture left out.

    Matches can agree with one map yet cover only what two different pictures share — a caption, a sticker, an
    app's frame around two different photos: their cells disagree where the pictures differ. 1 when A's content is
    B's, near 0 when only the matched marks are."""
    import cv2

    sa = np.diag([thumb_a.shape[1] / size_a[0], thumb_a.shape[0] / size_a[1], 1.0])
    sb = np.diag([thumb_b.shape[1] / size_b[0], thumb_b.shape[0] / size_b[1], 1.0])
    full = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    m = (sb @ full @ np.linalg.inv(sa))[:2]
    h, w = thumb_b.shape
    warped = cv2.warpAffine(thumb_a.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR, borderValue=-1.0)
    x0, y0 = int(region[0] * sb[0, 0]), int(region[1] * sb[1, 1])
    x1, y1 = int(np.ceil(region[2] * sb[0, 0])), int(np.ceil(region[3] * sb[1, 1]))
    scores = []
    for gy in range(cells):
        for gx in range(cells):
            cx0 = x0 + (x1 - x0) * gx // cells
            cx1 = x0 + (x1 - x0) * (gx + 1) // cells
            cy0 = y0 + (y1 - y0) * gy // cells
            cy1 = y0 + (y1 - y0) * (gy + 1) // cells
            a = warped[cy0:cy1, cx0:cx1]
            b = thumb_b[cy0:cy1, cx0:cx1].astype(np.float32)
            valid = a >= 0
            if valid.sum() < 4:
                continue
            av, bv = a[valid] - a[valid].mean(), b[valid] - b[valid].mean()
            norm = float(np.sqrt((av * av).sum() * (bv * bv).sum()))
            if norm < 1e-6 or min(av.std(), bv.std()) < 2.0:
                continue
            scores.append(float((av * bv).sum()) / norm)
    return float(np.median(scores)) if scores else 1.0


__all__ = ["Fit", "agreement", "apply", "box", "fit_affine", "ransac_affine", "scales", "spread"]
