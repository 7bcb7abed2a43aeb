"""``poolvec eval``: retrieval quality of an index on labelled images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from poolvec.indexer.cli.output import out, print_json, skipped, warn
from poolvec.indexer.cli.params import RUNTIME_FIELDS, CollOpt, DbOpt, TokenOpt, embedding_options
from poolvec.indexer.cli.run import open_index, run
from poolvec.indexer.errors import EXIT_OK, EXIT_PARTIAL
from poolvec.indexer.milvus.lite import DEFAULT_COLLECTION, DEFAULT_URI
from poolvec.indexer.options import EmbeddingOptions


@embedding_options(*RUNTIME_FIELDS)
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
        from poolvec.indexer.evaluation import evaluate_index, load_ground_truth

        gt = load_ground_truth(kind, source, images)
        idx = open_index(db, collection, token, runtime=embedding.runtime)
        failed: list[tuple[str, str]] = []
        if add:
            failed = idx.add(gt.database).failed
            skipped(failed)
        result = evaluate_index(idx, gt, k=k, qe=qe)
        if result["n_missing"]:
            warn(
                f"{result['n_missing']} of {result['database']} database images are not in the index (e.g. "
                f"{result['missing'][0]}); they count as never found — use --add to index them"
            )
        if as_json:
            print_json(result)
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

    run(body)


__all__ = ["eval_command"]
