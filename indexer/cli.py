"""The ``poolvec`` command line: index folders of images into Milvus and search them by image.

Every command is a thin layer over the Python API (``extractor.Extractor``, ``indexer.ImageIndex``,
``pooling.build``). Exit codes are a contract (README's table, :data:`EXIT_CODES`); errors are one line on stderr
(``--debug`` or ``POOLVEC_DEBUG=1`` shows tracebacks, ``--verbose`` the libraries' own log lines).

Start-up stays instant: this module imports no torch, pymilvus or PIL. Each command imports what it needs when
it runs, after the cheap checks (options, paths, a database held by another process) have passed.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from extractor.defaults import DEFAULT_BACKBONE, DEFAULT_POOLING, DEFAULT_TUNE_EDITS, PACKAGED_CHANNELS

from . import lite, names
from . import results as results_json
from .errors import BackendError, IndexerError
from .lite import DEFAULT_COLLECTION, DEFAULT_URI
from .options import RECIPE, EmbeddingOptions

if TYPE_CHECKING:
    from rich.progress import Progress

    from .index import ImageIndex
    from .sync import IndexReport

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_BACKEND, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
#: README's exit-code table (also in ``poolvec --help``).
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_PARTIAL: "finished, but some files were skipped (each is listed on stderr with its reason)",
    EXIT_USAGE: "usage or configuration error (bad option, unknown backbone, config differs from the index's)",
    EXIT_BACKEND: "the Milvus backend is unreachable, or another process holds the Milvus Lite database",
    EXIT_INTERNAL: "unexpected error (a bug: run again with --debug and report the traceback)",
    EXIT_INTERRUPTED: "interrupted; what was done so far is kept — run the same command again to finish",
}


#: The end of ``poolvec --help``: README's exit-code table.
EPILOG = "Exit codes:\n" + "\n".join(
    f"  {code:>3}  {text.split(' (')[0].split(';')[0]}" for code, text in EXIT_CODES.items()
)


class _PlainHelp:
    """Help rows that read like Typer's documented examples: an option's value as its metavar (``--db PATH|URL``),
    nothing after a flag or an argument (Typer 0.29 would print their Python types: ``<bool>``, ``<list[Path]>``)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if p.param_type_name == "argument" or getattr(p, "is_flag", False):
                p.display_type_rich = _no_type
        return params


def _no_type(ctx: Any = None) -> None:
    return None


class _Group(_PlainHelp, typer.core.TyperGroup):
    pass


class _Command(_PlainHelp, typer.core.TyperCommand):
    pass


app = typer.Typer(
    name="poolvec",
    cls=_Group,
    help="Index folders of images into Milvus with CNN feature pooling, and search them by image.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_state: dict[str, Any] = {"debug": False, "verbose": False}

# -- options shared by commands ----------------------------------------------------------------------------------
DbOpt = Annotated[
    str,
    typer.Option(
        "--db",
        "--uri",
        metavar="PATH|URL",
        help="Milvus Lite database (a folder whose name ends in .db), or http(s)://host:port of a Milvus server.",
    ),
]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="POOLVEC_TOKEN", metavar="TOKEN", help="Milvus server token.")
]
CollOpt = Annotated[str, typer.Option("--collection", "-c", metavar="NAME", help="Collection name.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON on stdout, for scripts.")]
UnderOpt = Annotated[Path | None, typer.Option(metavar="FOLDER", help="Only images under this folder.")]

