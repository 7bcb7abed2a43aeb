"""``poolvec search`` and ``poolvec dups``: the images most like a query, and the copies within the index."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from poolvec.indexer import results as results_json
from poolvec.indexer.cli.commands.review import (
    AgainstOpt,
    AllOpt,
    PreferOpt,
    ResolveOpt,
    RulesOpt,
    SuggestOpt,
    TrashOpt,
    YesOpt,
)
from poolvec.indexer.cli.output import out, print_json, stream_json
from poolvec.indexer.cli.params import RUNTIME_FIELDS, CollOpt, DbOpt, JsonOpt, TokenOpt, UnderOpt, embedding_options
from poolvec.indexer.cli.progress import Bars
from poolvec.indexer.cli.run import existing_index, run
from poolvec.indexer.errors import EXIT_OK
from poolvec.indexer.milvus import names
from poolvec.indexer.milvus.lite import DEFAULT_COLLECTION, DEFAULT_URI
from poolvec.indexer.milvus.schema import META_FIELDS
from poolvec.indexer.options import EmbeddingOptions

if TYPE_CHECKING:
    from collections.abc import Iterable

    from poolvec.indexer.dups.find import DuplicateGroup
    from poolvec.indexer.query import Hit

VerifyOpt = Annotated[
    bool,
    typer.Option(
        help="Check matches by local features (SIFT + RANSAC): verified copies first in search, and dups joins only "
        "images shown to correspond, so look-alikes are not grouped.",
    ),
]


@embedding_options(*RUNTIME_FIELDS)
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
            help=f"Milvus filter on the fields {', '.join(META_FIELDS)}, e.g. 'width >= 1000'.",
        ),
    ] = None,
    qe: Annotated[int, typer.Option("--qe", metavar="N", min=0, help="Query expansion over the top N hits.")] = 0,
    verify: VerifyOpt = True,
    regions: Annotated[
        str,
        typer.Option(
            metavar="WHEN",
            help="Also search the query's regions (a copy pasted into a photo or framed in a collage): 'auto' when "
            "nothing of the whole query verifies, 'always', or 'never'.",
        ),
    ] = "auto",
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
        idx = existing_index(db, collection, token, runtime=embedding.runtime)
        paths = [str(q) for q in queries]
        policy = replace(idx.verification, regions=regions) if verify else False
        results = idx.search_many(paths, k=k, under=under, min_score=min_score, where=where, qe=qe, verify=policy)
        pairs = list(zip(paths, results, strict=True))
        if grid is not None or html is not None:
            from poolvec.indexer import render

            render.search_outputs(pairs, grid, html)
        if as_json:
            print_json([results_json.query_json(q, hits) for q, hits in pairs])
            return EXIT_OK
        for q, hits in pairs:
            if not hits:
                out.print(f"query: {escape(names.shown(q))} — no hits")
                continue
            table = Table(title=escape(f"query: {names.shown(q)}"), show_header=True)
            table.add_column("rank", justify="right")
            table.add_column("score", justify="right")
            table.add_column("verified", justify="right")
            table.add_column("path", overflow="fold")
            for r, h in enumerate(hits, 1):
                table.add_row(str(r), f"{h.score:.4f}", _verified(h), escape(names.shown(h.path)))
            out.print(table)
        return EXIT_OK

    run(body)


def _verified(hit: Hit) -> str:
    """A hit's verification for the table: ✓ and the inliers, ✗, or nothing when it was not checked."""
    if hit.verified is None:
        return ""
    return f"✓ {hit.inliers}" + (" mirrored" if hit.mirrored else "") if hit.verified else "✗"


def dups(
    threshold: Annotated[
        float | None,
        typer.Option(
            metavar="SCORE",
            help="Score from which two neighbours are candidates (default 0.0, normalised; 0.3 with --no-normalize); "
            "with --no-verify, the score at or above which they are copies (default 0.15; with --no-normalize 0.5 "
            "for the tuned embedding, 0.9 for plain GeM).",
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
    verify: VerifyOpt = True,
    under: UnderOpt = None,
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
    grid: Annotated[Path | None, typer.Option(metavar="PNG", help="Also draw the groups as a contact sheet.")] = None,
    html: Annotated[
        Path | None, typer.Option(metavar="HTML", help="Also write a self-contained page of the groups.")
    ] = None,
    show_all: AllOpt = False,
    against: AgainstOpt = None,
    suggest: SuggestOpt = False,
    resolve: ResolveOpt = None,
    trash: TrashOpt = None,
    yes: YesOpt = False,
    rules: RulesOpt = None,
    prefer: PreferOpt = None,
) -> None:
    """Groups of duplicate images in the index: exact copies (same bytes) first, then near-duplicates; with
    --suggest or --resolve, the copy of each to keep and what to do with the others."""

    def body() -> int:
        from poolvec.indexer.review.keeper import KeepRules

        keep_rules = KeepRules.parse(rules, [str(p) for p in prefer or ()])  # a bad rule name: before any work
        idx = existing_index(db, collection, token)
        labels = {"read": ("reading the index", "rows"), "neighbours": ("finding neighbours", "rows")}
        with Bars(False) as bars:
            found = idx.iter_duplicates(
                threshold,
                k=k,
                under=under,
                normalize=normalize,
                verify=verify,
                decided=not show_all,
                against=against,
                progress=lambda stage, done, n: bars.show(stage, *labels[stage], done, n),
            )
            if suggest or resolve is not None:
                from poolvec.indexer.cli.commands.review import review_groups

                target = str(against) if against is not None else None
                return review_groups(idx, list(found), keep_rules, target, resolve, trash, yes, as_json)
            if grid is not None or html is not None:
                from poolvec.indexer import render

                found = list(found)
                render.duplicates_outputs(found, grid, html)
            if as_json:  # streamed: the exact copies are out before the neighbours are searched
                stream_json(results_json.group_json(g) for g in found)
                return EXIT_OK
            print_groups(found)
        return EXIT_OK

    run(body)


def print_groups(groups: Iterable[DuplicateGroup]) -> None:
    """The groups as text, each printed as soon as it is found."""
    n = 0
    for n, g in enumerate(groups, 1):
        label = "exact (same bytes)" if g.kind == "exact" else f"near (score ≥ {g.score:.3f})"
        out.print(f"[bold]group {n}[/]: {label}")
        for p in g.paths:
            out.print(f"  {escape(names.shown(p))}")
    if not n:
        out.print("no duplicates found")


__all__ = ["dups", "search"]
