"""The kept neighbour graph brought up to date by the operations that write rows (poolvec.indexer.dups.current): the
repair against an independent float64 search of the rows as they end up, and, through real Milvus (Lite; a server in
tests/test_server.py's inner run) and real photos, ``dups`` after indexing, removing, resolving and undoing reading
the repaired graph and finding what a new search finds; another writer, or too many rows written, leave it stale."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from backend_cases import BACKENDS, backend_uri, milvus_server  # noqa: F401  (milvus_server: a fixture)
from test_dups_kept import alike, dups
from typer.testing import CliRunner

from poolvec.extractor import Extractor
from poolvec.indexer import ImageIndex
from poolvec.indexer.cli.app import app
from poolvec.indexer.dups import current
from poolvec.indexer.dups.graph import Rows, nearest
from poolvec.indexer.dups.kept import SLACK, Graph, repaired
from poolvec.indexer.milvus.schema import path_id


def reference(ids: np.ndarray, vectors: np.ndarray, k: int) -> dict[int, list[tuple[int, float]]]:
    """Each row's ``k`` nearest others by float64 inner product, by id: (id, score) best first."""
    scores = vectors.astype(np.float64) @ vectors.astype(np.float64).T
    np.fill_diagonal(scores, -np.inf)
    out = {}
    for i, row in enumerate(scores):
        best = np.argsort(-row, kind="stable")[: min(k, len(ids) - 1)]
        out[int(ids[i])] = [(int(ids[j]), float(row[j])) for j in best]
    return out


def as_lists(graph: Graph) -> dict[int, list[tuple[int, float]]]:
    return {
        int(graph.ids[i]): [(int(graph.ids[j]), float(s)) for j, s in zip(f, sc, strict=True) if j >= 0]
        for i, (f, sc) in enumerate(zip(graph.found, graph.scores, strict=True))
    }


def unit(rng: np.random.Generator, n: int, dim: int = 24) -> np.ndarray:
    v = rng.standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)


