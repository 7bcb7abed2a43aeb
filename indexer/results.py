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
    from poolvec.indexer.verify.compare import Comparison


def hit_json(rank: int, hit: Hit) -> dict[str, Any]:
    """One hit: ``{"rank", "path", "score", "id", "root", "size", "mtime_ns", "width", "height", "sha256",
    "verified", "inliers", "box_query", "box_hit", "mirrored", "region"}`` (plus ``path_bytes``/``root_bytes`` for a
    name that is not plain text). ``verified`` is null when the hit was not checked; boxes are ``[x0, y0, x1, y1]``
    in fractions of each image."""
    meta = dict(hit.meta)
    root = meta.pop("root", None)
    extra = names.json_fields(root, "root") if isinstance(root, str) else {}
    return {
        "rank": rank,
        **names.json_fields(hit.path),
        "score": hit.score,
        "id": hit.id,
        **extra,
        **meta,
        "verified": hit.verified,
        "inliers": hit.inliers,
        "box_query": _box(hit.box_query),
        "box_hit": _box(hit.box_hit),
        "mirrored": hit.mirrored,
        "region": _box(hit.region),
    }


def _box(box: tuple[float, float, float, float] | None) -> list[float] | None:
    return None if box is None else [round(float(v), 4) for v in box]


def row_json(image_id: int, row: dict[str, Any]) -> dict[str, Any]:
    """A stored image's metadata, keyed as in a hit: ``{"id", "path", "root", "size", …}`` (names as in a hit)."""
    meta = {k: v for k, v in row.items() if k not in ("id", "path", "root", "vector", "dirs")}
    root = row.get("root")
    extra = names.json_fields(root, "root") if isinstance(root, str) else {}
    return {"id": image_id, **names.json_fields(row["path"]), **extra, **meta}


def query_json(query: str, hits: Sequence[Hit]) -> dict[str, Any]:
    """The results of one query: ``{"query": NAME, "hits": [hit, …]}``, best first, ranks from 1."""
    return {**names.json_fields(query, "query"), "hits": [hit_json(rank, h) for rank, h in enumerate(hits, 1)]}


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """``poolvec compare --json``: ``{"a", "b", "verified", "verdict", "similarity", "inliers", "mirrored", "box_a",
    "box_b"}`` (boxes ``[x0, y0, x1, y1]`` in fractions of each image, null when nothing matched)."""
    c = comparison.correspondence
    return {
        **names.json_fields(comparison.a, "a"),
        **names.json_fields(comparison.b, "b"),
        "verified": c.verified,
        "verdict": comparison.verdict(),
        "similarity": comparison.similarity,
        "inliers": c.inliers,
        "mirrored": c.mirrored,
        "box_a": _box(c.box_a),
        "box_b": _box(c.box_b),
    }


def group_json(group: DuplicateGroup) -> dict[str, Any]:
    """One duplicate group: ``{"kind": "exact"|"near", "score", "paths": [...], "pairs": [...]}`` (plus
    ``paths_bytes``). Each pair names two members by their index in ``paths``, with its score and, when verified,
    its inliers and the matched box in each image."""
    item: dict[str, Any] = {"kind": group.kind, "score": group.score, "paths": [names.shown(p) for p in group.paths]}
    if any(not names.is_text(p) for p in group.paths):
        item["paths_bytes"] = [names.json_fields(p).get("path_bytes") for p in group.paths]
    at = {i: n for n, i in enumerate(group.ids)}  # ids are in the order of paths
    item["pairs"] = [
        {
            "a": at[p.a],
            "b": at[p.b],
            "score": p.score,
            "verified": p.verified,
            "inliers": p.inliers,
            "box_a": _box(p.box_a),
            "box_b": _box(p.box_b),
        }
        for p in group.pairs
        if p.a in at and p.b in at
    ]
    return item
