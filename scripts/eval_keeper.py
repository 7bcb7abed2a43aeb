"""How often the suggested copy to keep is the original, when the other copies were made from it.

For each photo: the photo saved as a JPEG (quality 90) is the original; copies are made from it — downscaled
(½, ⅔, Lanczos), upscaled (1.1×, 1.3×, 1.5×, 2×; bilinear, bicubic, Lanczos), recompressed (quality 70, 97) —
and each pair (original, copy) is given to the keep-best rules in every rule order. A pair counts as right when the
original is kept whatever the order. The thresholds of poolvec/indexer/review/quality.py were chosen on
astronaut, chelsea, coffee, rocket and camera (``--set tuning``); the others are held out (``--set held-out``).

    .venv/bin/python scripts/eval_keeper.py --set held-out --json keeper.json
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import sys
import tempfile
from pathlib import Path

import skimage.data
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sample_photos

from poolvec.indexer.review.keeper import RULES, KeepRules, suggest

TUNING = ("astronaut", "chelsea", "coffee", "rocket", "camera")
HELD_OUT = ("china", "flower", "retina", "hubble_deep_field", "motorcycle_left", "immunohistochemistry")
R = Image.Resampling
COPIES = {
    "down ½ lanczos": ("resize", 0.5, R.LANCZOS, 90),
    "down ⅔ bilinear": ("resize", 2 / 3, R.BILINEAR, 85),
    "up 1.1× lanczos": ("resize", 1.1, R.LANCZOS, 95),
    "up 1.3× bilinear": ("resize", 1.3, R.BILINEAR, 95),
    "up 1.5× bicubic": ("resize", 1.5, R.BICUBIC, 95),
    "up 2× bicubic": ("resize", 2.0, R.BICUBIC, 95),
    "recompressed q70": ("jpeg", 1.0, None, 70),
    "recompressed q97": ("jpeg", 1.0, None, 97),
}


def photo(name: str, folder: Path) -> Image.Image:
    if "/" in name:
        return Image.open(name).convert("RGB")
    if name in TUNING and name != "chelsea" and hasattr(skimage.data, name):
        return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    path = folder / f"{name}.jpg"
    if not path.exists():
        sample_photos.write(folder)
    return Image.open(path).convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("tuning", "held-out", "both"), default="both")
    parser.add_argument("--folder", type=Path, help="photos of your own instead (the first --count, by name)")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = {"tuning": TUNING, "held-out": HELD_OUT, "both": TUNING + HELD_OUT}[args.set]
    if args.folder is not None:
        files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        names = tuple(str(p) for p in files[: args.count])
    orders = [KeepRules(order) for order in itertools.permutations(RULES, 1)]
    orders = [KeepRules.parse(",".join(o.order)) for o in orders]
    table: dict[str, dict[str, bool]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in names:
            buf = io.BytesIO()
            photo(name, folder / "photos").save(buf, "JPEG", quality=90)
            original_path = folder / f"{Path(name).stem}.jpg"
            original_path.write_bytes(buf.getvalue())
            original = Image.open(original_path)
            row = {}
            for label, (how, f, resample, quality) in COPIES.items():
                img = original.convert("RGB")
                if how == "resize":
                    img = img.resize((round(img.width * f), round(img.height * f)), resample)
                copy_path = folder / f"{Path(name).stem}-copy.jpg"
                img.save(copy_path, quality=quality)
                row[label] = all(
                    suggest([str(original_path), str(copy_path)], rules).keep == str(original_path) for rules in orders
                )
            table[name] = row
            print(Path(name).name, " ".join("✓" if ok else "✗" for ok in row.values()), flush=True)
    right = sum(ok for row in table.values() for ok in row.values())
    total = sum(len(row) for row in table.values())
    print(f"original kept in {right} of {total} pairs, under every rule order ({', '.join(COPIES)})")
    if args.json:
        args.json.write_text(json.dumps({"copies": list(COPIES), "table": table, "right": right, "total": total}))


if __name__ == "__main__":
    main()
