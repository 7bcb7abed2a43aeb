"""Self-tuning: the learned-whitening math against a float64 reference, the seeded edits, fitting on small
collections, the packaged prior, and an index that tunes itself on real photos and finds more edited copies."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from poolvec import pooling
from poolvec.extractor import DEFAULT_POOLING, EditPolicy, Extractor, ExtractorError, Tuning, priors, sample_evenly
from poolvec.extractor.edits import EDIT_KINDS, OPS, edit_rng, edits_of, random_edit
from poolvec.indexer import ImageIndex
from poolvec.pooling.post import PairPrior, learn_whitening

# -- the math ------------------------------------------------------------------------------------------------


def reference_whitening(x, pairs, shrink, dim=None, prior=None, weight=0.0, prior_mean=None, prior_spread=None):
    """cirtorch's whitenlearn, written out in numpy float64 (with shrinkage and optional priors)."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    m = x.mean(0)
    diff = x[pairs[:, 0]] - x[pairs[:, 1]]
    s = diff.T @ diff / len(diff)
    if prior is not None:
        s = (len(diff) * s + weight * prior) / (len(diff) + weight)
    c = np.cov(x.T, bias=True)
    if prior_mean is not None:
        m_mix = (n * m + weight * prior_mean) / (n + weight)
        own = c + np.outer(m - m_mix, m - m_mix)  # x's scatter around the mixed mean
        theirs = prior_spread + np.outer(prior_mean - m_mix, prior_mean - m_mix)
        m, c = m_mix, (n * own + weight * theirs) / (n + weight)
    s = (1 - shrink) * s + shrink * np.trace(s) / d * np.eye(d)
    w, v = np.linalg.eigh(s)
    p1 = v @ np.diag(w**-0.5) @ v.T
    w2, v2 = np.linalg.eigh(p1 @ c @ p1.T)
    r = v2[:, np.argsort(-w2)].T
    r *= np.sign(r[np.arange(d), np.abs(r).argmax(1)])[:, None]
    p = r @ p1
    return m, p[: dim or d]


@pytest.fixture
def pair_data():
    rng = np.random.default_rng(3)
    base = rng.normal(size=(30, 12)) * np.linspace(3, 0.3, 12)
    copies = base + rng.normal(size=(30, 12)) * np.linspace(0.1, 1.0, 12)  # nuisance in the last dimensions
    x = np.concatenate([base, copies])
    pairs = np.stack([np.arange(30), np.arange(30, 60)], 1)
    return x, pairs


