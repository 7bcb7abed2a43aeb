"""Build a near-duplicate / copy-detection benchmark from real photos that exist offline, deterministically.

    python scripts/make_copydet_set.py /tmp/copydet [--seed 0] [--originals 120] [--queries-per 3]
    python scripts/make_copydet_set.py /tmp/copydet-other --collection other --sources /tmp/copydet-other-src
    python scripts/make_copydet_set.py /tmp/copydet-hard --style hard --seed 1 [--held-out 0.2]
    python scripts/make_copydet_set.py /tmp/copydet-hard-other --collection other --sources /tmp/copydet-other-src \
        --style hard --seed 1

Sources: Debian wallpaper packages and ``opencv-doc``'s example photos (fetched with ``apt-get download`` and
unpacked with ``dpkg -x`` into ``--sources``, nothing installed), plus the photos bundled in scikit-image and
scikit-learn. ``--collection other`` builds a second, disjoint set from other packages (Stellarium's deep-sky
photographs, Tux Paint's photographed objects; no sample photos). Near-identical sources (dark/light variants,
stereo pairs, one wallpaper at several sizes) are collapsed first so that every database image is its own scene.

Output (paths in the JSON files are relative to OUT):

* ``db/NNNN.jpg``: the originals and the distractors (the other photos, plus random crops of them), shuffled
  together, longer side ≤ ``--max-side``;
* ``queries/qNNNN_<edit>.jpg``: seeded random edits of the originals (crop, flip, rotation, pasting onto a
  canvas, colour, greyscale, blur, overlay, rescale, JPEG), each a main edit plus one or two others, then
  re-encoded as JPEG;
* ``gt.json``: ``{query: [its original]}`` for ``poolvec eval pairs`` and ``scripts/compare.py``;
* ``manifest.json``: the seed, the source file of every database image and the edits of every query.

``--style hard`` makes harder queries, in the style of DISC21 (Facebook's Image Similarity Challenge 2021). Each
query's main edit is one of six families, equally often: ``paste`` (the original scaled to cover 25–60 % of
another real photo, at a random place), the framed ones — ``collage`` (a 2×2, 2×3, 3×2 or 3×3 grid with thin
borders, one tile the original cropped to the tile's shape, the others other photos) and ``screenshot`` (the
original at 40–70 % of the width of a synthetic app or browser window: title bar, side bar, text), alternately —,
``overlay`` (large text, emoji-like stickers and/or caption bands covering 15–30 % of the area), ``crop`` (keeping
10–25 % of the area), ``perspective`` (a homography moving every corner inwards by 5–20 % of the sides, another
photo or a colour behind) and ``combo`` (two of these chained, e.g. crop then paste, overlay then perspective);
then one or two milder edits (flip, colour, greyscale, blur, rescale to a longer side of 320–768 px, JPEG quality
20–50). The photos behind and beside the originals come from a held-out share of the sources (``--held-out``,
default 0.2), never used as originals or distractors, so that no query has two right answers; the manifest
lists them (``"held_out"``) and adds ``"style"``. Each query's edits are listed main edit first
(``held_out[k]`` names a held-out photo).

Sizes: ``wallpapers`` seed 0: 61 originals, 186 distractors, 183 queries; ``other`` seed 0: 66, 201, 198.
``--style hard --seed 1``: ``wallpapers`` 49 originals, 147 distractors (49 photos and 98 crops), 25 held out,
147 queries; ``other`` 53 originals, 159 distractors (53 and 106), 27 held out, 159 queries.

The same sources and seed give the same files, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sample_photos


@dataclass(frozen=True)
class Collection:
    """Where a set's photos come from: Debian packages, the folders in them that hold photos, what to skip."""

    packages: tuple[str, ...]
    photo_dirs: tuple[str, ...]
    exclude: re.Pattern[str]
    samples: bool = True  # add the scikit-image / scikit-learn photos
    min_bytes: int = 0  # smaller files are skipped (drawings and icons compress well, photos do not)
    per_dir: int | None = None  # keep at most this many files per folder (the largest)
    on_white: bool = False  # composite transparency on white (cut-outs) instead of dropping the alpha channel


#: ``wallpapers`` is the copy-detection set of record; ``other`` is a second, disjoint one (no package, file or
#: sample photo in common) of different subjects — deep-sky photographs from Stellarium and photographed
#: objects cut out on white from Tux Paint's stamps — for measuring how tuning transfers to other collections.
COLLECTIONS = {
    "wallpapers": Collection(
        packages=(
            "mate-backgrounds",
            "lomiri-wallpapers-16.04",
            "lomiri-wallpapers-20.04",
            "ukui-wallpapers",
            "gnome-backgrounds",
            "plasma-workspace-wallpapers",
            "sway-backgrounds",
            "lxqt-themes",
            "opencv-doc",
        ),
        photo_dirs=(
            "usr/share/backgrounds",
            "usr/share/wallpapers",
            "usr/share/lxqt/wallpapers",
            "usr/share/doc/opencv-doc/examples/data",
        ),
        # not photos (logos, charts, calibration boards, text) or frames of one scene
        exclude=re.compile(
            r"logo|chessboard|board|left\d|right\d|digits|text|sudoku|mask|gradient|alphabet|notes|ml\.png|pca_test|"
            r"origami|triangles|sway|kde-plasma|Float-into|ubuntukylin|Konqui|blob|ellipses|pic\d|aloeGT|shape_sample|"
            r"stripes|arc-colors|screenshot|symbolic|pixels|grid|vnc|truchet|"
            r"basketball|rubberwhale|graf3|leuvenB|box_in_scene|Suzanne2|aero3|aloeR|ela_modified|right\.jpg",
            re.IGNORECASE,
        ),
    ),
    "other": Collection(
        packages=("stellarium-data", "tuxpaint-stamps-default", "sddm-theme-maldives"),
        photo_dirs=(
            "usr/share/stellarium/nebulae/default",
            "usr/share/tuxpaint/stamps",
            "usr/share/sddm/themes/maldives",
        ),
        exclude=re.compile(r"maldives\.jpg|angle-down|rectangle|_back|-back", re.IGNORECASE),
        samples=False,
        on_white=True,
        min_bytes=60_000,
        per_dir=80,
    ),
}
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp"}
EDITS = ("crop", "flip", "rotate", "pad", "colour", "greyscale", "blur", "overlay", "rescale", "jpeg")


