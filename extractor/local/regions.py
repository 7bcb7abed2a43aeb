"""Query-side regions: crops of a query searched on their own, so that a photo pasted into another one, or framed in
a collage or a screenshot, reaches the shortlist although the whole query's vector mostly describes its
surroundings (measured: docs/EVALUATION.md, "Verification")."""

from __future__ import annotations

from collections.abc import Sequence

#: (tiles per side, tile side as a fraction of the image's): a 2×2 grid of 60 % crops and a 3×3 grid of 40 % crops.
GRIDS: tuple[tuple[int, float], ...] = ((2, 0.6), (3, 0.4))
#: The centred crop's side, as a fraction.
CENTRE = 0.6

Box = tuple[float, float, float, float]


def region_boxes(grids: Sequence[tuple[int, float]] = GRIDS, centre: float | None = CENTRE) -> list[Box]:
    """Crop boxes ``(x0, y0, x1, y1)`` in fractions of the image: each grid's tiles, overlapping evenly from edge to
    edge, then the centred crop."""
    boxes: list[Box] = []
    for n, side in grids:
        step = (1.0 - side) / (n - 1) if n > 1 else 0.0
        for i in range(n):
            for j in range(n):
                boxes.append((j * step, i * step, j * step + side, i * step + side))
    if centre is not None:
        margin = (1.0 - centre) / 2
        boxes.append((margin, margin, 1.0 - margin, 1.0 - margin))
    return boxes


def pixel_box(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """A fractional box in pixels of a ``width`` × ``height`` image (at least one pixel wide and high)."""
    x0, y0 = round(box[0] * width), round(box[1] * height)
    x1, y1 = max(x0 + 1, round(box[2] * width)), max(y0 + 1, round(box[3] * height))
    return x0, y0, min(x1, width), min(y1, height)


__all__ = ["CENTRE", "GRIDS", "Box", "pixel_box", "region_boxes"]
