"""What verified matches cost at scale: one search and `dups` over N photos, with and without verification.

    python scripts/bench_verify.py --count 10000 [--folder /tmp/bench-tune] [--queries 200] [--runs 3] [--dups-runs 1]
        [--json out.json]

The photos: N distinct 1024×768 JPEGs (``scripts/bench_tuning.py``'s, made once in ``--folder``), indexed once with
``poolvec index`` (the tuned default). The queries: ``--queries`` edited copies of indexed photos (an 80 % crop at
60 %, JPEG 60), each of a different photo, so that every verified search computes its candidates' local features
anew (nothing is cached between queries of a run: each run opens a fresh ``ImageIndex``).

Measured in this process through the Python API (``poolvec serve`` adds its HTTP hop: ``scripts/bench_serve.py``):
the p50/p95 of ``search(query, k=10)`` verified and not, and the seconds of ``find_duplicates()`` verified and not;
medians of ``--runs`` runs (``dups``: of the first ``--dups-runs``), the two modes alternating.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench_tuning  # scripts/ is this script's folder, first on sys.path
import numpy as np
from PIL import Image

from poolvec.indexer import ImageIndex

POOLVEC = str(Path(sys.executable).parent / "poolvec")


def make_queries(photos: list[Path], folder: Path, count: int, seed: int = 7) -> list[Path]:
    """``count`` edited copies of distinct photos (80 % centre crop, 60 % size, JPEG 60) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(photos), count, replace=False):
        path = folder / f"q_{photos[i].stem}.jpg"
        if not path.exists():
            with Image.open(photos[i]) as img:
                w, h = img.size
                crop = img.crop((int(w * 0.1), int(h * 0.1), int(w * 0.9), int(h * 0.9)))
                crop.resize((int(crop.width * 0.6), int(crop.height * 0.6))).save(path, quality=60)
        out.append(path)
    return out


def search_times(db: str, queries: list[Path], verify: bool) -> list[float]:
    """Seconds per query (a fresh index: nothing cached)."""
    times = []
    with ImageIndex(db) as index:
        index.search(str(queries[0]), k=10, verify=False)  # the model loaded and traced before timing
        for q in queries:
            t = time.perf_counter()
            index.search(str(q), k=10, verify=verify)
            times.append(time.perf_counter() - t)
    return times


def dups_seconds(db: str, verify: bool) -> tuple[float, int]:
    with ImageIndex(db) as index:
        t = time.perf_counter()
        groups = index.find_duplicates(verify=verify)
        return time.perf_counter() - t, len(groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bench-tune"))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dups-runs", type=int, default=1, help="runs that also time `dups` (the first ones)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    photos = bench_tuning.make_photos(args.folder / "photos", args.count)
    db = str(args.folder / f"verify-{args.count}.db")
    if not os.path.exists(db):
        subprocess.run([POOLVEC, "index", str(args.folder / "photos"), "--db", db, "--quiet"], check=True)
    queries = make_queries(photos, args.folder / "queries", args.queries)
    rows: dict[str, list] = {"search verified": [], "search global": [], "dups verified": [], "dups global": []}
    for run in range(args.runs):
        for verify in (False, True) if run % 2 == 0 else (True, False):
            mode = "verified" if verify else "global"
            times = search_times(db, queries, verify)
            rows[f"search {mode}"].append(times)
            if run < args.dups_runs:
                rows[f"dups {mode}"].append(dups_seconds(db, verify))
            dups = rows[f"dups {mode}"][-1:] if run < args.dups_runs else "-"
            print(run, mode, f"p50 {1000 * statistics.median(times):.1f} ms", dups, flush=True)
    result: dict[str, object] = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})",
        "photos": args.count,
        "queries": len(queries),
        "runs": args.runs,
    }
    for mode in ("global", "verified"):
        runs = rows[f"search {mode}"]
        result[f"search {mode} p50 ms"] = round(1000 * statistics.median(statistics.median(t) for t in runs), 1)
        result[f"search {mode} p95 ms"] = round(
            1000 * statistics.median(sorted(t)[int(0.95 * len(t))] for t in runs), 1
        )
        if rows[f"dups {mode}"]:
            result[f"dups {mode} s"] = round(statistics.median(s for s, _ in rows[f"dups {mode}"]), 1)
            result[f"dups {mode} groups"] = rows[f"dups {mode}"][-1][1]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
