"""``poolvec serve``: an HTTP API and a web page over one :class:`~indexer.ImageIndex` (FastAPI + uvicorn).

One process owns the index; every call on it runs in one thread (:class:`~indexer.worker.IndexWorker`), where
searches that arrive together share one embedding pass. The page (``indexer/static/``: plain HTML, CSS and
JavaScript, nothing fetched from elsewhere) searches by a dropped, pasted or picked image, shows duplicate
groups, and says what the index holds. Nothing on disk is changed by the server.

Security: it binds 127.0.0.1 unless told otherwise, and then answers only requests addressed to a loopback
name (DNS-rebinding guard); ``token`` requires ``Authorization: Bearer TOKEN`` on every ``/api`` call; images
are served by id only, as thumbnails re-encoded from files that are in the index; uploads are size-limited and
decoded by the extractor's own loader (decompression-bomb guard); the page escapes every file name and runs
under a Content-Security-Policy that allows no inline script and no other origin.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures, whose types are local to create_app.
import ipaddress
import os
import secrets
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel

from extractor.errors import ExtractorError, ImageError

from . import names, thumbs
from .config import without_states
from .errors import BackendError, IndexerError
from .index import ImageIndex
from .results import group_json, query_json, row_json
from .store import META_FIELDS
from .worker import IndexWorker, JobError
from .worker import Query as SearchQuery

STATIC = Path(__file__).parent / "static"
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
    """

    token: str | None = None
    max_upload_bytes: int = 32 << 20
    max_k: int = 200
    max_batch: int = 32
    thumbnail_cache_bytes: int = 128 << 20
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_NAMES
    warm_up: bool = True


class HitModel(BaseModel):
    """One hit, as `poolvec search --json` prints it."""

    rank: int
    path: str
    score: float
    id: int
    root: str
    size: int
    mtime_ns: int
    width: int
    height: int
    sha256: str


class SearchResult(BaseModel):
    """The results of one query, as one element of `poolvec search --json`."""

    query: str
    hits: list[HitModel]


class Member(BaseModel):
    id: int
    path: str
    root: str
    size: int
    mtime_ns: int
    width: int
    height: int
    sha256: str


class Group(BaseModel):
    """One group of `poolvec dups --json`, plus each member's stored metadata."""

    kind: str
    score: float
    paths: list[str]
    members: list[Member]


class Duplicates(BaseModel):
    threshold: float
    default_threshold: float
    normalized: bool
    k: int
    groups: list[Group]


class Problem(BaseModel):
    """An error: one line saying what went wrong."""

    detail: str


@dataclass
class _State:
    tmpdir: str = ""
    dups: dict[tuple, dict[str, Any]] = field(default_factory=dict)


