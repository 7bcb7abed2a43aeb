"""The ``poolvec`` command line: index folders of images into Milvus and search them by image.

Exit codes: 0 success · 1 finished, but some files failed (partial) · 2 usage or config error ·
3 Milvus backend unreachable or locked. Errors are one line on stderr (``--debug`` shows tracebacks).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from extractor import DEFAULT_BACKBONE, DEFAULT_MAX_SIDE, DEFAULT_WEIGHTS, Extractor, ExtractorError
from pooling import DEFAULT_SPEC, PoolingError

from .errors import BackendError, IndexerError
from .index import DEFAULT_COLLECTION, DEFAULT_URI, ImageIndex, IndexReport

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_BACKEND = 0, 1, 2, 3

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


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    """poolvec: image similarity search with pooled CNN features in Milvus."""
    _state["debug"] = debug


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
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
        raise _fail(str(e), EXIT_BACKEND) from None
    except (IndexerError, ExtractorError, PoolingError) as e:
        if _state["debug"]:
            raise
        raise _fail(str(e), EXIT_USAGE) from None
    except KeyboardInterrupt:
        raise _fail(
            "interrupted; what was indexed so far is kept — run the same command again to finish", 130
        ) from None


@app.command()
def index(
    folders: Annotated[list[Path], typer.Argument(help="Folders (or files) of images to index.")],
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    backbone: Annotated[str, typer.Option(help="Backbone for a new index.")] = DEFAULT_BACKBONE,
    weights: Annotated[str, typer.Option(help="'default', a torchvision weights name, a file, or 'none'.")] = (
        DEFAULT_WEIGHTS
    ),
    layer: Annotated[str | None, typer.Option(help="Feature-map layer (default: last conv stage).")] = None,
    pooling: Annotated[str, typer.Option("--pooling", help="Pooling spec, e.g. 'gem(p=3) | l2'.")] = DEFAULT_SPEC,
    max_side: Annotated[int, typer.Option(help="Longer side of the network input (aspect kept).")] = DEFAULT_MAX_SIDE,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 16,
    workers: Annotated[int, typer.Option(help="Decode threads.")] = 1,
    device: DeviceOpt = "auto",
    recursive: Annotated[bool, typer.Option(help="Descend into sub-folders.")] = True,
    failures: Annotated[Path | None, typer.Option(help="Write failed files and reasons (TSV) here.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Index images: new and changed files are embedded, unchanged ones skipped. Exit 1 if some failed."""

    def body() -> int:
        idx = ImageIndex(db, collection, token=token, batch_size=batch_size, workers=workers, device=device)
        if idx.config is None or _explicit(backbone, weights, layer, pooling, max_side):
            ex = Extractor(
                backbone=backbone,
                weights=None if weights.lower() == "none" else weights,
                layer=layer,
                pooling=pooling,
                max_side=max_side,
                batch_size=batch_size,
                workers=workers,
                device=device,
            )
            idx = ImageIndex(db, collection, token=token, extractor=ex)
        total = IndexReport()
        for folder in folders:
            report = _with_progress(idx, folder, recursive, quiet)
            total.added += report.added
            total.updated += report.updated
            total.unchanged += report.unchanged
            total.failed.extend(report.failed)
        _print_report(total, idx)
        if failures is not None:
            failures.write_text("".join(f"{p}\t{r}\n" for p, r in total.failed))
        return EXIT_OK if total.ok else EXIT_PARTIAL

    raise typer.Exit(_run(body))


def _explicit(backbone: str, weights: str, layer: str | None, pooling: str, max_side: int) -> bool:
    """Whether the user asked for a specific embedding config (then it is checked against the index)."""
    return (backbone, weights, layer, pooling, max_side) != (
        DEFAULT_BACKBONE,
        DEFAULT_WEIGHTS,
        None,
        DEFAULT_SPEC,
        DEFAULT_MAX_SIDE,
    )


def _with_progress(idx: ImageIndex, folder: Path, recursive: bool, quiet: bool) -> IndexReport:
    if quiet or not err.is_terminal:
        return idx.add_folder(folder, recursive=recursive)
    columns = (
        TextColumn("[bold]indexing[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task("index", total=None, rate="")

        def update(done: int, total: int | None, path: str) -> None:
            speed = bar.tasks[0].speed
            bar.update(task, completed=done, total=total, rate=f"{speed:.1f} files/s" if speed else "")

        return idx.add_folder(folder, recursive=recursive, progress=update)


def _print_report(report: IndexReport, idx: ImageIndex) -> None:
    table = Table(title=f"{idx.uri} · {idx.collection}", show_header=True)
    for col in ("added", "updated", "unchanged", "failed", "in index"):
        table.add_column(col, justify="right")
    table.add_row(str(report.added), str(report.updated), str(report.unchanged), str(len(report.failed)), str(len(idx)))
    out.print(table)
    for path, reason in report.failed:
        err.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)


@app.command()
def search(
    queries: Annotated[list[Path], typer.Argument(help="Query images.")],
    k: Annotated[int, typer.Option("-k", "--top-k", help="Results per query.")] = 10,
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output for scripts.")] = False,
    device: DeviceOpt = "auto",
) -> None:
    """Find the indexed images most similar to each query image."""

    def body() -> int:
        idx = ImageIndex(db, collection, token=token, device=device)
        results = idx.search_many([str(q) for q in queries], k=k)
        if as_json:
            payload = [
                {
                    "query": str(q),
                    "hits": [{"rank": r, "path": h.path, "score": h.score, "id": h.id} for r, h in enumerate(hits, 1)],
                }
                for q, hits in zip(queries, results, strict=True)
            ]
            sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
            return EXIT_OK
        for q, hits in zip(queries, results, strict=True):
            table = Table(title=f"query: {q}", show_header=True)
            table.add_column("rank", justify="right")
            table.add_column("score", justify="right")
            table.add_column("path", overflow="fold")
            for r, h in enumerate(hits, 1):
                table.add_row(str(r), f"{h.score:.4f}", h.path)
            out.print(table)
        return EXIT_OK

    raise typer.Exit(_run(body))


@app.command()
def info(
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
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
            ("pooling", str(cfg.get("pooling", {}).get("spec", "—")) if cfg else "—"),
            ("vector index", f"{data['vector_index']['kind']} {data['vector_index']['params']}"),
            ("fingerprint", str(data["fingerprint"])),
        ]
        for name, value in rows:
            table.add_row(name, value)
        out.print(table)
        if not cfg:
            err.print("the index is empty: run `poolvec index FOLDER`")
        return EXIT_OK

    raise typer.Exit(_run(body))


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
        table.add_column("setup")
        for name in result["metrics"]:
            table.add_column(name, justify="right")
        table.add_column("queries", justify="right")
        for setup, row in result["setups"].items():
            cells = ["—" if row[n] is None else f"{100 * row[n]:.2f}" for n in result["metrics"]]
            table.add_row(setup, *cells, str(row["evaluated"]))
        out.print(table)
        return EXIT_PARTIAL if failed else EXIT_OK

    raise typer.Exit(_run(body))
