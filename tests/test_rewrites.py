"""Commands that rewrite many rows (dba, reroot, prune) survive kill -9 at any moment and never apply twice.

Each run is a real process killed with SIGKILL at a marker it prints (the pending marker written, a batch done);
the same command run again must leave the index exactly as one clean, uninterrupted run does.
"""

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

from poolvec.indexer import ImageIndex
from poolvec.indexer.cli.app import app
from poolvec.indexer.ops import pending

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

BUILD = textwrap.dedent(
    """
    import sys
    from poolvec.indexer import ImageIndex
    ImageIndex(sys.argv[1], optimize=False, tuning=False).add_folder(sys.argv[2])
    """
)
# Runs one rewrite in small batches and prints a line at every pending-marker write and after every upsert, so
# that the parent can kill it at a known point.
CHILD = textwrap.dedent(
    """
    import sys
    from poolvec.indexer import ImageIndex
    from poolvec.indexer.ops import dba, pending, sync
    idx = ImageIndex(sys.argv[1], optimize=False)
    store = idx.store
    real_set, real_upsert = store.set_property, store.upsert
    def set_property(key, value):
        real_set(key, value)
        if key == pending.PROP_PENDING:
            print("marker", flush=True)
    def upsert(rows):
        real_upsert(rows)
        print("upsert", flush=True)
    store.set_property, store.upsert = set_property, upsert
    if sys.argv[2] == "dba":
        dba.apply(store, idx.vector_index, 3, 3.0, batch_size=2)
    else:
        sync.REROOT_BATCH = 2
        sync.reroot(store, sys.argv[3], sys.argv[4])
    print("done", flush=True)
    """
)


def run(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)


def rows(db: Path) -> dict[str, np.ndarray]:
    index = ImageIndex(db)
    got = {r["path"]: np.asarray(r["vector"]) for b in index.store.iterate("", fields=("path", "vector")) for r in b}
    index.close()
    return got


def kill_at(child: subprocess.Popen, line: str, count: int) -> None:
    seen = 0
    for got in child.stdout:
        seen += got.strip() == line
        if seen >= count:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the child finished before the kill point"


@pytest.fixture(scope="module")
def shared(tmp_path_factory, photo_dir) -> tuple[Path, Path]:
    """The 11 photos and an index of them built once by another process (a Lite database stays locked until its
    process exits); the tests work on copies of the index, and leave the photos as they are."""
    folder = tmp_path_factory.mktemp("rewrites")
    shutil.copytree(photo_dir, folder / "photos")
    assert run(BUILD, str(folder / "r.db"), str(folder / "photos")).wait() == 0
    return folder / "r.db", folder / "photos"


@pytest.fixture
def built(tmp_path, shared) -> tuple[Path, Path, Path]:
    """A copy of the shared index, another for the clean reference run, and the photos they index."""
    db, reference = tmp_path / "r.db", tmp_path / "ref.db"
    shutil.copytree(shared[0], db)
    shutil.copytree(shared[0], reference)
    return db, reference, shared[1]


# (line, count): killed while staging (the marker is written before the first staged vector), right after the
# write phase began, and after two rewritten batches.
@pytest.mark.parametrize("point", [("marker", 1), ("marker", 2), ("upsert", 2)])
def test_dba_killed_at_any_point_finishes_like_a_clean_run(built, point):
    db, reference, photos = built
    clean = run(CHILD, str(reference), "dba")
    assert clean.wait() == 0
    want = rows(reference)
    kill_at(run(CHILD, str(db), "dba"), *point)
    res = runner.invoke(app, ["search", str(photos / "coffee.jpg"), "--db", str(db)])
    assert res.exit_code == 2 and "interrupted dba" in res.stderr and "poolvec dba -n 3 --alpha 3" in res.stderr
    res = runner.invoke(app, ["index", str(photos), "--db", str(db)])
    assert res.exit_code == 2 and "interrupted dba" in res.stderr  # no addition would be augmented half-way
    res = runner.invoke(app, ["dba", "-n", "3", "--alpha", "3", "--db", str(db), "-q"])
    assert res.exit_code == 0, res.output
    got = rows(db)
    assert set(got) == set(want)
    for path, vector in want.items():  # applied exactly once: a second application moves every vector
        np.testing.assert_allclose(got[path], vector, atol=1e-5)
    index = ImageIndex(db)
    assert pending.get(index.store) is None and not index.store.has_stage()
    assert index.info()["dba"] == {"n": 3, "alpha": 3.0}


