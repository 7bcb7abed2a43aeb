"""Self-tuning, measured: the tuned default against the untuned one on copy-detection sets, three protocols.

    python scripts/make_copydet_set.py /tmp/copydet
    python scripts/make_copydet_set.py /tmp/copydet-other --collection other --sources /tmp/copydet-other-src
    python scripts/fit_prior.py --collections other --out /tmp/prior_other.npz
    python scripts/fit_prior.py --collections wallpapers --out /tmp/prior_wallpapers.npz
    python scripts/eval_tuning.py --set wallpapers=/tmp/copydet:/tmp/prior_other.npz \\
        --set other=/tmp/copydet-other:/tmp/prior_wallpapers.npz --json /tmp/eval_tuning.json

Each set is ``NAME=FOLDER:PRIOR``: a folder from ``make_copydet_set.py`` and a prior fitted on photos *not* in it
(the packaged prior has seen both sets, so each set is evaluated with the prior of the other one, as a user's
photos would be). Rows per set:

* ``untuned`` — ``gem(p=3) | l2``, the default before self-tuning;
* ``prior only`` — ``Extractor()`` with no index: the map fitted on the other set ("fitted on one set, tested on
  the other");
* ``tuned (default)`` — a new ``ImageIndex`` tunes itself on the database and indexes it, searched through
  Milvus Lite (what users get); ``tuned, no prior`` — the same fit without the prior;
* ``half`` — tuned on half of the database images, scored on the queries whose originals are in the other half
  (beside the untuned default on the same queries); ``lw(dim=k)`` — the default fit at lower dimensions.

Metrics: recall@1, recall@10, mAP and µAP (%), recall@1 per main edit, tuning and indexing seconds.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from poolvec.extractor import Extractor, Tuning, priors
from poolvec.indexer import ImageIndex
from poolvec.indexer.evaluation import GroundTruth, evaluate_index, evaluate_vectors, load_pairs

METRICS = ("recall@1", "recall@10", "mAP", "µAP")


def subset(gt: GroundTruth, keep: list[int]) -> GroundTruth:
    """The ground truth restricted to some queries."""
    out = copy.copy(gt)
    out.queries = [gt.queries[i] for i in keep]
    out.boxes = [gt.boxes[i] for i in keep]
    out.setups = {k: ([ok[i] for i in keep], [junk[i] for i in keep]) for k, (ok, junk) in gt.setups.items()}
    return out


def metrics(result: dict[str, Any]) -> dict[str, Any]:
    s = result["setups"]["all"]
    return {m: s[m] for m in METRICS} | {"per_query": s["per_query"]}


def by_edit(per_query: list[dict[str, Any]], root: Path, manifest: dict[str, Any]) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for pq in per_query:
        edit = manifest["query_edits"][os.path.relpath(pq["query"], root)]["main_edit"]
        groups.setdefault(edit, []).append(float(pq["first_positive"] == 1))
    return {k: float(np.mean(v)) for k, v in sorted(groups.items())}


def exact(ex: Extractor, gt: GroundTruth) -> dict[str, Any]:
    """Metrics of ``ex``'s vectors with exact search."""
    return metrics(evaluate_vectors(gt, ex.embed(gt.queries), ex.embed(gt.database)))


def with_prior(prior: priors.Prior, **kwargs: Any) -> Extractor:
    ex = Extractor(optimize=True, **kwargs)
    priors.use(ex, prior)
    return ex


