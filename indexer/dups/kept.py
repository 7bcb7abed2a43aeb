"""The neighbour graph of a whole collection, kept with the index between ``dups`` runs: each row's id, path and
sha256 and its ``k`` nearest others (positions and raw inner products), so that a later ``dups`` — the CLI's, the
page's first request — reads a few MB instead of every vector (at 100 000 rows, ~42 s of reading on Milvus Lite and
~20 s of search), until a row is written (:class:`~poolvec.indexer.milvus.side.KeptGraph`) — poolvec's own writes
repair it (:func:`repaired`, :mod:`.current`).

Scores are kept raw: the normalisation, the threshold, the judge and the user's decisions apply when it is read.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from poolvec.indexer.dups.graph import Rows
from poolvec.indexer.errors import BackendError
from poolvec.indexer.milvus.store import MilvusStore

log = logging.getLogger(__name__)

#: Neighbours kept a row: the ``dups`` default; a request for fewer reads the first columns, for more searches anew.
KEEP_K = 10
#: Neighbours kept beyond those promised (the payload's extra columns): a row that loses a few to deletes still has
#: ``k`` without being searched again (a row deleted is the neighbour of ~``k`` others).
SLACK = 6
#: Layout of the kept payload; another version is read as no graph.
VERSION = 2


@dataclass
class Graph:
    """Every row's nearest others: ``ids``, ``paths`` and ``sha256`` in one order, and ``scores``/``found`` (N × k,
    best first) the inner products and positions of its neighbours (−inf / −1 where it has fewer)."""

    ids: np.ndarray
    paths: list[str]
    sha256: list[str]
    scores: np.ndarray
    found: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def first(self, k: int) -> Graph:
        """The same graph with each row's ``k`` nearest only (the first columns: neighbours are sorted)."""
        return Graph(self.ids, self.paths, self.sha256, self.scores[:, :k], self.found[:, :k])


def encode(graph: Graph) -> bytes:
    """The graph as bytes (a compressed ``.npz``; strings as UTF-8 joined by NUL, which no path holds)."""
    out = io.BytesIO()
    np.savez_compressed(
        out,
        version=np.int64(VERSION),
        ids=np.asarray(graph.ids, dtype=np.int64),
        paths=_strings(graph.paths),
        sha256=_strings(graph.sha256),
        scores=np.asarray(graph.scores, dtype=np.float32),
        found=np.asarray(graph.found, dtype=np.int32),
    )
    return out.getvalue()


