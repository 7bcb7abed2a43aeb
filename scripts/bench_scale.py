"""An index at scale: insert, search and ``dups`` through the product's own store, synthetic vectors shaped like ours.

``--rows`` vectors (``--dim``, 1280 by default) are drawn from the distribution of a real index's vectors
(``--shape-from``: its mean and top-256 principal directions, the rest isotropic; without it, isotropic), and 1 % of
them are planted copies of another row (cosine 0.9–0.99, a tenth of them byte-identical: same sha256 and vector).
They are upserted 64 rows at a time through :class:`~poolvec.indexer.milvus.store.MilvusStore` (as indexing does);
then a fresh process (as the next command would) opens the index as :class:`~poolvec.indexer.ImageIndex`
(``ready_s``: open, load, first search), searches it with 200 single queries (k = 10; recall@10 against an exact
float64 search of every row), and times ``find_duplicates(verify=False)``, checking the planted pairs. That run keeps
the neighbour graph with the index: a third process times ``dups`` again from it (``kept_*``: first group, all of
them, the same groups), and ``--page`` starts ``poolvec serve`` on the index and times the page's first request
(``/api/dups?limit=50``, then the rest). Peak RSS (``VmHWM``; Milvus Lite runs in the process) is read after each
phase of each process.

    .venv/bin/python scripts/bench_scale.py --rows 100000 --shape-from /tmp/bench-tune/verify-10000.db --json s.json
    .venv/bin/python scripts/bench_scale.py --rows 100000 --planted 0.3 --skip-search --page --json g.json
    .venv/bin/python scripts/bench_scale.py --rows 1000000 --start-server --json server.json

``--start-server`` runs the same on the PyPI ``milvus`` package's standalone server (HNSW, the default), inside a
private network namespace; the build then waits until the server has indexed every row (``index_build_s``; what its
compaction merges may still be re-indexed while the measures run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from bench_index import _wait_indexed, reexec_in_netns, start_server

from poolvec.extractor import Extractor
from poolvec.extractor.recipe import Runtime
from poolvec.indexer import ImageIndex
from poolvec.indexer.dups.current import kept_current
from poolvec.indexer.milvus.schema import make_row, path_id
from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.milvus.vector_index import VectorIndex

CHUNK = 10_000
PLANTED = 0.01
EXACT_SHARE = 0.1
INSERT_BATCH = 64


def hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Shape:
    """A Gaussian with a real index's mean and top principal directions (isotropic without one)."""

    def __init__(self, dim: int, source: str | None, rank: int = 256) -> None:
        self.dim = dim
        self.mean = np.zeros(dim)
        self.basis = np.zeros((0, dim))
        self.scales = np.zeros(0)
        self.rest = 1.0 / np.sqrt(dim)
        if source:
            with ImageIndex(source) as idx:
                vecs = np.concatenate(
                    [
                        np.array([r["vector"] for r in rows])
                        for rows in idx.store.iterate(fields=("vector",), batch_size=1000)
                    ]
                )
            if vecs.shape[1] != dim:
                raise SystemExit(f"--shape-from has {vecs.shape[1]}-d vectors, --dim is {dim}")
            self.mean = vecs.mean(0)
            centred = vecs - self.mean
            _, s, vt = np.linalg.svd(centred, full_matrices=False)
            var = s**2 / len(vecs)
            self.basis, self.scales = vt[:rank], np.sqrt(var[:rank])
            self.rest = float(np.sqrt(var[rank:].mean())) if len(var) > rank else 0.0

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, basis=self.basis, scales=self.scales, rest=self.rest)

    @classmethod
    def load(cls, path: Path, dim: int) -> Shape:
        shape = cls(dim, None)
        with np.load(path) as f:
            shape.mean, shape.basis, shape.scales, shape.rest = f["mean"], f["basis"], f["scales"], float(f["rest"])
        return shape

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = self.mean + (rng.standard_normal((n, len(self.scales))) * self.scales) @ self.basis
        x = x + rng.standard_normal((n, self.dim)) * self.rest
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def chunk(
    shape: Shape, seed: int, start: int, n: int, planted_share: float = PLANTED
) -> tuple[np.ndarray, list[str], list[tuple[int, int]]]:
    """Rows ``start``…``start+n``: vectors, sha256s, and the planted (original, copy) pairs among them."""
    rng = np.random.default_rng([seed, start])
    vecs = shape.draw(rng, n)
    shas = [hashlib.sha256(f"row{start + i}".encode()).hexdigest() for i in range(n)]
    planted = []
    copies = rng.choice(n, size=int(n * planted_share), replace=False)
    originals = np.setdiff1d(np.arange(n), copies)
    for c in copies:
        o = int(rng.choice(originals))
        if rng.random() < EXACT_SHARE:
            vecs[c], shas[c] = vecs[o], shas[o]
        else:
            cos = rng.uniform(0.9, 0.99)
            vecs[c] = near_copy(vecs[o], cos, rng.standard_normal(shape.dim))
        planted.append((start + o, start + int(c)))
    return vecs.astype(np.float32), shas, planted


