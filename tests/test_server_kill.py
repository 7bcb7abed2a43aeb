"""A Milvus server killed with SIGKILL in the middle of a rewrite (``dba --uri``, ``tune --uri``), then restarted:
the interrupted command exits 3 in one line, the same command run again finishes, and every row equals the row of
one clean, uninterrupted run (reliability round 3, item 9).

Runs in tests/test_server.py's inner run (a private network namespace), on the session's server, last (it is the last
file of :data:`backend_cases.SERVER_SUITE`): a second Milvus standalone cannot start beside the first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import backend_cases
import numpy as np
import pytest
from backend_cases import SERVER_ENV
from typer.testing import CliRunner

from poolvec.indexer import ImageIndex
from poolvec.indexer.cli.app import app

pytestmark = pytest.mark.skipif(
    not os.environ.get(SERVER_ENV), reason="runs in tests/test_server.py's inner run (a private network namespace)"
)
ROOT = Path(__file__).resolve().parents[1]

# `poolvec ...` rewriting two rows a batch; after each batch it says so and waits for a line on stdin, so that the
# parent kills the server at a known point of the rewrite.
PAUSED_REWRITE = """
import sys
from poolvec.indexer.cli.app import main
from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.ops import dba, retune
retune.BATCH = 2
dba.apply.__defaults__ = (5, 3.0, 2, None)  # n, alpha, batch_size, progress
real = MilvusStore.upsert
def upsert(self, rows):
    real(self, rows)
    print("written", len(rows), flush=True)
    sys.stdin.readline()
MilvusStore.upsert = upsert
sys.argv = ["poolvec", *sys.argv[1:]]
main()
"""
COMMANDS = {"dba": ["dba", "-n", "3", "--alpha", "3", "--quiet"], "tune": ["tune", "--quiet"]}


def rows(address: str, collection: str) -> dict[str, np.ndarray]:
    index = ImageIndex(address, collection)
    try:
        batches = index.store.iterate("", fields=("path", "vector"))
        return {r["path"]: np.asarray(r["vector"]) for b in batches for r in b}
    finally:
        index.close()


@pytest.mark.parametrize("name", ["dba", "tune"])
def test_server_killed_mid_rewrite_then_restarted_finishes_like_a_clean_run(milvus_server, photos, name):
    address, command = backend_cases._server_uri[0], COMMANDS[name]  # the current one: the first case restarted it
    clean_name, killed_name = f"{name}_clean", f"{name}_killed"
    for collection in (clean_name, killed_name):  # the same photos: the same starting rows
        index = ImageIndex(address, collection, tuning=False, optimize=False)
        index.add_folder(photos)
        index.close()
    start = rows(address, killed_name)
    assert start.keys() == rows(address, clean_name).keys()
    clean = CliRunner().invoke(app, [*command, "--uri", address, "--collection", clean_name])
    assert clean.exit_code == 0, clean.output
    want = rows(address, clean_name)

    child = subprocess.Popen(
        [sys.executable, "-c", PAUSED_REWRITE, *command, "--uri", address, "--collection", killed_name],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    batches = 0
    for line in child.stdout:
        if line.startswith("written"):
            batches += 1
            if batches == 2:  # two batches rewritten, the child waits: the server dies under it
                server = backend_cases._server[0]
                os.kill(server.server_proc.pid, signal.SIGKILL)
                server.server_proc.wait()
            child.stdin.write("\n")
            child.stdin.flush()
    _, err = child.communicate(timeout=300)
    assert batches == 2, "the rewrite ended before the server was killed"
    assert child.returncode == 3, err
    assert len(err.strip().splitlines()) == 1 and "Milvus" in err, err

    address = backend_cases.restart_milvus_server(kill=False)  # the same data (its process is dead already)
    res = CliRunner().invoke(app, ["search", str(photos / "coffee.jpg"), "--uri", address, "--collection", killed_name])
    assert res.exit_code == 2 and f"interrupted {name}" in res.stderr  # half-rewritten: refused, and said how
    res = CliRunner().invoke(app, [*command, "--uri", address, "--collection", killed_name])
    assert res.exit_code == 0, res.output
    got = rows(address, killed_name)
    assert got.keys() == want.keys() == start.keys()
    for path, vector in want.items():  # applied exactly once, as in the clean run
        np.testing.assert_allclose(got[path], vector, atol=1e-5)
    assert any(not np.allclose(start[p], want[p], atol=1e-3) for p in want)  # the rewrite did change the rows
    assert rows(address, clean_name).keys() == want.keys()  # the other collection came through the kill untouched
