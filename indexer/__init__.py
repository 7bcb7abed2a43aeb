"""Vectors ↔ Milvus: :class:`ImageIndex` (sync folders, search by image, duplicates) and the ``poolvec`` CLI."""

from . import retune
from .config import fingerprint
from .duplicates import DuplicateGroup
from .errors import BackendError, ConfigMismatchError, IndexerError
from .index import DEFAULT_COLLECTION, DEFAULT_URI, Hit, ImageIndex
from .store import MilvusStore, VectorIndex
from .sync import IndexReport, path_id

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_URI",
    "BackendError",
    "ConfigMismatchError",
    "DuplicateGroup",
    "Hit",
    "ImageIndex",
    "IndexReport",
    "IndexerError",
    "MilvusStore",
    "VectorIndex",
    "fingerprint",
    "path_id",
    "retune",
]
