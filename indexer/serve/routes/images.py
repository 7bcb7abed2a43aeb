"""``/api/images/{id}/thumbnail``: JPEG thumbnails of indexed images, by id only (files are never named by a
request)."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from poolvec.extractor.errors import ImageError
from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus import names
from poolvec.indexer.serve import thumbs
from poolvec.indexer.serve.context import Context
from poolvec.indexer.serve.routes import ERRORS


def router(ctx: Context) -> APIRouter:
    """The image routes of one app."""
    api = APIRouter(tags=["images"], dependencies=ctx.api)
    answers = {200: {"content": {"image/jpeg": {}}}, 304: {"description": "Not modified"}, **ERRORS}

    @api.get("/api/images/{image_id}/thumbnail", response_class=Response, responses=answers)
    async def thumbnail(
        image_id: Annotated[int, PathParam(ge=0, lt=1 << 63, description="Id of an indexed image (a hit's `id`).")],
        request: Request,
        size: Annotated[int, Query(description=f"Longest side: one of {', '.join(map(str, thumbs.SIZES))}.")] = 256,
    ) -> Response:
        """A JPEG thumbnail of an indexed image, by id (files are never named by the request)."""
        if size not in thumbs.SIZES:
            raise IndexerError(f"size must be one of {', '.join(map(str, thumbs.SIZES))}, got {size}", kind="invalid")
        row = (await ctx.worker.lookup([image_id])).get(image_id)
        if row is None:
            raise IndexerError(f"no image with id {image_id} in the index", kind="not_found")
        try:
            thumb = await run_in_threadpool(ctx.thumbnails.get, image_id, row["path"], size)
        except ImageError as e:
            raise IndexerError(f"{names.shown(row['path'])}: {e.reason}", kind=e.kind) from None
        headers = {"ETag": thumb.etag, "Cache-Control": "private, max-age=3600"}
        if request.headers.get("if-none-match") == thumb.etag:
            return Response(status_code=304, headers=headers)
        return Response(thumb.data, media_type="image/jpeg", headers=headers)

    return api


__all__ = ["router"]
