"""The Milvus side: one collection of image rows, through pymilvus's ``MilvusClient``.

A local path means Milvus Lite (embedded, the default ``./poolvec.db``); ``http(s)://host:port`` a Milvus
server or cluster. The schema, the vector index and the stored embedding config live here and nowhere else.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymilvus import DataType, MilvusClient, MilvusException

from .errors import BackendError, IndexerError

#: Scalar fields stored per image (besides ``id`` and ``vector``).
META_FIELDS = ("path", "root", "size", "mtime_ns", "width", "height", "sha256")
MAX_PATH = 4096
PROP_CONFIG = "poolvec.config"
PROP_FINGERPRINT = "poolvec.fingerprint"
#: Searches read at Session consistency (this process's own writes are visible): the collection's Strong level
#: makes a Milvus 2.3 server wait for its next time tick, ~200 ms per search (1.6 ms at Session).
SEARCH_CONSISTENCY = {"consistency_level": "Session"}


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


def is_server_uri(uri: str) -> bool:
    """True for a Milvus server address, False for a Milvus Lite database path."""
    return uri.startswith(("http://", "https://", "tcp://", "grpc://"))


class MilvusStore:
    """One collection in Milvus Lite or a Milvus server, holding image vectors and their file metadata."""

    def __init__(self, uri: str, collection: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.uri = uri
        self.collection = collection
        self.is_lite = not is_server_uri(uri)
        self.timeout = timeout
        self.client = self._connect(token)

    # -- connection ----------------------------------------------------------------------------------------
    def _connect(self, token: str | None) -> MilvusClient:
        if self.is_lite:
            path = Path(self.uri).expanduser()
            if path.exists() and not path.is_dir():
                raise BackendError(f"{path} is not a Milvus Lite database (a file, not a directory)")
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with _quiet("milvus_lite.server_manager"):
                    return MilvusClient(str(path))
            except MilvusException as e:
                if _lock_busy(path):
                    raise BackendError(
                        f"another process holds the index {path} (Milvus Lite allows one process per database); "
                        "wait for it to finish, or serve it with `milvus-lite server` and use its http:// address"
                    ) from None
                raise BackendError(f"cannot open Milvus Lite database {path}: {_reason(e)}") from None
        try:
            return MilvusClient(uri=self.uri, token=token or "", timeout=self.timeout)
        except MilvusException as e:
            raise BackendError(f"cannot reach Milvus at {self.uri}: {_reason(e)}") from None

    def close(self) -> None:
        """Close the client (Milvus Lite keeps its lock until the process exits)."""
        with suppress(MilvusException):
            self.client.close()

    # -- collection ------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the collection exists."""
        return bool(self._call(self.client.has_collection, self.collection))

    def create(self, dim: int, config: dict[str, Any], fingerprint: str, index: VectorIndex) -> None:
        """Create the collection with its schema, vector index and stored embedding config."""
        index.check(lite=self.is_lite)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH)
        schema.add_field("root", DataType.VARCHAR, max_length=MAX_PATH)
        # {"d": [every ancestor folder]}: `under=` filters need no LIKE escaping
        schema.add_field("dirs", DataType.JSON)
        for name in ("size", "mtime_ns", "width", "height"):
            schema.add_field(name, DataType.INT64)
        schema.add_field("sha256", DataType.VARCHAR, max_length=64)
        params = self.client.prepare_index_params()
        params.add_index(field_name="vector", index_type=index.kind, metric_type=index.metric, params=index.params)
        properties = {
            PROP_CONFIG: json.dumps(config, sort_keys=True),
            PROP_FINGERPRINT: fingerprint,
            "poolvec.index": json.dumps(index.spec()),
        }
        try:
            with _quiet("grpc._server"):  # Milvus Lite lacks an RPC pymilvus polls while loading; grpc logs it
                self._call(
                    self.client.create_collection,
                    self.collection,
                    schema=schema,
                    index_params=params,
                    properties=properties,
                    consistency_level="Strong",
                )
        except BackendError:
            # pymilvus creates the collection, then its index: a refused index must not leave a half-made one.
            with suppress(BackendError):
                self.drop()
            raise

    def properties(self) -> dict[str, str]:
        """The collection's properties (where the embedding config lives)."""
        desc = self._call(self.client.describe_collection, self.collection)
        props = desc.get("properties") or {}
        return {str(k): str(v) for k, v in props.items()}

    def set_property(self, key: str, value: str) -> None:
        """Set one collection property (poolvec keeps its settings there)."""
        self._call(self.client.alter_collection_properties, self.collection, {key: value})

    def read_config(self) -> tuple[dict[str, Any], str, VectorIndex]:
        """The stored embedding config, its fingerprint and the vector index spec."""
        props = self.properties()
        if PROP_CONFIG not in props:
            raise IndexerError(
                f"collection {self.collection!r} at {self.uri} was not made by poolvec (no stored config); "
                "choose another --collection"
            )
        idx = json.loads(props.get("poolvec.index", "{}"))
        index = VectorIndex(**idx) if idx else VectorIndex()
        return json.loads(props[PROP_CONFIG]), props.get(PROP_FINGERPRINT, ""), index

    def load(self) -> None:
        """Make sure the collection is loaded for search (servers keep it unloaded after a restart)."""
        self._call(self.client.load_collection, self.collection)

    def flush(self) -> None:
        """Seal buffered rows into segments: Milvus Lite only indexes flushed data (it brute-forces the rest)."""
        with _quiet("grpc._server"):  # Milvus Lite lacks one RPC that flush polls; pymilvus copes, grpc logs it
            self._call(self.client.flush, self.collection)

    def drop(self) -> None:
        """Drop the collection and everything in it."""
        if self.exists():
            self._call(self.client.drop_collection, self.collection)

    # -- rows --------------------------------------------------------------------------------------------------
    def upsert(self, rows: list[dict[str, Any]]) -> None:
        """Insert or overwrite rows by primary key."""
        if rows:
            self._call(self.client.upsert, self.collection, rows)

    def get(self, ids: list[int], fields: tuple[str, ...] = META_FIELDS) -> dict[int, dict[str, Any]]:
        """Rows by primary key (missing ids are absent from the result)."""
        if not ids:
            return {}
        rows = self._call(self.client.get, self.collection, ids=ids, output_fields=list(fields))
        return {int(r["id"]): dict(r) for r in rows}

    def delete(self, ids: list[int]) -> None:
        """Delete rows by primary key."""
        if ids:
            self._call(self.client.delete, self.collection, ids=ids)

    def query(self, filter: str, fields: tuple[str, ...] = META_FIELDS, limit: int | None = None) -> list[dict]:
        """Rows matching a boolean expression (``limit`` caps the result)."""
        kwargs = {"limit": limit} if limit is not None else {}
        return list(
            self._call(self.client.query, self.collection, filter=filter, output_fields=["id", *fields], **kwargs)
        )

    def iterate(self, filter: str = "", fields: tuple[str, ...] = META_FIELDS, batch_size: int = 1000):
        """Yield lists of rows over the whole collection (or a filter), ``batch_size`` at a time: memory stays flat."""
        # Milvus Lite has no AllocTimestamp: pymilvus falls back to a client timestamp but logs it loudly.
        with _quiet("pymilvus.client.iterator.query_iterator"), _quiet("grpc._server"):
            it = self._call(
                self.client.query_iterator,
                self.collection,
                batch_size=batch_size,
                filter=filter,
                output_fields=["id", *fields],
            )
        try:
            while True:
                rows = self._call(it.next)
                if not rows:
                    return
                yield [dict(r) for r in rows]
        finally:
            it.close()

    def count(self) -> int:
        """Number of rows."""
        rows = self._call(self.client.query, self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def search(
        self, vectors: list[list[float]], k: int, index: VectorIndex, filter: str = ""
    ) -> list[list[dict[str, Any]]]:
        """Top-``k`` rows per query vector: dicts with ``id``, ``distance`` and the metadata fields."""
        res = self._call(
            self.client.search,
            self.collection,
            data=vectors,
            limit=k,
            filter=filter,
            output_fields=list(META_FIELDS),
            search_params=index.search_params(k),
            **SEARCH_CONSISTENCY,
        )
        return [list(hits) for hits in res]

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MilvusException as e:
            raise BackendError(f"Milvus ({self.uri}) failed: {_reason(e)}") from None


def _reason(e: MilvusException) -> str:
    msg = getattr(e, "message", "") or str(e)
    return " ".join(str(msg).split()) or type(e).__name__


def _lock_busy(path: Path) -> bool:
    """True if some open file description holds Milvus Lite's lock on the database directory."""
    lock = path / "LOCK"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@contextmanager
def _quiet(logger_name: str):
    """Silence a library logger that prints tracebacks for errors we report ourselves."""
    log = logging.getLogger(logger_name)
    old = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = old
