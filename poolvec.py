"""poolvec: image similarity search with pooled CNN features in Milvus — the public API in one import.

    from poolvec import ImageIndex, Extractor
    index = ImageIndex("./poolvec.db")
    index.add_folder("photos")
    hits = index.search("query.jpg", k=5)

The code lives in three packages with one job each — ``extractor`` (images → feature maps → vectors), ``pooling``
(feature maps → vectors) and ``indexer`` (vectors ↔ Milvus, the CLI) — and this module re-exports their public
names, imported on first use so that ``import poolvec`` stays instant.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = metadata.version("poolvec")
except metadata.PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"

#: Public name → the module that defines it.
_EXPORTS = {
    "Extractor": "extractor",
    "ExtractorError": "extractor",
    "EditPolicy": "extractor",
    "Tuning": "extractor",
    "ImageIndex": "indexer",
    "Hit": "indexer",
    "DuplicateGroup": "indexer",
    "IndexReport": "indexer",
    "EmbeddingOptions": "indexer",
    "IndexerError": "indexer",
    "BackendError": "indexer",
    "ConfigMismatchError": "indexer",
    "Pipeline": "pooling",
    "PoolingError": "pooling",
    "build": "pooling",
}

if TYPE_CHECKING:
    from extractor import EditPolicy, Extractor, ExtractorError, Tuning
    from indexer import (
        BackendError,
        ConfigMismatchError,
        DuplicateGroup,
        EmbeddingOptions,
        Hit,
        ImageIndex,
        IndexerError,
        IndexReport,
    )
    from pooling import Pipeline, PoolingError, build


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "BackendError",
    "ConfigMismatchError",
    "DuplicateGroup",
    "EditPolicy",
    "EmbeddingOptions",
    "Extractor",
    "ExtractorError",
    "Hit",
    "ImageIndex",
    "IndexReport",
    "IndexerError",
    "Pipeline",
    "PoolingError",
    "Tuning",
    "__version__",
    "build",
]