def near_copy(v: np.ndarray, cos: float, noise: np.ndarray) -> np.ndarray:
    """The unit vector at cosine ``cos`` from unit vector ``v``, towards ``noise``'s part orthogonal to it."""
    noise = noise - noise @ v * v
    noise /= np.linalg.norm(noise)
    return cos * v + np.sqrt(1 - cos**2) * noise


def path_of(i: int) -> str:
    return f"/synthetic/{i // 1000:04d}/{i:07d}.jpg"


def build(args: argparse.Namespace, shape: Shape, uri: str, out: dict) -> None:
    """Create the collection and upsert every row, 64 at a time (as indexing does); on a server, wait for its index."""
    recipe = Extractor(runtime=Runtime(device="cpu")).recipe
    if recipe.dim != args.dim:
        raise SystemExit(f"the default recipe makes {recipe.dim}-d vectors; pass --dim {recipe.dim}")
    store = MilvusStore(uri, "images")
    store.create(recipe, VectorIndex())
    t = time.perf_counter()
    for start in range(0, args.rows, CHUNK):
        n = min(CHUNK, args.rows - start)
        vecs, shas, _ = chunk(shape, args.seed, start, n, args.planted)
        info = {"size": 1, "mtime_ns": 0, "width": 1, "height": 1}
        for b in range(0, n, INSERT_BATCH):
            store.upsert(
                [
                    make_row(path_of(start + i), "/synthetic", vecs[i], {**info, "sha256": shas[i]})
                    for i in range(b, min(n, b + INSERT_BATCH))
                ]
            )
        print(f"inserted {start + n} rows, {time.perf_counter() - t:.0f} s, peak {hwm_mb():.0f} MB", flush=True)
    store.flush()
    out["insert_rows_s"] = round(args.rows / (time.perf_counter() - t))
    if not store.is_lite:
        t = time.perf_counter()
        _wait_indexed(store, args.rows, limit_s=4 * 3600, settled=False)  # every row indexed; merges may go on
        out["index_build_s"] = round(time.perf_counter() - t)
    out["build_peak_rss_mb"] = round(hwm_mb())
    store.close()


def measure(args: argparse.Namespace, shape: Shape, uri: str, out: dict) -> None:
    t = time.perf_counter()
    index = ImageIndex(uri, "images")
    rng = np.random.default_rng(args.seed + 1)
    picks = np.sort(rng.choice(args.rows, size=args.queries, replace=False))
    planted: list[tuple[int, int]] = []
    queries = []
    for start in range(0, args.rows, CHUNK):
        vecs, _, pairs = chunk(shape, args.seed, start, min(CHUNK, args.rows - start), args.planted)
        planted += pairs
        inside = picks[(picks >= start) & (picks < start + CHUNK)]
        if len(inside):
            queries.append(vecs[inside - start])
    q = np.concatenate(queries).astype(np.float64)
    q += rng.standard_normal(q.shape) * 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index.search(q[0].astype(np.float32), k=10, verify=False)
    out["ready_s"] = round(time.perf_counter() - t, 1)
    if not args.skip_search:
        search(index, shape, args, q, out)
    out["planted"] = len(planted)
    if not args.skip_dups:
        dups(index, planted, out, "")
    out["measure_peak_rss_mb"] = round(hwm_mb())
    index.close()


def search(index: ImageIndex, shape: Shape, args: argparse.Namespace, q: np.ndarray, out: dict) -> None:
    times, found = [], []
    for v in q:
        t = time.perf_counter()
        hits = index.search(v.astype(np.float32), k=10, verify=False)
        times.append(time.perf_counter() - t)
        found.append([h.path for h in hits])
    out["search_p50_ms"] = round(float(np.percentile(times, 50)) * 1000, 1)
    out["search_p95_ms"] = round(float(np.percentile(times, 95)) * 1000, 1)
    best = np.full((len(q), 10), -np.inf)
    best_ids = np.zeros((len(q), 10), dtype=np.int64)
    for start in range(0, args.rows, CHUNK):
        vecs, _, _ = chunk(shape, args.seed, start, min(CHUNK, args.rows - start), args.planted)
        s = q @ vecs.astype(np.float64).T
        both = np.concatenate([best, s], axis=1)
        ids = np.concatenate([best_ids, np.arange(start, start + len(vecs))[None].repeat(len(q), 0)], axis=1)
        order = np.argsort(-both, axis=1)[:, :10]
        best, best_ids = np.take_along_axis(both, order, 1), np.take_along_axis(ids, order, 1)
    truth = [{path_of(int(i)) for i in row} for row in best_ids]
    recall = [len(t & set(f)) / 10 for t, f in zip(truth, found, strict=True)]
    out["recall_at_10"] = round(float(np.mean(recall)), 4)
    out["rss_after_search_mb"] = round(hwm_mb())


