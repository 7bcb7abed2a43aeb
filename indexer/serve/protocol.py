"""A deadline for each HTTP request of ``poolvec serve``: a client has :attr:`ServeSettings.request_timeout` seconds
from connecting (or from the last answer on a kept-alive connection) to send a whole request, headers and body, or
the connection is closed. uvicorn closes idle kept-alive connections itself, but waits forever for a request that
stops half-way (a slow or stalled client holds a connection and its buffers: "slowloris")."""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def with_deadline(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing connections whose request is not complete ``seconds`` after it could start."""

    class DeadlineProtocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _expired(self) -> None:
            if self.transport.is_closing() or self.conn.their_state is h11.DONE:
                return  # gone, or a whole request came and is being answered (re-armed when it is)
            self.transport.close()

    return DeadlineProtocol


__all__ = ["with_deadline"]
