"""Pooling pipeline: spec parsing and errors, masks, output dimensions, invariances, serialisation,
dtypes, nn.Module forms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from poolvec import pooling

ALL_POOLS = [
    "mac",
    "spoc",
    "sum",
    "spoc_center",
    "gem(p=3)",
    "gem(p=(2.0, 3.0, 4.0, 5.0, 2.5))",
    "lse(r=10)",
    "avgmax",
    "catavgmax",
    "rmac(levels=3)",
    "rgem(levels=2, p=4)",
    "spp(1, 2, 4)",
    "spp(levels=(1, 3), op=avg)",
    "grid(h=2, w=3, op=max)",
    "grid(h=3, w=1, op=avg)",
    "crow",
    "scda",
    "scda(connectivity=4)",
    "pwa(n=3)",
]
GLOBAL_POOLS = ["mac", "spoc", "sum", "gem(p=3)", "lse(r=10)", "avgmax", "catavgmax", "crow"]
C = 5


def _maps(b, c, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g).clamp_min(0)


def _build(spec):
    pipe = pooling.build(spec)
    if pipe.needs_fit:
        pipe.fit_pool(_maps(12, C, 6, 5, seed=99))
    return pipe


# ---------------------------------------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------------------------------------

SIZES = [(7, 7), (5, 9), (1, 1), (7, 4), (3, 9), (5, 9)]  # repeated size: grouped together


@pytest.mark.parametrize("spec", ALL_POOLS)
@pytest.mark.parametrize("where", ["top-left", "centred"])
def test_masked_equals_unpadded(spec, where):
    pipe = _build(spec)
    hp, wp = 9, 11
    maps = [_maps(1, C, h, w, seed=i) for i, (h, w) in enumerate(SIZES)]
    padded = torch.zeros(len(maps), C, hp, wp)
    mask = torch.zeros(len(maps), 1, hp, wp, dtype=torch.bool)
    for i, m in enumerate(maps):
        h, w = m.shape[-2:]
        t, s = (0, 0) if where == "top-left" else ((hp - h) // 2, (wp - w) // 2)
        padded[i, :, t : t + h, s : s + w] = m[0]
        mask[i, :, t : t + h, s : s + w] = True
    batched = pipe(padded, mask)
    for i, m in enumerate(maps):
        torch.testing.assert_close(batched[i], pipe(m)[0], atol=1e-5, rtol=1e-5)
    # a float {0, 1} mask and a [B, H, W] mask mean the same
    torch.testing.assert_close(pipe(padded, mask.float()), batched, atol=0, rtol=0)
    torch.testing.assert_close(pipe(padded, mask[:, 0]), batched, atol=0, rtol=0)


@pytest.mark.parametrize("spec", ALL_POOLS)
def test_all_valid_mask_equals_no_mask(spec):
    pipe = _build(spec)
    x = _maps(3, C, 6, 7, seed=1)
    torch.testing.assert_close(pipe(x, torch.ones(3, 1, 6, 7)), pipe(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("spec", GLOBAL_POOLS)
def test_global_pools_with_irregular_mask_use_only_valid_positions(spec):
    pipe = _build(spec)
    x = _maps(4, C, 6, 6, seed=2)
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(4, 1, 6, 6, generator=g) > 0.4
    mask[:, :, 0, 0] = True
    out = pipe.apply_pool(x, mask)
    for i in range(4):  # the valid positions of each image gathered into a 1×N map
        idx = mask[i, 0].flatten().nonzero().flatten()
        flat = x[i].flatten(1)[:, idx][None, :, None, :]
        torch.testing.assert_close(out[i], pipe.apply_pool(flat)[0], atol=1e-5, rtol=1e-5)


def test_empty_mask_gives_zero_vector():
    x = _maps(2, C, 4, 4)
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    mask[1] = False
    for spec in ALL_POOLS:
        out = _build(spec + " | l2")(x, mask)
        assert torch.isfinite(out).all(), spec
        assert torch.all(out[1] == 0), spec


def test_bad_mask_shape_is_reported():
    with pytest.raises(pooling.PoolingError, match="mask"):
        pooling.build("gem")(torch.rand(2, 3, 4, 4), torch.ones(2, 1, 4, 5))


# ---------------------------------------------------------------------------------------------------------
# dimensions and invariances
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_POOLS)
def test_out_dim_matches_and_is_independent_of_map_size(spec):
    pipe = _build(spec)
    dims = {pipe(_maps(2, C, h, w)).shape[1] for h, w in [(7, 7), (1, 1), (3, 10), (12, 2)]}
    assert dims == {pipe.out_dim(C)}


def test_out_dim_formulas():
    assert pooling.build("catavgmax").out_dim(1280) == 2560
    assert pooling.build("spp(1,2,4)").out_dim(1280) == 1280 * 21
    assert pooling.build("grid(h=2, w=3, op=avg)").out_dim(10) == 60
    assert pooling.build("pwa(n=25)").out_dim(1280) == 32000
    assert pooling.build("gem | l2 | pca(dim=256) | l2").out_dim(1280) == 256
    assert pooling.build("gem | pca").out_dim(1280) == 1280


@pytest.mark.parametrize("spec", GLOBAL_POOLS)
def test_global_pools_ignore_spatial_order(spec):
    pipe = _build(spec)
    x = _maps(3, C, 5, 6, seed=4)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(5))
    shuffled = x.flatten(2)[:, :, perm].reshape(3, C, 5, 6)
    torch.testing.assert_close(pipe(shuffled), pipe(x), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(pipe(x.reshape(3, C, 1, 30)), pipe(x), atol=1e-6, rtol=1e-5)


def test_gem_limits():
    x = _maps(3, C, 6, 5, seed=6) + 0.1
    torch.testing.assert_close(pooling.build("gem(p=1)")(x), pooling.build("spoc")(x))
    big = pooling.build("gem(p=200)").apply_pool(x.double())
    torch.testing.assert_close(big, pooling.build("mac").apply_pool(x), rtol=0.03, atol=0)
    lse_big = pooling.build("lse(r=1000)").apply_pool(x)
    torch.testing.assert_close(lse_big, pooling.build("mac").apply_pool(x), rtol=0, atol=0.005)


def test_pool_p():
    assert pooling.build("gem(p=3)").pool_p == 3.0
    assert pooling.build("rgem(p=4)").pool_p == 4.0
    assert pooling.build("gem(p=(2, 4))").pool_p == 3.0
    assert pooling.build("mac | l2").pool_p == 1.0


# ---------------------------------------------------------------------------------------------------------
# spec strings
# ---------------------------------------------------------------------------------------------------------


def test_default_spec_and_canonical_strings():
    assert pooling.DEFAULT_SPEC == "gem(p=3) | l2"
    pipe = pooling.build(pooling.DEFAULT_SPEC)
    assert str(pipe) == pipe.spec == "gem(p=3.0, eps=1e-06) | l2"
    assert str(pooling.build("  GEM( p = 3 )|l2 ")) == str(pipe)
    assert str(pooling.build("gem(3, 1e-6) | l2")) == str(pipe)
    assert str(pooling.build("spp(1,2,4)")) == "spp(levels=(1, 2, 4), op=max)"
    assert str(pooling.build("spp(1, 2, avg)")) == "spp(levels=(1, 2), op=avg)"
    assert str(pooling.build("spp(levels=[2])")) == "spp(levels=(2), op=max)"
    assert str(pooling.build("gem|pca(256, whiten)")) == (
        "gem(p=3.0, eps=1e-06) | pca(dim=256, whiten=true, power=0.5)"
    )
    assert str(pooling.build("rmac")) == "rmac(levels=3, overlap=0.4, eps=1e-06)"
    assert str(pooling.build("mac | power | center")) == "mac | power(alpha=0.5) | center"
    for spec in ALL_POOLS:  # canonical strings are fixed points
        canon = str(pooling.build(spec))
        assert str(pooling.build(canon)) == canon


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("gemm", ["unknown pooling method 'gemm'", "did you mean 'gem'", "mac, spoc"]),
        ("gem(q=3)", ["unknown parameter 'q'", "p, eps"]),
        ("gem(p=0)", ["'p'", "> 0"]),
        ("gem(p=abc)", ["'p'", "number"]),
        ("rmac(levels=2.5)", ["'levels'", "integer"]),
        ("rmac(overlap=1.5)", ["'overlap'", "<= 1.0"]),
        ("spp(op=median)", ["'op'", "max, avg"]),
        ("spp(levels=(0, 2))", ["'levels'", ">= 1"]),
        ("l2", ["first step must be a pooling method", "mac, spoc"]),
        ("gem | mac", ["only the first step may pool", "l2, power, center, pca"]),
        ("gem | l3", ["unknown post-step 'l3'", "did you mean 'l2'", "l2, power, center, pca"]),
        ("gem | pca(whiten=maybe)", ["'whiten'", "true or false"]),
        ("gem(p=3", ["unbalanced"]),
        ("gem ||l2", ["empty step"]),
        ("", ["empty pooling spec"]),
        ("gem(p=3, p=4)", ["given twice"]),
        ("mac(3)", ["too many positional"]),
        ("scda(connectivity=6)", ["8, 4"]),
        ("gem(p=nan)", ["'p'"]),
    ],
)
def test_bad_specs_name_the_problem(spec, words):
    with pytest.raises(pooling.PoolingError) as err:
        pooling.build(spec)
    assert isinstance(err.value, ValueError)
    for w in words:
        assert w in str(err.value) or (w.startswith("did you mean") and "did you mean" in str(err.value)), (
            w,
            str(err.value),
        )


def test_unfitted_steps_raise_and_say_to_fit():
    pipe = pooling.build("gem | l2 | pca(dim=4) | l2")
    assert pipe.needs_fit
    assert pipe.out_dim(C) == 4
    with pytest.raises(pooling.PoolingError, match=r"pca\(dim=4.*not fitted.*fit"):
        pipe(_maps(2, C, 3, 3))
    with pytest.raises(pooling.PoolingError, match="at least"):
        pipe.fit(torch.rand(3, C))  # too few vectors for 4 components


def test_methods_listing():
    listing = pooling.methods()
    json.dumps(listing)
    names = {m["name"] for m in listing}
    assert {"mac", "spoc", "spoc_center", "gem", "rmac", "spp", "pwa", "l2", "pca", "center", "power"} <= names
    gem = next(m for m in listing if m["name"] == "gem")
    assert gem["kind"] == "pool" and gem["dim"] == "C" and not gem["needs_fit"]
    assert [p["name"] for p in gem["params"]] == ["p", "eps"]
    assert next(m for m in listing if m["name"] == "spp")["dim"] == "C·Σl²"
    assert next(m for m in listing if m["name"] == "pca")["needs_fit"]
    for m in listing:
        assert m["summary"] and m["kind"] in ("pool", "post")


# ---------------------------------------------------------------------------------------------------------
# fitting and serialisation
# ---------------------------------------------------------------------------------------------------------


def test_fit_serialise_round_trip_is_exact():
    train = _maps(64, C * 4, 5, 4, seed=10)
    test = _maps(6, C * 4, 7, 3, seed=11)
    pipe = pooling.build("gem(p=3) | power(alpha=0.5) | center | l2 | pca(dim=8, whiten=true) | l2")
    assert pipe.fit(pipe.apply_pool(train)) is pipe
    assert not pipe.needs_fit
    d = pipe.to_dict()
    text = json.dumps(d)
    again = pooling.from_dict(json.loads(text))
    assert str(again) == str(pipe) and again.to_dict() == d and again == pipe
    assert torch.equal(again(test), pipe(test))
    out = pipe(test)
    assert out.dtype == torch.float32 and out.shape == (6, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(6))
    # numpy input to fit works too
    np_fit = pooling.build("gem(p=3) | power(alpha=0.5) | center | l2 | pca(dim=8, whiten=true) | l2")
    np_fit.fit(pipe.apply_pool(train).numpy())
    assert torch.equal(np_fit(test), out)


def test_apply_is_pool_then_post():
    pipe = pooling.build("rmac | l2")
    x = _maps(3, C, 6, 6)
    assert torch.equal(pipe(x), pipe.apply_post(pipe.apply_pool(x)))


def test_from_dict_rejects_bad_configs():
    good = pooling.build("gem").to_dict()
    with pytest.raises(pooling.PoolingError):
        pooling.from_dict({"spec": "gem"})
    bad = json.loads(json.dumps(good))
    bad["steps"][0]["params"]["p"] = -1
    with pytest.raises(pooling.PoolingError, match="'p'"):
        pooling.from_dict(bad)
    bad = json.loads(json.dumps(good))
    bad["spec"] = "mac"
    with pytest.raises(pooling.PoolingError, match="inconsistent"):
        pooling.from_dict(bad)


def test_pwa_round_trip():
    pipe = _build("pwa(n=3) | l2")
    x = _maps(2, C, 4, 6)
    again = pooling.from_dict(json.loads(json.dumps(pipe.to_dict())))
    assert torch.equal(again(x), pipe(x))


# ---------------------------------------------------------------------------------------------------------
# dtypes, modules, compile
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.float32])
def test_any_float_dtype_returns_float32(dtype):
    x = _maps(2, C, 5, 5)
    for spec in ["gem | l2", "rmac | l2", "spp(1,2)", "scda"]:
        pipe = pooling.build(spec)
        out = pipe(x.to(dtype))
        assert out.dtype == torch.float32
        tol = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-6
        torch.testing.assert_close(out, pipe(x.to(dtype).float()), atol=tol, rtol=tol)


def test_gem_module_learns_p():
    mod = pooling.GeM(p=3.0)
    x = _maps(4, C, 5, 5) + 0.1
    mod(x).sum().backward()
    assert mod.p.grad is not None and torch.isfinite(mod.p.grad).all()
    torch.testing.assert_close(mod(x), pooling.build("gem(p=3)").apply_pool(x))
    per_channel = pooling.GeM(p=3.0, channels=C)
    per_channel(x).pow(2).sum().backward()
    assert per_channel.p.grad.shape == (C,)
    fixed = pooling.GeM(p=2.0, learn_p=False)
    assert not any(True for _ in fixed.parameters())
    rgem = pooling.RGeM(p=3.0)
    rgem(x).sum().backward()
    assert rgem.p.grad is not None
    torch.testing.assert_close(rgem(x), pooling.build("rgem(p=3)").apply_pool(x))


def test_pool_module_validates_and_matches_pipeline():
    x = _maps(2, C, 6, 4)
    torch.testing.assert_close(pooling.Pool("spp", levels=(1, 2), op="avg")(x), pooling.build("spp(1,2,avg)")(x))
    with pytest.raises(pooling.PoolingError, match="unknown parameter"):
        pooling.Pool("rmac", level=3)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_modules_trace_and_compile():
    x = _maps(2, C, 7, 5) + 0.1
    for mod in [pooling.GeM(), pooling.Pool("rmac"), pooling.Pool("spp", levels=(1, 2)), pooling.Pool("crow")]:
        expected = mod(x)
        with torch.no_grad():
            traced = torch.jit.trace(mod, (x,), check_trace=False)
        torch.testing.assert_close(traced(x), expected)
        compiled = torch.compile(mod, backend="eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), expected)


def test_state_does_not_leak_between_pipelines():
    a = pooling.build("spoc | center").fit(torch.zeros(4, 3))
    b = pooling.build("spoc | center").fit(torch.ones(4, 3))
    v = torch.full((1, 3), 2.0)
    assert torch.equal(a.apply_post(v), v) and torch.equal(b.apply_post(v), v - 1)
    assert isinstance(np.asarray(a.to_dict()["steps"][1]["state"]["mean"]["shape"]), np.ndarray)
