"""Local features of the images a verification needs, computed from their files at a fixed size and kept in memory
(least recently used dropped), keyed by the file's identity (path, size, mtime): a changed file is recomputed.

Nothing is stored with the index: features of candidates are computed when a search or ``dups`` needs them
(decision and measurements: docs/NOTES.md, "Verification"). They are kept as float16 descriptors (8 + 256 bytes
a keypoint, ~210 kB an image at 800 keypoints instead of ~420 kB as float32; 8-bit descriptors cost recall:
docs/NOTES.md), so that the default 2 048 images hold in ~0.45 GB.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from poolvec.extractor.errors import ImageError
from poolvec.extractor.images import fitted_size, load_image, to_rgb
from poolvec.extractor.local.features import LocalFeatures, mirror, sift
from poolvec.extractor.recipe import Runtime
from poolvec.indexer.verify.policy import Verification


def fitted(image: Image.Image, side: int) -> Image.Image:
    """``image`` shrunk (never enlarged) so that its longer side is at most ``side``."""
    size = fitted_size(*image.size, side)
    return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)


def open_image(source: Any, side: int, runtime: Runtime) -> Image.Image:
    """A file (decoded at a reduced scale where it can be), a PIL image or an HWC uint8 array, fitted to ``side``."""
    if isinstance(source, (str, os.PathLike)):
        target = lambda w, h: fitted_size(w, h, side)  # noqa: E731
        img = load_image(source, target=target, max_pixels=runtime.max_pixels, max_bytes=runtime.max_bytes)
    elif isinstance(source, Image.Image):
        img = to_rgb(source)
    elif isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim in (2, 3):
        img = to_rgb(Image.fromarray(source))
    else:
        raise TypeError(f"cannot take local features of a {type(source).__name__}")
    return fitted(img, side)


class FeatureCache:
    """RootSIFT features of indexed files (for :attr:`Verification.side`) and of queries, thread-safe."""

    def __init__(self, verification: Verification, runtime: Runtime) -> None:
        self.verification = verification
        self.runtime = runtime
        self._items: OrderedDict[tuple, _Packed | None] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max(1, runtime.workers), thread_name_prefix="poolvec-local")
        self.computed = 0
        _one_opencv_thread()

    def candidate(self, path: str) -> LocalFeatures | None:
        """An indexed file's features; None when it cannot be read any more."""
        return self._features(path, mirrored=False)

    def mirrored(self, path: str) -> LocalFeatures | None:
        """The features of an indexed file's mirror image (a mirrored copy matches them)."""
        return self._features(path, mirrored=True)

    def detailed(self, path: str) -> LocalFeatures | None:
        """An indexed file's features at a query's size and count (a second look at a pair that did not verify)."""
        return self._features(path, mirrored=False, detailed=True)

    def _features(self, path: str, mirrored: bool, detailed: bool = False) -> LocalFeatures | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (path, st.st_size, st.st_mtime_ns, mirrored, detailed)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return _unpacked(self._items[key])
        v = self.verification
        side, count = (v.query_side, v.query_features) if detailed else (v.side, v.features)
        try:
            img = open_image(path, side, self.runtime)
            feats: LocalFeatures | None = sift(mirror(img), count) if mirrored else sift(img, count)
            if mirrored and feats is not None:
                feats = replace(feats, mirrored=True)
        except (ImageError, OSError, ValueError):
            feats = None
        packed = None
        if feats is not None:
            bare = replace(feats, points=_NONE, descriptors=_NONE)  # size, mirrored, thumb
            packed = _Packed(feats.points, feats.descriptors.astype(np.float16), bare)
        with self._lock:
            self.computed += 1
            self._items[key] = packed
            while len(self._items) > v.cache:
                self._items.popitem(last=False)
        return _unpacked(packed)

    def candidates(self, paths: Iterable[str]) -> dict[str, LocalFeatures | None]:
        """Features of several files, computed in the runtime's threads (OpenCV and the decoders release the GIL)."""
        wanted = list(dict.fromkeys(paths))
        return dict(zip(wanted, self._pool.map(self.candidate, wanted), strict=True))

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """``fn`` over ``items`` in the cache's threads (matching and RANSAC release the GIL), in order."""
        return list(self._pool.map(fn, items))

    def query(self, source: Any) -> tuple[LocalFeatures, LocalFeatures] | None:
        """A query's features and its mirror's (a mirrored copy matches the mirror); None when it is not an image."""
        v = self.verification
        try:
            img = open_image(source, v.query_side, self.runtime)
        except (ImageError, OSError, ValueError, TypeError):
            return None
        plain, flipped = self._pool.map(lambda im: sift(im, v.query_features), (img, mirror(img)))
        return plain, replace(flipped, mirrored=True)

    def close(self) -> None:
        """Stop the threads."""
        self._pool.shutdown(wait=True)


_NONE = np.zeros((0, 0), np.float32)


class _Packed(NamedTuple):
    points: np.ndarray
    descriptors: np.ndarray  # float16
    features: LocalFeatures  # size, mirrored, thumb (its arrays are dropped: replaced by the two above)


def _unpacked(packed: _Packed | None) -> LocalFeatures | None:
    """Features as matched: the kept form widened (the same one every time, whether just computed or cached)."""
    if packed is None:
        return None
    return replace(packed.features, points=packed.points, descriptors=packed.descriptors.astype(np.float32))


def _one_opencv_thread() -> None:
    """OpenCV parallelises inside SIFT with its own threads; the cache runs one image per thread instead, beside
    torch's own threads (two thread pools on two cores ran slower than one: docs/DESIGN, CPU speed)."""
    import cv2

    cv2.setNumThreads(1)


__all__ = ["FeatureCache", "fitted", "fitted_size", "open_image"]
