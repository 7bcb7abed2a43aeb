"""R-MAC region grid (Tolias, Sicre & Jégou, ICLR 2016), as in the cirtorch reference.

The grid depends only on the map shape, so it is computed once per (H, W, levels, overlap) and cached.
The arithmetic is done in float32 exactly like the reference (``torch.Tensor`` there), so that rounding in
``floor`` lands on the same cells for every shape.
"""

from __future__ import annotations

import functools
import math
import struct
from typing import NamedTuple

__all__ = ["Level", "rmac_levels", "rmac_regions"]


class Level(NamedTuple):
    """One R-MAC level: square regions of side ``size`` whose top-left corners are ``tops × lefts``."""

    size: int
    tops: tuple[int, ...]
    lefts: tuple[int, ...]


# Number of regions tried along the long side (the reference's candidate set).
_STEPS = (2, 3, 4, 5, 6, 7)


def _f32(v: float) -> float:
    """Round to the nearest float32. One float32 op = the exact double op rounded once (exact for ``*``;
    for ``/``, ``+``, ``-`` double has enough bits that this is the correctly rounded float32 result)."""
    return struct.unpack("f", struct.pack("f", v))[0]


def rmac_levels(height: int, width: int, levels: int = 3, overlap: float = 0.4) -> tuple[Level, ...]:
    """The square region levels of R-MAC for an ``height × width`` map (the global region not included).

    Level ``l`` (1-based) uses regions of side ``⌊2·min(H, W)/(l+1)⌋``; along the long side ``l + extra``
    regions are placed, ``extra`` (0 for square maps) chosen among 1…6 so that neighbouring regions overlap
    closest to ``overlap``. Levels whose side rounds to 0 are dropped. Pure Python (float32 emulated), so it
    is a constant for ``torch.jit.trace``; :mod:`poolvec.pooling.modules` marks it one for ``torch.compile`` (marking
    it here would import ``torch._dynamo``, ~1 s, on every start).
    """
    return _levels(int(height), int(width), int(levels), float(overlap))


@functools.lru_cache(maxsize=512)
def _levels(height: int, width: int, levels: int, overlap: float) -> tuple[Level, ...]:
    if height < 1 or width < 1:
        raise ValueError(f"rmac_levels: map must be at least 1x1, got {height}x{width}")
    short = min(height, width)
    sq = _f32(short * short)
    ovr = _f32(overlap)
    errors = []
    for n in _STEPS:
        stride = _f32(_f32(max(height, width) - short) / _f32(n - 1))
        ratio = _f32(_f32(sq - _f32(short * stride)) / sq)
        errors.append(abs(_f32(ratio - ovr)))
    best = errors.index(min(errors))  # first minimum, like torch.min
    extra_w = best + 1 if height < width else 0
    extra_h = best + 1 if height > width else 0

    out: list[Level] = []
    for level in range(1, levels + 1):
        side = math.floor(2 * short / (level + 1))
        if side == 0:
            continue
        half = math.floor(side / 2 - 1)
        tops = _starts(height, side, half, level + extra_h)
        lefts = _starts(width, side, half, level + extra_w)
        out.append(Level(side, tops, lefts))
    return tuple(out)


def _starts(length: int, side: int, half: int, count: int) -> tuple[int, ...]:
    """``count`` region starts spread evenly (reference rounding) along a side of ``length``."""
    step = _f32(0.0 if count == 1 else (length - side) / (count - 1))
    return tuple(math.floor(_f32(half + _f32(k * step))) - half for k in range(count))


def rmac_regions(height: int, width: int, levels: int = 3, overlap: float = 0.4) -> list[tuple[int, int, int, int]]:
    """All R-MAC regions as ``(top, left, height, width)``, the global region first, then level by level
    in row-major order — the order of cirtorch's ``roipool``."""
    regions = [(0, 0, height, width)]
    for lv in rmac_levels(height, width, levels, overlap):
        regions.extend((t, left, lv.size, lv.size) for t in lv.tops for left in lv.lefts)
    return regions
