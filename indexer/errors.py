"""Exceptions of the indexer; the CLI maps each to one line on stderr and an exit code."""

from __future__ import annotations


class IndexerError(Exception):
    """A problem the user can fix (bad arguments, an empty index, a bad query)."""


class ConfigMismatchError(IndexerError):
    """The embedding config asked for differs from the one the index was built with."""


class BackendError(IndexerError):
    """Milvus is unreachable, or the Milvus Lite database is held by another process."""
