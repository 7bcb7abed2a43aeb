"""Every pooling method against an independent float64 reference written from the formula (loops are fine
here), on several shapes including non-square and 1×1 maps; R-MAC grids against the reference algorithm."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import torch

from poolvec import pooling
from poolvec.pooling import functional as PF

SHAPES = [(2, 5, 7, 7), (3, 4, 5, 9), (2, 3, 9, 4), (2, 6, 1, 1), (1, 3, 1, 6), (2, 4, 13, 10)]


def _maps(shape, seed=0, relu=True, sparse=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    if relu:
        x = x.clamp_min(0)
    if sparse:  # whole channels of zeros, as after ReLU on a real net
        x[:, 0] = 0
    return x


def _close(a, b, tol=1e-9):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------------------
# references (numpy, float64, straight from the formulas)
# ---------------------------------------------------------------------------------------------------------


def ref_mac(x):
    return x.max(axis=(2, 3))


def ref_spoc(x):
    return x.mean(axis=(2, 3))


def ref_sum(x):
    return x.sum(axis=(2, 3))


def ref_spoc_center(x):
    b, c, h, w = x.shape
    sigma = min(h, w) / 6
    out = np.zeros((b, c))
    for i in range(h):
        for j in range(w):
            dy, dx = i + 0.5 - h / 2, j + 0.5 - w / 2
            out += math.exp(-(dy * dy + dx * dx) / (2 * sigma * sigma)) * x[:, :, i, j]
    return out


def ref_gem(x, p, eps=1e-6):
    b, c, _h, _w = x.shape
    p = np.broadcast_to(np.asarray(p, dtype=np.float64), (c,))
    out = np.zeros((b, c))
    for k in range(c):
        out[:, k] = np.mean(np.maximum(x[:, k], eps) ** p[k], axis=(1, 2)) ** (1 / p[k])
    return out


def ref_lse(x, r):
    return np.log(np.mean(np.exp(r * x), axis=(2, 3))) / r


def ref_grid_regions(h, w, levels=3, ovr=0.4):
    """The cirtorch region grid re-derived from its description (float32 arithmetic like the reference)."""
    f32 = np.float32
    short = min(h, w)
    cands = np.array([2, 3, 4, 5, 6, 7], dtype=f32)
    steps = (f32(max(h, w) - short)) / (cands - f32(1))
    err = np.abs((f32(short * short) - f32(short) * steps) / f32(short * short) - f32(ovr))
    idx = int(np.argmin(err))
    wd = idx + 1 if h < w else 0
    hd = idx + 1 if h > w else 0
    regions = [(0, 0, h, w)]
    for lvl in range(1, levels + 1):
        side = math.floor(2 * short / (lvl + 1))
        half = math.floor(side / 2 - 1)

        def starts(length, n, side=side, half=half):
            b = 0.0 if n == 1 else (length - side) / (n - 1)
            return [int(np.floor(f32(half) + f32(k) * f32(b))) - half for k in range(n)]

        if side == 0:
            continue
        for t in starts(h, lvl + hd):
            for left in starts(w, lvl + wd):
                regions.append((t, left, side, side))
    return regions


def ref_rmac(x, levels=3, eps=1e-6, pool="max", p=3.0):
    b, c, h, w = x.shape
    out = np.zeros((b, c))
    for t, left, rh, rw in ref_grid_regions(h, w, levels):
        reg = x[:, :, t : t + rh, left : left + rw]
        v = reg.max(axis=(2, 3)) if pool == "max" else np.mean(np.maximum(reg, 1e-06) ** p, axis=(2, 3)) ** (1 / p)
        out += v / (np.linalg.norm(v, axis=1, keepdims=True) + eps)
    return out


def ref_cells(n, k):
    return [(math.floor(i * n / k), math.ceil((i + 1) * n / k)) for i in range(k)]


def ref_grid(x, gh, gw, op):
    b, c, h, w = x.shape
    out = np.zeros((b, c, gh, gw))
    for i, (a0, a1) in enumerate(ref_cells(h, gh)):
        for j, (b0, b1) in enumerate(ref_cells(w, gw)):
            cell = x[:, :, a0:a1, b0:b1]
            out[:, :, i, j] = cell.max(axis=(2, 3)) if op == "max" else cell.mean(axis=(2, 3))
    return out.reshape(b, -1)


def ref_crow(x, a=2.0, b=2.0):
    out = []
    for img in x:
        s = img.sum(axis=0)
        z = (s**a).sum() ** (1 / a)
        spatial = (s / z) ** (1 / b)
        area = img.shape[1] * img.shape[2]
        q = np.array([np.count_nonzero(ch) / area for ch in img])
        beta = np.array([math.log(q.sum() / qc) if qc > 0 else 0.0 for qc in q])
        out.append((img * spatial).sum(axis=(1, 2)) * beta)
    return np.stack(out)


def _components(sel, conn):
    h, w = sel.shape
    seen = np.zeros_like(sel, dtype=bool)
    comps = []
    nbrs = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if conn == 8:
        nbrs += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    for i in range(h):  # raster order: components come out ordered by their first pixel
        for j in range(w):
            if sel[i, j] and not seen[i, j]:
                comp, queue = [], deque([(i, j)])
                seen[i, j] = True
                while queue:
                    y, z = queue.popleft()
                    comp.append((y, z))
                    for dy, dz in nbrs:
                        yy, zz = y + dy, z + dz
                        if 0 <= yy < h and 0 <= zz < w and sel[yy, zz] and not seen[yy, zz]:
                            seen[yy, zz] = True
                            queue.append((yy, zz))
                comps.append(comp)
    return comps


def ref_scda(x, conn=8):
    out = []
    for img in x:
        agg = img.sum(axis=0)
        sel = agg > agg.mean()
        comps = _components(sel, conn)
        everything = [(i, j) for i in range(agg.shape[0]) for j in range(agg.shape[1])]
        best = max(comps, key=len) if comps else everything  # max keeps the first of the largest
        desc = np.stack([img[:, i, j] for i, j in best], 1)
        out.append(np.concatenate([desc.mean(1), desc.max(1)]))
    return np.stack(out)


def ref_pwa(x, channels, a=2.0, b=2.0):
    out = []
    for img in x:
        parts = []
        for k in channels:
            f = img[k]
            wgt = (f / (f**a).sum() ** (1 / a)) ** (1 / b)
            parts.append((img * wgt).sum(axis=(1, 2)))
        out.append(np.concatenate(parts))
    return np.stack(out)


# ---------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_global_pools_match_reference(shape):
    x = _maps(shape, relu=False)  # these formulas do not assume non-negative inputs
    n = x.numpy()
    _close(PF.mac(x), ref_mac(n))
    _close(PF.spoc(x), ref_spoc(n))
    _close(PF.sum_pool(x), ref_sum(n))
    _close(PF.avgmax(x), 0.5 * (ref_spoc(n) + ref_mac(n)))
    _close(PF.catavgmax(x), np.concatenate([ref_spoc(n), ref_mac(n)], 1))
    _close(PF.spoc_center(x), ref_spoc_center(n))
    for r in (0.5, 10.0, 50.0):
        _close(PF.lse(x, r=r), ref_lse(n, r))
    for p in (1.0, 3.0, 4.5):
        _close(PF.gem(x, p=p), ref_gem(n, p))


@pytest.mark.parametrize("shape", SHAPES)
def test_gem_per_channel_and_tensor_p(shape):
    x = _maps(shape)
    c = shape[1]
    p = torch.linspace(1.5, 6.0, c, dtype=torch.float64)
    _close(PF.gem(x, p=p), ref_gem(x.numpy(), p.numpy()))
    _close(PF.gem(x, p=torch.tensor(2.5)), ref_gem(x.numpy(), 2.5))


def test_float32_input_close_to_float64_reference():
    x = _maps((4, 16, 11, 8), seed=3)
    n = x.numpy()
    x32 = x.float()
    _close(pooling.build("gem(p=3)").apply_pool(x32), ref_gem(n, 3.0), tol=1e-5)
    _close(pooling.build("rmac").apply_pool(x32), ref_rmac(n), tol=1e-5)
    _close(pooling.build("crow").apply_pool(x32), ref_crow(n), tol=1e-5)


def test_lse_is_stable_for_large_values():
    x = torch.full((1, 2, 3, 3), 1000.0, dtype=torch.float64)
    x[0, 1, 0, 0] = 1010.0
    v = PF.lse(x, r=100.0)
    assert torch.isfinite(v).all()
    assert v[0, 0].item() == pytest.approx(1000.0)
    assert v[0, 1].item() == pytest.approx(1010.0 + math.log(1 / 9) / 100, abs=1e-9)


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        (
            (7, 7),
            [(0, 0, 7, 7), (0, 0, 7, 7), (0, 0, 4, 4), (0, 3, 4, 4), (3, 0, 4, 4), (3, 3, 4, 4)]
            + [(t, s, 3, 3) for t in (0, 2, 4) for s in (0, 2, 4)],
        ),
        ((1, 1), [(0, 0, 1, 1), (0, 0, 1, 1)]),
        # short side 2: level 1 → 2 squares of 2 along the long side; levels 2 and 3 → 1×1 cells on a
        # 2×3 and 3×4 lattice (⌊-1 + k·b⌋ + 1 starts, so some repeat, exactly like the reference)
        (
            (2, 3),
            [(0, 0, 2, 3), (0, 0, 2, 2), (0, 1, 2, 2)]
            + [(t, s, 1, 1) for t in (0, 1) for s in (0, 1, 2)]
            + [(t, s, 1, 1) for t in (0, 0, 1) for s in (0, 0, 1, 2)],
        ),
    ],
)
def test_rmac_grid_hand_checked(hw, expected):
    assert pooling.rmac_regions(*hw) == expected


GRID_SHAPES = [(h, w) for h in (1, 2, 3, 5, 7, 10, 14, 24, 32) for w in (1, 2, 4, 7, 9, 16, 24, 31, 40)]


@pytest.mark.parametrize("hw", GRID_SHAPES)
def test_rmac_grid_equals_reference_algorithm(hw):
    assert pooling.rmac_regions(*hw) == ref_grid_regions(*hw)
    assert pooling.rmac_regions(*hw, levels=5) == ref_grid_regions(*hw, levels=5)


@pytest.mark.parametrize("shape", [*SHAPES, (2, 3, 32, 24), (1, 2, 24, 32)])
def test_rmac_rgem_match_reference(shape):
    x = _maps(shape, seed=1)
    n = x.numpy()
    _close(PF.rmac(x), ref_rmac(n))
    _close(PF.rmac(x, levels=1), ref_rmac(n, levels=1))
    _close(PF.rgem(x, p=3.0), ref_rmac(n, pool="gem", p=3.0))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", ["max", "avg"])
def test_spp_and_grid_match_reference(shape, op):
    x = _maps(shape, seed=2, relu=False)
    n = x.numpy()
    expected = np.concatenate([ref_grid(n, lv, lv, op) for lv in (1, 2, 4)], 1)
    _close(PF.spp(x, levels=(1, 2, 4), op=op), expected)
    _close(PF.grid(x, h=2, w=3, op=op), ref_grid(n, 2, 3, op))
    # the adaptive cells are PyTorch's own
    torch_ref = (torch.nn.functional.adaptive_max_pool2d if op == "max" else torch.nn.functional.adaptive_avg_pool2d)(
        x, (3, 2)
    )
    _close(PF.grid(x, h=3, w=2, op=op), torch_ref.flatten(1))


@pytest.mark.parametrize("shape", SHAPES)
def test_crow_matches_reference(shape):
    x = _maps(shape, seed=4, sparse=True)
    _close(PF.crow(x), ref_crow(x.numpy()))
    _close(PF.crow(x, a=1.0, b=3.0), ref_crow(x.numpy(), a=1.0, b=3.0))
    assert torch.all(PF.crow(x)[:, 0] == 0)  # empty channel: weight 0


@pytest.mark.parametrize("shape", [*SHAPES, (3, 4, 16, 12)])
@pytest.mark.parametrize("conn", [8, 4])
def test_scda_matches_reference(shape, conn):
    x = _maps(shape, seed=5)
    _close(PF.scda(x, connectivity=conn), ref_scda(x.numpy(), conn))


def test_scda_picks_the_largest_component_and_breaks_ties_in_raster_order():
    x = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    x[0, 0, 0, 0:2] = 5.0  # 2 pixels
    x[0, 0, 3:5, 3:6] = 1.0  # 6 pixels, weaker but larger
    v = PF.scda(x)
    assert v[0, 0].item() == pytest.approx(1.0) and v[0, 1].item() == pytest.approx(1.0)
    y = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    y[0, 0, 0, 0] = 2.0
    y[0, 0, 4, 4] = 3.0  # same size, later in raster order
    assert PF.scda(y)[0, 0].item() == pytest.approx(2.0)
    # diagonal neighbours join under 8-connectivity only
    d = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    d[0, 0, 0, 0] = d[0, 0, 1, 1] = 1.0
    d[0, 0, 3, 2] = d[0, 0, 3, 3] = 4.0  # 8-conn: two components of 2, the first wins; 4-conn: this one
    assert PF.scda(d, connectivity=8)[0, 0].item() == pytest.approx(1.0)
    assert PF.scda(d, connectivity=4)[0, 0].item() == pytest.approx(4.0)


@pytest.mark.parametrize("shape", SHAPES)
def test_pwa_matches_reference(shape):
    x = _maps(shape, seed=6) + 0.01  # strictly positive so every part has a non-zero norm
    channels = [shape[1] - 1, 0]
    _close(PF.pwa(x, channels=channels), ref_pwa(x.numpy(), channels))


def test_pwa_fit_selects_the_highest_variance_channels():
    g = torch.Generator().manual_seed(7)
    x = torch.rand(20, 6, 4, 5, generator=g)
    scale = torch.tensor([1.0, 5.0, 0.1, 3.0, 0.5, 2.0])
    x = x * scale[None, :, None, None] * torch.rand(20, 1, 1, 1, generator=g)
    pipe = pooling.build("pwa(n=3)")
    assert pipe.needs_fit
    with pytest.raises(pooling.PoolingError, match="fit_pool"):
        pipe(x)
    pipe.fit_pool(x)
    var = x.double().mean((2, 3)).var(0, unbiased=False)
    assert pipe.to_dict()["steps"][0]["state"]["channels"] == torch.argsort(var, descending=True)[:3].tolist()
    assert pipe.out_dim(6) == 18 and pipe(x).shape == (20, 18)
    # streaming over batches gives the same selection
    other = pooling.build("pwa(n=3)").fit_pool([x[:7], x[7:]])
    assert other.to_dict() == pipe.to_dict()


def test_post_steps_match_reference():
    g = torch.Generator().manual_seed(8)
    v = torch.randn(50, 12, generator=g, dtype=torch.float64)
    n = v.numpy()
    _close(pooling.post.l2n(v), n / np.linalg.norm(n, axis=1, keepdims=True))
    _close(pooling.post.signed_power(v, 0.3), np.sign(n) * np.abs(n) ** 0.3)

    pipe = pooling.build("spoc | pca(dim=5, whiten=true, power=0.5)")
    pipe.fit(v.float())
    mean = n.mean(0)
    cov = (n - mean).T @ (n - mean) / (len(n) - 1)
    lam, vec = np.linalg.eigh(cov)
    order = np.argsort(lam)[::-1][:5]
    lam, vec = lam[order], vec[:, order]
    vec = vec * np.sign(vec[np.abs(vec).argmax(0), range(5)])
    expected = (n - mean) @ vec / np.sqrt(lam)
    _close(pipe.apply_post(v.float()), expected, tol=2e-4)
    white = pipe.apply_post(v.float()).double()
    _close(torch.cov(white.T), np.eye(5), tol=1e-4)  # whitened: identity covariance

    plain = pooling.build("spoc | pca(dim=5, whiten=false)").fit(v.float())
    _close(plain.apply_post(v.float()), (n - mean) @ vec, tol=1e-4)
    centred = pooling.build("spoc | center").fit(v.float())
    _close(centred.apply_post(v.float()), (n - mean), tol=1e-5)
