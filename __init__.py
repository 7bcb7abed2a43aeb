"""poolvec: image similarity search with pooled CNN features in Milvus — the public API in one import.

    from poolvec import ImageIndex, Extractor
    index = ImageIndex("./poolvec.db")
    index.add_folder("photos")
    hits = index.search("query.jpg", k=5)

The code lives in three sub-packages with one job each — ``poolvec.extractor`` (images → feature maps → vectors),
``poolvec.pooling`` (feature maps → vectors) and ``poolvec.indexer`` (vectors ↔ Milvus, the CLI, the server) — and
this module re-exports their public names, imported on first use so that ``import poolvec`` stays instant.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from importlib import import_module, metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = metadata.version("poolvec")
except metadata.PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"


def lazy_exports(
    package: str, exports: dict[str, str], modules: Iterable[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562 ``__getattr__`` and ``__dir__`` for ``package``, which re-exports ``exports`` (public name → the
    submodule defining it, relative to ``package``) and its submodules ``modules``, each imported on first use:
    importing a package then loads no torch or pymilvus until a name that needs them is asked for."""
    submodules = frozenset(modules)

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return import_module(f"{package}.{name}")
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports, *submodules})

    return __getattr__, __dir__


#: Public name → the sub-package that defines it.
_EXPORTS = {
    "Extractor": "extractor",
    "ExtractorError": "extractor",
    "EditPolicy": "extractor",
    "Recipe": "extractor",
    "Runtime": "extractor",
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
    from poolvec.extractor import EditPolicy, Extractor, ExtractorError, Recipe, Runtime, Tuning
    from poolvec.indexer import (
        BackendError,
        ConfigMismatchError,
        DuplicateGroup,
        EmbeddingOptions,
        Hit,
        ImageIndex,
        IndexerError,
        IndexReport,
    )
    from poolvec.pooling import Pipeline, PoolingError, build

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, ("extractor", "indexer", "pooling"))

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
    "Recipe",
    "Runtime",
    "Tuning",
    "__version__",
    "build",
]
