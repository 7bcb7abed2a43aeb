"""Per-file overhead: ``--files`` small PNGs (``--side`` px, distinct noise pictures) indexed by ``poolvec index``
into a new Milvus Lite database, timed end to end (the process included) and reported as files/s, with and without
the new index's tuning pass; ``--profile`` also writes a cProfile of the untuned run (in-process).

    .venv/bin/python scripts/bench_small_files.py --files 3000 --side 64 --json small.json
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import json
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make(folder: Path, files: int, side: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(files):
        small = rng.integers(0, 255, (max(2, side // 8), max(2, side // 8), 3), dtype=np.uint8)
        Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC).save(folder / f"{i:05d}.png")


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--profile", type=Path, help="write the untuned run's cProfile stats (text) here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    poolvec = str(Path(sys.executable).with_name("poolvec"))
    out: dict = {"date": dt.date.today().isoformat(), "files": args.files, "side": args.side}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make(root / "small", args.files, args.side)
        for label, extra in (("untuned", ["--no-tune"]), ("tuned", [])):
            seconds = timed([poolvec, "index", str(root / "small"), "--db", str(root / f"{label}.db"), "-q", *extra])
            out[f"{label}_s"] = round(seconds, 1)
            out[f"{label}_files_s"] = round(args.files / seconds, 1)
        if args.profile:
            from poolvec.indexer import ImageIndex

            index = ImageIndex(root / "profiled.db", tuning=False)
            prof = cProfile.Profile()
            prof.runcall(index.add_folder, root / "small")
            with args.profile.open("w") as f:
                pstats.Stats(prof, stream=f).sort_stats("cumulative").print_stats(40)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
