"""The Ray engine on a real local Ray (2 CPUs), into Milvus Lite and (in the server suite) a real Milvus server.

Same rows as the single-process path (ids, metadata, vectors to 1e-5) with an actor killed by SIGKILL mid-job,
incremental re-runs, prune, reuse by hash, bad files; the bytes actors get decode like the files; and, without
Ray, the CLI says how to install it and never imports Ray.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from backend_cases import namespace_problem
from ray_cases import INSIDE, NETNS_ENV, embedder_processes, needs_netns, ray_env, rows_by_id
from typer.testing import CliRunner

from poolvec.extractor import Extractor, Tuning
from poolvec.extractor.images import EncodedImage
from poolvec.indexer import ImageIndex
from poolvec.indexer.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
INNER_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def local_ray():
    """A real local Ray with 2 CPUs, shared by this module's tests."""
    ray_env()
    import ray

    settings = {"address": "local", "num_cpus": 2, "include_dashboard": False, "configure_logging": False}
    try:
        ray.init(**settings)
    except Exception:  # Ray gives its raylet 30 s to register: on a busy 2-core machine, try once more
        ray.shutdown()
        ray.init(**settings)
    yield ray
    ray.shutdown()


@needs_netns
def test_ray_rows_equal_single_process_with_an_actor_killed_then_resync_reuse_and_prune(db, local_ray, photos):
    """One Ray job, an actor SIGKILLed as the first results come in: Ray retries its batches, and the rows are
    the single-process path's (same ids and metadata, vectors to 1e-5): nothing lost, nothing duplicated."""
    from poolvec.indexer.ops.ray.options import RayOptions

    bad = photos / "broken.jpg"
    bad.write_bytes(b"not a picture at all")
    tuning = Tuning(images=2, edits=8)  # tuned once on the driver, from 2 photos: the other 9 go to the actors
    single = ImageIndex(db, "single", tuning=tuning, optimize=False)
    on_ray = ImageIndex(db, "on_ray", tuning=tuning, optimize=False)
    expected = single.add_folder(photos)
    killed: list[int] = []

    def kill_one_actor(done: int, total: int | None, path: str) -> None:
        if not killed and done < (total or 0):
            pids = sorted(embedder_processes())
            if pids:  # none yet while the driver plans
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

    report = on_ray.add_folder(photos, engine=RayOptions(batch_size=1), progress=kill_one_actor)

    assert killed, "no actor was running while results came in"
    assert killed[0] not in embedder_processes()
    assert (report.added, report.updated, report.reused) == (expected.added, 0, 0) == (11, 0, 0)
    assert report.failed == expected.failed and [p for p, _ in report.failed] == [str(bad)]
    assert "not a recognised image format" in report.failed[0][1]
    assert on_ray._fingerprint == single._fingerprint  # the same fitted whitening, stored once
    mine, theirs = rows_by_id(on_ray), rows_by_id(single)
    assert sorted(mine) == sorted(theirs) and len(mine) == on_ray.store.count() == 11
    for key, row in mine.items():
        np.testing.assert_allclose(row.pop("vector"), theirs[key].pop("vector"), rtol=0, atol=1e-5)
        assert row == theirs[key]  # path, root, dirs, size, mtime_ns, width, height, sha256

    bad.unlink()
    (photos / "coffee.jpg").unlink()
    shutil.copy(photos / "chelsea.jpg", photos / "chelsea_copy.jpg")
    again = on_ray.add_folder(photos, prune=True, engine=RayOptions(batch_size=2))
    assert (again.added, again.reused, again.updated, again.unchanged, again.removed) == (1, 1, 0, 10, 1)
    assert again.failed == []
    paths = sorted(r["path"] for r in rows_by_id(on_ray).values())
    assert paths == sorted(str(p) for p in photos.iterdir()) and len(on_ray) == 11


# `poolvec ...` with the Lite writes announced (two rows a batch, so that a kill lands between them).
ANNOUNCED_WRITES = """
import sys
import time
from poolvec.indexer.cli.app import main
from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.ops import sync
defaults = list(sync.Writer.__init__.__defaults__)
defaults[1] = 2  # batch_rows
sync.Writer.__init__.__defaults__ = tuple(defaults)
real = MilvusStore.upsert
landed = []
def upsert(self, rows):
    real(self, rows)
    print("written", len(rows), flush=True)
    landed.append(len(rows) > 0)
    if sum(landed) == 2:
        time.sleep(600)  # the kill point: nothing more is written before the SIGKILL arrives
MilvusStore.upsert = upsert
sys.argv = ["poolvec", *sys.argv[1:]]
main()
"""


