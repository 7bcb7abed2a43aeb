"""Extraction throughput: decode only, forward only, the full pipeline, and the one-image-at-a-time baseline.

    python scripts/bench_extract.py                       # 1024×768 and 3000×2000 JPEGs made from real photos
    python scripts/bench_extract.py --folder ~/photos --runs 5 --json out.json

The baseline is the recipe of the Milvus bootcamp / towhee / img2vec: PIL decode at full size, resize 256 +
centre crop 224, batch of one, global average pooling — with the same packaged EfficientNet-Lite0 weights.
All numbers come from one process run; each is the median of ``--runs`` rounds (images/s), the methods taking
turns within a round so that a busy machine slows them alike. *bound* is the most the full pipeline could reach
on this machine's cores if decoding (one core per image) and the forward pass (all cores) shared the CPU with
no loss: ``1 / (1/forward + 1/(decode · cores))``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from poolvec.extractor import Extractor, InputPolicy, build_backbone, iter_image_files
from poolvec.extractor.images import load_image
from poolvec.extractor.preprocess import resize, to_tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

SIZES = {"1024x768": (1024, 768), "3000x2000": (3000, 2000)}


def make_folder(folder: Path, size: tuple[int, int], count: int) -> list[Path]:
    """``count`` real photos (scikit-image/scikit-learn, varied crops) upscaled to ``size``, JPEG quality 90."""
    from sample_photos import sample_photos

    folder.mkdir(parents=True, exist_ok=True)
    photos = list(sample_photos().values())
    paths = []
    for i in range(count):
        path = folder / f"img_{i:03d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        img = Image.fromarray(photos[i % len(photos)])
        w, h = img.size
        j = i // len(photos)
        img = img.crop((j * w // 30, j * h // 40, w - j * w // 50, h)).resize(size, Image.Resampling.LANCZOS)
        if i % 4 == 3:  # some portrait photos too
            img = img.transpose(Image.Transpose.ROTATE_90)
        img.save(path, quality=90)
    return paths


def rates(fns: dict[str, tuple[Callable[[], object], int]], runs: int) -> dict[str, float]:
    """Median images/s of each ``fn()`` (processing ``n`` images) over ``runs`` interleaved rounds, after a warm-up."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn, _ in fns.values():
        fn()
    for _ in range(runs):
        for name, (fn, _) in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: n / statistics.median(times[name]) for name, (_, n) in fns.items()}


def baseline_embed(model: torch.nn.Module, paths: list[Path]) -> np.ndarray:
    """One image at a time: full decode, resize 256, centre crop 224, [-1,1] input, average pooling, L2."""
    from torchvision import transforms

    tf = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    out = []
    with torch.no_grad():
        for p in paths:
            x = tf(Image.open(p).convert("RGB"))[None]
            v = model.forward_features(x).mean((2, 3))
            out.append(F.normalize(v, dim=1)[0].numpy())
    return np.stack(out)


def decoded(paths: list[Path], policy: InputPolicy) -> list[torch.Tensor]:
    """Our decode path, one thread: DCT-scaled Pillow decode, then the policy's resize."""
    return [resize(to_tensor(load_image(p, target=policy.target_size)), policy) for p in paths]


def by_shape(pixels: list[torch.Tensor]) -> dict[tuple[int, ...], list[torch.Tensor]]:
    """Decoded images grouped by shape, largest group first."""
    groups: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for t in pixels:
        groups.setdefault(tuple(t.shape), []).append(t)
    return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))


