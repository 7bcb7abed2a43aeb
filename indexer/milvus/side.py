"""Side collections of an index: large config values (blobs), vectors staged by a rewrite before it writes them, the
user's review decisions about duplicates, and the neighbour graph ``dups`` keeps between runs.

Collection properties live in the server's etcd, which refuses requests over ~1 MB (measured: 0.5 MB stored, 1.2 MB
refused on Milvus 2.3.5): strings longer than :data:`BLOB_INLINE` go to ``<name>_poolvec_blobs``, content-addressed.
DBA stages every new vector in ``<name>_poolvec_stage`` before any row changes, so that a re-run after kill -9
never applies it twice.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pymilvus import DataType

from poolvec.indexer.errors import BackendError
from poolvec.indexer.milvus.client import Client, quiet

#: Strings longer than this go to the blob collection.
BLOB_INLINE = 16_384
#: Characters per blob row (Milvus's VARCHAR limit is 65 535).
BLOB_CHUNK = 65_000
BLOB_SUFFIX = "_poolvec_blobs"
#: The side collection where a rewrite stages new vectors before any row changes (``dba``).
STAGE_SUFFIX = "_poolvec_stage"
#: The side collection of review decisions ("not duplicates", "keep"), by file content.
DECISIONS_SUFFIX = "_poolvec_decisions"
#: The side collection of the neighbour graph kept by ``dups`` (:mod:`poolvec.indexer.dups.kept`).
GRAPH_SUFFIX = "_poolvec_graph"
#: A token replaced before and after every write of rows: a kept graph is valid while the token it was read at is.
PROP_WRITES = "poolvec.writes"
#: Where the kept graph's chunks are and the writes token it was read at (JSON).
PROP_GRAPH = "poolvec.graph"
#: Chunk rows read per query (64 × 65 000 characters: ~4 MB a reply).
CHUNKS_PER_READ = 64


class Chunks(Client):
    """Long strings as rows of at most :data:`BLOB_CHUNK` characters in a side collection, addressed by sha256."""

    def _ensure_chunks(self, name: str) -> None:
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
        self._create_collection(name, schema=schema, index_params=params, consistency_level="Strong")

    def _put_chunks(self, name: str, text: str, seq_bits: int = 12) -> str:
        """Store ``text`` in ``name`` (made if missing) and return its sha256; writing it twice stores it once. A row's
        id is the digest's first hex digits and its part number (below ``2**seq_bits``)."""
        digest = hashlib.sha256(text.encode()).hexdigest()
        prefix = int(digest[: (63 - seq_bits) // 4], 16) << seq_bits
        if len(text) > BLOB_CHUNK << seq_bits:
            raise BackendError(f"cannot store {len(text)} characters in {name!r}: at most {BLOB_CHUNK << seq_bits}")
        self._ensure_chunks(name)
        starts = range(0, len(text), BLOB_CHUNK)
        for first in range(0, len(starts), 16):
            rows = [
                {
                    "id": prefix + seq,
                    "digest": digest,
                    "seq": seq,
                    "data": text[start : start + BLOB_CHUNK],
                    "v": [0.0, 0.0],
                }
                for seq, start in enumerate(starts[first : first + 16], first)
            ]
            self._call(self.client.upsert, name, rows)
        return digest

    def _get_chunks(self, name: str, digest: str, length: int) -> str | None:
        """The text stored under ``digest`` in ``name``, or None when a part is missing or altered."""
        if not self._call(self.client.has_collection, name):
            return None
        self._call(self.client.load_collection, name)
        parts: list[str] = []
        count = -(-length // BLOB_CHUNK)
        for first in range(0, count, CHUNKS_PER_READ):
            rows = self._call(
                self.client.query,
                name,
                filter=f'digest == "{digest}" and seq >= {first} and seq < {first + CHUNKS_PER_READ}',
                output_fields=["seq", "data"],
                consistency_level="Strong",
            )
            parts.extend(r["data"] for r in sorted(rows, key=lambda r: int(r["seq"])))
        text = "".join(parts)
        if len(text) != length or hashlib.sha256(text.encode()).hexdigest() != digest:
            return None
        return text

    def _drop_chunks(self, name: str, keep: set[str]) -> None:
        """Delete the chunk rows of ``name`` whose digest is not in ``keep``."""
        if not self._call(self.client.has_collection, name):
            return
        self._call(self.client.load_collection, name)  # released after a restart
        rows = self._call(
            self.client.query, name, filter="seq >= 0", output_fields=["digest"], consistency_level="Strong"
        )
        gone = [int(r["id"]) for r in rows if r["digest"] not in keep]
        for start in range(0, len(gone), 1000):
            self._call(self.client.delete, name, ids=gone[start : start + 1000])


class Blobs(Chunks):
    """Long strings of the stored config, in ``<collection>_poolvec_blobs``."""

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

    def _put_blob(self, text: str) -> str:
        return self._put_chunks(self.blob_collection, text)

    def _get_blob(self, digest: str, length: int) -> str:
        where = f"the stored config of {self.collection!r} at {self.uri}"
        if not self._call(self.client.has_collection, self.blob_collection):
            raise BackendError(f"{where} refers to {self.blob_collection!r}, which is missing: the index is damaged")
        text = self._get_chunks(self.blob_collection, digest, length)
        if text is None:
            raise BackendError(f"{where} is damaged: part {digest[:12]}… is missing or altered")
        return text

    def drop_blobs(self, keep: set[str]) -> None:
        """Delete the blob rows whose digest is not in ``keep`` (after the config that used them was replaced)."""
        self._drop_chunks(self.blob_collection, keep)


class Stage(Client):
    """Vectors staged by a rewrite, in ``<collection>_poolvec_stage``."""

    @property
    def stage_collection(self) -> str:
        """Where a rewrite keeps the new vectors of every row until it writes them (:mod:`poolvec.indexer.ops.dba`)."""
        return self.collection + STAGE_SUFFIX

    def create_stage(self, dim: int) -> None:
        """An empty stage for ``dim``-d vectors (an old one is dropped)."""
        self.drop_stage()
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        params = self.client.prepare_index_params()
        params.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        self._create_collection(self.stage_collection, schema=schema, index_params=params, consistency_level="Strong")

    def stage_put(self, vectors: dict[int, Any]) -> None:
        """Stage new vectors by row id (writing one twice keeps the last)."""
        rows = [{"id": int(i), "vector": [float(x) for x in v]} for i, v in vectors.items()]
        for start in range(0, len(rows), 256):
            self._call(self.client.upsert, self.stage_collection, rows[start : start + 256])

    def stage_flush(self) -> None:
        """Make the staged vectors durable before anything depends on them."""
        with quiet("grpc._server"):
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
        with quiet("pymilvus.client.iterator.query_iterator"), quiet("grpc._server"):
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


class DecisionRows(Client):
    """Review decisions in ``<collection>_poolvec_decisions``: rows ``(kind, a, b)`` of content hashes, keyed by a
    stable id, so that writing one twice keeps one. Milvus needs a vector field: each row carries a 2-d zero."""

    @property
    def decisions_collection(self) -> str:
        """Where this collection's review decisions live (dropped with it)."""
        return self.collection + DECISIONS_SUFFIX

    def _ensure_decisions(self) -> None:
        if self._call(self.client.has_collection, self.decisions_collection):
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("kind", DataType.VARCHAR, max_length=16)
        schema.add_field("a", DataType.VARCHAR, max_length=64)
        schema.add_field("b", DataType.VARCHAR, max_length=64)
        schema.add_field("at", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
        params = self.client.prepare_index_params()
        params.add_index(field_name="vector", index_type="FLAT", metric_type="L2")
        self._create_collection(
            self.decisions_collection, schema=schema, index_params=params, consistency_level="Strong"
        )

    def decisions_put(self, rows: list[tuple[str, str, str, int]]) -> None:
        """Store ``(kind, a, b, at)`` rows (one already there is overwritten) and make them durable."""
        if not rows:
            return
        self._ensure_decisions()
        data = [
            {"id": decision_id(k, a, b), "kind": k, "a": a, "b": b, "at": int(t), "vector": [0.0, 0.0]}
            for k, a, b, t in rows
        ]
        for start in range(0, len(data), 1000):
            self._call(self.client.upsert, self.decisions_collection, data[start : start + 1000])
        with quiet("grpc._server"):
            self._call(self.client.flush, self.decisions_collection)

    def decisions_delete(self, rows: list[tuple[str, str, str]]) -> None:
        """Forget ``(kind, a, b)`` decisions."""
        if rows and self._call(self.client.has_collection, self.decisions_collection):
            ids = [decision_id(k, a, b) for k, a, b in rows]
            for start in range(0, len(ids), 1000):
                self._call(self.client.delete, self.decisions_collection, ids=ids[start : start + 1000])

    def decisions_all(self) -> list[tuple[str, str, str, int]]:
        """Every stored decision as ``(kind, a, b, at)``."""
        if not self._call(self.client.has_collection, self.decisions_collection):
            return []
        self._call(self.client.load_collection, self.decisions_collection)
        out: list[tuple[str, str, str, int]] = []
        with quiet("pymilvus.client.iterator.query_iterator"), quiet("grpc._server"):
            it = self._call(
                self.client.query_iterator,
                self.decisions_collection,
                batch_size=4096,
                filter="",
                output_fields=["kind", "a", "b", "at"],
            )
        try:
            while rows := self._call(it.next):
                out.extend((r["kind"], r["a"], r["b"], int(r["at"])) for r in rows)
        finally:
            it.close()
        return out


def decision_id(kind: str, a: str, b: str) -> int:
    """A stable 63-bit id of one decision."""
    digest = hashlib.sha256(f"{kind}\0{a}\0{b}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class Written:
    """What one store wrote while following its writes (:meth:`KeptGraph.following`): the writes token it started
    from and the one it set last, the ids it upserted or deleted (None past ``limit``: too many to repair), and
    whether it wrote ``alone`` (False once a token it did not set was found: another writer's rows are unknown)."""

    start: str
    limit: int
    token: str
    ids: set[int] | None = field(default_factory=set)
    alone: bool = True

    def note(self, ids: Iterable[int]) -> None:
        """Record ids about to be written."""
        if self.ids is not None:
            self.ids.update(ids)
            if len(self.ids) > self.limit:
                self.ids = None


class KeptGraph(Chunks):
    """The neighbour graph ``dups`` keeps between runs, in ``<collection>_poolvec_graph``, valid while no row has been
    written since it was read: every write of rows replaces the collection's writes token before and after itself
    (:meth:`touch`), and the graph records the token it was read at. A writer that follows its writes
    (:meth:`following`) learns which rows it wrote, so that it can bring the graph up to date itself."""

    _written: Written | None = None

    @property
    def graph_collection(self) -> str:
        """Where this collection's kept neighbour graph lives (dropped with it)."""
        return self.collection + GRAPH_SUFFIX

    def writes_token(self) -> str:
        """The current writes token ("" before the first write that set one)."""
        return self.properties().get(PROP_WRITES, "")

    @property
    def is_following(self) -> bool:
        """Whether a :meth:`following` block is open."""
        return self._written is not None

    @contextmanager
    def following(self, limit: int) -> Iterator[Written]:
        """Record the ids this store writes inside the block (up to ``limit`` of them) and whether another writer
        wrote meanwhile. Nested blocks share the outer record."""
        if self._written is not None:
            yield self._written
            return
        start = self.writes_token() if self.exists() else ""
        self._written = Written(start, limit, token=start)
        try:
            yield self._written
        finally:
            self._written = None

    def touch(self, ids: Iterable[int] = ()) -> None:
        """Mark the rows as changed (``ids``: those about to be written): any kept graph, and any graph being read
        now, is stale. While following, a token this store did not set means another writer wrote."""
        written = self._written
        if written is not None:
            written.alone = written.alone and self.writes_token() == written.token
            written.note(ids)
        token = secrets.token_hex(8)
        self.set_property(PROP_WRITES, token)
        if written is not None:
            written.token = token

    def keep_graph(self, payload: bytes, meta: dict[str, Any], token: str) -> bool:
        """Keep ``payload`` (with ``meta``) as the graph of the rows as they were at writes token ``token``; a graph
        read while rows were written is not kept (returns False). Chunks first, then the property that points to
        them, then the old chunks go: a kill at any moment leaves the old graph, the new one, or none."""
        text = base64.b64encode(payload).decode("ascii")
        digest = self._put_chunks(self.graph_collection, text, seq_bits=20)
        with quiet("grpc._server"):
            self._call(self.client.flush, self.graph_collection)
        kept = self.writes_token() == token
        if kept:
            self.set_property(PROP_GRAPH, json.dumps({**meta, "digest": digest, "length": len(text), "writes": token}))
        self._drop_chunks(self.graph_collection, {digest} if kept else self._graph_digests())
        return kept

    def kept_meta(self, token: str | None = None) -> dict[str, Any] | None:
        """What the kept graph says of itself (``k``, ``rows``, …) when it is valid at writes token ``token`` (default:
        the current one), else None."""
        props = self.properties()
        meta = json.loads(props.get(PROP_GRAPH) or "null")
        at = props.get(PROP_WRITES, "") if token is None else token
        return meta if isinstance(meta, dict) and meta.get("writes") == at else None

    def kept_graph(self, token: str | None = None) -> tuple[dict[str, Any], bytes] | None:
        """The kept graph's ``(meta, payload)``, or None when there is none, rows were written since it was read (or
        since writes token ``token``, when given), or its chunks are missing or altered."""
        meta = self.kept_meta(token)
        if meta is None:
            return None
        text = self._get_chunks(self.graph_collection, str(meta["digest"]), int(meta["length"]))
        return None if text is None else (meta, base64.b64decode(text))

    def _graph_digests(self) -> set[str]:
        meta = json.loads(self.properties().get(PROP_GRAPH) or "null")
        return {str(meta["digest"])} if isinstance(meta, dict) and "digest" in meta else set()
