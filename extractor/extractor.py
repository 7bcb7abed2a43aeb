"""The :class:`Extractor`: images in, L2-normalised embedding vectors out, streamed and batched.

Decoding runs in threads (the decoders release the GIL) ahead of the forward pass; decoded images are
grouped by shape so that batches need neither padding nor distortion, and a batch runs as soon as it is full
(:mod:`.batching`); results come back in input order.
"""

from __future__ import annotations

import copy
import itertools
import os
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from poolvec.extractor import priors
from poolvec.extractor.backbones import Backbone, build_backbone
from poolvec.extractor.batching import batched_in_order
from poolvec.extractor.defaults import (
    DEFAULT_BACKBONE,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    DEFAULT_POOLING,
    DEFAULT_WEIGHTS,
)
from poolvec.extractor.embedded import Embedded
from poolvec.extractor.errors import ExtractorError, ImageError
from poolvec.extractor.images import EncodedImage, full_size, load_image, to_rgb
from poolvec.extractor.jpeg import decode_resize, is_jpeg_path, read_jpeg
from poolvec.extractor.preprocess import normalize, resize, to_tensor
from poolvec.extractor.recipe import InputPolicy, Recipe, Runtime
from poolvec.extractor.tuning import Pairs, TuneProgress, Tuning, collect_pairs
from poolvec.pooling import Pipeline
from poolvec.pooling import build as build_pooling
from poolvec.pooling import from_dict as pooling_from_dict

#: What :meth:`Extractor.embed` accepts per item: a path, a file's bytes (:class:`EncodedImage`), a PIL image, an
#: HWC uint8 array or a CHW tensor.
ImageInput = str | os.PathLike | EncodedImage | Image.Image | np.ndarray | torch.Tensor
#: Automatic batch size off the GPU: as many images as fit this many input pixels (4 at 320×240). On a 2-core
#: CPU, EfficientNet-Lite0 ran fastest at 0.2–0.3 Mpixel per forward pass: 1.5–1.9× the speed of batches of 16
#: at 320×240, whose 118 MB activations exceed glibc's mmap threshold and are faulted in afresh by every
#: operator (docs/BENCHMARKS.md, "Extraction"; docs/NOTES.md).
CPU_BATCH_PIXELS = 4 * 320 * 240
#: Automatic batch size on a GPU (CUDA or Apple MPS); not yet measured on one.
GPU_BATCH = 32
#: Input shapes on which a traced backbone (``optimize``) is compared with eager before it is trusted.
TRACE_CHECKS = 8
#: ``optimize="auto"`` traces once an Extractor has embedded this many images: the one-off trace (~0.9 s on a
#: 2-core CPU) pays for itself after ~100 images (13.5 vs 22 ms per image), and single queries never pay it.
AUTO_TRACE_AFTER = 64


