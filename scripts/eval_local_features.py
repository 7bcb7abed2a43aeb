"""Which local features verify copies: families side by side on the same shortlists of the global search.

    python scripts/eval_local_features.py /tmp/copydet [--families sift640,grid3,grid4] [--json out.json]
    python scripts/eval_local_features.py /tmp/copydet-hard --families sift640,sift480,grid3

The set's database is indexed with the default (self-tuned) embedding; each query's top 10 are the shortlist.
Every (query, candidate) pair is matched by each family (the query and its mirror), and counted as verified when at
least N inliers agree with one affine map (N in ``--min-inliers``). Reports, per family and N, the true pairs
verified (the query's original in its shortlist) and the wrong ones, and the seconds the family took.

Families: ``siftSIDE[nCOUNT]`` — RootSIFT (OpenCV) of images fitted to SIDE px, COUNT keypoints (1 000), ratio test;
``gridB`` — the cells of the backbone's block B feature map at 320 px, mutual nearest neighbours, RANSAC on the
cell centres. Results: docs/EVALUATION.md, "Verification".
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from poolvec.extractor import Extractor
from poolvec.extractor.local.features import LocalFeatures, grid, mirror, sift
from poolvec.extractor.local.verify import MatchPolicy, best, correspond
from poolvec.extractor.preprocess import normalize
from poolvec.extractor.recipe import Runtime
from poolvec.indexer import ImageIndex
from poolvec.indexer.verify.cache import open_image

Features = Callable[[str, bool], LocalFeatures]


def sift_family(side: int, count: int) -> Features:
    def features(path: str, mirrored: bool) -> LocalFeatures:
        img = open_image(path, side, Runtime())
        return replace(sift(mirror(img), count), mirrored=True) if mirrored else sift(img, count)

    return features


def grid_family(extractor: Extractor, block: int, side: int = 320) -> Features:
    model = extractor.backbone.model
    captured: dict[str, torch.Tensor] = {}
    model.blocks[block].register_forward_hook(lambda m, i, o: captured.__setitem__("x", o))

    def features(path: str, mirrored: bool) -> LocalFeatures:
        img = open_image(path, side, Runtime())
        img = mirror(img) if mirrored else img
        x = normalize(extractor.preprocess(img)[None], extractor.policy)
        with torch.inference_mode():
            model.forward_features(x.contiguous(memory_format=torch.channels_last))
        return replace(grid(captured["x"][0].float().numpy(), img.size), mirrored=mirrored)

    return features


def family(name: str, extractor: Extractor) -> tuple[Features, MatchPolicy]:
    if name.startswith("sift"):
        side, _, count = name[4:].partition("n")
        return sift_family(int(side), int(count or 1000)), MatchPolicy()
    if name.startswith("grid"):
        return grid_family(extractor, int(name[4:])), MatchPolicy(ratio=None, threshold=0.03)
    raise SystemExit(f"unknown family {name!r}: siftSIDE[nCOUNT] or gridBLOCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", type=Path)
    parser.add_argument("--families", default="sift640,grid3,grid4")
    parser.add_argument("--min-inliers", default="8,10,12,15,20")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    gt = json.loads((args.set / "gt.json").read_text())
    index = ImageIndex(Path(tempfile.mkdtemp()) / "v.db", optimize=True)
    index.add_folder(args.set / "db")
    queries = sorted(gt)
    shortlists = index.search_many([str(args.set / q) for q in queries], k=10, verify=False)
    thresholds = [int(v) for v in args.min_inliers.split(",")]
    out = {}
    for name in args.families.split(","):
        features, policy = family(name, index.extractor)
        loose = replace(policy, min_inliers=1)
        get = functools.cache(features)  # each image described once per family
        started = time.perf_counter()
        pairs = []  # (is the query's original, inliers when verified)
        for q, hits in zip(queries, shortlists, strict=True):
            plain, flipped = get(str(args.set / q), False), get(str(args.set / q), True)
            truth = {str((args.set / t).resolve()) for t in gt[q]}
            for h in hits:
                c = best(correspond(plain, get(h.path, False), loose), correspond(flipped, get(h.path, False), loose))
                pairs.append((h.path in truth, c.inliers if c.verified else 0))
        seconds = time.perf_counter() - started
        true, wrong = sum(t for t, _ in pairs), sum(not t for t, _ in pairs)
        out[name] = {
            "seconds": round(seconds, 1),
            "verified": {
                n: {
                    "true": f"{sum(t and i >= n for t, i in pairs)}/{true}",
                    "wrong": f"{sum(not t and i >= n for t, i in pairs)}/{wrong}",
                }
                for n in thresholds
            },
        }
        print(name, json.dumps(out[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