def test_dba_resumed_with_other_settings_is_refused(built):
    db, _, _ = built
    kill_at(run(CHILD, str(db), "dba"), "upsert", 1)
    res = runner.invoke(app, ["dba", "-n", "5", "--db", str(db)])
    assert res.exit_code == 2 and "poolvec dba -n 3 --alpha 3" in res.stderr


@pytest.mark.parametrize("point", [("upsert", 1), ("upsert", 3)])
def test_reroot_killed_between_batches_finishes_like_a_clean_run(built, tmp_path, point):
    db, reference, photos = built
    new = tmp_path / "moved"
    assert run(CHILD, str(reference), "reroot", str(photos), str(new)).wait() == 0
    want = rows(reference)
    kill_at(run(CHILD, str(db), "reroot", str(photos), str(new)), *point)  # killed after an upsert, before its delete
    res = runner.invoke(app, ["dups", "--db", str(db)])
    assert res.exit_code == 2 and "interrupted reroot" in res.stderr
    res = runner.invoke(app, ["reroot", str(photos), str(new), "--db", str(db)])
    assert res.exit_code == 0, res.output
    got = rows(db)
    assert sorted(got) == sorted(want) and all(p.startswith(str(new) + "/") for p in got)
    for path, vector in want.items():
        np.testing.assert_array_equal(got[path], vector)


def test_prune_killed_mid_way_is_finished_by_the_next_prune(tmp_path, photos):
    db = tmp_path / "p.db"
    assert run(BUILD, str(db), str(photos)).wait() == 0
    for name in ("coffee.jpg", "rocket.jpg", "china.jpg"):
        (photos / name).unlink()
    code = textwrap.dedent(
        """
        import sys
        from poolvec.indexer import ImageIndex
        idx = ImageIndex(sys.argv[1], optimize=False)
        real = idx.store.delete
        def delete(ids):
            for i in ids:  # one row at a time, so that the kill lands between deletions
                real([i])
                print("deleted", flush=True)
        idx.store.delete = delete
        idx.add_folder(sys.argv[2], prune=True)
        """
    )
    kill_at(run(code, str(db), str(photos)), "deleted", 1)
    res = runner.invoke(app, ["index", str(photos), "--db", str(db), "--prune", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["count"] == 8 and summary["removed"] == 2 and summary["unchanged"] == 8
    assert sorted(os.path.basename(p) for p in rows(db)) == sorted(p.name for p in photos.iterdir())


def test_a_folder_left_by_a_kill_while_lite_creates_a_collection_does_not_block_it(built, extractor):
    """A kill -9 while Milvus Lite creates a collection can leave its folder, which Lite does not know and then refuses
    to create again ("File exists": CI saw ``dba`` resumed after a kill while it staged fail so)."""
    db, _, photos = built
    for name in ("images_poolvec_stage", "images_poolvec_graph", "other"):
        (db / "collections" / name).mkdir()
        (db / "collections" / name / "leftover").write_text("half made")
    res = runner.invoke(app, ["dba", "-n", "3", "--alpha", "3", "--db", str(db), "-q"])
    assert res.exit_code == 0, res.output  # staged in a new images_poolvec_stage
    index = ImageIndex(db)
    assert index.info()["dba"] == {"n": 3, "alpha": 3.0}
    index.find_duplicates(verify=False)
    assert index.store.kept_meta() is not None  # kept in a new images_poolvec_graph
    other = ImageIndex(db, collection="other", extractor=extractor, tuning=False)
    assert other.add_folder(photos).added == 11 and len(other) == 11
