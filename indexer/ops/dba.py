"""Database-side augmentation (DBA, Arandjelović & Zisserman 2012; α-weighted as in Radenović et al. 2018).

Each stored vector is replaced by the normalised, similarity-weighted sum of itself and its top-n
neighbours: v' = normalise(Σ_{j ∈ NN_n(v) ∪ {v}} max(s_j, 0)^α · v_j). Applied once to a whole collection
(two phases: every new vector is computed from the original ones and staged in a side collection, then written —
resumable after kill -9, never applied twice),
and to later additions against the augmented collection, so the index stays consistent. Queries are not
augmented (use query expansion for that).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus.schema import STORED_FIELDS
from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.milvus.vector_index import VectorIndex
from poolvec.indexer.ops import pending

PROP_DBA = "poolvec.dba"


def augment(
    store: MilvusStore,
    index: VectorIndex,
    vectors: np.ndarray,
    n: int,
    alpha: float,
    include_self: bool,
    filter: str = "",
) -> np.ndarray:
    """normalise(v + Σ_{top-n neighbours j} max(s_j, 0)^α · v_j) for each row of ``vectors`` [B, D].

    The same operation serves DBA (database vectors) and α-query-expansion (queries). With ``include_self``
    the vectors are already stored, so their own top hit stands for ``v`` instead of adding it twice.
    """
    if len(vectors) == 0:
        return vectors
    results = store.search(vectors.tolist(), n, index, filter=filter)
    ids = sorted({int(h["id"]) for hits in results for h in hits})
    stored = store.get(ids, fields=("vector",))
    out = np.zeros_like(vectors, dtype=np.float64) if include_self else vectors.astype(np.float64).copy()
    for row, hits in zip(out, results, strict=True):
        for h in hits:
            row += max(float(h["distance"]), 0.0) ** alpha * np.asarray(stored[int(h["id"])]["vector"], np.float64)
    out /= np.linalg.norm(out, axis=1, keepdims=True).clip(min=1e-12)
    return out.astype(np.float32)


def settings(store: MilvusStore) -> dict | None:
    """The DBA applied to this collection (``{"n", "alpha"}``), or None."""
    raw = store.properties().get(PROP_DBA)
    return json.loads(raw) if raw else None


def transform(store: MilvusStore, index: VectorIndex) -> Callable[[np.ndarray], np.ndarray] | None:
    """How vectors added to this collection are augmented before they are stored (None: DBA was never applied)."""
    applied = settings(store)
    if applied is None:
        return None
    n, alpha = int(applied["n"]), float(applied["alpha"])
    return lambda v: augment(store, index, v, n, alpha, include_self=False)


def apply(
    store: MilvusStore,
    index: VectorIndex,
    n: int = 5,
    alpha: float = 3.0,
    batch_size: int = 256,
    progress: Callable[[int, int | None, str], None] | None = None,
) -> int:
    """Augment every vector of the collection once; returns the number of rows rewritten.

    Two phases, safe against kill -9 at any moment (:mod:`poolvec.indexer.ops.pending`): every new vector is computed
    from the
    untouched collection and staged in a side collection; only then are rows rewritten from the stage, in id order,
    the pending marker advancing after each batch. Interrupted while staging, a re-run stages again from scratch
    (nothing had changed); interrupted while writing, it goes on from the marker — a row written twice gets the
    same staged vector, so nothing is augmented twice. Additions and searches are refused until it is finished.
    """
    if n < 1 or alpha < 0:
        raise IndexerError(f"DBA needs n ≥ 1 and alpha ≥ 0, got n={n}, alpha={alpha}")
    state = pending.get(store)
    if state is not None and (state["op"] != "dba" or (state["n"], state["alpha"]) != (n, alpha)):
        raise pending.refuse(state, f"collection {store.collection!r}")
    if state is None:
        if settings(store) is not None:
            raise IndexerError("DBA was already applied to this collection; rebuild it to change the settings")
        state = pending.save(store, {"op": "dba", "n": n, "alpha": alpha, "phase": "stage", "after": -1})
    total = store.count()
    if state["phase"] == "stage":
        _stage(store, index, n, alpha, batch_size, total, progress)
        state = pending.save(store, {**state, "phase": "write", "after": -1})
    ids = store.stage_ids()
    todo = [i for i in ids if i > int(state["after"])]
    done = len(ids) - len(todo)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        staged = store.stage_get(chunk)
        current = store.get(chunk, fields=STORED_FIELDS)
        store.upsert([{**current[i], "id": i, "vector": staged[i]} for i in chunk if i in current and i in staged])
        state = pending.save(store, {**state, "after": chunk[-1]})
        done += len(chunk)
        if progress is not None:
            progress(len(ids) + done, 2 * len(ids), "")
    store.flush()
    store.set_property(PROP_DBA, json.dumps({"n": n, "alpha": alpha}))
    pending.clear(store)
    store.drop_stage()
    return len(ids)


def _stage(
    store: MilvusStore,
    index: VectorIndex,
    n: int,
    alpha: float,
    batch_size: int,
    total: int,
    progress: Callable[[int, int | None, str], None] | None,
) -> None:
    """Compute every row's augmented vector from the collection as it is, into the stage (none is written yet)."""
    dim = None
    seen = 0
    for rows in store.iterate(fields=("vector",), batch_size=batch_size):
        vecs = np.asarray([r["vector"] for r in rows], np.float32)
        if dim is None:
            dim = vecs.shape[1]
            store.create_stage(dim)
        new = augment(store, index, vecs, n + 1, alpha, include_self=True)  # self is the top hit
        store.stage_put({int(r["id"]): v for r, v in zip(rows, new, strict=True)})
        seen += len(rows)
        if progress is not None:
            progress(seen, 2 * total, "")  # staging is the first half of the work
    if dim is None:
        store.create_stage(1)
    store.stage_flush()
