"""README.md never goes stale: its quick start matches CI, and every command and code block in it runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def run(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "160"}
    return subprocess.run(["bash", "-c", f"set -euo pipefail; {cmd}"], cwd=cwd, env=env, capture_output=True, text=True)


def test_quick_start_test_command_is_what_ci_runs():
    test_cmd = blocks("bash")[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines(), "README's test command and .ci/run differ"


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory) -> Path:
    """Run quick-start command 1 (without the install steps, which the test run already did) in a fresh folder."""
    work = tmp_path_factory.mktemp("readme")
    first = blocks("bash")[0].strip()
    steps = [s.strip() for s in first.split("&&")]
    assert steps[:3] == ["python3 -m venv .venv", ". .venv/bin/activate", 'pip install -e ".[samples]"']
    cmd = " && ".join(s.replace("python ", f"{sys.executable} ", 1) for s in steps[3:])
    res = run(cmd.replace("scripts/", f"{ROOT}/scripts/"), work)
    assert res.returncode == 0, res.stderr
    assert re.search(r"1 │ +0\.\d+ │ .*photos/chelsea\.jpg", res.stdout), res.stdout
    return work


def test_tour_commands_all_run(quick_start):
    tour = blocks("bash")[2]
    lines = [line.split("  #")[0].strip() for line in tour.splitlines() if line.strip()]
    assert len(lines) >= 10
    for line in lines:
        res = run(line, quick_start)
        assert res.returncode == 0, f"{line}\n{res.stdout}\n{res.stderr}"
    assert (quick_start / "hits.png").stat().st_size > 10_000
    assert "<figure" in (quick_start / "hits.html").read_text()
    assert (quick_start / "vectors.jsonl").read_text().count("\n") == 11
    assert (quick_start / "failed.jsonl").read_text() == ""


def test_python_block_runs(quick_start):
    code = blocks("python")[0]
    res = subprocess.run([sys.executable, "-c", code], cwd=quick_start, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "missing.jpg file not found" in res.stdout
