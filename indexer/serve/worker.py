"""One thread owns the index; searches that arrive together share one embedding pass (micro-batching).

Milvus Lite and torch are used from one thread at a time: every call on the :class:`~poolvec.indexer.ImageIndex` goes
through :class:`IndexWorker`'s queue and runs in its single thread. While that thread is busy, new jobs queue up;
it then takes everything waiting (up to ``max_batch``) at once: the query images of all waiting searches are
embedded in one :meth:`Extractor.embed_iter` call (batched by shape, so a vector never depends on its
batch-mates), searches with the same options go to Milvus as one batched search, and thumbnail lookups as one
``get`` by primary key. Under load the batches grow by themselves; a lone query waits for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from poolvec.indexer.errors import IndexerError
from poolvec.indexer.index import ImageIndex
from poolvec.indexer.milvus.schema import META_FIELDS
from poolvec.indexer.query import Hit


@dataclass(frozen=True)
class Query:
    """One search: an image file to embed (``source``), or a stored image (``image_id``: its stored vector)."""

    source: str | None = None
    image_id: int | None = None
    k: int = 10
    min_score: float | None = None
    under: str | None = None
    verify: bool = True

    @property
    def options(self) -> tuple[int, float | None, str | None, bool]:
        return self.k, self.min_score, self.under, self.verify


@dataclass
class WorkerStats:
    """What the worker has done: searches answered, images embedded, embedding passes, the largest pass."""

    searches: int = 0
    embedded: int = 0
    passes: int = 0
    largest_pass: int = 0
    lookups: int = 0


@dataclass
class _Job:
    kind: str  # "search" | "lookup" | "call"
    payload: Any
    future: asyncio.Future = field(repr=False)


class IndexWorker:
    """Runs every call on ``index`` in one thread, in arrival order, batching searches that wait together.

    Start it inside the event loop that will use it (:meth:`start`), stop it there (:meth:`stop`).
    """

    def __init__(self, index: ImageIndex, max_batch: int = 32) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be ≥ 1, got {max_batch}")
        self.index = index
        self.max_batch = max_batch
        self.stats = WorkerStats()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="poolvec-index")
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._lock = threading.Lock()

    # -- life cycle ----------------------------------------------------------------------------------------
    async def start(self, warm_up: bool = True) -> None:
        """Start taking jobs; ``warm_up`` builds the embedder and runs it once, so that the first query does not
        pay for loading the model (or, with ``optimize=True``, tracing it)."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name="poolvec-index-worker")
        if warm_up:
            await self.call(lambda index: index.extractor.embed(np.full((240, 320, 3), 128, np.uint8)))

    async def stop(self) -> None:
        """Stop: jobs still queued fail, a batch in progress finishes, the thread ends."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._queue is not None:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(IndexerError("the server is shutting down", kind="unavailable"))
        await asyncio.get_running_loop().run_in_executor(None, self._thread.shutdown, True)

    # -- jobs ----------------------------------------------------------------------------------------------
    async def search(self, query: Query) -> tuple[str, list[Hit]]:
        """(query name, hits): the name is the stored path for ``image_id`` queries, ``source`` otherwise."""
        return await self._submit("search", query)

    async def lookup(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Stored rows (metadata fields) by primary key; absent ids are missing from the result."""
        return await self._submit("lookup", list(ids))

    async def call(self, fn: Callable[[ImageIndex], Any]) -> Any:
        """``fn(index)`` in the index thread, in turn with the other jobs."""
        return await self._submit("call", fn)

    async def _submit(self, kind: str, payload: Any) -> Any:
        if self._queue is None:
            raise RuntimeError("IndexWorker.start() was not called")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(kind, payload, future))
        return await future

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < self.max_batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            jobs = [j for j in jobs if not j.future.done()]  # cancelled while waiting
            if not jobs:
                continue
            try:
                outcomes = await loop.run_in_executor(self._thread, self._run, jobs)
            except Exception as e:  # a bug in _run: fail this batch, keep serving
                outcomes = [(None, e)] * len(jobs)
            for job, (value, error) in zip(jobs, outcomes, strict=True):
                if job.future.done():
                    continue
                if error is not None:
                    job.future.set_exception(error)
                else:
                    job.future.set_result(value)

    # -- in the index thread -------------------------------------------------------------------------------
    def _run(self, jobs: list[_Job]) -> list[tuple[Any, Exception | None]]:
        outcomes: list[tuple[Any, Exception | None]] = [(None, None)] * len(jobs)
        searches = [(i, j.payload) for i, j in enumerate(jobs) if j.kind == "search"]
        if searches:
            for i, outcome in self._searches(searches):
                outcomes[i] = outcome
        lookups = [(i, j.payload) for i, j in enumerate(jobs) if j.kind == "lookup"]
        if lookups:
            for i, outcome in self._lookups(lookups):
                outcomes[i] = outcome
        for i, job in enumerate(jobs):
            if job.kind == "call":
                try:
                    outcomes[i] = (job.payload(self.index), None)
                except Exception as e:
                    outcomes[i] = (None, e)
        return outcomes

    def _searches(self, jobs: list[tuple[int, Query]]):
        """Embed the file queries in one pass, fetch the stored vectors of id queries in one ``get``, then one
        batched Milvus search per set of options."""
        vectors: dict[int, np.ndarray] = {}
        names: dict[int, str] = {}
        failed: dict[int, Exception] = {}
        files = [(i, q) for i, q in jobs if q.source is not None]
        if files:
            with self._lock:
                self.stats.passes += 1
                self.stats.embedded += len(files)
                self.stats.largest_pass = max(self.stats.largest_pass, len(files))
            try:
                items = list(self.index.extractor.embed_iter([q.source for _, q in files]))
            except Exception as e:  # the embedder itself failed: every query of the pass fails with it
                failed.update((i, e) for i, _ in files)
            else:
                for (i, q), item in zip(files, items, strict=True):
                    if item.error is not None:
                        failed[i] = IndexerError(item.error, kind=item.kind or "unreadable")
                    else:
                        vectors[i], names[i] = item.vector, q.source  # type: ignore[assignment]
        stored = [(i, q) for i, q in jobs if q.image_id is not None]
        if stored:
            try:
                rows = self.index.store.get(sorted({q.image_id for _, q in stored}), fields=("path", "vector"))
            except Exception as e:
                rows = {}
                failed.update((i, e) for i, _ in stored)
            for i, q in stored:
                row = rows.get(q.image_id)  # type: ignore[arg-type]
                if row is None:
                    failed.setdefault(i, IndexerError(f"no image with id {q.image_id} in the index", kind="not_found"))
                else:
                    vectors[i], names[i] = np.asarray(row["vector"], np.float32), row["path"]
        by_options: dict[tuple, list[int]] = {}
        for i, q in jobs:
            if i in vectors:
                by_options.setdefault(q.options, []).append(i)
        for (k, min_score, under, verify), members in by_options.items():
            try:
                results = self._search(
                    [vectors[i] for i in members], [names[i] for i in members], k, min_score, under, verify
                )
            except Exception as e:
                failed.update((i, e) for i in members)
                continue
            for i, hits in zip(members, results, strict=True):
                yield i, ((names[i], hits), None)
        with self._lock:
            self.stats.searches += len(jobs)
        for i, e in failed.items():
            yield i, (None, e)

    def _search(
        self,
        vectors: list[np.ndarray],
        sources: list[str],
        k: int,
        min_score: float | None,
        under: str | None,
        verify: bool,
    ) -> list[list[Hit]]:
        """One batched Milvus search; with ``verify``, each shortlist then checked against its query image (an
        uploaded file, or the stored image's own file)."""
        if not verify:
            return self.index.search_many(vectors, k=k, min_score=min_score, under=under, verify=False)
        wide = max(k, self.index.verification.shortlist)
        shortlists = self.index.search_many(vectors, k=wide, under=under, verify=False)
        return self.index.verify(sources, shortlists, k, under=under, min_score=min_score)

    def _lookups(self, jobs: list[tuple[int, list[int]]]):
        wanted = sorted({n for _, ids in jobs for n in ids})
        with self._lock:
            self.stats.lookups += len(jobs)
        try:
            rows = self.index.store.get(wanted, fields=META_FIELDS)
        except Exception as e:
            for i, _ in jobs:
                yield i, (None, e)
            return
        for i, ids in jobs:
            yield i, ({n: rows[n] for n in ids if n in rows}, None)

    def snapshot(self) -> dict[str, int]:
        """The stats as a dict (for ``/api/info``)."""
        with self._lock:
            return asdict(self.stats)
