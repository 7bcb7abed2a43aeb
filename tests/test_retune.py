"""``tune`` on an existing index: re-fit, re-embed every row, resumable after Ctrl-C or kill -9, never applied twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from poolvec.indexer import ImageIndex, IndexerError
from poolvec.indexer.cli.app import app
from poolvec.indexer.ops import pending, retune

ROOT = Path(__file__).resolve().parents[1]


def vectors(index: ImageIndex) -> dict[str, np.ndarray]:
    rows = [r for batch in index.store.iterate("", fields=("path", "vector")) for r in batch]
    return {r["path"]: np.asarray(r["vector"], np.float32) for r in rows}


def fresh(index: ImageIndex) -> dict[str, np.ndarray]:
    """What the index's extractor gives for each indexed file now."""
    paths = sorted(vectors(index))
    return dict(zip(paths, index.extractor.embed(paths), strict=True))


@pytest.fixture
def indexed(tmp_path, photos):
    """An index of the 11 photos, tuned on 6 of them (so that tuning again on all 11 changes the map)."""
    db = tmp_path / "t.db"
    idx = ImageIndex(db, optimize=False)
    idx.add(sorted(str(p) for p in photos.glob("*.jpg"))[:6])
    idx.add_folder(photos)
    idx.close()
    return db


def test_tune_refits_on_the_whole_collection_and_re_embeds_every_row(indexed, photos):
    idx = ImageIndex(indexed, optimize=False)
    before = vectors(idx)
    assert idx.config["tuning"]["sampled"] == 6
    report = idx.tune()
    assert report.rewritten == 11 and not report.removed and not report.resumed
    assert idx.config["tuning"]["sampled"] == 11 and idx.config["tuning"]["per_image"] == 8
    after = vectors(idx)
    assert max(float(np.dot(before[p], after[p])) for p in after) < 0.999  # every row moved to the new map
    for p, v in fresh(idx).items():
        np.testing.assert_allclose(after[p], v, atol=1e-5)
    again = ImageIndex(indexed, optimize=False)  # the new config is the stored one
    assert again.config == idx.config and pending.get(again.store) is None
    assert again.search(str(photos / "coffee.jpg"), k=1)[0].path == str(photos / "coffee.jpg")


def test_rows_of_gone_or_changed_files_are_removed_and_reported(indexed, photos):
    (photos / "rocket.jpg").unlink()
    with open(photos / "coffee.jpg", "ab") as f:
        f.write(b"\0")
    report = ImageIndex(indexed, optimize=False).tune()
    reasons = dict(report.removed)
    assert "gone" in reasons[str(photos / "rocket.jpg")] and "changed" in reasons[str(photos / "coffee.jpg")]
    assert report.rewritten == 9 and len(ImageIndex(indexed)) == 9


def test_an_interrupted_tune_blocks_searches_and_resumes(indexed, photos, monkeypatch):
    monkeypatch.setattr(retune, "BATCH", 4)
    idx = ImageIndex(indexed, optimize=False)
    calls = []
    original_upsert = idx.store.upsert

    def upsert_then_stop(rows):
        original_upsert(rows)
        calls.append(len(rows))
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(idx.store, "upsert", upsert_then_stop)
    with pytest.raises(KeyboardInterrupt):
        idx.tune()
    state = pending.get(ImageIndex(indexed).store)
    assert state is not None and state["after"] > 0
    with pytest.raises(IndexerError, match=r"interrupted tune.*poolvec tune"):
        ImageIndex(indexed).search(str(photos / "coffee.jpg"))
    with pytest.raises(IndexerError, match="interrupted tune"):
        ImageIndex(indexed).add_folder(photos)
    resumed = ImageIndex(indexed, optimize=False)
    report = resumed.tune()
    assert report.resumed and report.rewritten == 11 - 4  # the first batch was recorded done; the second redone
    stored = vectors(resumed)
    for p, v in fresh(resumed).items():
        np.testing.assert_allclose(stored[p], v, atol=1e-5)
    assert resumed.config["tuning"]["sampled"] == 11


BUILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from poolvec.indexer import ImageIndex
    idx = ImageIndex(sys.argv[1], optimize=False)
    photos = Path(sys.argv[2])
    idx.add(sorted(str(p) for p in photos.glob("*.jpg"))[:6])
    idx.add_folder(photos)
    """
)
CHILD = textwrap.dedent(
    """
    import sys
    from poolvec.indexer import ImageIndex
    from poolvec.indexer.ops import pending, retune
    retune.BATCH = 2
    idx = ImageIndex(sys.argv[1], optimize=False)
    real = idx.store.set_property
    def announce(key, value):
        real(key, value)
        if key == pending.PROP_PENDING:
            print("marker", flush=True)
    idx.store.set_property = announce
    idx.tune()
    print("done", flush=True)
    """
)


def run_child(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def built_and_tuned(tmp_path_factory, photo_dir) -> tuple[Path, dict[str, np.ndarray]]:
    """An index of the photos built by another process (Milvus Lite keeps a database's lock until exit), and the
    vectors a clean tune of a copy of it gives: shared by both kill points."""
    folder = tmp_path_factory.mktemp("retune")
    indexed = folder / "t.db"
    builder = run_child(BUILD, str(indexed), str(photo_dir))
    assert builder.wait() == 0
    reference = folder / "ref.db"
    shutil.copytree(indexed, reference)
    clean = ImageIndex(reference, optimize=False)
    clean.tune()
    want = vectors(clean)
    clean.close()
    return indexed, want


@pytest.mark.parametrize("kill_after", [1, 3])
def test_tune_survives_kill_9_and_finishes_the_same_fit(tmp_path, built_and_tuned, kill_after):
    built, want = built_and_tuned
    indexed = tmp_path / "t.db"
    shutil.copytree(built, indexed)
    child = run_child(CHILD, str(indexed))
    seen = 0
    for line in child.stdout:
        seen += line.strip() == "marker"
        if seen >= kill_after:  # the marker has been written (1: before any row; 3: after two batches)
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait()
    assert child.returncode == -signal.SIGKILL
    res = CliRunner().invoke(app, ["search", str(tmp_path), "--db", str(indexed)])
    assert res.exit_code == 2 and "interrupted tune" in res.output
    res = CliRunner().invoke(app, ["tune", "--db", str(indexed), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["resumed"] is True
    got = vectors(ImageIndex(indexed))
    assert set(got) == set(want)
    for p in want:
        np.testing.assert_allclose(got[p], want[p], atol=1e-5)


def test_tune_needs_a_learned_whitening(tmp_path, photos):
    from poolvec.extractor import Extractor

    idx = ImageIndex(tmp_path / "g.db", extractor=Extractor(pooling="gem(p=3) | l2", optimize=False))
    idx.add_folder(photos)
    with pytest.raises(IndexerError, match="no learned whitening"):
        idx.tune()
    with pytest.raises(IndexerError, match="empty"):
        ImageIndex(tmp_path / "none.db").tune()
