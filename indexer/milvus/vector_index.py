"""The Milvus vector index of a collection: its kind, build and search parameters, and what each backend builds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from poolvec.indexer.errors import IndexerError

#: Build parameters per index kind when none are given (measurements: docs/BENCHMARKS.md, "Index (Milvus)").
DEFAULT_BUILD: dict[str, dict[str, Any]] = {
    "HNSW": {"M": 16, "efConstruction": 200},
    "HNSW_SQ": {"M": 16, "efConstruction": 200, "sq_type": "SQ8"},
    "IVF_FLAT": {"nlist": 1024},
    "IVF_SQ8": {"nlist": 1024},
    "IVF_PQ": {"nlist": 1024, "m": 32, "nbits": 8},
}
#: Index kinds Milvus Lite 3.2 builds (IVF_PQ is refused there, DISKANN/GPU ones do not exist).
LITE_KINDS = frozenset({"FLAT", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8", "AUTOINDEX"})


@dataclass(frozen=True)
class VectorIndex:
    """The Milvus vector index. HNSW by default: exact enough (recall@10 ≈ 1 at these sizes), fast everywhere.

    ``params`` are build parameters (``None``: the kind's defaults); ``search`` overrides search-time ones
    (``ef`` for HNSW, ``nprobe`` for IVF).
    """

    kind: str = "HNSW"
    params: dict[str, Any] | None = None
    metric: str = "IP"
    search: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", self.kind.upper())
        object.__setattr__(self, "metric", self.metric.upper())
        if self.params is None:
            object.__setattr__(self, "params", dict(DEFAULT_BUILD.get(self.kind, {})))

    @classmethod
    def parse(cls, kind: str | None, params: str | None) -> VectorIndex | None:
        """The index asked for on the command line (``--index-type``, ``--index-params`` as JSON); None if neither."""
        if kind is None and params is None:
            return None
        try:
            parsed = json.loads(params) if params else None
        except json.JSONDecodeError as e:
            raise IndexerError(f"--index-params must be a JSON object: {e}") from None
        if parsed is not None and not isinstance(parsed, dict):
            raise IndexerError("--index-params must be a JSON object such as '{\"nlist\": 256}'")
        return cls(kind=kind or "HNSW", params=parsed)

    def search_params(self, k: int) -> dict[str, Any]:
        """Search-time parameters for ``k`` results (HNSW's ef must be ≥ k)."""
        if self.kind.startswith("HNSW"):
            params: dict[str, Any] = {"ef": max(64, 2 * k)}
        elif self.kind.startswith("IVF"):
            params = {"nprobe": 16}
        else:
            params = {}
        params.update(self.search or {})
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), k)
        return {"metric_type": self.metric, "params": params}

    def spec(self) -> dict[str, Any]:
        """The JSON-able form stored with the collection."""
        out: dict[str, Any] = {"kind": self.kind, "params": self.params, "metric": self.metric}
        if self.search:
            out["search"] = self.search
        return out

    def differs_from(self, stored: VectorIndex) -> bool:
        """Whether asking for this index on a collection built with ``stored`` asks for something else: another kind,
        or build parameters that are not the kind's defaults and differ from the stored ones."""
        if self.kind != stored.kind:
            return True
        return self.params != DEFAULT_BUILD.get(self.kind, {}) and self.params != stored.params

    def check(self, lite: bool) -> None:
        """Refuse, before anything is created, an index the backend cannot build or search sanely."""
        if lite and self.kind not in LITE_KINDS:
            raise IndexerError(
                f"Milvus Lite cannot build a {self.kind} index (it builds {', '.join(sorted(LITE_KINDS))}); "
                "choose one of those, or use a Milvus server (--uri http://host:19530)"
            )
        if lite and self.kind == "FLAT" and self.metric == "L2":
            raise IndexerError(
                "Milvus Lite's FLAT search with the L2 metric needs memory for queries × rows × dim floats; "
                "use metric IP (or COSINE): vectors are L2-normalised, so the ranking is the same"
            )


__all__ = ["DEFAULT_BUILD", "LITE_KINDS", "VectorIndex"]
