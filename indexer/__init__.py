"""Vectors ↔ Milvus: :class:`ImageIndex` (index folders, search by image) and the ``poolvec`` CLI."""

from .config import fingerprint
from .errors import BackendError, ConfigMismatchError, IndexerError
from .index import DEFAULT_COLLECTION, DEFAULT_URI, Hit, ImageIndex, IndexReport, path_id
from .store import MilvusStore, VectorIndex

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_URI",
    "BackendError",
    "ConfigMismatchError",
    "Hit",
    "ImageIndex",
    "IndexReport",
    "IndexerError",
    "MilvusStore",
    "VectorIndex",
    "fingerprint",
    "path_id",
]