def create_app(index: ImageIndex, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application serving ``index`` (which the caller keeps owning and closes)."""
    settings = settings or ServeSettings()
    worker = IndexWorker(index, max_batch=settings.max_batch)
    cache = thumbs.ThumbnailCache(settings.thumbnail_cache_bytes)
    state = _State()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        state.tmpdir = app.state.upload_dir = tempfile.mkdtemp(prefix="poolvec-serve-")
        try:
            await worker.start(warm_up=settings.warm_up)
            yield
        finally:
            await worker.stop()
            shutil.rmtree(state.tmpdir, ignore_errors=True)

    app = FastAPIOffline(
        title="poolvec",
        version=_version(),
        summary="Search a poolvec image index by image; review its duplicates.",
        lifespan=lifespan,
    )
    app.state.worker, app.state.thumbnails = worker, cache
    app.add_middleware(_Guard, settings=settings)
    _add_error_handlers(app)
    bearer = HTTPBearer(auto_error=False, description="The token given to `poolvec serve --token`.")

    def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if settings.token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(
                401,
                "missing or wrong token: send 'Authorization: Bearer TOKEN' (the token given to poolvec serve)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    api = [Depends(authorised)]
    errors: dict[int | str, dict[str, Any]] = {code: {"model": Problem} for code in (400, 401, 404, 413, 415, 422, 503)}
    K = Annotated[int, Query(ge=1, le=settings.max_k, description="Hits to return.")]
    MinScore = Annotated[
        float | None, Query(ge=-1, le=1, description="Drop hits whose cosine similarity is below this.")
    ]
    Under = Annotated[str | None, Query(description="Only images under this folder (an absolute path).")]

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", tags=["server"])
    async def healthz() -> dict[str, str]:
        """Liveness: answers while the server runs (no token needed)."""
        return {"status": "ok"}

    @app.post("/api/search", tags=["search"], dependencies=api, responses={200: {"model": SearchResult}, **errors})
    async def search_upload(
        image: Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, …).")],
        k: K = 10,
        min_score: MinScore = None,
        under: Under = None,
    ) -> JSONResponse:
        """Search by an uploaded image: the `poolvec search --json` object for one query."""
        name, folder = _one_line(image.filename or "upload"), _folder(under)
        path = await run_in_threadpool(_save_upload, image.file, state.tmpdir, settings.max_upload_bytes, name)
        try:
            _, hits = await worker.search(SearchQuery(source=path, k=k, min_score=min_score, under=folder))
        except JobError as e:
            raise JobError(e.status, f"{name}: {e}") from None
        finally:
            os.unlink(path)
        return JSONResponse(query_json(name, hits))

    @app.get("/api/search", tags=["search"], dependencies=api, responses={200: {"model": SearchResult}, **errors})
    async def search_stored(
        id: Annotated[int, Query(ge=0, lt=1 << 63, description="Id of an indexed image (a hit's `id`).")],
        k: K = 10,
        min_score: MinScore = None,
        under: Under = None,
    ) -> JSONResponse:
        """Search by an indexed image (its stored vector): the `poolvec search --json` object for one query."""
        query, hits = await worker.search(SearchQuery(image_id=id, k=k, min_score=min_score, under=_folder(under)))
        return JSONResponse(query_json(query, hits))

    @app.get("/api/dups", tags=["duplicates"], dependencies=api, responses={200: {"model": Duplicates}, **errors})
    async def dups(
        threshold: Annotated[
            float | None, Query(description="Score at or above which images are copies (default: the index's).")
        ] = None,
        normalize: Annotated[bool, Query(description="Normalised scores (as `poolvec dups`), or raw cosines.")] = True,
        k: Annotated[int, Query(ge=1, le=100, description="Neighbours examined per image.")] = 10,
        under: Under = None,
    ) -> JSONResponse:
        """Duplicate groups, exact copies (same bytes) first: `poolvec dups --json` with each member's metadata."""
        folder = _folder(under)
        return JSONResponse(await worker.call(lambda idx: _duplicates(idx, state, threshold, normalize, k, folder)))

    @app.get("/api/info", tags=["server"], dependencies=api)
    async def info() -> JSONResponse:
        """What the index holds and how it was built (`poolvec info --json`, fitted parameters left out), and the
        server's limits and counters."""
        data = await worker.call(_info)
        data["server"] = {
            "version": _version(),
            "max_upload_bytes": settings.max_upload_bytes,
            "max_k": settings.max_k,
            "thumbnail_sizes": list(thumbs.SIZES),
            "token_required": settings.token is not None,
            "worker": worker.snapshot(),
            "thumbnails_made": cache.made,
        }
        return JSONResponse(data)

    @app.get(
        "/api/images/{image_id}/thumbnail",
        tags=["images"],
        dependencies=api,
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}, 304: {"description": "Not modified"}, **errors},
    )
    async def thumbnail(
        image_id: Annotated[int, PathParam(ge=0, lt=1 << 63, description="Id of an indexed image (a hit's `id`).")],
        request: Request,
        size: Annotated[int, Query(description=f"Longest side: one of {', '.join(map(str, thumbs.SIZES))}.")] = 256,
    ) -> Response:
        """A JPEG thumbnail of an indexed image, by id (files are never named by the request)."""
        if size not in thumbs.SIZES:
            raise HTTPException(422, f"size must be one of {', '.join(map(str, thumbs.SIZES))}, got {size}")
        row = (await worker.lookup([image_id])).get(image_id)
        if row is None:
            raise HTTPException(404, f"no image with id {image_id} in the index")
        try:
            thumb = await run_in_threadpool(cache.get, image_id, row["path"], size)
        except ImageError as e:
            status = 404 if e.reason.startswith("file not found") else 422
            raise HTTPException(status, f"{names.shown(row['path'])}: {e.reason}") from None
        headers = {"ETag": thumb.etag, "Cache-Control": "private, max-age=3600"}
        if request.headers.get("if-none-match") == thumb.etag:
            return Response(status_code=304, headers=headers)
        return Response(thumb.data, media_type="image/jpeg", headers=headers)

    return app


