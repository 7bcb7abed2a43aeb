"""The API's routes, one router per group (search, duplicates, images, server), and the parameters they share."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import os
from typing import Annotated, Any

from fastapi import Query

from poolvec.indexer.errors import IndexerError
from poolvec.indexer.serve.models import Problem

#: Error answers every API route documents.
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Problem} for code in (400, 401, 404, 413, 415, 422, 503)}
Under = Annotated[str | None, Query(description="Only images under this folder (an absolute path).")]


def folder(under: str | None) -> str | None:
    """The ``under`` filter: an absolute folder (the server's working directory means nothing to a client)."""
    if under is None or not under.strip():
        return None
    if not os.path.isabs(under):
        raise IndexerError(f"under: give an absolute folder path, got {under!r}", kind="invalid")
    return under


def one_line(text: str, limit: int = 200) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["ERRORS", "Under", "folder", "one_line"]
