"""The server path: the backend tests again against a real Milvus server, and an unreachable server's errors.

The server (PyPI ``milvus`` 2.3.5, a standalone Milvus binary) binds all interfaces, so it only ever runs
inside ``unshare --net`` (a private network namespace with loopback only): the one test below re-runs
pytest there on the ``db``-parametrised tests of :data:`backend_cases.SERVER_SUITE` with the server backend.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from backend_cases import SERVER_ENV, SERVER_SUITE, namespace_problem
from typer.testing import CliRunner

from poolvec.indexer import BackendError, ImageIndex
from poolvec.indexer.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
#: The inner run: server start (~10 s) + the suite; generous for a busy 2-core machine.
INNER_TIMEOUT_S = 1200


class InnerRun:
    """The server-backed run, started in the background as soon as the outer run has collected its tests.

    It spends most of its 8 minutes waiting on the Milvus server (about 20 % of one core), so it overlaps the rest
    of the suite instead of adding to it; :func:`test_backend_suite_against_a_real_milvus_server` collects it.
    """

    proc: subprocess.Popen | None = None
    basetemp: Path | None = None
    problem: str | None = None

    @classmethod
    def start(cls) -> None:
        if cls.proc is not None or cls.problem is not None:
            return
        cls.problem = namespace_problem()
        if cls.problem:
            return
        try:
            import milvus  # noqa: F401
        except ImportError:
            cls.problem = "the `milvus` package (the server for these tests) is missing: pip install -e '.[test]'"
            return
        cls.basetemp = Path(tempfile.mkdtemp(prefix="poolvec-server-suite-"))
        inner = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "server"]
        inner += [f"--basetemp={cls.basetemp / 'inner'}", *SERVER_SUITE]
        cls.proc = subprocess.Popen(
            ["unshare", "--net", "bash", "-c", "ip link set lo up && exec " + shlex.join(inner)],
            cwd=ROOT,
            env={**os.environ, SERVER_ENV: "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # one process group: a timeout kills pytest *and* the server it started
        )


@pytest.mark.skipif(bool(os.environ.get(SERVER_ENV)), reason="already inside the server run")
def test_backend_suite_against_a_real_milvus_server():
    InnerRun.start()  # already running when the whole suite was collected (tests/conftest.py)
    if InnerRun.problem:
        if "missing" in InnerRun.problem:
            pytest.fail(InnerRun.problem)
        pytest.skip(InnerRun.problem)
    proc = InnerRun.proc
    assert proc is not None
    try:
        out, _ = proc.communicate(timeout=INNER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"server-backed run exceeded {INNER_TIMEOUT_S} s:\n{out[-20000:]}")
    finally:
        shutil.rmtree(InnerRun.basetemp or "", ignore_errors=True)
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    failures = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert proc.returncode == 0, (
        f"server-backed run failed (exit {proc.returncode}): {summary}\n" + "\n".join(failures) + f"\n{out[-12000:]}"
    )
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 10, f"too few server tests ran: {summary}\n{out[-5000:]}"
    print(f"server-backed run: {summary}")


@pytest.fixture
def dead_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def test_server_that_is_down_is_a_backend_error_at_once(dead_port):
    t = time.monotonic()
    with pytest.raises(BackendError, match=f"cannot reach Milvus at http://127.0.0.1:{dead_port}"):
        ImageIndex(f"http://127.0.0.1:{dead_port}")
    assert time.monotonic() - t < 5


def test_hung_server_is_a_backend_error_within_the_timeout(silent_port):
    t = time.monotonic()
    with pytest.raises(BackendError, match="cannot reach Milvus"):
        ImageIndex(f"http://127.0.0.1:{silent_port}", timeout=2)
    assert 1.5 < time.monotonic() - t < 10


def test_cli_exit_code_3_when_the_server_is_down(dead_port):
    for command in (["info"], ["search", "x.jpg"]):
        res = CliRunner().invoke(app, [*command, "--uri", f"http://127.0.0.1:{dead_port}"])
        assert res.exit_code == 3, res.output
        assert "cannot reach Milvus" in res.stderr and len(res.stderr.strip().splitlines()) == 1
