"""How ``poolvec serve`` behaves: its settings, addresses, and the security headers of its answers."""

from __future__ import annotations

from dataclasses import dataclass

from poolvec.extractor.defaults import DEFAULT_DECODE_MEMORY
from poolvec.indexer.errors import IndexerError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: Host names a server bound to loopback answers to (anything else is refused: DNS-rebinding guard).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
#: Bytes a multipart request may carry beyond the file itself (boundaries, headers, the field name).
MULTIPART_SLACK = 64 << 10
#: Content-Security-Policy of the page: its own scripts and styles only, images from itself or blob: URLs.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
#: Paths of the OpenAPI page and its assets (they need inline script: no CSP there).
DOCS_PATHS = ("/docs", "/redoc", "/openapi.json", "/static-offline-docs")


@dataclass(frozen=True)
class ServeSettings:
    """How the server behaves (the index is given separately).

    Args:
        token: if set, every ``/api`` call needs ``Authorization: Bearer TOKEN`` (the page asks for it once).
        max_upload_bytes: largest image accepted for a search (413 beyond).
        max_k: largest ``k`` a search may ask for.
        max_batch: most jobs the index thread takes at once (searches embedded in one pass).
        thumbnail_cache_bytes: memory kept for thumbnails (least recently used dropped).
        allowed_hosts: ``Host`` names answered; ``None`` answers any (a server bound to a public address).
        warm_up: run the model once at start, so that the first query does not pay for loading it.
        request_timeout: seconds a client has to send a whole request (headers and body) before its connection is
            closed (:mod:`~poolvec.indexer.serve.protocol`).
        decode_memory: bytes of decoded pixels all requests together may hold (the process's
            :class:`~poolvec.extractor.images.DecodeBudget`): a large upload waits for its turn instead of adding up.
    """

    token: str | None = None
    max_upload_bytes: int = 32 << 20
    max_k: int = 200
    max_batch: int = 32
    thumbnail_cache_bytes: int = 128 << 20
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_NAMES
    warm_up: bool = True
    request_timeout: float = 30.0
    decode_memory: int = DEFAULT_DECODE_MEMORY

    def __post_init__(self) -> None:
        if self.token is not None:
            check_token(self.token)


def check_token(token: str) -> None:
    """Refuse a token that would leave the server open or could never be sent: empty, or outside printable ASCII
    (HTTP headers travel as Latin-1 at best, and browsers refuse anything else)."""
    if not token.strip():
        raise IndexerError(
            "--token is empty: an empty token would let every request in; give a real one, or leave --token out"
        )
    if not all(" " < c < "\x7f" for c in token):
        raise IndexerError(
            "--token must be printable ASCII without spaces (HTTP clients and browsers cannot send other characters "
            "in a header); choose another, e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )


__all__ = [
    "API_CSP",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DOCS_PATHS",
    "LOOPBACK_NAMES",
    "MULTIPART_SLACK",
    "PAGE_CSP",
    "ServeSettings",
    "check_token",
]
