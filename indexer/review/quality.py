"""What makes one copy of a picture better than another: its size, JPEG quality, sharpness, format and date, and
whether it was made from another copy (downscaled, upscaled or recompressed from it).

The measures are read from the files (:func:`measure`, the I/O edge); the comparisons are pure functions over
greyscale arrays. JPEG quality is estimated the way ImageMagick and libjpeg's ``jpeg_quality_scaling`` define it:
the IJG quality whose scaled Annex K luminance table is nearest to the file's.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import Image

from poolvec.extractor.images import fitted_size, load_image

#: The JPEG standard's luminance quantisation table (ITU-T T.81 Annex K, Table K.1), in natural (row) order.
ANNEX_K_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
)
#: Formats by preference (higher first): camera RAW, HEIF, lossless, then lossy.
FORMAT_RANK = {
    "DNG": 5, "CR2": 5, "NEF": 5, "ARW": 5, "RAW": 5,
    "HEIF": 4, "HEIC": 4, "AVIF": 4,
    "PNG": 3, "TIFF": 3,
    "WEBP": 2, "JPEG": 1, "MPO": 1,
}  # fmt: skip
#: Longer side of the greyscale image the sharpness is measured on (a fixed size: comparable across copies).
SHARPNESS_SIDE = 512
#: Mean absolute difference (grey levels of 255) under which one copy is taken for a transform of another.
DERIVED_LEVELS = 2.5
#: Filters an enlargement is likely made with: the larger copy is compared with the smaller enlarged by each.
ENLARGERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
#: The larger copy is an enlargement when it differs from the smaller enlarged by less than this share of the
#: detail the smaller holds at the same ratio below its own size (scripts/eval_keeper.py: enlargements 0.06–0.78
#: but for one blurry picture, originals 0.67–3.1).
ENLARGED = 0.6
#: An enlargement claim this far inside its thresholds (a share of them) settles which copy came first even though
#: the smaller also looks like a reduction of the larger; weaker claims leave it to the dates (:mod:`.keeper`).
DECISIVE = 0.5
#: :func:`upscale_score` under which the larger of two copies is taken for an upscale of the smaller. Measured on
#: five photos of scikit-image, 1.05–2× (bilinear, bicubic, Lanczos): originals 1.75–13, upscales 0.19–0.69.
UPSCALED = 0.5


@dataclass(frozen=True)
class Measures:
    """One file's measures. ``quality`` is the estimated JPEG quality (100 for lossless formats); ``sharpness`` the
    variance of the Laplacian at :data:`SHARPNESS_SIDE`; ``taken`` the EXIF capture time, else the file's mtime."""

    path: str
    width: int
    height: int
    format: str
    quality: int
    sharpness: float
    taken: datetime
    taken_from_exif: bool
    bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def ijg_table(quality: int) -> np.ndarray:
    """The luminance table libjpeg writes for IJG ``quality`` (1–100): Annex K scaled, rounded, clamped to 1..255."""
    q = min(100, max(1, quality))
    scale = 5000 // q if q < 50 else 200 - 2 * q  # integer arithmetic, as jcparam.c
    return np.clip(np.floor((ANNEX_K_LUMINANCE * scale + 50) / 100), 1, 255)


def jpeg_quality(luminance: list[int] | np.ndarray) -> int:
    """The IJG quality whose luminance table is nearest (sum of absolute differences) to ``luminance`` (64 values in
    zig-zag order, as Pillow's ``img.quantization[0]``; compared as a sorted multiset, so that order does not
    matter). Exact for files written by libjpeg at a quality setting; the nearest for others."""
    mine = np.sort(np.asarray(luminance, np.float64).ravel())
    errors = [np.abs(np.sort(ijg_table(q).ravel()) - mine).sum() for q in range(1, 101)]
    return int(np.argmin(errors)) + 1


