"""Memory of `poolvec serve` under concurrent near-limit uploads: peak RSS, and what it returns to afterwards.

A 9 400 × 9 400 PNG of a few hundred kB is just under the default pixel guard (89 478 485 pixels) and decodes to
~350 MB in Pillow (4 bytes a pixel). ``--uploads`` clients post it at once (``verify=false`` and ``verify=true``
rounds); the server's RSS (``/proc/PID/status``) is sampled every 20 ms. Reported: idle RSS (after warm-up and one
small query), peak, and RSS 10 s after the last answer.

    .venv/bin/python scripts/bench_upload_memory.py --uploads 16 --json upload-mem.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import Server, sample_index


def big_png(path: Path, side: int = 9400) -> None:
    """A ``side``² PNG that compresses to a few hundred kB: flat colour with a few shapes."""
    img = Image.new("RGB", (side, side), (70, 110, 160))
    draw = ImageDraw.Draw(img)
    rng = np.random.default_rng(0)
    for _ in range(40):
        x, y = (int(v) for v in rng.integers(0, side - 1500, 2))
        draw.ellipse(
            (x, y, x + int(rng.integers(300, 1500)), y + int(rng.integers(300, 1500))),
            fill=tuple(int(c) for c in rng.integers(0, 255, 3)),
        )
    img.save(path, optimize=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def round_of(server: Server, data: bytes, uploads: int, verify: bool) -> dict:
    """``uploads`` concurrent posts of ``data``; RSS sampled throughout and 10 s after."""
    pid = server.proc.pid
    idle = rss_mb(pid)
    peak, stop = [idle], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak.append(rss_mb(pid))
            time.sleep(0.02)

    codes: list[int] = []
    seconds: list[float] = []

    def client() -> None:
        start = time.perf_counter()
        res = httpx.post(
            server.url + "/api/search",
            files={"image": ("big.png", data)},
            params={"k": 10, "verify": verify},
            timeout=600,
        )
        seconds.append(time.perf_counter() - start)
        codes.append(res.status_code)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=client) for _ in range(uploads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(10)
    stop.set()
    sampler.join()
    after = rss_mb(pid)
    return {
        "verify": verify,
        "uploads": uploads,
        "status": sorted(set(codes)),
        "idle_mb": round(idle),
        "peak_mb": round(max(peak)),
        "after_mb": round(after),
        "held_mb": round(after - idle),
        "slowest_s": round(max(seconds), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=16)
    parser.add_argument("--side", type=int, default=9400)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db, queries = sample_index(folder)
        png = folder / "big.png"
        big_png(png, args.side)
        data = png.read_bytes()
        server = Server(db, "cpu")
        try:
            httpx.post(
                server.url + "/api/search", files={"image": (queries[0].name, queries[0].read_bytes())}, timeout=300
            ).raise_for_status()
            rounds = [round_of(server, data, args.uploads, verify) for verify in (False, True)]
        finally:
            server.stop()
    result = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "png_bytes": len(data),
        "side": args.side,
        "rounds": rounds,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
