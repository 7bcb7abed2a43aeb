"""Milvus boolean expressions built from user values, every string escaped.

A folder named ``a" or 1==1 or "`` must select that folder and nothing else: values only ever enter an
expression through :func:`quote`, and numbers through ``int``/``float``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .errors import IndexerError

Range = tuple[float | None, float | None]


def quote(value: str) -> str:
    """A Milvus string literal holding exactly ``value`` (backslashes and double quotes escaped)."""
    if any(ord(c) < 32 for c in value):
        raise IndexerError(f"control characters are not allowed in a filter value: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ancestors(path: str) -> list[str]:
    """Every folder above an absolute POSIX path, outermost first (``/a/b/c.jpg`` → ``["/a", "/a/b"]``)."""
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def under(folder: str | os.PathLike[str]) -> str:
    """Rows whose file lies anywhere below ``folder``."""
    top = os.path.abspath(os.fspath(folder)).rstrip("/") or "/"
    if top == "/":
        return ""
    return f'json_contains(dirs["d"], {quote(top)})'


def in_range(field: str, bounds: Range | None) -> str:
    """``lo <= field <= hi`` with either end open (None)."""
    if bounds is None:
        return ""
    lo, hi = bounds
    parts = []
    if lo is not None:
        parts.append(f"{field} >= {_number(lo)}")
    if hi is not None:
        parts.append(f"{field} <= {_number(hi)}")
    return " and ".join(parts)


def paths_in(paths: Sequence[str]) -> str:
    """Rows whose path is one of ``paths``."""
    return f"path in [{', '.join(quote(p) for p in paths)}]"


def combine(*clauses: str) -> str:
    """AND of the non-empty clauses, each parenthesised."""
    real = [c for c in clauses if c]
    return " and ".join(f"({c})" for c in real)


def build(
    *,
    under_folder: str | os.PathLike[str] | None = None,
    size: Range | None = None,
    mtime: Range | None = None,
    width: Range | None = None,
    height: Range | None = None,
    where: str | None = None,
) -> str:
    """One expression from the search filters; ``where`` is a raw Milvus expression for experts (kept as is).

    ``mtime`` bounds are POSIX timestamps in seconds; ``size`` in bytes; ``width``/``height`` in pixels.
    """
    mtime_ns = None if mtime is None else tuple(None if t is None else int(t * 1e9) for t in mtime)
    return combine(
        under(under_folder) if under_folder is not None else "",
        in_range("size", size),
        in_range("mtime_ns", mtime_ns),  # type: ignore[arg-type]
        in_range("width", width),
        in_range("height", height),
        where or "",
    )


def _number(value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IndexerError(f"filter bounds must be numbers, got {value!r}")
    return str(int(value)) if float(value).is_integer() else repr(float(value))
