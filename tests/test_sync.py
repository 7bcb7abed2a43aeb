"""Incremental sync through real Milvus Lite: changes, prune, moves by hash, kill -9 and resume, duplicates."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from backend_cases import BACKENDS, SERVER_ENV, backend_uri, milvus_server  # noqa: F401  (milvus_server: a fixture)
from PIL import Image

from poolvec.extractor import Extractor
from poolvec.indexer import ImageIndex, path_id


@pytest.fixture(params=BACKENDS)
def index(request, tmp_path, extractor):
    """A fresh index on Milvus Lite; in tests/test_server.py's inner run, on a real Milvus server."""
    return ImageIndex(backend_uri(request, tmp_path), extractor=extractor, tuning=False)


def paths_in(index: ImageIndex) -> list[str]:
    return sorted(r["path"] for rows in index.store.iterate(fields=("path",)) for r in rows)


def test_prune_removes_only_files_that_are_gone(index, photos):
    index.add_folder(photos)
    (photos / "coffee.jpg").unlink()
    keep_only_scan = index.add_folder(photos)  # without prune nothing is deleted
    assert keep_only_scan.removed == 0 and len(index) == 11
    report = index.add_folder(photos, prune=True)
    assert (report.removed, report.unchanged) == (1, 10)
    assert str(photos / "coffee.jpg") not in paths_in(index) and len(index) == 10


def test_moved_and_copied_files_reuse_vectors_by_hash(index, photos, tmp_path):
    index.add_folder(photos)
    before = {h.path: h for h in index.search(photos / "china.jpg", k=1)}
    moved = tmp_path / "moved"
    shutil.move(photos, moved)
    report = index.add_folder(moved, prune=False)
    assert (report.added, report.reused) == (11, 11)  # new paths, no forward pass
    hit = index.search(moved / "china.jpg", k=2)
    assert {h.path for h in hit} == {str(moved / "china.jpg"), *before}
    assert hit[0].score == pytest.approx(hit[1].score, abs=1e-5)


def test_reroot_moves_entries_without_reembedding(index, photos, tmp_path):
    index.add_folder(photos)
    new_root = tmp_path / "library"
    assert index.reroot(photos, new_root) == 11
    assert paths_in(index) == sorted(str(new_root / p.name) for p in photos.iterdir())
    shutil.move(photos, new_root)
    again = index.add_folder(new_root)
    assert (again.unchanged, again.added) == (11, 0)


