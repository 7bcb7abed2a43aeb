"""Side collections of an index: large config values (blobs), vectors staged by a rewrite before it writes them, and
the user's review decisions about duplicates.

Collection properties live in the server's etcd, which refuses requests over ~1 MB (measured: 0.5 MB stored, 1.2 MB
refused on Milvus 2.3.5): strings longer than :data:`BLOB_INLINE` go to ``<name>_poolvec_blobs``, content-addressed.
DBA stages every new vector in ``<name>_poolvec_stage`` before any row changes, so that a re-run after kill -9
never applies it twice.
"""

from __future__ import annotations

import hashlib
import json
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


class Blobs(Client):
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
        with quiet("grpc._server"):
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
        with quiet("grpc._server"):
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
        with quiet("grpc._server"):
            self._call(
                self.client.create_collection,
                self.decisions_collection,
                schema=schema,
                index_params=params,
                consistency_level="Strong",
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
