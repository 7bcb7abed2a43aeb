"""Helpers of the Ray engine tests (tests/test_ray.py, tests/test_ray_cluster.py).

Ray's processes listen on every interface, so the tests that start Ray run only inside a private network
namespace with loopback only: tests/test_ray.py re-runs them there (and the server suite's inner run, already in
one, runs their server cases).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backend_cases import SERVER_ENV

#: Set (to "1") inside the private network namespace where the Ray tests run.
NETNS_ENV = "POOLVEC_TEST_NETNS"
#: True where Ray may be started: a private network namespace (the Lite run, or the server suite's inner run).
INSIDE = bool(os.environ.get(NETNS_ENV) or os.environ.get(SERVER_ENV))
needs_netns = pytest.mark.skipif(
    not INSIDE, reason="starts Ray: runs inside a private network namespace (test_ray_suite_in_a_private_network)"
)
#: Ray Data's name for the processes of our actor pool.
ACTOR_TITLE = "MapBatches(Embedder)"


def embedder_processes() -> dict[int, int]:
    """pid → parent pid (the raylet of its node) of every live embedding actor process started by this test
    process: other Ray clusters on the machine (the other pytest worker's, the server suite's) are not ours."""
    parents: dict[int, int] = {}
    actors: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ACTOR_TITLE in title and title.startswith("ray::"):
            actors.append(int(entry.name))
    ours = {pid for pid in actors if _descends(pid, os.getpid(), parents)}
    # an actor's forked helper carries its title (CI saw one, whose parent was an actor, counted as a third node)
    return {pid: parents[pid] for pid in ours if parents[pid] not in ours}


def _descends(pid: int, ancestor: int, parents: dict[int, int]) -> bool:
    while pid > 1:
        pid = parents.get(pid, 0)
        if pid == ancestor:
            return True
    return False


def rows_by_id(index: Any) -> dict[int, dict[str, Any]]:
    """Every stored row of an index, by primary key (vectors as float32 arrays)."""
    fields = ("path", "root", "dirs", "size", "mtime_ns", "width", "height", "sha256", "vector")
    out = {}
    for rows in index.store.iterate(fields=fields):
        for r in rows:
            out[int(r["id"])] = {**r, "vector": np.asarray(r["vector"], np.float32)}
    return out


def ray_env() -> None:
    """Ray offline: no usage statistics."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