def planted_pairs(shape: Shape, args: argparse.Namespace) -> list[tuple[int, int]]:
    """The planted (original, copy) rows, drawn again as the build drew them."""
    return [
        p
        for s in range(0, args.rows, CHUNK)
        for p in chunk(shape, args.seed, s, min(CHUNK, args.rows - s), args.planted)[2]
    ]


def dups(index: ImageIndex, planted: list[tuple[int, int]], out: dict, prefix: str, under: str | None = None) -> None:
    """Time ``dups`` (first group, all), count the planted pairs grouped, and a digest of the groups (``under``: a
    folder, searched anew and never kept)."""
    t = time.perf_counter()
    first = None
    groups = []
    for g in index.iter_duplicates(verify=False, decided=False, under=under):  # the synthetic files do not exist
        first = first if first is not None else time.perf_counter() - t
        groups.append(g)
    out[f"{prefix}dups_s"] = round(time.perf_counter() - t, 1)
    out[f"{prefix}dups_first_group_s"] = round(first or 0.0, 2)
    where = {p: n for n, g in enumerate(groups) for p in g.paths}
    hit = sum(1 for o, c in planted if _name(o) in where and where.get(_name(o)) == where.get(_name(c)))
    out[f"{prefix}planted_found"] = hit
    out[f"{prefix}groups"] = len(groups)
    out[f"{prefix}grouped_files"] = len(where)
    out[f"{prefix}groups_digest"] = hashlib.sha256(json.dumps([g.paths for g in groups]).encode()).hexdigest()[:16]
    out[f"{prefix}rss_after_dups_mb"] = round(hwm_mb())


def _name(row: int | str) -> str:
    return path_of(row) if isinstance(row, int) else row


def measure_repair(args: argparse.Namespace, shape: Shape, uri: str, out: dict) -> None:
    """Write ``--repair`` new rows (near copies of existing ones, cosine 0.9–0.99) and delete them again, each as a
    writer that keeps the graph current (:func:`~poolvec.indexer.dups.current.kept_current`), in a fresh process:
    the time the repair adds to the writes, ``dups`` from the repaired graph against a new search of every row, and
    the groups after the delete against those before the writes."""
    index = ImageIndex(uri, "images")
    store = index.store
    before: dict = {}
    dups(index, [], before, "")
    out["repair_before_dups_s"] = before["dups_s"]
    rng = np.random.default_rng(args.seed + 2)
    originals = [path_of(int(i)) for i in rng.choice(args.rows, size=args.repair, replace=False)]
    vectors = store.get([path_id(p) for p in originals], fields=("vector",))
    info = {"size": 1, "mtime_ns": 0, "width": 1, "height": 1}
    rows, pairs = [], []
    for n, original in enumerate(originals):
        v = np.asarray(vectors[path_id(original)]["vector"], dtype=np.float64)
        noise = rng.standard_normal(len(v))
        copy = near_copy(v, rng.uniform(0.9, 0.99), noise)
        name = f"/synthetic/new/{n:07d}.jpg"
        rows.append(make_row(name, "/synthetic", copy.astype(np.float32), {**info, "sha256": f"{n:064x}"}))
        pairs.append((original, name))
    for step, write in (("add", rows), ("delete", [r["id"] for r in rows])):
        t = time.perf_counter()
        with kept_current(store):
            for b in range(0, len(write), INSERT_BATCH):
                (store.upsert if step == "add" else store.delete)(write[b : b + INSERT_BATCH])
            written = time.perf_counter()
        out[f"repair_{step}_write_s"] = round(written - t, 2)
        out[f"repair_{step}_s"] = round(time.perf_counter() - written, 2)
        out[f"repair_{step}_kept"] = store.kept_meta() is not None
        if step == "add":
            dups(index, pairs, out, "repaired_")
            dups(index, pairs, out, "searched_", under="/synthetic")
    dups(index, [], out, "restored_")
    out["restored_same_groups"] = out["restored_groups_digest"] == before["groups_digest"]
    index.close()


def measure_kept(args: argparse.Namespace, shape: Shape, uri: str, out: dict) -> None:
    """``dups`` in a fresh process, from the graph the previous run kept."""
    t = time.perf_counter()
    index = ImageIndex(uri, "images")
    out["kept_open_s"] = round(time.perf_counter() - t, 2)
    dups(index, planted_pairs(shape, args), out, "kept_")
    index.close()


