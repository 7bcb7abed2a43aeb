"""Pooling methods as pure functions: feature maps ``x: [B, C, H, W]`` → vectors ``[B, D]``.

Every function takes an optional ``mask: [B, 1, H, W]`` (bool or {0, 1} float, 1 = valid position) so a
batch of zero-padded maps pools exactly like the unpadded maps. ``mask=None`` means every position is valid.
Half-precision inputs are computed in float32; float64 inputs stay float64 (the caller casts the result).

Global pools (mac, spoc, sum, gem, lse, avgmax, catavgmax, crow, scda, pwa) handle any mask directly.
Methods whose geometry depends on the map size (spoc_center's Gaussian, R-MAC/rGeM regions, SPP/grid cells)
work on the bounding box of the valid region: images are grouped by identical box and cropped, and any
invalid positions left inside a box are excluded from every region/cell statistic.

No I/O, no global mutable state (the R-MAC grid cache in ``regions`` is a pure memo).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from poolvec.pooling.regions import rmac_levels

__all__ = [
    "avgmax",
    "catavgmax",
    "crow",
    "gem",
    "grid",
    "lse",
    "mac",
    "pwa",
    "pwa_channels",
    "pwa_stats",
    "rgem",
    "rmac",
    "scda",
    "spoc",
    "spoc_center",
    "spp",
    "sum_pool",
]


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def _float(x: Tensor) -> Tensor:
    """Checked input: 4-D, computed in float32 unless it is float64."""
    if x.dim() != 4:
        raise ValueError(f"expected feature maps [B, C, H, W], got shape {tuple(x.shape)}")
    if x.dtype != torch.float64 and x.dtype != torch.float32:
        x = x.float()
    return x


def _mask(x: Tensor, mask: Tensor | None) -> Tensor | None:
    """Mask as bool ``[B, 1, H, W]`` (accepts ``[B, H, W]``), or None."""
    if mask is None:
        return None
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    b, _, h, w = x.shape
    if tuple(mask.shape) != (b, 1, h, w):
        raise ValueError(f"mask must have shape [B, 1, H, W] = {[b, 1, h, w]}, got {list(mask.shape)}")
    if mask.dtype != torch.bool:
        mask = mask > 0.5
    return mask.to(x.device)


def _count(m: Tensor, like: Tensor) -> Tensor:
    """Number of valid positions per image, ``[B, 1]``, at least 1 (empty masks give zero vectors)."""
    return m.sum((2, 3), dtype=like.dtype).clamp_min(1)


def _masked_max(x: Tensor, m: Tensor | None) -> Tensor:
    """Max over positions ``[B, C]``; 0 where an image has no valid position."""
    if m is None:
        return x.amax((2, 3))
    out = x.masked_fill(~m, float("-inf")).amax((2, 3))
    return out.masked_fill(~m.flatten(1).any(1, keepdim=True), 0.0)


def _masked_mean(x: Tensor, m: Tensor | None) -> Tensor:
    """Mean over positions ``[B, C]``; 0 where an image has no valid position."""
    if m is None:
        return x.mean((2, 3))
    return torch.where(m, x, 0.0).sum((2, 3)) / _count(m, x)


def _grad_free(*ts: object) -> bool:
    """True when in-place ops are safe (no autograd graph is being recorded through these tensors)."""
    if not torch.is_grad_enabled():
        return True
    return not any(isinstance(t, Tensor) and t.requires_grad for t in ts)


def _powered(x: Tensor, p: float | Tensor, eps: float) -> Tensor:
    """``max(x, eps)^p``; ``p`` a number, a scalar tensor or ``[1, C]`` (per channel). One temporary only
    when no gradient is needed (big maps are memory-bound)."""
    if isinstance(p, Tensor) and p.dim() == 2:
        p = p[:, :, None, None]
    t = x.clamp(min=eps)
    return t.pow_(p) if _grad_free(x, p) else t.pow(p)


def _bbox(m: Tensor) -> Tensor:
    """Bounding box of the valid positions per image, ``[B, 4]`` int64 rows ``(top, left, height, width)``;
    height = width = 0 for an empty mask."""
    rows = m.any(3).squeeze(1)  # [B, H]
    cols = m.any(2).squeeze(1)  # [B, W]
    h, w = rows.shape[1], cols.shape[1]
    top = rows.to(torch.uint8).argmax(1)
    left = cols.to(torch.uint8).argmax(1)
    bottom = h - rows.flip(1).to(torch.uint8).argmax(1)
    right = w - cols.flip(1).to(torch.uint8).argmax(1)
    nonempty = rows.any(1)
    return torch.stack([top, left, (bottom - top) * nonempty, (right - left) * nonempty], 1)


def _per_box(x: Tensor, m: Tensor | None, kernel: Callable[[Tensor, Tensor | None], Tensor]) -> Tensor:
    """Run a shape-dependent ``kernel(x, mask)`` on the valid bounding box of each image.

    Images with the same box are cropped and pooled together (one kernel call per distinct box, no per-image
    loop); inside a crop the mask is passed on only if some positions there are still invalid."""
    if m is None:
        return kernel(x, None)
    b, _, _h, _w = x.shape
    boxes = _bbox(m)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, key in enumerate(map(tuple, boxes.tolist())):
        groups.setdefault(key, []).append(i)
    out: Tensor | None = None
    for (top, left, bh, bw), idx in groups.items():
        if bh == 0 or bw == 0:
            continue
        sel = slice(None) if len(idx) == b else torch.tensor(idx, device=x.device)
        xi = x[sel, :, top : top + bh, left : left + bw]
        mi = m[sel, :, top : top + bh, left : left + bw]
        res = kernel(xi, None if bool(mi.all()) else mi)
        if len(idx) == b:
            return res
        if out is None:
            out = res.new_zeros(b, res.shape[1])
        out[sel] = res
    if out is None:  # every mask empty: zero vectors of the right size
        out = kernel(x.new_zeros(b, x.shape[1], 1, 1), None).zero_()
    return out


# ----------------------------------------------------------------------------------------------------------
# global pools
# ----------------------------------------------------------------------------------------------------------


def mac(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """MAC — maximum activation of convolutions, ``v_c = max_{h,w} x_{c,h,w}`` (D = C).

    Tolias, Sicre & Jégou, "Particular object retrieval with integral max-pooling of CNN activations",
    ICLR 2016 (after Razavian et al. 2016)."""
    x = _float(x)
    return _masked_max(x, _mask(x, mask))


def spoc(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """SPoC as plain global average, ``v_c = mean_{h,w} x_{c,h,w}`` (D = C) — the cirtorch/timm meaning.

    For Babenko & Lempitsky's centre-weighted sum see :func:`spoc_center`."""
    x = _float(x)
    return _masked_mean(x, _mask(x, mask))


