"""The review of duplicates over HTTP: decisions, the copy to keep of a page of groups, resolutions and undo — the
same core calls as ``poolvec decide``, ``dups --suggest/--resolve`` and ``poolvec undo`` (behind the token, when one
is set; the server binds loopback by default)."""

# No `from __future__ import annotations`: FastAPI reads the route signatures.
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse

from poolvec.indexer.errors import IndexerError
from poolvec.indexer.index import ImageIndex
from poolvec.indexer.milvus import names
from poolvec.indexer.review.keeper import KeepRules
from poolvec.indexer.review.resolve import ACTIONS
from poolvec.indexer.serve.context import Context
from poolvec.indexer.serve.routes import ERRORS, folder


def router(ctx: Context) -> APIRouter:
    """The review routes of one app."""
    api = APIRouter(tags=["review"], dependencies=ctx.api)

    @api.post("/api/decisions", responses=ERRORS)
    async def decide(
        kind: Annotated[Literal["not-duplicates", "keep", "forget"], Body(description="The decision.")],
        ids: Annotated[list[int], Body(min_length=1, max_length=10_000, description="Ids of indexed images.")],
    ) -> JSONResponse:
        """Record a decision (as `poolvec decide`): these images are not duplicates, keep these, or forget theirs."""
        return JSONResponse(await ctx.worker.call(lambda idx: _decide(idx, ctx, kind, ids)))

    @api.get("/api/suggestions", responses=ERRORS)
    async def suggestions(
        ids: Annotated[list[int], Query(min_length=2, max_length=200, description="The members of one group.")],
        rules: Annotated[str | None, Query(description="Order of the keep rules (as `dups --rules`).")] = None,
    ) -> JSONResponse:
        """The copy of one group to keep, why, and how the others were made from it (as `dups --suggest`). Members
        are named by their position in ``ids`` (63-bit ids do not survive JavaScript numbers)."""
        return JSONResponse(await ctx.worker.call(lambda idx: _suggestion(idx, ids, rules)))

    @api.post("/api/resolve", responses=ERRORS)
    async def resolve(
        action: Annotated[Literal[ACTIONS], Body(description="move | hardlink | symlink | delete")],  # type: ignore[valid-type]
        trash: Annotated[str, Body(description="Folder the duplicates go to (an absolute path on the server).")],
        dry_run: Annotated[bool, Body(description="Only count (the default): nothing is touched.")] = True,
        rules: Annotated[str | None, Body(description="Order of the keep rules.")] = None,
        under: Annotated[str | None, Body(description="Only groups under this folder.")] = None,
    ) -> JSONResponse:
        """Apply the suggestions to every group (as `dups --resolve`): a dry run answers counts and bytes."""
        target = folder(trash)
        if target is None:
            raise IndexerError("trash: give the absolute path of a folder", kind="invalid")

        return JSONResponse(
            await ctx.worker.call(lambda idx: _resolve(idx, ctx, action, target, dry_run, rules, folder(under)))
        )

    @api.post("/api/undo", responses=ERRORS)
    async def undo() -> JSONResponse:
        """Reverse the last resolution (as `poolvec undo`)."""
        return JSONResponse(await ctx.worker.call(lambda idx: _undo(idx, ctx)))

    return api


def _decide(idx: ImageIndex, ctx: Context, kind: str, ids: list[int]) -> dict[str, Any]:
    paths = _paths(idx, ids)
    n = {"not-duplicates": idx.decide_distinct, "keep": idx.decide_keep, "forget": idx.forget_decisions}[kind](paths)
    ctx.dups.clear()  # the groups change
    return {"kind": kind, "stored": n}


def _suggestion(idx: ImageIndex, ids: list[int], rules: str | None) -> dict[str, Any]:
    paths = _paths(idx, ids)
    s = idx.suggest_keeper(paths, KeepRules.parse(rules))
    at = {p: n for n, p in enumerate(paths)}
    return {
        "keep": at[s.keep],
        "reason": s.reason,
        "others": [at[p] for p in s.others],
        "derived": {str(at[p]): how for p, how in s.derived.items()},
    }


def _resolve(
    idx: ImageIndex, ctx: Context, action: str, trash: str, dry_run: bool, rules: str | None, under: str | None
) -> dict[str, Any]:
    groups = idx.find_duplicates(under=under)
    report = idx.resolve(groups, action, trash=trash, rules=KeepRules.parse(rules), dry_run=dry_run)
    if not dry_run:
        ctx.dups.clear()
    return {
        "action": report.action,
        "dry_run": report.dry_run,
        "groups": report.groups,
        "files": report.files,
        "bytes_freed": report.bytes_freed,
        "refused": [{"path": names.shown(p), "reason": r} for p, r in report.refused],
        "resumed": report.resumed,
    }


def _undo(idx: ImageIndex, ctx: Context) -> dict[str, Any]:
    report = idx.undo()
    ctx.dups.clear()
    return {"restored": report.restored, "rows": report.rows, "lost": [names.shown(p) for p in report.lost]}


def _paths(index: ImageIndex, ids: list[int]) -> list[str]:
    """The stored paths of ``ids``, in order; an unknown id is a 404."""
    rows = index.store.get(sorted(set(ids)), fields=("path",))
    missing = [i for i in ids if i not in rows]
    if missing:
        raise IndexerError(f"no image with id {missing[0]} in the index", kind="not_found")
    return [rows[i]["path"] for i in ids]


__all__ = ["router"]
