"""Verified matches: the geometry against float64 references, RootSIFT matching on real photos (a paste, a mirror,
look-alikes), and verification wherever a user meets a match (search, dups, compare, the JSON)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from poolvec.extractor.local.features import LocalFeatures, mirror, root_sift, sift
from poolvec.extractor.local.geometry import apply, box, fit_affine, ransac_affine, scales, spread
from poolvec.extractor.local.matching import mutual_matches, ratio_matches
from poolvec.extractor.local.regions import region_boxes
from poolvec.extractor.local.verify import MatchPolicy, correspond
from poolvec.indexer import ImageIndex
from poolvec.indexer.cli.app import app as cli
from poolvec.indexer.errors import IndexerError
from poolvec.indexer.verify.compare import compare
from poolvec.indexer.verify.policy import Verification

UKBENCH = Path(__file__).parent / "data" / "imagededup"


def _affine(angle: float, sx: float, sy: float, shear: float, tx: float, ty: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return np.hstack([rot @ np.array([[sx, shear], [0.0, sy]]), [[tx], [ty]]])


# -- geometry: pure functions against float64 references --------------------------------------------------
@pytest.mark.parametrize(
    "params", [(0.0, 1.0, 1.0, 0.0, 0.0, 0.0), (0.5236, 0.4, 0.4, 0.0, 310.5, 42.25), (-0.2, 1.7, 0.9, 0.3, -50, 800)]
)
def test_fit_affine_recovers_a_known_map_exactly(params):
    rng = np.random.default_rng(0)
    truth = _affine(*params)
    src = rng.uniform(0, 640, (40, 2))
    dst = src @ truth[:, :2].T + truth[:, 2]  # independent of apply()
    assert np.allclose(fit_affine(src, dst), truth, atol=1e-9)
    assert np.allclose(apply(truth, src), dst, atol=1e-9)


def test_fit_affine_needs_three_pairs():
    with pytest.raises(ValueError, match="at least 3"):
        fit_affine(np.zeros((2, 2)), np.zeros((2, 2)))


def test_ransac_finds_the_map_and_exactly_the_inliers_among_outliers():
    rng = np.random.default_rng(1)
    truth = _affine(0.3, 0.5, 0.5, 0.0, 120.0, 60.0)
    src = rng.uniform(0, 800, (200, 2))
    dst = src @ truth[:, :2].T + truth[:, 2] + rng.normal(0, 0.2, (200, 2))
    wrong = rng.choice(200, 70, replace=False)
    dst[wrong] = rng.uniform(0, 800, (70, 2))  # 35 % of the matches are nonsense
    fit = ransac_affine(src, dst, threshold=3.0)
    assert fit is not None
    far = np.linalg.norm(src[wrong] @ truth[:, :2].T + truth[:, 2] - dst[wrong], axis=1) > 6.0
    assert not fit.inliers[wrong[far]].any()
    expected = np.ones(200, bool)
    expected[wrong] = False
    assert fit.inliers[expected].all()
    # refined on its inliers: the least-squares map of the true matches (an independent float64 solve)
    design = np.hstack([src[expected], np.ones((expected.sum(), 1))])
    reference = np.linalg.solve(design.T @ design, design.T @ dst[expected]).T
    assert np.allclose(fit.matrix[:, :2], reference[:, :2], atol=1e-4)
    assert np.allclose(fit.matrix[:, 2], reference[:, 2], atol=2e-2)
    assert np.allclose(scales(fit.matrix), np.linalg.svd(truth[:, :2], compute_uv=False), atol=2e-3)


def test_ransac_gives_up_below_three_matches():
    assert ransac_affine(np.zeros((2, 2)), np.zeros((2, 2)), 3.0) is None


def test_box_and_spread_against_hand_values():
    pts = np.array([[10.0, 20.0], [110.0, 70.0], [60.0, 30.0]])
    assert box(pts) == (10.0, 20.0, 110.0, 70.0)
    assert spread(pts, (200, 100)) == pytest.approx(100 * 50 / (200 * 100), abs=1e-12)


def test_ratio_and_mutual_matches_against_brute_force():
    rng = np.random.default_rng(2)
    a = rng.random((60, 16)).astype(np.float32)
    b = np.vstack([a[:30] + rng.normal(0, 0.02, (30, 16)), rng.random((50, 16))]).astype(np.float32)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dist = np.linalg.norm(a64[:, None] - b64[None], axis=2)
    order = np.argsort(dist, axis=1)
    rows = np.arange(len(a))
    keep = dist[rows, order[:, 0]] < 0.75 * dist[rows, order[:, 1]]
    expected = np.stack([rows[keep], order[keep, 0]], axis=1)
    assert np.array_equal(ratio_matches(a, b, 0.75), expected)
    nearest_ab, nearest_ba = dist.argmin(axis=1), dist.argmin(axis=0)
    mutual = [(i, j) for i, j in enumerate(nearest_ab) if nearest_ba[j] == i]
    assert [tuple(p) for p in mutual_matches(a, b)] == mutual
    assert {i for i, _ in mutual} >= set(range(30))  # every planted near-copy is found


def test_root_sift_is_the_hellinger_map():
    d = np.array([[1.0, 3.0, 0.0, 4.0], [2.0, 2.0, 2.0, 2.0]])
    expected = np.sqrt(d / d.sum(axis=1, keepdims=True))
    assert np.allclose(root_sift(d), expected, atol=1e-7)
    assert np.allclose(np.linalg.norm(root_sift(d), axis=1), 1.0, atol=1e-6)


def test_packed_features_round_trip():
    rng = np.random.default_rng(3)
    desc = root_sift(rng.random((50, 128)))
    feats = LocalFeatures(rng.uniform(0, 600, (50, 2)).astype(np.float32), desc, (640, 480))
    back = LocalFeatures.unpack(feats.pack())
    assert back.size == (640, 480) and len(feats.pack()) == 16 + 50 * (4 + 128)
    assert np.abs(back.points - feats.points).max() <= 0.125 + 1e-6
    assert (np.sum(back.descriptors * feats.descriptors, axis=1) > 0.999).all()


def test_regions_cover_the_image_in_overlapping_tiles():
    boxes = region_boxes()
    assert len(boxes) == 4 + 9 + 1
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert sorted({round(b[0], 9) for b in boxes[:4]}) == [0.0, 0.4]
    assert boxes[-1] == pytest.approx((0.2, 0.2, 0.8, 0.8))


# -- verification on real photos ---------------------------------------------------------------------------
def _photo(photo_dir: Path, name: str) -> Image.Image:
    with Image.open(photo_dir / f"{name}.jpg") as img:
        return img.convert("RGB")


def _pasted(
    photo_dir: Path, inner: str, outer: str, at=(0.45, 0.35), fraction: float = 0.4
) -> tuple[Image.Image, tuple]:
    """``inner`` shrunk to ``fraction`` of ``outer``'s width and pasted at ``at``; returns the picture and the box."""
    big, small = _photo(photo_dir, outer), _photo(photo_dir, inner)
    w = int(big.width * fraction)
    small = small.resize((w, int(small.height * w / small.width)), Image.Resampling.LANCZOS)
    x, y = int(big.width * at[0]), int(big.height * at[1])
    big.paste(small, (x, y))
    return big, (x / big.width, y / big.height, (x + small.width) / big.width, (y + small.height) / big.height)


