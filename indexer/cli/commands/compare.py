"""``poolvec compare A B``: are two images copies? The verdict, the evidence, and a picture of the matched points."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from poolvec.indexer.cli.output import out, print_json
from poolvec.indexer.cli.params import JsonOpt, embedding_options
from poolvec.indexer.cli.run import run
from poolvec.indexer.errors import EXIT_OK
from poolvec.indexer.milvus import names
from poolvec.indexer.options import EmbeddingOptions


@embedding_options()
def compare(
    a: Annotated[Path, typer.Argument(metavar="A", help="An image.")],
    b: Annotated[Path, typer.Argument(metavar="B", help="Another image.")],
    picture: Annotated[
        Path | None,
        typer.Option(metavar="PNG", help="Draw the two images side by side with their matched points and regions."),
    ] = None,
    as_json: JsonOpt = False,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Whether A and B are copies: their embeddings' similarity, and whether local features show they correspond
    (matched points, and the region they cover in each image)."""

    def body() -> int:
        import numpy as np

        from poolvec.indexer.results import comparison_json
        from poolvec.indexer.verify.compare import compare as verify_pair

        extractor = embedding.extractor()
        va, vb = (np.asarray(extractor.embed(str(p)), np.float64).reshape(-1) for p in (a, b))
        similarity = float(va @ vb)
        result = verify_pair(str(a), str(b), runtime=embedding.runtime, similarity=similarity)
        if picture is not None:
            from poolvec.indexer import render

            render.correspondence_picture(result, picture)
        if as_json:
            print_json(comparison_json(result))
            return EXIT_OK
        c = result.correspondence
        out.print(f"{escape(names.shown(str(a)))} ↔ {escape(names.shown(str(b)))}")
        out.print(f"[bold]{escape(result.verdict())}[/]")
        out.print(f"similarity {similarity:.4f} (cosine of the embeddings)")
        if c.verified:
            out.print(f"matched region: A {_box(c.box_a)}, B {_box(c.box_b)} (fractions of each image)")
        return EXIT_OK

    run(body)


def _box(box: tuple[float, float, float, float] | None) -> str:
    return "—" if box is None else "[" + ", ".join(f"{v:.2f}" for v in box) + "]"


__all__ = ["compare"]
