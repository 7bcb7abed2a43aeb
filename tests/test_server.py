"""The server path: the backend tests again against a real Milvus server, and an unreachable server's errors.

The server (PyPI ``milvus`` 2.3.5, a standalone Milvus binary) binds all interfaces, so it only ever runs
inside ``unshare --net`` (a private network namespace with loopback only): the one test below re-runs
pytest there on the ``db``-parametrised tests of :data:`backend_cases.SERVER_SUITE` with the server backend.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from backend_cases import SERVER_ENV, SERVER_SUITE, namespace_problem, shared_temp
from typer.testing import CliRunner

from poolvec.indexer import BackendError, ImageIndex
from poolvec.indexer.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
#: The inner run: server start (~10 s) + the suite; generous for a busy 2-core machine.
INNER_TIMEOUT_S = 1200


#: The server-backed files in two runs of about equal length, each in its own network namespace with its own server
#: (test_server_kill.py restarts its run's server: last of its run). Measured beside the rest of the suite on two
#: workers (2026-12-06): index + sync 477 s, backends 360 s, serve + ray + kill 507 s (the kill file 360 s) as three
#: runs; a third server cost more than it saved (the suite 1 030 s against 915 s with two runs less well balanced).
PARTS = (
    ("tests/test_index.py", "tests/test_sync.py", "tests/test_serve.py", "tests/test_ray.py"),
    ("tests/test_backends.py", "tests/test_server_kill.py", "tests/test_dups_kept.py", "tests/test_dups_current.py"),
)
assert sorted(f for part in PARTS for f in part) == sorted(SERVER_SUITE)


class InnerRun:
    """A server-backed run, started in the background as soon as the outer run has collected its tests.

    Each spends much of its time waiting on its Milvus server, so they overlap each other and the rest of the
    suite instead of adding to it; :func:`test_backend_suite_against_a_real_milvus_server` collects them. Under
    pytest-xdist every worker collects that test: the first to create a run's folder (beside the workers' own
    temporary folders) starts it, and whichever worker runs the test waits for the exit status it leaves there.
    """

    runs: ClassVar[dict[int, InnerRun]] = {}
    problem: str | None = None

    def __init__(self, folder: Path, files: tuple[str, ...]) -> None:
        self.folder, self.files = folder, files

    @classmethod
    def start(cls, shared: Path) -> None:
        """Start every part (once per outer run, whichever worker comes first)."""
        if cls.runs or cls.problem is not None:
            return
        cls.problem = namespace_problem()
        if cls.problem:
            return
        try:
            import milvus  # noqa: F401
        except ImportError:
            cls.problem = "the `milvus` package (the server for these tests) is missing: pip install -e '.[test]'"
            return
        for n, files in enumerate(PARTS):
            cls.runs[n] = run = cls(shared / f"milvus-server-run-{n}", files)
            run._launch()

    def _launch(self) -> None:
        try:
            self.folder.mkdir(parents=True)
        except FileExistsError:
            return  # another worker started it
        inner = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-k", "server"]
        inner += ["--durations=5"]  # in the report: what to move between runs when one gets long
        inner += [f"--basetemp={self.folder / 'inner'}", *self.files]
        run = f"ip link set lo up && {shlex.join(inner)}"
        # the exit status is written aside, then renamed: a reader never sees half of it
        out, rc = shlex.quote(str(self.folder / "out.log")), shlex.quote(str(self.folder / "rc"))
        script = f"({run}) > {out} 2>&1; echo $? > {rc}.part && mv {rc}.part {rc}"
        proc = subprocess.Popen(
            ["unshare", "--net", "bash", "-c", script],
            cwd=ROOT,
            env={**os.environ, SERVER_ENV: "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # one process group: a timeout kills pytest *and* the server it started
        )
        (self.folder / "pid").write_text(str(proc.pid))

    def wait(self) -> tuple[int, str]:
        """The run's exit status and output, once it has ended (killed past :data:`INNER_TIMEOUT_S`)."""
        rc, deadline = self.folder / "rc", time.monotonic() + INNER_TIMEOUT_S
        while not rc.exists() and time.monotonic() < deadline:
            time.sleep(1)
        out = (self.folder / "out.log").read_text(errors="replace") if (self.folder / "out.log").exists() else ""
        if not rc.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int((self.folder / "pid").read_text()), signal.SIGKILL)
            pytest.fail(f"server-backed run exceeded {INNER_TIMEOUT_S} s:\n{out[-20000:]}")
        shutil.rmtree(self.folder / "inner", ignore_errors=True)
        return int(rc.read_text()), out


@pytest.mark.skipif(bool(os.environ.get(SERVER_ENV)), reason="already inside the server run")
@pytest.mark.parametrize("part", range(len(PARTS)))
def test_backend_suite_against_a_real_milvus_server(tmp_path_factory, part):
    InnerRun.start(shared_temp(tmp_path_factory))  # already running when the whole suite was collected (conftest)
    if InnerRun.problem:
        if "missing" in InnerRun.problem:
            pytest.fail(InnerRun.problem)
        pytest.skip(InnerRun.problem)
    returncode, out = InnerRun.runs[part].wait()
    summary = out.strip().splitlines()[-1] if out.strip() else ""
    failures = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
    assert returncode == 0, (
        f"server-backed run failed (exit {returncode}): {summary}\n" + "\n".join(failures) + f"\n{out[-12000:]}"
    )
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 3, f"too few server tests ran: {summary}\n{out[-5000:]}"
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