def test_several_roots_in_one_index(index, photos, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    Image.open(photos / "rocket.jpg").rotate(90, expand=True).save(other / "rocket_rot.jpg")
    index.add_folder(photos)
    index.add_folder(other)
    assert len(index) == 12
    hits = index.search(photos / "rocket.jpg", k=12, under=other)
    assert [h.path for h in hits] == [str(other / "rocket_rot.jpg")]
    assert hits[0].meta["root"] == str(other)


def test_exact_and_near_duplicates(index, photos):
    shutil.copy(photos / "flower.jpg", photos / "flower_copy.jpg")
    img = Image.open(photos / "astronaut.jpg")
    img.resize((400, 400)).save(photos / "astronaut_small.jpg", quality=70)
    index.add_folder(photos)
    events: list[str] = []
    stream = index.iter_duplicates(normalize=False, progress=lambda stage, done, n: events.append(stage))
    first = next(stream)  # the exact copies are out once the index has been read, before any neighbour search
    assert first.kind == "exact" and events and set(events) == {"read"}
    streamed = [first, *stream]
    assert "neighbours" in events
    events.clear()
    groups = index.find_duplicates(normalize=False, progress=lambda stage, done, n: events.append(stage))
    assert events == []  # the neighbour graph kept by the first run: nothing read, nothing searched
    assert [(g.kind, g.paths, g.score) for g in groups] == [(g.kind, g.paths, g.score) for g in streamed]
    assert groups[0].kind == "exact"  # raw cosines, at the default for this (whitened) embedding
    assert [os.path.basename(p) for p in groups[0].paths] == ["flower.jpg", "flower_copy.jpg"]
    near = [g for g in groups if g.kind == "near"]
    assert any({os.path.basename(p) for p in g.paths} == {"astronaut.jpg", "astronaut_small.jpg"} for g in near), groups
    assert all(g.score >= index.default_threshold(normalize=False) == 0.5 for g in near)
    names = {os.path.basename(p) for g in groups for p in g.paths}
    assert "rocket.jpg" not in names and "coffee.jpg" not in names


def test_filters_by_size_dimensions_and_score(index, photos):
    index.add_folder(photos)
    wide = index.search(photos / "rocket.jpg", k=11, width=(600, None))
    assert wide and all(h.meta["width"] >= 600 for h in wide)
    small = index.search(photos / "rocket.jpg", k=11, size=(None, 60_000))
    assert all(h.meta["size"] <= 60_000 for h in small) and len(small) < 11
    strong = index.search(photos / "rocket.jpg", k=11, min_score=0.99)
    assert [os.path.basename(h.path) for h in strong] == ["rocket.jpg"]
    raw = index.search(photos / "rocket.jpg", k=11, where="height > 500")
    assert all(h.meta["height"] > 500 for h in raw)


def test_user_values_are_escaped_in_filters(index, photos, tmp_path):
    evil = tmp_path / 'a" or 1==1 or "'
    evil.mkdir()
    shutil.copy(photos / "coffee.jpg", evil / "c.jpg")
    index.add_folder(photos)
    index.add_folder(evil)
    hits = index.search(photos / "coffee.jpg", k=20, under=evil)
    assert [h.path for h in hits] == [str(evil / "c.jpg")]
    assert index.search(photos / "coffee.jpg", k=20, under=tmp_path / 'x" or "1"=="1') == []


def test_query_expansion_keeps_the_right_answer(index, photos, query_dir):
    index.add_folder(photos)
    plain = index.search(query_dir / "china_edit.jpg", k=3)
    expanded = index.search(query_dir / "china_edit.jpg", k=3, qe=2)
    assert plain[0].path == expanded[0].path == str(photos / "china.jpg")
    assert expanded[0].score > plain[0].score  # the query moved towards its neighbourhood


def test_remove_paths(index, photos):
    index.add_folder(photos)
    assert index.remove([photos / "coffee.jpg", photos / "nope.jpg"]) == 1
    assert len(index) == 10


WORKER = textwrap.dedent(
    """
    import sys
    from poolvec.extractor import Extractor
    from poolvec.indexer import ImageIndex
    idx = ImageIndex(sys.argv[1], extractor=Extractor(max_side=96, batch_size=8), tuning=False)
    idx.add_folder(sys.argv[2], progress=lambda done, total, path: print(done, flush=True))
    print("finished", flush=True)
    """
)


def test_kill_9_during_indexing_then_rerun_finishes_without_duplicates(tmp_path, photo_dir):
    folder = tmp_path / "many"
    folder.mkdir()
    for src in sorted(photo_dir.glob("*.jpg")):
        img = Image.open(src)
        for i in range(14):  # 154 distinct crops
            w, h = img.size
            img.crop((i * w // 40, i * h // 50, w - i * w // 60, h)).save(folder / f"{src.stem}_{i:02d}.jpg")
    total = 154
    db = str(tmp_path / "killed.db")
    for kill_at in (20, 90, 140):
        proc = subprocess.Popen([sys.executable, "-c", WORKER, db, str(folder)], stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            if line.strip() == "finished" or int(line) >= kill_at:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    index = ImageIndex(db)
    assert index.extractor.config() == Extractor(max_side=96).config()
    assert 0 < len(index) < total
    report = index.add_folder(folder)
    assert report.unchanged >= 64 and report.added + report.unchanged == total and not report.failed
    assert len(index) == total
    assert paths_in(index) == sorted(str(p) for p in folder.iterdir())
    assert {int(r["id"]) for rows in index.store.iterate(fields=("path",)) for r in rows} == {
        path_id(str(p)) for p in folder.iterdir()
    }
    hit = index.search(folder / "coffee_03.jpg", k=1)[0]
    assert hit.path == str(folder / "coffee_03.jpg") and hit.score == pytest.approx(1, abs=1e-4)


def test_dba_augments_once_and_later_additions_too(index, photos, query_dir, tmp_path):
    # plain GeM vectors: unrelated photos are similar enough there for DBA to move every vector visibly (in the
    # whitened default space they are near-orthogonal, and only near-duplicates pull each other)
    extractor = Extractor(pooling="gem(p=3) | l2", optimize=False)
    index = ImageIndex(index.uri, collection="dba", extractor=extractor, tuning=False)
    index.add_folder(photos)
    raw = extractor.embed(photos / "coffee.jpg")[0]
    assert index.apply_dba(n=2, alpha=3.0) == 11
    stored = index.store.get([path_id(str(photos / "coffee.jpg"))], fields=("vector",))
    augmented = next(iter(stored.values()))["vector"]
    import numpy as np

    assert 0.8 < float(np.dot(raw, augmented)) < 0.9999  # moved towards its neighbours, still itself
    # independent check: v' = normalise(Σ over itself and its 2 nearest raw neighbours of s^3 · v)
    db = extractor.embed(sorted(photos.glob("*.jpg")))
    sims = db @ raw
    top = np.argsort(-sims)[:3]
    expected = (np.clip(sims[top], 0, None) ** 3)[:, None] * db[top]
    expected = expected.sum(0) / np.linalg.norm(expected.sum(0))
    np.testing.assert_allclose(augmented, expected, atol=1e-4)
    hits = index.search(query_dir / "rocket_edit.jpg", k=1)
    assert hits[0].path == str(photos / "rocket.jpg")
    with pytest.raises(Exception, match="already applied"):
        index.apply_dba()
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.open(photos / "rocket.jpg").rotate(180).save(extra / "upside.jpg")
    index.add_folder(extra)
    new = next(iter(index.store.get([path_id(str(extra / "upside.jpg"))], fields=("vector",)).values()))["vector"]
    plain = extractor.embed(extra / "upside.jpg")[0]
    assert np.abs(np.asarray(new) - plain).max() > 1e-4  # augmented on the way in
    assert index.info()["dba"] == {"n": 2, "alpha": 3.0}


class _Forwarder:
    """A loopback TCP forwarder to the Milvus server that can be cut, as a server or network going away."""

    def __init__(self, target: tuple[str, int]) -> None:
        import socket
        import threading

        self.target, self.conns, self.alive = target, [], True
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while self.alive:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        import socket

        self.alive = False
        for s in [self.sock, *self.conns]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.mark.skipif(not os.environ.get(SERVER_ENV), reason="needs the real Milvus server (tests/test_server.py)")
def test_server_going_away_mid_run_is_a_clear_error_and_the_rerun_finishes(milvus_server, tmp_path, photo_dir):  # noqa: F811
    import time
    from urllib.parse import urlparse

    from poolvec.indexer import BackendError

    folder = tmp_path / "many"
    folder.mkdir()
    for src in sorted(photo_dir.glob("*.jpg")):
        img = Image.open(src)
        for i in range(8):  # 88 distinct images
            w, h = img.size
            img.crop((i * w // 40, i * h // 50, w, h)).save(folder / f"{src.stem}_{i}.jpg")
    url = urlparse(milvus_server)
    proxy = _Forwarder((url.hostname, url.port))
    ex = Extractor(max_side=96, batch_size=8)
    index = ImageIndex(f"http://127.0.0.1:{proxy.port}", collection="goaway", extractor=ex, timeout=5, tuning=False)
    cut_at: list[float] = []

    def progress(done: int, total: int | None, path: str) -> None:
        if done == 70 and not cut_at:  # after the first batch of 64 rows was written
            proxy.cut()
            cut_at.append(time.monotonic())

    with pytest.raises(BackendError, match="Milvus"):
        index.add_folder(folder, progress=progress)
    assert cut_at and time.monotonic() - cut_at[0] < 60  # a bounded wait, not a hang
    direct = ImageIndex(milvus_server, collection="goaway")
    report = direct.add_folder(folder)
    assert report.unchanged >= 64 and report.added + report.unchanged == 88 and not report.failed
    assert len(direct) == 88


def test_sigterm_during_index_is_an_interruption_and_a_rerun_finishes(tmp_path, photo_dir):
    folder = tmp_path / "many"
    folder.mkdir()
    for src in sorted(photo_dir.glob("*.jpg")):
        img = Image.open(src)
        for i in range(10):
            w, h = img.size
            img.crop((i * w // 40, i * h // 50, w - i * w // 60, h)).save(folder / f"{src.stem}_{i:02d}.jpg")
    db = tmp_path / "term.db"
    poolvec = str(Path(sys.executable).with_name("poolvec"))
    command = [poolvec, "index", str(folder), "--db", str(db), "--no-tune", "--max-side", "96"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (db.exists() and any(db.iterdir())):  # the index is being written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("error: interrupted"), err
    done = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["count"] == 110
