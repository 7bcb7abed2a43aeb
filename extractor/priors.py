"""Packaged learned whitening: what ``lw`` learnt on other photos, for embedding without an index.

An :class:`~poolvec.extractor.Extractor` whose pooling has an unfitted ``lw`` step starts from a packaged fit when
one matches its backbone, weights, layer and the pooling before ``lw`` (the default backbone does, at any
input size): ``Extractor().embed(image)`` then gives tuned vectors with no collection at all. An index re-fits
``lw`` on its own photos and mixes this prior's pair covariance in (:class:`poolvec.pooling.post.PairPrior`), which
helps most where the collection is small.

A prior file is a ``.npz`` (read with ``allow_pickle=False``: it cannot run code) holding ``mean`` [D],
``proj`` [D, D] (float16; its rows ordered by decreasing variance, so ``lw(dim=k)`` takes the first k),
``variance`` [D] (of the fitted vectors along each row) and ``meta``, a JSON string: the config it fits, the
photos it was fitted on with their licences, and the command that made it (``scripts/fit_prior.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from poolvec.pooling import Pipeline
from poolvec.pooling.post import LearnedWhitening, PairPrior, encode_tensor
from poolvec.pooling.spec import format_step

#: Where packaged priors live (package data).
PRIOR_DIR = Path(__file__).resolve().parent / "data"
#: Config fields a prior must match exactly. The input policy and scales need not: a prior fitted at one input size
#: is a good start at another (an index re-fits anyway); ``meta["input"]`` records the one it was fitted at.
MATCH = ("backbone", "weights_id", "node")
#: Recorded in a prior's metadata, not matched.
RECORDED = ("input", "scales")


@dataclass(frozen=True)
class Prior:
    """One packaged fit: ``mean`` [D], ``proj`` [D, D] (float32 from the stored float16) and its metadata."""

    name: str
    mean: torch.Tensor
    proj: torch.Tensor
    meta: dict[str, Any]
    variance: torch.Tensor | None = None  # [D]: the fitted vectors' variance along each row of proj

    def state(self, dim: int | None) -> dict[str, Any]:
        """The ``lw`` state for an output dimension (the first ``dim`` rows)."""
        rows = self.proj if dim is None else self.proj[:dim]
        return {"mean": encode_tensor(self.mean), "proj": encode_tensor(rows)}

    def pair_prior(self, weight: float) -> PairPrior:
        """The prior's pair covariance (its shrunk S = (PᵀP)⁻¹ for the full-rank P) and, when stored, its vectors'
        mean and covariance P⁻¹·diag(variance)·P⁻ᵀ, counted as ``weight`` pairs and vectors."""
        p = self.proj.to(torch.float64)
        spread = None
        if self.variance is not None:
            inv = torch.linalg.inv(p)
            spread = inv @ torch.diag(self.variance.to(torch.float64)) @ inv.T
        return PairPrior(torch.linalg.inv(p.T @ p), float(weight), self.mean.to(torch.float64), spread)


def load(path: str | Path) -> Prior:
    """A prior file (``scripts/fit_prior.py`` writes them), from the package or anywhere else."""
    return _load(Path(path).resolve())


def use(extractor: Any, prior: Prior | None) -> None:
    """Make ``extractor``'s ``lw`` start from ``prior`` instead of the packaged match (None: from none, unfitted)
    — for evaluations on photos the packaged prior has seen."""
    i = lw_index(extractor.pipeline)
    if i is None:
        raise ValueError("the extractor's pooling has no lw step")
    step = extractor.pipeline.post[i]
    step.load_state(None if prior is None else prior.state(step.params["dim"]))
    extractor.prior = prior


@cache
def _load(path: Path) -> Prior:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        mean = torch.from_numpy(z["mean"].astype(np.float32))
        proj = torch.from_numpy(z["proj"].astype(np.float32))
        variance = torch.from_numpy(z["variance"].astype(np.float32)) if "variance" in z.files else None
    return Prior(path.name.split(".")[0], mean, proj, meta, variance)


def available() -> list[Prior]:
    """Every packaged prior."""
    return [_load(p) for p in sorted(PRIOR_DIR.glob("*.lw.npz"))]


def lw_index(pipeline: Pipeline) -> int | None:
    """Position (in ``pipeline.post``) of its first ``lw`` step, or None."""
    for i, step in enumerate(pipeline.post):
        if isinstance(step, LearnedWhitening):
            return i
    return None


def before_lw(pipeline: Pipeline, i: int) -> str:
    """Canonical spec of the steps before post-step ``i``."""
    steps = [format_step(pipeline.pool.name, pipeline.pool.params)]
    steps += [format_step(s.name, s.params) for s in pipeline.post[:i]]
    return " | ".join(steps)


def find(config: dict[str, Any], pipeline: Pipeline) -> Prior | None:
    """The packaged prior for an extractor ``config`` and its ``pipeline``, if one fits them."""
    i = lw_index(pipeline)
    if i is None:
        return None
    step = pipeline.post[i]
    for prior in available():
        m = prior.meta
        if any(m.get(k) != config.get(k) for k in MATCH):
            continue
        if m.get("before") != before_lw(pipeline, i) or m.get("shrink") != step.params["shrink"]:
            continue
        dim = step.params["dim"]
        if dim is not None and dim > prior.proj.shape[0]:
            continue
        return prior
    return None


def attach(config: dict[str, Any], pipeline: Pipeline) -> Prior | None:
    """Load the matching prior into the pipeline's unfitted ``lw`` step; returns the prior used, if any."""
    i = lw_index(pipeline)
    if i is None or pipeline.post[i].fitted:
        return None
    prior = find(config, pipeline)
    if prior is not None:
        pipeline.post[i].load_state(prior.state(pipeline.post[i].params["dim"]))
    return prior


__all__ = ["PRIOR_DIR", "Prior", "attach", "available", "find", "load", "lw_index", "use"]
