"""``ImageIndex``: a folder of images ↔ a Milvus collection, searchable by image.

One object, one URI (as pymilvus's ``MilvusClient``): a path is Milvus Lite, ``http://host:19530`` a server.
The collection remembers the :class:`~poolvec.extractor.Recipe` that produced its vectors; opening it rebuilds the
same :class:`~poolvec.extractor.Extractor`, and another recipe is refused with the fields that differ. The rules of
an index live here, once: the CLI, the server and the Ray engine only translate to them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from poolvec.extractor import Embedded, Extractor, ExtractorError, ImageInput, Tuning
from poolvec.extractor.files import IMAGE_EXTENSIONS, iter_image_files, require_existing
from poolvec.extractor.recipe import Recipe, Runtime
from poolvec.extractor.tuning import TuneProgress
from poolvec.indexer.dups.current import keeps_graph_current
from poolvec.indexer.dups.finding import FindingDuplicates
from poolvec.indexer.errors import BackendError, ConfigMismatchError, IndexerError
from poolvec.indexer.milvus import filters
from poolvec.indexer.milvus.lite import DEFAULT_COLLECTION, DEFAULT_URI
from poolvec.indexer.milvus.schema import path_id
from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.milvus.vector_index import VectorIndex
from poolvec.indexer.ops import copy as copying
from poolvec.indexer.ops import dba, pending, retune, sync
from poolvec.indexer.ops.ray.options import RayOptions, parse_engine
from poolvec.indexer.ops.sync import IndexReport, Progress
from poolvec.indexer.options import EmbeddingOptions, Shard
from poolvec.indexer.query import Hit, query_vectors, to_hits
from poolvec.indexer.review.reviewing import Reviewing
from poolvec.indexer.verify.policy import Verification
from poolvec.indexer.verify.verifier import Verifier
from poolvec.indexer.verify.verifying import Verifying

if TYPE_CHECKING:
    from poolvec.pooling import Pipeline

#: How :meth:`ImageIndex.add_folder` embeds: in this process (``"local"``), or on Ray (``"ray"`` or its options).
Engine = str | RayOptions


class ImageIndex(FindingDuplicates, Verifying, Reviewing):
    """A searchable index of images in one Milvus collection (its duplicates found with :class:`FindingDuplicates`'
    methods, its matches verified with :class:`Verifying`'s, reviewed with :class:`Reviewing`'s).

    Args:
        uri: Milvus Lite database path (default ``./poolvec.db``) or ``http(s)://host:port`` of a server.
        collection: collection name; one index per collection.
        extractor: the embedder for a new index, or to check against an existing one (a different recipe is
            refused). ``None``: an existing index rebuilds its own; a new one uses ``Extractor()``.
        embedding: options instead of an extractor (the CLI's and the server's way): a new index is built with
            them; an existing one keeps its own recipe, and refuses options that ask for another. Their runtime
            part is the runtime.
        token: Milvus server token (``user:password`` or an API key).
        vector_index: the Milvus vector index of a new collection (HNSW by default); an existing collection keeps
            its own, and asking for another is refused.
        runtime: the speed of the rebuilt extractor (:class:`~poolvec.extractor.Runtime`); ``batch_size``,
            ``workers``, ``device``, ``precision`` and ``optimize`` are its fields, for convenience.
        timeout: seconds to wait for a Milvus server.
        fit_limit: images sampled (evenly) from the first folder to fit pooling that learns from data (PCA…).
        tuning: how a new index whose pooling has a learned whitening (``lw``, the default) fits it on its own
            photos before indexing them (:class:`~poolvec.extractor.Tuning`); ``False`` keeps the extractor's fit as
            it is (the packaged one, for the default backbone). Re-fit later with :meth:`tune`.
    """

    def __init__(
        self,
        uri: str | os.PathLike[str] = DEFAULT_URI,
        collection: str = DEFAULT_COLLECTION,
        *,
        extractor: Extractor | None = None,
        embedding: EmbeddingOptions | None = None,
        token: str | None = None,
        vector_index: VectorIndex | None = None,
        runtime: Runtime | None = None,
        batch_size: int | None = None,
        workers: int = 2,
        device: str = "auto",
        precision: str = "auto",
        optimize: bool | str = "auto",
        timeout: float = 10.0,
        fit_limit: int = 2000,
        tuning: Tuning | bool = True,
    ) -> None:
        self.uri = os.fspath(uri)
        self.collection = collection
        if runtime is None:
            runtime = (
                embedding.runtime
                if embedding is not None
                else Runtime(batch_size, workers, device, precision, optimize)
            )
        self.runtime = runtime
        self.store = MilvusStore(self.uri, collection, token=token, timeout=timeout)
        self.fit_limit = fit_limit
        self.tuning: Tuning | None = Tuning() if tuning is True else (tuning or None)
        self._extractor = extractor
        self._known: dict[str, Embedded] = {}  # sampled images embedded while tuning, reused by the first sync
        self._recipe: Recipe | None = None
        self._fingerprint: str | None = None
        self._pending: dict[str, Any] | None = None  # an interrupted tune, dba or reroot (ops.pending)
        self._verifier = Verifier(lambda: self._extractor.runtime if self._extractor is not None else self.runtime)
        self.vector_index = vector_index or VectorIndex()
        if self.store.exists():
            self._recipe, self._fingerprint, stored_index = self.store.read_config()
            if vector_index is not None and vector_index.differs_from(stored_index):
                raise IndexerError(
                    f"the collection already has a {stored_index.kind} index {stored_index.params}: an existing "
                    "collection keeps its vector index (drop it and index again to change it)"
                )
            self.vector_index = stored_index
            self._pending = pending.get(self.store)
            self.store.load()
        if extractor is None and embedding is not None and (self._recipe is None or not embedding.is_default_recipe):
            extractor = embedding.extractor()  # an existing index checks it below; its own recipe otherwise
        if extractor is not None:
            self.extractor = extractor

    # -- embedder ------------------------------------------------------------------------------------------
    @property
    def extractor(self) -> Extractor:
        """The embedder of this index (rebuilt from the stored recipe on first use)."""
        if self._extractor is None:
            try:
                if self._recipe is not None:
                    self._extractor = Extractor.from_recipe(self._recipe, self.runtime)
                else:
                    self._extractor = Extractor(runtime=self.runtime)
            except ExtractorError as e:
                raise IndexerError(f"cannot rebuild the embedder of {self.collection!r}: {e}") from None
        return self._extractor

    @extractor.setter
    def extractor(self, extractor: Extractor) -> None:
        """Embed with ``extractor``: a new index is built with it; an existing one takes it if it makes the stored
        vectors (the same recipe: with the index's own fit), and refuses any other, naming what differs."""
        self._extractor = extractor if self._recipe is None or self._pending is not None else self._check(extractor)

    @property
    def recipe(self) -> Recipe | None:
        """The stored recipe (None until the first image is added)."""
        return self._recipe

    @property
    def config(self) -> dict[str, Any] | None:
        """The stored recipe as stored (:meth:`Recipe.to_dict`); None until the first image is added."""
        return self._recipe.to_dict() if self._recipe is not None else None

    def _check(self, extractor: Extractor) -> Extractor:
        """The extractor to use with this index: ``extractor`` itself if it makes the stored vectors; a twin with the
        stored fitted pooling if it is the same recipe and the index tuned itself; else a clear refusal."""
        assert self._recipe is not None
        wanted = extractor.recipe
        if wanted.fingerprint() == self._fingerprint:
            return extractor
        if self._recipe.tuning is not None and self._recipe.same_recipe(wanted):
            return extractor.with_pipeline(_pipeline(self._recipe))
        changes = self._recipe.diff(wanted) or ["fitted parameters differ"]
        raise ConfigMismatchError(
            f"collection {self.collection!r} was built with another embedding config — "
            + "; ".join(changes[:6])
            + ". Use the same settings, or another --collection / --db."
        )

    def _ensure_collection(self, sample: list[str], on_tune: TuneProgress | None = None) -> bool:
        """Create the collection on first write (False, and nothing created, while there is nothing to store);
        pooling that learns from data is fitted on ``sample`` first (``lw``: by :func:`~.ops.retune.fit`)."""
        if self._recipe is not None:
            return True
        if not sample:
            return False
        ex = self.extractor
        record = None
        if ex.recipe.learns_whitening and (self.tuning is not None or ex.pipeline.needs_fit):
            ex = self._extractor = ex.with_pipeline(_pipeline(ex.recipe))  # the caller's extractor stays as it is
            record, self._known = retune.fit(ex, sample, self.tuning or Tuning(), on_tune)
        elif ex.pipeline.needs_fit:
            ex.fit(sample[:: max(1, len(sample) // self.fit_limit)], limit=self.fit_limit)
        recipe = ex.recipe.with_provenance(record)
        try:
            self.store.create(recipe, self.vector_index)
        except BackendError:
            if not self.store.exists():  # not a race with another shard creating the same collection
                raise
            self._recipe, self._fingerprint, self.vector_index = self.store.read_config()
            self._extractor = self._check(ex)
            return True
        self._recipe, self._fingerprint = recipe, recipe.fingerprint()
        return True

    # -- writing -------------------------------------------------------------------------------------------
    @keeps_graph_current(build=True)
    def add_folder(
        self,
        root: str | os.PathLike[str],
        *,
        recursive: bool = True,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        follow_symlinks: bool = False,
        prune: bool = False,
        shard: Shard | tuple[int, int] | str | None = None,
        progress: Progress | None = None,
        on_tune: TuneProgress | None = None,
        engine: Engine = "local",
    ) -> IndexReport:
        """Sync the images under ``root`` into the index.

        New and changed files (by path, size, mtime) are embedded, unchanged ones skipped, files whose content
        is already indexed reuse that vector; with ``prune`` the rows of files that are gone are deleted.
        ``shard=(i, n)`` (or ``"i/n"``) takes only this process's share of the files (stable by path), so n processes
        or machines can split one job into the same Milvus server. A new index tunes itself on these files first
        (see ``tuning``; ``on_tune(done, total)`` reports its progress). ``engine="ray"`` (or a
        :class:`~poolvec.indexer.ops.ray.options.RayOptions`) embeds on a Ray cluster's actors: same rules, same
        vectors.
        """
        ray = parse_engine(engine)  # before tuning: a missing Ray is said at once
        part = Shard.parse(shard)
        require_existing([root])
        top = Path(root).expanduser().absolute()
        unread: list[tuple[str, str]] = []
        scan = iter_image_files(
            top,
            recursive=recursive,
            extensions=extensions,
            follow_symlinks=follow_symlinks,
            on_skip=lambda path, why: unread.append((path, why)),
        )
        files = [str(p) for p in scan]
        base = str(top if top.is_dir() else top.parent)
        self._ensure_collection(files, on_tune)
        if part is not None:
            files = [f for f in files if part.takes(path_id(f))]
        report = self._sync(files, [base] * len(files), progress, on_tune, ray)
        report.failed[:0] = unread
        if prune and top.is_dir():
            report.removed = sync.prune(self.store, base)
        return report

    @keeps_graph_current(build=True)
    def add(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        progress: Progress | None = None,
        on_tune: TuneProgress | None = None,
        engine: Engine = "local",
    ) -> IndexReport:
        """Index image files (each file's folder is its root); unchanged files are skipped. ``engine`` as in
        :meth:`add_folder`."""
        files = [os.path.abspath(os.fspath(p)) for p in paths]
        return self._sync(files, [os.path.dirname(p) for p in files], progress, on_tune, parse_engine(engine))

    def _refuse_if_pending(self, unless: str | None = None) -> None:
        """Refuse to use an index that an interrupted rewrite left half done (but the command that finishes it)."""
        if self._pending is not None and self._pending["op"] != unless:
            raise pending.refuse(self._pending, f"{self.uri} (collection {self.collection!r})")

    def _sync(
        self,
        files: list[str],
        roots: list[str],
        progress: Progress | None,
        on_tune: TuneProgress | None,
        ray: RayOptions | None,
    ) -> IndexReport:
        self._refuse_if_pending()
        if not self._ensure_collection(files, on_tune):
            return IndexReport()
        transform = dba.transform(self.store, self.vector_index)
        known, self._known = self._known, {}
        if ray is None:
            return sync.sync(self.store, self.extractor, files, roots, progress, transform, known)
        from poolvec.indexer.ops.ray import engine as ray_engine  # imports Ray only when it is asked for

        assert self._recipe is not None
        # The extractor already built (tuned, or given) sets the actors' runtime; none is built just for that.
        runtime = self._extractor.runtime if self._extractor is not None else self.runtime
        return ray_engine.index_files(
            self.store,
            self._recipe,
            runtime,
            files,
            roots,
            ray,
            vector_index=self.vector_index,
            progress=progress,
            transform=transform,
            known=known,
        )

    def tune(
        self,
        tuning: Tuning | None = None,
        *,
        on_tune: TuneProgress | None = None,
        progress: retune.RewriteProgress | None = None,
    ) -> retune.TuneReport:
        """Re-fit the learned whitening on the collection as it is now, then re-embed every image with it.

        Costs a fit plus one more pass over every file (raw vectors are not stored). Resumable: interrupted, it
        leaves the index refusing searches until ``tune`` is run again, which finishes the same fit. Rows whose
        files are gone or changed are removed (and listed). DBA, if applied, is cleared (apply it again).
        """
        if self._recipe is None:
            raise IndexerError("the index is empty: add images before tuning it")
        self._refuse_if_pending(unless="tune")
        state = self._pending
        resumed = state is not None
        if state is None:
            if not self._recipe.learns_whitening:
                raise IndexerError(
                    f"the pooling of {self.collection!r} ({self._recipe.spec}) has no learned whitening "
                    "(lw) to tune; build a new index with the default pooling, or add '| lw | l2' to yours"
                )
            ex = Extractor.from_recipe(self._recipe.without_fit(), self.runtime)  # the packaged prior, where one fits
            files = sorted(r["path"] for r in sync.iter_rows(self.store, ("path",)) if os.path.isfile(r["path"]))
            if not files:
                raise IndexerError("none of the indexed files exists any more: nothing to tune on")
            self.tuning = tuning or self.tuning or Tuning()
            record, _ = retune.fit(ex, files, self.tuning, on_tune)
            recipe = ex.recipe.with_provenance(record)
            state = self._pending = retune.start(self.store, recipe)
        else:
            recipe = retune.pending_recipe(self.store, state)
            ex = Extractor.from_recipe(recipe, self.runtime)
        self._known = {}
        report = retune.rewrite(self.store, ex, state, progress)
        report.resumed = resumed
        report.dba_cleared = retune.finish(self.store, state, dba.PROP_DBA)
        report.tuning = recipe.tuning
        self._recipe, self._fingerprint, self._extractor, self._pending = recipe, state["fingerprint"], ex, None
        return report

    def apply_dba(self, n: int = 5, alpha: float = 3.0, progress: Progress | None = None) -> int:
        """Database-side augmentation, once: every vector becomes the α-weighted mean of itself and its top-n
        neighbours; later additions are augmented the same way. Returns the rows rewritten."""
        if self._recipe is None:
            raise IndexerError("the index is empty: add images before applying DBA")
        self._refuse_if_pending(unless="dba")
        rows = dba.apply(self.store, self.vector_index, n, alpha, progress=progress)
        self._pending = None
        return rows

    @keeps_graph_current()
    def remove(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Delete the rows of these files (whether or not the files still exist); returns how many were indexed."""
        if self._recipe is None:
            return 0
        self._refuse_if_pending()
        ids = [path_id(os.path.abspath(os.fspath(p))) for p in paths]
        found = list(self.store.get(ids, fields=("path",)))
        self.store.delete(found)
        return len(found)

    @keeps_graph_current()
    def reroot(self, old: str | os.PathLike[str], new: str | os.PathLike[str]) -> int:
        """Point every entry under folder ``old`` to the same relative path under ``new`` (photos moved)."""
        if self._recipe is None:
            return 0
        self._refuse_if_pending(unless="reroot")
        moved = sync.reroot(self.store, os.path.abspath(os.fspath(old)), os.path.abspath(os.fspath(new)))
        self._pending = None
        return moved

    # -- reading -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.store.count() if self._recipe is not None else 0

    def search(self, query: ImageInput | np.ndarray, k: int = 10, **options: Any) -> list[Hit]:
        """The ``k`` indexed images most similar to ``query`` (a path, PIL image, image array/tensor, or vector).

        Options as in :meth:`search_many`.
        """
        return self.search_many([query], k=k, **options)[0]

    def search_many(
        self,
        queries: Iterable[ImageInput | np.ndarray],
        k: int = 10,
        *,
        under: str | os.PathLike[str] | None = None,
        where: str | None = None,
        min_score: float | None = None,
        size: filters.Range | None = None,
        mtime: filters.Range | None = None,
        width: filters.Range | None = None,
        height: filters.Range | None = None,
        qe: int = 0,
        qe_alpha: float = 3.0,
        verify: bool | Verification = True,
    ) -> list[list[Hit]]:
        """Batched search: one list of hits (best first) per query, in order.

        Filters: ``under`` a folder; ``size`` (bytes), ``mtime`` (POSIX seconds), ``width``/``height`` (pixels) as
        ``(low, high)`` with ``None`` for an open end; ``where`` a raw Milvus expression; ``min_score`` drops
        weaker hits. ``qe=n`` re-queries with α-query-expansion over the top ``n`` hits (Radenović et al.
        2018): q' = q + Σ sᵢ^α·vᵢ, normalised. ``verify`` (the default, or a
        :class:`~poolvec.indexer.verify.policy.Verification`) checks an image query's shortlist by local features
        and puts the hits shown to be copies first, with where they match (:mod:`poolvec.indexer.verify.search`).
        """
        if k < 1:
            raise IndexerError(f"k must be ≥ 1, got {k}")
        if qe < 0:
            raise IndexerError(f"qe (query expansion over the top n hits) must be ≥ 0, got {qe}")
        self._refuse_if_pending()
        if self._recipe is None:
            raise IndexerError(f"the index {self.uri} (collection {self.collection!r}) is empty: add images first")
        expr = filters.build(under_folder=under, size=size, mtime=mtime, width=width, height=height, where=where)
        policy = self._verifier.resolve(verify)
        queries = list(queries)
        wide = k if policy is None else max(k, policy.shortlist)
        vectors = query_vectors(queries, self._recipe.dim, self.extractor)
        try:
            if qe > 0:
                vectors = dba.augment(self.store, self.vector_index, vectors, qe, qe_alpha, False, filter=expr)
            results = self.store.search(vectors.tolist(), wide, self.vector_index, filter=expr)
        except BackendError as e:
            if where is None:
                raise
            self.store.count()  # the backend answers without the expression: it is the expression it refused
            raise IndexerError(f"--where: Milvus refused {where!r}: {e}") from None
        if policy is None:
            return to_hits(results, min_score)
        return self._verifier.search(queries, to_hits(results), k, policy, self._crop_search(wide, expr), min_score)

    def info(self) -> dict[str, Any]:
        """What the index holds and how it was built."""
        from importlib import metadata

        backend = "Milvus Lite" if self.store.is_lite else "Milvus server"
        if self.store.is_lite:
            with contextlib.suppress(metadata.PackageNotFoundError):
                backend += f" {metadata.version('milvus-lite')}"
        return {
            "uri": self.uri,
            "backend": backend,
            "collection": self.collection,
            "count": len(self),
            "dim": self._recipe.dim if self._recipe else None,
            "fingerprint": self._fingerprint,
            "vector_index": {
                "kind": self.vector_index.kind,
                "params": self.vector_index.params,
                "metric": self.vector_index.metric,
            },
            "config": self.config,
            "dba": dba.settings(self.store) if self._recipe else None,
        }

    def copy_to(
        self,
        uri: str | os.PathLike[str],
        collection: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        progress: copying.Progress | None = None,
    ) -> copying.CopyReport:
        """Copy this index — rows, vectors, recipe, settings, review decisions — to another Milvus (``uri``: a server
        when a collection outgrows Milvus Lite), under ``collection`` (default: the same name). Nothing is
        re-embedded; an interrupted copy is finished by calling this again (:mod:`poolvec.indexer.ops.copy`)."""
        if os.fspath(uri) == self.uri and (collection or self.collection) == self.collection:
            raise IndexerError("the copy's --to is this index itself: give another database or --to-collection")
        target = MilvusStore(os.fspath(uri), collection or self.collection, token=token, timeout=timeout)
        try:
            return copying.copy_index(self.store, target, progress)
        finally:
            target.close()

    def drop(self) -> bool:
        """Delete the collection and its stored recipe. A Milvus Lite database left with no collection is removed
        too (its folder held nothing else); returns whether it was."""
        self.store.drop()
        self._recipe = self._fingerprint = None
        return self.store.remove_if_empty()

    def close(self) -> None:
        """Release the client and the verification threads."""
        self._verifier.close()
        self.store.close()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ImageIndex({self.uri!r}, collection={self.collection!r})"


def _pipeline(recipe: Recipe) -> Pipeline:
    """A fresh pooling pipeline rebuilt from a recipe's stored form (fitted parameters included)."""
    from poolvec.pooling import from_dict

    return from_dict(recipe.pooling)