@pytest.mark.parametrize("start", [3, 120])
def test_a_repaired_graph_is_the_graph_of_the_rows_as_they_end_up(start):
    rng = np.random.default_rng(start)
    k = 10
    ids = rng.choice(2**40, start + 60, replace=False).astype(np.int64)
    vectors = unit(rng, start + 60)
    rows = {int(i): v for i, v in zip(ids[:start], vectors[:start], strict=True)}
    before = list(rows)
    scores, found = nearest(np.stack(list(rows.values())), k + SLACK)  # as dups keeps it
    graph = Graph(np.array(before), [f"/p/{i}" for i in before], [f"{i:064x}" for i in before], scores, found)

    deleted = before[: start // 4]
    updated = before[start // 4 : start // 3]
    added = [int(i) for i in ids[start : start + 30]]
    for i in deleted:
        del rows[i]
    for i, v in zip(updated + added, unit(rng, len(updated) + len(added)), strict=True):
        rows[i] = v  # an updated row gets another vector
    written = set(deleted) | set(updated) | set(added)

    def fetch(wanted: list[int]) -> Rows:
        here = [i for i in wanted if i in rows]
        vecs = np.stack([rows[i] for i in here]) if here else np.zeros((0, 0), np.float16)
        return Rows(np.array(here, np.int64), [f"/p/{i}" for i in here], [f"{i:064x}" for i in here], vecs)

    searched: list[int] = []

    def search(queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        searched.append(len(queries))
        keys = np.array(list(rows))
        s = queries.astype(np.float64) @ np.stack(list(rows.values())).astype(np.float64).T
        order = np.argsort(-s, axis=1, kind="stable")[:, :depth]
        got_s = np.full((len(queries), depth), -np.inf, np.float32)
        got_i = np.full((len(queries), depth), -1, np.int64)
        got_s[:, : order.shape[1]] = np.take_along_axis(s, order, axis=1)
        got_i[:, : order.shape[1]] = keys[order]
        return got_s, got_i

    new = repaired(graph, k, written, fetch, search, depth=len(rows))
    assert new is not None
    assert sorted(new.ids.tolist()) == sorted(rows) and len(new.paths) == len(rows)
    assert all(new.paths[i] == f"/p/{new.ids[i]}" for i in range(len(new)))
    assert new.scores.shape == (len(rows), k + SLACK)
    expected = reference(np.array(list(rows)), np.stack(list(rows.values())), k)
    got = as_lists(new.first(k))
    for key, neighbours in expected.items():
        assert [j for j, _ in got[key]] == [j for j, _ in neighbours], key
        np.testing.assert_allclose([s for _, s in got[key]], [s for _, s in neighbours], rtol=0, atol=1e-5)
    # only the rows written that exist and the rows left with fewer than k neighbours were searched
    lost = set()
    for i, f in enumerate(graph.found):
        gone = sum(int(graph.ids[j]) in written for j in f if j >= 0)
        if gone and (f >= 0).sum() - gone < k:
            lost.add(int(graph.ids[i]))
    if start > k + SLACK:  # the slack spares most rows that lost a neighbour a search
        assert 0 < len(lost - written) < len(set(before) - written) / 2
    assert sum(searched) == len(set(updated) | set(added)) + len(lost - written)
    assert repaired(graph, k, written, fetch, search, len(rows), budget=sum(searched)) is not None
    assert repaired(graph, k, written, fetch, search, len(rows), budget=sum(searched) // 2 - 1) is None

    stranger = repaired(graph, k, written, fetch, lambda q, d: (np.zeros((len(q), 1)), np.full((len(q), 1), 7)), 5)
    assert stranger is None  # a row the graph does not hold: someone else wrote


@pytest.fixture(params=BACKENDS)
def index(request, tmp_path, extractor):
    return ImageIndex(backend_uri(request, tmp_path), extractor=extractor, tuning=False)


#: Scores of a repaired graph's new pairs come from Milvus's search of the float32 vectors, a new graph's from their
#: float16 copies: they differ by ~2e-5.
REPAIRED = 2e-4


def fresh(index: ImageIndex, photos) -> list[tuple]:
    """The groups a new search of every row finds (a folder is searched apart and never kept)."""
    groups, stages = dups(index, under=photos)
    assert stages == {"read", "neighbours"}
    return groups


def test_dups_after_indexing_removing_resolving_and_undoing_reads_the_repaired_graph(index, photos, tmp_path):
    shutil.copy(photos / "flower.jpg", photos / "flower_copy.jpg")
    index.add_folder(photos)
    first, stages = dups(index)
    assert stages == {"read", "neighbours"}

    shutil.copy(photos / "rocket.jpg", photos / "rocket_copy.jpg")
    index.add_folder(photos)  # one new row: the graph is repaired, not thrown away
    added, stages = dups(index)
    assert stages == set() and alike(added, fresh(index, photos), REPAIRED)
    assert [str(photos / "rocket.jpg"), str(photos / "rocket_copy.jpg")] in [paths for _, paths, _ in added]

    index.remove([photos / "rocket_copy.jpg"])
    removed, stages = dups(index)
    assert stages == set() and alike(removed, first, REPAIRED) and alike(removed, fresh(index, photos), REPAIRED)

    groups = index.find_duplicates(verify=False)
    report = index.resolve(groups[:1], "move", trash=tmp_path / "trash", dry_run=False)
    assert report.files == 1
    resolved, stages = dups(index)
    assert stages == set() and alike(resolved, fresh(index, photos), REPAIRED) and len(resolved) == len(first) - 1
    index.undo()
    undone, stages = dups(index)
    assert stages == set() and alike(undone, first, REPAIRED)


def test_another_writer_or_many_rows_written_leave_the_graph_stale(index, photos, monkeypatch):
    index.add_folder(photos)
    dups(index)
    other = ImageIndex(index.uri, index.collection)
    shutil.copy(photos / "flower.jpg", photos / "flower_copy.jpg")

    def meanwhile(done: int, total: int | None, path: str) -> None:
        if done == 1:  # a write that does not follow itself (as the Ray engine's workers write on a server)
            other.store.delete([path_id(str(photos / "rocket.jpg"))])

    index.add_folder(photos, progress=meanwhile)
    assert index.store.kept_meta() is None  # the other writer's rows are unknown to this one
    groups, stages = dups(index)
    assert stages == {"read", "neighbours"}
    assert [str(photos / "flower.jpg"), str(photos / "flower_copy.jpg")] == groups[0][1]

    monkeypatch.setattr(current, "REPAIR_AT_LEAST", 1)
    for name in ("a", "b"):  # two rows of 12: past the 10 % repaired
        shutil.copy(photos / "chelsea.jpg", photos / f"chelsea_{name}.jpg")
    index.add_folder(photos)
    assert index.store.kept_meta() is None
    assert dups(index)[1] == {"read", "neighbours"}


def test_indexing_a_large_collection_keeps_a_graph_for_the_first_dups(index, photos, monkeypatch):
    monkeypatch.setattr(current, "BUILD_FROM", 5)
    shutil.copy(photos / "flower.jpg", photos / "flower_copy.jpg")
    index.add_folder(photos)
    groups, stages = dups(index)
    assert stages == set() and alike(groups, fresh(index, photos), REPAIRED)
    assert groups[0][1] == [str(photos / "flower.jpg"), str(photos / "flower_copy.jpg")]
    monkeypatch.setattr(current, "REPAIR_AT_LEAST", 1)
    for name in ("a", "b"):  # more rows than a repair searches: searched anew at the end of indexing
        shutil.copy(photos / "chelsea.jpg", photos / f"chelsea_{name}.jpg")
    index.add_folder(photos)
    assert index.store.kept_meta()["rows"] == 14
    groups, stages = dups(index)
    assert stages == set() and alike(groups, fresh(index, photos))
    monkeypatch.setattr(current, "BUILD_FROM", 10**6)
    index.add_folder(photos)  # nothing written: the graph stays valid
    assert dups(index)[1] == set()


def test_poolvec_index_of_folders_keeps_their_graph(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(current, "BUILD_FROM", 5)
    (photos / "more").mkdir()
    shutil.copy(photos / "flower.jpg", photos / "more" / "flower_copy.jpg")
    db = str(tmp_path / "cli.db")
    res = CliRunner().invoke(app, ["index", str(photos), str(photos / "more"), "--db", db, "--no-recursive"])
    assert res.exit_code == 0, res.output
    index = ImageIndex(db)
    assert index.store.kept_meta()["rows"] == 12  # both folders' rows, searched once at the end
    groups, stages = dups(index)
    assert stages == set() and groups[0][1] == [str(photos / "flower.jpg"), str(photos / "more" / "flower_copy.jpg")]


KILLED_WHILE_REPAIRING = textwrap.dedent(
    """
    import os
    import signal
    import sys
    from poolvec.indexer import ImageIndex
    from poolvec.indexer.milvus.side import KeptGraph, PROP_GRAPH
    from poolvec.extractor import Extractor
    index = ImageIndex(sys.argv[1], extractor=Extractor(max_side=96), tuning=False)
    index.add_folder(sys.argv[2])
    index.find_duplicates(verify=False)  # keeps the graph
    real = KeptGraph.set_property
    def set_property(self, key, value):
        if key == PROP_GRAPH:  # the repaired graph's chunks written, its pointer not yet
            print("killing", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        real(self, key, value)
    KeptGraph.set_property = set_property
    index.remove([sys.argv[3]])
    """
)


def test_kill_9_while_a_writer_repairs_the_graph_leaves_it_stale_and_the_rows_right(tmp_path, photos):
    shutil.copy(photos / "flower.jpg", photos / "flower_copy.jpg")
    db = str(tmp_path / "killed.db")
    copy = str(photos / "flower_copy.jpg")
    run = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_REPAIRING, db, str(photos), copy], capture_output=True, text=True
    )
    assert run.returncode == -signal.SIGKILL and "killing" in run.stdout, run.stderr
    index = ImageIndex(db)
    assert index.store.kept_meta() is None  # the row was deleted, the graph not repointed: stale
    assert len(index) == 11 and copy not in {r["path"] for r in index.store.query("id >= 0", ("path",))}
    groups, stages = dups(index)
    assert stages == {"read", "neighbours"} and alike(groups, fresh(index, photos))
    assert copy not in {p for _, paths, _ in groups for p in paths}
    clean = ImageIndex(str(tmp_path / "clean.db"), extractor=Extractor(max_side=96), tuning=False)
    (photos / "flower_copy.jpg").unlink()
    clean.add_folder(photos)
    assert alike(dups(clean)[0], groups)  # as an index that never had the copy
    assert dups(index) == (groups, set())  # and kept again
