"""The API's response models, derived from the row schema (:mod:`poolvec.indexer.milvus.schema`): a field added to
the rows appears in every hit and member, with its type."""

# No `from __future__ import annotations`: pydantic reads these classes' annotations at run time.
from typing import Any

from pydantic import BaseModel, create_model

from poolvec.indexer.milvus.schema import BY_NAME, META_FIELDS


def _meta() -> dict[str, Any]:
    return {name: (BY_NAME[name].python_type, ...) for name in META_FIELDS}


#: One hit, as `poolvec search --json` prints it: rank, path, score, id, then the row's metadata.
HitModel = create_model(
    "HitModel",
    __doc__="One hit, as `poolvec search --json` prints it.",
    rank=(int, ...),
    score=(float, ...),
    id=(int, ...),
    **_meta(),
    verified=(bool | None, None),
    inliers=(int, 0),
    box_query=(list[float] | None, None),
    box_hit=(list[float] | None, None),
    mirrored=(bool, False),
    region=(list[float] | None, None),
)
#: A stored image's metadata, keyed as in a hit.
Member = create_model("Member", __doc__="An indexed image: its id and stored metadata.", id=(int, ...), **_meta())


class SearchResult(BaseModel):
    """The results of one query, as one element of `poolvec search --json`."""

    query: str
    hits: list[HitModel]  # type: ignore[valid-type]


class Pair(BaseModel):
    """Why two members of a group were joined: their indexes in `paths`, score, and verification (boxes
    `[x0, y0, x1, y1]` in fractions of each image)."""

    a: int
    b: int
    score: float
    verified: bool | None = None
    inliers: int = 0
    box_a: list[float] | None = None
    box_b: list[float] | None = None


class Group(BaseModel):
    """One group of `poolvec dups --json`, plus each member's stored metadata."""

    kind: str
    score: float
    paths: list[str]
    pairs: list[Pair] = []
    members: list[Member]  # type: ignore[valid-type]


class Duplicates(BaseModel):
    """`GET /api/dups`: the groups (``offset``/``limit`` of ``total``) and the settings that made them."""

    threshold: float
    default_threshold: float
    normalized: bool
    verified: bool
    k: int
    total: int
    groups: list[Group]


class Problem(BaseModel):
    """An error: one line saying what went wrong."""

    detail: str


__all__ = ["Duplicates", "Group", "HitModel", "Member", "Problem", "SearchResult"]
