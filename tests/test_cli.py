"""The poolvec CLI: through Typer's CliRunner and as a real console script (exit codes, JSON, errors)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from indexer.cli import app

runner = CliRunner()
POOLVEC = Path(sys.executable).with_name("poolvec")


@pytest.fixture
def photos(tmp_path, photo_dir):
    folder = tmp_path / "photos"
    shutil.copytree(photo_dir, folder)
    return folder


def test_index_search_info_json(tmp_path, photos, query_dir):
    db = str(tmp_path / "cli.db")
    res = runner.invoke(app, ["index", str(photos), "--db", db, "--quiet"])
    assert res.exit_code == 0, res.output
    assert "11" in res.stdout
    res = runner.invoke(app, ["search", str(query_dir / "chelsea_edit.jpg"), "-k", "3", "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload[0]["query"].endswith("chelsea_edit.jpg")
    assert [h["rank"] for h in payload[0]["hits"]] == [1, 2, 3]
    assert payload[0]["hits"][0]["path"] == str(photos / "chelsea.jpg")
    assert 0 < payload[0]["hits"][0]["score"] <= 1.0001
    res = runner.invoke(app, ["info", "--db", db, "--json"])
    info = json.loads(res.stdout)
    assert info["count"] == 11 and info["config"]["pooling"]["spec"].startswith("gem(p=3")


def test_partial_exit_code_and_failures_file(tmp_path, photos):
    (photos / "bad.jpg").write_text("<html>not an image</html>")
    failures = tmp_path / "failed.tsv"
    res = runner.invoke(app, ["index", str(photos), "--db", str(tmp_path / "p.db"), "--failures", str(failures)])
    assert res.exit_code == 1
    assert failures.read_text().startswith(f"{photos / 'bad.jpg'}\t")
    assert "bad.jpg" in res.stderr


def test_config_mismatch_is_usage_error_one_line(tmp_path, photos):
    db = str(tmp_path / "m.db")
    assert runner.invoke(app, ["index", str(photos), "--db", db, "-q"]).exit_code == 0
    res = runner.invoke(app, ["index", str(photos), "--db", db, "--pooling", "mac | l2", "-q"])
    assert res.exit_code == 2
    assert "another embedding config" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["index", str(photos), "--db", db, "--pooling", "gem(p=3) | nope"])
    assert res.exit_code == 2 and "nope" in res.stderr


def test_console_script_exit_codes(tmp_path, photos):
    env = {**os.environ, "COLUMNS": "200"}
    db = str(tmp_path / "s.db")
    bad = subprocess.run([POOLVEC, "search", "x.jpg", "--db", db], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "empty" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    ok = subprocess.run([POOLVEC, "index", str(photos), "--db", db], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "indexing" not in ok.stderr  # no progress bar when stderr is not a terminal
    hit = subprocess.run(
        [POOLVEC, "search", str(photos / "rocket.jpg"), "--db", db, "-k", "1", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert json.loads(hit.stdout)[0]["hits"][0]["path"] == str(photos / "rocket.jpg")
    missing = subprocess.run([POOLVEC, "index", str(tmp_path / "nope"), "--db", db], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such file" in missing.stderr
