"""Resolving many duplicate groups and undoing it: time, peak memory, and every file's bytes and path checked.

``--groups`` pictures (small distinct JPEGs, ``--side`` px) each get an exact copy and a half-size copy in another
folder; everything is indexed (Milvus Lite), then ``dups`` (unverified: the groups are exact and resized copies),
``resolve`` (move, ``--yes``) and ``undo`` run in this process, each timed, with the process's peak RSS read after
each step (``VmHWM``). Before and after: every file's sha256, path and mtime.

    .venv/bin/python scripts/bench_review.py --groups 1000 --json review.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from poolvec.indexer import ImageIndex


def hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tree(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make(folder: Path, groups: int, side: int) -> None:
    rng = np.random.default_rng(0)
    for sub in ("originals", "copies"):
        (folder / sub).mkdir(parents=True)
    for i in range(groups):
        small = rng.integers(0, 255, (side // 8, side // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((side, side), Image.Resampling.BICUBIC)
        img.save(folder / "originals" / f"{i:06d}.jpg", quality=92)
        (folder / "copies" / f"{i:06d}_copy.jpg").write_bytes((folder / "originals" / f"{i:06d}.jpg").read_bytes())
        img.resize((side // 2, side // 2), Image.Resampling.LANCZOS).save(folder / "copies" / f"{i:06d}_small.jpg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out: dict = {"date": dt.date.today().isoformat(), "groups": args.groups, "side": args.side}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["POOLVEC_STATE_DIR"] = str(root / "state")
        lib = root / "library"
        make(lib, args.groups, args.side)
        index = ImageIndex(root / "review.db", tuning=False)
        t = time.perf_counter()
        index.add_folder(lib)
        out["index_s"] = round(time.perf_counter() - t, 1)
        before = tree(lib)
        t = time.perf_counter()
        found = index.find_duplicates(verify=False)
        out["dups_s"], out["found_groups"] = round(time.perf_counter() - t, 1), len(found)
        out["rss_after_dups_mb"] = round(hwm_mb())
        t = time.perf_counter()
        report = index.resolve(found, "move", trash=root / "trash", dry_run=False)
        out["resolve_s"], out["moved"], out["refused"] = (
            round(time.perf_counter() - t, 1),
            report.files,
            len(report.refused),
        )
        out["rss_after_resolve_mb"] = round(hwm_mb())
        out["left_in_index"] = len(index)
        t = time.perf_counter()
        back = index.undo()
        out["undo_s"], out["restored"], out["rows"] = round(time.perf_counter() - t, 1), back.restored, back.rows
        out["rss_after_undo_mb"] = round(hwm_mb())
        out["files_identical"] = tree(lib) == before
        out["count_after_undo"] = len(index)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
