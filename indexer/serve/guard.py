"""The server's guard, an ASGI middleware: only loopback Host names on a loopback server (DNS-rebinding), no body
past the upload limit (refused before it is read), and security headers on every answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from poolvec.indexer.serve.settings import API_CSP, DOCS_PATHS, MULTIPART_SLACK, PAGE_CSP, ServeSettings


class Guard:
    """ASGI middleware: refuses other Host names (when bound to loopback) and request bodies past the upload
    limit (before they are read), and adds security headers to every answer."""

    def __init__(self, app: Any, settings: ServeSettings) -> None:
        self.app = app
        self.allowed = None if settings.allowed_hosts is None else {h.lower() for h in settings.allowed_hosts}
        self.images = settings.max_upload_bytes
        self.limit = settings.max_upload_bytes + MULTIPART_SLACK

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.allowed is not None and host_name(headers.get("host", "")) not in self.allowed:
            await _reply(send, 421, "this server answers only to 127.0.0.1/localhost (it was bound to loopback)")
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _reply(send, 413, f"request too large ({length} bytes; images up to {self.images} bytes)")
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, f"request too large (images up to {self.images} bytes)")
            return message

        path = scope.get("path", "")
        csp = None if path.startswith(DOCS_PATHS) else (API_CSP if path.startswith(("/api", "/healthz")) else PAGE_CSP)

        async def secured_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if csp is not None:
                    extra.append((b"content-security-policy", csp.encode()))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, limited_receive, secured_send)


def host_name(host: str) -> str:
    """The name part of a Host header: ``[::1]:8765`` → ``::1``, ``localhost:80`` → ``localhost``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


async def _reply(send: Callable, status: int, detail: str) -> None:
    body = JSONResponse({"detail": detail}).body
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


__all__ = ["Guard", "host_name"]
