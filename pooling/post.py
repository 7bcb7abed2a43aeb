"""Post-steps on pooled vectors ``[B, D]``: l2, signed power, centring, PCA(-whitening), learned whitening.

Steps that learn from data (``center``, ``pca``, ``lw``) have ``fit(vectors, pairs)`` and keep their parameters
as float32 tensors; ``state()`` / ``load_state()`` turn them into JSON-safe dicts (exact round trip). ``lw``
learns from matching pairs (an image and an edited copy of it); the others ignore ``pairs``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "L2",
    "PCA",
    "Center",
    "LearnedWhitening",
    "PairPrior",
    "PostStep",
    "Power",
    "decode_tensor",
    "encode_tensor",
    "l2n",
    "learn_whitening",
    "pair_covariance",
    "signed_power",
]


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
    needs_pairs = False

    def __init__(self, **params: Any) -> None:
        self.params = params
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[Tensor, ...]] = {}

    @property
    def fitted(self) -> bool:
        return True

    def out_dim(self, dim: int) -> int:
        return dim

    def fit(self, v: Tensor, pairs: Tensor | None = None) -> None:  # pragma: no cover - overridden when fittable
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

    def fit(self, v: Tensor, pairs: Tensor | None = None) -> None:
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


class Projection(PostStep):
    """A fitted affine map ``v ↦ P (v − m)`` (``m`` [D], ``P`` [dim, D]); PCA and learned whitening differ only in
    how they fit it."""

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

    def _set(self, mean: Tensor, proj: Tensor) -> None:
        self.mean = mean.to(torch.float32).contiguous()
        self.proj = proj.to(torch.float32).contiguous()
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


class PCA(Projection):
    """``pca(dim, whiten, power)`` — project on the top ``dim`` principal axes of the fitted vectors;
    with ``whiten`` each axis is scaled by ``λ^(-power)`` (``power=0.5``: unit variance, classic PCA
    whitening as in Jégou & Chum, ECCV 2012). Axis signs are fixed (largest entry positive) so refits on
    the same data give the same parameters."""

    name = "pca"

    def fit(self, v: Tensor, pairs: Tensor | None = None) -> None:
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
        self._set(mean, axes)


@dataclass(frozen=True)
class PairPrior:
    """What other collections taught, counted as ``weight`` pairs (and as many vectors) when mixed with a
    collection's own: the covariance of their pair differences ``[D, D]`` and, optionally, the mean ``[D]`` and
    covariance ``[D, D]`` of their vectors (conjugate priors; small or one-subject collections lean on them —
    without the vector prior, a folder of one photo's copies would be centred on that photo and its copies would
    come out dissimilar)."""

    covariance: Tensor
    weight: float
    mean: Tensor | None = None
    spread: Tensor | None = None


def pair_covariance(x: Tensor, pairs: Tensor) -> Tensor:
    """Covariance of matching-pair differences, Σ (x_i − x_j)(x_i − x_j)ᵀ / P, in float64."""
    x = x.to(torch.float64)
    diff = x[pairs[:, 0]] - x[pairs[:, 1]]
    return diff.T @ diff / len(diff)


def learn_whitening(
    x: Tensor, pairs: Tensor, shrink: float = 0.2, dim: int | None = None, prior: PairPrior | None = None
) -> tuple[Tensor, Tensor]:
    """Learned whitening from matching pairs (Radenović, Tolias & Chum, TPAMI 2018; cirtorch ``whitenlearn``).

    ``x`` holds vectors ``[N, D]``, ``pairs`` ``[P, 2]`` row indices of matching vectors (an image and a copy of
    it). With m the mean of ``x`` and S_w the covariance of the pair differences — mixed with a ``prior``'s as
    (P·S_w + w·S_prior) / (P + w) when one is given, and m and the covariance of x likewise with the prior's
    mean and covariance when it has them — shrunk toward a scaled identity so that few pairs still
    give a well-conditioned map: S = (1 − shrink)·S_w + shrink·tr(S_w)/D·I, P₁ = S^(−1/2) by eigen-decomposition;
    then P₁(x − m) is rotated onto its principal axes (largest first, each axis's largest entry positive so
    refits agree) and the first ``dim`` kept. Computed in float64; returns ``(m [D], P [dim, D])``, the map
    v ↦ P (v − m).
    """
    x = x.to(torch.float64)
    n, d = x.shape
    pairs = torch.as_tensor(pairs, dtype=torch.long)
    if pairs.dim() != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise ValueError(f"needs matching pairs as a [P, 2] array of row indices, got shape {tuple(pairs.shape)}")
    if int(pairs.min()) < 0 or int(pairs.max()) >= n:
        raise ValueError(f"pair indices must be rows of the {n} vectors given")
    k = d if dim is None else int(dim)
    if k > d:
        raise ValueError(f"dim={k} is larger than the input dimension {d}")
    if not 0.0 <= shrink <= 1.0:
        raise ValueError(f"shrink must be in [0, 1], got {shrink}")
    mean = x.mean(0)
    total = None  # covariance of the vectors, when a prior has one
    s_w = pair_covariance(x, pairs)
    if prior is not None:
        cov = prior.covariance.to(torch.float64)
        if cov.shape != (d, d):
            raise ValueError(f"the prior is for {cov.shape[0]}-d vectors, these are {d}-d")
        w = float(prior.weight)
        s_w = (len(pairs) * s_w + w * cov) / (len(pairs) + w)
        if prior.mean is not None and prior.spread is not None:
            m_p = prior.mean.to(torch.float64)
            mixed = (n * mean + w * m_p) / (n + w)
            own = (x - mixed).T @ (x - mixed) / n
            theirs = prior.spread.to(torch.float64) + torch.outer(m_p - mixed, m_p - mixed)
            mean, total = mixed, (n * own + w * theirs) / (n + w)
    scale = float(torch.trace(s_w)) / d
    if not scale > 0:
        raise ValueError(
            "every pair is identical: there is nothing to learn (give edited copies, not the same vectors)"
        )
    s_w = (1.0 - shrink) * s_w + shrink * scale * torch.eye(d, dtype=torch.float64)
    eig, vec = torch.linalg.eigh(s_w)
    eig = eig.clamp_min(scale * 1e-9)
    p1 = (vec * eig.rsqrt()) @ vec.T  # S^(-1/2), symmetric
    if total is None:
        y = (x - mean) @ p1.T
        total_y = y.T @ y / max(n, 1)
    else:
        total_y = p1 @ total @ p1.T
    _, vec2 = torch.linalg.eigh(total_y)
    axes = vec2.flip(1).T[:k]  # descending eigenvalues
    flip = axes.gather(1, axes.abs().argmax(1, keepdim=True)).sign()
    axes = axes * torch.where(flip == 0, 1.0, flip)
    return mean, axes @ p1


class LearnedWhitening(Projection):
    """``lw(dim, shrink)`` — the linear map under which an image and its copies coincide while different images
    stay apart, learned from (image, edited copy) pairs: :func:`learn_whitening`. Follow it with ``l2``."""

    name = "lw"
    needs_pairs = True

    def fit(self, v: Tensor, pairs: Tensor | None = None, prior: PairPrior | None = None) -> None:
        if pairs is None:
            raise ValueError(
                "learns from matching pairs (an image and an edited copy of it): fit it through "
                "Extractor.fit(images), which makes the copies, or pass pairs=[[i, j], …] to Pipeline.fit"
            )
        self._set(*learn_whitening(v, pairs, shrink=self.params["shrink"], dim=self.params["dim"], prior=prior))
