"""``/api/search``: by an uploaded image, or by an indexed one (its stored vector)."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
import os
import uuid
from typing import Annotated, BinaryIO

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from poolvec.extractor.errors import IMAGE_KINDS
from poolvec.indexer.errors import IndexerError
from poolvec.indexer.results import query_json
from poolvec.indexer.serve.context import Context
from poolvec.indexer.serve.models import SearchResult
from poolvec.indexer.serve.routes import ERRORS, Under, folder, one_line
from poolvec.indexer.serve.worker import Query as SearchQuery


def router(ctx: Context) -> APIRouter:
    """The search routes of one app."""
    api = APIRouter(tags=["search"], dependencies=ctx.api)
    K = Annotated[int, Query(ge=1, le=ctx.settings.max_k, description="Hits to return.")]
    MinScore = Annotated[
        float | None, Query(ge=-1, le=1, description="Drop hits whose cosine similarity is below this.")
    ]
    Verify = Annotated[
        bool, Query(description="Check the shortlist by local features; verified copies first, with where they match.")
    ]
    answers = {200: {"model": SearchResult}, **ERRORS}

    @api.post("/api/search", responses=answers)
    async def search_upload(
        image: Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, …).")],
        k: K = 10,
        min_score: MinScore = None,
        under: Under = None,
        verify: Verify = True,
    ) -> JSONResponse:
        """Search by an uploaded image: the `poolvec search --json` object for one query."""
        name, within = one_line(image.filename or "upload"), folder(under)
        limit = ctx.settings.max_upload_bytes
        path = await run_in_threadpool(save_upload, image.file, ctx.upload_dir, limit, name)
        try:
            _, hits = await ctx.worker.search(SearchQuery(path, None, k, min_score, within, verify))
        except IndexerError as e:
            if e.kind not in IMAGE_KINDS:
                raise
            raise IndexerError(f"{name}: {e}", kind=e.kind) from None
        finally:
            os.unlink(path)
        return JSONResponse(query_json(name, hits))

    @api.get("/api/search", responses=answers)
    async def search_stored(
        id: Annotated[int, Query(ge=0, lt=1 << 63, description="Id of an indexed image (a hit's `id`).")],
        k: K = 10,
        min_score: MinScore = None,
        under: Under = None,
        verify: Verify = True,
    ) -> JSONResponse:
        """Search by an indexed image (its stored vector): the `poolvec search --json` object for one query."""
        query = SearchQuery(None, id, k, min_score, folder(under), verify)
        name, hits = await ctx.worker.search(query)
        return JSONResponse(query_json(name, hits))

    return api


def save_upload(src: BinaryIO, into: str, limit: int, name: str) -> str:
    """Copy an upload into the server's private folder under a random name; refuse it past ``limit`` bytes."""
    head = src.read(16)
    if not head:
        raise IndexerError(f"{name}: empty upload")
    suffix = ".jpg" if head.startswith(b"\xff\xd8\xff") else ".img"  # the JPEG decoder is chosen by suffix
    path = os.path.join(into, uuid.uuid4().hex + suffix)
    written = len(head)
    with open(path, "wb") as out:
        out.write(head)
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > limit:
                out.close()
                os.unlink(path)
                raise IndexerError(f"{name}: upload too large (more than {limit} bytes)", kind="too_large")
            out.write(chunk)
    return path


__all__ = ["router", "save_upload"]
