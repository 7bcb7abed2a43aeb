"""Write real sample photos (bundled inside scikit-image and scikit-learn, no network) into a folder.

    python scripts/sample_photos.py photos/            # 11 photos as JPEG
    python scripts/sample_photos.py photos/ --queries queries/   # plus edited copies to search with

The query copies are the same photos cropped, resized and re-compressed: each should find its original
at rank 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def sample_photos() -> dict[str, np.ndarray]:
    """name → RGB uint8 array of every bundled real photo."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {name: getattr(skimage.data, name)() for name in SKIMAGE}
    photos["motorcycle_left"], photos["motorcycle_right"], _ = skimage.data.stereo_motorcycle()
    china, flower = load_sample_images().images
    photos.update(china=china, flower=flower)
    return {k: v[..., :3] for k, v in photos.items()}


def edited_copy(img: Image.Image) -> Image.Image:
    """A near-duplicate: 80 % centre crop, resized to 60 %, (saved later as quality-60 JPEG)."""
    w, h = img.size
    box = (int(w * 0.1), int(h * 0.1), int(w * 0.9), int(h * 0.9))
    crop = img.crop(box)
    return crop.resize((max(1, int(crop.width * 0.6)), max(1, int(crop.height * 0.6))), Image.Resampling.LANCZOS)


def write(folder: Path, queries: Path | None = None) -> list[Path]:
    """Write the photos (and edited query copies) as JPEG files; returns the photo paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, arr in sample_photos().items():
        img = Image.fromarray(arr)
        path = folder / f"{name}.jpg"
        img.save(path, quality=92)
        written.append(path)
        if queries is not None:
            queries.mkdir(parents=True, exist_ok=True)
            edited_copy(img).save(queries / f"{name}_edit.jpg", quality=60)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--queries", type=Path, default=None, help="also write edited copies here")
    args = parser.parse_args()
    paths = write(args.folder, args.queries)
    print(
        f"wrote {len(paths)} photos to {args.folder}"
        + (f" and edited copies to {args.queries}" if args.queries else "")
    )


if __name__ == "__main__":
    main()
