"""Operations that rewrite many rows, made safe against kill -9: a marker with what is needed to finish.

``tune``, ``dba``, ``reroot`` and ``copy`` (into the index it makes) change rows in batches. Before the first row
changes, the operation writes a ``poolvec.pending`` collection property holding everything needed to finish it (the
new config, the staged vectors' place, the old and new folder, the source) and how far it got; it advances the marker
as batches land and removes it last. Each batch is idempotent (re-embedding a file, writing a staged vector, moving
or copying a row), so repeating the batch a kill interrupted changes nothing twice. While a marker is there, the index
refuses searches and additions — its rows are half old, half new — and says which command finishes the job; running
that command again resumes it.

The index does not finish or roll back such work by itself when it is opened: on a shared Milvus server a marker
cannot tell an operation whose process died from one still running in another process.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus import names
from poolvec.indexer.milvus.store import MilvusStore

PROP_PENDING = "poolvec.pending"


def get(store: MilvusStore) -> dict[str, Any] | None:
    """The unfinished operation on this collection, or None. Markers written before ``op`` existed are tunes."""
    raw = store.properties().get(PROP_PENDING)
    if not raw:
        return None
    state = json.loads(raw)
    state.setdefault("op", "tune")
    return state


def save(store: MilvusStore, state: dict[str, Any]) -> dict[str, Any]:
    """Write (or advance) the marker; ``state["op"]`` names the operation."""
    if "op" not in state:
        raise ValueError("a pending operation needs its 'op'")
    store.set_property(PROP_PENDING, json.dumps(state))
    return state


def clear(store: MilvusStore) -> None:
    """Remove the marker: the operation is complete."""
    store.set_property(PROP_PENDING, "")


def command(state: dict[str, Any]) -> str:
    """The command line that finishes ``state``'s operation."""
    op = state["op"]
    if op == "reroot":
        return f"poolvec reroot {shlex.quote(names.shown(state['old']))} {shlex.quote(names.shown(state['new']))}"
    if op == "dba":
        return f"poolvec dba -n {state['n']} --alpha {state['alpha']:g}"
    if op == "copy":
        source = f"--db {shlex.quote(state['from'])} --collection {shlex.quote(state['from_collection'])}"
        return f"poolvec copy {source} --to {shlex.quote(state['to'])}"
    return "poolvec tune"


def refuse(state: dict[str, Any], where: str) -> IndexerError:
    """The error for any other use of an index with an unfinished operation."""
    what = {"tune": "tune (re-embedding)", "dba": "dba (augmentation)", "reroot": "reroot", "copy": "copy"}.get(
        state["op"], state["op"]
    )
    return IndexerError(
        f"an interrupted {what} left {where} half rewritten: run `{command(state)}` (or the same Python call) "
        "again to finish it"
    )


__all__ = ["PROP_PENDING", "clear", "command", "get", "refuse", "save"]
