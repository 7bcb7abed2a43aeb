"""The neighbour graph ``dups`` keeps with the index (poolvec.indexer.dups.kept): read back by the next run while no
row is written, searched anew after a write nobody followed (tests/test_dups_current.py: the writes poolvec makes
repair it), not kept from a read that rows were written during, and a kill -9
while it is being kept leaves an index whose next ``dups`` is right. Real photos, real Milvus (Lite; a server in
tests/test_server.py's inner run)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from backend_cases import BACKENDS, backend_uri, milvus_server  # noqa: F401  (milvus_server: a fixture)

from poolvec.indexer import ImageIndex
from poolvec.indexer.dups.kept import Graph, decode, encode
from poolvec.indexer.milvus.schema import path_id
from poolvec.indexer.milvus.side import PROP_GRAPH, PROP_WRITES


@pytest.fixture(params=BACKENDS)
def index(request, tmp_path, extractor):
    """A fresh index on Milvus Lite; in tests/test_server.py's inner run, on a real Milvus server."""
    return ImageIndex(backend_uri(request, tmp_path), extractor=extractor, tuning=False)


def dups(index: ImageIndex, **options) -> tuple[list[tuple], set[str]]:
    """Unverified groups as comparable tuples (kind, paths, each pair's ends and score), and the stages it went
    through ("read", "neighbours": none when the kept graph was used)."""
    stages: set[str] = set()
    groups = index.find_duplicates(verify=False, progress=lambda stage, done, n: stages.add(stage), **options)
    return [(g.kind, g.paths, [(p.a, p.b, p.score) for p in g.pairs]) for g in groups], stages


def alike(a: list[tuple], b: list[tuple], atol: float = 1e-5) -> bool:
    """The same groups and pairs, scores to ``atol`` (rows read in another order may sum a product in another order)."""
    assert [(kind, paths, [p[:2] for p in pairs]) for kind, paths, pairs in a] == [
        (kind, paths, [p[:2] for p in pairs]) for kind, paths, pairs in b
    ]
    x = [p[2] for *_, pairs in a for p in pairs]
    np.testing.assert_allclose(x, [p[2] for *_, pairs in b for p in pairs], rtol=0, atol=atol)
    return True


def test_the_graph_round_trips_exactly():
    paths = ["/photos/a b.jpg", "/photos/\udcff-latin1.jpg", "/photos/new\nline.jpg", "/фото/é.png", ""]
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((5, 3)).astype(np.float32)
    scores[4, 1:] = -np.inf
    found = rng.integers(0, 5, (5, 3))
    found[4, 1:] = -1
    graph = Graph(np.array([3, -7, 2**62, 0, 11]), paths, [f"{i:064x}" for i in range(5)], scores, found)
    back = decode(encode(graph))
    assert back.paths == paths and back.sha256 == graph.sha256
    np.testing.assert_array_equal(back.ids, graph.ids)
    np.testing.assert_array_equal(back.scores, scores)  # bit for bit, −inf included
    np.testing.assert_array_equal(back.found, found)
    assert back.first(2).scores.shape == (5, 2) and back.first(2).found.tolist() == found[:, :2].tolist()
    empty = decode(encode(Graph(np.zeros(0, np.int64), [], [], np.zeros((0, 0), np.float32), np.zeros((0, 0)))))
    assert len(empty) == 0 and empty.paths == []


