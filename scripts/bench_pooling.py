"""Benchmark every pooling method against the backbone's forward time on the same batch.

Feature maps come from the default backbone (timm ``tf_efficientnet_lite0``, random weights — only timing
matters) at two input sizes: 224×224 → 7×7 maps and 1024×768 → 32×24 maps, batch 32, 1280 channels.
Prints a table (median of several runs, ms per batch, % of the forward time); ``--json PATH`` writes it.

    .venv/bin/python scripts/bench_pooling.py [--batch 32] [--runs 7] [--forward-runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from poolvec import pooling

SPECS = [
    "mac",
    "spoc",
    "sum",
    "spoc_center",
    "gem(p=3)",
    "gem(p=3.5)",
    "lse(r=10)",
    "avgmax",
    "catavgmax",
    "rmac(levels=3)",
    "rgem(levels=3, p=3)",
    "spp(levels=(1, 2, 4), op=max)",
    "spp(levels=(1, 2, 4), op=avg)",
    "grid(h=2, w=2, op=max)",
    "crow",
    "scda",
    "pwa(n=25)",
    "gem(p=3) | l2",
]

SIZES = {"7x7": (224, 224), "32x24": (1024, 768)}


def _median_ms(fn, runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=7, help="timed runs per pooling method (median)")
    ap.add_argument("--forward-runs", type=int, default=3, help="timed backbone forwards per size (median)")
    ap.add_argument("--sizes", default="7x7,32x24", help="comma-separated subset of: " + ", ".join(SIZES))
    ap.add_argument("--masked", action="store_true", help="also time each method with a full-valid mask")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()

    import timm

    torch.manual_seed(0)
    # As the Extractor runs it: channels_last weights and inputs, so the maps are channels_last too.
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval().to(memory_format=torch.channels_last)
    rows = []
    meta = {
        "date": dt.date.today().isoformat(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "batch": args.batch,
        "backbone": "timm tf_efficientnet_lite0 (random weights), forward_features, fp32, inference_mode, "
        "channels_last (as the Extractor)",
    }
    for size in args.sizes.split(","):
        h, w = SIZES[size]
        images = torch.randn(args.batch, 3, h, w).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            maps = model.forward_features(images)
            fwd = _median_ms(lambda im=images: model.forward_features(im), args.forward_runs, warmup=0)
        print(f"[{size}] maps {tuple(maps.shape)}, forward {fwd:.1f} ms/batch", file=sys.stderr)
        for spec in SPECS:
            pipe = pooling.build(spec)
            if pipe.needs_fit:
                pipe.fit_pool(maps)
            mask = torch.ones(maps.shape[0], 1, *maps.shape[2:], dtype=torch.bool) if args.masked else None
            with torch.inference_mode():
                ms = _median_ms(lambda p=pipe, x=maps, m=mask: p(x, m), args.runs)
            rows.append(
                {
                    "map": size,
                    "spec": str(pipe),
                    "dim": pipe.out_dim(maps.shape[1]),
                    "ms_per_batch": round(ms, 3),
                    "forward_ms": round(fwd, 1),
                    "pct_of_forward": round(100 * ms / fwd, 3),
                }
            )
            print(f"  {spec:32s} {ms:9.3f} ms  {100 * ms / fwd:7.3f} %", file=sys.stderr)

    print(f"\npooling cost, batch {args.batch}, torch {meta['torch']}, {meta['threads']} threads")
    print("| map | method | D | ms/batch | % of forward |\n|---|---|---:|---:|---:|")
    for r in rows:
        spec = r["spec"].replace("|", "\\|")  # keep the markdown table intact
        print(f"| {r['map']} | `{spec}` | {r['dim']} | {r['ms_per_batch']:.2f} | {r['pct_of_forward']:.2f} |")
    fwds = {r["map"]: r["forward_ms"] for r in rows}
    print("forward ms/batch: " + ", ".join(f"{k}: {v:.0f}" for k, v in fwds.items()))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
