"""The JSON shapes of results, shared by the CLI's ``--json`` output and the HTTP API (``poolvec serve``), so that
a client reading one can read the other. File names go out as :func:`poolvec.indexer.milvus.names.json_fields` writes
them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from poolvec.indexer.milvus import names

if TYPE_CHECKING:  # for annotations only: importing this module loads neither torch nor pymilvus
    from poolvec.indexer.dups.find import DuplicateGroup
    from poolvec.indexer.query import Hit


def hit_json(rank: int, hit: Hit) -> dict[str, Any]:
    """One hit: ``{"rank", "path", "score", "id", "root", "size", "mtime_ns", "width", "height", "sha256"}``
    (plus ``path_bytes``/``root_bytes`` for a name that is not plain text)."""
    meta = dict(hit.meta)
    root = meta.pop("root", None)
    extra = names.json_fields(root, "root") if isinstance(root, str) else {}
    return {"rank": rank, **names.json_fields(hit.path), "score": hit.score, "id": hit.id, **extra, **meta}


def row_json(image_id: int, row: dict[str, Any]) -> dict[str, Any]:
    """A stored image's metadata, keyed as in a hit: ``{"id", "path", "root", "size", …}`` (names as in a hit)."""
    meta = {k: v for k, v in row.items() if k not in ("id", "path", "root", "vector", "dirs")}
    root = row.get("root")
    extra = names.json_fields(root, "root") if isinstance(root, str) else {}
    return {"id": image_id, **names.json_fields(row["path"]), **extra, **meta}


def query_json(query: str, hits: Sequence[Hit]) -> dict[str, Any]:
    """The results of one query: ``{"query": NAME, "hits": [hit, …]}``, best first, ranks from 1."""
    return {**names.json_fields(query, "query"), "hits": [hit_json(rank, h) for rank, h in enumerate(hits, 1)]}


def group_json(group: DuplicateGroup) -> dict[str, Any]:
    """One duplicate group: ``{"kind": "exact"|"near", "score", "paths": [...]}`` (plus ``paths_bytes``)."""
    item: dict[str, Any] = {"kind": group.kind, "score": group.score, "paths": [names.shown(p) for p in group.paths]}
    if any(not names.is_text(p) for p in group.paths):
        item["paths_bytes"] = [names.json_fields(p).get("path_bytes") for p in group.paths]
    return item