def page(uri: str, out: dict) -> None:
    """``poolvec serve`` on the index: the page's first request (50 groups), then the rest (as the page asks)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(Path(sys.executable).parent / "poolvec"), "serve", "--db", uri, "--port", str(port), "--no-optimize"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        t = time.perf_counter()
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
            if server.poll() is not None or time.perf_counter() - t > 600:
                raise SystemExit(f"poolvec serve did not start: {cmd}")
        out["page_server_start_s"] = round(time.perf_counter() - t, 1)
        args = {"verify": "false", "limit": 50}
        t = time.perf_counter()
        first = httpx.get(url + "/api/dups", params=args, timeout=600).json()
        out["page_first_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        rest = httpx.get(
            url + "/api/dups", params={"verify": "false", "offset": 50, "threshold": first["threshold"]}, timeout=600
        ).json()
        out["page_rest_s"] = round(time.perf_counter() - t, 2)
        out["page_groups"] = [len(first["groups"]), len(rest["groups"]), first["total"]]
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--shape-from", help="a real index whose vectors' distribution the synthetic ones follow")
    parser.add_argument("--uri", help="where to build the index (default: a temporary Milvus Lite database)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--planted", type=float, default=PLANTED, help="share of rows that are copies of another")
    parser.add_argument("--skip-dups", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--page", action="store_true", help="also time the page's first request on poolvec serve")
    parser.add_argument("--start-server", action="store_true", help="on a Milvus server started for the run")
    parser.add_argument("--measure-only", action="store_true", help="measure an index this script built before")
    parser.add_argument("--repair", type=int, default=0, help="then write this many rows and delete them, repairing")
    parser.add_argument("--measure-kept", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--measure-repair", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shape-file", type=Path, help=argparse.SUPPRESS)  # the parent's shape, for its child
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.start_server:
        reexec_in_netns()  # the server binds every interface: the run goes on in a namespace with loopback only
    out: dict = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "rows": args.rows,
        "dim": args.dim,
        "shape_from": args.shape_from,
    }
    shape = Shape.load(args.shape_file, args.dim) if args.shape_file else Shape(args.dim, args.shape_from)
    if args.measure_only or args.measure_kept or args.measure_repair or args.build_only:
        step = measure_kept if args.measure_kept else build if args.build_only else measure
        step = measure_repair if args.measure_repair else step
        step(args, shape, args.uri, out)
        print(json.dumps(out), flush=True)
        os._exit(0)  # do not wait for Milvus Lite's background work at exit
    tmp = None if args.uri else tempfile.mkdtemp(prefix="bench-scale-")
    uri = args.uri or str(Path(tmp) / "scale.db")
    server = None
    if args.start_server:
        server = start_server(str(Path(tmp or tempfile.mkdtemp(prefix="bench-scale-")) / "milvus"))
        uri = f"http://127.0.0.1:{server.listen_port}"
        out["backend"] = "Milvus server (standalone, PyPI milvus)"
    try:
        cmd = [sys.executable, __file__, "--uri", uri, "--rows", str(args.rows)]
        cmd += ["--dim", str(args.dim), "--queries", str(args.queries), "--seed", str(args.seed)]
        cmd += ["--planted", str(args.planted)]
        # Milvus Lite lets one process a database and keeps its lock until that process exits: the build and each
        # measure are processes of their own (as the commands would be), given the shape as a file
        saved = Path(tmp or tempfile.gettempdir()) / "bench-scale-shape.npz"
        shape.save(saved)
        cmd += ["--shape-file", str(saved)] + ["--skip-dups"] * args.skip_dups + ["--skip-search"] * args.skip_search
        cmd += ["--repair", str(args.repair)]
        steps = [["--build-only"], ["--measure-only"]] + [["--measure-kept"]] * (not args.skip_dups)
        steps += [["--measure-repair"]] * bool(args.repair)
        for step in steps:
            child = subprocess.run([*cmd, *step], capture_output=True, text=True)
            if child.returncode != 0:
                raise SystemExit(child.stderr)
            lines = child.stdout.strip().splitlines()
            print("\n".join(lines[:-1]), flush=True)
            out.update({k: v for k, v in json.loads(lines[-1]).items() if k not in out})
            print(json.dumps(out), flush=True)  # what is measured so far, should a later step not end
        out["peak_rss_mb"] = max(out["build_peak_rss_mb"], out["measure_peak_rss_mb"])
        if args.page:
            page(uri, out)
    finally:
        if server is not None:
            server.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    os._exit(0)  # Milvus Lite's server thread can hold the exit of a process that inserted 100 000 rows for minutes


if __name__ == "__main__":
    main()
