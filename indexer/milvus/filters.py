"""Milvus boolean expressions built from user values, every string escaped.

A folder named ``a" or 1==1 or "`` must select that folder and nothing else: values only ever enter an
expression through :func:`quote`, and numbers through ``int``/``float``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus import names, schema

Range = tuple[float | None, float | None]

#: Fields a ``where`` expression may use (``dirs["d"]`` is the list of a file's folders, for ``json_contains``).
FIELDS = tuple(f.name for f in schema.FIELDS if f.kind != "vector")
#: Words of Milvus's expression language a ``where`` may use besides the fields.
WORDS = frozenset(
    {"and", "or", "not", "in", "like", "true", "false", "AND", "OR", "NOT", "IN", "LIKE", "TRUE", "FALSE"}
    | {"json_contains", "json_contains_any", "json_contains_all", "exists", "EXISTS"}
)
#: Deepest parenthesis nesting accepted (Milvus's parsers recurse per level).
MAX_DEPTH = 32
_TOKEN = re.compile(
    r'\s+|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[A-Za-z_][A-Za-z0-9_]*|[0-9.eE+-]+|[()\[\],]|[<>=!]=?|%|\*\*|[-+*/]'
)


def quote(value: str) -> str:
    """A Milvus string literal holding exactly the stored form of ``value`` (:mod:`poolvec.indexer.milvus.names`:
    control
    characters and undecodable bytes mapped to text; backslashes and double quotes escaped)."""
    text = names.stored(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_where(expr: str) -> str:
    """A user's raw ``where`` expression, checked so that it cannot cancel the filters it is combined with: its
    parentheses balance (``1==1) or (1==1`` would escape the ``(…) and (…)`` around it), it names only the indexed
    fields, and it nests at most :data:`MAX_DEPTH` deep. Milvus checks the rest."""
    depth, pos = 0, 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise IndexerError(f"--where: cannot read {expr[pos : pos + 20]!r} in {expr!r}")
        token, pos = m.group(0), m.end()
        if token == "(":
            depth += 1
            if depth > MAX_DEPTH:
                raise IndexerError(f"--where: parentheses nest deeper than {MAX_DEPTH} levels")
        elif token == ")":
            depth -= 1
            if depth < 0:
                raise IndexerError(f"--where: a ')' closes a parenthesis that was never opened, in {expr!r}")
        elif (token[0].isalpha() or token[0] == "_") and token not in FIELDS and token not in WORDS:
            raise IndexerError(
                f"--where: unknown field {token!r}; the fields are {', '.join(FIELDS)} (e.g. 'width >= 1000 and "
                "size < 5000000', 'path like \"%/2024/%\"')"
            )
    if depth:
        raise IndexerError(f"--where: {depth} parenthesis(es) left open in {expr!r}")
    if not expr.strip():
        raise IndexerError("--where: the expression is empty")
    return expr


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
        check_where(where) if where is not None else "",
    )


def _number(value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IndexerError(f"filter bounds must be numbers, got {value!r}")
    return str(int(value)) if float(value).is_integer() else repr(float(value))
