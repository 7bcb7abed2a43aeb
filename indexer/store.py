"""The Milvus side: one collection of image rows, through pymilvus's ``MilvusClient``.

A local path means Milvus Lite (embedded, the default ``./poolvec.db``); ``http(s)://host:port`` a Milvus
server or cluster. The schema, the vector index and the stored embedding config live here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from pymilvus import DataType, MilvusClient, MilvusException

from . import names
from .errors import BackendError, IndexerError
from .lite import held_message, is_server_uri, lite_path, lock_busy

#: Scalar fields stored per image (besides ``id`` and ``vector``).
META_FIELDS = ("path", "root", "size", "mtime_ns", "width", "height", "sha256")
MAX_PATH = 4096
PROP_CONFIG = "poolvec.config"
PROP_FINGERPRINT = "poolvec.fingerprint"
#: Collection properties live in the server's etcd, which refuses requests over ~1 MB (measured: 0.5 MB stored,
#: 1.2 MB refused on Milvus 2.3.5): strings longer than this go to the side collection ``<name>_poolvec_blobs``.
BLOB_INLINE = 16_384
#: Characters per blob row (Milvus's VARCHAR limit is 65 535).
BLOB_CHUNK = 65_000
BLOB_SUFFIX = "_poolvec_blobs"
#: The side collection where a rewrite stages new vectors before any row changes (``dba``).
STAGE_SUFFIX = "_poolvec_stage"
#: Searches read at Session consistency (this process's own writes are visible): the collection's Strong level
#: makes a Milvus 2.3 server wait for its next time tick, ~200 ms per search (1.6 ms at Session).
SEARCH_CONSISTENCY = {"consistency_level": "Session"}
#: pymilvus pings idle channels every 10 s; Milvus Lite's embedded gRPC server answers pings more often than every
#: 5 minutes with GOAWAY "too_many_pings" (logged on the terminal), e.g. while an index tunes itself for a minute
#: without a call. A local channel needs no keepalive.
LITE_GRPC = {"grpc.keepalive_time_ms": 600_000, "grpc.keepalive_permit_without_calls": 0}


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


class MilvusStore:
    """One collection in Milvus Lite or a Milvus server, holding image vectors and their file metadata."""

    def __init__(self, uri: str, collection: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.uri = uri
        self.collection = collection
        self.is_lite = not is_server_uri(uri)
        self.timeout = timeout
        self.token = token  # also read by the Ray engine's workers, which open their own connection
        self._client: MilvusClient | None = None
        self.path = lite_path(uri) if self.is_lite else None
        if not self.is_lite or self.path.exists():  # type: ignore[union-attr]
            self._client = self._connect()  # a server is reached at once; a new Lite database waits for a write

    # -- connection ----------------------------------------------------------------------------------------
    @property
    def client(self) -> MilvusClient:
        """The client; opening it creates a new Milvus Lite database folder (only done when something is written)."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> MilvusClient:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with _quiet("milvus_lite.server_manager"):
                    return MilvusClient(str(self.path), grpc_options=LITE_GRPC)
            except MilvusException as e:
                if lock_busy(self.path):
                    raise BackendError(held_message(self.path)) from None
                raise BackendError(f"cannot open Milvus Lite database {self.path}: {_reason(e)}") from None
        try:
            return MilvusClient(uri=self.uri, token=self.token or "", timeout=self.timeout)
        except MilvusException as e:
            raise BackendError(f"cannot reach Milvus at {self.uri}: {_reason(e)}") from None

    @property
    def missing(self) -> bool:
        """True for a Milvus Lite database that does not exist yet (nothing has been written to it)."""
        return self._client is None and self.path is not None and not self.path.exists()

    def close(self) -> None:
        """Close the client (Milvus Lite keeps its lock until the process exits)."""
        if self._client is not None:
            with suppress(MilvusException):
                self._client.close()

    # -- collection ------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the collection exists (a Lite database that was never written holds none, and is not created)."""
        if self.missing:
            return False
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
            PROP_CONFIG: self.pack(config),
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
        return self.unpack(props[PROP_CONFIG]), props.get(PROP_FINGERPRINT, ""), index

    # -- large values ------------------------------------------------------------------------------------------
    @property
    def blob_collection(self) -> str:
        """The side collection holding long strings of this collection's stored config (fitted matrices)."""
        return self.collection + BLOB_SUFFIX

    def pack(self, value: Any) -> str:
        """JSON of ``value`` with every string longer than :data:`BLOB_INLINE` stored as blob rows and replaced by
        ``{"$blob": sha256, "length": n}`` (content-addressed: writing the same value twice stores it once)."""

        def walk(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            if isinstance(v, str) and len(v) > BLOB_INLINE:
                return {"$blob": self._put_blob(v), "length": len(v)}
            return v

        packed = walk(value)
        if packed != value:
            self._call(self.client.flush, self.blob_collection)
        return json.dumps(packed, sort_keys=True)

    def unpack(self, text: str) -> Any:
        """Inverse of :meth:`pack`: the stored JSON with its blobs read back (each checked against its hash)."""

        def walk(v: Any) -> Any:
            if isinstance(v, dict):
                if set(v) == {"$blob", "length"}:
                    return self._get_blob(v["$blob"], int(v["length"]))
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            return v

        return walk(json.loads(text))

    def blob_digests(self, text: str) -> set[str]:
        """The blobs a packed JSON string refers to."""
        found: set[str] = set()

        def walk(v: Any) -> None:
            if isinstance(v, dict):
                if "$blob" in v:
                    found.add(str(v["$blob"]))
                for x in v.values():
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)

        walk(json.loads(text))
        return found

    def _ensure_blobs(self) -> None:
        name = self.blob_collection
        if self._call(self.client.has_collection, name):
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("digest", DataType.VARCHAR, max_length=64)
        schema.add_field("seq", DataType.INT64)
        schema.add_field("data", DataType.VARCHAR, max_length=BLOB_CHUNK)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field in every collection
        params = self.client.prepare_index_params()
        params.add_index(field_name="v", index_type="FLAT", metric_type="IP")
        with _quiet("grpc._server"):
            self._call(
                self.client.create_collection, name, schema=schema, index_params=params, consistency_level="Strong"
            )

    def _put_blob(self, text: str) -> str:
        digest = hashlib.sha256(text.encode()).hexdigest()
        self._ensure_blobs()
        rows = [
            {
                "id": int(digest[:12], 16) * 4096 + seq,
                "digest": digest,
                "seq": seq,
                "data": text[start : start + BLOB_CHUNK],
                "v": [0.0, 0.0],
            }
            for seq, start in enumerate(range(0, len(text), BLOB_CHUNK))
        ]
        for start in range(0, len(rows), 16):
            self._call(self.client.upsert, self.blob_collection, rows[start : start + 16])
        return digest

    def _get_blob(self, digest: str, length: int) -> str:
        where = f"the stored config of {self.collection!r} at {self.uri}"
        if not self._call(self.client.has_collection, self.blob_collection):
            raise BackendError(f"{where} refers to {self.blob_collection!r}, which is missing: the index is damaged")
        self._call(self.client.load_collection, self.blob_collection)
        rows = self._call(
            self.client.query,
            self.blob_collection,
            filter=f'digest == "{digest}"',
            output_fields=["seq", "data"],
            consistency_level="Strong",
        )
        text = "".join(r["data"] for r in sorted(rows, key=lambda r: int(r["seq"])))
        if len(text) != length or hashlib.sha256(text.encode()).hexdigest() != digest:
            raise BackendError(f"{where} is damaged: part {digest[:12]}… is missing or altered")
        return text

    def drop_blobs(self, keep: set[str]) -> None:
        """Delete the blob rows whose digest is not in ``keep`` (after the config that used them was replaced)."""
        if not self._call(self.client.has_collection, self.blob_collection):
            return
        rows = self._call(
            self.client.query,
            self.blob_collection,
            filter="seq >= 0",
            output_fields=["digest"],
            consistency_level="Strong",
        )
        gone = [int(r["id"]) for r in rows if r["digest"] not in keep]
        if gone:
            self._call(self.client.delete, self.blob_collection, ids=gone)

    def load(self) -> None:
        """Make sure the collection is loaded for search (servers keep it unloaded after a restart)."""
        self._call(self.client.load_collection, self.collection)

    def flush(self) -> None:
        """Seal buffered rows into segments: Milvus Lite only indexes flushed data (it brute-forces the rest)."""
        with _quiet("grpc._server"):  # Milvus Lite lacks one RPC that flush polls; pymilvus copes, grpc logs it
            self._call(self.client.flush, self.collection)

    def drop(self) -> None:
        """Drop the collection and everything in it (its blobs and staged vectors too)."""
        if self.exists():
            self._call(self.client.drop_collection, self.collection)
        for side in (self.blob_collection, self.stage_collection):
            if self._call(self.client.has_collection, side):
                self._call(self.client.drop_collection, side)

    # -- staged vectors --------------------------------------------------------------------------------------
    @property
    def stage_collection(self) -> str:
        """Where a rewrite keeps the new vectors of every row until it writes them (:mod:`indexer.dba`)."""
        return self.collection + STAGE_SUFFIX

    def create_stage(self, dim: int) -> None:
        """An empty stage for ``dim``-d vectors (an old one is dropped)."""
        self.drop_stage()
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        params = self.client.prepare_index_params()
        params.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        with _quiet("grpc._server"):
            self._call(
                self.client.create_collection,
                self.stage_collection,
                schema=schema,
                index_params=params,
                consistency_level="Strong",
            )

    def stage_put(self, vectors: dict[int, Any]) -> None:
        """Stage new vectors by row id (writing one twice keeps the last)."""
        rows = [{"id": int(i), "vector": [float(x) for x in v]} for i, v in vectors.items()]
        for start in range(0, len(rows), 256):
            self._call(self.client.upsert, self.stage_collection, rows[start : start + 256])

    def stage_flush(self) -> None:
        """Make the staged vectors durable before anything depends on them."""
        with _quiet("grpc._server"):
            self._call(self.client.flush, self.stage_collection)

    def stage_get(self, ids: list[int]) -> dict[int, list[float]]:
        """Staged vectors by row id."""
        if not ids:
            return {}
        rows = self._call(self.client.get, self.stage_collection, ids=ids, output_fields=["vector"])
        return {int(r["id"]): r["vector"] for r in rows}

    def stage_ids(self) -> list[int]:
        """Every staged row id, sorted (loading the stage: after a restart it is released)."""
        self._call(self.client.load_collection, self.stage_collection)
        ids: list[int] = []
        with _quiet("pymilvus.client.iterator.query_iterator"), _quiet("grpc._server"):
            it = self._call(
                self.client.query_iterator, self.stage_collection, batch_size=4096, filter="", output_fields=["id"]
            )
        try:
            while rows := self._call(it.next):
                ids.extend(int(r["id"]) for r in rows)
        finally:
            it.close()
        return sorted(ids)

    def has_stage(self) -> bool:
        """Whether staged vectors exist."""
        return bool(self._call(self.client.has_collection, self.stage_collection))

    def drop_stage(self) -> None:
        """Forget staged vectors."""
        if self.has_stage():
            self._call(self.client.drop_collection, self.stage_collection)

    def remove_if_empty(self) -> bool:
        """Delete a Milvus Lite database folder that holds no collection any more (after the last drop); the embedded
        server is stopped first. Returns whether the folder was removed. Servers are left alone."""
        if self.path is None or self._client is None or self._call(self.client.list_collections):
            return False
        self.close()
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(self.path))
        self._client = None
        shutil.rmtree(self.path, ignore_errors=True)
        return not self.path.exists()

    # -- rows --------------------------------------------------------------------------------------------------
    def upsert(self, rows: list[dict[str, Any]]) -> None:
        """Insert or overwrite rows by primary key (file names as Python holds them; stored in :mod:`.names`' form)."""
        if rows:
            self._call(self.client.upsert, self.collection, [_to_stored(r) for r in rows])

    def get(self, ids: list[int], fields: tuple[str, ...] = META_FIELDS) -> dict[int, dict[str, Any]]:
        """Rows by primary key (missing ids are absent from the result)."""
        if not ids:
            return {}
        rows = self._call(self.client.get, self.collection, ids=ids, output_fields=list(fields))
        return {int(r["id"]): _from_stored(r) for r in rows}

    def delete(self, ids: list[int]) -> None:
        """Delete rows by primary key."""
        if ids:
            self._call(self.client.delete, self.collection, ids=ids)

    def query(self, filter: str, fields: tuple[str, ...] = META_FIELDS, limit: int | None = None) -> list[dict]:
        """Rows matching a boolean expression (``limit`` caps the result)."""
        kwargs = {"limit": limit} if limit is not None else {}
        rows = self._call(self.client.query, self.collection, filter=filter, output_fields=["id", *fields], **kwargs)
        return [_from_stored(r) for r in rows]

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
                yield [_from_stored(r) for r in rows]
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
        return [[{**h, "entity": _from_stored(h["entity"])} for h in hits] for hits in res]

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MilvusException as e:
            raise BackendError(f"Milvus ({self.uri}) failed: {_reason(e)}") from None


def _to_stored(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its file names in their stored form (every name stays as it is but for control characters and
    bytes that are not UTF-8: :func:`indexer.names.stored`)."""
    if "path" not in row:
        return row
    out = {**row, "path": names.stored(row["path"])}
    if "root" in out:
        out["root"] = names.stored(out["root"])
    if isinstance(out.get("dirs"), dict):
        out["dirs"] = {"d": [names.stored(d) for d in out["dirs"]["d"]]}
    return out


def _from_stored(row: Any) -> dict[str, Any]:
    """A row read back, with ``path`` and ``root`` as Python's ``os`` functions take them."""
    out = dict(row)
    for key in ("path", "root"):
        if isinstance(out.get(key), str):
            out[key] = names.real(out[key])
    return out


def _reason(e: MilvusException) -> str:
    msg = getattr(e, "message", "") or str(e)
    return " ".join(str(msg).split()) or type(e).__name__


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
