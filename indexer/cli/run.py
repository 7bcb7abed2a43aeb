"""How a command runs: its errors become one line and the exit code of the error policy; its index is opened
after the cheap checks, with the libraries' own log lines routed away."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from poolvec.indexer.cli.output import EXIT_CODES, fail
from poolvec.indexer.errors import EXIT_INTERRUPTED, IndexerError, kind_of, policy
from poolvec.indexer.milvus import lite
from poolvec.indexer.milvus.lite import DEFAULT_COLLECTION

if TYPE_CHECKING:
    from poolvec.indexer.index import ImageIndex

#: Set by the top-level options: tracebacks on errors (``--debug``), the libraries' log lines (``--verbose``).
state: dict[str, bool] = {"debug": False, "verbose": False}


def configure(debug: bool, verbose: bool) -> None:
    """Apply ``--debug``/``--verbose``: where log lines go (nowhere unless ``--verbose``), before any grpc import."""
    state["debug"], state["verbose"] = debug, verbose
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR" if verbose else "NONE")
    root = logging.getLogger()
    root.handlers = [logging.StreamHandler(sys.stderr) if verbose else logging.NullHandler()]
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def run(fn: Callable[[], int]) -> None:
    """Run a command body, turning every error into one line on stderr and the exit code of README's table."""
    try:
        code = fn()
    except typer.Exit:
        raise
    except (Exception, KeyboardInterrupt) as e:
        kind = kind_of(e)
        if state["debug"] and kind != "interrupted":
            raise
        raise fail(_message(e, kind), policy(e).exit_code) from None
    raise typer.Exit(code)


def _message(error: BaseException, kind: str) -> str:
    if kind == "interrupted":
        return EXIT_CODES[EXIT_INTERRUPTED]
    if kind == "internal":
        text = " ".join(str(error).split()) or "(no message)"
        return (
            f"unexpected {type(error).__name__}: {text} — this is a bug; run again with --debug (or POOLVEC_DEBUG=1) "
            "for the traceback and report it"
        )
    return str(error)


def route_library_logs() -> None:
    """pymilvus installs its own stderr handlers when imported: send its lines where ours go (nowhere, unless
    ``--verbose``), so that a failure is one line of ours, not a page of library tracebacks."""
    if state["verbose"]:
        return
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer"):
        log = logging.getLogger(name)
        log.handlers = [logging.NullHandler()]
        log.propagate = False


def open_index(db: str, collection: str, token: str | None, **kwargs: Any) -> ImageIndex:
    """Open an index after the cheap checks (URI form, a Lite database held by another process)."""
    lite.check_uri(db)
    from poolvec.indexer.index import ImageIndex

    route_library_logs()
    return ImageIndex(db, collection, token=token, **kwargs)


def existing_index(db: str, collection: str, token: str | None, **kwargs: Any) -> ImageIndex:
    """Open an index that must already hold images (search, dups, tune…): a clear error, and nothing created."""
    idx = open_index(db, collection, token, **kwargs)
    if idx.recipe is None:
        where = f"collection {collection!r} at {db}" if collection != DEFAULT_COLLECTION else db
        raise IndexerError(f"no index at {where}: build one first with `poolvec index FOLDER --db {db}`")
    return idx


__all__ = ["configure", "existing_index", "open_index", "route_library_logs", "run", "state"]
