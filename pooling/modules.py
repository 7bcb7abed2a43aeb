"""``nn.Module`` forms of the pooling functions, for training and for ``torch.jit.trace`` / ``torch.compile``.

Thin wrappers in the style of cirtorch's ``layers/pooling.py``: the math stays in :mod:`poolvec.pooling.functional`,
modules only hold parameters (GeM's learnable p) and fixed settings.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from poolvec.pooling import functional as PF
from poolvec.pooling.post import l2n
from poolvec.pooling.regions import rmac_levels
from poolvec.pooling.spec import METHODS, PoolingError

__all__ = ["L2N", "GeM", "Pool", "RGeM"]

# R-MAC's region grid depends on the map's size only: a constant to torch.compile (no graph break on the cache).
# Marked here, where compiled modules come from, rather than in `regions` (it imports torch._dynamo, ~1 s).
torch.compiler.assume_constant_result(rmac_levels)


def _init_p(p: float, channels: int | None, learn_p: bool) -> Tensor | nn.Parameter:
    if p <= 0:
        raise PoolingError(f"GeM: p must be > 0, got {p}")
    value = torch.full((channels,) if channels else (1,), float(p))
    return nn.Parameter(value) if learn_p else value


class GeM(nn.Module):
    """Generalized-mean pooling with a learnable ``p`` (scalar, or one per channel when ``channels`` is
    given — GeMmp). ``forward(x, mask=None) -> [B, C]``. Radenović et al., TPAMI 2018."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, channels: int | None = None, learn_p: bool = True):
        super().__init__()
        self.eps = float(eps)
        p_t = _init_p(p, channels, learn_p)
        if isinstance(p_t, nn.Parameter):
            self.p = p_t
        else:
            self.register_buffer("p", p_t)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return PF.gem(x, mask, p=self.p, eps=self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p.detach().mean().item():.4g}, channels={self.p.numel()}, eps={self.eps}"


class RGeM(nn.Module):
    """Regional GeM over the R-MAC grid with a learnable scalar ``p``. ``forward(x, mask=None) -> [B, C]``."""

    def __init__(self, levels: int = 3, overlap: float = 0.4, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.levels, self.overlap, self.eps = int(levels), float(overlap), float(eps)
        self.p = nn.Parameter(torch.tensor(float(p)))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return PF.rgem(x, mask, levels=self.levels, overlap=self.overlap, p=self.p, eps=self.eps)  # type: ignore[arg-type]


class Pool(nn.Module):
    """Any registered pooling method by name with fixed parameters, e.g. ``Pool("rmac", levels=3)``.

    Parameters are validated like a spec string; unknown names raise :class:`PoolingError`."""

    def __init__(self, method: str, **params: Any):
        super().__init__()
        from poolvec.pooling.spec import format_step, parse

        args = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in params.items())
        name, full = parse(f"{method}({args})" if args else method)[0]
        if METHODS[name].needs_fit:
            raise PoolingError(f"{name} needs fitted state; use pooling.build(...).fit_pool(...) instead")
        self.method = name
        self.params = full
        self._fn = METHODS[name].fn
        self._text = format_step(name, full)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self._fn(x, mask, **self.params)  # type: ignore[misc]

    def extra_repr(self) -> str:
        return self._text


class L2N(nn.Module):
    """L2 normalisation of ``[B, D]`` vectors."""

    def forward(self, v: Tensor) -> Tensor:
        return l2n(v)
