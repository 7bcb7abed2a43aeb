"""Duplicate pairs, measured: precision and recall of ``dups`` at several thresholds, with and without score
normalisation, on a copy-detection set whose queries are put back into the collection.

    python scripts/eval_dups.py /tmp/copydet --prior /tmp/prior_other.npz [--json out.json]

The collection is the set's database plus its queries. True pairs: each query with its original, the queries of
one original with each other, and each distractor crop with the photo it was cut from (two crops of one photo
may not overlap: that pair counts neither way). Pairs are found as ``dups`` finds them — each image's top-k
neighbours — and scored raw (cosine) or normalised (Pizzi et al., SSCD 2022): s − β·(b_a + b_b)/2, where b_x is
the mean similarity of x to its k nearest other images. Embeddings: the untuned GeM default and the tuned
default (fitted on this collection, the prior of photos not in the set mixed in).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from poolvec.extractor import Extractor, priors
from poolvec.indexer.dups.find import SKIP
from poolvec.indexer.dups.graph import nearest, normalised, pairs

THRESHOLDS_RAW = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9)
THRESHOLDS_NORM = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)


def truth(root: Path) -> tuple[list[str], set[frozenset[int]], set[frozenset[int]]]:
    """Files of the collection, true pairs, and pairs to ignore (two crops of one photo)."""
    manifest = json.loads((root / "manifest.json").read_text())
    files = sorted(manifest["database"]) + sorted(manifest["query_edits"])
    at = {f: i for i, f in enumerate(files)}
    pos: set[frozenset[int]] = set()
    by_original: dict[str, list[int]] = {}
    for q, info in manifest["query_edits"].items():
        pos.add(frozenset((at[q], at[info["original"]])))
        by_original.setdefault(info["original"], []).append(at[q])
    for group in by_original.values():
        pos.update(frozenset((a, b)) for a in group for b in group if a < b)
    photo: dict[str, int] = {}
    crops: dict[str, list[int]] = {}
    for f, info in manifest["database"].items():
        source = re.sub(r" \[crop .*\]$", "", info["source"])
        if info["role"] == "distractor crop":
            crops.setdefault(source, []).append(at[f])
        else:
            photo[source] = at[f]
    ignore: set[frozenset[int]] = set()
    for source, group in crops.items():
        pos.update(frozenset((c, photo[source])) for c in group)
        ignore.update(frozenset((a, b)) for a in group for b in group if a < b)
    return [str(root / f) for f in files], pos, ignore


def pair_scores(vectors: np.ndarray, k: int, beta: float | None) -> dict[frozenset[int], float]:
    """Each image's top-k neighbours as pairs, with their (raw or normalised) score: the product's own graph."""
    scores, found = nearest(vectors, k, exact_upto=len(vectors))
    if beta:
        scores = normalised(scores, found, beta, SKIP)
    a, b, s = pairs(scores, found, -np.inf)
    return {frozenset((x, y)): v for x, y, v in zip(a.tolist(), b.tolist(), s.tolist(), strict=True)}


def measure(scores: dict[frozenset[int], float], pos: set, ignore: set, thresholds) -> dict[str, Any]:
    items = [(s, key in pos) for key, s in scores.items() if key not in ignore]
    items.sort(key=lambda t: -t[0])
    hits = np.array([h for _, h in items], dtype=bool)
    tp = np.cumsum(hits)
    micro_ap = float((tp[hits] / (np.flatnonzero(hits) + 1)).sum() / len(pos))
    rows = []
    for t in thresholds:
        sel = np.array([s >= t for s, _ in items], dtype=bool)
        n_tp = int((sel & hits).sum())
        rows.append(
            {
                "threshold": t,
                "precision": n_tp / max(int(sel.sum()), 1),
                "recall": n_tp / len(pos),
                "pairs": int(sel.sum()),
            }
        )
    f1 = [2 * tp[i] / (i + 1 + len(pos)) for i in range(len(items))]
    best = int(np.argmax(f1))
    return {"µAP": micro_ap, "thresholds": rows, "best_f1": float(f1[best]), "best_f1_threshold": items[best][0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", type=Path)
    parser.add_argument("--prior", type=Path, required=True, help="a prior fitted on photos not in the set")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    files, pos, ignore = truth(args.set)
    untuned = Extractor(pooling="gem(p=3) | l2", optimize=True)
    tuned = Extractor(optimize=True)
    priors.use(tuned, priors.load(args.prior))
    tuned.fit(files)
    out: dict[str, Any] = {"set": str(args.set), "images": len(files), "true_pairs": len(pos), "k": args.k}
    for name, ex in (("untuned", untuned), ("tuned", tuned)):
        v = ex.embed(files)
        out[name] = {
            "raw": measure(pair_scores(v, args.k, None), pos, ignore, THRESHOLDS_RAW),
            "normalised": measure(pair_scores(v, args.k, args.beta), pos, ignore, THRESHOLDS_NORM),
        }
    print(f"{args.set}: {len(files)} images, {len(pos)} true pairs, k={args.k}, β={args.beta}")
    for name in ("untuned", "tuned"):
        for kind in ("raw", "normalised"):
            r = out[name][kind]
            cells = "  ".join(
                f"{t['threshold']:.2f}: P {100 * t['precision']:.0f} R {100 * t['recall']:.0f}" for t in r["thresholds"]
            )
            print(
                f"{name:8s} {kind:10s} µAP {100 * r['µAP']:.1f} best F1 {100 * r['best_f1']:.1f} "
                f"at {r['best_f1_threshold']:.3f} | {cells}"
            )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
