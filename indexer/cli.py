"""The ``poolvec`` command line: index folders of images into Milvus and search them by image.

Every command is a thin layer over the Python API (``extractor.Extractor``, ``indexer.ImageIndex``,
``pooling.build``). Exit codes: 0 success · 1 finished, but some files failed (partial) · 2 usage or config
error · 3 Milvus backend unreachable or locked · 130 interrupted. Errors are one line on stderr
(``--debug`` shows tracebacks).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from extractor import (
    DEFAULT_BACKBONE,
    DEFAULT_MAX_SIDE,
    DEFAULT_POOLING,
    DEFAULT_WEIGHTS,
    Extractor,
    ExtractorError,
    Tuning,
    build_backbone,
    iter_image_files,
)
from pooling import PoolingError, methods

from . import render
from .errors import BackendError, IndexerError
from .index import DEFAULT_COLLECTION, DEFAULT_URI, Hit, ImageIndex
from .store import VectorIndex
from .sync import IndexReport

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_BACKEND, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

app = typer.Typer(
    name="poolvec",
    help="Index folders of images into Milvus with CNN feature pooling, and search them by image.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
_state = {"debug": False}

DbOpt = Annotated[str, typer.Option("--db", "--uri", help="Milvus Lite path, or http(s)://host:port of a server.")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="POOLVEC_TOKEN", help="Milvus server token.")]
CollOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
BackboneOpt = Annotated[str, typer.Option(help="Backbone: packaged, torchvision name, or timm/<name>.")]
WeightsOpt = Annotated[str, typer.Option(help="'default', a torchvision weights name, a file, or 'none'.")]
LayerOpt = Annotated[str | None, typer.Option(help="Feature-map layer (default: last conv stage).")]
PoolingOpt = Annotated[
    str,
    typer.Option(
        "--pooling",
        help="Pooling spec, e.g. 'gem(p=3) | l2' (see `poolvec pooling`); default ends in learned whitening.",
    ),
]
MaxSideOpt = Annotated[int, typer.Option(help="Longer side of the network input (aspect ratio kept).")]
SizeOpt = Annotated[int | None, typer.Option(help="Square input instead: resize to SIZE (with --crop: centre crop).")]
CropOpt = Annotated[bool, typer.Option(help="With --size: shorter side to SIZE, then centre crop.")]
ScalesOpt = Annotated[str, typer.Option(help="Input scales, comma-separated, e.g. '1,0.7071,0.5'.")]
BatchOpt = Annotated[
    int | None, typer.Option(help="Images per forward pass (default: picked per image size and device).")
]
WorkersOpt = Annotated[int, typer.Option(help="Decode threads (0: decode in the main thread).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout, for scripts.")]
DecoderOpt = Annotated[str, typer.Option(help="JPEG decoder: 'pil', or 'torchvision' (nvJPEG on a GPU device).")]


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    """poolvec: image similarity search with pooled CNN features in Milvus."""
    _state["debug"] = debug


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    return typer.Exit(code)


def _run(fn):
    """Run a command body, turning the library's errors into one line on stderr and an exit code."""
    try:
        return fn()
    except typer.Exit:
        raise
    except BackendError as e:
        if _state["debug"]:
            raise
        raise _fail(_escape(str(e)), EXIT_BACKEND) from None
    except (IndexerError, ExtractorError, PoolingError) as e:
        if _state["debug"]:
            raise
        raise _fail(_escape(str(e)), EXIT_USAGE) from None
    except KeyboardInterrupt:
        raise _fail(
            "interrupted; what was indexed so far is kept — run the same command again to finish", EXIT_INTERRUPTED
        ) from None


def _escape(text: str) -> str:
    """Keep rich from reading ``[...]`` in messages (file names, expressions) as markup."""
    return text.replace("[", r"\[")


