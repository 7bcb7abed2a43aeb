"""Vectors ↔ Milvus: :class:`ImageIndex` (sync folders, search by image, duplicates) and the ``poolvec`` CLI.

Names are imported on first use (PEP 562): the CLI module imports this package, and ``poolvec --help`` must not
load torch or pymilvus.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

#: Public name → the submodule that defines it.
_EXPORTS = {
    "fingerprint": "config",
    "DuplicateGroup": "duplicates",
    "BackendError": "errors",
    "ConfigMismatchError": "errors",
    "IndexerError": "errors",
    "DEFAULT_COLLECTION": "index",
    "DEFAULT_URI": "index",
    "Hit": "index",
    "ImageIndex": "index",
    "EmbeddingOptions": "options",
    "MilvusStore": "store",
    "VectorIndex": "store",
    "IndexReport": "sync",
    "path_id": "sync",
}

if TYPE_CHECKING:
    from . import pending, retune
    from .config import fingerprint
    from .duplicates import DuplicateGroup
    from .errors import BackendError, ConfigMismatchError, IndexerError
    from .index import DEFAULT_COLLECTION, DEFAULT_URI, Hit, ImageIndex
    from .options import EmbeddingOptions
    from .store import MilvusStore, VectorIndex
    from .sync import IndexReport, path_id


def __getattr__(name: str) -> Any:
    if name in ("pending", "retune"):
        return import_module(f".{name}", __name__)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, "pending", "retune"])


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
    "VectorIndex",
    "fingerprint",
    "path_id",
    "pending",
    "retune",
]
