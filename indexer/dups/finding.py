"""Duplicate finding of an :class:`~poolvec.indexer.ImageIndex` (a mixin): the index's arguments checked, its
verification, decisions and reference folder applied around :func:`poolvec.indexer.dups.find.find_duplicates`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from poolvec.indexer.dups import find as duplicates
from poolvec.indexer.dups.find import DuplicateGroup
from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus import filters
from poolvec.indexer.review.honour import distinct_files, honouring, reference_groups
from poolvec.indexer.verify.policy import Verification

if TYPE_CHECKING:
    from poolvec.extractor.recipe import Recipe
    from poolvec.indexer.milvus.store import MilvusStore
    from poolvec.indexer.verify.verifier import Verifier


class FindingDuplicates:
    """``dups``: exact and near-duplicate groups (needs ``self.store``, the recipe, the verifier, ``decisions()`` and
    ``_refuse_if_pending()``)."""

    store: MilvusStore
    _recipe: Recipe | None
    _verifier: Verifier

    def iter_duplicates(
        self,
        threshold: float | None = None,
        *,
        k: int = 10,
        under: str | os.PathLike[str] | None = None,
        normalize: bool = True,
        verify: bool | Verification = True,
        decided: bool = True,
        against: str | os.PathLike[str] | None = None,
        progress: duplicates.Progress | None = None,
    ) -> Iterator[DuplicateGroup]:
        """The groups :meth:`find_duplicates` lists, yielded as they are found: the exact copies as soon as the index
        has been read once, then the near-duplicates. Arguments are checked before it returns."""
        if self._recipe is None:
            return iter(())
        self._refuse_if_pending()
        policy = self._verifier.resolve(verify)
        if threshold is None:
            threshold = self.default_threshold(normalize, verify=policy is not None)
        low = -1.0 if normalize else 0.0
        if not low < threshold <= 1:
            raise IndexerError(f"threshold must be in ({low:g}, 1], got {threshold}", kind="invalid")
        expr = filters.build(under_folder=under)
        beta = duplicates.NORMALIZE_BETA if normalize else None
        judge = None
        if policy is not None:
            judge = self._verifier.judge(policy, threshold, normalize, self.default_threshold(False))
        if decided:
            judge = honouring(self.store, self.decisions(), judge or duplicates.by_threshold(threshold))
        archive = os.path.abspath(against) if against is not None else None
        found = duplicates.find_duplicates(self.store, threshold, k, expr, beta, judge, progress)
        return (
            g
            for g in found
            if (not decided or g.kind != "exact" or distinct_files(g.paths) > 1)
            and (archive is None or reference_groups([g], archive))
        )

    def find_duplicates(
        self,
        threshold: float | None = None,
        *,
        k: int = 10,
        under: str | os.PathLike[str] | None = None,
        normalize: bool = True,
        verify: bool | Verification = True,
        decided: bool = True,
        against: str | os.PathLike[str] | None = None,
        progress: duplicates.Progress | None = None,
    ) -> list[DuplicateGroup]:
        """Groups of copies: exact (same bytes) first, then near-duplicates.

        With ``verify`` (the default) a pair of neighbours scoring at least ``threshold`` is joined only when local
        features show the two images correspond (:mod:`poolvec.indexer.dups.verify`), so look-alikes are never
        grouped; without it, every pair at or above ``threshold`` is. ``normalize`` (the default) compares
        normalised scores instead of cosines (:func:`~poolvec.indexer.dups.graph.normalised`: each image's
        similarity to its nearest others is taken off). ``threshold`` defaults to what measured best
        (:meth:`default_threshold`). With ``decided`` (the default) the user's decisions hold: pictures said not to
        be duplicates are not joined, and copies that are links to one file are one file. ``against`` keeps only
        the groups with a copy inside that folder and one outside it (a camera card against the archive).
        ``progress(stage, done, total)`` hears how the reading ("read") and the neighbour search ("neighbours") go.
        """
        return list(
            self.iter_duplicates(
                threshold,
                k=k,
                under=under,
                normalize=normalize,
                verify=verify,
                decided=decided,
                against=against,
                progress=progress,
            )
        )

    def default_threshold(self, normalize: bool = False, verify: bool = False) -> float:
        """The ``dups`` threshold for this index: verified pairs are candidates from a lower score; tuned
        (learned-whitening) embeddings score copies lower than plain GeM, so they get their own
        (docs/EVALUATION.md, "Duplicate pairs")."""
        if verify:
            return duplicates.VERIFY_FROM_NORMALIZED if normalize else duplicates.VERIFY_FROM_RAW
        if normalize:
            return duplicates.THRESHOLD_NORMALIZED
        whitened = self._recipe is not None and self._recipe.learns_whitening
        return duplicates.THRESHOLD_WHITENED if whitened else duplicates.THRESHOLD_PLAIN


__all__ = ["FindingDuplicates"]