def _scales(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise IndexerError(f"--scales must be comma-separated numbers, got {text!r}") from None


def _extractor(
    backbone: str,
    weights: str,
    layer: str | None,
    pooling: str,
    max_side: int,
    size: int | None,
    crop: bool,
    scales: str,
    batch_size: int | None,
    workers: int,
    device: str,
    decoder: str = "pil",
    optimize: bool | str = "auto",
) -> Extractor:
    return Extractor(
        backbone=backbone,
        weights=None if weights.lower() == "none" else weights,
        layer=layer,
        pooling=pooling,
        max_side=max_side,
        size=size,
        crop=crop,
        scales=_scales(scales),
        batch_size=batch_size,
        workers=workers,
        device=device,
        decoder=decoder,
        optimize=optimize,
    )


def _vector_index(kind: str, params: str | None) -> VectorIndex:
    try:
        parsed = json.loads(params) if params else None
    except json.JSONDecodeError as e:
        raise IndexerError(f"--index-params must be a JSON object: {e}") from None
    if parsed is not None and not isinstance(parsed, dict):
        raise IndexerError("--index-params must be a JSON object such as '{\"nlist\": 256}'")
    return VectorIndex(kind=kind, params=parsed)


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise IndexerError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    return i, n


#: The embedding options' defaults: given as is, `index` reuses an existing index's own config.
_DEFAULT_EMBEDDING = (
    DEFAULT_BACKBONE,
    DEFAULT_WEIGHTS,
    None,
    DEFAULT_POOLING,
    DEFAULT_MAX_SIDE,
    None,
    False,
    "1",
    "pil",
)
TuneOpt = Annotated[
    bool,
    typer.Option(
        help="A new index learns copy invariances from its own photos first (learned whitening on seeded edits)."
    ),
]
DEFAULT_TUNE_EDITS = Tuning().edits
TuneEditsOpt = Annotated[
    int,
    typer.Option(
        "--tune-edits",
        min=1,
        help="Edited copies made for tuning, spread over the photos (1–8 each); fewer is faster, more fits better.",
    ),
]


@app.command()
def index(
    folders: Annotated[list[Path], typer.Argument(help="Folders (or files) of images to index.")],
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    backbone: BackboneOpt = DEFAULT_BACKBONE,
    weights: WeightsOpt = DEFAULT_WEIGHTS,
    layer: LayerOpt = None,
    pooling: PoolingOpt = DEFAULT_POOLING,
    max_side: MaxSideOpt = DEFAULT_MAX_SIDE,
    size: SizeOpt = None,
    crop: CropOpt = False,
    scales: ScalesOpt = "1",
    batch_size: BatchOpt = None,
    workers: WorkersOpt = 2,
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "pil",
    tune: TuneOpt = True,
    tune_edits: TuneEditsOpt = DEFAULT_TUNE_EDITS,
    index_type: Annotated[str, typer.Option(help="Milvus vector index of a new collection: HNSW, IVF_FLAT, FLAT…")] = (
        "HNSW"
    ),
    index_params: Annotated[
        str | None, typer.Option(help='Its build parameters as JSON, e.g. \'{"M": 32, "efConstruction": 256}\'.')
    ] = None,
    optimize: Annotated[
        bool | None,
        typer.Option(help="Trace+freeze the backbone on CPU (default: once 64 images are embedded)."),
    ] = None,
    recursive: Annotated[bool, typer.Option(help="Descend into sub-folders.")] = True,
    prune: Annotated[bool, typer.Option(help="Delete entries whose files are gone.")] = False,
    shard: Annotated[
        str | None, typer.Option(help="I/N: index only shard I of N (split a job across processes).")
    ] = None,
    failures: Annotated[Path | None, typer.Option(help="Write failed files and reasons (TSV) here.")] = None,
    engine: Annotated[str, typer.Option(help="Embed in this process (local) or on a Ray cluster's actors (ray).")] = (
        "local"
    ),
    ray_address: Annotated[
        str | None, typer.Option(help="--engine ray: the cluster (default: $RAY_ADDRESS, a local `ray start`, or new).")
    ] = None,
    actors: Annotated[int, typer.Option(help="--engine ray: embedding actors.")] = 2,
    gpus_per_actor: Annotated[float, typer.Option(help="--engine ray: GPUs per actor (0: CPU).")] = 0.0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Sync folders into the index: new and changed files are embedded, unchanged skipped. Exit 1 if some failed.

    A new index is built with the given backbone/pooling options, and (with the default pooling) first tunes
    itself on these photos; an existing one keeps its own config, and options that differ from it are refused.
    """

    def body() -> int:
        part = _shard(shard)
        trace = "auto" if optimize is None else optimize
        runtime = {"batch_size": batch_size, "workers": workers, "device": device, "optimize": trace}
        tuning = Tuning(edits=tune_edits) if tune else False
        idx = ImageIndex(db, collection, token=token, tuning=tuning, **runtime)
        asked = (backbone, weights, layer, pooling, max_side, size, crop, scales, decoder)
        if idx.config is None or asked != _DEFAULT_EMBEDDING:
            ex = _extractor(
                backbone,
                weights,
                layer,
                pooling,
                max_side,
                size,
                crop,
                scales,
                batch_size,
                workers,
                device,
                decoder,
                trace,
            )
            # an existing index takes the same recipe with its own fit, and refuses another one, naming the fields
            idx = ImageIndex(
                db,
                collection,
                token=token,
                extractor=ex,
                vector_index=_vector_index(index_type, index_params),
                tuning=tuning,
            )
        run_on: Any = engine
        if engine == "ray":
            from .ray_engine import RayOptions  # Ray itself is imported only when the engine runs

            run_on = RayOptions(address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor)
        total = IndexReport()
        for folder in folders:
            total.merge(_with_progress(idx, folder, recursive, prune, part, quiet or as_json, run_on))
        if failures is not None:
            failures.write_text("".join(f"{p}\t{r}\n" for p, r in total.failed))
        if as_json:
            summary = {k: getattr(total, k) for k in ("added", "updated", "unchanged", "removed", "reused")}
            summary["failed"] = [{"path": p, "reason": r} for p, r in total.failed]
            summary["count"] = len(idx)
            sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        else:
            _print_report(total, idx)
        return EXIT_OK if total.ok else EXIT_PARTIAL

    raise typer.Exit(_run(body))


def _bar(label: str, unit: str) -> Progress:
    """A progress bar on stderr: label, bar, done/total, rate (once it means something), elapsed, eta."""
    columns = (
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=err, transient=False)
    bar.add_task(label, total=None, rate="", unit=unit)
    return bar


def _advance(bar: Progress, done: int, total: int | None) -> None:
    task = bar.tasks[0]
    speed = task.speed if task.elapsed and task.elapsed > 1.0 else None
    bar.update(task.id, completed=done, total=total, rate=f"{speed:.1f} {task.fields['unit']}/s" if speed else "")


def _with_progress(
    idx: ImageIndex,
    folder: Path,
    recursive: bool,
    prune: bool,
    shard: tuple[int, int] | None,
    quiet: bool,
    engine: Any = "local",
) -> IndexReport:
    if quiet or not err.is_terminal:
        return idx.add_folder(folder, recursive=recursive, prune=prune, shard=shard, engine=engine)
    bars: dict[str, Progress] = {}

    def show(key: str, label: str, unit: str, done: int, total: int | None) -> None:
        if key not in bars:
            for other in bars.values():
                other.stop()
            bars[key] = _bar(label, unit)
            bars[key].start()
        _advance(bars[key], done, total)

    def on_tune(done: int, total: int) -> None:
        show("tune", f"tuning on {total} photos", "photos", done, total)

    def update(done: int, total: int | None, path: str) -> None:
        show("index", "indexing", "files", done, total)

    try:
        return idx.add_folder(
            folder, recursive=recursive, prune=prune, shard=shard, progress=update, on_tune=on_tune, engine=engine
        )
    finally:
        for bar in bars.values():
            bar.stop()


def _print_report(report: IndexReport, idx: ImageIndex) -> None:
    table = Table(title=f"{idx.uri} · {idx.collection}", show_header=True)
    names = ("added", "updated", "unchanged", "removed", "reused", "failed", "in index")
    for col in names:
        table.add_column(col, justify="right")
    counts = [report.added, report.updated, report.unchanged, report.removed, report.reused, len(report.failed)]
    table.add_row(*(str(c) for c in counts), str(len(idx)))
    out.print(table)
    for path, reason in report.failed:
        err.print(f"[yellow]skipped[/] {_escape(path)}: {_escape(reason)}", highlight=False, soft_wrap=True)


def _hit_json(rank: int, h: Hit) -> dict[str, Any]:
    return {"rank": rank, "path": h.path, "score": h.score, "id": h.id, **h.meta}


@app.command()
def search(
    queries: Annotated[list[Path], typer.Argument(help="Query images.")],
    k: Annotated[int, typer.Option("-k", "--top-k", help="Results per query.")] = 10,
    under: Annotated[Path | None, typer.Option(help="Only images under this folder.")] = None,
    min_score: Annotated[float | None, typer.Option(help="Drop hits below this similarity.")] = None,
    where: Annotated[str | None, typer.Option(help="Raw Milvus filter expression (experts).")] = None,
    qe: Annotated[int, typer.Option("--qe", help="Query expansion over the top N hits (0: off).")] = 0,
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
    grid: Annotated[Path | None, typer.Option(help="Also draw the queries and hits as a contact sheet (PNG).")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML page of the results.")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Find the indexed images most similar to each query image."""

    def body() -> int:
        idx = ImageIndex(db, collection, token=token, device=device)
        names = [str(q) for q in queries]
        results = idx.search_many(names, k=k, under=under, min_score=min_score, where=where, qe=qe)
        pairs = list(zip(names, results, strict=True))
        if grid is not None:
            render.search_sheet(pairs, grid)
        if html is not None:
            render.search_html(pairs, html)
        if as_json:
            payload = [{"query": q, "hits": [_hit_json(r, h) for r, h in enumerate(hits, 1)]} for q, hits in pairs]
            sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
            return EXIT_OK
        for q, hits in pairs:
            table = Table(title=f"query: {q}", show_header=True)
            table.add_column("rank", justify="right")
            table.add_column("score", justify="right")
            table.add_column("path", overflow="fold")
            for r, h in enumerate(hits, 1):
                table.add_row(str(r), f"{h.score:.4f}", _escape(h.path))
            out.print(table)
        return EXIT_OK

    raise typer.Exit(_run(body))


@app.command()
def dups(
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Score at or above which images are near-duplicates (default 0.15; with --no-normalize, the cosine: "
            "0.5 for the tuned embedding, 0.9 for plain GeM)."
        ),
    ] = None,
    normalize: Annotated[
        bool,
        typer.Option(
            help="Normalised scores: each image's similarity to its nearest others is taken off, so one threshold "
            "means the same for every image (more copies found at the same precision)."
        ),
    ] = True,
    k: Annotated[int, typer.Option("-k", help="Neighbours examined per image.")] = 10,
    under: Annotated[Path | None, typer.Option(help="Only images under this folder.")] = None,
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
    grid: Annotated[Path | None, typer.Option(help="Also draw the groups as a contact sheet (PNG).")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML page of the groups.")] = None,
) -> None:
    """Groups of duplicate images in the index: exact copies (same bytes) first, then near-duplicates."""

    def body() -> int:
        groups = ImageIndex(db, collection, token=token).find_duplicates(
            threshold, k=k, under=under, normalize=normalize
        )
        if grid is not None:
            render.duplicates_sheet(groups, grid)
        if html is not None:
            render.duplicates_html(groups, html)
        if as_json:
            payload = [{"kind": g.kind, "score": g.score, "paths": g.paths} for g in groups]
            sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
            return EXIT_OK
        if not groups:
            out.print("no duplicates found")
        for n, g in enumerate(groups, 1):
            label = "exact (same bytes)" if g.kind == "exact" else f"near (similarity ≥ {g.score:.3f})"
            out.print(f"[bold]group {n}[/]: {label}")
            for p in g.paths:
                out.print(f"  {_escape(p)}", highlight=False, soft_wrap=True)
        return EXIT_OK

    raise typer.Exit(_run(body))


@app.command()
def embed(
    files: Annotated[list[Path], typer.Argument(help="Images, or folders of images.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Vectors as a .npy file [N, D] float32.")],
    paths_out: Annotated[Path | None, typer.Option(help="One path per row (default: OUT with .txt).")] = None,
    backbone: BackboneOpt = DEFAULT_BACKBONE,
    weights: WeightsOpt = DEFAULT_WEIGHTS,
    layer: LayerOpt = None,
    pooling: PoolingOpt = DEFAULT_POOLING,
    max_side: MaxSideOpt = DEFAULT_MAX_SIDE,
    size: SizeOpt = None,
    crop: CropOpt = False,
    scales: ScalesOpt = "1",
    batch_size: BatchOpt = None,
    workers: WorkersOpt = 2,
    device: DeviceOpt = "auto",
    decoder: DecoderOpt = "pil",
    tune: Annotated[
        bool,
        typer.Option(
            help="Fit the learned whitening on these images first (default: the packaged fit, the same vectors "
            "as Extractor())."
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Embed images into a .npy file (and a paths file) without Milvus. Exit 1 if some failed."""

    def body() -> int:
        ex = _extractor(
            backbone, weights, layer, pooling, max_side, size, crop, scales, batch_size, workers, device, decoder
        )
        inputs = [str(p) for f in files for p in (iter_image_files(f) if f.is_dir() else [f])]
        if ex.pipeline.needs_fit or (tune and ex.pipeline.needs_pairs):
            if ex.pipeline.needs_pairs and not inputs:
                raise IndexerError("nothing to embed: no image files given")
            bar = None if quiet or not err.is_terminal else _bar("tuning", "photos")

            def on_tune(done: int, total: int) -> None:
                if bar is not None:
                    bar.start()
                    _advance(bar, done, total)

            try:
                ex.fit(inputs, progress=on_tune)
            finally:
                if bar is not None:
                    bar.stop()
        vectors, names, failed = [], [], 0
        for item in ex.embed_iter(inputs):
            if item.error is not None:
                failed += 1
                err.print(f"[yellow]skipped[/] {_escape(item.source)}: {_escape(item.error)}", highlight=False)
                continue
            vectors.append(item.vector)
            names.append(item.source)
        arr = np.stack(vectors) if vectors else np.zeros((0, ex.dim), np.float32)
        np.save(out_path, arr)
        listing = paths_out or out_path.with_suffix(".txt")
        listing.write_text("".join(n + "\n" for n in names), encoding="utf-8")
        out.print(f"wrote {arr.shape[0]}×{arr.shape[1]} vectors to {out_path} and paths to {listing}")
        return EXIT_PARTIAL if failed else EXIT_OK

    raise typer.Exit(_run(body))


@app.command()
def info(
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
) -> None:
    """What the index holds and how it was built (backbone, weights, pooling, dimension, backend)."""

    def body() -> int:
        data = ImageIndex(db, collection, token=token).info()
        if as_json:
            sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
            return EXIT_OK
        cfg = data["config"] or {}
        table = Table(show_header=False, title="poolvec index")
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        rows = [
            ("uri", data["uri"]),
            ("backend", data["backend"]),
            ("collection", data["collection"]),
            ("images", str(data["count"])),
            ("dimension", str(data["dim"])),
            ("backbone", f"{cfg.get('backbone')} ({cfg.get('weights_id')})" if cfg else "—"),
            ("layer", str(cfg.get("node", "—"))),
            ("input", json.dumps(cfg.get("input")) if cfg else "—"),
            ("scales", json.dumps(cfg.get("scales")) if cfg else "—"),
            ("pooling", str(cfg.get("pooling", {}).get("spec", "—")) if cfg else "—"),
            ("tuning", _tuning_text(cfg.get("tuning")) if cfg else "—"),
            ("vector index", f"{data['vector_index']['kind']} {data['vector_index']['params']}"),
            ("fingerprint", str(data["fingerprint"])),
        ]
        for name, value in rows:
            table.add_row(name, _escape(value))
        out.print(table)
        if not cfg:
            err.print("the index is empty: run `poolvec index FOLDER`")
        return EXIT_OK

    raise typer.Exit(_run(body))


def _tuning_text(t: dict[str, Any] | None) -> str:
    if not t:
        return "none (the embedding as configured)"
    prior = f", mixed with the packaged prior ({t['prior_weight']:g} pairs)" if t.get("prior") else ""
    return f"{t['sampled']} photos × {t['per_image']} edits = {t['pairs']} pairs{prior}, {t['seconds']} s"


@app.command()
def drop(
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the collection (all vectors and the stored config)."""

    def body() -> int:
        idx = ImageIndex(db, collection, token=token)
        n = len(idx)
        if not yes and not typer.confirm(f"Drop collection {collection!r} with {n} images from {db}?"):
            err.print("nothing dropped")
            return EXIT_USAGE
        idx.drop()
        out.print(f"dropped {collection!r} ({n} images)")
        return EXIT_OK

    raise typer.Exit(_run(body))


@app.command()
def reroot(
    old: Annotated[Path, typer.Argument(help="Folder the indexed photos used to be in.")],
    new: Annotated[Path, typer.Argument(help="Folder they are in now.")],
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
) -> None:
    """Point entries under OLD to the same files under NEW (photos moved), without re-embedding."""

    def body() -> int:
        moved = ImageIndex(db, collection, token=token).reroot(old, new)
        out.print(f"moved {moved} entries from {old} to {new}")
        return EXIT_OK

    raise typer.Exit(_run(body))


@app.command("tune")
def tune_command(
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    batch_size: BatchOpt = None,
    workers: WorkersOpt = 2,
    device: DeviceOpt = "auto",
    tune_edits: TuneEditsOpt = DEFAULT_TUNE_EDITS,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-fit the learned whitening on the photos as they are now and re-embed every image with it.

    Costs about as much as indexing the collection again. Interrupted, the index refuses searches until the same
    command is run again, which finishes it. Entries whose files are gone or changed are removed; DBA is cleared.
    """

    def body() -> int:
        idx = ImageIndex(db, collection, token=token, batch_size=batch_size, workers=workers, device=device)
        bars: dict[str, Progress] = {}

        def show(key: str, label: str, unit: str, done: int, total: int) -> None:
            if quiet or as_json or not err.is_terminal:
                return
            if key not in bars:
                for other in bars.values():
                    other.stop()
                bars[key] = _bar(label, unit)
                bars[key].start()
            _advance(bars[key], done, total)

        try:
            report = idx.tune(
                Tuning(edits=tune_edits),
                on_tune=lambda d, n: show("tune", f"tuning on {n} photos", "photos", d, n),
                progress=lambda d, n: show("embed", "re-embedding", "files", d, n),
            )
        finally:
            for bar in bars.values():
                bar.stop()
        if as_json:
            payload = {
                "rewritten": report.rewritten,
                "removed": [{"path": p, "reason": r} for p, r in report.removed],
                "resumed": report.resumed,
                "dba_cleared": report.dba_cleared,
                "tuning": report.tuning,
            }
            sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        else:
            t = report.tuning or {}
            how = f" on {t.get('sampled')} photos × {t.get('per_image')} edits" if t else ""
            out.print(f"tuned{how}; re-embedded {report.rewritten} images" + (" (resumed)" if report.resumed else ""))
            for path, reason in report.removed:
                err.print(f"[yellow]removed[/] {_escape(path)}: {_escape(reason)}", highlight=False, soft_wrap=True)
            if report.dba_cleared:
                err.print("DBA had been applied and was cleared with the old vectors: run `poolvec dba` again")
        return EXIT_OK

    raise typer.Exit(_run(body))


@app.command("dba")
def dba_command(
    n: Annotated[int, typer.Option("-n", help="Neighbours averaged into each vector.")] = 5,
    alpha: Annotated[float, typer.Option(help="Weight exponent: similarity^alpha.")] = 3.0,
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
) -> None:
    """Database-side augmentation, once: each stored vector becomes the weighted mean of itself and its top-n
    neighbours (better recall on near-duplicate clusters); later additions are augmented the same way."""

    def body() -> int:
        rows = ImageIndex(db, collection, token=token).apply_dba(n=n, alpha=alpha)
        out.print(f"augmented {rows} vectors (n={n}, alpha={alpha})")
        return EXIT_OK

    raise typer.Exit(_run(body))


@app.command("pooling")
def pooling_command(
    backbone: BackboneOpt = DEFAULT_BACKBONE,
    weights: WeightsOpt = "none",
    layer: LayerOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The pooling methods and post-steps, their parameters, and output dimension for a backbone."""

    def body() -> int:
        channels = build_backbone(backbone, None if weights.lower() == "none" else weights, layer).spec.channels
        rows = []
        for m in methods():
            params = ", ".join(f"{p['name']}={p['default']}" for p in m["params"])
            spec = f"{m['name']}({params})" if params else m["name"]
            dim = _dim_for(spec, channels) if m["kind"] == "pool" else m["dim"]
            rows.append({**m, "spec": spec, "out_dim": dim})
        if as_json:
            sys.stdout.write(json.dumps({"backbone": backbone, "channels": channels, "methods": rows}, indent=2) + "\n")
            return EXIT_OK
        table = Table(title=f"pooling for {backbone} (C = {channels} channels); default: {DEFAULT_POOLING}")
        for col in ("method", "kind", "dimension", "formula", "needs fit", "what it does"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(
                _escape(r["spec"]),
                r["kind"],
                str(r["out_dim"]),
                r["dim"],
                "yes" if r["needs_fit"] else "",
                r["summary"],
            )
        out.print(table)
        return EXIT_OK

    raise typer.Exit(_run(body))


def _dim_for(spec: str, channels: int) -> int | str:
    from pooling import build

    try:
        return build(spec).out_dim(channels)
    except PoolingError:
        return "?"


@app.command("eval")
def eval_command(
    kind: Annotated[str, typer.Argument(help="Ground truth: classes, pairs or revisitop.")],
    source: Annotated[Path, typer.Argument(help="classes: DIR/<class>/*; pairs: a JSON file; revisitop: gnd_*.pkl.")],
    images: Annotated[
        Path | None, typer.Option(help="revisitop: the dataset's image folder; pairs: database folder (distractors).")
    ] = None,
    k: Annotated[int | None, typer.Option("-k", "--top-k", help="Ranking depth (default: whole index).")] = None,
    qe: Annotated[int, typer.Option("--qe", help="Query expansion over the top N hits (0: off).")] = 0,
    add: Annotated[bool, typer.Option("--add", help="Index the ground truth's database images first.")] = False,
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output (with per-query AP and rank).")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Measure retrieval quality on labelled images: mAP, recall@k, P@k (revisitop: mAP, mP@k for Easy/Medium/Hard)."""
    from .evaluation import evaluate_index, load_ground_truth

    def body() -> int:
        gt = load_ground_truth(kind, source, images)
        idx = ImageIndex(db, collection, token=token, device=device)
        failed: list[tuple[str, str]] = []
        if add:
            failed = idx.add(gt.database).failed
            for path, reason in failed:
                err.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)
        result = evaluate_index(idx, gt, k=k, qe=qe)
        if result["n_missing"]:
            err.print(
                f"[yellow]warning:[/] {result['n_missing']} of {result['database']} database images are not in the "
                f"index (e.g. {result['missing'][0]}); they count as never found — use --add to index them",
                highlight=False,
                soft_wrap=True,
            )
        if as_json:
            sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
            return EXIT_PARTIAL if failed else EXIT_OK
        table = Table(
            title=f"{gt.kind}: {result['queries']} queries, {result['database']} database images, k={result['k']} (%)"
        )
        setups = result["setups"]
        table.add_column("metric")
        for setup in setups:
            table.add_column(setup, justify="right")
        for name in result["metrics"]:
            table.add_row(name, *("—" if s[name] is None else f"{100 * s[name]:.2f}" for s in setups.values()))
        table.add_row("queries scored", *(str(s["evaluated"]) for s in setups.values()))
        out.print(table)
        return EXIT_PARTIAL if failed else EXIT_OK

    raise typer.Exit(_run(body))
