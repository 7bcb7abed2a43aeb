"""A pooling pipeline: one pooling step then post-steps, built from a spec string, serialisable to JSON.

pipe = pooling.build("gem(p=3) | l2 | pca(dim=256, whiten=true) | l2")
pipe.fit(pipe.apply_pool(train_maps))        # fits pca (and center) in order
vecs = pipe(maps, mask)                        # [B, 256] float32
cfg = pipe.to_dict(); same = pooling.from_dict(cfg)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from poolvec.pooling import functional as PF
from poolvec.pooling import post
from poolvec.pooling.spec import METHODS, MethodInfo, PoolingError, format_step, format_value, parse, parse_step

__all__ = ["DEFAULT_SPEC", "Pipeline", "PoolStep", "build", "from_dict"]

DEFAULT_SPEC = "gem(p=3) | l2"
FORMAT = "poolvec.pooling"
VERSION = 1


class PoolStep:
    """The first step: a pooling function with its parameters (and, for ``pwa``, the fitted channels)."""

    def __init__(self, info: MethodInfo, params: dict[str, Any]) -> None:
        self.info = info
        self.name = info.name
        self.params = params
        self.channels: list[int] | None = None  # pwa only
        self._p_cache: dict[torch.device, Tensor] = {}
        self._chan_cache: dict[torch.device, Tensor] = {}

    @property
    def fitted(self) -> bool:
        return not self.info.needs_fit or self.channels is not None

    def __call__(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if x.dim() != 4:
            raise PoolingError(f"{self.name}: expected feature maps [B, C, H, W], got shape {tuple(x.shape)}")
        params = dict(self.params)
        if self.name == "gem" and isinstance(params["p"], tuple):
            params["p"] = self._tensor_p(x)
        if self.name == "pwa":
            if self.channels is None:
                raise PoolingError(
                    f"{format_step(self.name, self.params)} is not fitted: call pipe.fit_pool(maps) on "
                    f"feature maps first (it selects the part-detector channels)"
                )
            if max(self.channels) >= x.shape[1]:
                raise PoolingError(f"pwa was fitted on more channels than the {x.shape[1]} given")
            dev = x.device
            if dev not in self._chan_cache:
                self._chan_cache = {dev: torch.tensor(self.channels, dtype=torch.long, device=dev)}
            params = {"channels": self._chan_cache[dev], "a": params["a"], "b": params["b"]}
        try:
            return self.info.fn(x, mask, **params)  # type: ignore[misc]
        except PoolingError:
            raise
        except ValueError as e:
            raise PoolingError(f"{self.name}: {e}") from e

    def _tensor_p(self, x: Tensor) -> Tensor:
        p = self.params["p"]
        if len(p) != x.shape[1]:
            raise PoolingError(f"gem: {len(p)} per-channel powers given for {x.shape[1]} channels")
        if x.device not in self._p_cache:
            self._p_cache = {x.device: torch.tensor(p, dtype=torch.float32, device=x.device)}
        return self._p_cache[x.device]

    def out_dim(self, channels: int) -> int:
        if self.name == "pwa" and self.channels is not None:
            return channels * len(self.channels)
        return int(self.info.dim_fn(channels, self.params))

    def fit(self, maps: Any, mask: Any = None) -> None:
        """PWA: pick the ``n`` channels whose average-pooled response varies most over ``maps`` (a tensor
        ``[N, C, H, W]`` or an iterable of tensors / ``(tensor, mask)`` pairs)."""
        if self.name != "pwa":
            return
        count, total, total_sq = 0, None, None
        for xb, mb in _batches(maps, mask):
            k, s, s2 = PF.pwa_stats(xb, mb)
            count += k
            total = s if total is None else total + s.to(total.device)
            total_sq = s2 if total_sq is None else total_sq + s2.to(total_sq.device)
        if count < 2 or total is None or total_sq is None:
            raise PoolingError("pwa: fit_pool needs feature maps of at least 2 images")
        n = self.params["n"]
        if n > total.numel():
            raise PoolingError(f"pwa(n={n}) needs at least {n} channels, the maps have {total.numel()}")
        self.channels = PF.pwa_channels(count, total, total_sq, n)
        self._chan_cache = {}

    def state(self) -> dict[str, Any] | None:
        return None if self.channels is None else {"channels": list(self.channels)}

    def load_state(self, state: dict[str, Any] | None) -> None:
        self.channels = None if state is None else [int(c) for c in state["channels"]]
        self._chan_cache = {}


def _batches(maps: Any, mask: Any) -> Iterable[tuple[Tensor, Tensor | None]]:
    if isinstance(maps, Tensor):
        yield maps, mask
        return
    masks = mask if mask is not None else None
    for i, item in enumerate(maps):
        if isinstance(item, (tuple, list)):
            yield item[0], item[1]
        else:
            yield item, (masks[i] if masks is not None else None)


class Pipeline:
    """Pooling step + post-steps. Call it on feature maps to get ``[B, D]`` float32 vectors."""

    def __init__(self, steps: list[tuple[str, dict[str, Any]]]) -> None:
        if not steps:
            raise PoolingError("a pipeline needs at least a pooling step")
        name, params = steps[0]
        self.pool = PoolStep(METHODS[name], params)
        self.post: list[post.PostStep] = [METHODS[n].fn(**p) for n, p in steps[1:]]  # type: ignore[misc]

    # --- description -------------------------------------------------------------------------------------

    @property
    def spec(self) -> str:
        """Canonical spec: every parameter explicit, so equal configs have equal strings."""
        parts = [format_step(self.pool.name, self.pool.params)]
        parts += [format_step(s.name, s.params) for s in self.post]
        return " | ".join(parts)

    def __str__(self) -> str:
        return self.spec

    def __repr__(self) -> str:
        return f"Pipeline({self.spec!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def pool_p(self) -> float:
        """Power for averaging descriptors across scales: GeM/rGeM's p (mean if per-channel), else 1."""
        if self.pool.name in ("gem", "rgem"):
            p = self.pool.params["p"]
            return float(sum(p) / len(p)) if isinstance(p, tuple) else float(p)
        return 1.0

    @property
    def needs_fit(self) -> bool:
        """True while some step still needs data (``fit_pool`` for pwa, ``fit`` for center/pca/lw)."""
        return not self.pool.fitted or any(not s.fitted for s in self.post)

    @property
    def needs_pairs(self) -> bool:
        """True if fitting needs matching pairs (an image and an edited copy of it): a step such as ``lw``."""
        return any(s.needs_pairs for s in self.post)

    def out_dim(self, channels: int) -> int:
        """Output dimension for maps with ``channels`` channels."""
        d = self.pool.out_dim(int(channels))
        for s in self.post:
            d = s.out_dim(d)
        return d

    # --- applying ----------------------------------------------------------------------------------------

    def apply_pool(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The pooling step only: ``[B, C, H, W]`` → ``[B, D0]`` float32."""
        return self.pool(x, mask).to(torch.float32)

    def apply_post(self, v: Tensor) -> Tensor:
        """The post-steps only: ``[B, D0]`` → ``[B, D]`` float32."""
        v = torch.as_tensor(v).to(torch.float32)
        if v.dim() != 2:
            raise PoolingError(f"post-steps expect vectors [B, D], got shape {tuple(v.shape)}")
        for s in self.post:
            v = self._run(s, v)
        return v

    def __call__(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.apply_post(self.apply_pool(x, mask))

    def apply_post_until(self, v: Tensor, i: int) -> Tensor:
        """The post-steps before post-step ``i`` only (what step ``i`` sees)."""
        v = torch.as_tensor(v).to(torch.float32)
        for s in self.post[:i]:
            v = self._run(s, v)
        return v

    def _run(self, step: post.PostStep, v: Tensor) -> Tensor:
        label = format_step(step.name, step.params)
        if not step.fitted:
            raise PoolingError(
                f"{label} is not fitted: call pipe.fit(vectors) with pooled training vectors "
                f"(pipe.apply_pool(maps)) before applying the pipeline"
            )
        try:
            return step(v)
        except ValueError as e:
            raise PoolingError(f"{label}: {e}") from e

    # --- fitting -----------------------------------------------------------------------------------------

    def fit(
        self,
        vectors: Tensor | np.ndarray,
        pairs: Tensor | np.ndarray | None = None,
        prior: post.PairPrior | None = None,
    ) -> Pipeline:
        """Fit the post-steps that learn from data, in order, each on the output of the steps before it.

        ``vectors`` are pooled vectors ``[N, D0]`` (``apply_pool`` outputs). ``pairs`` ``[P, 2]`` are row indices
        of matching vectors (an image and an edited copy of it), needed by ``lw``; the other steps ignore them.
        ``prior`` (pair covariance learnt elsewhere, in the first ``lw`` step's input space) is mixed into that
        step's fit.
        """
        v = torch.as_tensor(np.asarray(vectors) if not isinstance(vectors, Tensor) else vectors)
        if v.dim() != 2:
            raise PoolingError(f"fit expects pooled vectors [N, D0], got shape {tuple(v.shape)}")
        if not bool(torch.isfinite(v).all()):
            raise PoolingError("fit: the pooled vectors contain NaN or infinity (broken weights or inputs?)")
        v = v.detach().to(torch.float32)
        index = None if pairs is None else torch.as_tensor(np.asarray(pairs), dtype=torch.long)
        for s in self.post:
            if s.fittable:
                try:
                    if isinstance(s, post.LearnedWhitening):
                        s.fit(v, index, prior)
                        prior = None
                    else:
                        s.fit(v, index)
                except ValueError as e:
                    raise PoolingError(f"{format_step(s.name, s.params)}: {e}") from e
            v = self._run(s, v)
        return self

    def fit_pool(self, maps: Any, mask: Any = None) -> Pipeline:
        """Fit a pooling step that learns from feature maps (``pwa``); a no-op for the others."""
        self.pool.fit(maps, mask)
        return self

    # --- serialisation -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description with fitted parameters; ``from_dict`` rebuilds identical outputs."""
        steps = [{"name": self.pool.name, "params": _jsonable(self.pool.params), "state": self.pool.state()}]
        steps += [{"name": s.name, "params": _jsonable(s.params), "state": s.state()} for s in self.post]
        return {"format": FORMAT, "version": VERSION, "spec": self.spec, "steps": steps}


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def build(spec: str = DEFAULT_SPEC) -> Pipeline:
    """Pipeline from a spec string such as ``"gem(p=3) | l2 | pca(dim=256, whiten=true) | l2"``."""
    return Pipeline(parse(spec))


def from_dict(d: dict[str, Any]) -> Pipeline:
    """Inverse of :meth:`Pipeline.to_dict`."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise PoolingError(f"not a pooling config (expected a dict with format={FORMAT!r})")
    if d.get("version") != VERSION:
        raise PoolingError(f"unsupported pooling config version {d.get('version')!r} (this code reads {VERSION})")
    steps = d.get("steps")
    if not isinstance(steps, list) or not steps:
        raise PoolingError("pooling config has no steps")
    # Re-validate through the parser so a hand-edited config is checked like a spec string.
    parsed = []
    for i, s in enumerate(steps):
        name = s.get("name")
        params = s.get("params") or {}
        text = format_step_loose(name, params)
        parsed.append(parse(text)[0] if i == 0 else _parse_post(text))
    pipe = Pipeline(parsed)
    pipe.pool.load_state(steps[0].get("state"))
    for step, s in zip(pipe.post, steps[1:], strict=True):
        step.load_state(s.get("state"))
    if d.get("spec") is not None and d["spec"] != pipe.spec:
        raise PoolingError(f"pooling config is inconsistent: spec {d['spec']!r} but steps give {pipe.spec!r}")
    return pipe


def format_step_loose(name: Any, params: dict[str, Any]) -> str:
    """Step text from a stored name/params pair (lists become tuples), for re-validation."""
    if not isinstance(name, str):
        raise PoolingError(f"pooling config step without a name: {name!r}")
    if not params:
        return name
    return f"{name}(" + ", ".join(f"{k}={format_value(v)}" for k, v in params.items()) + ")"


def _parse_post(text: str) -> tuple[str, dict[str, Any]]:
    return parse_step(text, 1)
