"""An index's verification: the policy in force, the local-feature cache it fills, and the two places it is used
(a search's shortlist, the candidate pairs of ``dups``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from poolvec.extractor.recipe import Runtime
from poolvec.indexer.dups import find as duplicates
from poolvec.indexer.dups.find import Judge
from poolvec.indexer.dups.verify import verified as verified_pairs
from poolvec.indexer.query import Hit
from poolvec.indexer.verify.cache import FeatureCache
from poolvec.indexer.verify.policy import Verification
from poolvec.indexer.verify.search import RegionSearch, verified_search


class Verifier:
    """Checks an index's matches by local features (:attr:`policy` unless a call names another); the features of
    files and queries are computed when first needed and kept (:class:`FeatureCache`, one per policy)."""

    def __init__(self, runtime: Callable[[], Runtime], policy: Verification | None = None) -> None:
        self.policy = policy or Verification()
        self._runtime = runtime
        self._cache: FeatureCache | None = None

    def resolve(self, verify: bool | Verification) -> Verification | None:
        """The policy a call asked for: ``True`` this verifier's, ``False`` none, or the one it names."""
        if verify is False:
            return None
        return self.policy if verify is True else verify

    def cache(self, policy: Verification) -> FeatureCache:
        """The local features computed under ``policy`` (a new policy starts a new cache)."""
        if self._cache is None or self._cache.verification != policy:
            if self._cache is not None:
                self._cache.close()
            self._cache = FeatureCache(policy, self._runtime())
        return self._cache

    def search(
        self,
        queries: list[Any],
        shortlists: list[list[Hit]],
        k: int,
        policy: Verification,
        search_regions: RegionSearch,
        min_score: float | None,
    ) -> list[list[Hit]]:
        """Each image query's ``k`` best hits, verified (:func:`verified_search`); a vector query's as they came."""
        cache = self.cache(policy)
        return [
            hits[:k] if _is_vector(q) else verified_search(q, hits, k, cache, policy, search_regions, min_score)
            for q, hits in zip(queries, shortlists, strict=True)
        ]

    def judge(self, policy: Verification, floor: float, normalize: bool, unverified_threshold: float) -> Judge:
        """How ``dups`` joins candidate pairs from ``floor``: verified, or past the scores that need no looking
        (:func:`~poolvec.indexer.dups.verify.verified`); ``unverified_threshold`` is the raw-cosine threshold used
        without verification, which an unverifiable pair must reach."""
        if normalize:
            fallbacks = duplicates.UNVERIFIABLE_NORMALIZED, duplicates.SURE_NORMALIZED, duplicates.RETRY_NORMALIZED
        else:
            fallbacks = unverified_threshold, duplicates.SURE_RAW, duplicates.RETRY_RAW
        return verified_pairs(self.cache(policy), policy, floor, *fallbacks)

    def close(self) -> None:
        """Stop the feature threads."""
        if self._cache is not None:
            self._cache.close()
            self._cache = None


def _is_vector(query: Any) -> bool:
    return isinstance(query, (np.ndarray, torch.Tensor)) and query.ndim == 1


__all__ = ["Verifier"]
