"""Build a near-duplicate / copy-detection benchmark from real photos that exist offline, deterministically.

    python scripts/make_copydet_set.py /tmp/copydet [--seed 0] [--originals 120] [--queries-per 3]
    python scripts/make_copydet_set.py /tmp/copydet-other --collection other --sources /tmp/copydet-other-src

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

The same sources and seed give the same files, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable
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


def crop(img: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """Keep a random window of 20–60 % of the area."""
    area = rng.uniform(0.2, 0.6)
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
) -> dict:
    """Write the database, the queries, gt.json and manifest.json into ``out``; returns the manifest."""
    sources = load_sources(cache, max_side, collection=COLLECTIONS[collection])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(sources))
    n_orig = min(originals, len(sources) // 2)
    n_dis = len(sources) - n_orig if distractors is None else min(distractors, len(sources) - n_orig)
    chosen = [sources[i] for i in order[: n_orig + n_dis]]
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
    mains = [EDITS[i % len(EDITS)] for i in range(n_orig * queries_per)]
    mains = [mains[i] for i in rng.permutation(len(mains))]
    gt, queries = {}, {}
    for n, main in enumerate(mains):
        j = n % n_orig
        img, edits = make_query(chosen[j][1], main, rng)
        rel = f"queries/q{n:04d}_{main}.jpg"
        _fit(img, max_side).save(out / rel, "JPEG", quality=int(rng.integers(60, 91)))
        gt[rel] = [db_name[j]]
        queries[rel] = {"original": db_name[j], "main_edit": main, "edits": edits}
    manifest = {
        "seed": seed,
        "collection": collection,
        "max_side": max_side,
        "originals": n_orig,
        "distractors": len(entries) - n_orig,
        "queries": len(gt),
        "database": db_manifest,
        "query_edits": queries,
    }
    (out / "gt.json").write_text(json.dumps(gt, indent=1) + "\n")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="output folder (outside the repository)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--originals", type=int, default=120, help="originals (at most half of the sources)")
    parser.add_argument("--distractors", type=int, default=None, help="default: every other source photo")
    parser.add_argument("--distractor-crops", type=int, default=2, help="extra crops of each distractor photo")
    parser.add_argument("--queries-per", type=int, default=3, help="edited copies per original")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--sources", type=Path, default=Path("/tmp/copydet-src"), help="cache of Debian packages")
    parser.add_argument("--no-debian", action="store_true", help="only the scikit-image/scikit-learn photos")
    parser.add_argument(
        "--collection", choices=sorted(COLLECTIONS), default="wallpapers", help="which photos (see COLLECTIONS)"
    )
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"{args.out} is not empty")
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
    )
    print(
        f"wrote {m['originals']} originals + {m['distractors']} distractors to {args.out / 'db'}, "
        f"{m['queries']} queries to {args.out / 'queries'}, ground truth {args.out / 'gt.json'}"
    )


if __name__ == "__main__":
    main()
