"""Images/s of indexing one folder of 1 MP JPEGs: the single-process path, and the Ray engine with 1 and 2 actors.

    python scripts/bench_ray.py [--count 2000] [--runs 3] [--actors 1,2] [--folder /tmp/bench-ray] [--json out.json]
    python scripts/bench_ray.py --count 16 --runs 1          # a quick check that it runs

The photos: ``--count`` distinct 1152×864 JPEGs (quality 90; ~1 MP), random crops of the 11 bundled sample
photos (made once, kept in ``--folder``). Each run indexes the whole folder into a fresh collection of one Milvus
Lite database (``--uri http://host:19530``: a server instead; ``--start-server``: the ``milvus`` package's server)
with ``tuning=False`` (tuning runs once on the driver the same way for both engines: it is not what is compared),
``add_folder(...)`` timed end to end — planning, hashing, actor start-up and model loading included, as a user
pays them. Ray gets this machine's cores (``ray.init(num_cpus=os.cpu_count())``, started once and not timed):
1 actor with every core as torch threads, or N actors splitting them. Runs alternate between the
configurations; medians are reported, and Ray's overhead as single-process img/s ÷ Ray img/s.

Ray binds every interface: the script re-runs itself inside ``unshare --net`` (loopback only) when it can.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import bench_index  # noqa: E402  (reexec_in_netns, start_server)
import sample_photos  # noqa: E402

SIZE = (1152, 864)


def make_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` distinct ~1 MP crops of the bundled sample photos in ``folder`` (reused when present)."""
    folder.mkdir(parents=True, exist_ok=True)
    have = sorted(folder.glob("*.jpg"))
    if len(have) >= count:
        return have[:count]
    with tempfile.TemporaryDirectory() as tmp:
        sample_photos.write(Path(tmp))
        sources = [Image.open(p).convert("RGB") for p in sorted(Path(tmp).glob("*.jpg"))]
    rng = np.random.default_rng(seed)
    for i in range(len(have), count):
        img = sources[int(rng.integers(len(sources)))]
        s = float(rng.uniform(0.6, 1.0))
        w, h = max(64, int(img.width * s)), max(48, int(img.height * s))
        x, y = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
        crop = img.crop((x, y, x + w, y + h))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        crop.resize(SIZE, Image.Resampling.BILINEAR).save(folder / f"{i:06d}.jpg", quality=90)
    return sorted(folder.glob("*.jpg"))[:count]


def run_once(uri: str, name: str, folder: Path, engine: Any) -> dict[str, Any]:
    """Index ``folder`` into a fresh collection ``name``; the seconds it took and what was stored."""
    from poolvec.indexer import ImageIndex

    index = ImageIndex(uri, name, tuning=False)
    index.drop()
    index = ImageIndex(uri, name, tuning=False)
    t = time.perf_counter()
    report = index.add_folder(folder, engine=engine)
    seconds = time.perf_counter() - t
    stored = len(index)
    index.drop()
    index.close()
    if report.failed or stored != report.added:
        raise SystemExit(f"{name}: {len(report.failed)} failed, {stored} stored of {report.added}")
    return {"seconds": seconds, "images": report.added}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=2000, help="photos in the folder")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per configuration (alternating)")
    ap.add_argument("--actors", default="1,2", help="Ray actor counts to measure")
    ap.add_argument("--folder", type=Path, default=Path("/tmp/bench-ray"), help="where the photos are kept")
    ap.add_argument("--uri", default=None, help="Milvus server URI (default: a temporary Milvus Lite database)")
    ap.add_argument("--start-server", action="store_true", help="run the `milvus` package's server for --uri")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    a = ap.parse_args()
    bench_index.reexec_in_netns()  # Ray and the server bind every interface: loopback only
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray

    from poolvec.indexer.ops.ray.options import RayOptions

    folder = a.folder / f"{a.count}"
    make_photos(folder, a.count)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    server = bench_index.start_server(str(work / "server")) if a.start_server else None
    uri = f"http://127.0.0.1:{server.listen_port}" if server else a.uri or str(work / "bench.db")
    cores = os.cpu_count() or 1
    t = time.perf_counter()
    ray.init(address="local", num_cpus=cores, include_dashboard=False, configure_logging=False)
    ray_start = time.perf_counter() - t
    configs: dict[str, Any] = {"single process": "local"}
    for n in (int(x) for x in a.actors.split(",")):
        per = max(1, cores // n)
        configs[f"ray, {n} actor{'s' if n > 1 else ''} × {per} thread{'s' if per > 1 else ''}"] = RayOptions(
            actors=n, cpus_per_actor=per
        )
    try:
        warm = make_photos(a.folder / "warm", 8)[0].parent
        for engine in configs.values():  # imports, first model load, Ray workers: not timed
            run_once(uri, "warmup", warm, engine)
        times: dict[str, list[float]] = {label: [] for label in configs}
        for r in range(a.runs):
            for i, (label, engine) in enumerate(configs.items()):
                res = run_once(uri, f"bench_{r}_{i}", folder, engine)
                times[label].append(res["seconds"])
                print(f"run {r + 1}: {label}: {res['seconds']:.1f} s, {a.count / res['seconds']:.1f} img/s", flush=True)
    finally:
        ray.shutdown()
        if server is not None:
            server.stop()
    single = a.count / statistics.median(times["single process"])
    rows = []
    for label, ts in times.items():
        median = statistics.median(ts)
        rate = a.count / median
        rows.append({"config": label, "runs": ts, "median_s": median, "img_s": rate, "ratio": single / rate})
    print(f"\n{a.count} photos of {SIZE[0]}×{SIZE[1]}, {cores} cores, {'server' if server or a.uri else 'Milvus Lite'}")
    print(f"ray.init: {ray_start:.1f} s (once, not in the times)\n")
    print("| configuration | runs (s) | median s | img/s | single img/s ÷ this |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        runs = " / ".join(f"{x:.1f}" for x in row["runs"])
        print(f"| {row['config']} | {runs} | {row['median_s']:.1f} | {row['img_s']:.1f} | {row['ratio']:.2f} |")
    if a.json:
        meta = {
            "date": dt.date.today().isoformat(),
            "machine": platform.processor() or platform.machine(),
            "cores": cores,
            "count": a.count,
            "size": SIZE,
            "target": "server" if server or a.uri else "lite",
            "ray_init_s": ray_start,
            "ray": ray.__version__,
        }
        a.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
