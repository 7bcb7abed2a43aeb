"""``/api/dups``: the duplicate groups, with each member's stored metadata."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from poolvec.indexer.dups.find import DuplicateGroup
from poolvec.indexer.index import ImageIndex
from poolvec.indexer.milvus.schema import META_FIELDS
from poolvec.indexer.results import group_json, row_json
from poolvec.indexer.serve.context import Context
from poolvec.indexer.serve.models import Duplicates
from poolvec.indexer.serve.routes import ERRORS, Under, folder

#: Parameter sets whose groups are kept (the oldest are dropped past this).
KEPT = 16


def router(ctx: Context) -> APIRouter:
    """The duplicates route of one app."""
    api = APIRouter(tags=["duplicates"], dependencies=ctx.api)

    @api.get("/api/dups", responses={200: {"model": Duplicates}, **ERRORS})
    async def dups(
        threshold: Annotated[
            float | None, Query(description="Score at or above which images are copies (default: the index's).")
        ] = None,
        normalize: Annotated[bool, Query(description="Normalised scores (as `poolvec dups`), or raw cosines.")] = True,
        k: Annotated[int, Query(ge=1, le=100, description="Neighbours examined per image.")] = 10,
        under: Under = None,
        verify: Annotated[
            bool, Query(description="Join only pairs that local features show to correspond (as `poolvec dups`).")
        ] = True,
        offset: Annotated[int, Query(ge=0, description="Groups skipped (paging: `total` counts them all).")] = 0,
        limit: Annotated[
            int | None, Query(ge=1, le=100_000, description="Groups returned at most (default: all).")
        ] = None,
    ) -> JSONResponse:
        """Duplicate groups, exact copies (same bytes) first: `poolvec dups --json` with each member's metadata.
        The groups are found once per parameters and kept; `offset`/`limit` page them."""
        within = folder(under)
        end = None if limit is None else offset + limit

        def answer(idx: ImageIndex) -> dict[str, Any]:
            found = duplicates(idx, ctx, threshold, normalize, k, within, verify)
            return {**found, "total": len(found["groups"]), "groups": with_members(idx, found["groups"][offset:end])}

        return JSONResponse(await ctx.worker.call(answer))

    return api


def duplicates(
    index: ImageIndex,
    ctx: Context,
    threshold: float | None,
    normalize: bool,
    k: int,
    under: str | None,
    verify: bool = True,
) -> dict[str, Any]:
    """The groups and the parameters that found them; kept per parameters and collection size (the index does not
    change under the server, but a shared Milvus server can be written by others: a new count recomputes)."""
    default = index.default_threshold(normalize, verify)
    used = default if threshold is None else threshold
    key = (used, normalize, k, under, verify, len(index))
    if key in ctx.dups:
        return ctx.dups[key]
    found = {
        "threshold": used,
        "default_threshold": default,
        "normalized": normalize,
        "verified": verify,
        "k": k,
        "groups": index.find_duplicates(used, k=k, under=under, normalize=normalize, verify=verify),
    }
    if len(ctx.dups) >= KEPT:
        ctx.dups.clear()
    ctx.dups[key] = found
    return found


def with_members(index: ImageIndex, groups: list[DuplicateGroup]) -> list[dict[str, Any]]:
    """``groups`` as JSON, each member with its stored metadata, read for these groups only (a page of 50 groups
    is one read, whatever the collection holds); a member deleted since is left out."""
    ids = sorted({i for g in groups for i in g.ids})
    rows: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 1000):
        rows.update(index.store.get(ids[start : start + 1000], fields=META_FIELDS))

    def members(ids: list[int]) -> list[dict[str, Any]]:
        return [row_json(i, rows[i]) for i in sorted((i for i in ids if i in rows), key=lambda i: rows[i]["path"])]

    return [{**group_json(g), "members": members(g.ids)} for g in groups]


__all__ = ["duplicates", "router", "with_members"]