def test_the_kept_graph_serves_the_next_run_until_a_row_is_written(index, photos):
    shutil.copy(photos / "flower.jpg", photos / "flower_copy.jpg")
    index.add_folder(photos)
    first, stages = dups(index)
    assert stages == {"read", "neighbours"}
    assert first[0][:2] == ("exact", [str(photos / "flower.jpg"), str(photos / "flower_copy.jpg")])
    again, stages = dups(index)
    assert stages == set() and again == first  # same groups, same pairs, same float32 scores
    assert dups(index, threshold=0.05)[1] == set()  # another threshold: the same kept graph
    fewer, stages = dups(index, k=5)
    assert stages == set()  # fewer neighbours: the kept graph's first columns
    fresh, stages = dups(index, k=5, under=photos)  # a folder is searched apart: every row here, searched now
    assert stages == {"read", "neighbours"} and alike(fresh, fewer)
    assert dups(index, k=12)[1] == {"read", "neighbours"}  # more neighbours than kept: searched anew

    copy = str(photos / "flower_copy.jpg")
    index.store.delete([path_id(copy)])  # a write nobody followed (another process's): the kept graph is stale
    removed, stages = dups(index)
    assert stages == {"read", "neighbours"} and copy not in {p for _, paths, _ in removed for p in paths}
    assert dups(index) == (removed, set())


def test_a_graph_read_while_rows_are_written_is_not_kept(index, photos):
    shutil.copy(photos / "flower.jpg", photos / "flower_copy.jpg")
    index.add_folder(photos)
    removed: list[int] = []

    def another_writer(stage: str, done: int, total: int | None) -> None:
        if stage == "neighbours" and not removed:
            removed.append(index.remove([photos / "flower_copy.jpg"]))

    index.find_duplicates(verify=False, progress=another_writer)
    assert removed == [1]
    assert index.store.kept_graph() is None
    groups, stages = dups(index)
    assert stages == {"read", "neighbours"}  # read again: the copy is gone from every group
    assert str(photos / "flower_copy.jpg") not in {p for _, paths, _ in groups for p in paths}
    assert dups(index)[1] == set()  # and this read, undisturbed, was kept


def chunks(store) -> set[str]:
    """The digests of the graph chunks stored."""
    return {
        r["digest"] for r in store.client.query(store.graph_collection, filter="seq >= 0", output_fields=["digest"])
    }


KILLED_WHILE_KEEPING = textwrap.dedent(
    """
    import os
    import signal
    import sys
    from poolvec.indexer import ImageIndex
    from poolvec.indexer.milvus.side import KeptGraph, PROP_GRAPH
    from poolvec.extractor import Extractor
    real = KeptGraph.set_property
    def set_property(self, key, value):
        if key == PROP_GRAPH:  # every chunk of the graph written, its pointer not yet
            print("killing", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        real(self, key, value)
    KeptGraph.set_property = set_property
    index = ImageIndex(sys.argv[1], extractor=Extractor(max_side=96), tuning=False)
    index.add_folder(sys.argv[2])
    index.find_duplicates(verify=False)
    """
)


def test_kill_9_while_keeping_the_graph_leaves_a_right_index(tmp_path, photos):
    shutil.copy(photos / "flower.jpg", photos / "flower_copy.jpg")
    db = str(tmp_path / "killed.db")
    run = subprocess.run([sys.executable, "-c", KILLED_WHILE_KEEPING, db, str(photos)], capture_output=True, text=True)
    assert run.returncode == -signal.SIGKILL and "killing" in run.stdout, run.stderr
    index = ImageIndex(db)
    store = index.store
    assert PROP_GRAPH not in store.properties() and store.properties()[PROP_WRITES]
    store.client.load_collection(store.graph_collection)
    assert chunks(store) and store.kept_graph() is None  # the chunks landed, nothing points to them
    expected, _ = dups(index, under=photos)  # searched apart, never kept
    groups, stages = dups(index)
    assert stages == {"read", "neighbours"} and alike(groups, expected)
    assert [str(photos / "flower.jpg"), str(photos / "flower_copy.jpg")] == groups[0][1]
    left = {
        r["digest"] for r in store.client.query(store.graph_collection, filter="seq >= 0", output_fields=["digest"])
    }
    assert left == {store.kept_graph()[0]["digest"]}  # the killed run's chunks were dropped by the next keep
    assert dups(index) == (groups, set())
