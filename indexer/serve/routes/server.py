"""The page, its static files, ``/healthz`` and ``/api/info``."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
from importlib import metadata
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse

from poolvec.extractor.recipe import Recipe
from poolvec.indexer.index import ImageIndex
from poolvec.indexer.serve import thumbs
from poolvec.indexer.serve.context import Context

STATIC = Path(__file__).resolve().parents[1] / "static"


def router(ctx: Context) -> APIRouter:
    """The page and the server's own routes of one app."""
    api = APIRouter()

    @api.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @api.get("/healthz", tags=["server"])
    async def healthz() -> dict[str, str]:
        """Liveness: answers while the server runs (no token needed)."""
        return {"status": "ok"}

    @api.get("/api/info", tags=["server"], dependencies=ctx.api)
    async def info() -> JSONResponse:
        """What the index holds and how it was built (`poolvec info --json`, fitted parameters left out), and the
        server's limits and counters."""
        data = await ctx.worker.call(index_info)
        data["server"] = {
            "version": version(),
            "max_upload_bytes": ctx.settings.max_upload_bytes,
            "max_k": ctx.settings.max_k,
            "thumbnail_sizes": list(thumbs.SIZES),
            "token_required": ctx.settings.token is not None,
            "worker": ctx.worker.snapshot(),
            "thumbnails_made": ctx.thumbnails.made,
        }
        return JSONResponse(data)

    return api


def index_info(index: ImageIndex) -> dict[str, Any]:
    """``poolvec info --json`` with the fitted matrices left out (megabytes, of no use to a reader)."""
    data = index.info()
    if data.get("config"):
        data["config"] = Recipe.from_dict(data["config"]).without_fit().to_dict()
    return data


def version() -> str:
    """poolvec's version."""
    try:
        return metadata.version("poolvec")
    except metadata.PackageNotFoundError:
        return "0"


__all__ = ["STATIC", "index_info", "router", "version"]
