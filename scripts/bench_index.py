"""Benchmark the Milvus vector index: insert rate, search latency, recall@k against exact numpy search.

Vectors are a Gaussian mixture pushed through a ReLU and L2-normalised (non-negative, ~50 % zeros, random
pairs at cosine ≈ 0.32, same-cluster pairs ≈ 0.68 — the statistics of GeM-pooled EfficientNet-Lite0
embeddings of real photos). Half the queries are near-duplicates of stored rows (an edited copy), half fresh
draws from the mixture (an unseen photo of a known kind of scene). Everything goes through
``indexer.store.MilvusStore`` — the product's schema, upsert and search path (with its output fields).

Backends: Milvus Lite (a temporary database) and a Milvus server (``--server http://host:19530``, or
``--start-server`` to run the PyPI ``milvus`` package's standalone server inside a private network namespace).
Prints a table (latencies: median over ``--runs`` passes of the per-pass p50/p95); ``--json PATH`` writes it.

    .venv/bin/python scripts/bench_index.py [--n 100000] [--dim 1280] [--backends lite,server] --start-server
    .venv/bin/python scripts/bench_index.py --n 20000 --lite-indexes HNSW --sweep --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType

from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.milvus.vector_index import VectorIndex

NETNS_ENV = "POOLVEC_BENCH_NETNS"


# -- data ------------------------------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32)."""
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def mixture(
    n: int, dim: int, clusters: int, seed: int, sample_seed: int | None = None, spread: float = 0.8
) -> np.ndarray:
    """``n`` non-negative unit vectors from a ReLU'd Gaussian mixture (embedding-like structure)."""
    centers = np.random.default_rng(seed).standard_normal((clusters, dim), dtype=np.float32)
    rng = np.random.default_rng([seed, 1 if sample_seed is None else sample_seed])
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 10_000):
        m = min(10_000, n - start)
        lab = rng.integers(0, clusters, m)
        x = centers[lab] + spread * rng.standard_normal((m, dim), dtype=np.float32)
        out[start : start + m] = _unit(np.maximum(x, 0))
    return out


