"""The kept neighbour graph (:mod:`.kept`) brought up to date by the operations that write rows — indexing, pruning,
removing, re-rooting, resolving and undoing — so that ``dups`` after them reads it instead of searching every row
again.

A writer follows its own writes (:meth:`~poolvec.indexer.milvus.side.KeptGraph.following`): when the graph was valid
before it, nobody else wrote meanwhile and it wrote few rows, only those rows are searched again (through Milvus) and
the graph kept for the new writes token; a large collection without a valid graph gets a whole new one at the end
of indexing (``build_from``), the cost of one ``dups`` search, small beside embedding its images.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import ParamSpec, TypeVar

import numpy as np

from poolvec.indexer.dups import kept
from poolvec.indexer.dups.find import read_rows, searched
from poolvec.indexer.dups.graph import Progress, Rows, gather
from poolvec.indexer.milvus.side import Written
from poolvec.indexer.milvus.store import MilvusStore

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

#: Rows searched again — those written that exist and those that lost a neighbour (~``k`` a row deleted) — as a
#: fraction of the graph's rows, up to which the graph is repaired; beyond, the next ``dups`` searching every row
#: costs less. At 100 000 rows on Milvus Lite a row searched costs ~21 ms (``EF`` deep), a whole graph ~0.6 ms a row.
REPAIR_UPTO = 0.03
#: ... and at least this many (a small collection is searched quickly either way).
REPAIR_AT_LEAST = 1000
#: Each row written is searched this many times the kept neighbours deep: the rows it joins must be among those it
#: finds (a near copy's original is among its first few).
DEPTH = 3
#: Indexing gives a collection of at least this many rows a graph when it has none: below, ``dups`` searches every
#: row in a few seconds.
BUILD_FROM = 5000
#: Search lists of the repair's searches (HNSW's ``ef``, IVF's ``nprobe``): copies must not be missed. At 100 000
#: rows shaped like ours on Milvus Lite, HNSW's default 64 missed 29 of 1 000 new near copies' originals, 256 missed
#: 2, 512 none (docs/BENCHMARKS.md, "The kept graph through writes").
EF = 512
NPROBE = 64
#: Query vectors per Milvus search request.
BATCH = 1000


@contextmanager
def kept_current(store: MilvusStore, build_from: int | None = None, progress: Progress | None = None) -> Iterator[None]:
    """Writes of rows inside the block keep the kept graph current: repaired for the rows written when it was valid
    before them (and no other writer wrote); with ``build_from``, a collection of at least that many rows gets a new
    one where it had none or more rows were written than a repair searches (``progress`` hears its "read" and
    "neighbours" stages, as ``dups``'s). A block that raises leaves the graph stale, as any write does."""
    if store.is_following:  # an outer block follows these writes
        yield
        return
    before = store.kept_meta() if store.exists() else None
    limit = max(REPAIR_AT_LEAST, int(REPAIR_UPTO * int(before.get("rows", 0)))) if before else 0
    with store.following(limit) as written:
        yield
    repairable = before is not None and written.alone and written.ids is not None
    if repairable and (not written.ids or _repair(store, written)):  # nothing written: still valid
        return
    if build_from is None or (before is not None and written.ids is not None):
        return  # a graph that another writer made stale is searched by the next dups, not by every writer after it
    if store.exists() and store.kept_meta() is None and store.count() >= build_from:
        log.info("searching every row's neighbours for the next dups")
        token = store.writes_token()
        searched(store, read_rows(store, progress=progress), kept.KEEP_K, token, progress)


def keeps_graph_current(build: bool = False) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """A method of an object with a ``store`` that writes rows keeps the kept graph current (:func:`kept_current`;
    ``build``: from :data:`BUILD_FROM` rows, as indexing does)."""

    def wrap(method: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(method)
        def run(*args: P.args, **kwargs: P.kwargs) -> T:
            with kept_current(args[0].store, BUILD_FROM if build else None):  # type: ignore[attr-defined]
                return method(*args, **kwargs)

        return run

    return wrap


def _repair(store: MilvusStore, written: Written) -> bool:
    """Repair the graph kept at ``written.start`` for the rows written and keep it at ``written.token``."""
    found = kept.load_at(store, written.start)
    if found is None:
        return False
    graph, k = found
    assert written.ids is not None
    index = store.read_config()[2]
    if index.metric == "L2":  # scores are inner products; Milvus gives squared distances here: searched anew
        return False
    deeper = {"ef": EF} if index.kind.startswith("HNSW") else {"nprobe": NPROBE} if index.kind.startswith("IVF") else {}
    index = replace(index, search={**(index.search or {}), **deeper})

    def fetch(ids: list[int]) -> Rows:
        pages = (
            list(store.get(ids[s : s + BATCH], fields=("path", "sha256", "vector")).values())
            for s in range(0, len(ids), BATCH)
        )
        return gather(pages)

    def search(vectors: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(vectors), depth), -np.inf, dtype=np.float32)
        ids = np.full((len(vectors), depth), -1, dtype=np.int64)
        for s in range(0, len(vectors), BATCH):
            batch = vectors[s : s + BATCH].astype(np.float32).tolist()
            for i, hits in enumerate(store.search(batch, depth, index, fields=()), start=s):
                scores[i, : len(hits)] = [h["distance"] for h in hits]
                ids[i, : len(hits)] = [h["id"] for h in hits]
        return scores, ids

    graph = kept.repaired(graph, k, written.ids, fetch, search, DEPTH * k, budget=written.limit)
    return graph is not None and kept.keep(store, graph, k, written.token)


__all__ = ["BUILD_FROM", "REPAIR_UPTO", "keeps_graph_current", "kept_current"]
