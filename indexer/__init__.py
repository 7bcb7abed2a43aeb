"""Vectors ↔ Milvus: :class:`ImageIndex` (sync folders, search by image, duplicates), the CLI and the server.

Rooms: ``milvus/`` (Milvus access: the store, row schema, Lite, filters, file names), ``ops/`` (operations that
read or rewrite many rows: sync, tune, DBA, reroot, the Ray engine), ``dups/`` (duplicate finding), ``serve/`` (the
HTTP server and its page), ``cli/`` (the ``poolvec`` command). Names are imported on first use (PEP 562): the CLI
imports this package, and ``poolvec --help`` must not load torch or pymilvus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poolvec import lazy_exports

#: Public name → the submodule that defines it.
_EXPORTS = {
    "DuplicateGroup": "dups.find",
    "BackendError": "errors",
    "ConfigMismatchError": "errors",
    "IndexerError": "errors",
    "DEFAULT_COLLECTION": "index",
    "DEFAULT_URI": "index",
    "Hit": "query",
    "ImageIndex": "index",
    "EmbeddingOptions": "options",
    "Shard": "options",
    "RayOptions": "ops.ray.options",
    "MilvusStore": "milvus.store",
    "VectorIndex": "milvus.vector_index",
    "IndexReport": "ops.sync",
    "path_id": "milvus.schema",
}

if TYPE_CHECKING:
    from poolvec.indexer.dups.find import DuplicateGroup
    from poolvec.indexer.errors import BackendError, ConfigMismatchError, IndexerError
    from poolvec.indexer.index import DEFAULT_COLLECTION, DEFAULT_URI, ImageIndex
    from poolvec.indexer.milvus.schema import path_id
    from poolvec.indexer.milvus.store import MilvusStore
    from poolvec.indexer.milvus.vector_index import VectorIndex
    from poolvec.indexer.ops.ray.options import RayOptions
    from poolvec.indexer.ops.sync import IndexReport
    from poolvec.indexer.options import EmbeddingOptions, Shard
    from poolvec.indexer.query import Hit

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_URI",
    "BackendError",
    "ConfigMismatchError",
    "DuplicateGroup",
    "EmbeddingOptions",
    "Hit",
    "ImageIndex",
    "IndexReport",
    "IndexerError",
    "MilvusStore",
    "RayOptions",
    "Shard",
    "VectorIndex",
    "path_id",
]