def make_queries(base: np.ndarray, nq: int, clusters: int, seed: int) -> np.ndarray:
    """Half near-duplicates of random stored rows (cosine ≈ 0.88), half fresh mixture draws."""
    rng = np.random.default_rng(seed + 1)
    near = base[rng.choice(len(base), nq - nq // 2, replace=False)]
    near = _unit(np.maximum(near + 0.015 * rng.standard_normal(near.shape, dtype=np.float32), 0))
    fresh = mixture(nq // 2, base.shape[1], clusters, seed, sample_seed=2)  # same centres, other samples
    return np.concatenate([near, fresh])


def real_embeddings(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` embeddings of random crops/flips/rescales of the bundled real photos, plus edited-copy queries."""
    from PIL import Image, ImageOps

    from poolvec.extractor import Extractor

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import sample_photos

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        sample_photos.write(Path(tmp))
        photos = [Image.open(p).convert("RGB") for p in sorted(Path(tmp).glob("*.jpg"))]
    views = []
    for i in range(n):
        img = photos[i % len(photos)]
        w, h = img.size
        s = rng.uniform(0.35, 1.0)
        cw, ch = max(32, int(w * s)), max(32, int(h * s * rng.uniform(0.8, 1.25)))
        cw, ch = min(cw, w), min(ch, h)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        view = img.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            view = ImageOps.mirror(view)
        views.append(view.resize((max(16, int(cw * rng.uniform(0.5, 1))), max(16, int(ch * rng.uniform(0.5, 1))))))
    ex = Extractor()
    vecs = ex.embed(views)
    return vecs.astype(np.float32), ex


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-``k`` row numbers by inner product (the ground truth)."""
    scores = queries @ base.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


# -- one configuration -----------------------------------------------------------------------------------------
def _rows(store: MilvusStore, ids: np.ndarray, vecs: np.ndarray) -> list[dict[str, Any]]:
    """Rows for whatever schema the store creates: metadata fields get plausible dummy values."""
    fields = store.client.describe_collection(store.collection)["fields"]
    rows = []
    for i, v in zip(ids.tolist(), vecs, strict=True):
        row: dict[str, Any] = {"id": i, "vector": v.tolist()}
        for f in fields:
            name, kind = f["name"], f["type"]
            if name in row:
                continue
            if kind == DataType.VARCHAR:
                row[name] = f"/bench/{i:08d}.jpg" if name != "sha256" else f"{i:064x}"
            elif kind in (DataType.INT64, DataType.INT32):
                row[name] = i
            elif kind == DataType.JSON:
                row[name] = {}
            elif kind == DataType.BOOL:
                row[name] = False
            elif kind in (DataType.FLOAT, DataType.DOUBLE):
                row[name] = 0.0
            else:
                raise SystemExit(f"bench: no dummy value for field {name} ({kind})")
        rows.append(row)
    return rows


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def _wait_indexed(store: MilvusStore, n: int, limit_s: float = 1800, settled: bool = True) -> None:
    """Block until the server has built the vector index on every row (Lite builds inline); with ``settled``, also
    until nothing is pending re-index (what compaction merged: at a million rows still pending 30 minutes on)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        desc = store.client.describe_index(store.collection, "vector")
        pending = int(desc.get("pending_index_rows", 0)) if settled else 0
        if int(desc.get("indexed_rows", 0)) >= n and pending == 0:
            return
        time.sleep(1)
    raise SystemExit(f"bench: index not built after {limit_s} s")


def _wait_lite_indexed(coll_dir: Path, kind: str, quiet_s: float = 20, limit_s: float = 3600) -> None:
    """Block until Lite's compaction and index builds settle (its describe_index says Finished at once)."""
    t0 = time.monotonic()
    last, since = None, time.monotonic()
    while time.monotonic() - t0 < limit_s:
        data = sorted(p.name.removesuffix(".parquet") for p in coll_dir.glob("partitions/*/data/data_*.parquet"))
        idx = sorted(p.name.split(".")[0] for p in coll_dir.glob("partitions/*/indexes/*.idx"))
        state = (data, idx)
        if state != last:
            last, since = state, time.monotonic()
        done = kind == "FLAT" or set(data) <= set(idx)
        if done and time.monotonic() - since >= quiet_s:
            return
        time.sleep(1)
    raise SystemExit(f"bench: Lite index not built after {limit_s} s")


def search_pass(
    store: MilvusStore, index: VectorIndex, queries: np.ndarray, k: int, batch: int
) -> tuple[list[float], list[float], np.ndarray]:
    """One pass: single-query latencies (ms), batched-call latencies (ms), and the single-query ids."""
    single, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = store.search([q.tolist()], k, index)[0]
        single.append((time.perf_counter() - t0) * 1e3)
        found.append([int(h["id"]) for h in hits] + [-1] * (k - len(hits)))
    batched = []
    for start in range(0, len(queries), batch):
        chunk = queries[start : start + batch].tolist()
        t0 = time.perf_counter()
        store.search(chunk, k, index)
        batched.append((time.perf_counter() - t0) * 1e3)
    return single, batched, np.asarray(found)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the exact top-k found."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found.tolist(), truth.tolist(), strict=True)]))


def bench_one(
    uri: str, backend: str, index: VectorIndex, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, a
) -> dict[str, Any]:
    """Load ``base`` into a fresh collection with ``index``, then time searches and measure recall."""
    coll = f"bench_{index.kind.lower()}"
    store = MilvusStore(uri, coll, timeout=60)
    store.drop()
    store.create(base.shape[1], {"bench": True}, "bench", index)
    ids = np.arange(len(base), dtype=np.int64)
    t0 = time.perf_counter()
    small = min(a.product_rows, len(base))
    for start in range(0, small, 64):  # the product's batch (indexer INSERT_BATCH)
        store.upsert(_rows(store, ids[start : start + 64], base[start : start + 64]))
    t_small = time.perf_counter() - t0
    t1 = time.perf_counter()
    for start in range(small, len(base), a.insert_batch):
        store.upsert(_rows(store, ids[start : start + a.insert_batch], base[start : start + a.insert_batch]))
    t_bulk = time.perf_counter() - t1
    t2 = time.perf_counter()
    store.flush()
    if backend == "server":
        _wait_indexed(store, len(base))
    else:
        _wait_lite_indexed(Path(uri) / "collections" / coll, index.kind)
    store.load()
    store.search([queries[0].tolist()], a.k, index)  # first search: Lite may build the index lazily
    t_ready = time.perf_counter() - t2
    res: dict[str, Any] = {
        "backend": backend,
        "index": index.kind,
        "params": index.params,
        "search": index.search_params(a.k)["params"],
        "n": len(base),
        "queries": len(queries),
        "insert_rows_s_batch64": small / t_small if small else None,
        "insert_rows_s_bulk": (len(base) - small) / t_bulk if len(base) > small else None,
        "insert_batch": a.insert_batch,
        "index_ready_s": t_ready,
        "count": store.count(),
    }
    res.update(_measure(store, index, queries, truth, a))
    if a.sweep and index.kind.startswith(("HNSW", "IVF")):
        key, values = (
            ("ef", [16, 32, 64, 128, 256]) if index.kind.startswith("HNSW") else ("nprobe", [4, 8, 16, 32, 64])
        )
        res["sweep"] = []
        for val in values:
            alt = VectorIndex(index.kind, index.params, index.metric, search={key: val})
            single, _, found = search_pass(store, alt, queries, a.k, a.batch)
            res["sweep"].append(
                {key: val, "p50_ms": _pct(single, 50), "p95_ms": _pct(single, 95), "recall": recall(found, truth)}
            )
            print(f"    {index.kind} {key}={val}: {res['sweep'][-1]}", flush=True)
    if backend == "lite":
        res["disk_mb"] = sum(f.stat().st_size for f in Path(uri).rglob("*") if f.is_file()) / 1e6
    store.drop()
    store.close()
    return res


def _measure(store: MilvusStore, index: VectorIndex, queries: np.ndarray, truth: np.ndarray, a) -> dict[str, Any]:
    """Median over ``a.runs`` passes of p50/p95 single and batched latency, plus recall@k."""
    p50, p95, b50, rec = [], [], [], []
    for _ in range(a.runs):
        single, batched, found = search_pass(store, index, queries, a.k, a.batch)
        p50.append(_pct(single, 50))
        p95.append(_pct(single, 95))
        b50.append(_pct(batched, 50))
        rec.append(recall(found, truth))
    return {
        "single_p50_ms": statistics.median(p50),
        "single_p95_ms": statistics.median(p95),
        "batch": a.batch,
        "batch_p50_ms": statistics.median(b50),
        "batch_per_query_ms": statistics.median(b50) / a.batch,
        "recall": statistics.median(rec),
        "runs": a.runs,
    }


# -- server ------------------------------------------------------------------------------------------------------
def start_server(base_dir: str):
    """Start the ``milvus`` package's standalone server (call only inside a private network namespace)."""
    from milvus import default_server

    default_server.set_base_dir(base_dir)
    default_server.start()
    return default_server


def reexec_in_netns() -> None:
    """Run this script again inside ``unshare --net`` (loopback only), since the server binds every interface."""
    if os.environ.get(NETNS_ENV) or shutil.which("unshare") is None:
        return
    cmd = " ".join(["ip link set lo up && exec", *(f"'{x}'" for x in [sys.executable, *sys.argv])])
    env = {**os.environ, NETNS_ENV: "1"}
    raise SystemExit(subprocess.call(["unshare", "--net", "bash", "-c", cmd], env=env))


# -- main --------------------------------------------------------------------------------------------------------
def main() -> None:
    """Parse arguments, run every backend × index configuration, print and optionally save the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors stored")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--flat-queries", type=int, default=60, help="queries for FLAT (exhaustive, slow)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16, help="queries per batched search call")
    ap.add_argument("--runs", type=int, default=3, help="search passes (medians are reported)")
    ap.add_argument("--insert-batch", type=int, default=1000, help="rows per upsert after the first --product-rows")
    ap.add_argument("--product-rows", type=int, default=5000, help="rows upserted 64 at a time, as the indexer does")
    ap.add_argument("--backends", default="lite,server")
    ap.add_argument("--lite-indexes", default="FLAT,HNSW,IVF_FLAT")
    ap.add_argument("--server-indexes", default="FLAT,HNSW,IVF_FLAT")
    ap.add_argument("--nlist", type=int, default=None, help="IVF nlist (default: the store's)")
    ap.add_argument("--server", default=None, help="http://host:port of a running server")
    ap.add_argument("--start-server", action="store_true", help="start the `milvus` package's server (netns)")
    ap.add_argument("--sweep", action="store_true", help="also sweep HNSW ef / IVF nprobe")
    ap.add_argument("--real", type=int, default=0, help="also measure recall on this many real-photo embeddings")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    backends = [b for b in a.backends.split(",") if b]
    if set(backends) - {"lite", "server"}:
        ap.error(f"--backends takes lite and/or server, not {a.backends!r}")
    if "server" in backends and a.start_server:
        reexec_in_netns()

    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_index_"))
    work.mkdir(parents=True, exist_ok=True)
    server = None
    t0 = time.perf_counter()
    base = mixture(a.n, a.dim, a.clusters, a.seed)
    queries = make_queries(base, a.queries, a.clusters, a.seed)
    truth = exact_topk(base, queries, a.k)
    print(f"data: {a.n} × {a.dim} vectors, {len(queries)} queries, truth in {time.perf_counter() - t0:.1f} s")
    results: list[dict[str, Any]] = []
    try:
        for backend in backends:
            if backend == "server":
                if a.server:
                    uri = a.server
                elif a.start_server:
                    server = start_server(str(work / "milvus"))
                    uri = f"http://127.0.0.1:{server.listen_port}"
                else:
                    print("server: skipped (give --server URI or --start-server)")
                    continue
                kinds = a.server_indexes
            else:
                uri, kinds = str(work / "bench_lite.db"), a.lite_indexes
            for kind in [k for k in kinds.split(",") if k]:
                params = None
                if kind.startswith("IVF") and a.nlist:
                    params = {**VectorIndex(kind).params, "nlist": a.nlist}
                index = VectorIndex(kind, params)
                print(f"{backend} {kind} {index.params} …", flush=True)
                # Brute force is slow: FLAT gets an evenly spread subset (both query kinds).
                pick = np.linspace(
                    0, len(queries) - 1, min(len(queries), a.flat_queries) if kind == "FLAT" else len(queries)
                ).astype(int)
                res = bench_one(uri, backend, index, base, queries[pick], truth[pick], a)
                res["data"] = "mixture"
                print("   ", json.dumps({k: v for k, v in res.items() if k != "sweep"}), flush=True)
                results.append(res)
        if a.real:
            results.extend(bench_real(a, work, backends, server))
    finally:
        if server is not None:
            server.stop()
    table(results)
    if a.json:
        meta = {
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "python": platform.python_version(),
            "versions": _versions(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        }
        a.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
        print(f"wrote {a.json}")
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)


def bench_real(a, work: Path, backends: list[str], server) -> list[dict[str, Any]]:
    """Recall on real-photo embeddings (Lite; HNSW and IVF_FLAT): crops of the bundled photos."""
    t0 = time.perf_counter()
    vecs, _ = real_embeddings(a.real + a.queries, a.seed)
    base, queries = vecs[: a.real], vecs[a.real :]
    truth = exact_topk(base, queries, a.k)
    print(f"real: {len(base)} embeddings + {len(queries)} queries in {time.perf_counter() - t0:.0f} s", flush=True)
    out = []
    sub = argparse.Namespace(**{**vars(a), "product_rows": 0})
    for kind in ("HNSW", "IVF_FLAT"):
        params = {"nlist": max(16, int(4 * len(base) ** 0.5))} if kind == "IVF_FLAT" else None
        res = bench_one(str(work / "bench_real.db"), "lite", VectorIndex(kind, params), base, queries, truth, sub)
        res["data"] = "real"
        print("   ", json.dumps({k: v for k, v in res.items() if k != "sweep"}), flush=True)
        out.append(res)
    return out


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("pymilvus", "milvus-lite", "milvus"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def table(results: list[dict[str, Any]]) -> None:
    """Print the results as a Markdown table."""
    print()
    print(
        "| data | backend | index | n | insert rows/s (64 / bulk) | ready s | p50 ms | p95 ms "
        "| batch p50 ms (per query) | recall@k |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ins64 = f"{r['insert_rows_s_batch64']:.0f}" if r["insert_rows_s_batch64"] else "–"
        bulk = f"{r['insert_rows_s_bulk']:.0f}" if r["insert_rows_s_bulk"] else "–"
        print(
            f"| {r['data']} | {r['backend']} | {r['index']} {r['params'] or ''} {r['search'] or ''} | {r['n']} "
            f"| {ins64} / {bulk} | {r['index_ready_s']:.1f} | {r['single_p50_ms']:.1f} | {r['single_p95_ms']:.1f} "
            f"| {r['batch_p50_ms']:.1f} ({r['batch_per_query_ms']:.1f}) | {r['recall']:.4f} |"
        )
    sweeps = [r for r in results if r.get("sweep")]
    if sweeps:
        print()
        print("| data | backend | index | search param | p50 ms | p95 ms | recall@k |")
        print("|---|---|---|---|---:|---:|---:|")
        for r in sweeps:
            for s in r["sweep"]:
                key = "ef" if "ef" in s else "nprobe"
                print(
                    f"| {r['data']} | {r['backend']} | {r['index']} | {key}={s[key]} | {s['p50_ms']:.1f} "
                    f"| {s['p95_ms']:.1f} | {s['recall']:.4f} |"
                )


if __name__ == "__main__":
    main()