def sharpness(grey: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a greyscale image (float, 0–255): higher is sharper (Pech-Pacheco
    et al., 2000)."""
    g = np.asarray(grey, np.float64)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var()) if lap.size else 0.0


def grey(
    img: Image.Image, size: tuple[int, int] | None = None, resample: Image.Resampling = Image.Resampling.LANCZOS
) -> np.ndarray:
    """``img`` as a float32 greyscale array, resized (Lanczos unless told) to ``size`` when given."""
    g = img.convert("L")
    if size is not None and g.size != size:
        g = g.resize(size, resample)
    return np.asarray(g, np.float32)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two greyscale arrays of one shape, in grey levels."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def derived_from(copy: Image.Image, source: Image.Image, copy_jpeg: object = None) -> tuple[str, float] | None:
    """How ``copy`` looks made from ``source`` — ("downscaled" | "upscaled" | "recompressed", difference in grey
    levels) — or None. ``copy_jpeg`` is the copy's quantisation tables when it is a JPEG: the source re-encoded with
    them reproduces a copy recompressed from it almost exactly. Both directions can match (a recompression at a
    higher quality; a picture with no fine detail): :func:`source_of` keeps the closer one."""
    cw, ch = copy.size
    sw, sh = source.size
    if cw * ch < sw * sh:
        d = shrunk_difference(source, copy)
        return ("downscaled", d) if d is not None else None
    if cw * ch > sw * sh:
        if shrunk_difference(copy, source) is None:
            return None
        d = min(difference(grey(source, copy.size, k), grey(copy)) for k in ENLARGERS)
        strength = min(upscale_score(copy, source, d) / UPSCALED, d / (ENLARGED * detail_below(source, cw / sw)))
        return ("upscaled", strength) if strength < 1 else None
    if copy_jpeg is None:
        return None
    buf = io.BytesIO()
    source.convert("RGB").save(buf, "JPEG", qtables=copy_jpeg)
    d = difference(grey(Image.open(buf)), grey(copy))
    return ("recompressed", d) if d <= DERIVED_LEVELS / 5 else None


def shrunk_difference(large: Image.Image, small: Image.Image) -> float | None:
    """Grey levels between ``large`` shrunk to ``small``'s size and ``small``, when they are close enough for one to be
    a resize of the other (None otherwise): within :data:`DERIVED_LEVELS`, or within the detail ``small`` itself holds
    at the same ratio below its size (a detailed picture is resampled less exactly by another filter)."""
    d = difference(grey(large, small.size), grey(small))
    if d <= DERIVED_LEVELS:
        return d
    return d if d <= detail_below(small, max(large.width / small.width, large.height / small.height)) else None


def round_trip_loss(img: Image.Image, size: tuple[int, int]) -> float:
    """Grey levels lost by shrinking ``img`` to ``size`` and enlarging it back (Lanczos both ways): the detail it
    holds beyond that size."""
    g = Image.fromarray(grey(img).astype(np.uint8))
    back = g.resize(size, Image.Resampling.LANCZOS).resize(g.size, Image.Resampling.LANCZOS)
    return difference(grey(back), grey(g))


def detail_below(img: Image.Image, ratio: float) -> float:
    """The detail ``img`` holds between its size and ``ratio`` times smaller (:func:`round_trip_loss`; ≥ 0.001)."""
    below = (max(1, round(img.width / ratio)), max(1, round(img.height / ratio)))
    return max(round_trip_loss(img, below), 1e-3)


def upscale_score(large: Image.Image, small: Image.Image, enlarged: float) -> float:
    """How much ``large`` looks like an enlargement of ``small`` (lower: more): the detail ``large`` holds beyond
    ``small``'s size, relative to the detail ``small`` holds at the same ratio below its own size (natural
    pictures hold about as much at every scale; an enlargement holds little), times ``enlarged`` (grey levels
    between ``small`` enlarged and ``large``)."""
    base = detail_below(small, max(large.width / small.width, large.height / small.height))
    return round_trip_loss(large, small.size) / base * enlarged


def source_of(a: Image.Image, b: Image.Image, a_jpeg: object = None, b_jpeg: object = None) -> tuple[int, str] | None:
    """Which of two copies was made from the other: ``(0, how)`` when ``a`` is the source of ``b``, ``(1, how)`` when
    ``b`` is the source of ``a``, ``(-1, "resized")`` when one is a resize of the other but the pixels do not say
    which way (a picture without fine detail: the larger one might be an enlargement, or the smaller a reduction),
    None when neither looks made from the other. Of two recompressions, the closer reproduction wins."""
    b_from_a = derived_from(b, a, b_jpeg)
    a_from_b = derived_from(a, b, a_jpeg)
    if b_from_a and a_from_b:
        if "upscaled" in (b_from_a[0], a_from_b[0]):
            up = 0 if b_from_a[0] == "upscaled" else 1
            strength = (b_from_a if up == 0 else a_from_b)[1]
            return (up, "upscaled") if strength < DECISIVE else (-1, "resized")
        return (0, b_from_a[0]) if b_from_a[1] <= a_from_b[1] else (1, a_from_b[0])
    if b_from_a:
        return 0, b_from_a[0]
    if a_from_b:
        return 1, a_from_b[0]
    return None


def measure(path: str | os.PathLike[str]) -> tuple[Measures, Image.Image, object]:
    """A file's :class:`Measures`, its upright RGB image and its JPEG quantisation tables (None for other formats)."""
    name = os.fspath(path)
    st = os.stat(name)
    with Image.open(name) as raw:
        fmt = (raw.format or "").upper()
        tables = getattr(raw, "quantization", None) if fmt in ("JPEG", "MPO") else None
        exif = raw.getexif()
    img = load_image(name)
    taken, from_exif = _capture_time(exif), True
    if taken is None:
        taken, from_exif = datetime.fromtimestamp(st.st_mtime), False
    small = grey(img, fitted_size(*img.size, SHARPNESS_SIDE))
    m = Measures(
        path=name,
        width=img.width,
        height=img.height,
        format=fmt,
        quality=jpeg_quality(tables[0]) if tables else 100,
        sharpness=sharpness(small),
        taken=taken,
        taken_from_exif=from_exif,
        bytes=st.st_size,
    )
    return m, img, tables


def _capture_time(exif: Image.Exif) -> datetime | None:
    """EXIF DateTimeOriginal (else DateTimeDigitized, else DateTime), or None."""
    sub = exif.get_ifd(0x8769)
    for value in (sub.get(0x9003), sub.get(0x9004), exif.get(0x0132)):
        if isinstance(value, str):
            try:
                return datetime.strptime(value.strip("\x00 "), "%Y:%m:%d %H:%M:%S")
            except ValueError:
                continue
    return None


__all__ = ["Measures", "derived_from", "ijg_table", "jpeg_quality", "measure", "sharpness", "source_of"]