#: The embedding options: name → (type, option declaration, default). Commands receive them as one
#: :class:`EmbeddingOptions` (see :func:`embedding_options`); adding an option here adds it everywhere.
_RECIPE_PANEL, _RUNTIME_PANEL = "Embedding (fixed when an index is created)", "Speed"
_EMBEDDING: dict[str, tuple[Any, Any]] = {
    "backbone": (
        str,
        typer.Option(
            metavar="NAME", help="Packaged (tf_efficientnet_lite0/1/2), a torchvision model name, or timm/NAME."
        ),
    ),
    "weights": (
        str,
        typer.Option(metavar="WEIGHTS", help="'default', a torchvision weights name, a local file, or 'none'."),
    ),
    "layer": (str | None, typer.Option(metavar="LAYER", help="Feature-map layer (default: last conv stage).")),
    "pooling": (
        str,
        typer.Option(metavar="SPEC", help="Pooling spec, e.g. 'gem(p=3) | l2' (see `poolvec pooling`)."),
    ),
    "max_side": (
        int,
        typer.Option(metavar="PIXELS", min=16, help="Longer side of the network input."),
    ),
    "size": (
        int | None,
        typer.Option(metavar="PIXELS", min=16, help="Square input instead: resize to SIZE (with --crop: centre crop)."),
    ),
    "crop": (bool, typer.Option(help="With --size: shorter side to SIZE, then centre crop.")),
    "scales": (str, typer.Option(metavar="LIST", help="Input scales, comma-separated, e.g. '1,0.7071,0.5'.")),
    "decoder": (
        str,
        typer.Option(metavar="NAME", help="JPEG decoder: 'pil', or 'torchvision' (nvJPEG on a GPU)."),
    ),
    "batch_size": (
        int | None,
        typer.Option(metavar="N", min=1, help="Images per forward pass (default: picked per image size and device)."),
    ),
    "workers": (int, typer.Option(metavar="N", min=0, help="Decode threads (0: decode in the main thread).")),
    "device": (str, typer.Option(metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps.")),
    "optimize": (
        bool | None,
        typer.Option(help="Trace+freeze the backbone on CPU (default: once 64 images are embedded)."),
    ),
}
_RUNTIME_FIELDS = tuple(name for name in _EMBEDDING if name not in RECIPE)


def embedding_options(*fields: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the embedding options ``fields`` (default: all of them); it receives them as one
    ``embedding: EmbeddingOptions`` argument."""
    chosen = fields or tuple(_EMBEDDING)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn, eval_str=True)
        params = [p for p in sig.parameters.values() if p.name != "embedding"]
        for name in chosen:
            kind, option = _EMBEDDING[name]
            option.rich_help_panel = _RECIPE_PANEL if name in RECIPE else _RUNTIME_PANEL
            # the defaults are EmbeddingOptions' own; --optimize/--no-optimize is unset (None) until given
            default = None if name == "optimize" else getattr(EmbeddingOptions(), name)
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
                )
            )

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in chosen}
            if values.get("optimize", "auto") is None:
                values["optimize"] = "auto"
            kwargs["embedding"] = EmbeddingOptions(**values)
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    return decorate


# -- the top level ---------------------------------------------------------------------------------------------
def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version("poolvec")
        except metadata.PackageNotFoundError:
            version = "unknown (not installed)"
        out.print(f"poolvec {version}")
        raise typer.Exit()


@app.callback()
def main_callback(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="POOLVEC_DEBUG", help="Show tracebacks on errors (or POOLVEC_DEBUG=1).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the libraries' log lines on stderr.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """poolvec: image similarity search with pooled CNN features in Milvus."""
    _state["debug"], _state["verbose"] = debug, verbose
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR" if verbose else "NONE")  # before any grpc import
    root = logging.getLogger()
    root.handlers = [logging.StreamHandler(sys.stderr) if verbose else logging.NullHandler()]
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def _route_library_logs() -> None:
    """pymilvus installs its own stderr handlers when imported: send its lines where ours go (nowhere, unless
    ``--verbose``), so that a failure is one line of ours, not a page of library tracebacks."""
    if _state["verbose"]:
        return
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer"):
        log = logging.getLogger(name)
        log.handlers = [logging.NullHandler()]
        log.propagate = False


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _run(fn: Callable[[], int]) -> None:
    """Run a command body, turning every error into one line on stderr and the exit code of README's table."""
    from extractor.errors import ExtractorError
    from pooling.spec import PoolingError

    debug = _state["debug"]
    try:
        code = fn()
    except typer.Exit:
        raise
    except BackendError as e:
        if debug:
            raise
        raise _fail(str(e), EXIT_BACKEND) from None
    except (IndexerError, ExtractorError, PoolingError) as e:
        if debug:
            raise
        raise _fail(str(e), EXIT_USAGE) from None
    except KeyboardInterrupt:
        raise _fail(EXIT_CODES[EXIT_INTERRUPTED], EXIT_INTERRUPTED) from None
    except Exception as e:
        if debug:
            raise
        raise _fail(
            f"unexpected {type(e).__name__}: {' '.join(str(e).split()) or '(no message)'} — this is a bug; run again "
            "with --debug (or POOLVEC_DEBUG=1) for the traceback and report it",
            EXIT_INTERNAL,
        ) from None
    raise typer.Exit(code)


def _open(db: str, collection: str, token: str | None, **kwargs: Any) -> ImageIndex:
    """Open an index after the cheap checks (URI form, a Lite database held by another process)."""
    lite.check_available(db)
    from .index import ImageIndex

    _route_library_logs()
    return ImageIndex(db, collection, token=token, **kwargs)


def _existing(db: str, collection: str, token: str | None, **kwargs: Any) -> ImageIndex:
    """Open an index that must already hold images (search, dups, tune…): a clear error, and nothing created."""
    idx = _open(db, collection, token, **kwargs)
    if idx.config is None:
        where = f"collection {collection!r} at {db}" if collection != DEFAULT_COLLECTION else db
        raise IndexerError(f"no index at {where}: build one first with `poolvec index FOLDER --db {db}`")
    return idx


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise IndexerError(f"cannot write {path}: {e.strerror or e}") from None


def _jsonl(rows: Iterator[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _skipped(items: list[tuple[str, str]], verb: str = "skipped") -> None:
    for path, reason in items:
        err.print(f"[yellow]{verb}[/] {escape(names.shown(path))}: {escape(reason)}")


# -- progress --------------------------------------------------------------------------------------------------
def _bar(label: str, unit: str) -> Progress:
    """A progress bar on stderr: label, bar, done/total, rate (once it means something), elapsed, eta."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(f"[bold]{escape(label)}[/]"),
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


#: Seconds before a rate is shown: the first files of a re-run are unchanged and go by at thousands per second.
RATE_AFTER = 3.0


def _advance(bar: Progress, done: int, total: int | None) -> None:
    task = bar.tasks[0]
    speed = task.speed if task.elapsed and task.elapsed > RATE_AFTER else None
    bar.update(task.id, completed=done, total=total, rate=f"{speed:.1f} {task.fields['unit']}/s" if speed else "")


class _Bars:
    """One progress bar at a time, switched by key ("tune", "index", …); nothing when quiet or not a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and err.is_terminal
        self.bars: dict[str, Progress] = {}

    def show(self, key: str, label: str, unit: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if key not in self.bars:
            for other in self.bars.values():
                other.stop()
            self.bars[key] = _bar(label, unit)
            self.bars[key].start()
        _advance(self.bars[key], done, total)

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars.values():
            bar.stop()


# -- commands --------------------------------------------------------------------------------------------------
TuneOpt = Annotated[
    bool, typer.Option(help="A new index first learns copy invariances from its own photos (seeded edits).")
]
TuneEditsOpt = Annotated[
    int,
    typer.Option(
        "--tune-edits",
        metavar="N",
        min=1,
        help="Edited copies made for tuning, spread over the photos (1–8 each); fewer is faster.",
    ),
]


@app.command(cls=_Command)
@embedding_options()
def index(
    folders: Annotated[list[Path], typer.Argument(metavar="FOLDER", help="Folders (or files) of images to index.")],
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    tune: TuneOpt = True,
    tune_edits: TuneEditsOpt = DEFAULT_TUNE_EDITS,
    index_type: Annotated[
        str | None,
        typer.Option(metavar="KIND", help="Milvus vector index of a new collection: HNSW (default), IVF_FLAT, FLAT…"),
    ] = None,
    index_params: Annotated[
        str | None,
        typer.Option(metavar="JSON", help='Its build parameters, e.g. \'{"M": 32, "efConstruction": 256}\'.'),
    ] = None,
    recursive: Annotated[bool, typer.Option(help="Descend into sub-folders.")] = True,
    prune: Annotated[bool, typer.Option(help="Delete entries whose files are gone.")] = False,
    shard: Annotated[
        str | None, typer.Option(metavar="I/N", help="Index only shard I of N (split a job across processes).")
    ] = None,
    failures: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Write the skipped files and reasons here (JSON lines).")
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            metavar="ENGINE",
            help="Embed in this process (local) or on a Ray cluster's actors (ray).",
            rich_help_panel="Ray",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="--engine ray: the cluster (default: $RAY_ADDRESS, a local `ray start`, or a new local Ray).",
            rich_help_panel="Ray",
        ),
    ] = None,
    actors: Annotated[
        int, typer.Option(metavar="N", min=1, help="--engine ray: embedding actors.", rich_help_panel="Ray")
    ] = 2,
    gpus_per_actor: Annotated[
        float, typer.Option(metavar="N", min=0, help="--engine ray: GPUs per actor (0: CPU).", rich_help_panel="Ray")
    ] = 0.0,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Sync folders into the index: new and changed files are embedded, unchanged ones skipped.

    A new index is built with the given embedding options and, with the default pooling, first tunes itself on
    these photos. An existing index keeps its own config: options that differ from it are refused. Exit 1 if
    some files were skipped.
    """

    def body() -> int:
        lite.check_available(db)  # first: a held database is said in milliseconds, before any model loads
        part = _shard(shard)
        missing = [f for f in folders if not os.path.lexists(f)]
        if missing:
            raise IndexerError(f"no such file or folder: {names.shown(str(missing[0]))}")
        vector_index = _vector_index(index_type, index_params)
        embedding.scale_values()
        from extractor.tuning import Tuning

        tuning = Tuning(edits=tune_edits) if tune else False
        idx = _open(db, collection, token, tuning=tuning, vector_index=vector_index, **embedding.runtime())
        if idx.config is not None and (index_type is not None or index_params is not None):
            kept = idx.vector_index
            if vector_index.kind != kept.kind or (index_params is not None and vector_index.params != kept.params):
                raise IndexerError(
                    f"the collection already has a {kept.kind} index {kept.params}: an existing collection keeps its "
                    "vector index (drop it and index again to change it)"
                )
        if engine not in ("local", "ray"):
            raise IndexerError(f"--engine must be local or ray, got {engine!r}")
        run_on: Any = engine
        if engine == "ray":
            from .ray_engine import RayOptions  # Ray itself is imported only when the engine runs

            run_on = RayOptions(address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor)
        if idx.config is None or not embedding.is_default_recipe:
            # an existing index takes the same recipe with its own fit, and refuses another one, naming the fields
            idx.extractor = embedding.extractor()
        total = _index_folders(idx, folders, recursive, prune, part, quiet or as_json, run_on)
        if failures is not None:
            _write_text(failures, _jsonl({**names.json_fields(p), "reason": r} for p, r in total.failed))
        if as_json:
            summary: dict[str, Any] = {
                k: getattr(total, k) for k in ("added", "updated", "unchanged", "removed", "reused")
            }
            summary["failed"] = [{**names.json_fields(p), "reason": r} for p, r in total.failed]
            summary["count"] = len(idx)
            sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        else:
            _print_report(total, idx)
        return EXIT_OK if total.ok else EXIT_PARTIAL

    _run(body)


def _index_folders(
    idx: ImageIndex,
    folders: list[Path],
    recursive: bool,
    prune: bool,
    shard: tuple[int, int] | None,
    quiet: bool,
    engine: Any = "local",
) -> IndexReport:
    from .sync import IndexReport

    total = IndexReport()
    with _Bars(quiet) as bars:
        for folder in folders:
            report = idx.add_folder(
                folder,
                recursive=recursive,
                prune=prune,
                shard=shard,
                progress=lambda done, n, _path: bars.show("index", "indexing", "files", done, n),
                on_tune=lambda done, n: bars.show("tune", f"tuning on {n} photos", "photos", done, n),
                engine=engine,
            )
            total.merge(report)
    return total


def _vector_index(kind: str | None, params: str | None) -> Any:
    from .store import VectorIndex

    try:
        parsed = json.loads(params) if params else None
    except json.JSONDecodeError as e:
        raise IndexerError(f"--index-params must be a JSON object: {e}") from None
    if parsed is not None and not isinstance(parsed, dict):
        raise IndexerError("--index-params must be a JSON object such as '{\"nlist\": 256}'")
    return VectorIndex(kind=kind or "HNSW", params=parsed)


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise IndexerError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise IndexerError(f"--shard must be I/N with 0 ≤ I < N, got {text!r}")
    return i, n


def _print_report(report: IndexReport, idx: ImageIndex) -> None:
    table = Table(title=escape(f"{idx.uri} · {idx.collection}"), show_header=True)
    columns = ("added", "updated", "unchanged", "removed", "reused", "failed", "in index")
    for col in columns:
        table.add_column(col, justify="right")
    counts = [report.added, report.updated, report.unchanged, report.removed, report.reused, len(report.failed)]
    table.add_row(*(str(c) for c in counts), str(len(idx)))
    out.print(table)
    _skipped(report.failed)


@app.command(cls=_Command)
@embedding_options(*_RUNTIME_FIELDS)
def search(
    queries: Annotated[list[Path], typer.Argument(metavar="IMAGE", help="Query images.")],
    k: Annotated[int, typer.Option("-k", "--top-k", metavar="K", min=1, help="Results per query.")] = 10,
    under: UnderOpt = None,
    min_score: Annotated[
        float | None, typer.Option(metavar="SCORE", help="Drop hits whose cosine similarity is below this.")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option(
            metavar="EXPR",
            help="Milvus filter on the fields path, root, size, mtime_ns, width, height, sha256, e.g. 'width >= 1000'.",
        ),
    ] = None,
    qe: Annotated[int, typer.Option("--qe", metavar="N", min=0, help="Query expansion over the top N hits.")] = 0,
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
    grid: Annotated[
        Path | None, typer.Option(metavar="PNG", help="Also draw the queries and hits as a contact sheet.")
    ] = None,
    html: Annotated[
        Path | None, typer.Option(metavar="HTML", help="Also write a self-contained page of the results.")
    ] = None,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Find the indexed images most similar to each query image."""

    def body() -> int:
        idx = _existing(db, collection, token, **embedding.runtime())
        paths = [str(q) for q in queries]
        results = idx.search_many(paths, k=k, under=under, min_score=min_score, where=where, qe=qe)
        pairs = list(zip(paths, results, strict=True))
        if grid is not None:
            from . import render

            render.search_sheet(pairs, grid)
        if html is not None:
            from . import render

            render.search_html(pairs, html)
        if as_json:
            payload = [results_json.query_json(q, hits) for q, hits in pairs]
            sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
            return EXIT_OK
        for q, hits in pairs:
            if not hits:
                out.print(f"query: {escape(names.shown(q))} — no hits")
                continue
            table = Table(title=escape(f"query: {names.shown(q)}"), show_header=True)
            table.add_column("rank", justify="right")
            table.add_column("score", justify="right")
            table.add_column("path", overflow="fold")
            for r, h in enumerate(hits, 1):
                table.add_row(str(r), f"{h.score:.4f}", escape(names.shown(h.path)))
            out.print(table)
        return EXIT_OK

    _run(body)


@app.command(cls=_Command)
def dups(
    threshold: Annotated[
        float | None,
        typer.Option(
            metavar="SCORE",
            help="Score at or above which images are near-duplicates (default 0.15; with --no-normalize, the cosine: "
            "0.5 for the tuned embedding, 0.9 for plain GeM).",
        ),
    ] = None,
    normalize: Annotated[
        bool,
        typer.Option(
            help="Normalised scores: each image's similarity to its nearest others is taken off, so one threshold "
            "means the same for every image.",
        ),
    ] = True,
    k: Annotated[int, typer.Option("-k", metavar="K", min=1, help="Neighbours examined per image.")] = 10,
    under: UnderOpt = None,
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
    grid: Annotated[Path | None, typer.Option(metavar="PNG", help="Also draw the groups as a contact sheet.")] = None,
    html: Annotated[
        Path | None, typer.Option(metavar="HTML", help="Also write a self-contained page of the groups.")
    ] = None,
) -> None:
    """Groups of duplicate images in the index: exact copies (same bytes) first, then near-duplicates."""

    def body() -> int:
        groups = _existing(db, collection, token).find_duplicates(threshold, k=k, under=under, normalize=normalize)
        if grid is not None:
            from . import render

            render.duplicates_sheet(groups, grid)
        if html is not None:
            from . import render

            render.duplicates_html(groups, html)
        if as_json:
            payload = [results_json.group_json(g) for g in groups]
            sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
            return EXIT_OK
        if not groups:
            out.print("no duplicates found")
        for n, g in enumerate(groups, 1):
            label = "exact (same bytes)" if g.kind == "exact" else f"near (score ≥ {g.score:.3f})"
            out.print(f"[bold]group {n}[/]: {label}")
            for p in g.paths:
                out.print(f"  {escape(names.shown(p))}")
        return EXIT_OK

    _run(body)


@app.command(cls=_Command)
@embedding_options()
def embed(
    files: Annotated[list[Path], typer.Argument(metavar="IMAGE_OR_FOLDER", help="Images, or folders of images.")],
    out_path: Annotated[
        Path, typer.Option("--out", "-o", metavar="NPY", help="Vectors as a .npy file [N, D] float32.")
    ],
    paths_out: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Row i's file, one JSON object per line (default: OUT with .jsonl)."),
    ] = None,
    nul: Annotated[
        bool,
        typer.Option("--nul", help="Write the paths file as raw file names ended by NUL bytes (xargs -0), not JSON."),
    ] = False,
    tune: Annotated[
        bool,
        typer.Option(
            help="Fit the learned whitening on these images first (default: the packaged fit, the same vectors "
            "as Extractor())."
        ),
    ] = False,
    quiet: QuietOpt = False,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Embed images into a .npy file (and a file naming each row's image) without Milvus. Exit 1 if some failed."""

    def body() -> int:
        from extractor.images import iter_image_files

        missing = [f for f in files if not os.path.lexists(f)]
        if missing:
            raise IndexerError(f"no such file or folder: {names.shown(str(missing[0]))}")
        skipped: list[tuple[str, str]] = []
        inputs = [
            str(p)
            for f in files
            for p in (iter_image_files(f, on_skip=lambda path, why: skipped.append((path, why))) if f.is_dir() else [f])
        ]
        _skipped(skipped)
        ex = embedding.extractor()
        if ex.pipeline.needs_fit or (tune and ex.pipeline.needs_pairs):
            if not inputs:
                raise IndexerError("nothing to embed: no image files given")
            with _Bars(quiet) as bars:
                ex.fit(inputs, progress=lambda done, n: bars.show("tune", f"tuning on {n} photos", "photos", done, n))
        import numpy as np

        vectors, kept, failed = [], [], 0
        for item in ex.embed_iter(inputs):
            if item.error is not None:
                failed += 1
                _skipped([(item.source, item.error)])
                continue
            vectors.append(item.vector)
            kept.append(item.source)
        arr = np.stack(vectors) if vectors else np.zeros((0, ex.dim), np.float32)
        try:
            np.save(out_path, arr)
            listing = paths_out or out_path.with_suffix(".txt" if nul else ".jsonl")
            if nul:
                listing.write_bytes(b"".join(os.fsencode(p) + b"\0" for p in kept))
            else:
                listing.write_text(_jsonl({"row": i, **names.json_fields(p)} for i, p in enumerate(kept)), "utf-8")
        except OSError as e:
            raise IndexerError(f"cannot write {e.filename or out_path}: {e.strerror or e}") from None
        err.print(
            f"wrote {arr.shape[0]}×{arr.shape[1]} vectors to {escape(str(out_path))}, paths to {escape(str(listing))}"
        )
        return EXIT_PARTIAL if failed or skipped else EXIT_OK

    _run(body)


@app.command(cls=_Command)
def info(
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
) -> None:
    """What the index holds and how it was built (backbone, weights, pooling, dimension, backend)."""

    def body() -> int:
        idx = _open(db, collection, token)
        data = idx.info()
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
            table.add_row(name, escape(value))
        out.print(table)
        if not cfg:
            err.print(f"the index is empty: run `poolvec index FOLDER --db {escape(db)}`")
        return EXIT_OK

    _run(body)


def _tuning_text(t: dict[str, Any] | None) -> str:
    if not t:
        return "none (the embedding as configured)"
    prior = f", mixed with the packaged prior ({t['prior_weight']:g} pairs)" if t.get("prior") else ""
    return f"{t['sampled']} photos × {t['per_image']} edits = {t['pairs']} pairs{prior}, {t['seconds']} s"


@app.command(cls=_Command)
def drop(
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the collection (all vectors and the stored config); a Milvus Lite folder left empty goes too."""

    def body() -> int:
        idx = _existing(db, collection, token)
        n = len(idx)
        if not yes and not typer.confirm(f"Drop collection {collection!r} with {n} images from {db}?"):
            err.print("nothing dropped")
            return EXIT_USAGE
        removed = idx.drop()
        out.print(f"dropped {escape(repr(collection))} ({n} images)")
        if removed:
            out.print(f"removed the database folder {escape(db)}, which held nothing else")
        return EXIT_OK

    _run(body)


@app.command(cls=_Command)
def reroot(
    old: Annotated[Path, typer.Argument(metavar="OLD", help="Folder the indexed photos used to be in.")],
    new: Annotated[Path, typer.Argument(metavar="NEW", help="Folder they are in now.")],
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
) -> None:
    """Point entries under OLD to the same files under NEW (photos moved), without re-embedding."""

    def body() -> int:
        idx = _existing(db, collection, token)
        moved = idx.reroot(old, new)
        if moved == 0:
            raise IndexerError(
                f"nothing is indexed under {names.shown(os.path.abspath(old))}: nothing moved (see the indexed "
                "folders with `poolvec search --json` paths, or `poolvec info`)"
            )
        out.print(f"moved {moved} entries from {escape(names.shown(str(old)))} to {escape(names.shown(str(new)))}")
        return EXIT_OK

    _run(body)


@app.command("tune", cls=_Command)
@embedding_options(*_RUNTIME_FIELDS)
def tune_command(
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    tune_edits: TuneEditsOpt = DEFAULT_TUNE_EDITS,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Re-fit the learned whitening on the photos as they are now and re-embed every image with it.

    Costs about as much as indexing the collection again. Interrupted, the index refuses searches until the same
    command is run again, which finishes it. Entries whose files are gone or changed are removed; DBA is cleared.
    """

    def body() -> int:
        from extractor.tuning import Tuning

        idx = _existing(db, collection, token, **embedding.runtime())
        with _Bars(quiet or as_json) as bars:
            report = idx.tune(
                Tuning(edits=tune_edits),
                on_tune=lambda d, n: bars.show("tune", f"tuning on {n} photos", "photos", d, n),
                progress=lambda d, n: bars.show("embed", "re-embedding", "files", d, n),
            )
        if as_json:
            payload = {
                "rewritten": report.rewritten,
                "removed": [{**names.json_fields(p), "reason": r} for p, r in report.removed],
                "resumed": report.resumed,
                "dba_cleared": report.dba_cleared,
                "tuning": report.tuning,
            }
            sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        else:
            t = report.tuning or {}
            how = f" on {t.get('sampled')} photos × {t.get('per_image')} edits" if t else ""
            out.print(f"tuned{how}; re-embedded {report.rewritten} images" + (" (resumed)" if report.resumed else ""))
            _skipped(report.removed, "removed")
            if report.dba_cleared:
                err.print("DBA had been applied and was cleared with the old vectors: run `poolvec dba` again")
        return EXIT_OK

    _run(body)


@app.command("dba", cls=_Command)
def dba_command(
    n: Annotated[int, typer.Option("-n", metavar="N", min=1, help="Neighbours averaged into each vector.")] = 5,
    alpha: Annotated[float, typer.Option(metavar="ALPHA", min=0, help="Weight exponent: similarity^alpha.")] = 3.0,
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    quiet: QuietOpt = False,
) -> None:
    """Database-side augmentation: each stored vector becomes the weighted mean of itself and its neighbours.

    Applied once to the whole collection (better recall on near-duplicate clusters); later additions are augmented
    the same way. Interrupted, the index refuses searches until the same command is run again, which finishes it.
    """

    def body() -> int:
        idx = _existing(db, collection, token)
        with _Bars(quiet) as bars:
            rows = idx.apply_dba(
                n=n, alpha=alpha, progress=lambda d, t, _p: bars.show("dba", "augmenting", "rows", d, t)
            )
        out.print(f"augmented {rows} vectors (n={n}, alpha={alpha})")
        return EXIT_OK

    _run(body)


@app.command("pooling", cls=_Command)
def pooling_command(
    backbone: Annotated[
        str, typer.Option(metavar="NAME", help="Backbone whose channel count sets the dimensions.")
    ] = DEFAULT_BACKBONE,
    layer: Annotated[
        str | None, typer.Option(metavar="LAYER", help="Feature-map layer (default: last conv stage).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The pooling methods and post-steps, their parameters, and output dimension for a backbone."""

    def body() -> int:
        from pooling.spec import PoolingError, methods
        from pooling.spec import out_dim as spec_dim

        channels = PACKAGED_CHANNELS.get(backbone) if layer is None else None
        if channels is None:
            from extractor import build_backbone

            channels = build_backbone(backbone, None, layer).spec.channels
        rows = []
        for m in methods():
            params = ", ".join(f"{p['name']}={p['default']}" for p in m["params"])
            spec = f"{m['name']}({params})" if params else m["name"]
            try:
                dim: int | str = spec_dim(spec, channels) if m["kind"] == "pool" else m["dim"]
            except PoolingError:
                dim = "?"
            rows.append({**m, "spec": spec, "out_dim": dim})
        if as_json:
            sys.stdout.write(json.dumps({"backbone": backbone, "channels": channels, "methods": rows}, indent=2) + "\n")
            return EXIT_OK
        table = Table(title=escape(f"pooling for {backbone} (C = {channels} channels); default: {DEFAULT_POOLING}"))
        for col in ("method", "kind", "dimension", "formula", "needs fit", "what it does"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(
                escape(r["spec"]), r["kind"], str(r["out_dim"]), r["dim"], "yes" if r["needs_fit"] else "", r["summary"]
            )
        out.print(table)
        return EXIT_OK

    _run(body)


@app.command("eval", cls=_Command)
@embedding_options(*_RUNTIME_FIELDS)
def eval_command(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="Ground truth: classes, pairs or revisitop.")],
    source: Annotated[
        Path, typer.Argument(metavar="SOURCE", help="classes: DIR/<class>/*; pairs: a JSON file; revisitop: gnd_*.pkl.")
    ],
    images: Annotated[
        Path | None,
        typer.Option(metavar="FOLDER", help="revisitop: the image folder; pairs: database folder (distractors)."),
    ] = None,
    k: Annotated[
        int | None, typer.Option("-k", "--top-k", metavar="K", min=1, help="Ranking depth (default: all).")
    ] = None,
    qe: Annotated[int, typer.Option("--qe", metavar="N", min=0, help="Query expansion over the top N hits.")] = 0,
    add: Annotated[bool, typer.Option("--add", help="Index the ground truth's database images first.")] = False,
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output (with per-query AP and rank).")] = False,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Measure retrieval quality on labelled images: mAP, recall@k, P@k (revisitop: mAP, mP@k for Easy/Medium/Hard)."""

    def body() -> int:
        from .evaluation import evaluate_index, load_ground_truth

        gt = load_ground_truth(kind, source, images)
        idx = _open(db, collection, token, **embedding.runtime())
        failed: list[tuple[str, str]] = []
        if add:
            failed = idx.add(gt.database).failed
            _skipped(failed)
        result = evaluate_index(idx, gt, k=k, qe=qe)
        if result["n_missing"]:
            err.print(
                f"[yellow]warning:[/] {result['n_missing']} of {result['database']} database images are not in the "
                f"index (e.g. {escape(result['missing'][0])}); they count as never found — use --add to index them"
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

    _run(body)


@app.command("serve", cls=_Command)
@embedding_options(*_RUNTIME_FIELDS)
def serve_command(
    db: DbOpt = DEFAULT_URI,
    collection: CollOpt = DEFAULT_COLLECTION,
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="Address to listen on; anything but loopback is reachable by others.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", min=0, max=65535, help="Port (0: any free one).")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="POOLVEC_SERVE_TOKEN",
            metavar="TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on the API (the page asks for it once).",
        ),
    ] = None,
    milvus_token: Annotated[
        str | None,
        typer.Option("--milvus-token", envvar="POOLVEC_TOKEN", metavar="TOKEN", help="Milvus server token."),
    ] = None,
    max_upload_mb: Annotated[
        int, typer.Option(metavar="MB", min=1, help="Largest image accepted for a search, in MiB.")
    ] = 32,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Serve the index over HTTP: a web page to search by image and review duplicates, and a JSON API (/docs).

    Binds 127.0.0.1:8765 by default and prints the page's URL; Ctrl+C stops it. No file is changed. The model is
    loaded (and, unless --no-optimize, traced) once at start.
    """

    def body() -> int:
        try:
            from .serve import ServeSettings, run
        except ImportError as e:
            raise IndexerError(f"`poolvec serve` needs {e.name}: pip install 'poolvec[serve]'") from None
        runtime = embedding.runtime()
        if runtime["optimize"] == "auto":
            runtime["optimize"] = True  # a server traces the model once at start, not after 64 queries
        idx = _existing(db, collection, milvus_token, **runtime)
        settings = ServeSettings(token=token, max_upload_bytes=max_upload_mb << 20)
        run(
            idx,
            host,
            port,
            settings,
            say=lambda t: out.print(escape(t)),
            warn=lambda t: err.print(f"[yellow]warning:[/] {escape(t)}"),
        )
        return EXIT_OK

    _run(body)


def main() -> None:
    """The console script.

    Once the command has finished and every other exit handler has run (Milvus Lite's server, Ray, temporary
    files), the process ends without tearing down torch's modules one by one: that teardown alone is ~1.1 s of
    a 5 s one-query search (docs/BENCHMARKS.md, "CLI start-up") and does nothing a finished command needs.
    """
    status: list[int] = []
    atexit.register(_end_now, status)  # registered first, so it runs last
    try:
        app(prog_name="poolvec")
    except SystemExit as e:
        if "torch" in sys.modules:
            status.append(e.code if isinstance(e.code, int) else 0 if e.code is None else 1)
        raise


def _end_now(status: list[int]) -> None:
    """The last exit handler: flush what the user is owed, then leave (``os._exit``) with the command's status."""
    if not status:
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`): nothing more to deliver
            stream.flush()
    os._exit(status[0])


__all__ = ["EXIT_CODES", "app", "embedding_options", "main"]
