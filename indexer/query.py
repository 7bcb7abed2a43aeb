"""A search's two ends: what is searched (query images or vectors → query vectors) and what comes back (hits)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from poolvec.extractor import Extractor
from poolvec.extractor.local.regions import Box
from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus.schema import META_FIELDS


@dataclass(frozen=True)
class Hit:
    """One search result: the image path, its similarity (inner product of unit vectors = cosine), id, metadata,
    and its verification: ``verified`` (None: not checked — a vector query, an unreadable file, an image without
    enough detail), the ``inliers`` that agree, the matched region in the query and in the hit (``box_query``,
    ``box_hit``: ``(x0, y0, x1, y1)`` in fractions of each image), whether the query was ``mirrored``, and the
    query's ``region`` whose search found it (None: the whole query)."""

    path: str
    score: float
    id: int
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    verified: bool | None = None
    inliers: int = 0
    box_query: Box | None = None
    box_hit: Box | None = None
    mirrored: bool = False
    region: Box | None = None


def query_vectors(queries: list[Any], dim: int, extractor: Extractor) -> np.ndarray:
    """``[len(queries), dim]`` float32: vectors as given (checked), images embedded by ``extractor`` in one pass."""
    rows: list[np.ndarray | None] = [None] * len(queries)
    images: list[tuple[int, Any]] = []
    for i, q in enumerate(queries):
        if isinstance(q, (np.ndarray, torch.Tensor)) and q.ndim == 1:
            v = np.asarray(q.detach().cpu() if isinstance(q, torch.Tensor) else q, dtype=np.float32)
            if v.shape != (dim,):
                raise IndexerError(f"query vector has {v.shape[0]} dimensions, the index has {dim}")
            if not np.isfinite(v).all() or not np.abs(v).max() > 0:
                raise IndexerError("the query vector is all zeros or holds NaN/infinity: it matches nothing")
            rows[i] = v
        elif isinstance(q, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
            images.append((i, q))
        else:
            raise IndexerError(f"cannot search with a {type(q).__name__}: give a path, an image or a vector")
    if images:
        for (i, _), item in zip(images, extractor.embed_iter([q for _, q in images]), strict=True):
            if item.error is not None:
                raise IndexerError(f"{item.source}: {item.error}", kind=item.kind or "unreadable")
            rows[i] = item.vector
    return np.stack(rows).astype(np.float32)  # type: ignore[arg-type]


def to_hits(results: list[list[dict[str, Any]]], min_score: float | None = None) -> list[list[Hit]]:
    """Milvus's search results as hits, best first, those below ``min_score`` left out."""
    return [
        [
            Hit(
                path=h["entity"]["path"],
                score=float(h["distance"]),
                id=int(h["id"]),
                meta={f: h["entity"][f] for f in META_FIELDS if f != "path"},
            )
            for h in hits
            if min_score is None or float(h["distance"]) >= min_score
        ]
        for hits in results
    ]


__all__ = ["Hit", "query_vectors", "to_hits"]
