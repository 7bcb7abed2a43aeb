"""The Ray engine on a two-node Ray cluster in one machine (``ray.cluster_utils.Cluster``), driven by the CLI,
into Milvus Lite (rows stream back to the driver).

One actor per node (each node has one CPU, each actor needs one); the files are read on the driver's node
and reach the other node's actor through Ray's object store.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from ray_cases import embedder_processes, needs_netns, ray_env, rows_by_id
from typer.testing import CliRunner

from poolvec.indexer import ImageIndex
from poolvec.indexer.cli.app import app


@pytest.fixture(scope="module")
def cluster():
    """A head node and a worker node, one CPU each; the CLI under test connects to it by address."""
    ray_env()
    import ray
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        nodes.add_node(num_cpus=1)
    except Exception:  # Ray gives a raylet 30 s to register: on a busy 2-core machine, try once more
        nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes
    ray.shutdown()
    nodes.shutdown()


@needs_netns
def test_two_node_cluster_from_the_cli_into_lite(cluster, photos, extractor, tmp_path):
    db = str(tmp_path / "index.db")  # the Milvus server path runs in tests/test_ray.py (the server suite)
    (photos / "empty.png").write_bytes(b"")
    seen: dict[int, int] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            seen.update(embedder_processes())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        args = ["index", str(photos), "--uri", db, "--no-tune", "--json"]
        args += ["--engine", "ray", "--ray-address", cluster.address, "--actors", "2"]
        res = CliRunner().invoke(app, args)
    finally:
        stop.set()
        watcher.join()

    assert res.exit_code == 1, res.output  # partial: one file skipped
    summary = json.loads(res.stdout)
    assert (summary["added"], summary["count"]) == (11, 11)
    assert [f["path"] for f in summary["failed"]] == [str(photos / "empty.png")]
    assert len(set(seen.values())) == 2, f"actors did not run on both nodes: {seen}"
    index = ImageIndex(db)
    rows = sorted(rows_by_id(index).values(), key=lambda r: r["path"])
    files = sorted(str(p) for p in photos.glob("*.jpg"))
    assert [r["path"] for r in rows] == files
    np.testing.assert_allclose(np.stack([r["vector"] for r in rows]), extractor.embed(files), rtol=0, atol=1e-5)
