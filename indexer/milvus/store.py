"""The Milvus side: one collection of image rows, through pymilvus's ``MilvusClient``.

A local path means Milvus Lite (embedded, the default ``./poolvec.db``); ``http(s)://host:port`` a Milvus
server or cluster. The collection is made from the row schema (:mod:`.schema`) with its vector index
(:mod:`.vector_index`); the recipe that made its vectors is stored with it, as collection properties.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

from pymilvus import DataType

from poolvec.extractor.recipe import Recipe
from poolvec.indexer.errors import BackendError, IndexerError
from poolvec.indexer.milvus import names
from poolvec.indexer.milvus.client import quiet
from poolvec.indexer.milvus.schema import FIELDS, META_FIELDS
from poolvec.indexer.milvus.side import Blobs, DecisionRows, KeptGraph, Stage
from poolvec.indexer.milvus.vector_index import VectorIndex

PROP_CONFIG = "poolvec.config"
PROP_FINGERPRINT = "poolvec.fingerprint"
PROP_INDEX = "poolvec.index"
#: Searches read at Session consistency (this process's own writes are visible): the collection's Strong level
#: makes a Milvus 2.3 server wait for its next time tick, ~200 ms per search (1.6 ms at Session).
SEARCH_CONSISTENCY = {"consistency_level": "Session"}
#: Rows whose ids a filtered whole-collection read asks for at once (8 bytes and a little a row in the reply).
ID_SLICE = 1_000_000
#: pymilvus data types of the schema's field kinds.
DATA_TYPES = {"int64": DataType.INT64, "varchar": DataType.VARCHAR, "json": DataType.JSON}


class MilvusStore(Blobs, Stage, DecisionRows, KeptGraph):
    """One collection in Milvus Lite or a Milvus server, holding image vectors and their file metadata."""

    # -- collection ------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the collection exists (a Lite database that was never written holds none, and is not created)."""
        if self.missing:
            return False
        return bool(self._call(self.client.has_collection, self.collection))

    def create(self, recipe: Recipe, index: VectorIndex) -> None:
        """Create the collection with its schema, vector index and stored recipe."""
        index.check(lite=self.is_lite)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        for f in FIELDS:
            if f.kind == "vector":
                schema.add_field(f.name, DataType.FLOAT_VECTOR, dim=recipe.dim)
            elif f.max_length is not None:
                schema.add_field(f.name, DATA_TYPES[f.kind], max_length=f.max_length)
            else:
                schema.add_field(f.name, DATA_TYPES[f.kind], is_primary=f.name == "id")
        params = self.client.prepare_index_params()
        params.add_index(field_name="vector", index_type=index.kind, metric_type=index.metric, params=index.params)
        properties = {
            PROP_CONFIG: self.pack(recipe.to_dict()),
            PROP_FINGERPRINT: recipe.fingerprint(),
            PROP_INDEX: json.dumps(index.spec()),
        }
        try:
            self._create_collection(
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

    def read_config(self) -> tuple[Recipe, str, VectorIndex]:
        """The stored recipe, its fingerprint as stored, and the vector index spec."""
        props = self.properties()
        if PROP_CONFIG not in props:
            raise IndexerError(
                f"collection {self.collection!r} at {self.uri} was not made by poolvec (no stored config); "
                "choose another --collection"
            )
        idx = json.loads(props.get(PROP_INDEX, "{}"))
        index = VectorIndex(**idx) if idx else VectorIndex()
        recipe = Recipe.from_dict(self.unpack(props[PROP_CONFIG]))
        return recipe, props.get(PROP_FINGERPRINT) or recipe.fingerprint(), index

    def load(self) -> None:
        """Make sure the collection is loaded for search (servers keep it unloaded after a restart)."""
        self._call(self.client.load_collection, self.collection)

    def flush(self) -> None:
        """Seal buffered rows into segments: Milvus Lite only indexes flushed data (it brute-forces the rest)."""
        with quiet("grpc._server"):  # Milvus Lite lacks one RPC that flush polls; pymilvus copes, grpc logs it
            self._call(self.client.flush, self.collection)

    def drop(self) -> None:
        """Drop the collection and everything in it (its blobs, staged vectors, review decisions and graph too)."""
        if self.exists():
            self._call(self.client.drop_collection, self.collection)
        for side in (self.blob_collection, self.stage_collection, self.decisions_collection, self.graph_collection):
            if self._call(self.client.has_collection, side):
                self._call(self.client.drop_collection, side)

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
        """Insert or overwrite rows by primary key (file names as Python holds them; stored in :mod:`.names`' form).
        The writes token changes before and after (:meth:`~.side.KeptGraph.touch`): a kept graph goes stale."""
        if rows:
            self.touch(int(r["id"]) for r in rows)
            self._call(self.client.upsert, self.collection, [_to_stored(r) for r in rows])
            self.touch()

    def get(self, ids: list[int], fields: tuple[str, ...] = META_FIELDS) -> dict[int, dict[str, Any]]:
        """Rows by primary key (missing ids are absent from the result)."""
        if not ids:
            return {}
        rows = self._call(self.client.get, self.collection, ids=ids, output_fields=list(fields))
        return {int(r["id"]): _from_stored(r) for r in rows}

    def delete(self, ids: list[int]) -> None:
        """Delete rows by primary key (the writes token changes before and after, as :meth:`upsert`)."""
        if ids:
            self.touch(ids)
            self._call(self.client.delete, self.collection, ids=ids)
            self.touch()

    def query(self, filter: str, fields: tuple[str, ...] = META_FIELDS, limit: int | None = None) -> list[dict]:
        """Rows matching a boolean expression (``limit`` caps the result)."""
        kwargs = {"limit": limit} if limit is not None else {}
        rows = self._call(self.client.query, self.collection, filter=filter, output_fields=["id", *fields], **kwargs)
        return [_from_stored(r) for r in rows]

    def iterate(self, filter: str = "", fields: tuple[str, ...] = META_FIELDS, batch_size: int = 1000):
        """Yield lists of rows over the whole collection (or a filter), ``batch_size`` at a time: memory stays flat."""
        # Milvus Lite has no AllocTimestamp: pymilvus falls back to a client timestamp but logs it loudly.
        with quiet("pymilvus.client.iterator.query_iterator"), quiet("grpc._server"):
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

    def scan(self, filter: str = "", fields: tuple[str, ...] = META_FIELDS, page: int = 1000, count: int | None = None):
        """Yield every row (of ``filter``) once, in pages of about ``page`` rows, in no particular order: whole
        passes such as ``dups`` and ``copy``. The primary-key range is cut into slices of about ``page`` rows (ids are
        hashes, spread evenly), each one query (``count``: the collection's rows, when the caller has counted): Milvus
        Lite sorts every row it holds for each page of an iterator, and a Milvus 2.3 server answered pymilvus 3's
        iterator with pages of vectors past gRPC's 64 MB (412 MB at 1 000 000 rows: ``dups`` failed). A ``filter`` is
        evaluated once per :data:`ID_SLICE` rows for the ids alone, whose rows are then read by primary key: Milvus Lite
        evaluated ``--under``'s JSON filter over every row for each page (~9 s a page at 100 000 rows)."""
        total = self.count() if count is None else count
        if filter:
            for ids in self._matching(filter, total):
                for start in range(0, len(ids), page):
                    rows = list(self.get(ids[start : start + page], fields).values())
                    if rows:
                        yield rows
            return
        for span in _spans(max(1, -(-total // page))):
            rows = self.query(span, fields)
            if rows:
                yield rows

    def _matching(self, filter: str, total: int) -> Iterator[list[int]]:
        """The ids of the rows matching ``filter``, a primary-key slice of about :data:`ID_SLICE` rows at a time."""
        for span in _spans(max(1, -(-total // ID_SLICE))):
            yield [int(r["id"]) for r in self.query(f"({filter}) and {span}", ())]

    def count(self) -> int:
        """Number of rows."""
        rows = self._call(self.client.query, self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def search(
        self,
        vectors: list[list[float]],
        k: int,
        index: VectorIndex,
        filter: str = "",
        fields: tuple[str, ...] = META_FIELDS,
    ) -> list[list[dict[str, Any]]]:
        """Top-``k`` rows per query vector: dicts with ``id``, ``distance`` and ``fields`` (default: the metadata)."""
        res = self._call(
            self.client.search,
            self.collection,
            data=vectors,
            limit=k,
            filter=filter,
            output_fields=list(fields),
            search_params=index.search_params(k),
            **SEARCH_CONSISTENCY,
        )
        return [[{**h, "entity": _from_stored(h["entity"])} for h in hits] for hits in res]


def _spans(slices: int) -> Iterator[str]:
    """Filters cutting the primary keys (hashes in [0, 2⁶³), spread evenly) into ``slices`` ranges."""
    step = (1 << 63) // slices + 1
    for n in range(slices):
        yield f"id >= {n * step}" + (f" and id < {(n + 1) * step}" if n + 1 < slices else "")


def _to_stored(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its file names in their stored form (every name stays as it is but for control characters and
    bytes that are not UTF-8: :func:`poolvec.indexer.milvus.names.stored`)."""
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
