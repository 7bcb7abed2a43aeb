"""Resolving duplicates at scale: ``--groups`` groups of real files moved to the trash and brought back through
:meth:`~poolvec.indexer.ImageIndex.resolve` and :meth:`~poolvec.indexer.ImageIndex.undo`, every file checked.

Each group is one small JPEG and its copy — every other one byte-identical, the rest downscaled and recompressed (the
original must be the copy kept). Their rows carry synthetic vectors (the files are not embedded: this measures the
resolution, not indexing), and ``--fill`` more rows without files make the collection as large as it would be. A
fresh process (as the next command would) resolves every group, checks that each duplicate is in the trash with its
bytes and each keeper in place, undoes, and checks that every file is back with its bytes, every row with its vector.
Resident memory is sampled every 50 ms: ``rss_*_mb`` before, and the peaks during the resolution and the undo.

    .venv/bin/python scripts/bench_resolve.py --groups 30000 --fill 40000 --json r.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from poolvec.extractor import Extractor
from poolvec.extractor.recipe import Runtime
from poolvec.indexer import ImageIndex
from poolvec.indexer.dups.find import DuplicateGroup
from poolvec.indexer.milvus.schema import make_row, path_id
from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.milvus.vector_index import VectorIndex

BATCH = 256


def rss_mb(key: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler:
    """The process's resident memory every 50 ms, kept as the peak since the last :meth:`reset`."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb())

    def reset(self) -> float:
        now = rss_mb()
        self.peak = now
        return now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def picture(rng: np.random.Generator) -> Image.Image:
    """A 96×72 picture: a random colour gradient with a few random blocks (distinct bytes per group)."""
    y, x = np.mgrid[0:72, 0:96]
    c = rng.uniform(0, 255, (3, 3))
    arr = np.stack([c[i, 0] + (c[i, 1] - c[i, 0]) * x / 96 + (c[i, 2] - 128) * y / 144 for i in range(3)], -1)
    for _ in range(4):
        x0, y0 = rng.integers(0, 80), rng.integers(0, 60)
        arr[y0 : y0 + 12, x0 : x0 + 16] = rng.uniform(0, 255, 3)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def files_of(work: Path, g: int) -> tuple[Path, Path]:
    folder = work / "library" / f"{g // 1000:03d}"
    return folder / f"g{g:06d}.jpg", folder / "copies" / f"g{g:06d}-copy.jpg"


def vectors(seed: int, start: int, n: int, dim: int) -> np.ndarray:
    v = np.random.default_rng([seed, start]).standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def build(args: argparse.Namespace, work: Path, out: dict) -> None:
    recipe = Extractor(runtime=Runtime(device="cpu")).recipe
    store = MilvusStore(str(work / "index.db"), "images")
    store.create(recipe, VectorIndex())
    root = str(work / "library")
    t = time.perf_counter()
    rows: list[dict] = []
    rng = np.random.default_rng(args.seed)
    for g in range(args.groups):
        original, copy = files_of(work, g)
        copy.parent.mkdir(parents=True, exist_ok=True)
        img = picture(rng)
        data = jpeg(img, 95)
        original.write_bytes(data)
        copy.write_bytes(data if g % 2 == 0 else jpeg(img.resize((64, 48), Image.LANCZOS), 70))
        vec = vectors(args.seed, g, 1, recipe.dim)[0]
        for n, p in enumerate((original, copy)):
            st = p.stat()
            body = p.read_bytes()
            with Image.open(p) as im:
                w, h = im.size
            info = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "width": w, "height": h}
            v = vec if n == 0 or g % 2 == 0 else vec + 0.05 * vectors(args.seed + 1, g, 1, recipe.dim)[0]
            rows.append(make_row(str(p), root, v, {**info, "sha256": hashlib.sha256(body).hexdigest()}))
        if len(rows) >= BATCH:
            store.upsert(rows)
            rows = []
    for start in range(0, args.fill, BATCH):
        n = min(BATCH, args.fill - start)
        vecs = vectors(args.seed + 2, start, n, recipe.dim)
        info = {"size": 1, "mtime_ns": 0, "width": 1, "height": 1}
        rows += [
            make_row(f"/synthetic/{i:07d}.jpg", "/synthetic", vecs[i - start], {**info, "sha256": f"{i:064x}"})
            for i in range(start, start + n)
        ]
        store.upsert(rows)
        rows = []
    if rows:
        store.upsert(rows)
    store.flush()
    out["build_s"] = round(time.perf_counter() - t, 1)
    store.close()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(work / "index.db"))  # its lock, for the measuring child


