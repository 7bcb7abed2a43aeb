"""What self-tuning costs: `poolvec index` of N photos with and without tuning, in fresh processes.

    python scripts/bench_tuning.py --counts 1000,10000 --runs 3,1 [--folder /tmp/bench-tune] [--json out.json]

The photos: N distinct 1024×768 JPEGs (quality 90), random crops of the real photos of
``scripts/make_copydet_set.py``'s two collections (made once, kept in ``--folder``). Each run is
``poolvec index DIR --db NEW --quiet`` (tuned, the default) or with ``--no-tune``, in a fresh process, the runs
alternating; the tuned run's fit time comes from the index's own record (``poolvec info --json``). Reports the
medians and the overhead: (tuned − untuned) / untuned.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import make_copydet_set  # scripts/ is this script's folder, first on sys.path
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent

POOLVEC = [str(Path(sys.executable).parent / "poolvec")]


def make_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` distinct 1024×768 crops of the collections' photos in ``folder`` (reused when present)."""
    folder.mkdir(parents=True, exist_ok=True)
    have = sorted(folder.glob("*.jpg"))
    if len(have) >= count:
        return have[:count]
    sources = []
    for name, cache in (("wallpapers", Path("/tmp/copydet-src")), ("other", Path("/tmp/copydet-other-src"))):
        sources += [
            img for _, img in make_copydet_set.load_sources(cache, 2048, collection=make_copydet_set.COLLECTIONS[name])
        ]
    rng = np.random.default_rng(seed)
    for i in range(len(have), count):
        img = sources[int(rng.integers(len(sources)))]
        s = float(rng.uniform(0.5, 1.0))
        w, h = max(64, int(img.width * s)), max(48, int(img.height * s))
        x, y = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
        img.crop((x, y, x + w, y + h)).resize((1024, 768), Image.Resampling.BILINEAR).save(
            folder / f"{i:06d}.jpg", quality=90
        )
    return sorted(folder.glob("*.jpg"))[:count]


def run_index(folder: Path, tune: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        cmd = [*POOLVEC, "index", str(folder), "--db", str(db), "--quiet", *([] if tune else ["--no-tune"])]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT.parent)
        wall = time.perf_counter() - t0
        info = json.loads(
            subprocess.run(
                [*POOLVEC, "info", "--db", str(db), "--json"],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT.parent,
            ).stdout
        )
        tuning = (info["config"] or {}).get("tuning") or {}
        return {
            "wall_s": wall,
            "tune_s": float(tuning.get("seconds", 0.0)),
            "count": info["count"],
            "sampled": tuning.get("sampled", 0),
            "per_image": tuning.get("per_image", 0),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1000,10000")
    parser.add_argument("--runs", default="3,1", help="runs per count (each: untuned then tuned)")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bench-tune"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    runs = [int(r) for r in args.runs.split(",")]
    photos = make_photos(args.folder / "all", max(counts))
    results = []
    for count, n_runs in zip(counts, runs, strict=True):
        folder = args.folder / f"n{count}"
        if not folder.exists() or len(list(folder.glob("*.jpg"))) != count:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for p in photos[:count]:
                os.link(p, folder / p.name)
        plain, tuned = [], []
        for _ in range(n_runs):
            plain.append(run_index(folder, tune=False))
            tuned.append(run_index(folder, tune=True))
            print(
                f"{count}: untuned {plain[-1]['wall_s']:.0f} s, tuned {tuned[-1]['wall_s']:.0f} s "
                f"(fit {tuned[-1]['tune_s']:.0f} s)",
                file=sys.stderr,
            )
        p = float(np.median([r["wall_s"] for r in plain]))
        t = float(np.median([r["wall_s"] for r in tuned]))
        results.append(
            {
                "count": count,
                "runs": n_runs,
                "untuned_s": p,
                "tuned_s": t,
                "fit_s": float(np.median([r["tune_s"] for r in tuned])),
                "overhead": (t - p) / p,
                "sampled": tuned[0]["sampled"],
                "per_image": tuned[0]["per_image"],
                "raw": {"untuned": plain, "tuned": tuned},
            }
        )
    print(
        "| photos | runs | index, no tuning (s) | index, tuned (s) | of which fitting (s) | sample × edits | overhead |"
    )
    print("|---:|---:|---:|---:|---:|---|---:|")
    for r in results:
        print(
            f"| {r['count']} | {r['runs']} | {r['untuned_s']:.1f} | {r['tuned_s']:.1f} | {r['fit_s']:.1f} | "
            f"{r['sampled']} × {r['per_image']} | {100 * r['overhead']:+.0f} % |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": dt.date.today().isoformat(),
                    "machine": platform.platform(),
                    "cpus": os.cpu_count(),
                    "results": results,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
