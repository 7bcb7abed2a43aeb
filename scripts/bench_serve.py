"""Benchmark `poolvec serve` on loopback: latency (p50/p95) and queries/s at 1, 4 and 16 concurrent clients.

The server runs as its own process (`poolvec serve --port 0`, bound to 127.0.0.1), as a user runs it; clients are
threads of this script with one keep-alive connection each. Three requests are measured:

- ``upload``: POST /api/search with an image (decode + forward pass + Milvus search + verification of the shortlist
  by local features, the default) — micro-batched when requests wait together; the mean images per embedding pass
  is reported from the server's counters; ``upload unverified``: the same with ``verify=false``;
- ``by id``: GET /api/search?id=N (a stored vector: Milvus search only);
- ``thumbnail``: GET /api/images/N/thumbnail (from the server's cache after the first).

Every cell is bounded: at most ``--requests`` requests and ``--max-seconds`` seconds. Without ``--db``, the 11
sample photos are written to a temporary folder and indexed first (their edited copies are the queries).

    .venv/bin/python scripts/bench_serve.py                                  # sample photos, 1/4/16 clients
    .venv/bin/python scripts/bench_serve.py --db photos.db --queries queries/ --requests 400 --json serve.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
POOLVEC = Path(sys.executable).with_name("poolvec")
KINDS = ("upload", "upload unverified", "by id", "thumbnail")


def sample_index(folder: Path) -> tuple[str, list[Path]]:
    """Write the sample photos and their edited copies, index the photos (in a child process: the server must be
    the only process holding the Milvus Lite database); returns (db, query files)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import sample_photos

    sample_photos.write(folder / "photos", folder / "queries")
    db = str(folder / "bench.db")
    subprocess.run([POOLVEC, "index", str(folder / "photos"), "--db", db, "--quiet"], check=True)
    return db, sorted((folder / "queries").glob("*.jpg"))


class Server:
    """`poolvec serve` in a child process on a free loopback port."""

    def __init__(self, db: str, device: str, timeout: float = 300) -> None:
        command = [POOLVEC, "serve", "--db", db, "--port", "0", "--host", "127.0.0.1", "--device", device]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if " at http://127.0.0.1:" not in line:
            self.proc.kill()
            raise SystemExit(f"poolvec serve did not start: {line!r}")
        self.url = line.rsplit(" at ", 1)[1].strip().rstrip("/")
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise SystemExit("poolvec serve did not answer /healthz")
            time.sleep(0.2)

    def stats(self) -> dict[str, int]:
        return httpx.get(self.url + "/api/info", timeout=60).json()["server"]["worker"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure(
    server: Server, kind: str, clients: int, requests: int, max_seconds: float, queries: list[Path], ids: list[int]
) -> dict[str, Any]:
    """Run ``requests`` requests of one kind from ``clients`` threads (or stop at ``max_seconds``)."""
    payloads = [(q.name, q.read_bytes()) for q in queries]
    counter = itertools.count()
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            while time.monotonic() < deadline:
                n = next(counter)
                if n >= requests:
                    return
                start = time.perf_counter()
                if kind.startswith("upload"):
                    name, data = payloads[n % len(payloads)]
                    params = {"k": 10, "verify": kind == "upload"}
                    res = http.post("/api/search", files={"image": (name, data)}, params=params)
                elif kind == "by id":
                    res = http.get("/api/search", params={"id": ids[n % len(ids)], "k": 10})
                else:
                    res = http.get(f"/api/images/{ids[n % len(ids)]}/thumbnail")
                elapsed = time.perf_counter() - start
                with lock:
                    if res.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        failures.append(f"{res.status_code} {res.text[:200]}")

    before = server.stats()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    after = server.stats()
    passes = after["passes"] - before["passes"]
    embedded = after["embedded"] - before["embedded"]
    ms = sorted(1000 * x for x in latencies)
    return {
        "kind": kind,
        "clients": clients,
        "requests": len(ms),
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1) if ms else None,
        "qps": round(len(ms) / wall, 1) if wall > 0 else None,
        "images_per_pass": round(embedded / passes, 2) if passes else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="an existing index (default: the sample photos, indexed first)")
    parser.add_argument("--queries", type=Path, help="folder of query images (required with --db)")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients per cell, comma-separated")
    parser.add_argument("--requests", type=int, default=200, help="requests per cell (at most)")
    parser.add_argument("--max-seconds", type=float, default=60, help="seconds per cell (at most)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"which requests: {', '.join(KINDS)}")
    parser.add_argument("--device", default="auto", help="the server's --device")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    kinds = [k.strip() for k in args.kinds.split(",")]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        if args.db:
            if args.queries is None:
                parser.error("--queries is required with --db")
            db, queries = args.db, sorted(p for p in args.queries.iterdir() if p.is_file())
        else:
            db, queries = sample_index(Path(tmp))
        server = Server(db, args.device)
        try:
            first = httpx.post(
                server.url + "/api/search",
                files={"image": (queries[0].name, queries[0].read_bytes())},
                params={"k": 50},
                timeout=120,
            ).json()
            ids = [h["id"] for h in first["hits"]]
            for q in queries[:8]:  # warm: shapes traced and checked, thumbnails made once
                httpx.post(server.url + "/api/search", files={"image": (q.name, q.read_bytes())}, timeout=120)
            for i in ids:
                httpx.get(server.url + f"/api/images/{i}/thumbnail", timeout=120)
            rows = [
                measure(server, kind, c, args.requests, args.max_seconds, queries, ids)
                for kind in kinds
                for c in clients
            ]
            info = httpx.get(server.url + "/api/info", timeout=60).json()
        finally:
            server.stop()
    header = (
        f"{'request':<10} {'clients':>7} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'q/s':>7} {'img/pass':>8} {'failed':>6}"
    )
    print(f"poolvec serve on loopback: {info['count']} images, {info['backend']}, {platform.node()}")
    print(header)
    for r in rows:
        cells = [r["p50_ms"], r["p95_ms"], r["qps"], r["images_per_pass"]]
        shown = ["—" if v is None else str(v) for v in cells]
        print(
            f"{r['kind']:<10} {r['clients']:>7} {r['requests']:>5} {shown[0]:>8} {shown[1]:>8} {shown[2]:>7} "
            f"{shown[3]:>8} {r['failed']:>6}"
        )
        if r["first_failure"]:
            print(f"  first failure: {r['first_failure']}")
    if args.json:
        meta = {
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.node()} ({os.cpu_count()} CPUs, {platform.processor() or platform.machine()})",
            "images": info["count"],
            "backend": info["backend"],
            "requests_per_cell": args.requests,
            "max_seconds_per_cell": args.max_seconds,
        }
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
