"""Verified matches, measured through the product: search recall and duplicate pairs, with and without verification.

    python scripts/eval_verify.py /tmp/copydet /tmp/copydet-other /tmp/copydet-hard [--json out.json]

For each copy-detection set (``scripts/make_copydet_set.py``; ``--style hard`` for the DISC21-like one):

* **search**: the database indexed with the default (self-tuned) embedding through :class:`ImageIndex` and Milvus
  Lite; every query searched as ``poolvec search`` does — global only (``verify=False``), and verified (the default:
  the shortlist checked by local features, the query's regions searched when nothing verifies). Recall@1/@10, µAP
  (a verified hit ranks above every unverified one: confidence 1 + inliers/10⁴), per main edit, and milliseconds per
  query.
* **dups**: database and queries indexed together; ``find_duplicates`` at its defaults, verified and not. True
  pairs: each query with its original, the queries of one original with each other, each distractor crop with the
  photo it was cut from; ignored: two crops of one photo, and (hard set) two queries of different originals (they
  reuse a few held-out photos as backgrounds and collage tiles, so such two may truly share a picture). Pair
  precision and recall of what the groups join, and seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import eval_dups  # scripts/ is this script's folder, first on sys.path

from poolvec.indexer import ImageIndex


def search_eval(root: Path, db: Path) -> dict[str, Any]:
    """Recall@1/@10 and µAP of global and verified search on a set (its database indexed at ``db``)."""
    gt = json.loads((root / "gt.json").read_text())
    edits = json.loads((root / "manifest.json").read_text())["query_edits"]
    index = ImageIndex(db, optimize=True)
    index.add_folder(root / "db")
    queries = sorted(gt)
    out: dict[str, Any] = {}
    for mode, verify in (("global", False), ("verified", True)):
        hits, times = [], []
        for q in queries:
            t = time.perf_counter()
            hits.append(index.search(str(root / q), k=10, verify=verify))
            times.append(time.perf_counter() - t)
        out[mode] = _scores(root, gt, edits, queries, hits)
        out[mode]["ms_per_query_p50"] = round(1000 * statistics.median(times), 1)
    index.close()
    return out


def _scores(root: Path, gt: dict, edits: dict, queries: list[str], hits: list) -> dict[str, Any]:
    r1 = r10 = 0
    per: dict[str, list[int]] = {}
    scored: list[tuple[float, bool]] = []
    for q, hs in zip(queries, hits, strict=True):
        truth = {str((root / t).resolve()) for t in gt[q]}
        ranks = [i for i, h in enumerate(hs) if h.path in truth]
        first = ranks[0] if ranks else None
        r1 += first == 0
        r10 += first is not None
        e = per.setdefault(edits[q]["main_edit"], [0, 0])
        e[0] += first == 0
        e[1] += 1
        scored.extend((1 + h.inliers / 1e4 if h.verified else h.score, h.path in truth) for h in hs)
    n = len(queries)
    return {
        "recall@1": round(100 * r1 / n, 1),
        "recall@10": round(100 * r10 / n, 1),
        "uap": round(100 * _uap(scored, n), 1),
        "per_edit": {k: f"{a}/{b}" for k, (a, b) in sorted(per.items())},
    }


def _uap(scored: list[tuple[float, bool]], positives: int) -> float:
    """Micro average precision over every (query, hit) pair by confidence (ISC 2021's µAP), each query's
    original counted once."""
    ap, tp = 0.0, 0
    for i, (_, ok) in enumerate(sorted(scored, key=lambda x: -x[0]), 1):
        if ok:
            tp += 1
            ap += tp / i
    return ap / positives


def truth(root: Path) -> tuple[list[str], set[frozenset[str]], set[frozenset[str]]]:
    """Files of the collection (database + queries), true pairs and ignored pairs, as absolute paths: those of
    ``scripts/eval_dups.py``, and on the hard set every pair of queries that is not a true one too."""
    files, pos, ignore = eval_dups.truth(root)
    full = [str(Path(f).resolve()) for f in files]
    named = lambda pairs: {frozenset(full[i] for i in p) for p in pairs}  # noqa: E731
    positives, ignored = named(pos), named(ignore)
    manifest = json.loads((root / "manifest.json").read_text())
    if manifest.get("style") == "hard":
        # The hard set's queries reuse a few held-out photos as backgrounds and tiles: two queries of different
        # originals may truly share a picture, so pairs of queries are judged only when they are positives.
        queries = sorted(str((root / q).resolve()) for q in manifest["query_edits"])
        ignored.update(frozenset(p) for p in itertools.combinations(queries, 2))
    return full, positives, ignored - positives


def dups_eval(root: Path, db: Path) -> dict[str, Any]:
    """Pair precision and recall of ``find_duplicates`` at its defaults, verified and not."""
    files, pos, ignore = truth(root)
    index = ImageIndex(db, optimize=True)
    index.add(files)
    out: dict[str, Any] = {}
    for mode, verify in (("global (threshold 0.15)", False), ("verified", True)):
        t = time.perf_counter()
        groups = index.find_duplicates(verify=verify)
        seconds = time.perf_counter() - t
        joined = {frozenset(p) for g in groups for p in itertools.combinations(g.paths, 2)}
        judged = joined - ignore
        tp = len(judged & pos)
        out[mode] = {
            "precision": round(100 * tp / max(1, len(judged)), 1),
            "recall": round(100 * tp / len(pos), 1),
            "pairs": len(judged),
            "groups": len(groups),
            "largest": max((len(g.paths) for g in groups), default=0),
            "seconds": round(seconds, 1),
        }
    index.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", type=Path, nargs="+")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", choices=("search", "dups"))
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for root in args.sets:
        work = Path(tempfile.mkdtemp(prefix="poolvec-eval-verify-"))
        res: dict[str, Any] = {}
        if args.only != "dups":
            res["search"] = search_eval(root, work / "search.db")
            print(root.name, "search", json.dumps(res["search"]), flush=True)
        if args.only != "search":
            res["dups"] = dups_eval(root, work / "dups.db")
            print(root.name, "dups", json.dumps(res["dups"]), flush=True)
        results[str(root)] = res
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
