"""Self-tuning: a collection's own photos and edited copies of them, as matching pairs for ``lw``.

Each sampled image is embedded as it will be indexed (from its file), and a few edited copies of it are made
from a working-size decode (twice the network input) and embedded too; every (image, copy) is a pair.
``pooling``'s ``lw`` step then learns the map under which the pairs coincide (:meth:`Extractor.fit`).

How many images and copies (measured on the two copy-detection sets, docs/EVALUATION.md, "Self-tuning"):
quality on the collection's own images grows with the copies per image (recall@1 on the copy-detection set:
1 copy 80.9, 2: 84.2, 4: 85.2, 8: 86.3, 12: 89.6 %), while how the map carries over to images it never saw is
the same for any split of a fixed number of copies between images and copies per image (within ±1 point for
256–1024 copies). So: :attr:`Tuning.edits` copies spread over the collection, between 1 and
:attr:`Tuning.max_per_image` per image, from at most :attr:`Tuning.images` images — 8 copies per image for a
few hundred photos, 2 at 1 000, 1 copy each of 768 images from 2 048 photos on (so that tuning adds ≤ 15 % to
indexing 10 000 photos: docs/BENCHMARKS.md, "Self-tuning"). Each copy costs about one
more image embedded (≈ 30 ms on 2 CPU cores, editing included); the sampled images themselves are embedded
once and reused by the index.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from poolvec.extractor.defaults import DEFAULT_TUNE_EDITS
from poolvec.extractor.edits import EditPolicy, edit_rng, random_edit
from poolvec.extractor.errors import ExtractorError, ImageError
from poolvec.extractor.images import fitted_size, load_image

if TYPE_CHECKING:
    from poolvec.extractor.embedded import Embedded
    from poolvec.extractor.recipe import InputPolicy, Runtime

#: Progress callback while tuning: ``(images done, images in all)``.
TuneProgress = Callable[[int, int], None]
#: Inputs → their pooled vectors before the post-steps, in order (:meth:`Extractor.embed_pooled`).
EmbedPooled = Callable[[Iterable[Any]], Iterator["Embedded"]]
#: Pictures kept aside as backgrounds that ``paste`` edits paste other images onto.
BACKGROUNDS = 8


@dataclass(frozen=True)
class Tuning:
    """How an index (or :meth:`Extractor.fit`) learns from its own photos.

    Args:
        images: most images sampled from the collection (evenly, in scan order).
        edits: edited copies in all, spread over the sample (``edits // sample`` each, clamped to
            ``1..max_per_image``).
        max_per_image: most copies of one image.
        seed: seed of the copies (with each image's path: the same collection gives the same pairs).
        prior_weight: the packaged prior's pair covariance (learnt on other photos, :mod:`poolvec.extractor.priors`)
            counts as this many pairs; 0 fits on the collection alone. On images the map never saw, 2 000 pairs
            of prior lifted recall@1 by 1–4 points at no cost on the images it was fitted on.
        policy: the edits (see :class:`poolvec.extractor.edits.EditPolicy`).
    """

    images: int = 768
    edits: int = DEFAULT_TUNE_EDITS
    max_per_image: int = 8
    seed: int = 0
    prior_weight: float = 2000.0
    policy: EditPolicy = field(default_factory=EditPolicy)

    def __post_init__(self) -> None:
        if self.images < 1 or self.edits < 1 or self.max_per_image < 1:
            raise ExtractorError(f"tuning: images, edits and max_per_image must be ≥ 1, got {self}")
        if self.prior_weight < 0:
            raise ExtractorError(f"tuning: prior_weight must be ≥ 0, got {self.prior_weight}")

    def plan(self, available: int) -> tuple[int, int]:
        """(images to sample, copies per image) for a collection of ``available`` images: ``edits`` copies over
        the collection, 1 to ``max_per_image`` per sampled image, at most ``images`` images."""
        n = min(available, self.images)
        return n, max(1, min(self.max_per_image, self.edits // max(available, 1)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, stored (descriptively) with a tuned index."""
        return {
            "images": self.images,
            "edits": self.edits,
            "max_per_image": self.max_per_image,
            "seed": self.seed,
            "prior_weight": self.prior_weight,
            "policy": self.policy.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tuning:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        policy = EditPolicy.from_dict(d.pop("policy", {}))
        return cls(policy=policy, **d)


def sample_evenly(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items spread evenly over ``items`` (every folder of a sorted scan gets its share)."""
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


@dataclass
class Pairs:
    """Pooled vectors of the sampled images and their copies, with the matching pairs among them."""

    vectors: np.ndarray  # [N, D0] float32, pooled (before the post-steps)
    pairs: np.ndarray  # [P, 2] row indices: (image, copy)
    originals: dict[str, Embedded]  # the sampled images as indexing would embed them (pooled vectors)
    failed: list[tuple[str, str]]
    images: int
    per_image: int
    seconds: float


def working_image(path: str, side: int, max_pixels: int | None, max_bytes: int | None) -> Image.Image:
    """Decode ``path`` for editing: upright RGB, longer side at most ``side`` (DCT-scaled for JPEGs)."""
    img = load_image(path, target=lambda w, h: fitted_size(w, h, side), max_pixels=max_pixels, max_bytes=max_bytes)
    if max(img.size) > side:
        img = img.resize(fitted_size(*img.size, side), Image.Resampling.BILINEAR)
    return img


def collect_pairs(
    embed_pooled: EmbedPooled,
    policy: InputPolicy,
    runtime: Runtime,
    paths: Sequence[str | os.PathLike[str]],
    tuning: Tuning,
    progress: TuneProgress | None = None,
) -> Pairs:
    """Sample ``paths`` (a collection) evenly as ``tuning.plan`` says; embed the sample and seeded edited copies
    with ``embed_pooled`` (an extractor's :meth:`~poolvec.extractor.Extractor.embed_pooled`), editing copies at twice
    ``policy``'s input side within ``runtime``'s limits and threads."""
    start = time.perf_counter()
    n, per_image = tuning.plan(len(paths))
    files = [os.fspath(p) for p in sample_evenly(paths, n)]
    side = 2 * policy.side
    limits = (runtime.max_pixels, runtime.max_bytes)
    backgrounds = []
    for path in files[:BACKGROUNDS]:
        try:
            img = working_image(path, side // 2, *limits)
        except ImageError:
            continue
        backgrounds.append((path, img))

    def make(path: str) -> list[Image.Image] | str:
        try:
            img = working_image(path, side, *limits)
        except ImageError as e:
            return e.reason
        rng = edit_rng(tuning.seed, path)
        others = [b for p, b in backgrounds if p != path]
        try:
            return [random_edit(img, rng, tuning.policy, others)[0] for _ in range(per_image)]
        except (ValueError, OSError) as e:  # an edit Pillow cannot do on this picture: skip it, say why
            return f"cannot make edited copies: {e}"

    failed: list[tuple[str, str]] = []
    owners: list[int] = []  # per embedded item: its image's index, and whether it is the original
    is_original: list[bool] = []

    def items() -> Iterator[Any]:
        for i, (path, edited) in enumerate(zip(files, _ahead(make, files, runtime.workers), strict=True)):
            if isinstance(edited, str):
                failed.append((path, edited))
                continue
            owners.extend([i] * (1 + len(edited)))
            is_original.extend([True] + [False] * len(edited))
            yield path
            yield from edited

    vectors: list[np.ndarray | None] = []
    originals: dict[str, Embedded] = {}
    done = -1
    for j, item in enumerate(embed_pooled(items())):
        vectors.append(item.vector)
        if is_original[j]:
            if item.error is not None:
                failed.append((item.source, item.error))
            else:
                originals[item.source] = item
            if progress is not None and owners[j] != done:
                done = owners[j]
                progress(done + 1, n)
    pairs = []
    origin: dict[int, int] = {}
    for j, (owner, orig) in enumerate(zip(owners, is_original, strict=True)):
        if vectors[j] is None:
            continue
        if orig:
            origin[owner] = j
        elif owner in origin:
            pairs.append((origin[owner], j))
    if progress is not None:
        progress(n, n)
    keep = [j for j, v in enumerate(vectors) if v is not None]
    remap = {j: r for r, j in enumerate(keep)}
    stacked = np.stack([vectors[j] for j in keep]) if keep else np.zeros((0, 0), np.float32)
    pair_rows = np.array([(remap[a], remap[b]) for a, b in pairs], dtype=np.int64).reshape(-1, 2)
    return Pairs(stacked, pair_rows, originals, failed, len(origin), per_image, time.perf_counter() - start)


def _ahead(fn: Callable[[str], Any], items: Sequence[str], workers: int) -> Iterator[Any]:
    """``map(fn, items)`` computed by ``workers`` threads a few items ahead, in order."""
    if workers == 0:
        yield from map(fn, items)
        return
    depth = 2 * workers
    with ThreadPoolExecutor(workers, thread_name_prefix="poolvec-edit") as pool:
        pending: list[Future[Any]] = []
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > depth:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


__all__ = ["Pairs", "TuneProgress", "Tuning", "collect_pairs", "sample_evenly", "working_image"]