@pytest.mark.parametrize("shrink,dim", [(0.2, None), (0.0, 5), (1.0, None)])
def test_learned_whitening_matches_the_float64_reference(pair_data, shrink, dim):
    x, pairs = pair_data
    mean, proj = learn_whitening(torch.from_numpy(x), torch.from_numpy(pairs), shrink=shrink, dim=dim)
    m_ref, p_ref = reference_whitening(x, pairs, shrink, dim)
    np.testing.assert_allclose(mean.numpy(), m_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(proj.numpy(), p_ref, rtol=1e-9, atol=1e-9)
    # what it is for: pair differences are whitened (unit covariance) before the rotation when shrink = 0
    if shrink == 0.0 and dim is None:
        d = (x[pairs[:, 0]] - x[pairs[:, 1]]) @ proj.numpy().T
        np.testing.assert_allclose(d.T @ d / len(d), np.eye(12), atol=1e-9)


def test_the_prior_covariance_is_mixed_as_pseudo_pairs(pair_data):
    x, pairs = pair_data
    prior = np.diag(np.linspace(0.5, 2.0, 12))
    _, proj = learn_whitening(
        torch.from_numpy(x), torch.from_numpy(pairs), shrink=0.1, prior=PairPrior(torch.from_numpy(prior), 45.0)
    )
    _, p_ref = reference_whitening(x, pairs, 0.1, prior=prior, weight=45.0)
    np.testing.assert_allclose(proj.numpy(), p_ref, rtol=1e-9, atol=1e-9)
    # with the prior's vector mean and covariance too: the centre and the rotation move toward them
    p_mean, p_spread = np.full(12, 0.5), np.diag(np.linspace(2.0, 0.2, 12))
    full = PairPrior(torch.from_numpy(prior), 45.0, torch.from_numpy(p_mean), torch.from_numpy(p_spread))
    mean, proj = learn_whitening(torch.from_numpy(x), torch.from_numpy(pairs), shrink=0.1, prior=full)
    m_ref, p_ref = reference_whitening(
        x, pairs, 0.1, prior=prior, weight=45.0, prior_mean=p_mean, prior_spread=p_spread
    )
    np.testing.assert_allclose(mean.numpy(), m_ref, atol=1e-12)
    np.testing.assert_allclose(proj.numpy(), p_ref, rtol=1e-8, atol=1e-8)


def test_copies_of_one_photo_stay_similar_with_the_vector_prior(tmp_path, photos):
    """A folder of one photo's copies: centred on itself, its copies would come out dissimilar (−0.45 measured)."""
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy(photos / "coffee.jpg", two / "a.jpg")
    Image.open(photos / "coffee.jpg").rotate(30, resample=Image.Resampling.BICUBIC).save(two / "b.jpg", quality=85)
    ex = Extractor(optimize=False).fit([str(two / "a.jpg"), str(two / "b.jpg")])
    v = ex.embed([two / "a.jpg", two / "b.jpg"])
    assert float(v[0] @ v[1]) > 0.6


def test_whitening_finds_copies_that_plain_cosine_misses():
    rng = np.random.default_rng(5)
    base = rng.normal(size=(200, 12))
    nuisance = np.zeros(12)
    nuisance[8:] = 3.0  # edits move four directions a lot; content lives in all twelve
    fit_copies = base[:100] + rng.normal(size=(100, 12)) * (0.2 + nuisance)
    test_copies = base[100:] + rng.normal(size=(100, 12)) * (0.2 + nuisance)
    pipe = pooling.build("spoc | l2 | lw(shrink=0.05) | l2")
    train = torch.from_numpy(np.concatenate([base[:100], fit_copies])).float()
    pipe.fit(train, np.stack([np.arange(100), np.arange(100, 200)], 1))

    def found(f):
        q, d = f(torch.from_numpy(test_copies).float()), f(torch.from_numpy(base[100:]).float())
        return int(((q @ d.T).argmax(1) == torch.arange(100)).sum())

    plain, tuned = found(pooling.post.l2n), found(pipe.apply_post)
    assert plain < 70 and tuned > plain + 20  # on images the fit never saw


def test_lw_round_trips_through_to_dict_exactly(pair_data):
    x, pairs = pair_data
    pipe = pooling.build("gem(p=3) | l2 | lw(dim=6, shrink=0.3) | l2").fit(torch.from_numpy(x).float(), pairs)
    again = pooling.from_dict(json.loads(json.dumps(pipe.to_dict())))
    v = torch.from_numpy(x).float()
    assert torch.equal(pipe.apply_post(v), again.apply_post(v))
    assert again.out_dim(12) == 6 and again == pipe


def test_lw_without_pairs_says_how_to_fit_it(pair_data):
    x, _ = pair_data
    with pytest.raises(pooling.PoolingError, match=r"lw\(dim=none, shrink=0.2\).*matching pairs.*Extractor.fit"):
        pooling.build("mac | l2 | lw | l2").fit(torch.from_numpy(x).float())
    with pytest.raises(pooling.PoolingError, match="not fitted"):
        pooling.build("mac | l2 | lw | l2").apply_post(torch.ones(2, 12))
    with pytest.raises(pooling.PoolingError, match="identical"):
        pooling.build("mac | lw").fit(torch.ones(4, 3), [[0, 1], [2, 3]])
    with pytest.raises(pooling.PoolingError, match=r"\[P, 2\]"):
        pooling.build("mac | lw").fit(torch.ones(4, 3), [0, 1])
    with pytest.raises(pooling.PoolingError, match="shrink"):
        pooling.build("mac | lw(shrink=1.5)")


# -- edits ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def photo(photo_dir):
    return Image.open(sorted(photo_dir.glob("*.jpg"))[0]).convert("RGB")


def test_edits_are_seeded_and_reproducible(photo):
    a = [np.asarray(e) for e in edits_of(photo, 6, seed=1, key="x", others=[photo])]
    b = [np.asarray(e) for e in edits_of(photo, 6, seed=1, key="x", others=[photo])]
    c = [np.asarray(e) for e in edits_of(photo, 6, seed=1, key="y", others=[photo])]
    assert all(x.shape == y.shape and (x == y).all() for x, y in zip(a, b, strict=True))
    assert any(x.shape != y.shape or (x != y).any() for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("kind", EDIT_KINDS)
def test_every_edit_gives_a_changed_rgb_picture(photo, kind):
    out, desc = OPS[kind](photo, edit_rng(0, kind), EditPolicy(), [photo.rotate(90)])
    assert out.mode == "RGB" and min(out.size) >= 8 and desc.startswith(kind.split("_")[0][:4])
    if out.size == photo.size:
        assert (np.asarray(out) != np.asarray(photo)).any()


@pytest.mark.parametrize("size", [(1, 1), (5, 5), (640, 1), (1, 640), (640, 3), (100, 20)])
def test_every_edit_of_a_tiny_or_strip_picture_stays_small(size):
    # a 10 000 × 10 panorama, decoded at 640 × 1 for tuning, once grew a 40 960 × 50 000 canvas (tens of GB)
    img = Image.new("RGB", size, (120, 60, 30))
    rng = edit_rng(0, str(size))
    for kind in EDIT_KINDS:
        out, _ = OPS[kind](img, rng, EditPolicy(), [])
        assert out.mode == "RGB" and out.width * out.height <= 1_000_000, (kind, out.size)
    for _ in range(60):
        out, _ = random_edit(img, rng, EditPolicy(), [Image.new("RGB", (320, 240))])
        assert out.mode == "RGB" and out.width * out.height <= 1_000_000, out.size


def test_edit_policy_validates_and_round_trips():
    p = EditPolicy(kinds=("crop", "jpeg"), ops=(1, 2), jpeg_quality=(30, 60))
    assert EditPolicy.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ExtractorError, match="unknown operation"):
        EditPolicy(kinds=("sepia",))
    with pytest.raises(ExtractorError, match="ops"):
        EditPolicy(ops=(3, 1))
    _, done = random_edit(Image.new("RGB", (64, 48), "red"), np.random.default_rng(0), p)
    assert 1 <= len(done) <= 2 and all(d.split()[0] in ("crop", "jpeg") for d in done)


def test_tuning_plan_spreads_the_edit_budget():
    t = Tuning()
    assert t.plan(11) == (11, 8)
    assert t.plan(247) == (247, 8)
    assert t.plan(1000) == (768, 2)
    assert t.plan(10_000) == (768, 1)
    assert sample_evenly(list(range(10)), 3) == [0, 3, 6]
    assert Tuning.from_dict(json.loads(json.dumps(t.to_dict()))) == t


# -- fitting an extractor ------------------------------------------------------------------------------------


def test_the_default_extractor_starts_from_the_packaged_prior():
    ex = Extractor(optimize=False)
    assert ex.pipeline.spec == "gem(p=3.0, eps=1e-06) | l2 | lw(dim=none, shrink=0.2) | l2"
    assert DEFAULT_POOLING == "gem(p=3) | l2 | lw | l2"
    assert ex.prior is not None and not ex.pipeline.needs_fit and ex.dim == 1280
    meta = ex.prior.meta
    assert meta["backbone"] == "tf_efficientnet_lite0" and meta["sources"]["licence"].startswith("Debian main")
    small = Extractor(pooling="gem(p=3) | l2 | lw(dim=64) | l2", optimize=False)
    assert small.dim == 64 and torch.equal(small.pipeline.post[1].proj, ex.pipeline.post[1].proj[:64])
    # another input size starts from the same prior; another backbone has none, so lw waits for fit()
    assert Extractor(max_side=256, optimize=False).prior is ex.prior
    other = Extractor("resnet18", weights=None, optimize=False)
    assert other.prior is None and other.pipeline.needs_fit
    with pytest.raises(ExtractorError, match=r"not fitted yet.*\.fit\(image_paths\).*'gem\(p=3\) \| l2'"):
        other.embed([np.zeros((32, 32, 3), np.uint8)])


@pytest.mark.parametrize("count", [1, 3, 10])
def test_a_handful_of_images_fits(photo_dir, count):
    files = sorted(str(p) for p in photo_dir.glob("*.jpg"))[:count]
    ex = Extractor(max_side=160, optimize=False)
    priors.use(ex, None)  # fitted on the collection alone
    ex.fit(files, tuning=Tuning(edits=16))
    fit = ex.last_fit
    assert fit.images == count and len(fit.pairs) == count * min(8, 16 // count)
    v = ex.embed(files)
    assert v.shape == (count, 1280) and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def test_fitting_on_no_usable_image_says_so(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    ex = Extractor(max_side=160, optimize=False)
    with pytest.raises(ExtractorError, match=r"none of the 1 images could be used.*bad.jpg"):
        ex.fit([str(bad)])
    with pytest.raises(ExtractorError, match="none of the 0 images"):
        ex.fit([])


def test_fit_is_deterministic(photo_dir):
    files = sorted(str(p) for p in photo_dir.glob("*.jpg"))[:4]
    a = Extractor(optimize=False).fit(files, tuning=Tuning(edits=8))
    b = Extractor(optimize=False).fit(files, tuning=Tuning(edits=8))
    assert torch.equal(a.pipeline.post[1].proj, b.pipeline.post[1].proj)


def test_prior_files_load_without_pickle(tmp_path):
    evil = tmp_path / "evil.npz"
    np.savez(evil, mean=np.zeros(3), proj=np.array([object()], dtype=object), meta=np.array("{}"))
    with pytest.raises(ValueError, match="pickle"):
        priors.load(evil)


# -- an index tunes itself -----------------------------------------------------------------------------------


def hard_copies(photo_dir, out_dir, seed=7):
    """Two edited copies per photo, three operations each: harder than the conftest queries."""
    out_dir.mkdir()
    policy = EditPolicy(ops=(3, 3))
    queries = {}
    photos = sorted(photo_dir.glob("*.jpg"))
    others = [Image.open(p).convert("RGB") for p in photos[:2]]
    for p in photos:
        img = Image.open(p).convert("RGB")
        for j, e in enumerate(edits_of(img, 2, seed=seed, key=p.name, policy=policy, others=others)):
            q = out_dir / f"{p.stem}_{j}.jpg"
            e.save(q, quality=80)
            queries[str(q)] = str(p)
    return queries


def rank1(index, queries):
    """Queries whose original (matched by file name) is the top hit."""
    hits = index.search_many(list(queries), k=1)
    return sum(os.path.basename(h[0].path) == os.path.basename(queries[q]) for q, h in zip(queries, hits, strict=True))


def test_a_tuned_index_finds_more_copies_than_the_untuned_default(tmp_path, photos, photo_dir):
    queries = hard_copies(photo_dir, tmp_path / "q")
    untuned = ImageIndex(tmp_path / "plain.db", extractor=Extractor(pooling="gem(p=3) | l2", optimize=False))
    untuned.add_folder(photos)
    tuned = ImageIndex(tmp_path / "tuned.db", optimize=False)
    report = tuned.add_folder(photos)
    assert report.added == 11 and len(tuned) == 11
    rec = tuned.config["tuning"]
    assert rec["sampled"] == 11 and rec["per_image"] == 8 and rec["pairs"] == 88 and rec["prior"]
    plain_hits, tuned_hits = rank1(untuned, queries), rank1(tuned, queries)
    assert plain_hits < len(queries)  # the untuned default misses some of these
    assert tuned_hits > plain_hits
    # the stored vectors of the sampled images (reused from tuning) are what embedding them gives
    row = tuned.store.get([tuned.search(str(photos / "coffee.jpg"), k=1)[0].id], fields=("vector",))
    v = tuned.extractor.embed([str(photos / "coffee.jpg")])[0]
    assert float(np.dot(next(iter(row.values()))["vector"], v)) > 0.9999
    # reopened, the index rebuilds the same embedder: same vectors, same scores
    tuned.close()
    again = ImageIndex(tmp_path / "tuned.db", optimize=False)
    assert rank1(again, queries) == tuned_hits
    np.testing.assert_allclose(again.extractor.embed([str(photos / "coffee.jpg")])[0], v, atol=1e-6)


def test_a_new_index_without_tuning_keeps_the_packaged_fit(tmp_path, photos):
    idx = ImageIndex(tmp_path / "p.db", tuning=False, optimize=False)
    idx.add_folder(photos)
    assert "tuning" not in idx.config
    stored = pooling.from_dict(idx.config["pooling"]).post[1].proj
    assert torch.equal(stored, Extractor(optimize=False).pipeline.post[1].proj)


def test_an_empty_folder_creates_no_index(tmp_path):
    (tmp_path / "empty").mkdir()
    idx = ImageIndex(tmp_path / "e.db", optimize=False)
    assert idx.add_folder(tmp_path / "empty").total == 0
    assert not idx.store.exists() and idx.config is None


# -- duplicates ----------------------------------------------------------------------------------------------


def test_default_dups_groups_rotated_copies_and_nothing_else(tmp_path, photos):
    for name in ("coffee", "chelsea", "rocket"):
        Image.open(photos / f"{name}.jpg").rotate(30, resample=Image.Resampling.BICUBIC).save(
            photos / f"{name}_rot30.jpg", quality=85
        )
    idx = ImageIndex(tmp_path / "d.db", optimize=False)
    idx.add_folder(photos)
    raw = idx.search(str(photos / "rocket_rot30.jpg"), k=2)[1]
    assert raw.path.endswith("rocket.jpg") and raw.score < 0.9  # the old default threshold would miss it
    groups = {frozenset(os.path.basename(p) for p in g.paths) for g in idx.find_duplicates()}
    for name in ("coffee", "chelsea", "rocket"):
        assert frozenset({f"{name}.jpg", f"{name}_rot30.jpg"}) in groups
    assert all(len(g) == 2 for g in groups)  # no unrelated photo joins a group
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy(photos / "coffee.jpg", two / "a.jpg")
    shutil.copy(photos / "coffee_rot30.jpg", two / "b.jpg")
    small = ImageIndex(tmp_path / "two.db", optimize=False)
    small.add_folder(two)
    assert [sorted(os.path.basename(p) for p in g.paths) for g in small.find_duplicates()] == [["a.jpg", "b.jpg"]]


def test_cli_tunes_new_indexes_as_asked(tmp_path, photos):
    from typer.testing import CliRunner

    from poolvec.indexer.cli.app import app

    runner = CliRunner()
    db = str(tmp_path / "cli.db")
    res = runner.invoke(app, ["index", str(photos), "--db", db, "--quiet", "--tune-edits", "22"])
    assert res.exit_code == 0, res.output
    info = json.loads(runner.invoke(app, ["info", "--db", db, "--json"]).stdout)
    tuning = info["config"]["tuning"]
    assert tuning["edits"] == 22 and tuning["sampled"] == 11 and tuning["per_image"] == 2 and tuning["pairs"] == 22
    text = runner.invoke(app, ["info", "--db", db]).stdout
    assert "11 photos × 2 edits = 22 pairs" in text
    plain = str(tmp_path / "plain.db")
    res = runner.invoke(app, ["index", str(photos), "--db", plain, "--quiet", "--no-tune"])
    assert res.exit_code == 0, res.output
    info = json.loads(runner.invoke(app, ["info", "--db", plain, "--json"]).stdout)
    assert "tuning" not in info["config"] and info["dim"] == 1280
    assert "none" in runner.invoke(app, ["info", "--db", plain]).stdout  # tuning: none
    # the same options again: the tuned index keeps its own fit and indexes nothing twice
    res = runner.invoke(
        app, ["index", str(photos), "--db", db, "--quiet", "--json", "--pooling", "gem(p=3) | l2 | lw | l2"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["unchanged"] == 11
    res = runner.invoke(app, ["index", str(photos), "--db", db, "--quiet", "--pooling", "mac | l2"])
    assert res.exit_code == 2 and "pooling" in res.output