def test_a_photo_pasted_into_another_is_verified_where_it_was_pasted(photo_dir):
    picture, where = _pasted(photo_dir, "chelsea", "china")
    policy = Verification()
    a = sift(picture.resize((640, int(640 * picture.height / picture.width))), 3000)
    b = sift(_photo(photo_dir, "chelsea"), 800)
    c = correspond(a, b, policy.match)
    assert c.verified and c.inliers >= 30
    assert np.allclose(c.box_a, where, atol=0.06), (c.box_a, where)
    assert c.box_b[2] - c.box_b[0] > 0.5 and c.box_b[3] - c.box_b[1] > 0.5  # most of the original matched


def test_mirrored_copies_are_verified_and_say_so(photo_dir, tmp_path):
    flipped = tmp_path / "astronaut_mirror.jpg"
    mirror(_photo(photo_dir, "astronaut")).save(flipped, quality=85)
    plain = correspond(sift(Image.open(flipped)), sift(_photo(photo_dir, "astronaut")), MatchPolicy(min_inliers=10))
    result = compare(str(flipped), str(photo_dir / "astronaut.jpg"))
    assert result.verified and result.correspondence.mirrored
    assert result.correspondence.inliers > 4 * plain.inliers  # SIFT is not mirror-invariant: the mirror finds it
    x0, y0, x1, y1 = result.correspondence.box_a  # in the mirrored file's own frame, not the flipped one's
    assert (x1 - x0) * (y1 - y0) > 0.5
    assert "mirrored" in result.verdict()


@pytest.mark.parametrize(
    "pair", [("motorcycle_left", "chelsea"), ("coffee", "china"), ("retina", "immunohistochemistry")]
)
def test_different_photos_are_not_verified(photo_dir, pair):
    result = compare(str(photo_dir / f"{pair[0]}.jpg"), str(photo_dir / f"{pair[1]}.jpg"))
    assert not result.verified
    assert result.verdict().startswith("not shown to be copies")