def bench(paths: list[Path], runs: int, batch_size: int | None, workers: int, optimize: bool) -> dict[str, object]:
    ex = Extractor(batch_size=batch_size, workers=workers, device="cpu", optimize=optimize)
    n = len(paths)

    def decode() -> list[torch.Tensor]:
        return decoded(paths, ex.policy)

    groups = by_shape(decode())

    def forward() -> None:
        for shape, group in groups.items():
            size = ex._batch_for(shape)
            for s in range(0, len(group), size):
                ex._embed_pixels(torch.stack(group[s : s + size]))

    model = build_backbone().model  # the same packaged weights, used the usual way: NCHW, eager, batch of one
    half = paths[: max(1, n // 2)]  # the baseline is slow: half the images per round
    results: dict[str, object] = rates(
        {
            "decode": (decode, n),
            "forward": (forward, n),
            "full": (lambda: ex.embed(paths), n),
            "baseline": (lambda: baseline_embed(model, half), len(half)),
        },
        runs,
    )
    cores = torch.get_num_threads()
    results["bound"] = 1 / (1 / results["forward"] + 1 / (results["decode"] * cores))
    results["full/forward"] = results["full"] / results["forward"]
    results["full/bound"] = results["full"] / results["bound"]
    results["full/baseline"] = results["full"] / results["baseline"]
    results["shapes"] = len(groups)
    sizes = sorted({ex._batch_for(s) for s in groups})
    results["batch"] = f"{sizes[0]}–{sizes[-1]}" if len(sizes) > 1 else str(sizes[0])
    return results


def sweep(paths: list[Path], batches: list[int], runs: int, optimize: bool) -> dict[str, float]:
    """Forward-only images/s (backbone + pooling, pre-decoded) at each fixed batch size, on the set's main shape."""
    ex = Extractor(device="cpu", optimize=optimize)
    main_shape = next(iter(by_shape(decoded(paths, ex.policy)).values()))
    x = torch.stack(main_shape[:1] * max(batches))
    n = max(batches) * 2

    def forward(b: int) -> Callable[[], object]:
        return lambda: [ex._embed_pixels(x[:b]) for _ in range(n // b)]

    return rates({str(b): (forward(b), n // b * b) for b in batches}, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="benchmark this folder instead of generated photos")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/poolvec-bench-extract"))
    parser.add_argument("--count", type=int, default=48, help="images per generated size")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the Extractor's automatic size")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--optimize", action="store_true", help="traced+frozen backbone (what `poolvec index` uses)")
    parser.add_argument("--batches", help="also sweep forward-only speed over these batch sizes, e.g. 1,2,4,8,16")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sets = (
        {args.folder.name: sorted(iter_image_files(args.folder))}
        if args.folder
        else {name: make_folder(args.cache / name, size, args.count) for name, size in SIZES.items()}
    )
    table = {
        name: bench(paths, args.runs, args.batch_size, args.workers, args.optimize) for name, paths in sets.items()
    }
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"{args.workers} decode workers",
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "optimize": args.optimize,
    }
    print(f"# {meta}")
    cols = ["set", "images", "shapes", "batch", "decode img/s", "forward img/s", "full img/s", "full/forward"]
    cols += ["bound img/s", "full/bound", "baseline img/s", "full/baseline"]
    print("| " + " | ".join(cols) + " |")
    print("|---" + "|---:" * (len(cols) - 1) + "|")
    for name, r in table.items():
        cells = [name, str(len(sets[name])), str(r["shapes"]), str(r["batch"]), f"{r['decode']:.1f}"]
        cells += [f"{r['forward']:.1f}", f"{r['full']:.1f}", f"{r['full/forward']:.2f}", f"{r['bound']:.1f}"]
        cells += [f"{r['full/bound']:.2f}", f"{r['baseline']:.1f}", f"{r['full/baseline']:.2f}×"]
        print("| " + " | ".join(cells) + " |")
    sweeps = {}
    if args.batches:
        batches = [int(b) for b in args.batches.split(",")]
        sweeps = {name: sweep(paths, batches, args.runs, args.optimize) for name, paths in sets.items()}
        print("\n| set | " + " | ".join(f"batch {b}" for b in batches) + " |")
        print("|---" + "|---:" * len(batches) + "|")
        for name, r in sweeps.items():
            print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in r.values()) + " |")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": table, "batch_sweep": sweeps}, indent=2))


if __name__ == "__main__":
    main()
