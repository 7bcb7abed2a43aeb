"""``poolvec info`` and ``poolvec pooling``: what an index holds and how it was built; the pooling methods."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from poolvec.extractor.defaults import DEFAULT_BACKBONE, DEFAULT_POOLING, PACKAGED_CHANNELS
from poolvec.indexer.cli.output import out, print_json
from poolvec.indexer.cli.params import CollOpt, DbOpt, JsonOpt, TokenOpt
from poolvec.indexer.cli.run import existing_index, run
from poolvec.indexer.errors import EXIT_OK
from poolvec.indexer.milvus.lite import DEFAULT_COLLECTION, DEFAULT_URI

#: The recipe's rows of ``poolvec info``, in order (:meth:`poolvec.extractor.Recipe.describe`).
RECIPE_ROWS = ("backbone", "layer", "input", "scales", "pooling", "tuning")


def info(
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
) -> None:
    """What the index holds and how it was built (backbone, weights, pooling, dimension, backend)."""

    def body() -> int:
        idx = existing_index(db, collection, token)  # no index there: one line and exit 2, as `search` says
        data = idx.info()
        if as_json:
            print_json(data)
            return EXIT_OK
        table = Table(show_header=False, title="poolvec index")
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        recipe = idx.recipe.describe()  # type: ignore[union-attr]
        rows = [
            ("uri", data["uri"]),
            ("backend", data["backend"]),
            ("collection", data["collection"]),
            ("images", str(data["count"])),
            ("dimension", str(data["dim"])),
            *((name, recipe[name]) for name in RECIPE_ROWS),
            ("vector index", f"{data['vector_index']['kind']} {data['vector_index']['params']}"),
            ("fingerprint", str(data["fingerprint"])),
        ]
        for name, value in rows:
            table.add_row(name, escape(value))
        out.print(table)
        return EXIT_OK

    run(body)


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
        from poolvec.pooling.spec import PoolingError, methods
        from poolvec.pooling.spec import out_dim as spec_dim

        channels = PACKAGED_CHANNELS.get(backbone) if layer is None else None
        if channels is None:
            from poolvec.extractor import build_backbone

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
            print_json({"backbone": backbone, "channels": channels, "methods": rows})
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

    run(body)


__all__ = ["info", "pooling_command"]
