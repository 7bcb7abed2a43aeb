"""Exceptions of the indexer, and the one error policy: what kind of error maps to which exit code and HTTP status.

Every error a user can cause carries its ``kind`` (the extractor's and the pooling's errors too); the CLI, the HTTP
server and the Ray engine all turn an error into its exit code or status through :func:`policy`, the table
:data:`POLICY`. Nothing reads a message to decide.
"""

from __future__ import annotations

from dataclasses import dataclass


class IndexerError(Exception):
    """A problem the user can fix (bad arguments, an empty index, a bad query); ``kind`` says which (see
    :data:`POLICY`): ``"usage"`` unless given."""

    kind = "usage"

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            if kind not in POLICY:
                raise ValueError(f"unknown error kind {kind!r}")
            self.kind = kind


class ConfigMismatchError(IndexerError):
    """The embedding config asked for differs from the one the index was built with."""


class BackendError(IndexerError):
    """Milvus is unreachable, or the Milvus Lite database is held by another process."""

    kind = "backend"


@dataclass(frozen=True)
class Outcome:
    """How one kind of error ends: the CLI's exit code (README's table) and the HTTP status of the API."""

    exit_code: int
    http_status: int


EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_BACKEND, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

#: Error kind → outcome. ``usage``: a bad option, value or config; ``invalid``: a request parameter out of range;
#: ``not_found``: no such image or file; ``too_large``/``not_image``/``unreadable``: an image that cannot be used;
#: ``backend``: Milvus unreachable or held; ``unavailable``: the server is stopping; ``interrupted``: Ctrl-C or
#: SIGTERM; ``internal``: anything else (a bug).
POLICY: dict[str, Outcome] = {
    "usage": Outcome(EXIT_USAGE, 400),
    "invalid": Outcome(EXIT_USAGE, 422),
    "not_found": Outcome(EXIT_USAGE, 404),
    "too_large": Outcome(EXIT_USAGE, 413),
    "not_image": Outcome(EXIT_USAGE, 415),
    "unreadable": Outcome(EXIT_USAGE, 422),
    "backend": Outcome(EXIT_BACKEND, 503),
    "unavailable": Outcome(EXIT_BACKEND, 503),
    "interrupted": Outcome(EXIT_INTERRUPTED, 503),
    "internal": Outcome(EXIT_INTERNAL, 500),
}


def kind_of(error: BaseException) -> str:
    """The kind of ``error``: its own for the errors of poolvec's packages, ``interrupted`` for Ctrl-C, else
    ``internal``."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    kind = getattr(error, "kind", None)
    if isinstance(kind, str) and kind in POLICY and _ours(error):
        return kind
    return "internal"


def policy(error: BaseException) -> Outcome:
    """The exit code and HTTP status for ``error``."""
    return POLICY[kind_of(error)]


def _ours(error: BaseException) -> bool:
    from poolvec.extractor.errors import ExtractorError
    from poolvec.pooling.spec import PoolingError

    return isinstance(error, (IndexerError, ExtractorError, PoolingError))


__all__ = [
    "EXIT_BACKEND",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "POLICY",
    "BackendError",
    "ConfigMismatchError",
    "IndexerError",
    "Outcome",
    "kind_of",
    "policy",
]
