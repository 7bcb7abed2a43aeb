"""Commands that change or move an existing index as a whole: ``drop``, ``reroot``, ``tune``, ``dba`` and ``copy``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from poolvec.extractor.defaults import DEFAULT_TUNE_EDITS
from poolvec.indexer.cli.output import err, failures_json, out, print_json, skipped
from poolvec.indexer.cli.params import (
    RUNTIME_FIELDS,
    CollOpt,
    DbOpt,
    JsonOpt,
    QuietOpt,
    TokenOpt,
    TuneEditsOpt,
    embedding_options,
)
from poolvec.indexer.cli.progress import Bars
from poolvec.indexer.cli.run import existing_index, run
from poolvec.indexer.errors import EXIT_OK, EXIT_USAGE, IndexerError
from poolvec.indexer.milvus import names
from poolvec.indexer.milvus.lite import DEFAULT_COLLECTION, DEFAULT_URI
from poolvec.indexer.options import EmbeddingOptions


def drop(
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the collection (all vectors and the stored config); a Milvus Lite folder left empty goes too."""

    def body() -> int:
        idx = existing_index(db, collection, token)
        n = len(idx)
        if not yes and not typer.confirm(f"Drop collection {collection!r} with {n} images from {db}?"):
            err.print("nothing dropped")
            return EXIT_USAGE
        removed = idx.drop()
        out.print(f"dropped {escape(repr(collection))} ({n} images)")
        if removed:
            out.print(f"removed the database folder {escape(db)}, which held nothing else")
        return EXIT_OK

    run(body)


def reroot(
    old: Annotated[Path, typer.Argument(metavar="OLD", help="Folder the indexed photos used to be in.")],
    new: Annotated[Path, typer.Argument(metavar="NEW", help="Folder they are in now.")],
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
) -> None:
    """Point entries under OLD to the same files under NEW (photos moved), without re-embedding."""

    def body() -> int:
        idx = existing_index(db, collection, token)
        moved = idx.reroot(old, new)
        if moved == 0:
            raise IndexerError(
                f"nothing is indexed under {names.shown(os.path.abspath(old))}: nothing moved (see the indexed "
                "folders with `poolvec search --json` paths, or `poolvec info`)"
            )
        out.print(f"moved {moved} entries from {escape(names.shown(str(old)))} to {escape(names.shown(str(new)))}")
        return EXIT_OK

    run(body)


def copy_command(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="PATH|URL",
            help="Where the copy goes: http(s)://host:port of a Milvus server, or another Milvus Lite database.",
        ),
    ],
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    to_collection: Annotated[
        str | None, typer.Option(metavar="NAME", help="Collection name there (default: the same).")
    ] = None,
    to_token: Annotated[
        str | None, typer.Option(envvar="POOLVEC_TO_TOKEN", metavar="TOKEN", help="Token of the target server.")
    ] = None,
    quiet: QuietOpt = False,
) -> None:
    """Copy the index (vectors, recipe, settings, review decisions) to a Milvus server or another database, without
    re-embedding: the step from Milvus Lite to a server. Run it again to finish an interrupted copy."""

    def body() -> int:
        idx = existing_index(db, collection, token)
        with Bars(quiet) as bars:
            shown = lambda done, n: bars.show("copy", "copying", "rows", done, n)  # noqa: E731
            report = idx.copy_to(to, to_collection, token=to_token, progress=shown)
        name = to_collection or collection
        decisions = f" and {report.decisions} review decisions" if report.decisions else ""
        out.print(
            f"copied {report.rows} images{decisions} to {escape(to)} (collection {escape(repr(name))}) in "
            f"{report.seconds:.0f} s; use it with --db {escape(to)}"
        )
        return EXIT_OK

    run(body)


@embedding_options(*RUNTIME_FIELDS)
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
        from poolvec.extractor.tuning import Tuning

        idx = existing_index(db, collection, token, runtime=embedding.runtime)
        with Bars(quiet or as_json) as bars:
            report = idx.tune(
                Tuning(edits=tune_edits),
                on_tune=lambda d, n: bars.show("tune", f"tuning on {n} photos", "photos", d, n),
                progress=lambda d, n: bars.show("embed", "re-embedding", "files", d, n),
            )
        if as_json:
            print_json(
                {
                    "rewritten": report.rewritten,
                    "removed": failures_json(report.removed),
                    "resumed": report.resumed,
                    "dba_cleared": report.dba_cleared,
                    "tuning": report.tuning.to_dict() if report.tuning else None,
                }
            )
        else:
            t = report.tuning
            how = f" on {t.sampled} photos × {t.per_image} edits" if t else ""
            out.print(f"tuned{how}; re-embedded {report.rewritten} images" + (" (resumed)" if report.resumed else ""))
            skipped(report.removed, "removed")
            if report.dba_cleared:
                err.print("DBA had been applied and was cleared with the old vectors: run `poolvec dba` again")
        return EXIT_OK

    run(body)


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
        idx = existing_index(db, collection, token)
        with Bars(quiet) as bars:
            rows = idx.apply_dba(
                n=n, alpha=alpha, progress=lambda d, t, _p: bars.show("dba", "augmenting", "rows", d, t)
            )
        out.print(f"augmented {rows} vectors (n={n}, alpha={alpha})")
        return EXIT_OK

    run(body)


__all__ = ["dba_command", "drop", "reroot", "tune_command"]
