"""Seeded image edits: the copies and near-copies an image meets once people repost it.

Self-tuning (:meth:`poolvec.extractor.Extractor.fit`) embeds each sampled image and a few edited copies of it, and
learns the projection under which an image and its copies coincide (``pooling``'s ``lw`` step). The edit
family follows the copy-detection benchmarks (DISC21, Douze et al. 2021; AugLy, Papakipos & Bitton 2022):
a few operations per copy, geometry first, then colour, overlays, rescaling and recompression.

Every edit is a pure function of the image and a ``numpy.random.Generator``; :func:`edits_of` seeds one
generator per (seed, image key), so the same image and seed give the same pixels in any order or thread.
The pixel operations are torchvision's and Pillow's; this module only draws their parameters.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from poolvec.extractor.errors import ExtractorError

#: Operations in the order they are applied within one edit (geometry, colour, overlays, then resampling).
EDIT_KINDS = ("crop", "rotate", "flip", "paste", "colour", "greyscale", "blur", "overlay", "downscale", "jpeg")
#: Smaller pictures are enlarged to this shorter side before editing (the network input is larger anyway).
MIN_SIDE = 64
_WORDS = ("SALE", "WOW", "repost", "#photo", "© 2025", "LOL", "look at this", "BREAKING", "new!", "omg", "via @")


@dataclass(frozen=True)
class EditPolicy:
    """Which operations make a copy, how many per copy, and their ranges (the defaults of issue 13).

    Args:
        kinds: operations to draw from (see :data:`EDIT_KINDS`).
        ops: (fewest, most) operations per copy, drawn uniformly, each operation at most once.
        crop_area: fraction of the area a random crop keeps.
        crop_aspect: aspect ratio range of the crop window (width / height, relative to the image's).
        rotate: largest rotation in degrees, either way (the rotated frame's corners are cropped away).
        paste_scale: width of the pasted picture relative to the canvas.
        downscale: factor of a downscaled copy (a thumbnail).
        jpeg_quality: JPEG quality range of a recompressed copy.
    """

    kinds: tuple[str, ...] = EDIT_KINDS
    ops: tuple[int, int] = (1, 3)
    crop_area: tuple[float, float] = (0.3, 1.0)
    crop_aspect: tuple[float, float] = (3 / 4, 4 / 3)
    rotate: float = 20.0
    paste_scale: tuple[float, float] = (0.35, 0.8)
    downscale: tuple[float, float] = (0.15, 0.6)
    jpeg_quality: tuple[int, int] = (20, 90)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        unknown = [k for k in self.kinds if k not in EDIT_KINDS]
        if unknown or not self.kinds:
            raise ExtractorError(f"edits: unknown operation(s) {unknown or '(none given)'}; choose from {EDIT_KINDS}")
        lo, hi = self.ops
        if not (1 <= lo <= hi):
            raise ExtractorError(f"edits: ops must be (fewest, most) with 1 ≤ fewest ≤ most, got {self.ops}")
        for name in ("crop_area", "paste_scale", "downscale"):
            a, b = getattr(self, name)
            if not (0 < a <= b <= 1):
                raise ExtractorError(f"edits: {name} must be a range within (0, 1], got {(a, b)}")
        a, b = self.jpeg_quality
        if not (1 <= a <= b <= 100):
            raise ExtractorError(f"edits: jpeg_quality must be a range within 1..100, got {(a, b)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (stored with a tuned index, so that people can see how it was tuned)."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EditPolicy:
        """Inverse of :meth:`to_dict`."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


Op = Callable[[Image.Image, np.random.Generator, EditPolicy, Sequence[Image.Image]], tuple[Image.Image, str]]


def crop(img: Image.Image, rng: np.random.Generator, p: EditPolicy, _: Sequence[Image.Image] = ()) -> tuple:
    """A random window keeping ``crop_area`` of the picture (torchvision's random-resized-crop parameters)."""
    area = rng.uniform(*p.crop_area) * img.width * img.height
    aspect = float(np.exp(rng.uniform(np.log(p.crop_aspect[0]), np.log(p.crop_aspect[1]))))
    w = min(img.width, max(8, round(np.sqrt(area * aspect * img.width / img.height))))
    h = min(img.height, max(8, round(area / max(w, 1))))
    x, y = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
    return TF.crop(img, y, x, h, w), f"crop {w}x{h}+{x}+{y}"


def rotate(img: Image.Image, rng: np.random.Generator, p: EditPolicy, _: Sequence[Image.Image] = ()) -> tuple:
    """Rotate by up to ``rotate`` degrees either way, then keep the largest upright window with no corners."""
    angle = float(rng.uniform(-p.rotate, p.rotate))
    out = TF.rotate(img, angle, interpolation=TF.InterpolationMode.BILINEAR)
    t = np.radians(abs(angle))
    w, h = img.size
    # largest axis-aligned rectangle of the same aspect inside the rotated frame
    s = min(w, h) / (min(w, h) * np.cos(t) + max(w, h) * np.sin(t)) if t > 0 else 1.0
    cw, ch = min(w, max(8, int(w * s))), min(h, max(8, int(h * s)))
    return TF.center_crop(out, [ch, cw]), f"rotate {angle:.1f}"


def flip(img: Image.Image, rng: np.random.Generator, p: EditPolicy, _: Sequence[Image.Image] = ()) -> tuple:
    """Mirror left–right."""
    return TF.horizontal_flip(img), "flip"


def paste(img: Image.Image, rng: np.random.Generator, p: EditPolicy, others: Sequence[Image.Image] = ()) -> tuple:
    """Paste the picture, shrunk, onto a larger canvas: plain, noise, or another picture of the collection."""
    cw = max(16, img.width)
    ch = max(16, round(cw * rng.uniform(0.6, 1.5)))
    s = float(rng.uniform(*p.paste_scale))
    sw = max(8, round(cw * s))
    sh = max(8, min(ch - 1, round(img.height * sw / img.width)))
    small = img.resize((sw, sh), Image.Resampling.BILINEAR)
    pick = rng.random()
    if others and pick < 0.4:
        other = others[int(rng.integers(0, len(others)))]
        canvas, kind = ImageOps.fit(other, (cw, ch), Image.Resampling.BILINEAR), "picture"
    elif pick < 0.7:
        base = rng.integers(0, 256, 3)
        noise = rng.normal(0, 30, (ch // 8 + 1, cw // 8 + 1, 3))
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        canvas, kind = Image.fromarray(arr).resize((cw, ch), Image.Resampling.BILINEAR), "noise"
    else:
        canvas, kind = Image.new("RGB", (cw, ch), tuple(int(v) for v in rng.integers(0, 256, 3))), "plain"
    x, y = int(rng.integers(0, cw - sw + 1)), int(rng.integers(0, ch - sh + 1))
    canvas = canvas.copy()
    canvas.paste(small, (x, y))
    return canvas, f"paste {s:.2f} on {kind} {cw}x{ch}"


def colour(img: Image.Image, rng: np.random.Generator, p: EditPolicy, _: Sequence[Image.Image] = ()) -> tuple:
    """Brightness, contrast and saturation changes and a hue shift (torchvision's colour-jitter operations)."""
    b, c, s = (float(v) for v in rng.uniform([0.6, 0.6, 0.3], [1.4, 1.5, 1.8]))
    hue = float(rng.uniform(-0.15, 0.15))
    out = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(img, b), c), s)
    return TF.adjust_hue(out, hue), f"colour b={b:.2f} c={c:.2f} s={s:.2f} h={hue:.2f}"


def greyscale(img: Image.Image, rng: np.random.Generator, p: EditPolicy, _: Sequence[Image.Image] = ()) -> tuple:
    """Drop the colour."""
    return TF.rgb_to_grayscale(img, num_output_channels=3), "greyscale"


def blur(img: Image.Image, rng: np.random.Generator, p: EditPolicy, _: Sequence[Image.Image] = ()) -> tuple:
    """Gaussian blur, radius 0.2–0.8 % of the longer side."""
    r = float(rng.uniform(0.002, 0.008) * max(img.size))
    return img.filter(ImageFilter.GaussianBlur(r)), f"blur {r:.1f}"


def overlay(img: Image.Image, rng: np.random.Generator, p: EditPolicy, _: Sequence[Image.Image] = ()) -> tuple:
    """A caption band or free text, and one or two stickers (emoji-like discs, stars, boxes), as on reposts."""
    out = img.copy()
    draw = ImageDraw.Draw(out, "RGBA")
    w, h = out.size
    size = max(10, int(h * rng.uniform(0.06, 0.15)))
    font = ImageFont.load_default(size=size)
    text = " ".join(str(t) for t in rng.choice(_WORDS, size=int(rng.integers(1, 3))))
    ink = tuple(int(v) for v in rng.integers(0, 256, 3))
    if rng.random() < 0.4:
        band = int(size * 1.5)
        top = 0 if rng.random() < 0.5 else h - band
        draw.rectangle((0, top, w, top + band), fill=(0, 0, 0, int(rng.integers(160, 256))))
        draw.text((int(w * 0.04), top + size // 4), text, fill=(255, 255, 255, 255), font=font)
    else:
        x, y = int(rng.uniform(0, 0.5) * w), int(rng.uniform(0, 0.85) * h)
        draw.text((x, y), text, fill=(*ink, 255), font=font, stroke_width=max(1, size // 15), stroke_fill="black")
    for _ in range(int(rng.integers(1, 3))):
        r = int(min(w, h) * rng.uniform(0.05, 0.15))
        cx, cy = int(rng.integers(r, max(r + 1, w - r))), int(rng.integers(r, max(r + 1, h - r)))
        fill = (*(int(v) for v in rng.integers(0, 256, 3)), int(rng.integers(180, 256)))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline="black", width=max(1, r // 10))
            draw.ellipse((cx - r // 2, cy - r // 3, cx - r // 4, cy), fill="black")  # a face, emoji-like
            draw.ellipse((cx + r // 4, cy - r // 3, cx + r // 2, cy), fill="black")
        elif shape == 1:
            radii = [r if k % 2 == 0 else r // 2 for k in range(10)]
            pts = [(cx + q * np.sin(k * np.pi / 5), cy - q * np.cos(k * np.pi / 5)) for k, q in enumerate(radii)]
            draw.polygon(pts, fill=fill)
        else:
            draw.rectangle((cx - r, cy - r // 2, cx + r, cy + r // 2), fill=fill)
    return out, f"overlay '{text}'"


def downscale(img: Image.Image, rng: np.random.Generator, p: EditPolicy, _: Sequence[Image.Image] = ()) -> tuple:
    """Shrink to a thumbnail (``downscale`` of the size)."""
    s = float(rng.uniform(*p.downscale))
    size = (max(16, round(img.width * s)), max(16, round(img.height * s)))
    return img.resize(size, Image.Resampling.BILINEAR), f"downscale {s:.2f}"


def jpeg(img: Image.Image, rng: np.random.Generator, p: EditPolicy, _: Sequence[Image.Image] = ()) -> tuple:
    """Re-encode as JPEG at a random quality in ``jpeg_quality``."""
    q = int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB"), f"jpeg q={q}"


OPS: dict[str, Op] = {
    "crop": crop,
    "rotate": rotate,
    "flip": flip,
    "paste": paste,
    "colour": colour,
    "greyscale": greyscale,
    "blur": blur,
    "overlay": overlay,
    "downscale": downscale,
    "jpeg": jpeg,
}


def random_edit(
    img: Image.Image, rng: np.random.Generator, policy: EditPolicy | None = None, others: Sequence[Image.Image] = ()
) -> tuple[Image.Image, list[str]]:
    """One edited copy: between ``policy.ops`` distinct operations, applied in :data:`EDIT_KINDS` order.

    Returns the RGB copy and a description of each operation. ``others`` are pictures ``paste`` may use as
    a background.
    """
    p = policy or EditPolicy()
    n = int(rng.integers(p.ops[0], min(p.ops[1], len(p.kinds)) + 1))
    chosen = sorted(rng.choice(len(p.kinds), size=n, replace=False), key=lambda i: EDIT_KINDS.index(p.kinds[i]))
    out, done = img.convert("RGB"), []
    if min(out.size) < MIN_SIDE:  # tiny pictures (icons, 1-pixel files) are edited at a usable size, but a strip
        # (10 000 × 10) is not blown up along its length: every edit's cost follows the longer side
        scale = min(MIN_SIDE / min(out.size), max(max(out.size), 4 * MIN_SIDE) / max(out.size))
        if scale > 1:
            out = out.resize((max(1, round(out.width * scale)), max(1, round(out.height * scale))))
    for i in chosen:
        out, desc = OPS[p.kinds[i]](out, rng, p, others)
        done.append(desc)
    return out, done


def edit_rng(seed: int, key: str) -> np.random.Generator:
    """The generator of one image's edits: a function of the seed and the image's key (its path), nothing else."""
    digest = hashlib.blake2b(f"{seed}\0{key}".encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def edits_of(
    img: Image.Image,
    count: int,
    *,
    seed: int = 0,
    key: str = "",
    policy: EditPolicy | None = None,
    others: Sequence[Image.Image] = (),
) -> list[Image.Image]:
    """``count`` edited copies of ``img``, reproducible from (``seed``, ``key``)."""
    rng = edit_rng(seed, key)
    return [random_edit(img, rng, policy, others)[0] for _ in range(count)]


__all__ = ["EDIT_KINDS", "OPS", "EditPolicy", "edit_rng", "edits_of", "random_edit"]
