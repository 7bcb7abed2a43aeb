"""A Ray Data sink that upserts image rows straight into a Milvus server from the workers that write them.

Each write task connects once per worker process (the connection is cached), builds every row with
:func:`~poolvec.indexer.milvus.schema.make_row` through :class:`~poolvec.indexer.ops.sync.Writer`, and upserts
them keyed by path id in requests under Milvus's 64 MB insert limit, so a retried task overwrites instead of
duplicating. Milvus Lite
cannot be written from here (one process per database): the Ray engine streams its rows to the driver instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ray.data import Datasink
from ray.data.block import Block, BlockAccessor
from ray.data.datasource.datasink import WriteResult

from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.milvus.vector_index import VectorIndex
from poolvec.indexer.ops import dba, sync
from poolvec.indexer.ops.ray.tasks import results
from poolvec.indexer.ops.sync import IndexReport

#: Milvus refuses requests over 64 MB (the proxy's gRPC receive limit): upserts stay well under it.
UPSERT_BYTES = 16 * 2**20
#: Rows per upsert at most (fewer, larger requests than the single-process path's 64: a server ingests faster).
UPSERT_ROWS = 1000

_stores: dict[tuple[str, str], MilvusStore] = {}


class ProgressCounter:
    """A tiny Ray actor: files embedded so far (the embedders tell it), for the driver's progress bar."""

    def __init__(self) -> None:
        self.n = 0

    def add(self, n: int) -> None:
        self.n += n

    def count(self) -> int:
        return self.n


class MilvusDatasink(Datasink[dict[str, Any]]):
    """Upserts the Ray engine's embedded files into a Milvus server collection; failures come back to the driver.

    After the write, :attr:`report` holds the rows added and updated and the files that failed, with reasons.
    """

    def __init__(
        self,
        uri: str,
        collection: str,
        token: str | None,
        timeout: float,
        vector_index: VectorIndex,
    ) -> None:
        self.uri, self.collection, self.token, self.timeout = uri, collection, token, timeout
        self.vector_index = vector_index
        self.report = IndexReport()

    @property
    def min_rows_per_write(self) -> int:
        """Rows handed to one write task: a full upsert. Ray may start a worker process per write task and
        these are short (a few ms of Milvus per 64 rows), so fewer, larger tasks keep the actors' cores busy."""
        return UPSERT_ROWS

    def write(self, blocks: Iterable[Block], ctx: Any) -> dict[str, Any]:
        store = self._store()
        report = IndexReport()
        writer = sync.Writer(
            store,
            report,
            dba.transform(store, self.vector_index),
            batch_rows=UPSERT_ROWS,
            batch_bytes=UPSERT_BYTES,
            flush_every=None,
        )
        for block in blocks:
            for item, info in results(BlockAccessor.for_block(block).to_batch_format("numpy")):
                writer.embedded(item, info)
        writer.flush()
        return {"added": report.added, "updated": report.updated, "failed": report.failed}

    def on_write_complete(self, write_result: WriteResult[dict[str, Any]]) -> None:
        for part in write_result.write_returns:
            self.report.merge(IndexReport(added=part["added"], updated=part["updated"], failed=list(part["failed"])))

    def _store(self) -> MilvusStore:
        key = (self.uri, self.collection)
        if key not in _stores:
            _stores[key] = MilvusStore(self.uri, self.collection, token=self.token, timeout=self.timeout)
        return _stores[key]
