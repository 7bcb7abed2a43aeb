"""Fit the packaged learned whitening (``extractor/data/*.lw.npz``) for the default backbone and input.

    python scripts/fit_prior.py [--out extractor/data/tf_efficientnet_lite0.lw.npz] [--sources /tmp/copydet-src]

The photos: every usable photo of both copy-detection collections of ``scripts/make_copydet_set.py``
(``wallpapers``: Debian wallpaper packages, opencv-doc's examples and the scikit-image / scikit-learn sample
photos; ``other``: Stellarium's deep-sky photographs and Tux Paint's photographed objects), fetched with
``apt-get download`` as that script does. Debian main's packages are DFSG-free (each file's licence is in
``/usr/share/doc/<package>/copyright``); the sample photos' licences are in scikit-image's
``skimage/data/README.txt`` and scikit-learn's ``sklearn/datasets/images/README.txt``. Only the fitted map is
shipped (1280 × 1280 float16), not the photos.

Because the prior has seen both evaluation collections, docs/EVALUATION.md measures what a prior does on
photos it never saw by fitting the same recipe on one collection and testing on the other.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

import make_copydet_set  # scripts/ is this script's folder, first on sys.path
import numpy as np
import torch

from poolvec.extractor import Extractor, Tuning, priors
from poolvec.extractor.priors import MATCH, RECORDED, before_lw, lw_index

ROOT = Path(__file__).resolve().parents[1]

#: Edited copies per photo: the most the tuning ever makes (extractor.tuning).
PER_IMAGE = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "extractor" / "data" / "tf_efficientnet_lite0.lw.npz")
    parser.add_argument("--sources", type=Path, default=Path("/tmp/copydet-src"), help="wallpapers package cache")
    parser.add_argument("--other-sources", type=Path, default=Path("/tmp/copydet-other-src"), help="other's cache")
    parser.add_argument("--max-side", type=int, default=1024, help="photos are stored at most this large")
    parser.add_argument(
        "--collections", default="wallpapers,other", help="which collections (a held-out prior for evaluations)"
    )
    args = parser.parse_args()
    photos = []
    caches = {"wallpapers": args.sources, "other": args.other_sources}
    for name in args.collections.split(","):
        cache = caches[name]
        photos += [
            (name, src, img)
            for src, img in make_copydet_set.load_sources(
                cache, args.max_side, collection=make_copydet_set.COLLECTIONS[name]
            )
        ]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, (_, _, img) in enumerate(photos):
            path = Path(tmp) / f"{i:04d}.jpg"
            img.save(path, "JPEG", quality=90)
            paths.append(str(path))
        ex = Extractor(pooling="gem(p=3) | l2 | lw | l2", optimize=True)
        priors.use(ex, None)  # fit on these photos alone
        tuning = Tuning(images=len(paths), edits=PER_IMAGE * len(paths), max_per_image=PER_IMAGE, prior_weight=0)
        ex.fit(paths, tuning=tuning, progress=lambda d, n: print(f"\r{d}/{n}", end="", file=sys.stderr))
        print(file=sys.stderr)
    i = lw_index(ex.pipeline)
    step = ex.pipeline.post[i]
    config = ex.config()
    meta = {k: config[k] for k in (*MATCH, *RECORDED)}
    meta.update(
        before=before_lw(ex.pipeline, i),
        shrink=step.params["shrink"],
        images=ex.last_fit.images,
        pairs=len(ex.last_fit.pairs),
        edits_per_image=PER_IMAGE,
        tuning=tuning.to_dict(),
        sources={
            "collections": sorted({c for c, _, _ in photos}),
            "packages": {n: list(make_copydet_set.COLLECTIONS[n].packages) for n in args.collections.split(",")},
            "sample_photos": "scikit-image and scikit-learn sample images (their data READMEs give the licences)"
            if "wallpapers" in args.collections
            else None,
            "licence": "Debian main packages (DFSG-free; per-file licences in /usr/share/doc/<package>/copyright)",
            "files": [src for _, src, _ in photos],
        },
        made=dt.date.today().isoformat(),
        command="python scripts/fit_prior.py"
        + (f" --collections {args.collections}" if args.collections != "wallpapers,other" else ""),
    )
    proj16 = step.proj.numpy().astype(np.float16)
    inputs = ex.pipeline.apply_post_until(torch.from_numpy(ex.last_fit.vectors), i).double().numpy()
    variance = ((inputs - step.mean.numpy()) @ proj16.astype(np.float64).T).var(axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        mean=step.mean.numpy().astype(np.float32),
        proj=proj16,
        variance=variance.astype(np.float32),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    print(f"wrote {args.out}: {ex.last_fit.images} photos, {len(ex.last_fit.pairs)} pairs, {ex.last_fit.seconds:.0f} s")


if __name__ == "__main__":
    main()
