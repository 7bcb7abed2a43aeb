"""``poolvec index``: sync folders into an index (new and changed files embedded, unchanged ones skipped)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from poolvec.extractor.defaults import DEFAULT_TUNE_EDITS
from poolvec.extractor.files import require_existing
from poolvec.indexer.cli.output import failures_json, jsonl, out, print_json, skipped, write_text
from poolvec.indexer.cli.params import (
    ActorsOpt,
    CollOpt,
    DbOpt,
    EngineOpt,
    FailuresOpt,
    GpusOpt,
    IndexParamsOpt,
    IndexTypeOpt,
    JsonOpt,
    QuietOpt,
    RayAddressOpt,
    ShardOpt,
    TokenOpt,
    TuneEditsOpt,
    TuneOpt,
    embedding_options,
)
from poolvec.indexer.cli.progress import Bars
from poolvec.indexer.cli.run import open_index, run
from poolvec.indexer.errors import EXIT_OK, EXIT_PARTIAL
from poolvec.indexer.milvus.lite import DEFAULT_COLLECTION, DEFAULT_URI, check_uri
from poolvec.indexer.milvus.vector_index import VectorIndex
from poolvec.indexer.ops.ray.options import parse_engine
from poolvec.indexer.options import EmbeddingOptions, Shard

if TYPE_CHECKING:
    from poolvec.indexer.index import ImageIndex
    from poolvec.indexer.ops.sync import IndexReport


@embedding_options()
def index(
    folders: Annotated[list[Path], typer.Argument(metavar="FOLDER", help="Folders (or files) of images to index.")],
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    tune: TuneOpt = True,
    tune_edits: TuneEditsOpt = DEFAULT_TUNE_EDITS,
    index_type: IndexTypeOpt = None,
    index_params: IndexParamsOpt = None,
    recursive: Annotated[bool, typer.Option(help="Descend into sub-folders.")] = True,
    prune: Annotated[bool, typer.Option(help="Delete entries whose files are gone.")] = False,
    shard: ShardOpt = None,
    failures: FailuresOpt = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    actors: ActorsOpt = 2,
    gpus_per_actor: GpusOpt = 0.0,
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
        check_uri(db)  # first: a held database is said in milliseconds, before any model loads
        part = Shard.parse(shard)
        require_existing(folders)
        vector_index = VectorIndex.parse(index_type, index_params)
        on = parse_engine(engine, address=ray_address, actors=actors, gpus_per_actor=gpus_per_actor)
        from poolvec.extractor.tuning import Tuning

        tuning = Tuning(edits=tune_edits) if tune else False
        idx = open_index(db, collection, token, embedding=embedding.check(), tuning=tuning, vector_index=vector_index)
        total = _index_folders(idx, folders, recursive, prune, part, quiet or as_json, on)
        if failures is not None:
            write_text(failures, jsonl(failures_json(total.failed)))
        if as_json:
            summary: dict[str, Any] = {
                k: getattr(total, k) for k in ("added", "updated", "unchanged", "removed", "reused")
            }
            print_json({**summary, "failed": failures_json(total.failed), "count": len(idx)})
        else:
            _print_report(total, idx)
        return EXIT_OK if total.ok else EXIT_PARTIAL

    run(body)


def _index_folders(
    idx: ImageIndex, folders: list[Path], recursive: bool, prune: bool, shard: Shard | None, quiet: bool, engine: Any
) -> IndexReport:
    from poolvec.indexer.dups import current
    from poolvec.indexer.dups.current import kept_current
    from poolvec.indexer.ops.sync import IndexReport

    total = IndexReport()
    labels = {"read": ("reading the index for dups", "rows"), "neighbours": ("finding neighbours for dups", "rows")}
    with Bars(quiet) as bars:
        shown = lambda stage, done, n: bars.show(stage, *labels[stage], done, n)  # noqa: E731
        with kept_current(idx.store, current.BUILD_FROM, shown):  # the folders' rows at once, then their graph
            for folder in folders:
                report = idx.add_folder(
                    folder,
                    recursive=recursive,
                    prune=prune,
                    shard=shard,
                    progress=lambda done, n, _path: bars.show("index", "indexing", "files", done, n),
                    on_tune=lambda done, n: bars.show("tune", f"tuning on {n} photos", "photos", done, n),
                    engine=engine or "local",
                )
                total.merge(report)
    return total


def _print_report(report: IndexReport, idx: ImageIndex) -> None:
    table = Table(title=escape(f"{idx.uri} · {idx.collection}"), show_header=True)
    columns = ("added", "updated", "unchanged", "removed", "reused", "failed", "in index")
    for col in columns:
        table.add_column(col, justify="right")
    counts = [report.added, report.updated, report.unchanged, report.removed, report.reused, len(report.failed)]
    table.add_row(*(str(c) for c in counts), str(len(idx)))
    out.print(table)
    skipped(report.failed)


__all__ = ["index"]