def fingerprint(work: Path) -> dict[str, str]:
    """Every file under the library and the trash: relative path → sha256 of its bytes."""
    found = {}
    for folder in ("library", "trash"):
        for dirpath, _, names in os.walk(work / folder):
            for name in names:
                p = Path(dirpath) / name
                found[str(p.relative_to(work))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def stored_vectors(index: ImageIndex, paths: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for b in range(0, len(paths), 1000):
        rows = index.store.get([path_id(p) for p in paths[b : b + 1000]], fields=("path", "vector"))
        out.update({r["path"]: np.asarray(r["vector"], np.float32) for r in rows.values()})
    return out


def measure(args: argparse.Namespace, work: Path, out: dict) -> None:
    sampler = Sampler()
    index = ImageIndex(str(work / "index.db"), "images")
    total = len(index)
    before = fingerprint(work)
    groups = []
    for g in range(args.groups):
        paths = sorted(str(p) for p in files_of(work, g))
        groups.append(DuplicateGroup("exact" if g % 2 == 0 else "near", paths, ids=[path_id(p) for p in paths]))
    every = [str(p) for g in range(args.groups) for p in files_of(work, g)]
    vectors_before = stored_vectors(index, every)
    trash = work / "trash"

    out["rss_before_mb"] = round(sampler.reset())
    t = time.perf_counter()
    plan = index.resolve(groups, "move", trash=trash, dry_run=True)
    out["dry_run_s"] = round(time.perf_counter() - t, 1)
    out["dry_run_peak_mb"] = round(sampler.peak)
    sampler.reset()
    t = time.perf_counter()
    report = index.resolve(groups, "move", trash=trash, dry_run=False)
    out["resolve_s"] = round(time.perf_counter() - t, 1)
    out["resolve_peak_mb"] = round(sampler.peak)
    out.update(
        planned_files=plan.files, files=report.files, refused=len(report.refused), bytes_freed=report.bytes_freed
    )
    after = fingerprint(work)
    trashed = {k.replace("trash/library/", "library/", 1): v for k, v in after.items() if k.startswith("trash/")}
    one_each = 0
    for g in range(args.groups):
        pair = [str(p.relative_to(work)) for p in files_of(work, g)]
        kept = [p for p in pair if after.get(p) == before[p]]
        moved = [p for p in pair if p not in after and trashed.get(p) == before[p]]
        one_each += len(kept) == 1 and len(moved) == 1
    out["resolve_checked"] = {
        "groups_with_one_kept_one_in_trash_same_bytes": one_each,
        "recompressed_groups_kept_their_original": sum(
            1 for g in range(1, args.groups, 2) if after.get(str(files_of(work, g)[0].relative_to(work)))
        ),
        "rows_removed": total - len(index),
    }
    sampler.reset()
    t = time.perf_counter()
    undone = index.undo()
    out["undo_s"] = round(time.perf_counter() - t, 1)
    out["undo_peak_mb"] = round(sampler.peak)
    out.update(restored=undone.restored, rows_restored=undone.rows, lost=len(undone.lost))
    vectors_after = stored_vectors(index, every)
    out["undo_checked"] = {
        "every_file_back_same_bytes": fingerprint(work) == before,
        "rows": len(index) - total,
        "vectors_equal": vectors_after.keys() == vectors_before.keys()
        and all(np.array_equal(vectors_after[p], v) for p, v in vectors_before.items()),
    }
    sampler.stop()
    index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=30_000)
    parser.add_argument("--fill", type=int, default=0, help="rows without files besides the groups' 2 × groups")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="a folder to build in (default: a temporary one, removed)")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out: dict = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "groups": args.groups,
        "rows": 2 * args.groups + args.fill,
        "action": "move",
    }
    if args.measure_only:
        measure(args, args.work, out)
        print(json.dumps(out), flush=True)
        os._exit(0)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-resolve-"))
    os.environ["POOLVEC_STATE_DIR"] = str(work / "state")
    try:
        build(args, work, out)
        cmd = [sys.executable, __file__, "--measure-only", "--work", str(work), "--groups", str(args.groups)]
        cmd += ["--seed", str(args.seed), "--fill", str(args.fill)]
        child = subprocess.run(cmd, capture_output=True, text=True)
        if child.returncode != 0:
            raise SystemExit(child.stderr)
        out.update(json.loads(child.stdout.strip().splitlines()[-1]))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    os._exit(0)  # Milvus Lite's server thread can hold the exit of a process that inserted many rows


if __name__ == "__main__":
    main()