def sum_pool(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Sum pooling, ``v_c = Σ_{h,w} x_{c,h,w}`` (D = C); scales with the map area."""
    x = _float(x)
    m = _mask(x, mask)
    return x.sum((2, 3)) if m is None else torch.where(m, x, 0.0).sum((2, 3))


def spoc_center(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """SPoC with a Gaussian centre prior: ``v_c = Σ_{h,w} α_{h,w} x_{c,h,w}``,
    ``α = exp(-((y-H/2)² + (x-W/2)²) / 2σ²)``, ``σ = min(H, W)/6`` (D = C).

    Babenko & Lempitsky, "Aggregating deep convolutional features for image retrieval", ICCV 2015. Positions
    are pixel centres (``y = i + ½``), so the prior is symmetric; with a mask the Gaussian sits on the
    centre of the valid region's bounding box and σ uses that box's size. This is a weighted *sum*, as in
    the paper (follow it with ``l2``)."""
    x = _float(x)
    m = _mask(x, mask)
    _b, _c, h, w = x.shape
    if m is None:
        ys = torch.arange(h, dtype=x.dtype, device=x.device) + 0.5 - h / 2
        xs = torch.arange(w, dtype=x.dtype, device=x.device) + 0.5 - w / 2
        sigma = min(h, w) / 6
        alpha = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
        return x.flatten(2) @ alpha.flatten()
    box = _bbox(m).to(x.dtype)
    top, left, bh, bw = box.unbind(1)
    ys = torch.arange(h, dtype=x.dtype, device=x.device)[None] + 0.5 - (top + bh / 2)[:, None]  # [B, H]
    xs = torch.arange(w, dtype=x.dtype, device=x.device)[None] + 0.5 - (left + bw / 2)[:, None]  # [B, W]
    sigma = (torch.minimum(bh, bw) / 6).clamp_min(1e-12)
    alpha = torch.exp(-(ys[:, :, None] ** 2 + xs[:, None, :] ** 2) / (2 * sigma**2)[:, None, None])
    alpha = alpha * m.squeeze(1)
    return torch.bmm(x.flatten(2), alpha.flatten(1).unsqueeze(2)).squeeze(2)


def gem(x: Tensor, mask: Tensor | None = None, p: float | Tensor = 3.0, eps: float = 1e-6) -> Tensor:
    """Generalized mean: ``v_c = (mean_{h,w} max(x_{c,h,w}, eps)^p)^(1/p)`` (D = C).

    Radenović, Tolias & Chum, "Fine-tuning CNN image retrieval with no human annotation", TPAMI 2018.
    ``p`` is a number or a tensor (scalar, or ``[C]`` for one power per channel — GeMmp). p = 1 is the
    average of the clamped map; p → ∞ tends to MAC."""
    x = _float(x)
    m = _mask(x, mask)
    if isinstance(p, Tensor):
        p = p.to(x.dtype)
        p = p.reshape(()) if p.numel() == 1 else p.reshape(1, -1)
    return _masked_mean(_powered(x, p, eps), m).pow(1.0 / p)


def lse(x: Tensor, mask: Tensor | None = None, r: float = 10.0) -> Tensor:
    """Log-sum-exp pooling, ``v_c = (1/r)·log(mean_{h,w} exp(r·x_{c,h,w}))`` (D = C), computed stably as
    ``max + (1/r)·log mean exp(r·(x − max))``. r → 0 tends to the average, r → ∞ to the max.

    Pinheiro & Collobert, "From image-level to pixel-level labeling with convolutional networks", CVPR 2015."""
    x = _float(x)
    m = _mask(x, mask)
    top = _masked_max(x, m)
    e = torch.exp(r * (x - top[:, :, None, None]))
    if m is None:
        return top + torch.log(e.mean((2, 3))) / r
    mean = torch.where(m, e, 0.0).sum((2, 3)) / _count(m, x)
    return top + torch.log(mean.clamp_min(torch.finfo(x.dtype).tiny)) / r * m.flatten(1).any(1, keepdim=True)


def avgmax(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Average of global average and global max, ``½(avg + max)`` (D = C) — timm's ``avgmax``."""
    x = _float(x)
    m = _mask(x, mask)
    return 0.5 * (_masked_mean(x, m) + _masked_max(x, m))


def catavgmax(x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Concatenation ``[avg, max]`` of global average and global max (D = 2C) — timm's ``catavgmax``."""
    x = _float(x)
    m = _mask(x, mask)
    return torch.cat([_masked_mean(x, m), _masked_max(x, m)], 1)


# ----------------------------------------------------------------------------------------------------------
# regional pools
# ----------------------------------------------------------------------------------------------------------


Bands = Sequence[tuple[int, int]]


def _bhwc(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` → contiguous ``[B, H, W, C]`` (free for channels_last inputs): band reductions then
    run over contiguous channel vectors, about twice as fast as strided NCHW reductions on CPU."""
    return x.permute(0, 2, 3, 1).contiguous()


def _band_reduce(xc: Tensor, rows: Bands, cols: Bands, op: str) -> Tensor:
    """Max or sum over the cells ``rows × cols`` (``(start, stop)`` bands) of a ``[B, H, W, C]`` map →
    ``[B, len(rows)·len(cols), C]`` in row-major cell order.

    Separable: reduce each row band first, then each column band of that, so the cost is one pass over the
    map per band instead of one per cell."""
    red = torch.amax if op == "max" else torch.sum
    r = torch.stack([red(xc[:, a:b], 1) for a, b in rows], 1)  # [B, nR, W, C]
    cells = torch.stack([red(r[:, :, a:b], 2) for a, b in cols], 2)  # [B, nR, nC, C]
    return cells.flatten(1, 2)


def _rmac_bands(h: int, w: int, levels: int, overlap: float) -> list[tuple[Bands, Bands]]:
    """The global region then every R-MAC level, as row/column bands."""
    out: list[tuple[Bands, Bands]] = [([(0, h)], [(0, w)])]
    for lv in rmac_levels(h, w, levels, overlap):
        out.append(([(t, t + lv.size) for t in lv.tops], [(le, le + lv.size) for le in lv.lefts]))
    return out


def _l2_regions(r: Tensor, eps: float) -> Tensor:
    """Per-region L2 (``v / (‖v‖ + eps)``, as the reference) then sum over regions: ``[B, R, C]`` → ``[B, C]``."""
    return (r / (r.norm(dim=2, keepdim=True) + eps)).sum(1)


def _neg_inf_to_zero(r: Tensor) -> Tensor:
    """Cells with no valid position (max = -inf) become 0."""
    return r.masked_fill(torch.isneginf(r), 0.0)


def _rmac_kernel(x: Tensor, m: Tensor | None, levels: int, overlap: float, eps: float) -> Tensor:
    h, w = x.shape[-2:]
    if m is not None:
        x = x.masked_fill(~m, float("-inf"))
    xc = _bhwc(x)
    r = torch.cat([_band_reduce(xc, rows, cols, "max") for rows, cols in _rmac_bands(h, w, levels, overlap)], 1)
    return _l2_regions(r if m is None else _neg_inf_to_zero(r), eps)


def rmac(x: Tensor, mask: Tensor | None = None, levels: int = 3, overlap: float = 0.4, eps: float = 1e-6) -> Tensor:
    """R-MAC — regional MAC: ``v = Σ_{R} mac(x_R) / (‖mac(x_R)‖ + eps)`` over the global region plus the
    square regions of ``levels`` scales (D = C). The grid is cirtorch's (see :mod:`poolvec.pooling.regions`):
    side ``⌊2·min(H,W)/(l+1)⌋``, count on the long side chosen for ~``overlap`` overlap.

    Tolias, Sicre & Jégou, "Particular object retrieval with integral max-pooling of CNN activations",
    ICLR 2016. The result is not L2-normalised (add ``| l2``)."""
    x = _float(x)
    return _per_box(x, _mask(x, mask), lambda xi, mi: _rmac_kernel(xi, mi, levels, overlap, eps))


def _rgem_kernel(x: Tensor, m: Tensor | None, levels: int, overlap: float, p: float, eps: float) -> Tensor:
    h, w = x.shape[-2:]
    bands = _rmac_bands(h, w, levels, overlap)
    xp = _powered(x, p, eps)
    if m is not None:
        xp = xp * m
    xc = _bhwc(xp)
    sums = torch.cat([_band_reduce(xc, rows, cols, "sum") for rows, cols in bands], 1)  # [B, R, C]
    if m is None:
        areas = [(b - a) * (d - c) for rows, cols in bands for a, b in rows for c, d in cols]
        counts = torch.tensor(areas, dtype=x.dtype, device=x.device)[None, :, None]
    else:
        mc = _bhwc(m.to(x.dtype))
        counts = torch.cat([_band_reduce(mc, rows, cols, "sum") for rows, cols in bands], 1).clamp_min(1)
    return _l2_regions((sums / counts).pow(1.0 / p), eps)


def rgem(
    x: Tensor,
    mask: Tensor | None = None,
    levels: int = 3,
    overlap: float = 0.4,
    p: float = 3.0,
    eps: float = 1e-6,
) -> Tensor:
    """Regional GeM: R-MAC's regions (global included) with GeM per region instead of max, each region
    vector L2-normalised, then summed (D = C).

    Radenović, Tolias & Chum, TPAMI 2018 (cirtorch ``Rpool(GeM)``); regions from Tolias et al. 2016."""
    x = _float(x)
    return _per_box(x, _mask(x, mask), lambda xi, mi: _rgem_kernel(xi, mi, levels, overlap, p, eps))


def _adaptive_bands(n: int, cells: int) -> list[tuple[int, int]]:
    """Cell ``i`` of an adaptive pool: ``[⌊i·n/cells⌋, ⌈(i+1)·n/cells⌉)`` (PyTorch's boundaries)."""
    return [((i * n) // cells, -((-(i + 1) * n) // cells)) for i in range(cells)]


def _grid_kernel(x: Tensor, m: Tensor | None, grids: Sequence[tuple[int, int]], op: str) -> Tensor:
    """Adaptive grids ``(gh, gw)``, each flattened channel-major (``[B, C, gh, gw]`` order), concatenated."""
    h, w = x.shape[-2:]
    outs = []
    if op == "max":
        xc = _bhwc(x if m is None else x.masked_fill(~m, float("-inf")))
        for gh, gw in grids:
            r = _band_reduce(xc, _adaptive_bands(h, gh), _adaptive_bands(w, gw), "max")
            outs.append(r if m is None else _neg_inf_to_zero(r))
    else:
        xc = _bhwc(x if m is None else x * m)
        mc = None if m is None else _bhwc(m.to(x.dtype))
        for gh, gw in grids:
            rows, cols = _adaptive_bands(h, gh), _adaptive_bands(w, gw)
            sums = _band_reduce(xc, rows, cols, "sum")
            if mc is None:
                areas = [(b1 - a1) * (d1 - c1) for a1, b1 in rows for c1, d1 in cols]
                outs.append(sums / torch.tensor(areas, dtype=x.dtype, device=x.device)[None, :, None])
            else:
                cnt = _band_reduce(mc, rows, cols, "sum")
                outs.append(torch.where(cnt > 0, sums / cnt.clamp_min(1), 0.0))
    return torch.cat([o.transpose(1, 2).flatten(1) for o in outs], 1)


def grid(x: Tensor, mask: Tensor | None = None, h: int = 2, w: int = 2, op: str = "max") -> Tensor:
    """One adaptive grid level: the map split into ``h × w`` cells (PyTorch adaptive-pool boundaries
    ``⌊iH/h⌋ … ⌈(i+1)H/h⌉``), max or average per cell, flattened channel-major (D = C·h·w)."""
    x = _float(x)
    return _per_box(x, _mask(x, mask), lambda xi, mi: _grid_kernel(xi, mi, [(h, w)], op))


def spp(x: Tensor, mask: Tensor | None = None, levels: Sequence[int] = (1, 2, 4), op: str = "max") -> Tensor:
    """Spatial pyramid pooling: for each level ``l`` an adaptive ``l × l`` grid (see :func:`grid`), the
    levels concatenated in order (D = C·Σ l²).

    He, Zhang, Ren & Sun, "Spatial pyramid pooling in deep convolutional networks for visual recognition",
    ECCV 2014."""
    x = _float(x)
    return _per_box(x, _mask(x, mask), lambda xi, mi: _grid_kernel(xi, mi, [(lv, lv) for lv in levels], op))


# ----------------------------------------------------------------------------------------------------------
# weighted / selective pools
# ----------------------------------------------------------------------------------------------------------


def crow(x: Tensor, mask: Tensor | None = None, a: float = 2.0, b: float = 2.0) -> Tensor:
    """CroW — cross-dimensional weighting (D = C).

    Spatial weights ``α = (S / ‖S‖_a)^(1/b)`` with ``S = Σ_c x_c`` (negative sums clamped to 0: the method
    assumes post-ReLU maps); channel weights ``β_c = log(Σ_k Q_k / Q_c)`` with ``Q_c`` the fraction of
    non-zero positions of channel c, and ``β_c = 0`` for an all-zero channel (as the reference code);
    ``v_c = β_c · Σ_{h,w} α_{h,w} x_{c,h,w}``.

    Kalantidis, Mellina & Osindero, "Cross-dimensional weighting for aggregated deep convolutional
    features", ECCV 2016 workshops."""
    x = _float(x)
    m = _mask(x, mask)
    if m is not None:
        x = torch.where(m, x, 0.0)
    s = x.sum(1, keepdim=True).clamp_min(0)  # [B, 1, H, W]
    z = s.pow(a).sum((2, 3), keepdim=True).pow(1.0 / a).clamp_min(torch.finfo(x.dtype).tiny)
    alpha = (s / z).pow(1.0 / b)
    pooled = (x * alpha).sum((2, 3))
    q = (x != 0).sum((2, 3), dtype=x.dtype)  # counts: the area cancels in Σ Q / Q_c
    beta = torch.where(q > 0, torch.log(q.sum(1, keepdim=True) / q.clamp_min(1)), 0.0)
    return pooled * beta


def _label_components(sel: Tensor, connectivity: int) -> Tensor:
    """Connected-component labels of a bool map ``[B, 1, H, W]`` by iterated max-propagation.

    Each component ends with the label ``H·W − (raster index of its first pixel)``; 0 outside ``sel``."""
    _b, _, h, w = sel.shape
    n = h * w
    init = (n - torch.arange(n, device=sel.device, dtype=torch.float32)).reshape(1, 1, h, w)
    sf = sel.to(torch.float32)
    lab = init * sf
    while True:
        prev = lab
        for _ in range(4):
            if connectivity == 8:
                grown = F.max_pool2d(lab, 3, 1, 1)
            else:
                grown = torch.maximum(F.max_pool2d(lab, (3, 1), 1, (1, 0)), F.max_pool2d(lab, (1, 3), 1, (0, 1)))
            lab = grown * sf
        if torch.equal(lab, prev):
            return lab


def scda(x: Tensor, mask: Tensor | None = None, connectivity: int = 8) -> Tensor:
    """SCDA — selective convolutional descriptor aggregation (D = 2C).

    Aggregation map ``A = Σ_c x_c``; positions with ``A > mean(A)`` (over valid positions) are selected and
    only the largest connected component (``connectivity`` 8 or 4; ties go to the component that starts
    first in raster order) is kept; ``v = [avg, max]`` of the kept descriptors. If nothing is above the
    mean (a constant map) every valid position is kept. Components are found by a batched iterative
    max-propagation (no per-pixel Python loop).

    Wei, Luo, Wu & Zhou, "Selective convolutional descriptor aggregation for fine-grained image
    retrieval", IEEE TIP 2017."""
    x = _float(x)
    m = _mask(x, mask)
    b, _, h, w = x.shape
    valid = torch.ones(b, 1, h, w, dtype=torch.bool, device=x.device) if m is None else m
    agg = torch.where(valid, x, 0.0).sum(1, keepdim=True)
    mean = agg.sum((2, 3), keepdim=True) / _count(valid, x)[:, :, None, None]
    sel = (agg > mean) & valid
    labels = _label_components(sel, connectivity).flatten(1).long()  # [B, HW], values 0..HW
    counts = torch.zeros(b, h * w + 1, dtype=torch.long, device=x.device)
    counts.scatter_add_(1, labels, torch.ones_like(labels))
    counts[:, 0] = 0
    best = h * w - counts.flip(1).argmax(1)  # largest size; ties → largest label = earliest component
    keep = (labels == best[:, None]) & sel.flatten(1)
    keep = torch.where(keep.any(1, keepdim=True), keep, valid.flatten(1)).reshape(b, 1, h, w)
    return torch.cat([_masked_mean(x, keep), _masked_max(x, keep)], 1)


def pwa_stats(x: Tensor, mask: Tensor | None = None) -> tuple[int, Tensor, Tensor]:
    """Statistics for choosing PWA part detectors: ``(n_images, Σ v, Σ v²)`` of the per-image average-pooled
    responses ``v = spoc(x)`` (float64), so channel variances can be accumulated over a whole dataset."""
    v = spoc(x, mask).to(torch.float64)
    return v.shape[0], v.sum(0), (v * v).sum(0)


def pwa_channels(count: int, total: Tensor, total_sq: Tensor, n: int) -> list[int]:
    """The ``n`` channels whose average-pooled response varies most across images (descending variance,
    ties by channel index) — the PWA selection rule."""
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0)
    order = torch.sort(-var, stable=True).indices
    return order[:n].tolist()


def pwa(
    x: Tensor, mask: Tensor | None = None, channels: Tensor | Sequence[int] = (), a: float = 2.0, b: float = 2.0
) -> Tensor:
    """PWA — part-based weighted aggregation (D = n·C for n selected channels).

    Each selected channel ``k`` (a "part detector", chosen on data by the variance of its average-pooled
    response, see ``fit``) gives spatial weights ``w_k = (x_k / ‖x_k‖_a)^(1/b)`` (negatives clamped to 0) and
    a vector ``ψ_k = Σ_{h,w} w_k x``; the n vectors are concatenated in selection order.

    Xu, Shi, Qi, Wang & Xiao, "Unsupervised part-based weighting aggregation of deep convolutional
    features for image retrieval", AAAI 2018."""
    x = _float(x)
    m = _mask(x, mask)
    idx = torch.as_tensor(channels, dtype=torch.long, device=x.device)
    if idx.numel() == 0:
        raise ValueError("pwa needs the selected channels (fit it on feature maps first)")
    if m is not None:
        x = torch.where(m, x, 0.0)
    parts = x.index_select(1, idx).clamp_min(0)  # [B, n, H, W]
    norm = parts.pow(a).sum((2, 3), keepdim=True).pow(1.0 / a).clamp_min(torch.finfo(x.dtype).tiny)
    weights = (parts / norm).pow(1.0 / b)
    out = torch.bmm(weights.flatten(2), x.flatten(2).transpose(1, 2))  # [B, n, C]
    return out.flatten(1)