def evaluate_set(name: str, root: Path, prior: priors.Prior, dims: list[int], workdir: Path) -> dict[str, Any]:
    gt = load_pairs(root / "gt.json", root / "db")
    manifest = json.loads((root / "manifest.json").read_text())
    rows: dict[str, Any] = {}

    def log(row: str, t0: float) -> None:
        r = rows[row]
        print(
            f"  {name} · {row}: " + " ".join(f"{m} {100 * r[m]:.1f}" for m in METRICS) + f" ({time.time() - t0:.0f} s)",
            file=sys.stderr,
        )

    t0 = time.time()
    rows["untuned"] = exact(Extractor(pooling="gem(p=3) | l2", optimize=True), gt)
    log("untuned", t0)
    t0 = time.time()
    rows["prior only"] = exact(with_prior(prior), gt)
    log("prior only", t0)

    for label, weight in (("tuned (default)", Tuning().prior_weight), ("tuned, no prior", 0.0)):
        t0 = time.time()
        db = workdir / f"{name}-{weight:g}.db"
        shutil.rmtree(db, ignore_errors=True)
        idx = ImageIndex(db, extractor=with_prior(prior), tuning=Tuning(prior_weight=weight))
        report = idx.add(gt.database)
        total = time.time() - t0
        tuning = idx.config["tuning"]
        rows[label] = metrics(evaluate_index(idx, gt)) | {
            "tune_s": tuning["seconds"],
            "index_s": total - tuning["seconds"],
            "tuning": tuning,
            "failed": len(report.failed),
        }
        log(label, t0)
        idx.close()

    tuned = Tuning()
    for dim in dims:
        t0 = time.time()
        ex = with_prior(prior, pooling=f"gem(p=3) | l2 | lw(dim={dim}) | l2")
        ex.fit(gt.database, tuning=tuned)
        rows[f"tuned, lw(dim={dim})"] = exact(ex, gt)
        log(f"tuned, lw(dim={dim})", t0)

    rng = np.random.default_rng(0)
    half = sorted(rng.permutation(len(gt.database))[: len(gt.database) // 2].tolist())
    fit_on = [gt.database[i] for i in half]
    names = set(fit_on)
    keep = [i for i, (ok, _) in enumerate(zip(*gt.setups["all"], strict=True)) if gt.database[ok[0]] not in names]
    held = subset(gt, keep)
    t0 = time.time()
    rows["half: untuned"] = exact(Extractor(pooling="gem(p=3) | l2", optimize=True), held)
    log("half: untuned", t0)
    for label, weight in (("half: tuned (default)", tuned.prior_weight), ("half: tuned, no prior", 0.0)):
        t0 = time.time()
        ex = with_prior(prior)
        ex.fit(fit_on, tuning=Tuning(prior_weight=weight))
        rows[label] = exact(ex, held)
        log(label, t0)
    for r in rows.values():
        r["by_edit"] = by_edit(r.pop("per_query"), root, manifest)
    return {
        "folder": str(root),
        "collection": manifest.get("collection", "wallpapers"),
        "queries": len(gt.queries),
        "database": len(gt.database),
        "held_out_queries": len(keep),
        "prior": prior.meta.get("command"),
        "rows": rows,
    }


def render(results: dict[str, Any]) -> str:
    lines = []
    for name, res in results["sets"].items():
        lines += [
            f"\n### {name}: {res['queries']} queries, {res['database']} database images "
            f"(half protocol: {res['held_out_queries']} queries)\n",
            "| row | recall@1 | recall@10 | mAP | µAP | tune s | index s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row, r in res["rows"].items():
            cells = " | ".join(f"{100 * r[m]:.1f}" for m in METRICS)
            tune = f"{r['tune_s']:.0f}" if "tune_s" in r else ""
            index = f"{r['index_s']:.0f}" if "index_s" in r else ""
            lines.append(f"| {row} | {cells} | {tune} | {index} |")
        edits = list(next(iter(res["rows"].values()))["by_edit"])
        lines += [
            f"\nrecall@1 by main edit, {name} (%)\n",
            "| row | " + " | ".join(edits) + " |",
            "| --- | " + " | ".join("---:" for _ in edits) + " |",
        ]
        for row in ("untuned", "prior only", "tuned (default)", "tuned, no prior"):
            e = res["rows"][row]["by_edit"]
            lines.append(f"| {row} | " + " | ".join(f"{100 * e[k]:.1f}" for k in edits) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", required=True, help="NAME=FOLDER:PRIOR (repeat)")
    parser.add_argument("--dims", default="256,512", help="lower lw dimensions to evaluate too")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    dims = [int(d) for d in args.dims.split(",") if d]
    out: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "command": " ".join(sys.argv),
        "tuning": Tuning().to_dict(),
        "sets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.set:
            name, rest = spec.split("=", 1)
            folder, prior = rest.rsplit(":", 1)
            out["sets"][name] = evaluate_set(name, Path(folder), priors.load(prior), dims, Path(tmp))
    print(render(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