def _duplicates(
    index: ImageIndex, state: _State, threshold: float | None, normalize: bool, k: int, under: str | None
) -> dict[str, Any]:
    """The dups payload; kept per parameters and collection size (the index does not change under the server,
    but a shared Milvus server can be written by others: a new count recomputes)."""
    default = index.default_threshold(normalize)
    used = default if threshold is None else threshold
    key = (used, normalize, k, under, len(index))
    if key in state.dups:
        return state.dups[key]
    groups = index.find_duplicates(used, k=k, under=under, normalize=normalize)
    ids = sorted({i for g in groups for i in g.ids})
    rows: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 1000):
        rows.update(index.store.get(ids[start : start + 1000], fields=META_FIELDS))
    payload = {
        "threshold": used,
        "default_threshold": default,
        "normalized": normalize,
        "k": k,
        "groups": [
            {
                **group_json(g),
                "members": [
                    row_json(i, rows[i]) for i in sorted((i for i in g.ids if i in rows), key=lambda i: rows[i]["path"])
                ],
            }
            for g in groups
        ],
    }
    if len(state.dups) >= 16:
        state.dups.clear()
    state.dups[key] = payload
    return payload


def _info(index: ImageIndex) -> dict[str, Any]:
    data = index.info()
    if data.get("config"):
        data["config"] = without_states(data["config"])  # fitted matrices: megabytes, of no use to a reader
    return data


def _save_upload(src: BinaryIO, folder: str, limit: int, name: str) -> str:
    """Copy an upload into the server's private folder under a random name; refuse it past ``limit`` bytes."""
    head = src.read(16)
    if not head:
        raise JobError(400, f"{name}: empty upload")
    suffix = ".jpg" if head.startswith(b"\xff\xd8\xff") else ".img"  # the JPEG decoder is chosen by suffix
    path = os.path.join(folder, uuid.uuid4().hex + suffix)
    written = len(head)
    with open(path, "wb") as out:
        out.write(head)
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > limit:
                out.close()
                os.unlink(path)
                raise JobError(413, f"{name}: upload too large (more than {limit} bytes)")
            out.write(chunk)
    return path


def _folder(under: str | None) -> str | None:
    """The ``under`` filter: an absolute folder (the server's working directory means nothing to a client)."""
    if under is None or not under.strip():
        return None
    if not os.path.isabs(under):
        raise JobError(422, f"under: give an absolute folder path, got {under!r}")
    return under


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _version() -> str:
    try:
        return metadata.version("poolvec")
    except metadata.PackageNotFoundError:
        return "0"


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answers ``{"detail": ONE LINE}`` with a 4xx/5xx status."""

    def problem(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": _one_line(str(message), 500)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return problem(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(JobError)
    async def job(_: Request, exc: JobError) -> JSONResponse:
        return problem(exc.status, str(exc))

    @app.exception_handler(BackendError)
    async def backend(_: Request, exc: BackendError) -> JSONResponse:
        return problem(503, str(exc))

    @app.exception_handler(IndexerError)
    async def indexer(_: Request, exc: IndexerError) -> JSONResponse:
        return problem(400, str(exc))

    @app.exception_handler(ExtractorError)
    async def extractor(_: Request, exc: ExtractorError) -> JSONResponse:
        return problem(500, str(exc))


class _Guard:
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
        if self.allowed is not None and _host_name(headers.get("host", "")) not in self.allowed:
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


def _host_name(host: str) -> str:
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


# -- running it -------------------------------------------------------------------------------------------------
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


def run(
    index: ImageIndex,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    settings: ServeSettings | None = None,
    say: Callable[[str], None] = print,
    warn: Callable[[str], None] = print,
) -> None:
    """Serve ``index`` until interrupted (Ctrl+C or SIGTERM): binds first, then announces the page's URL."""
    import uvicorn

    settings = settings or ServeSettings()
    if index.config is None:
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
    sock = bind(host, port)
    url = page_url(host, sock.getsockname()[1], settings.token)
    say(f"poolvec: serving {index.uri} ({len(index)} images) at {url}")
    config = uvicorn.Config(create_app(index, settings), log_level="warning", access_log=False, lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled, after shutting down cleanly
        pass
    finally:
        sock.close()
