"""Database-side augmentation (DBA, Arandjelović & Zisserman 2012; α-weighted as in Radenović et al. 2018).

Each stored vector is replaced by the normalised, similarity-weighted sum of itself and its top-n
neighbours: v' = normalise(Σ_{j ∈ NN_n(v) ∪ {v}} max(s_j, 0)^α · v_j). Applied once to a whole collection
(two passes: all new vectors are computed from the original ones, spilled to a temporary file, then written),
and to later additions against the augmented collection, so the index stays consistent. Queries are not
augmented (use query expansion for that).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable

import numpy as np

from .errors import IndexerError
from .store import MilvusStore, VectorIndex

PROP_DBA = "poolvec.dba"
ROW_FIELDS = ("path", "root", "dirs", "size", "mtime_ns", "width", "height", "sha256")


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
    """Augment every vector of the collection once; returns the number of rows rewritten."""
    if n < 1 or alpha < 0:
        raise IndexerError(f"DBA needs n ≥ 1 and alpha ≥ 0, got n={n}, alpha={alpha}")
    if settings(store) is not None:
        raise IndexerError("DBA was already applied to this collection; rebuild it to change the settings")
    total = store.count()
    with tempfile.TemporaryDirectory(prefix="poolvec-dba-") as tmp:
        ids: list[int] = []
        spill = None
        for rows in store.iterate(fields=("vector",), batch_size=batch_size):
            vecs = np.asarray([r["vector"] for r in rows], np.float32)
            if spill is None:
                spill = np.lib.format.open_memmap(f"{tmp}/dba.npy", "w+", np.float32, (max(total, 1), vecs.shape[1]))
            new = augment(store, index, vecs, n + 1, alpha, include_self=True)  # self is the top hit
            spill[len(ids) : len(ids) + len(rows)] = new
            ids.extend(int(r["id"]) for r in rows)
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            current = store.get(chunk, fields=ROW_FIELDS)
            rows = [{**current[i], "id": i, "vector": spill[start + k].tolist()} for k, i in enumerate(chunk)]
            store.upsert(rows)
            if progress is not None:
                progress(start + len(chunk), len(ids), "")
    store.flush()
    store.set_property(PROP_DBA, json.dumps({"n": n, "alpha": alpha}))
    return len(ids)
