"""Peak memory of `poolvec index` on folders of 2 000 and 20 000 images: does it stay flat?

    python scripts/bench_memory.py                  # generates small JPEGs under /tmp, indexes each set
    python scripts/bench_memory.py --counts 2000 20000 --max-side 64 --json mem.json

Each set is indexed in a fresh process into a fresh Milvus Lite database; the peak RSS of that process
(ru_maxrss) is reported. Milvus Lite runs inside the same process and keeps the collection's vectors and
HNSW graph in memory, so part of any growth is the database itself (N × dim × 4 bytes of vectors); the
table reports that share separately.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

WORKER = """
import resource, sys, time
sys.path.insert(0, {root!r})
from poolvec.extractor import Extractor
from poolvec.indexer import ImageIndex
t = time.perf_counter()
index = ImageIndex(sys.argv[1], extractor=Extractor(max_side=int(sys.argv[3])))
report = index.add_folder(sys.argv[2])
print(report.added, len(index), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t)
"""


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    """``count`` distinct small JPEGs (random crops of smooth noise), in 100 sub-folders."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(base).resize((512, 512), Image.Resampling.BICUBIC))
    for i in range(count):
        path = folder / f"{i % 100:02d}" / f"img_{i:06d}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        y, x = rng.integers(0, 512 - 96, 2)
        Image.fromarray(big[y : y + 96, x : x + 128]).save(path, quality=85)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--max-side", type=int, default=64, help="network input side (small: this measures memory)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/poolvec-bench-memory"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for count in args.counts:
        folder = args.cache / f"images_{count}"
        make_images(folder, count)
        db = args.cache / f"db_{count}_{int(time.time())}.db"
        res = subprocess.run(
            [sys.executable, "-c", WORKER.format(root=str(ROOT)), str(db), str(folder), str(args.max_side)],
            capture_output=True,
            text=True,
            check=True,
        )
        _, total, rss_kb, seconds = res.stdout.split()[-4:]
        rows.append(
            {
                "files": count,
                "indexed": int(total),
                "peak_rss_mb": int(rss_kb) / 1024,
                "seconds": float(seconds),
                "vectors_mb": count * 1280 * 4 / 2**20,
            }
        )
    print(
        f"# {time.strftime('%Y-%m-%d')}, max_side={args.max_side}, default pooling (dim 1280), Milvus Lite in-process"
    )
    print("| files | indexed | peak RSS MB | of which stored vectors MB | seconds |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['files']} | {r['indexed']} | {r['peak_rss_mb']:.0f} | {r['vectors_mb']:.0f} | {r['seconds']:.0f} |"
        )
    if len(rows) >= 2:
        ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        print(f"ratio peak RSS {rows[-1]['files']}/{rows[0]['files']}: {ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