def decode(data: bytes) -> Graph | None:
    """Inverse of :func:`encode`; None for a payload of another layout or inconsistent lengths."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        if int(z["version"]) != VERSION:
            return None
        ids = z["ids"]
        n = len(ids)
        graph = Graph(ids, _split(z["paths"], n), _split(z["sha256"], n), z["scores"], z["found"].astype(np.int64))
    consistent = len(graph.paths) == len(graph.sha256) == graph.scores.shape[0] == n
    return graph if consistent and graph.scores.shape == graph.found.shape else None


def load(store: MilvusStore, k: int) -> Graph | None:
    """The kept graph of ``store`` with ``k`` neighbours a row, or None when none is kept, a row was written since,
    or it holds fewer than ``k``."""
    kept = store.kept_graph()
    if kept is None or int(kept[0].get("k", 0)) < k:
        return None
    graph = decode(kept[1])
    return None if graph is None else graph.first(k)


def load_at(store: MilvusStore, token: str) -> tuple[Graph, int] | None:
    """The graph kept for the rows as they were at writes token ``token`` and its width (neighbours a row, as
    searched: a graph of a few rows holds fewer columns), or None."""
    kept = store.kept_graph(token)
    graph = None if kept is None else decode(kept[1])
    return None if graph is None else (graph, int(kept[0].get("k", KEEP_K)))


#: A search of rows through Milvus: (vectors, depth) → (scores, ids), each rows × depth, best first; −inf / −1 where
#: fewer were found.
Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
#: Rows by id as they are now (those that still exist, in any order).
Fetch = Callable[[list[int]], Rows]


def repaired(
    graph: Graph, k: int, written: Collection[int], fetch: Fetch, search: Search, depth: int, budget: int | None = None
) -> Graph | None:
    """``graph`` (``k`` neighbours a row promised, ``k`` + :data:`SLACK` held) brought up to date after rows
    ``written`` (upserted or deleted): their old entries go, rows left with fewer than ``k`` and the rows written that
    exist now are searched ``depth`` deep, and each of those new rows enters the lists of the rows it found where it
    beats their last. None when more than ``budget`` rows would be searched, or the search found a row the graph
    does not hold (written by someone else)."""
    width = k + SLACK
    written_ids = np.fromiter(written, dtype=np.int64, count=len(written))
    stay = ~np.isin(graph.ids, written_ids)
    at = np.cumsum(stay) - 1
    old = _widened(graph.found, width, -1)[stay]
    scores = _widened(graph.scores, width, -np.inf)[stay]
    valid = old >= 0
    found = np.where(valid & stay[np.maximum(old, 0)], at[np.maximum(old, 0)], -1)
    lost = np.flatnonzero((valid & (found < 0)).any(axis=1) & ((found >= 0).sum(axis=1) < k))
    scores, found = _first_valid(np.where(found >= 0, scores, -np.inf), found, width)

    fresh = fetch(sorted(set(written_ids.tolist())))
    if budget is not None and len(lost) + len(fresh) > budget:
        return None
    ids = np.concatenate([graph.ids[stay], fresh.ids]).astype(np.int64)
    keep = stay.tolist()
    paths = [p for p, kept_row in zip(graph.paths, keep, strict=True) if kept_row] + list(fresh.paths)
    sha256 = [h for h, kept_row in zip(graph.sha256, keep, strict=True) if kept_row] + list(fresh.sha256)
    scores = np.vstack([scores, np.full((len(fresh), width), -np.inf, dtype=np.float32)])
    found = np.vstack([found, np.full((len(fresh), width), -1, dtype=np.int64)])
    new = np.arange(len(fresh)) + int(stay.sum())

    again = fetch(ids[lost].tolist())
    by_id = np.argsort(ids)
    queries = np.concatenate([_positions(ids, by_id, again.ids), new]).astype(np.int64)
    if not len(queries):
        return Graph(ids, paths, sha256, scores, found)
    vectors = np.concatenate([np.asarray(v, np.float32) for v in (again.vectors, fresh.vectors) if len(v)])
    hit_scores, hit_ids = search(vectors, depth + 1)
    hits = _positions(ids, by_id, hit_ids)
    if ((hit_ids >= 0) & (hits < 0)).any():
        return None
    hits[hits == queries[:, None]] = -1  # a row is not its own neighbour
    hit_scores = np.where(hits >= 0, hit_scores, -np.inf).astype(np.float32)
    scores[queries], found[queries] = _first_valid(hit_scores, hits, width)

    # each new row joins the lists of the rows it found, where it beats their last (rows searched have theirs)
    from_new = slice(len(queries) - len(new), None)
    target, source = hits[from_new].ravel(), np.repeat(new, hits.shape[1])
    score = hit_scores[from_new].ravel()
    join = (target >= 0) & ~np.isin(target, queries)
    join &= score > scores[np.maximum(target, 0), width - 1]
    target, source, score = target[join], source[join], score[join]
    order = np.argsort(target, kind="stable")
    target, source, score = target[order], source[order], score[order]
    bounds = np.flatnonzero(np.diff(target, prepend=-1, append=len(found) + 1))
    for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        row = int(target[s])
        merged_s = np.concatenate([scores[row], score[s:e]])
        merged_f = np.concatenate([found[row], source[s:e]])
        best = np.argsort(-merged_s, kind="stable")[:width]
        scores[row], found[row] = merged_s[best], np.where(np.isfinite(merged_s[best]), merged_f[best], -1)
    return Graph(ids, paths, sha256, scores, found)


def _widened(values: np.ndarray, k: int, fill: float) -> np.ndarray:
    """``values`` with ``k`` columns (a graph of few rows was searched narrower), padded with ``fill``."""
    if values.shape[1] >= k:
        return values[:, :k]
    pad = np.full((len(values), k - values.shape[1]), fill, dtype=values.dtype)
    return np.hstack([values, pad])


def _first_valid(scores: np.ndarray, found: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's first ``k`` valid entries (best first, as they came), padded with −inf / −1."""
    order = np.argsort(found < 0, axis=1, kind="stable")
    scores = np.take_along_axis(scores, order, axis=1)
    found = np.take_along_axis(found, order, axis=1)
    return _widened(scores, k, -np.inf).astype(np.float32), _widened(found, k, -1).astype(np.int64)


def _positions(ids: np.ndarray, by_id: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions in ``ids`` (sorted by ``by_id``) of ``wanted`` (−1 where absent)."""
    wanted = np.asarray(wanted, dtype=np.int64)
    if not len(ids):
        return np.full(wanted.shape, -1, dtype=np.int64)
    at = np.clip(np.searchsorted(ids[by_id], wanted), 0, len(ids) - 1)
    return np.where(ids[by_id][at] == wanted, by_id[at], -1).astype(np.int64)


def keep(store: MilvusStore, graph: Graph, k: int, token: str) -> bool:
    """Keep ``graph`` (searched ``k`` deep) for the rows as they were at writes token ``token``; False when a row was
    written meanwhile, or the backend refused (a user who may only read: logged, ``dups`` goes on)."""
    try:
        return store.keep_graph(encode(graph), {"k": k, "rows": len(graph), "version": VERSION}, token)
    except BackendError as e:
        log.warning("the neighbour graph was not kept for the next dups: %s", e)
        return False


def _strings(values: list[str]) -> np.ndarray:
    return np.frombuffer(b"\0".join(v.encode("utf-8", "surrogatepass") for v in values), dtype=np.uint8)


def _split(data: np.ndarray, n: int) -> list[str]:
    if n == 0:
        return []
    return [v.decode("utf-8", "surrogatepass") for v in data.tobytes().split(b"\0")]


__all__ = ["KEEP_K", "SLACK", "Fetch", "Graph", "Search", "decode", "encode", "keep", "load", "load_at", "repaired"]