@dataclass
class _Loaded:
    source: str
    pixels: torch.Tensor | None  # uint8 [3, H, W]
    error: str | None
    width: int = 0
    height: int = 0
    data: torch.Tensor | None = None  # undecoded JPEG bytes (decoder="torchvision")
    vector: np.ndarray | None = None
    kind: str | None = None  # of the error (poolvec.extractor.errors.IMAGE_KINDS)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA, then Apple MPS, then CPU; anything else is passed to :class:`torch.device`."""
    if str(device) != "auto":
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise ExtractorError(f"bad device {device!r}: {e}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ExtractorError(f"device {device!r} asked for, but CUDA is not available here; use device='cpu'")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Extractor:
    """Embeds images with a CNN backbone and a pooling pipeline.

    Args:
        backbone: packaged ``tf_efficientnet_lite0/1/2`` (default), a torchvision model name, or ``timm/<name>``.
        weights: ``"default"`` (packaged / torchvision DEFAULT / timm pretrained), a torchvision weights name,
            a local weights file, or ``None`` for seeded random weights (tests of shapes only).
        layer: feature-map layer (module path such as ``"layer3"`` or ``"blocks.5"``); ``None`` = last stage.
        pooling: a pooling spec such as ``"gem(p=3) | l2"`` or a built :class:`poolvec.pooling.Pipeline`. The default,
            ``gem(p=3) | l2 | lw | l2``, ends in learned whitening: fitted on other photos for the default backbone
            and input (:mod:`poolvec.extractor.priors`), re-fitted on your own with :meth:`fit` (an index does it
            itself).
        max_side: longer side of the network input, aspect ratio kept (the default policy).
        size, crop: the square policy instead: ``size=224, crop=True`` is the classic resize + centre crop.
        scales: input scales combined by a power mean with the pooling's p (e.g. ``(1, 0.7071, 0.5)``).
        batch_size: images per forward pass; ``None`` picks it per input shape: 32 on a GPU, elsewhere as many
            as fit ~0.3 Mpixel (4 images at 320×240), which ran fastest on a CPU.
        workers: decode threads (0 = decode in the calling thread); 2 decoded 6 MP photos 1.1× faster than 1 on
            a 2-core CPU, beside the forward pass's own threads.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        precision: ``"auto"`` (fp16 autocast on CUDA, fp32 elsewhere), ``"fp32"``, ``"fp16"``, ``"bf16"``.
        max_pixels: images declaring more pixels are refused (decompression-bomb guard).
        max_bytes: larger files are refused unread.
        optimize: on CPU, trace and freeze the backbone (1.5–2× faster forward after a ~1 s one-off cost;
            vectors equal to eager within ~1e-5, checked on the first shapes it meets). ``True``: from the first
            batch; ``"auto"``: once :data:`AUTO_TRACE_AFTER` images have been embedded (bulk work, not single
            queries); ``False``: never.
        decoder: ``"pil"`` (default) or ``"torchvision"``: JPEGs decoded and resized on ``device`` (nvJPEG on a
            GPU). Part of the embedding config, since the pixels differ slightly.
        runtime: the speed settings above (``batch_size`` … ``max_bytes``) as one :class:`Runtime`; when given, it
            is used instead of those keywords.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        weights: str | os.PathLike[str] | None = DEFAULT_WEIGHTS,
        layer: str | None = None,
        pooling: str | Pipeline = DEFAULT_POOLING,
        max_side: int | None = DEFAULT_MAX_SIDE,
        size: int | None = None,
        crop: bool = False,
        scales: Iterable[float] = (1.0,),
        batch_size: int | None = None,
        workers: int = 2,
        device: str | torch.device = "auto",
        precision: str = "auto",
        optimize: bool | str = "auto",
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        decoder: str = "pil",
        runtime: Runtime | None = None,
    ) -> None:
        if runtime is None:
            runtime = Runtime(batch_size, workers, str(device), precision, optimize, max_pixels, max_bytes)
        self.runtime = runtime
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or any(not (0.05 <= s <= 4) for s in self.scales):
            raise ExtractorError(f"scales must be a non-empty list of factors in 0.05..4, got {self.scales}")
        self.pipeline = pooling if isinstance(pooling, Pipeline) else build_pooling(pooling)
        self.backbone: Backbone = build_backbone(backbone, weights, layer)
        spec = self.backbone.spec
        if size is not None and max_side == DEFAULT_MAX_SIDE:
            max_side = None
        self.policy = InputPolicy(
            max_side=max_side, size=size, crop=crop, mean=spec.mean, std=spec.std, decoder=decoder
        )
        self.batch_size = runtime.batch_size
        self.workers = runtime.workers
        self.max_pixels = runtime.max_pixels
        self.max_bytes = runtime.max_bytes
        self.device = pick_device(runtime.device)
        self.precision = runtime.precision
        self.optimize = runtime.optimize
        self._traced: torch.jit.ScriptModule | None = None
        self._checked: set[tuple[int, ...]] = set()
        self._embedded = 0
        #: The pairs and sampled images of the last :meth:`fit` with edits (an index reuses their vectors).
        self.last_fit: Pairs | None = None
        #: The packaged prior this extractor's ``lw`` started from (None: none matched).
        self.prior = priors.attach(
            {"backbone": spec.name, "weights_id": spec.weights_id, "node": spec.node}, self.pipeline
        )
        # channels_last: 2–3× faster convolutions on CPU (oneDNN) and tensor cores on GPU (docs/BENCHMARKS.md).
        self.backbone.to(self.device, memory_format=torch.channels_last)

    # -- description -------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Dimension of the output vectors."""
        return self.pipeline.out_dim(self.backbone.spec.channels)

    @property
    def recipe(self) -> Recipe:
        """The recipe: everything that decides the vectors (an index stores it, with provenance)."""
        spec = self.backbone.spec
        return Recipe(
            backbone=spec.name,
            weights=spec.weights,
            weights_id=spec.weights_id,
            layer=spec.layer,
            node=spec.node,
            channels=spec.channels,
            input=self.policy,
            scales=self.scales,
            pooling=self.pipeline.to_dict(),
            dim=self.dim,
        )

    @classmethod
    def from_recipe(cls, recipe: Recipe, runtime: Runtime | None = None) -> Extractor:
        """Rebuild the extractor that made ``recipe``'s vectors (refused if its weights now load differently)."""
        pol = recipe.input
        ex = cls(
            backbone=recipe.backbone,
            weights=recipe.weights,
            layer=recipe.layer,
            pooling=pooling_from_dict(recipe.pooling),
            max_side=pol.max_side,
            size=pol.size,
            crop=pol.crop,
            scales=recipe.scales,
            decoder=pol.decoder,
            runtime=runtime or Runtime(),
        )
        if ex.backbone.spec.weights_id != recipe.weights_id:
            raise ExtractorError(
                f"weights {recipe.weights!r} now load as {ex.backbone.spec.weights_id}, but the index was built "
                f"with {recipe.weights_id}: give the original weights file"
            )
        return ex

    def config(self) -> dict[str, Any]:
        """The recipe in its stored form (:meth:`Recipe.to_dict`)."""
        return self.recipe.to_dict()

    @classmethod
    def from_config(cls, config: dict[str, Any], **runtime: Any) -> Extractor:
        """Rebuild the extractor that :meth:`config` describes; ``runtime`` holds :class:`Runtime`'s fields."""
        return cls.from_recipe(Recipe.from_dict(config), Runtime(**runtime))

    def __repr__(self) -> str:
        s = self.backbone.spec
        pol = f"max_side={self.policy.max_side}" if self.policy.max_side else f"size={self.policy.size}"
        return f"Extractor({s.name}, weights={s.weights_id}, {pol}, pooling='{self.pipeline}', dim={self.dim})"

    # -- embedding ---------------------------------------------------------------------------------------
    def embed(self, inputs: ImageInput | Iterable[ImageInput]) -> np.ndarray:
        """Embed images; returns float32 ``[N, dim]``. Raises :class:`ImageError` for an unusable image."""
        if isinstance(inputs, (str, os.PathLike, EncodedImage, Image.Image, np.ndarray, torch.Tensor)):
            inputs = [inputs]
        rows = []
        for item in self.embed_iter(inputs):
            if item.error is not None:
                raise ImageError(item.source, item.error, item.kind or "unreadable")
            rows.append(item.vector)
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    def embed_iter(self, inputs: Iterable[ImageInput]) -> Iterator[Embedded]:
        """Stream (source, vector or error) in input order; memory stays bounded whatever the input size."""
        if self.pipeline.needs_fit:
            hint = (
                "no packaged fit covers this backbone: call .fit(image_paths) first (an ImageIndex tunes itself)"
                if self.pipeline.needs_pairs
                else "call .fit(images) first (an ImageIndex fits it on the first folder)"
            )
            raise ExtractorError(
                f"pooling '{self.pipeline}' learns from data and is not fitted yet: {hint}, "
                "or choose a pooling that needs no fit, such as 'gem(p=3) | l2'"
            )
        return self._stream(inputs, post=True)

    def embed_pooled(self, inputs: Iterable[ImageInput]) -> Iterator[Embedded]:
        """As :meth:`embed_iter`, but the pooled vectors before the post-steps: what fitting learns from (the
        post-steps need not be fitted yet)."""
        return self._stream(inputs, post=False)

    def with_pipeline(self, pipeline: Pipeline) -> Extractor:
        """A twin of this extractor (same backbone, weights, trace and settings) with another pooling pipeline,
        e.g. a copy to fit without changing this one."""
        twin = copy.copy(self)
        twin.pipeline = pipeline
        twin._checked = set(self._checked)
        twin.last_fit = None
        return twin

    def fit(
        self,
        inputs: Iterable[ImageInput],
        limit: int = 2000,
        *,
        tuning: Tuning | None = None,
        progress: TuneProgress | None = None,
    ) -> Extractor:
        """Fit the pooling steps that learn from data (pwa channels, centre, PCA, learned whitening).

        Steps that learn from pairs (``lw``) are fitted on files: an even sample of ``inputs`` (the collection)
        and seeded edited copies of each, as many as ``tuning.plan`` says, mixed with the packaged prior when one
        matches; :attr:`last_fit` keeps the pairs and the sampled images' vectors.
        Other steps use up to ``limit`` images. Unusable images are skipped. Returns ``self``; the fitted
        parameters become part of :meth:`config`, so an index stores them and rebuilds the same embedder.
        """
        if self.pipeline.needs_pairs:
            return self._fit_pairs(list(inputs), tuning or Tuning(), progress)
        sample = list(itertools.islice(inputs, limit))
        if not self.pipeline.pool.fitted:
            maps = (
                self.feature_maps(it.pixels[None])
                for it in self._load_stream(sample, prefetch=self._hold)
                if it.pixels is not None
            )
            self.pipeline.fit_pool(maps)
        pooled = [e.vector for e in self.embed_pooled(sample) if e.vector is not None]
        if not pooled:
            raise ExtractorError("fit: none of the sample images could be used")
        self.pipeline.fit(np.stack(pooled))
        return self

    def _fit_pairs(self, inputs: list[ImageInput], tuning: Tuning, progress: TuneProgress | None) -> Extractor:
        paths = [os.fspath(p) for p in inputs if isinstance(p, (str, os.PathLike))]
        if len(paths) != len(inputs):
            raise ExtractorError("fit: learned whitening (lw) is fitted on image files; give paths")
        if not self.pipeline.pool.fitted:
            raise ExtractorError("fit: a pooling step that learns from maps (pwa) cannot be followed by lw")
        pairs = collect_pairs(self.embed_pooled, self.policy, self.runtime, paths, tuning, progress)
        if len(pairs.pairs) == 0:
            reason = f" (e.g. {pairs.failed[0][0]}: {pairs.failed[0][1]})" if pairs.failed else ""
            raise ExtractorError(f"fit: none of the {len(paths)} images could be used{reason}")
        prior = None
        if self.prior is not None and tuning.prior_weight > 0:
            prior = self.prior.pair_prior(tuning.prior_weight)
        self.pipeline.fit(pairs.vectors, pairs.pairs, prior=prior)
        self.last_fit = pairs
        return self

    # -- the embedding-function interface of pymilvus's model package (milvus-model) ------------------------
    def __call__(self, images: Iterable[ImageInput]) -> list[np.ndarray]:
        """Embed images as a list of 1-D float32 arrays (milvus-model's ``BaseEmbeddingFunction`` call)."""
        return list(self.embed(list(images)))

    def encode_documents(self, images: Iterable[ImageInput]) -> list[np.ndarray]:
        """Vectors for the images to store (same as :meth:`encode_queries`: the embedding is symmetric)."""
        return self(images)

    def encode_queries(self, images: Iterable[ImageInput]) -> list[np.ndarray]:
        """Vectors for query images."""
        return self(images)

    def _stream(self, inputs: Iterable[ImageInput], post: bool) -> Iterator[Embedded]:
        items = self._load_stream(inputs, prefetch=self._hold)
        if self.policy.decoder == "torchvision":
            items = batched_in_order(
                items,
                key=lambda it: "jpeg" if it.data is not None else None,
                batch_size=lambda _: self.batch_size or GPU_BATCH,
                process=self._decode_on_device,
                hold=self._hold,
            )
        for it in batched_in_order(
            items,
            key=lambda it: tuple(it.pixels.shape) if it.pixels is not None else None,
            batch_size=self._batch_for,
            process=lambda batch: self._embed_batch(batch, post),
            hold=self._hold,
        ):
            yield Embedded(it.source, it.vector, it.error, it.width, it.height, it.kind or (it.error and "unreadable"))

    @property
    def _hold(self) -> int:
        """Decoded images held back at most (prefetched, or waiting for a batch of their shape to fill)."""
        return max(64, 4 * (self.batch_size or 0))

    def _batch_for(self, shape: tuple[int, ...]) -> int:
        """Images per forward pass for pixels of ``shape`` ([3, H, W])."""
        if self.batch_size is not None:
            return self.batch_size
        if self.device.type in ("cuda", "mps"):
            return GPU_BATCH
        return max(1, CPU_BATCH_PIXELS // (shape[-1] * shape[-2]))

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """One image → the uint8 ``[3, H, W]`` tensor the backbone sees (before normalisation)."""
        return self._load_or_raise(image)

    @torch.inference_mode()
    def feature_maps(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, H, W]`` → feature maps ``[B, C, h, w]`` (float32) at scale 1."""
        return self._forward(normalize(pixels.to(self.device), self.policy)).float()

    # -- internals ---------------------------------------------------------------------------------------
    def _load_or_raise(self, image: ImageInput) -> torch.Tensor:
        loaded = self._load(0, image)
        if loaded.data is not None:
            res = decode_resize([loaded.data], self.policy, self.device)[0]
            loaded.error, loaded.pixels = (res, None) if isinstance(res, str) else (None, res[0])
        if loaded.error is not None:
            raise ImageError(loaded.source, loaded.error, loaded.kind or "unreadable")
        assert loaded.pixels is not None
        return loaded.pixels

    def _load(self, index: int, item: ImageInput) -> _Loaded:
        """Decode and resize one input; never raises for a bad image (the error is returned)."""
        file = isinstance(item, (str, os.PathLike, EncodedImage))
        if isinstance(item, EncodedImage):
            source = item.name
        elif isinstance(item, (str, os.PathLike)):
            source = os.fspath(item)
        else:
            source = f"<{type(item).__name__} #{index}>"
        try:
            if file and self.policy.decoder == "torchvision" and is_jpeg_path(source):
                encoded = item if isinstance(item, EncodedImage) else source
                return _Loaded(source, None, None, data=read_jpeg(encoded, self.max_pixels, self.max_bytes))
            if file:
                img = load_image(
                    item, target=self.policy.target_size, max_pixels=self.max_pixels, max_bytes=self.max_bytes
                )
            elif isinstance(item, Image.Image):
                img = to_rgb(item)
            elif isinstance(item, np.ndarray):
                img = Image.fromarray(_as_hwc_uint8(item))
            elif isinstance(item, torch.Tensor):
                img = Image.fromarray(_as_hwc_uint8(item.detach().cpu().numpy(), chw=True))
            else:
                return _Loaded(source, None, f"unsupported input type {type(item).__name__}", kind="not_image")
            width, height = full_size(img)  # a large JPEG file is decoded smaller than it is
            return _Loaded(source, resize(to_tensor(img), self.policy), None, width, height)
        except ImageError as e:
            return _Loaded(source, None, e.reason, kind=e.kind)
        except (ValueError, TypeError, OSError, MemoryError) as e:
            return _Loaded(source, None, f"cannot use image: {e}")

    def _load_stream(self, inputs: Iterable[ImageInput], prefetch: int) -> Iterator[_Loaded]:
        """Decode ahead in threads, at most ``prefetch`` items in flight, yielding in input order."""
        if self.workers == 0:
            for i, item in enumerate(inputs):
                yield self._load(i, item)
            return
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="poolvec-decode")
        pending: deque[Future[_Loaded]] = deque()
        try:
            for i, item in enumerate(inputs):
                pending.append(pool.submit(self._load, i, item))
                if len(pending) >= prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _decode_on_device(self, items: list[_Loaded]) -> None:
        """Decode a batch of JPEG bytes on the device (decoder="torchvision"), in place."""
        for it, res in zip(items, decode_resize([it.data for it in items], self.policy, self.device), strict=True):
            if isinstance(res, str):
                it.error = res
            else:
                it.pixels, it.width, it.height = res
            it.data = None

    def _embed_batch(self, items: list[_Loaded], post: bool) -> None:
        """Embed decoded images of one shape, in place; their pixels are dropped once used.

        This is where every vector is made, so it is where they are checked: a vector with NaN or infinity, or
        all zeros, would index "successfully" and then match nothing (or anything). Such an image fails with its
        reason; if the first batch gives nothing usable at all, the model itself is broken and embedding stops.
        """
        out = self._embed_pixels(torch.stack([it.pixels for it in items]), post)  # type: ignore[misc]
        finite = np.isfinite(out).all(axis=1)
        nonzero = np.abs(out).max(axis=1, initial=0.0) > 0
        if self._embedded == 0 and not finite.any():
            raise ExtractorError(
                f"the model gives NaN or infinite features for every image (first: {items[0].source}): its weights "
                f"({self.backbone.spec.weights_id}) are broken — load a good weights file"
            )
        self._embedded += len(items)
        for it, v, ok, some in zip(items, out, finite, nonzero, strict=True):
            it.pixels = None
            if not ok:
                it.error = "the model gave NaN or infinite features for this image (numeric overflow?)"
            elif not some:
                it.error = "the model gave an all-zero vector for this image (nothing to compare it by)"
            else:
                it.vector = v

    @torch.inference_mode()
    def _embed_pixels(self, pixels: torch.Tensor, post: bool = True) -> np.ndarray:
        """uint8 [B, 3, H, W] of one shape → vectors [B, D] (multi-scale: power mean of per-scale pools).

        With ``post=False`` the pooled vectors before the post-steps (what :meth:`fit` learns from).
        """
        x = normalize(pixels.to(self.device, non_blocking=True), self.policy)
        if self.scales == (1.0,):
            pooled = self.pipeline.apply_pool(self._forward(x).float())
        else:
            p = self.pipeline.pool_p
            acc = None
            for s in self.scales:
                xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", antialias=True)
                v = F.normalize(self.pipeline.apply_pool(self._forward(xs).float()), dim=1)
                v = v.sign() * v.abs().pow(p)
                acc = v if acc is None else acc + v
            acc = acc / len(self.scales)  # type: ignore[operator]
            pooled = acc.sign() * acc.abs().pow(1.0 / p)
        out = self.pipeline.apply_post(pooled) if post else pooled
        return out.float().cpu().numpy()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        if self._traces():
            return self._optimized_forward(x)
        with self._autocast():
            return self.backbone(x)

    def _traces(self) -> bool:
        """Whether this forward pass runs the traced backbone (CPU, fp32, and ``optimize`` says so by now)."""
        if self.device.type != "cpu" or self.precision not in ("auto", "fp32") or self.optimize is False:
            return False
        return self.optimize is True or self._traced is not None or self._embedded >= AUTO_TRACE_AFTER

    def _optimized_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone traced and frozen (BN folded, oneDNN fusions): 1.5–2× faster on CPU after a one-off
        trace of ~1 s, checks included.

        A trace can freeze shape-dependent Python arithmetic into constants, so it is compared with eager on one
        image of each of the first :data:`TRACE_CHECKS` input shapes — the first also resized to odd sizes and
        turned to the other orientation, where a trace bound to one shape shows itself at once. Any
        disagreement falls back to eager for good. Checking every shape instead cost a folder of mixed sizes
        (109 shapes in 247 photos) 1.8× the time.
        """
        if self._traced is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch 2.14 deprecates jit; torch.compile takes minutes here
                self._traced = torch.jit.freeze(torch.jit.trace(self.backbone, x, check_trace=False))
            h, w = x.shape[-2:]
            probes = [(w, h), (h * 3 // 4 | 1, w * 5 // 8 | 1)]
            if not all(self._trace_agrees(F.interpolate(x[:1], size=size, mode="bilinear")) for size in probes):
                return self._trace_rejected(x)
        shape = tuple(x.shape[1:])
        if len(self._checked) < TRACE_CHECKS and shape not in self._checked:
            if not self._trace_agrees(x[:1]):
                return self._trace_rejected(x)
            self._checked.add(shape)
        return self._traced(x)

    def _trace_agrees(self, x: torch.Tensor) -> bool:
        assert self._traced is not None
        out, ref = self._traced(x), self.backbone(x)
        return out.shape == ref.shape and torch.allclose(out, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))

    def _trace_rejected(self, x: torch.Tensor) -> torch.Tensor:
        warnings.warn(f"{self.backbone.spec.name}: traced backbone differs from eager; using eager", stacklevel=3)
        self.optimize = False
        return self.backbone(x)

    def _autocast(self):
        kind = self.precision
        if kind == "auto":
            kind = "fp16" if self.device.type == "cuda" else "fp32"
        if kind == "fp32":
            return nullcontext()
        dtype = torch.float16 if kind == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def _as_hwc_uint8(arr: np.ndarray, chw: bool = False) -> np.ndarray:
    """Accept HWC/HW (or CHW for tensors) arrays, uint8 or float in [0, 1]; return HWC uint8 RGB."""
    a = np.asarray(arr)
    if chw and a.ndim == 3 and a.shape[0] in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"expected an image array HxW, HxWx3 or HxWx4, got shape {a.shape}")
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = np.clip(np.nan_to_num(a) * 255.0 + 0.5, 0, 255)
        a = a.astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 4:
        return np.asarray(to_rgb(Image.fromarray(a, "RGBA")))
    return a if a.ndim == 3 else np.stack([a] * 3, axis=-1)


__all__ = ["DEFAULT_POOLING", "Embedded", "Extractor", "ImageInput", "pick_device"]