@needs_netns
def test_lite_index_finished_without_ray_after_its_ray_driver_was_killed(photos, tmp_path):
    """`poolvec index --engine ray` SIGKILLed after two batches were written; the same command without Ray then
    finishes the job, and the rows equal one clean single-process run's (ids, metadata, vectors to 1e-5)."""
    ray_env()
    db, clean = tmp_path / "killed.db", tmp_path / "clean.db"
    command = ["index", str(photos), "--no-tune", "--quiet"]
    driver = subprocess.Popen(
        [sys.executable, "-c", ANNOUNCED_WRITES, *command, "--db", str(db), "--engine", "ray"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ray's own processes stay in this group: cleaned up below
    )
    try:
        written = 0
        for line in driver.stdout:
            written += line.startswith("written") and line.split()[1] != "0"
            if written == 2:
                os.kill(driver.pid, signal.SIGKILL)
                break
        driver.wait(60)
        assert driver.returncode == -signal.SIGKILL, "the Ray job ended before the kill point"
        res = CliRunner().invoke(app, [*command, "--db", str(db), "--json"])
        assert res.exit_code == 0, res.output
        report = json.loads(res.stdout)
        assert (report["added"], report["unchanged"], report["failed"]) == (7, 4, [])  # the 4 written rows kept
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # whatever of Ray outlived its driver (its agents do)
    assert CliRunner().invoke(app, [*command, "--db", str(clean)]).exit_code == 0
    mine, theirs = rows_by_id(ImageIndex(db)), rows_by_id(ImageIndex(clean))
    assert sorted(mine) == sorted(theirs) and len(mine) == 11
    for key, row in mine.items():
        np.testing.assert_allclose(row.pop("vector"), theirs[key].pop("vector"), rtol=0, atol=1e-5)
        assert row == theirs[key]


@pytest.mark.parametrize("decoder", ["pil", "torchvision"])
def test_file_bytes_read_elsewhere_embed_like_the_file(photo_dir, extractor, decoder):
    """What the actors get from Ray Data (a file's bytes) gives the file's vector, bit for bit."""
    ex = extractor if decoder == "pil" else Extractor(decoder=decoder, optimize=False)
    files = sorted(photo_dir.glob("*.jpg"))[:3]
    encoded = [EncodedImage(str(p), p.read_bytes()) for p in files]
    np.testing.assert_array_equal(ex.embed(encoded), ex.embed(files))
    [bad] = ex.embed_iter([EncodedImage("/elsewhere/broken.jpg", b"junk")])
    assert bad.source == "/elsewhere/broken.jpg" and bad.vector is None
    assert "not a recognised image format" in bad.error


def test_engine_ray_without_ray_says_how_to_install(photos, tmp_path, monkeypatch):
    for name in ("ray", "ray.data"):
        monkeypatch.setitem(sys.modules, name, None)  # `import ray` now fails as if it were not installed
    db = tmp_path / "index.db"
    res = CliRunner().invoke(app, ["index", str(photos), "--db", str(db), "--engine", "ray", "--quiet"])
    assert res.exit_code == 2, res.output
    assert 'pip install "poolvec[ray]"' in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert len(ImageIndex(db)) == 0  # refused before tuning or indexing anything


def test_ray_that_cannot_start_is_exit_3_in_one_line(photos, tmp_path):
    ray_env()
    env = {**os.environ, "RAY_TMPDIR": "/proc/poolvec-no-such-folder"}  # Ray cannot make its files there
    db = tmp_path / "index.db"
    command = [str(Path(sys.executable).with_name("poolvec")), "index", str(photos), "--db", str(db)]
    res = subprocess.run([*command, "--engine", "ray", "--no-tune"], capture_output=True, text=True, env=env)
    assert res.returncode == 3, res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "could not start a local Ray" in res.stderr
    assert "this is a bug" not in res.stderr


def test_cli_does_not_import_ray():
    code = "import sys, poolvec.indexer.cli.app; print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_reading_and_writing_tasks_load_no_model():
    # Ray starts worker processes for the read and write tasks, often one per task: importing torch there cost
    # ~4 s of CPU and ~0.6 GB each and made the engine 3-4x slower than one process (docs/BENCHMARKS.md).
    code = "import sys, poolvec.indexer.ops.ray.engine, poolvec.indexer.ops.ray.sink"
    code += "; print(sorted({'torch', 'timm'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(INSIDE, reason="already inside the private network namespace")
def test_ray_suite_in_a_private_network(tmp_path):
    """Runs this file's and tests/test_ray_cluster.py's Ray tests (Milvus Lite) where Ray can only reach loopback."""
    problem = namespace_problem()
    if problem:
        pytest.skip(problem)
    inner = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-k", "lite"]
    inner += [f"--basetemp={tmp_path / 'inner'}", "tests/test_ray_cluster.py", "tests/test_ray.py"]
    proc = subprocess.Popen(
        ["unshare", "--net", "bash", "-c", "ip link set lo up && exec " + shlex.join(inner)],
        cwd=ROOT,
        env={**os.environ, NETNS_ENV: "1", "RAY_USAGE_STATS_ENABLED": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # one process group: a timeout kills pytest and Ray's processes
    )
    try:
        out, _ = proc.communicate(timeout=INNER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the Ray run exceeded {INNER_TIMEOUT_S} s:\n{out[-20000:]}")
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    assert proc.returncode == 0, f"the Ray run failed (exit {proc.returncode}): {summary}\n{out[-12000:]}"
    assert "3 passed" in summary and "skipped" not in summary, out[-5000:]
    print(f"Ray run: {summary}")
