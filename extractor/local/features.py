"""Local features of one image: keypoints (pixel positions) and a descriptor per keypoint.

Two families (measured side by side in docs/EVALUATION.md, "Verification"):

* RootSIFT (Lowe 2004; Arandjelović & Zisserman 2012): OpenCV's SIFT keypoints, descriptors L1-normalised and
  square-rooted so that their inner product is the Hellinger kernel. Scale- and rotation-invariant.
* cells of a CNN feature map: each cell of a ``[C, h, w]`` map is a descriptor at the centre of its receptive field
  (the product's own features, free when the map is computed anyway). Neither scale- nor rotation-invariant.

A mirrored copy is matched against the mirrored image's features (:func:`mirror`), which for SIFT are not the
keypoints flipped: the descriptors themselves change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps


@dataclass(frozen=True)
class LocalFeatures:
    """``points`` [N, 2] (x, y in pixels of an image of ``size``), ``descriptors`` [N, D] float32 unit rows."""

    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]  # (width, height) of the image the points are in
    mirrored: bool = False
    #: the image in grey at most :data:`THUMB` pixels on its longer side (for checking what the matches cover)
    thumb: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.points)

    def pack(self) -> bytes:
        """A compact form to store: points as uint16 (quarter pixels), descriptors as uint8 (×255, they are ≥ 0
        for RootSIFT) — 4 + D bytes per keypoint."""
        head = np.array([len(self), self.descriptors.shape[1] if len(self) else 0, *self.size], np.uint32)
        pts = np.clip(np.round(self.points * 4), 0, 65535).astype(np.uint16)
        desc = np.clip(np.round(self.descriptors * 255), 0, 255).astype(np.uint8)
        return head.tobytes() + pts.tobytes() + desc.tobytes()

    @classmethod
    def unpack(cls, data: bytes) -> LocalFeatures:
        """Inverse of :meth:`pack` (descriptors re-normalised to unit rows)."""
        n, d, w, h = (int(v) for v in np.frombuffer(data[:16], np.uint32))
        pts = np.frombuffer(data[16 : 16 + 4 * n], np.uint16).reshape(n, 2).astype(np.float32) / 4
        desc = np.frombuffer(data[16 + 4 * n : 16 + 4 * n + n * d], np.uint8).reshape(n, d).astype(np.float32)
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
        return cls(pts, desc, (w, h))


#: Longer side of the grey thumbnail kept with the features.
THUMB = 96


def grey_thumbnail(image: Image.Image, side: int = THUMB) -> np.ndarray:
    """``image`` in grey, its longer side at most ``side`` pixels, as uint8 [h, w]."""
    grey = image.convert("L")
    scale = min(1.0, side / max(grey.size))
    if scale < 1:
        grey = grey.resize(
            (max(1, round(grey.width * scale)), max(1, round(grey.height * scale))), Image.Resampling.BOX
        )
    return np.asarray(grey)


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """SIFT descriptors → RootSIFT: L1-normalised, square-rooted (unit L2 rows, Hellinger kernel by inner product)."""
    d = np.asarray(descriptors, np.float32)
    d = d / np.maximum(d.sum(axis=1, keepdims=True), 1e-12)
    return np.sqrt(d)


def sift(image: Image.Image, max_features: int = 1000) -> LocalFeatures:
    """RootSIFT keypoints of ``image`` (greyscale), the strongest ``max_features`` kept."""
    import cv2

    grey = np.asarray(image.convert("L"))
    detector = cv2.SIFT_create(nfeatures=max_features)
    keypoints, descriptors = detector.detectAndCompute(grey, None)
    thumb = grey_thumbnail(image)
    if descriptors is None or not keypoints:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), image.size, thumb=thumb)
    points = np.array([k.pt for k in keypoints], np.float32)
    return LocalFeatures(points, root_sift(descriptors), image.size, thumb=thumb)


def mirror(image: Image.Image) -> Image.Image:
    """The image flipped left–right (match a mirrored copy against these features)."""
    return ImageOps.mirror(image)


def unmirror_points(points: np.ndarray, width: int) -> np.ndarray:
    """Points found in the mirrored image, back in the image's own coordinates."""
    out = np.array(points, np.float64, copy=True)
    out[:, 0] = width - out[:, 0]
    return out


def grid(feature_map: np.ndarray, size: tuple[int, int]) -> LocalFeatures:
    """Cells of a ``[C, h, w]`` feature map as local features of an image of ``size`` (width, height): each cell's
    channels L2-normalised, at the centre of the cell's footprint."""
    fmap = np.asarray(feature_map, np.float32)
    c, h, w = fmap.shape
    desc = fmap.reshape(c, h * w).T
    desc = desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    ys, xs = np.mgrid[0:h, 0:w]
    points = np.stack([(xs.ravel() + 0.5) * size[0] / w, (ys.ravel() + 0.5) * size[1] / h], axis=1)
    return LocalFeatures(points.astype(np.float32), desc, size)


__all__ = ["LocalFeatures", "grid", "mirror", "root_sift", "sift", "unmirror_points"]
