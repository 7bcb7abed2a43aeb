"""Verified matches of an :class:`~poolvec.indexer.ImageIndex` (a mixin): shortlists checked against their query by
local features (:mod:`poolvec.indexer.verify.verifier`), and how a verified search looks for a query's regions."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from poolvec.indexer.milvus import filters
from poolvec.indexer.query import Hit, query_vectors, to_hits
from poolvec.indexer.verify.policy import Verification
from poolvec.indexer.verify.search import RegionSearch
from poolvec.indexer.verify.verifier import Verifier

if TYPE_CHECKING:
    from poolvec.extractor import Extractor, ImageInput
    from poolvec.extractor.recipe import Recipe
    from poolvec.indexer.milvus.store import MilvusStore
    from poolvec.indexer.milvus.vector_index import VectorIndex


class Verifying:
    """Verification of search results (needs ``self.store``, ``self.vector_index``, ``self.extractor``, the recipe
    and the verifier the index made)."""

    store: MilvusStore
    vector_index: VectorIndex
    extractor: Extractor
    _recipe: Recipe | None
    _verifier: Verifier

    def verify(
        self,
        queries: Iterable[ImageInput],
        shortlists: list[list[Hit]],
        k: int = 10,
        *,
        under: str | os.PathLike[str] | None = None,
        min_score: float | None = None,
        verify: Verification | None = None,
    ) -> list[list[Hit]]:
        """The ``k`` best of each global search's shortlist (best first, :attr:`Verification.shortlist` wide) once
        checked against its query image, as :meth:`search_many` does with ``verify``: for callers that searched by
        vector (the server embeds many queries in one pass)."""
        policy = verify or self.verification
        search = self._crop_search(max(k, policy.shortlist), filters.build(under_folder=under))
        return self._verifier.search(list(queries), shortlists, k, policy, search, min_score)

    @property
    def verification(self) -> Verification:
        """How matches are verified when a call does not say (``verify=True``)."""
        return self._verifier.policy

    @verification.setter
    def verification(self, policy: Verification) -> None:
        self._verifier.policy = policy

    def _crop_search(self, k: int, expr: str) -> RegionSearch:
        """How a verified search looks for its query's regions: embedded in one pass, searched together."""

        def search(crops: list[Any]) -> list[list[Hit]]:
            vectors = query_vectors(crops, self._recipe.dim, self.extractor)  # type: ignore[union-attr]
            return to_hits(self.store.search(vectors.tolist(), k, self.vector_index, filter=expr))

        return search


__all__ = ["Verifying"]
