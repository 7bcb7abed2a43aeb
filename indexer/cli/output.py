"""What the CLI prints: the two consoles, error lines, skipped files, JSON, and files it writes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from poolvec.indexer.errors import (
    EXIT_BACKEND,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    IndexerError,
)
from poolvec.indexer.milvus import names

#: README's exit-code table (also in ``poolvec --help``).
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_PARTIAL: "finished, but some files were skipped (each is listed on stderr with its reason)",
    EXIT_USAGE: "usage or configuration error (bad option, unknown backbone, config differs from the index's)",
    EXIT_BACKEND: (
        "the Milvus backend is unreachable, another process holds the Milvus Lite database, or Ray could not start"
    ),
    EXIT_INTERNAL: "unexpected error (a bug: run again with --debug and report the traceback)",
    EXIT_INTERRUPTED: "interrupted; what was done so far is kept — run the same command again to finish",
}

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: MESSAGE`` on stderr; the exit to raise with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def warn(message: str) -> None:
    """``warning: MESSAGE`` on stderr."""
    err.print(f"[yellow]warning:[/] {escape(message)}")


def skipped(items: Iterable[tuple[str, str]], verb: str = "skipped") -> None:
    """One line on stderr per file that was passed over, with its reason."""
    for path, reason in items:
        err.print(f"[yellow]{verb}[/] {escape(names.shown(path))}: {escape(reason)}")


def print_json(payload: Any) -> None:
    """``payload`` as indented JSON on stdout (file names as :func:`names.json_fields` writes them)."""
    sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def stream_json(items: Iterable[Any]) -> int:
    """A JSON array on stdout written item by item as ``items`` yields them (each flushed: a consumer reads the first
    before the last is found), in :func:`print_json`'s layout; returns how many."""
    n = 0
    sys.stdout.write("[")
    for n, item in enumerate(items, 1):
        text = json.dumps(item, indent=2, ensure_ascii=False).replace("\n", "\n  ")
        sys.stdout.write(("," if n > 1 else "") + "\n  " + text)
        sys.stdout.flush()
    sys.stdout.write("\n]\n" if n else "]\n")
    return n


def jsonl(rows: Iterable[dict[str, Any]]) -> str:
    """JSON lines."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def failures_json(failed: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Skipped files as JSON objects: the file's name fields and the reason."""
    return [{**names.json_fields(p), "reason": r} for p, r in failed]


def write_text(path: Path, text: str) -> None:
    """Write a file the user asked for; a one-line error when it cannot be written."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise IndexerError(f"cannot write {path}: {e.strerror or e}") from None


__all__ = ["EXIT_CODES", "err", "fail", "failures_json", "jsonl", "out", "print_json", "skipped", "warn", "write_text"]