def fetch_debian(cache: Path, packages: tuple[str, ...]) -> Path:
    """Download and unpack the photo packages into ``cache`` (kept between runs); returns the unpacked root."""
    debs, root = cache / "debs", cache / "root"
    debs.mkdir(parents=True, exist_ok=True)
    for pkg in packages:
        if not list(debs.glob(f"{pkg}_*.deb")):
            res = subprocess.run(["apt-get", "download", pkg], cwd=debs, capture_output=True, text=True)
            if res.returncode != 0:
                print(f"warning: apt-get download {pkg} failed: {res.stderr.strip()[-200:]}", file=sys.stderr)
                continue
        for deb in sorted(debs.glob(f"{pkg}_*.deb")):
            marker = root / f".{deb.name}.done"
            if not marker.exists():
                subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
                marker.touch()
    return root


def _group(path: Path) -> str:
    """A key shared by one picture's variants (sizes, dark/light, stereo views)."""
    parts = path.parts
    if "wallpapers" in parts:  # plasma: usr/share/wallpapers/<Name>/contents/images/<WxH>.png
        return "wallpaper:" + parts[parts.index("wallpapers") + 1]
    stem = re.sub(r"(_\d+x\d+|-[dl]|_?(left|right)|[LRAB]|\d)$", "", path.stem)
    return stem.lower()


def debian_photos(root: Path, collection: Collection) -> dict[str, Path]:
    """Group key → the largest file of that group, over the photo folders of the unpacked packages."""
    best: dict[str, Path] = {}
    for folder in collection.photo_dirs:
        files = [
            path
            for path in sorted((root / folder).rglob("*"))
            if path.suffix.lower() in EXTENSIONS
            and not collection.exclude.search(str(path.relative_to(root)))
            and path.stat().st_size >= collection.min_bytes
        ]
        if collection.per_dir is not None:
            by_dir: dict[Path, list[Path]] = {}
            for path in files:
                by_dir.setdefault(path.parent, []).append(path)
            largest = {
                p
                for group in by_dir.values()
                for p in sorted(group, key=lambda f: -f.stat().st_size)[: collection.per_dir]
            }
            files = [p for p in files if p in largest]
        for path in files:
            key = _group(path)
            if key not in best or path.stat().st_size > best[key].stat().st_size:
                best[key] = path
    return best


def _signature(img: Image.Image) -> np.ndarray:
    """A 16×16 grey thumbnail, zero-mean unit-norm: |dot| near 1 means the same picture."""
    a = np.asarray(img.convert("L").resize((16, 16), Image.Resampling.BOX), dtype=np.float64).ravel()
    a -= a.mean()
    return a / (np.linalg.norm(a) + 1e-9)


def load_sources(
    cache: Path | None, max_side: int, min_side: int = 256, collection: Collection = COLLECTIONS["wallpapers"]
) -> list[tuple[str, Image.Image]]:
    """(source name, RGB image ≤ max_side) for every usable photo, sorted by name; variants, near-identical and
    nearly blank pictures removed."""
    items: list[tuple[str, Image.Image]] = []
    if cache is not None:
        root = fetch_debian(cache, collection.packages)
        for _key, path in sorted(debian_photos(root, collection).items()):
            try:
                with Image.open(path) as im:
                    im.draft("RGB", (max_side, max_side))
                    img = ImageOps.exif_transpose(im)
                    img = _on_white(img) if collection.on_white else img.convert("RGB")
            except OSError as e:
                print(f"warning: skipping {path}: {e}", file=sys.stderr)
                continue
            items.append((str(path.relative_to(root)), img))
    if collection.samples:
        for name, arr in sorted(sample_photos.sample_photos().items()):
            items.append((f"sample:{name}", Image.fromarray(arr)))
    kept: list[tuple[str, Image.Image]] = []
    sigs: list[np.ndarray] = []
    groups: set[str] = set()
    for name, img in sorted(items, key=lambda t: t[0]):
        group = _group(Path(name))
        if min(img.size) < min_side or group in groups or np.asarray(img.convert("L")).std() < 12:
            continue  # too small, a variant of a kept picture, or nearly blank
        img = _fit(img, max_side)
        sig = _signature(img)
        if any(abs(float(sig @ s)) > 0.9 for s in sigs):
            continue
        groups.add(group)
        kept.append((name, img))
        sigs.append(sig)
    return kept


