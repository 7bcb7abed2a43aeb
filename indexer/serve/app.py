"""``poolvec serve``: an HTTP API and a web page over one :class:`~poolvec.indexer.ImageIndex` (FastAPI + uvicorn).

One process owns the index; every call on it runs in one thread (:class:`~.worker.IndexWorker`), where searches that
arrive together share one embedding pass. The page (``static/``: plain HTML, CSS and JavaScript, nothing fetched from
elsewhere) searches by a dropped, pasted or picked image, shows duplicate groups, and says what the index holds.
Nothing on disk is changed by the server.

Security: it binds 127.0.0.1 unless told otherwise, and then answers only requests addressed to a loopback
name (DNS-rebinding guard, :mod:`.guard`); ``token`` requires ``Authorization: Bearer TOKEN`` on every ``/api``
call; images are served by id only, as thumbnails re-encoded from files that are in the index; uploads are
size-limited and decoded by the extractor's own loader (decompression-bomb guard); the page escapes every file name
and runs under a Content-Security-Policy that allows no inline script and no other origin. Errors answer
``{"detail": ONE LINE}`` with the status of the error policy (:mod:`poolvec.indexer.errors`).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' signatures.
import shutil
import tempfile
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from poolvec.extractor.errors import ExtractorError
from poolvec.indexer.errors import IndexerError, policy
from poolvec.indexer.index import ImageIndex
from poolvec.indexer.serve import thumbs
from poolvec.indexer.serve.context import Context
from poolvec.indexer.serve.guard import Guard
from poolvec.indexer.serve.routes import dups, images, one_line, review, search, server
from poolvec.indexer.serve.settings import ServeSettings
from poolvec.indexer.serve.worker import IndexWorker
from poolvec.pooling.spec import PoolingError


def create_app(index: ImageIndex, settings: ServeSettings | None = None) -> FastAPI:
    """The FastAPI application serving ``index`` (which the caller keeps owning and closes)."""
    settings = settings or ServeSettings()
    ctx = Context(
        IndexWorker(index, max_batch=settings.max_batch),
        settings,
        thumbs.ThumbnailCache(settings.thumbnail_cache_bytes),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        ctx.upload_dir = app.state.upload_dir = tempfile.mkdtemp(prefix="poolvec-serve-")
        try:
            await ctx.worker.start(warm_up=settings.warm_up)
            yield
        finally:
            await ctx.worker.stop()
            shutil.rmtree(ctx.upload_dir, ignore_errors=True)

    app = FastAPIOffline(
        title="poolvec",
        version=server.version(),
        summary="Search a poolvec image index by image; review its duplicates.",
        lifespan=lifespan,
    )
    app.state.worker, app.state.thumbnails = ctx.worker, ctx.thumbnails
    app.add_middleware(Guard, settings=settings)
    _add_error_handlers(app)
    for group in (server, search, dups, review, images):
        app.include_router(group.router(ctx))
    app.mount("/static", StaticFiles(directory=server.STATIC), name="static")
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answers ``{"detail": ONE LINE}``: a request that does not validate 422, an error of poolvec's the
    status of its kind."""

    def problem(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": one_line(str(message), 500)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return problem(422, "; ".join(parts) or "invalid request")

    async def ours(_: Request, exc: Exception) -> JSONResponse:
        return problem(policy(exc).http_status, str(exc))

    for kind in (IndexerError, ExtractorError, PoolingError):
        app.add_exception_handler(kind, ours)


__all__ = ["create_app"]
