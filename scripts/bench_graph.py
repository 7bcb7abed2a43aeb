"""The neighbour graph of ``dups`` alone, at sizes Milvus Lite cannot hold: synthetic vectors shaped like ours (as
``bench_scale.py``, 1 % planted copies) handed to :func:`poolvec.indexer.dups.graph.nearest` as float16, timed, with
the planted copies found among each other's two nearest and the peak RSS.

    .venv/bin/python scripts/bench_graph.py --rows 1000000 --shape-from /tmp/bench-tune/verify-10000.db --json g.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np
from bench_scale import CHUNK, Shape, chunk, hwm_mb

from poolvec.indexer.dups.graph import NPROBE, cells, nearest, normalised, pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--shape-from")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    shape = Shape(args.dim, args.shape_from)
    x = np.empty((args.rows, args.dim), dtype=np.float16)
    planted: list[tuple[int, int]] = []
    for start in range(0, args.rows, CHUNK):
        vecs, _, pairs_ = chunk(shape, 0, start, min(CHUNK, args.rows - start))
        x[start : start + len(vecs)] = vecs
        planted += pairs_
    out = {"date": dt.date.today().isoformat(), "rows": args.rows, "dim": args.dim, "cells": cells(args.rows)}
    out["nprobe"] = NPROBE
    out["rss_vectors_mb"] = round(hwm_mb())
    marks: dict[str, float] = {}
    t = time.perf_counter()

    def heard(stage: str, done: int, total: int | None) -> None:
        marks.setdefault("search_from", time.perf_counter() - t)

    scores, found = nearest(x, 10, progress=heard)
    out["neighbours_s"] = round(time.perf_counter() - t, 1)
    out["train_add_s"] = round(marks.get("search_from", 0.0), 1)
    t = time.perf_counter()
    a, b, _ = pairs(normalised(scores, found, 1.0, 1), found, 0.15)
    out["pairs_s"] = round(time.perf_counter() - t, 1)
    out["pairs"] = len(a)
    out["planted"] = len(planted)
    out["planted_in_top2"] = sum(1 for o, c in planted if o in found[c, :2] or c in found[o, :2])
    joined = set(zip(a.tolist(), b.tolist(), strict=True))
    out["planted_joined"] = sum(1 for o, c in planted if (min(o, c), max(o, c)) in joined)
    out["peak_rss_mb"] = round(hwm_mb())
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
