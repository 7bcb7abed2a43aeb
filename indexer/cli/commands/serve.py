"""``poolvec serve``: the HTTP API and web page over an index."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from poolvec.extractor.defaults import DEFAULT_DECODE_MEMORY
from poolvec.indexer.cli.output import out, warn
from poolvec.indexer.cli.params import RUNTIME_FIELDS, CollOpt, DbOpt, embedding_options
from poolvec.indexer.cli.run import existing_index, run
from poolvec.indexer.errors import EXIT_OK, IndexerError
from poolvec.indexer.milvus.lite import DEFAULT_COLLECTION, DEFAULT_URI
from poolvec.indexer.options import EmbeddingOptions


@embedding_options(*RUNTIME_FIELDS)
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
    decode_memory_mb: Annotated[
        int,
        typer.Option(
            metavar="MB",
            min=64,
            help="Memory for decoding uploads, in MiB, shared by all requests (larger ones wait their turn).",
        ),
    ] = DEFAULT_DECODE_MEMORY >> 20,
    *,
    embedding: EmbeddingOptions,
) -> None:
    """Serve the index over HTTP: a web page to search by image and review duplicates, and a JSON API (/docs).

    Binds 127.0.0.1:8765 by default and prints the page's URL; Ctrl+C stops it. Files change only by the review
    actions (resolve, undo). The model is loaded (and, unless --no-optimize, traced) once at start.
    """

    def body() -> int:
        try:
            from poolvec.indexer.serve.running import ServeSettings, serve
        except ImportError as e:
            raise IndexerError(f"`poolvec serve` needs {e.name}: pip install 'poolvec[serve]'") from None
        settings = ServeSettings(  # a bad token: before anything
            token=token, max_upload_bytes=max_upload_mb << 20, decode_memory=decode_memory_mb << 20
        )
        idx = existing_index(db, collection, milvus_token, runtime=embedding.runtime)
        serve(idx, host, port, settings, say=lambda t: out.print(escape(t)), warn=warn)
        return EXIT_OK

    run(body)


__all__ = ["serve_command"]
