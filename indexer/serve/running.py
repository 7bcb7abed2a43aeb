"""Running ``poolvec serve``: binding the socket, announcing the page's address, and uvicorn until interrupted."""

from __future__ import annotations

import gc
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from poolvec.indexer.errors import IndexerError
from poolvec.indexer.index import ImageIndex
from poolvec.indexer.serve.settings import DEFAULT_HOST, DEFAULT_PORT, ServeSettings


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost`` (only this machine can connect)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free port); a one-line :class:`IndexerError`
    when it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        raise IndexerError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port/--host") from None
    return sock


def page_url(host: str, port: int, token: str | None = None) -> str:
    """The page's address (the token, if any, in the fragment: the browser keeps it, it is never sent)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("localhost" if host == "::" else host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"#token={token}" if token else "")


def serve(
    index: ImageIndex,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    settings: ServeSettings | None = None,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] = print,
) -> None:
    """Serve ``index`` until interrupted (Ctrl+C or SIGTERM): binds first, then announces the page's URL."""
    import uvicorn

    from poolvec.extractor.images import DECODE_BUDGET
    from poolvec.indexer.serve.app import create_app

    settings = settings or ServeSettings()
    if index.runtime.optimize == "auto":
        index.runtime = index.runtime.replace(optimize=True)  # a server traces the model once at start
    if index.recipe is None:
        raise IndexerError(
            f"the index {index.uri} (collection {index.collection!r}) is empty: run `poolvec index FOLDER` first"
        )
    index.extractor  # noqa: B018  (rebuild the embedder now: a config problem is one line here, not a traceback)
    if not is_loopback(host):
        settings = replace(settings, allowed_hosts=None)
        warn(
            f"serving on {host}, not only on this machine: anyone who can reach it can search and see the indexed "
            "photos" + ("" if settings.token else " — give --token to require a bearer token")
        )
    DECODE_BUDGET.limit = settings.decode_memory
    sock = bind(host, port)
    url = page_url(host, sock.getsockname()[1], settings.token)
    say(f"poolvec: serving {index.uri} ({len(index)} images) at {url}")
    # what is loaded now (model, libraries) lives as long as the server: the garbage collector's full passes skip it
    # (the page's first dups at 100 000 images: 0.8–1.1 s → see docs/BENCHMARKS.md, "The kept neighbour graph")
    gc.freeze()
    try:
        uvicorn.Server(uvicorn_config(create_app(index, settings), settings)).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled, after shutting down cleanly
        pass
    finally:
        sock.close()


def uvicorn_config(app: Any, settings: ServeSettings) -> Any:
    """How uvicorn runs an app of ours: quiet, and every request within ``settings.request_timeout`` seconds."""
    import uvicorn

    from poolvec.indexer.serve.protocol import with_deadline

    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http=with_deadline(settings.request_timeout),
        timeout_keep_alive=5,
    )


__all__ = ["ServeSettings", "bind", "is_loopback", "page_url", "serve", "uvicorn_config"]