def _on_white(img: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white (cut-out photos)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return img.convert("RGB")


def _fit(img: Image.Image, max_side: int) -> Image.Image:
    scale = max_side / max(img.size)
    if scale >= 1:
        return img
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.LANCZOS)


# -- edits: each takes (image, rng) and returns (image, description) ------------------------------------------
Edit = Callable[[Image.Image, np.random.Generator], tuple[Image.Image, str]]


def crop(
    img: Image.Image, rng: np.random.Generator, share: tuple[float, float] = (0.2, 0.6)
) -> tuple[Image.Image, str]:
    """Keep a random window of 20–60 % of the area (or of another ``share`` of it)."""
    area = rng.uniform(*share)
    aspect = rng.uniform(0.75, 1.33)
    w = min(img.width, round(img.width * np.sqrt(area * aspect)))
    h = min(img.height, round(img.height * np.sqrt(area / aspect)))
    x, y = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
    return img.crop((x, y, x + w, y + h)), f"crop {w}x{h}+{x}+{y}"


def flip(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Mirror left-right."""
    return ImageOps.mirror(img), "flip"


def rotate(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Rotate by 5–25 degrees either way, then crop most of the corners away."""
    angle = float(rng.uniform(5, 25) * rng.choice([-1, 1]))
    out = img.rotate(angle, resample=Image.Resampling.BICUBIC)
    m = 0.15
    return out.crop((int(img.width * m), int(img.height * m), int(img.width * (1 - m)), int(img.height * (1 - m)))), (
        f"rotate {angle:.1f}"
    )


def pad(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Paste the picture, shrunk to 35–70 % of the width, onto a larger canvas of another shape."""
    cw = img.width
    ch = round(cw * rng.uniform(0.6, 1.6))
    s = float(rng.uniform(0.35, 0.7))
    small = img.resize((max(8, round(img.width * s)), max(8, min(ch - 1, round(img.height * s)))))
    base = rng.integers(0, 256, 3)
    noise = rng.normal(0, 25, (ch // 8 + 1, cw // 8 + 1, 3))
    canvas = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).resize((cw, ch))
    x, y = int(rng.integers(0, cw - small.width + 1)), int(rng.integers(0, ch - small.height + 1))
    canvas.paste(small, (x, y))
    return canvas, f"pad {s:.2f} at {x},{y} on {cw}x{ch}"


def colour(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Brightness, contrast and saturation changes plus a hue shift."""
    b, c, s = (float(v) for v in rng.uniform([0.6, 0.6, 0.3], [1.4, 1.5, 1.8]))
    hue = int(rng.integers(15, 50) * rng.choice([-1, 1]))
    out = ImageEnhance.Color(ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(b)).enhance(c)).enhance(s)
    hsv = np.asarray(out.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + hue) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB"), f"colour b={b:.2f} c={c:.2f} s={s:.2f} hue={hue}"


def greyscale(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Drop the colour."""
    return ImageOps.grayscale(img).convert("RGB"), "greyscale"


def blur(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Gaussian blur, radius 0.2–0.6 % of the longer side."""
    r = float(rng.uniform(0.002, 0.006) * max(img.size))
    return img.filter(ImageFilter.GaussianBlur(r)), f"blur {r:.1f}"


def overlay(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """A caption band or text and an opaque sticker, as on reposted pictures."""
    out = img.copy()
    draw = ImageDraw.Draw(out, "RGBA")
    w, h = out.size
    words = ["SALE", "WOW", "repost", "#photo", "© 2024", "LOL", "look at this", "BREAKING"]
    size = max(12, int(h * rng.uniform(0.06, 0.14)))
    font = ImageFont.load_default(size=size)
    text = " ".join(rng.choice(words, size=int(rng.integers(1, 3))))
    colour_ = tuple(int(v) for v in rng.integers(0, 256, 3))
    if rng.random() < 0.5:
        band = int(size * 1.5)
        top = 0 if rng.random() < 0.5 else h - band
        draw.rectangle((0, top, w, top + band), fill=(0, 0, 0, 255))
        draw.text((int(w * 0.05), top + size // 4), text, fill=(255, 255, 255, 255), font=font)
        kind = "band"
    else:
        x, y = int(rng.uniform(0, 0.5) * w), int(rng.uniform(0, 0.8) * h)
        draw.text((x, y), text, fill=(*colour_, 255), font=font, stroke_width=max(1, size // 15), stroke_fill="black")
        kind = "text"
    sw, sh = int(w * rng.uniform(0.1, 0.25)), int(h * rng.uniform(0.1, 0.25))
    sx, sy = int(rng.integers(0, w - sw)), int(rng.integers(0, h - sh))
    shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
    shape((sx, sy, sx + sw, sy + sh), fill=(*colour_[::-1], int(rng.integers(160, 256))))
    return out, f"overlay {kind} '{text}'"


def rescale(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Shrink to 15–50 % (a thumbnail)."""
    s = float(rng.uniform(0.15, 0.5))
    size = (max(16, round(img.width * s)), max(16, round(img.height * s)))
    return img.resize(size, Image.Resampling.BILINEAR), f"rescale {s:.2f}"


def jpeg(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Heavy JPEG compression (quality 8–25), applied as an edit before the final save."""
    import io

    q = int(rng.integers(8, 26))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    buf.seek(0)
    return Image.open(buf).convert("RGB"), f"jpeg q={q}"


EDIT_FNS: dict[str, Edit] = {
    "crop": crop,
    "flip": flip,
    "rotate": rotate,
    "pad": pad,
    "colour": colour,
    "greyscale": greyscale,
    "blur": blur,
    "overlay": overlay,
    "rescale": rescale,
    "jpeg": jpeg,
}


def make_query(img: Image.Image, main: str, rng: np.random.Generator) -> tuple[Image.Image, list[str]]:
    """Apply the main edit, one or two other ones, in a fixed order (geometry first)."""
    others = [e for e in EDITS if e != main]
    names = [main, *(str(e) for e in rng.choice(others, size=int(rng.integers(1, 3)), replace=False))]
    names.sort(key=EDITS.index)
    done = []
    for name in names:
        img, desc = EDIT_FNS[name](img, rng)
        done.append(desc)
    return img, done


# -- the hard style (DISC21-like): main edits take (image, rng, held-out photos) -------------------------------
HardEdit = Callable[[Image.Image, np.random.Generator, Sequence[Image.Image]], tuple[Image.Image, str]]

#: main edits of ``--style hard``, each as often as the others; ``framed`` alternates collage and screenshot
HARD_FAMILIES = ("paste", "framed", "overlay", "crop", "perspective", "combo")
FRAMED = ("collage", "screenshot")
#: the milder extra edits (one or two per query, after the main edit, in this order)
HARD_EXTRAS = ("flip", "colour", "greyscale", "blur", "rescale", "jpeg")
#: two main edits chained by ``combo`` (in this order; at most one of them puts the picture into another one)
COMBOS = (
    ("crop", "overlay"),
    ("crop", "perspective"),
    ("crop", "paste"),
    ("crop", "collage"),
    ("crop", "screenshot"),
    ("overlay", "perspective"),
    ("overlay", "paste"),
    ("overlay", "collage"),
    ("overlay", "screenshot"),
    ("perspective", "paste"),
    ("perspective", "collage"),
    ("perspective", "screenshot"),
)
GRIDS = ((2, 2), (2, 3), (3, 2), (3, 3))
WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "elit", "home", "news", "photos", "share", "like", "today", "more")
CAPTIONS = ("WOW", "SALE", "LOL", "OMG", "BREAKING", "repost", "#photo", "© 2024", "look at this", "NO WAY", "50% OFF")
#: (background, panel, ink, faint) of the light and the dark UI theme
THEMES = (
    ((250, 250, 250), (236, 238, 241), (33, 37, 41), (134, 142, 150)),
    ((32, 33, 36), (48, 49, 54), (232, 234, 237), (154, 160, 166)),
)
ACCENTS = ((25, 118, 210), (56, 142, 60), (211, 47, 47), (123, 31, 162), (245, 124, 0), (0, 121, 107), (69, 90, 100))


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A random RGB colour."""
    r, g, b = (int(v) for v in rng.integers(0, 256, 3))
    return r, g, b


def _cover(photo: Image.Image, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """The largest window of ``photo`` with the shape of ``size``, at a random place, resized to ``size``."""
    w, h = size
    cw, ch = min(photo.width, round(photo.height * w / h)), min(photo.height, round(photo.width * h / w))
    x, y = int(rng.integers(0, photo.width - cw + 1)), int(rng.integers(0, photo.height - ch + 1))
    return photo.crop((x, y, x + cw, y + ch)).resize(size, Image.Resampling.LANCZOS)


def _line(draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, width: float, rng: np.random.Generator) -> str:
    """Random words, as many as fit in ``width`` pixels (at least one)."""
    words = [str(rng.choice(WORDS))]
    while True:
        word = str(rng.choice(WORDS))
        if draw.textlength(" ".join([*words, word]), font=font) > width:
            return " ".join(words)
        words.append(word)


def paste(img: Image.Image, rng: np.random.Generator, pool: Sequence[Image.Image]) -> tuple[Image.Image, str]:
    """Scale the picture to cover 25–60 % of another real photo (a held-out one) and paste it at a random place."""
    k = int(rng.integers(len(pool)))
    aspect = img.width / img.height * float(rng.uniform(0.75, 1.33))  # the background's shape
    side = max(img.size)
    bw, bh = (side, max(16, round(side / aspect))) if aspect >= 1 else (max(16, round(side * aspect)), side)
    canvas = _cover(pool[k], (bw, bh), rng)
    s = np.sqrt(float(rng.uniform(0.25, 0.6)) * bw * bh / (img.width * img.height))
    pw, ph = min(bw, max(8, round(img.width * s))), min(bh, max(8, round(img.height * s)))
    x, y = int(rng.integers(0, bw - pw + 1)), int(rng.integers(0, bh - ph + 1))
    canvas.paste(img.resize((pw, ph), Image.Resampling.LANCZOS), (x, y))
    return canvas, f"paste {pw * ph / (bw * bh):.2f} {pw}x{ph}+{x}+{y} on held_out[{k}] {bw}x{bh}"


def collage(img: Image.Image, rng: np.random.Generator, pool: Sequence[Image.Image]) -> tuple[Image.Image, str]:
    """A grid of 4–9 tiles with thin borders: the picture (cropped to the tile's shape) and held-out photos."""
    rows, cols = GRIDS[int(rng.integers(len(GRIDS)))]
    aspect = img.width / img.height * float(rng.uniform(0.8, 1.25))  # the tiles' shape
    side = max(img.size)
    b = max(2, round(side * float(rng.uniform(0.004, 0.012))))
    if cols * aspect >= rows:  # wider than high: the width is ``side``
        tw = (side - (cols + 1) * b) // cols
        th = max(8, round(tw / aspect))
    else:
        th = (side - (rows + 1) * b) // rows
        tw = max(8, round(th * aspect))
    border = ((255, 255, 255), (0, 0, 0), (24, 24, 24), (240, 240, 240))[int(rng.integers(4))]
    canvas = Image.new("RGB", (cols * tw + (cols + 1) * b, rows * th + (rows + 1) * b), border)
    spot = int(rng.integers(rows * cols))
    others = iter(rng.choice(len(pool), size=rows * cols - 1, replace=len(pool) < rows * cols - 1).tolist())
    used = []
    for t in range(rows * cols):
        if t == spot:
            tile = _cover(img, (tw, th), rng)
        else:
            used.append(next(others))
            tile = _cover(pool[used[-1]], (tw, th), rng)
        canvas.paste(tile, (b + (t % cols) * (tw + b), b + (t // cols) * (th + b)))
    return canvas, f"collage {rows}x{cols} tile {spot} {tw}x{th} border {b} with held_out{used}"


def screenshot(img: Image.Image, rng: np.random.Generator, pool: Sequence[Image.Image]) -> tuple[Image.Image, str]:
    """The picture at 40–70 % of the width of a synthetic app or browser window (title bar, side bar, text)."""
    w = max(img.size)
    share = float(rng.uniform(0.4, 0.7))
    iw = round(w * share)
    ih = max(8, round(iw * img.height / img.width))
    dark = bool(rng.random() < 0.4)
    bg, panel, ink, faint = THEMES[int(dark)]
    accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
    browser = bool(rng.random() < 0.5)
    left = bool(rng.random() < 0.6)
    m = round(w * 0.02)
    tb = round(w * float(rng.uniform(0.035, 0.055)))  # title bar
    ab = round(tb * 1.2) if browser else 0  # address bar
    sb = round(w * float(rng.uniform(0.15, 0.24)))  # side bar
    fs = max(10, round(w * float(rng.uniform(0.016, 0.022))))
    font, head = ImageFont.load_default(size=fs), ImageFont.load_default(size=round(fs * 1.6))
    top = tb + ab
    y_img = top + m + round(fs * 2.2) + m
    n_text = int(rng.integers(2, 6))
    h = max(round(w * float(rng.uniform(0.56, 0.7))), y_img + ih + m + round(n_text * fs * 1.5) + m)
    canvas = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, w, tb), fill=panel if browser else accent)
    r = tb * 0.22
    if rng.random() < 0.5:  # round window buttons on the left
        for i, c in enumerate(((255, 95, 86), (255, 189, 46), (39, 201, 63))):
            cx = tb * (0.6 + 0.7 * i)
            draw.ellipse((cx - r, tb / 2 - r, cx + r, tb / 2 + r), fill=c)
    else:  # minimise, maximise, close on the right
        for i in range(3):
            cx = w - tb * (0.7 + 1.1 * i)
            draw.rectangle((cx - r, tb / 2 - r, cx + r, tb / 2 + r), outline=ink if browser else bg, width=2)
    title_font = ImageFont.load_default(size=max(9, round(tb * 0.45)))
    draw.text((w * 0.3, tb * 0.25), _line(draw, title_font, w * 0.3, rng), fill=ink if browser else bg, font=title_font)
    if browser:
        draw.rounded_rectangle((w * 0.1, tb + ab * 0.15, w * 0.85, tb + ab * 0.85), radius=ab * 0.35, fill=bg)
        url = f"https://www.{rng.choice(WORDS)}{rng.choice(WORDS)}.com/{rng.choice(WORDS)}/{int(rng.integers(1e6))}"
        draw.text((w * 0.12, tb + ab * 0.3), url, fill=faint, font=ImageFont.load_default(size=round(ab * 0.4)))
    x0 = 0 if left else w - sb
    draw.rectangle((x0, top, x0 + sb, h), fill=panel)
    for i in range(int(rng.integers(5, 10))):
        y = top + m + i * fs * 2.2
        draw.rectangle((x0 + m, y + fs * 0.1, x0 + m + fs, y + fs * 1.1), fill=accent)
        draw.text((x0 + m + fs * 1.6, y), _line(draw, font, sb - 3 * m - fs * 1.6, rng), fill=ink, font=font)
    cx, cw = (sb + m if left else m), w - sb - 2 * m
    draw.text((cx, top + m), _line(draw, head, cw, rng), fill=ink, font=head)
    iw = min(iw, cw)
    x = cx + int(rng.integers(0, cw - iw + 1))
    canvas.paste(img.resize((iw, ih), Image.Resampling.LANCZOS), (x, y_img))
    for i in range(n_text):
        draw.text((cx, y_img + ih + m + i * fs * 1.5), _line(draw, font, cw, rng), fill=faint, font=font)
    kind = f"{'dark' if dark else 'light'} {'browser' if browser else 'app'}"
    return canvas, f"screenshot {iw / w:.2f} {iw}x{ih}+{x}+{y_img} {kind} {w}x{h}"


def _emoji(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], kind: int) -> None:
    """An emoji-like sticker in ``box``: a smiley, a heart or a star."""
    x0, y0, x1, y1 = box
    d = x1 - x0
    if kind == 0:
        draw.ellipse(box, fill=(255, 204, 51, 255), outline=(120, 80, 0, 255), width=max(1, round(d / 30)))
        for ex in (0.33, 0.67):
            draw.ellipse(
                (x0 + d * (ex - 0.07), y0 + d * 0.28, x0 + d * (ex + 0.07), y0 + d * 0.45), fill=(60, 40, 0, 255)
            )
        draw.arc(
            (x0 + d * 0.22, y0 + d * 0.3, x1 - d * 0.22, y1 - d * 0.18),
            20,
            160,
            fill=(60, 40, 0, 255),
            width=max(2, round(d / 16)),
        )
    elif kind == 1:
        red = (230, 30, 70, 255)
        draw.ellipse((x0, y0 + d * 0.05, x0 + d * 0.55, y0 + d * 0.55), fill=red)
        draw.ellipse((x1 - d * 0.55, y0 + d * 0.05, x1, y0 + d * 0.55), fill=red)
        draw.polygon([(x0 + d * 0.03, y0 + d * 0.4), (x1 - d * 0.03, y0 + d * 0.4), (x0 + d * 0.5, y1)], fill=red)
    else:
        angles = np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, d / 2, d / 5)
        cx, cy = x0 + d / 2, y0 + d / 2
        draw.polygon(
            [(cx + r * np.cos(a), cy - r * np.sin(a)) for a, r in zip(angles, radii, strict=True)],
            fill=(255, 196, 0, 255),
            outline=(150, 90, 0, 255),
        )


def heavy_overlay(img: Image.Image, rng: np.random.Generator, pool: Sequence[Image.Image]) -> tuple[Image.Image, str]:
    """Large text, emoji-like stickers and/or a caption band covering 15–30 % of the picture."""
    w, h = img.size
    target = float(rng.uniform(0.17, 0.3))  # covered: between target - 0.02 (≥ 15 %) and target
    out = img.convert("RGBA")
    covered = np.zeros((h, w), dtype=bool)
    parts = []
    first_top = None  # where a first caption band went (top or bottom edge)
    if rng.random() < 0.4:  # a caption band first, under the target
        first_top = bool(rng.random() < 0.5)
        covered = _band(out, covered, first_top, max(8, round(h * target * float(rng.uniform(0.3, 0.7)))), rng)
        parts.append("band")
    for _ in range(12):
        if covered.mean() >= target - 0.02:
            break
        sticker = bool(rng.random() < 0.4)
        scale = float(rng.uniform(0.12, 0.3) if sticker else rng.uniform(0.08, 0.18))
        kind, text = int(rng.integers(3)), " ".join(rng.choice(CAPTIONS, size=int(rng.integers(1, 3))).tolist())
        colour_, stroke = _colour(rng), ((0, 0, 0), (255, 255, 255))[int(rng.integers(2))]
        fx, fy = float(rng.random()), float(rng.random())
        for _try in range(5):  # shrink until it fits under the target
            layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
            draw = ImageDraw.Draw(layer)
            if sticker:
                d = scale * min(w, h)
                x, y = fx * (w - d), fy * (h - d)
                _emoji(draw, (x, y, x + d, y + d), kind)
            else:  # wider than the picture: from the left edge, cut off on the right
                font, sw = ImageFont.load_default(size=max(10, round(scale * h))), max(1, round(scale * h / 12))
                x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font, stroke_width=sw)
                x, y = fx * max(0, w - (x1 - x0)) - x0, fy * max(0, h - (y1 - y0)) - y0
                draw.text((x, y), text, fill=(*colour_, 255), font=font, stroke_width=sw, stroke_fill=stroke)
            mask = np.asarray(layer.getchannel("A")) > 0
            if (covered | mask).mean() <= target:
                out.alpha_composite(layer)
                covered |= mask
                parts.append(f"emoji {('smiley', 'heart', 'star')[kind]}" if sticker else f"text '{text}'")
                break
            scale *= 0.75
    if covered.mean() < target - 0.02:  # top up with a caption band at the other edge
        top = (not first_top) if first_top is not None else bool(rng.random() < 0.5)
        rows = (~covered).sum(axis=1)
        gain = np.cumsum(rows if top else rows[::-1])
        height = min(h, int(np.searchsorted(gain, (target - covered.mean()) * w * h)) + 1)
        covered = _band(out, covered, top, height, rng)
        parts.append("band")
    return out.convert("RGB"), f"overlay {covered.mean():.2f} " + ", ".join(parts)


def _band(out: Image.Image, covered: np.ndarray, top: bool, height: int, rng: np.random.Generator) -> np.ndarray:
    """Draw an opaque caption band with a few words across the top or bottom of ``out``; returns the new coverage."""
    w, h = out.size
    y0 = 0 if top else h - height
    fill = ((0, 0, 0), (255, 255, 255), None)[int(rng.integers(3))] or _colour(rng)
    ink = (0, 0, 0) if fill == (255, 255, 255) else (255, 255, 255)
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, y0, w, y0 + height - 1), fill=(*fill, 255))
    font = ImageFont.load_default(size=max(8, round(min(height * 0.6, h * 0.12))))
    text = " ".join(rng.choice(CAPTIONS, size=int(rng.integers(1, 3))).tolist())
    draw.text((w * 0.04, y0 + height / 2), text, fill=(*ink, 255), font=font, anchor="lm")
    covered = covered.copy()
    covered[y0 : y0 + height] = True
    return covered


def heavy_crop(img: Image.Image, rng: np.random.Generator, pool: Sequence[Image.Image]) -> tuple[Image.Image, str]:
    """Keep a random window of 10–25 % of the area."""
    return crop(img, rng, (0.1, 0.25))


def _homography(src: np.ndarray, dst: np.ndarray) -> tuple[float, ...]:
    """The 8 coefficients of Pillow's PERSPECTIVE transform that map the ``dst`` points onto the ``src`` points."""
    a = np.zeros((8, 8))
    for i, ((x, y), (u, v)) in enumerate(zip(dst, src, strict=True)):
        a[2 * i] = (x, y, 1, 0, 0, 0, -x * u, -y * u)
        a[2 * i + 1] = (0, 0, 0, x, y, 1, -x * v, -y * v)
    return tuple(float(c) for c in np.linalg.solve(a, np.asarray(src, dtype=np.float64).ravel()))


def perspective(img: Image.Image, rng: np.random.Generator, pool: Sequence[Image.Image]) -> tuple[Image.Image, str]:
    """A perspective warp: every corner moved inwards by 5–20 % of the sides; a held-out photo or a colour behind."""
    w, h = img.size
    moves = rng.uniform(0.05, 0.2, (4, 2))
    src = np.array([(0, 0), (w, 0), (w, h), (0, h)], dtype=np.float64)
    inwards = np.array([(1, 1), (-1, 1), (-1, -1), (1, -1)])
    coeffs = _homography(src, src + inwards * moves * (w, h))
    warped = img.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC)
    mask = Image.new("L", (w, h), 255).transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        k = int(rng.integers(len(pool)))
        canvas, behind = _cover(pool[k], (w, h), rng), f"held_out[{k}]"
    else:
        fill = _colour(rng)
        canvas, behind = Image.new("RGB", (w, h), fill), "#{:02x}{:02x}{:02x}".format(*fill)
    canvas.paste(warped, mask=mask)
    corners = " ".join(f"{dx:.2f},{dy:.2f}" for dx, dy in moves)
    return canvas, f"perspective {corners} on {behind}"


def mild_rescale(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Resize to a longer side of 320–768 pixels (down or up)."""
    s = float(rng.uniform(320, 768)) / max(img.size)
    size = (max(16, round(img.width * s)), max(16, round(img.height * s)))
    return img.resize(size, Image.Resampling.BILINEAR), f"rescale {s:.2f}"


def mild_jpeg(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """JPEG compression at quality 20–50, applied as an edit before the final save."""
    import io

    q = int(rng.integers(20, 51))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    buf.seek(0)
    return Image.open(buf).convert("RGB"), f"jpeg q={q}"


HARD_FNS: dict[str, HardEdit] = {
    "crop": heavy_crop,
    "overlay": heavy_overlay,
    "perspective": perspective,
    "paste": paste,
    "collage": collage,
    "screenshot": screenshot,
}
EXTRA_FNS: dict[str, Edit] = {
    "flip": flip,
    "colour": colour,
    "greyscale": greyscale,
    "blur": blur,
    "rescale": mild_rescale,
    "jpeg": mild_jpeg,
}


def make_hard_query(
    img: Image.Image, main: str, rng: np.random.Generator, pool: Sequence[Image.Image]
) -> tuple[Image.Image, list[str]]:
    """Apply the main edit (``combo``: two of them), then one or two milder ones; the main edit is listed first."""
    if main == "combo":
        first, second = COMBOS[int(rng.integers(len(COMBOS)))]
        img, d1 = HARD_FNS[first](img, rng, pool)
        img, d2 = HARD_FNS[second](img, rng, pool)
        done = [f"combo {d1} + {d2}"]
    else:
        img, desc = HARD_FNS[main](img, rng, pool)
        done = [desc]
    extras = sorted(
        rng.choice(HARD_EXTRAS, size=int(rng.integers(1, 3)), replace=False).tolist(), key=HARD_EXTRAS.index
    )
    for name in extras:
        img, desc = EXTRA_FNS[name](img, rng)
        done.append(desc)
    return img, done


def hard_mains(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` main edits of the hard style: the families equally often, shuffled; ``framed`` alternates
    collage and screenshot."""
    families = [HARD_FAMILIES[i % len(HARD_FAMILIES)] for i in range(n)]
    families = [families[i] for i in rng.permutation(n)]
    framed = iter(FRAMED[i % len(FRAMED)] for i in range(n))
    return [next(framed) if f == "framed" else f for f in families]


def build(
    out: Path,
    seed: int = 0,
    originals: int = 120,
    distractors: int | None = None,
    distractor_crops: int = 2,
    queries_per: int = 3,
    max_side: int = 1024,
    cache: Path | None = None,
    collection: str = "wallpapers",
    style: str = "classic",
    held_out: float = 0.2,
) -> dict:
    """Write the database, the queries, gt.json and manifest.json into ``out``; returns the manifest.

    ``style="hard"`` holds out a share ``held_out`` of the sources (the last ones of the seeded order; at least
    one), never in the database, for the backgrounds and other tiles of the queries, and makes DISC21-like queries.
    """
    sources = load_sources(cache, max_side, collection=COLLECTIONS[collection])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sources))
    n_held = max(1, round(held_out * len(sources))) if style == "hard" else 0
    usable = len(sources) - n_held
    n_orig = min(originals, usable // 2)
    n_dis = usable - n_orig if distractors is None else min(distractors, usable - n_orig)
    chosen = [sources[i] for i in order[: n_orig + n_dis]]
    held = [sources[i] for i in order[usable:]]
    entries = [(name, img, "original" if j < n_orig else "distractor") for j, (name, img) in enumerate(chosen)]
    for name, img in chosen[n_orig:]:  # crops of distractor photos only: more distractors, none ambiguous
        for _ in range(distractor_crops):
            part, desc = crop(img, rng)
            entries.append((f"{name} [{desc}]", part, "distractor crop"))
    ids = rng.permutation(len(entries))
    (out / "db").mkdir(parents=True, exist_ok=True)
    (out / "queries").mkdir(parents=True, exist_ok=True)
    db_manifest, db_name = {}, {}
    for j, ((name, img, role), slot) in enumerate(zip(entries, ids, strict=True)):
        rel = f"db/{slot:04d}.jpg"
        img.save(out / rel, "JPEG", quality=90)
        db_manifest[rel] = {"source": name, "role": role}
        db_name[j] = rel
    if style == "hard":
        mains = hard_mains(n_orig * queries_per, rng)
    else:
        mains = [EDITS[i % len(EDITS)] for i in range(n_orig * queries_per)]
        mains = [mains[i] for i in rng.permutation(len(mains))]
    pool = [img for _name, img in held]
    gt, queries = {}, {}
    for n, main in enumerate(mains):
        j = n % n_orig
        if style == "hard":
            img, edits = make_hard_query(chosen[j][1], main, rng, pool)
        else:
            img, edits = make_query(chosen[j][1], main, rng)
        rel = f"queries/q{n:04d}_{main}.jpg"
        _fit(img, max_side).save(out / rel, "JPEG", quality=int(rng.integers(60, 91)))
        gt[rel] = [db_name[j]]
        queries[rel] = {"original": db_name[j], "main_edit": main, "edits": edits}
    manifest: dict = {"seed": seed, "collection": collection}
    if style != "classic":  # the classic manifest stays as it was
        manifest["style"] = style
    manifest |= {"max_side": max_side, "originals": n_orig, "distractors": len(entries) - n_orig}
    if style != "classic":  # the queries' ``held_out[k]`` refer to this list
        manifest |= {"held_out": [name for name, _img in held]}
    manifest |= {"queries": len(gt), "database": db_manifest, "query_edits": queries}
    (out / "gt.json").write_text(json.dumps(gt, indent=1) + "\n")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (outside the repository)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--originals", type=int, default=120, help="originals (at most half of the sources not held out)"
    )
    parser.add_argument("--distractors", type=int, default=None, help="default: every other source photo")
    parser.add_argument("--distractor-crops", type=int, default=2, help="extra crops of each distractor photo")
    parser.add_argument("--queries-per", type=int, default=3, help="edited copies per original")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--sources", type=Path, default=Path("/tmp/copydet-src"), help="cache of Debian packages")
    parser.add_argument("--no-debian", action="store_true", help="only the scikit-image/scikit-learn photos")
    parser.add_argument(
        "--collection", choices=sorted(COLLECTIONS), default="wallpapers", help="which photos (see COLLECTIONS)"
    )
    parser.add_argument(
        "--style",
        choices=("classic", "hard"),
        default="classic",
        help="classic: the edits of EDITS; hard: DISC21-like (paste, collage, screenshot, overlay, crop, "
        "perspective, combo) with held-out photos as backgrounds",
    )
    parser.add_argument(
        "--held-out", type=float, default=None, help="--style hard: share of the sources held out (default 0.2)"
    )
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty")
    if args.held_out is not None and (args.style != "hard" or not 0 < args.held_out < 1):
        parser.error("--held-out takes a share between 0 and 1, with --style hard only")
    m = build(
        args.out,
        seed=args.seed,
        originals=args.originals,
        distractors=args.distractors,
        distractor_crops=args.distractor_crops,
        queries_per=args.queries_per,
        max_side=args.max_side,
        cache=None if args.no_debian else args.sources,
        collection=args.collection,
        style=args.style,
        held_out=0.2 if args.held_out is None else args.held_out,
    )
    print(
        f"wrote {m['originals']} originals + {m['distractors']} distractors to {args.out / 'db'}, "
        f"{m['queries']} queries to {args.out / 'queries'}, ground truth {args.out / 'gt.json'}"
        + (f" ({len(m['held_out'])} photos held out)" if "held_out" in m else "")
    )


if __name__ == "__main__":
    main()
