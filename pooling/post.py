"""Post-steps on pooled vectors ``[B, D]``: l2, signed power, centring, PCA(-whitening).

Steps that learn from data (``center``, ``pca``) have ``fit(vectors)`` and keep their parameters as
float32 tensors; ``state()`` / ``load_state()`` turn them into JSON-safe dicts (exact round trip).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["L2", "PCA", "Center", "PostStep", "Power", "decode_tensor", "encode_tensor", "l2n", "signed_power"]


class NotFittedError(ValueError):
    """Raised (wrapped in ``PoolingError`` by the pipeline) when an unfitted step is applied."""


def l2n(v: Tensor) -> Tensor:
    """L2-normalise rows, ``v / ‖v‖`` (a zero vector stays zero)."""
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)


def signed_power(v: Tensor, alpha: float = 0.5) -> Tensor:
    """Signed power normalisation ``sign(v)·|v|^α`` (Perronnin et al. 2010; "power-law" in cirtorch)."""
    return v.sign() * v.abs().pow(alpha)


def encode_tensor(t: Tensor) -> dict[str, Any]:
    """A float32 tensor as a JSON-safe dict: shape + base64 of its little-endian bytes (exact, compact)."""
    arr = t.detach().to("cpu", torch.float32).contiguous().numpy().astype("<f4", copy=False)
    return {"dtype": "float32", "shape": list(arr.shape), "b64": base64.b64encode(arr.tobytes()).decode()}


def decode_tensor(d: dict[str, Any]) -> Tensor:
    """Inverse of :func:`encode_tensor`."""
    if d.get("dtype") != "float32":
        raise ValueError(f"unsupported tensor encoding {d.get('dtype')!r}")
    arr = np.frombuffer(base64.b64decode(d["b64"]), dtype="<f4").reshape(d["shape"])
    return torch.from_numpy(arr.astype(np.float32))


class PostStep:
    """Base class: a named vector → vector map. ``fittable`` steps learn parameters in ``fit``."""

    name = ""
    fittable = False

    def __init__(self, **params: Any) -> None:
        self.params = params
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, ...]] = {}

    @property
    def fitted(self) -> bool:
        return True

    def out_dim(self, dim: int) -> int:
        return dim

    def fit(self, v: Tensor) -> None:  # pragma: no cover - overridden by fittable steps
        pass

    def __call__(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def state(self) -> dict[str, Any] | None:
        return None

    def load_state(self, state: dict[str, Any] | None) -> None:
        pass

    def _on(self, v: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
        """Fitted tensors moved to ``v``'s device/dtype once and cached."""
        key = (v.device, v.dtype)
        if key not in self._cache:
            self._cache = {key: tuple(t.to(v.device, v.dtype) for t in tensors)}
        return self._cache[key]


class L2(PostStep):
    """``l2`` — L2-normalise each vector."""

    name = "l2"

    def __call__(self, v: Tensor) -> Tensor:
        return l2n(v)


class Power(PostStep):
    """``power(alpha)`` — signed power normalisation."""

    name = "power"

    def __call__(self, v: Tensor) -> Tensor:
        return signed_power(v, self.params["alpha"])


class Center(PostStep):
    """``center`` — subtract the mean vector learnt in ``fit``."""

    name = "center"
    fittable = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.mean: Tensor | None = None

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def fit(self, v: Tensor) -> None:
        self.mean = v.to(torch.float64).mean(0).to(torch.float32)
        self._cache = {}

    def __call__(self, v: Tensor) -> Tensor:
        if self.mean is None:
            raise NotFittedError("not fitted")
        (mean,) = self._on(v, self.mean)
        return v - mean

    def state(self) -> dict[str, Any] | None:
        return None if self.mean is None else {"mean": encode_tensor(self.mean)}

    def load_state(self, state: dict[str, Any] | None) -> None:
        self.mean = None if state is None else decode_tensor(state["mean"])
        self._cache = {}


class PCA(PostStep):
    """``pca(dim, whiten, power)`` — project on the top ``dim`` principal axes of the fitted vectors;
    with ``whiten`` each axis is scaled by ``λ^(-power)`` (``power=0.5``: unit variance, classic PCA
    whitening as in Jégou & Chum, ECCV 2012). Axis signs are fixed (largest entry positive) so refits on
    the same data give the same parameters."""

    name = "pca"
    fittable = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.mean: Tensor | None = None
        self.proj: Tensor | None = None  # [dim, D]

    @property
    def fitted(self) -> bool:
        return self.proj is not None

    def out_dim(self, dim: int) -> int:
        if self.proj is not None:
            return int(self.proj.shape[0])
        return dim if self.params["dim"] is None else int(self.params["dim"])

    def fit(self, v: Tensor) -> None:
        x = v.to(torch.float64)
        n, d = x.shape
        k = d if self.params["dim"] is None else int(self.params["dim"])
        if k > d:
            raise ValueError(f"dim={k} is larger than the input dimension {d}")
        if n < k + 1:
            raise ValueError(f"needs at least dim + 1 = {k + 1} vectors to fit, got {n}")
        mean = x.mean(0)
        _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
        axes = vh[:k]
        flip = axes.gather(1, axes.abs().argmax(1, keepdim=True)).sign()
        axes = axes * torch.where(flip == 0, 1.0, flip)
        if self.params["whiten"]:
            eig = (s[:k] ** 2 / max(n - 1, 1)).clamp_min(float(s[0] ** 2 / max(n - 1, 1)) * 1e-12 + 1e-30)
            axes = axes * eig.pow(-self.params["power"])[:, None]
        self.mean = mean.to(torch.float32).contiguous()
        self.proj = axes.to(torch.float32).contiguous()
        self._cache = {}

    def __call__(self, v: Tensor) -> Tensor:
        if self.proj is None or self.mean is None:
            raise NotFittedError("not fitted")
        mean, proj = self._on(v, self.mean, self.proj)
        if v.shape[1] != proj.shape[1]:
            raise ValueError(f"was fitted on {proj.shape[1]}-d vectors, got {v.shape[1]}-d")
        return (v - mean) @ proj.T

    def state(self) -> dict[str, Any] | None:
        if self.proj is None or self.mean is None:
            return None
        return {"mean": encode_tensor(self.mean), "proj": encode_tensor(self.proj)}

    def load_state(self, state: dict[str, Any] | None) -> None:
        if state is None:
            self.mean = self.proj = None
        else:
            self.mean = decode_tensor(state["mean"])
            self.proj = decode_tensor(state["proj"])
        self._cache = {}
