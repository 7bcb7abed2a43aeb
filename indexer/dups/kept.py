"""The neighbour graph of a whole collection, kept with the index between ``dups`` runs: each row's id, path and
sha256 and its ``k`` nearest others (positions and raw inner products), so that a later ``dups`` — the CLI's, the
page's first request — reads a few MB instead of every vector (at 100 000 rows, ~42 s of reading on Milvus Lite and
~20 s of search), until a row is written (:class:`~poolvec.indexer.milvus.side.KeptGraph`).

Scores are kept raw: the normalisation, the threshold, the judge and the user's decisions apply when it is read.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np

from poolvec.indexer.errors import BackendError
from poolvec.indexer.milvus.store import MilvusStore

log = logging.getLogger(__name__)

#: Neighbours kept a row: the ``dups`` default; a request for fewer reads the first columns, for more searches anew.
KEEP_K = 10
#: Layout of the kept payload; another version is read as no graph.
VERSION = 1


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


__all__ = ["KEEP_K", "Graph", "decode", "encode", "keep", "load"]
