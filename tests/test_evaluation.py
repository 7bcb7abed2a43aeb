"""Evaluation: metrics against hand-computed cases, the ground-truth loaders, and end-to-end runs on real photos."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from poolvec.indexer import ImageIndex, IndexerError
from poolvec.indexer.cli.app import app
from poolvec.indexer.evaluation import (
    average_precision,
    evaluate_index,
    evaluate_vectors,
    exact_rankings,
    load_classes,
    load_ground_truth,
    load_pairs,
    load_revisitop,
    positive_positions,
    ranking_metrics,
    revisitop_setups,
    safe_load_pickle,
)

# -- metrics ---------------------------------------------------------------------------------------------------


def test_trapezoid_ap_by_hand():
    # positives at 0-based positions 0 and 2: (1 + 1)/2 + (1/2 + 2/3)/2 = 1 + 7/12, over 2 positives
    assert average_precision([0, 2], 2) == pytest.approx(19 / 24)
    # one positive at position 1: (0/1 + 1/2)/2
    assert average_precision([1], 1) == pytest.approx(1 / 4)
    assert average_precision([0], 1) == 1.0
    # a positive that was never ranked adds nothing: (0 + 1/2)/2 / 2
    assert average_precision([1], 2) == pytest.approx(1 / 8)
    assert average_precision([], 3) == 0.0
    with pytest.raises(ValueError):
        average_precision([], 0)


def test_junk_is_removed_before_the_positives():
    # ranking: junk, junk, positive, other, junk, positive
    ranking = [5, 3, 7, 1, 4, 8]
    assert positive_positions(ranking, [7, 8], [5, 3, 4]).tolist() == [0, 2]
    m = ranking_metrics([ranking], [[7, 8]], [[5, 3, 4]])
    assert m["mAP"] == pytest.approx(19 / 24)
    # junk after the last positive changes nothing; without junk the positives sit at 2 and 5
    assert positive_positions(ranking, [7], [1, 4]).tolist() == [2]
    assert positive_positions(ranking, [7, 8]).tolist() == [2, 5]
    # an item that is both positive and junk counts as a positive, and does not shift itself
    assert positive_positions([2, 9], [9], [2, 9]).tolist() == [0]


def test_precision_recall_and_revisitop_mp_by_hand():
    # positives at 1-based ranks 1 and 3 out of 2 positives
    m = ranking_metrics([[10, 11, 12, 13, 14, 15]], [[10, 12]], ks=(1, 2, 5))
    assert m["recall@1"] == 1.0 and m["recall@2"] == 1.0
    assert m["P@1"] == 1.0 and m["P@2"] == 0.5 and m["P@5"] == pytest.approx(2 / 5)
    # revisitop caps k at the rank of the last positive: mP@5 = 2/3, not 2/5
    assert m["mP@1"] == 1.0 and m["mP@2"] == 0.5 and m["mP@5"] == pytest.approx(2 / 3)
    assert m["first_positive"] == [1]
    # first positive at rank 3: recall@1 and @2 miss
    m = ranking_metrics([[0, 1, 2]], [[2]], ks=(1, 2, 5))
    assert (m["recall@1"], m["recall@2"], m["recall@5"]) == (0.0, 0.0, 1.0)
    assert m["mP@5"] == pytest.approx(1 / 3) and m["P@5"] == pytest.approx(1 / 5)


def test_truncated_ranking_counts_unranked_positives_as_misses():
    # positive 9 is not in the ranking: AP = (1 + 0)/2; mP@5 is not capped (the last positive is unranked)
    m = ranking_metrics([[4, 1, 2]], [[4, 9]], ks=(5,))
    assert m["mAP"] == pytest.approx(0.5)
    assert m["mP@5"] == pytest.approx(1 / 5)
    # nothing found at all: zeros, not errors
    m = ranking_metrics([[1, 2]], [[9]], ks=(1, 5))
    assert (m["mAP"], m["mP@1"], m["mP@5"], m["recall@5"], m["first_positive"]) == (0.0, 0.0, 0.0, 0.0, [0])


def test_queries_without_positives_are_left_out_of_the_means():
    m = ranking_metrics([[0, 1], [1, 0], [0, 1]], [[0], [], [1]], [[], [], []], ks=(1,))
    assert m["ap"][1] is None and m["empty"] == 1 and m["evaluated"] == 2
    assert m["mAP"] == pytest.approx((1 + 0.25) / 2)  # not divided by 3
    assert m["recall@1"] == pytest.approx(0.5)
    nothing = ranking_metrics([[0, 1]], [[]])
    assert math.isnan(nothing["mAP"]) and math.isnan(nothing["recall@1"])
    with pytest.raises(ValueError):
        ranking_metrics([[0, 1]], [[0], [1]])


def test_exact_rankings_break_ties_by_database_order():
    db = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    q = np.array([[1, 0], [0, 1]], dtype=np.float32)
    assert exact_rankings(q, db).tolist() == [[0, 2, 3, 1], [1, 3, 0, 2]]
    assert exact_rankings(q, db, k=2).tolist() == [[0, 2], [1, 3]]
    # tie between a positive and another item: database order decides (index 0 before 2)
    assert ranking_metrics(exact_rankings(q[:1], db), [[2]], ks=(1,))["recall@1"] == 0.0


# -- ground truths ---------------------------------------------------------------------------------------------


def _gnd() -> dict:
    return {
        "imlist": ["all_souls_1", "all_souls_2", "oxford_3", "oxford_4.jpg", "radcliffe_5"],
        "qimlist": ["all_souls_1", "radcliffe_5"],
        "gnd": [
            {"bbx": np.array([1.0, 2.0, 30.0, 40.0]), "easy": np.array([1]), "hard": np.array([2]), "junk": [0]},
            {"bbx": [0, 0, 8, 8], "easy": [], "hard": [], "junk": np.array([4], dtype=np.int64)},
        ],
    }


def test_revisitop_easy_medium_hard_rules():
    s = revisitop_setups([{"easy": [1, 2], "hard": [3], "junk": [0]}])
    as_sets = {name: (set(ok[0].tolist()), set(junk[0].tolist())) for name, (ok, junk) in s.items()}
    assert as_sets == {
        "easy": ({1, 2}, {0, 3}),
        "medium": ({1, 2, 3}, {0}),
        "hard": ({3}, {0, 1, 2}),
    }
    # a hard positive ranked first: Easy ignores it (junk), Hard scores only it, Medium counts both
    ranking = [[3, 1, 2, 0]]
    scores = {name: ranking_metrics(ranking, ok, junk)["mAP"] for name, (ok, junk) in s.items()}
    assert scores["easy"] == 1.0 and scores["hard"] == 1.0
    assert scores["medium"] == pytest.approx(1.0)
    ranking = [[1, 2, 3, 0]]
    assert ranking_metrics(ranking, *s["hard"])["mAP"] == 1.0  # easy ones before it are junk


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_revisitop_pickle_loads_with_paths_and_boxes(tmp_path, protocol):
    pkl = tmp_path / "gnd_roxford5k.pkl"
    pkl.write_bytes(pickle.dumps(_gnd(), protocol=protocol))
    gt = load_revisitop(pkl, tmp_path / "jpg")
    assert gt.database[0] == str(tmp_path / "jpg" / "all_souls_1.jpg")
    assert gt.database[3].endswith("oxford_4.jpg")  # an extension already there is kept
    assert gt.queries == [gt.database[0], gt.database[4]]
    assert gt.boxes == [(1.0, 2.0, 30.0, 40.0), (0.0, 0.0, 8.0, 8.0)]
    assert sorted(gt.setups) == ["easy", "hard", "medium"]
    # second query has no positives in any setup: excluded, so each setup is scored on the first query only
    r = evaluate_vectors(gt, np.eye(5, dtype=np.float32)[[0, 4]], np.eye(5, dtype=np.float32))
    assert r["setups"]["medium"]["evaluated"] == 1 and r["setups"]["medium"]["empty"] == 1
    assert r["metrics"] == ["mAP", "mP@1", "mP@5", "mP@10"]


class _Boom:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/poolvec-pwned",))


def test_ground_truth_pickle_cannot_run_code(tmp_path):
    bad = tmp_path / "gnd_evil.pkl"
    bad.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [_Boom()]}))
    with pytest.raises(IndexerError, match=r"refusing to load posix\.system"):
        safe_load_pickle(bad)
    assert not Path("/tmp/poolvec-pwned").exists()
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(IndexerError, match="not a valid"):
        safe_load_pickle(tmp_path / "junk.pkl")
    with pytest.raises(IndexerError, match="imlist"):
        (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
        load_revisitop(tmp_path / "list.pkl", tmp_path)


def _touch_images(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(path)


def test_class_folders(tmp_path):
    _touch_images(tmp_path, ["cats/a.jpg", "cats/b.jpg", "cats/sub/c.jpg", "dogs/d.jpg", "loose.jpg"])
    gt = load_classes(tmp_path)
    names = [Path(p).name for p in gt.queries]
    assert names == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert [Path(p).name for p in gt.database] == [*names, "loose.jpg"]  # loose files: distractors only
    ok, junk = gt.setups["all"]
    assert [o.tolist() for o in ok] == [[1, 2], [0, 2], [0, 1], []]  # a lone image has no positives
    assert [j.tolist() for j in junk] == [[0], [1], [2], [3]]  # itself
    with pytest.raises(IndexerError, match="no images"):
        load_classes(tmp_path / "dogs")


def test_pairs_json(tmp_path):
    _touch_images(tmp_path, ["db/x.jpg", "db/y.jpg", "db/z.jpg", "q/1.jpg"])
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps({"q/1.jpg": ["db/y.jpg"], str(tmp_path / "db/x.jpg"): ["db/z.jpg", "db/y.jpg"]}))
    gt = load_pairs(gt_file, tmp_path / "db")
    assert gt.queries == [str(tmp_path / "q/1.jpg"), str(tmp_path / "db/x.jpg")]
    assert [Path(p).name for p in gt.database] == ["x.jpg", "y.jpg", "z.jpg"]
    ok, junk = gt.setups["all"]
    assert [o.tolist() for o in ok] == [[1], [1, 2]]
    assert [j.tolist() for j in junk] == [[], [0]]  # a query in the database is junk for itself
    # without a database folder: the relevant images only
    assert len(load_pairs(gt_file).database) == 2
    gt_file.write_text("[1, 2]")
    with pytest.raises(IndexerError, match="JSON object"):
        load_pairs(gt_file)
    with pytest.raises(IndexerError, match="unknown ground truth"):
        load_ground_truth("coco", gt_file)
    with pytest.raises(IndexerError, match="--images"):
        load_ground_truth("revisitop", gt_file)


# -- end to end on real photos ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def class_dir(tmp_path_factory, photo_dir) -> Path:
    """One class per scene: each real photo, a cropped-and-shrunk copy and a mirrored greyscale copy (the two
    stereo views of the motorcycle are one scene, so one class)."""
    root = tmp_path_factory.mktemp("classes")
    for src in sorted(photo_dir.glob("*.jpg")):
        folder = root / src.stem.removesuffix("_left").removesuffix("_right")
        folder.mkdir(exist_ok=True)
        shutil.copy(src, folder / f"{src.stem}.jpg")
        with Image.open(src) as img:
            w, h = img.size
            img.crop((w // 10, h // 10, w - w // 10, h - h // 10)).resize((w // 2, h // 2)).save(
                folder / f"{src.stem}_crop.jpg", quality=70
            )
            ImageOps.grayscale(ImageOps.mirror(img)).save(folder / f"{src.stem}_mirror_grey.jpg", quality=85)
    return root


def test_class_folder_evaluation_on_real_photos(tmp_path, class_dir, extractor):
    gt = load_classes(class_dir)
    assert len(gt.queries) == 33
    vectors = extractor.embed(gt.database)
    exact = evaluate_vectors(gt, vectors, vectors)
    top = exact["setups"]["all"]
    assert top["recall@1"] >= 0.95 and top["mAP"] >= 0.9
    # the same through Milvus: query vectors come from the index, scores agree with exact search
    with ImageIndex(tmp_path / "eval.db", extractor=extractor, tuning=False) as idx:
        idx.add(gt.database)
        via_index = evaluate_index(idx, gt)
    assert via_index["k"] == 33 and via_index["n_missing"] == 0
    for name in ("mAP", "recall@1", "P@5"):
        assert via_index["setups"]["all"][name] == pytest.approx(top[name], abs=1e-6)
    # random vectors score far worse: the metric can fail
    noise = np.random.default_rng(0).normal(size=vectors.shape).astype(np.float32)
    assert evaluate_vectors(gt, noise, noise)["setups"]["all"]["mAP"] < 0.5


def test_eval_cli(tmp_path, class_dir):
    runner = CliRunner()
    db = str(tmp_path / "cli.db")
    res = runner.invoke(app, ["eval", "classes", str(class_dir), "--db", db])
    assert res.exit_code == 2 and "empty" in res.stderr
    res = runner.invoke(app, ["eval", "classes", str(class_dir), "--db", db, "--add", "--json", "-k", "10"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["ground_truth"] == "classes" and payload["k"] == 10 and payload["queries"] == 33
    assert payload["setups"]["all"]["recall@1"] >= 0.95
    assert len(payload["setups"]["all"]["per_query"]) == 33
    res = runner.invoke(app, ["eval", "classes", str(class_dir), "--db", db])
    assert res.exit_code == 0 and "recall@1" in res.stdout and "mAP" in res.stdout
    res = runner.invoke(app, ["eval", "revisitop", str(class_dir), "--db", db])
    assert res.exit_code == 2 and "--images" in res.stderr and "Traceback" not in res.output