# -- where a user meets a match ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def verified_index(tmp_path_factory, photo_dir, extractor):
    folder = tmp_path_factory.mktemp("verified") / "photos"
    shutil.copytree(photo_dir, folder)
    index = ImageIndex(str(folder.parent / "v.db"), extractor=extractor, tuning=False)
    assert index.add_folder(folder).added == 11
    yield index, folder
    index.close()


def test_search_finds_a_pasted_photo_verified_with_its_box(verified_index, photo_dir, tmp_path):
    index, _ = verified_index
    picture, where = _pasted(photo_dir, "coffee", "china", at=(0.05, 0.5), fraction=0.35)
    query = tmp_path / "pasted.jpg"
    picture.save(query, quality=85)
    hits = index.search(str(query), k=3)
    top = hits[0]
    assert Path(top.path).name in {"coffee.jpg", "china.jpg"} and top.verified
    both = {Path(h.path).name: h for h in hits if h.verified}
    assert {"coffee.jpg", "china.jpg"} <= set(both)  # the pasted photo and the photo it was pasted into
    assert np.allclose(both["coffee.jpg"].box_query, where, atol=0.06)
    assert all(not h.verified for h in hits if Path(h.path).name not in both)
    plain = index.search(str(query), k=3, verify=False)
    assert all(h.verified is None and h.box_hit is None for h in plain)


def test_search_by_vector_is_not_verified(verified_index):
    index, folder = verified_index
    vec = index.extractor.embed(str(folder / "rocket.jpg")).reshape(-1)
    hits = index.search(vec, k=2)
    assert Path(hits[0].path).name == "rocket.jpg" and hits[0].verified is None


def test_verified_search_json_from_the_cli(verified_index, query_dir):
    index, folder = verified_index
    args = ["search", str(query_dir / "chelsea_edit.jpg"), "-k", "3", "--db", index.uri, "--json"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    (result,) = json.loads(res.stdout)
    first = result["hits"][0]
    assert first["path"] == str(folder / "chelsea.jpg") and first["verified"] is True and first["inliers"] >= 15
    x0, y0, x1, y1 = first["box_hit"]
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and (x1 - x0) > 0.5  # the 80 % centre crop
    assert all(h["verified"] is False for h in result["hits"][1:])
    bad = CliRunner().invoke(cli, [*args, "--regions", "sometimes"])
    assert bad.exit_code == 2 and "regions must be one of auto, always, never" in bad.output


def test_policy_refuses_nonsense():
    with pytest.raises(IndexerError, match="regions must be one of"):
        Verification(regions="often")
    with pytest.raises(IndexerError, match="must be ≥ 1"):
        Verification(shortlist=0)


def test_imagededups_ukbench_folder_is_one_group_of_four(tmp_path, extractor):
    """imagededup's own test folder: ukbench00120 with its mirrored, resized and 30°-rotated copies, beside an
    unrelated photo (tests/data/imagededup, Apache-2.0, from idealo/imagededup)."""
    index = ImageIndex(str(tmp_path / "u.db"), extractor=extractor, tuning=False)
    index.add_folder(UKBENCH)
    groups = index.find_duplicates()
    assert [(g.kind, sorted(Path(p).name for p in g.paths)) for g in groups] == [
        (
            "near",
            ["ukbench00120.jpg", "ukbench00120_hflip.jpg", "ukbench00120_resize.jpg", "ukbench00120_rotation.jpg"],
        )
    ]
    pairs = groups[0].pairs
    assert all(p.verified and p.inliers >= 15 for p in pairs) and len(pairs) >= 3
    rotated = groups[0].ids[groups[0].paths.index(str(UKBENCH / "ukbench00120_rotation.jpg"))]
    assert max(p.inliers for p in pairs if rotated in (p.a, p.b)) >= 100
    index.close()


def test_compare_command_prints_the_verdict_and_draws_the_matches(tmp_path):
    out = tmp_path / "pair.png"
    a, b = UKBENCH / "ukbench00120.jpg", UKBENCH / "ukbench00120_rotation.jpg"
    res = CliRunner().invoke(cli, ["compare", str(a), str(b), "--picture", str(out), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    assert got["verified"] is True and got["inliers"] >= 100 and got["mirrored"] is False
    assert 0.4 < got["similarity"] < 1.0
    with Image.open(out) as img:
        assert img.height == 400 + 34 and img.width > 600
        green = np.asarray(img.convert("RGB"))[:400].reshape(-1, 3) == (0, 170, 60)
        assert green.all(axis=1).sum() > 500  # the outlines and the lines between matched points
    other = CliRunner().invoke(cli, ["compare", str(a), str(UKBENCH / "ukbench09268.jpg")])
    assert other.exit_code == 0 and "not shown to be copies" in other.stdout
    missing = CliRunner().invoke(cli, ["compare", str(a), str(tmp_path / "nope.jpg")])
    assert missing.exit_code == 2 and "nope.jpg" in missing.output
