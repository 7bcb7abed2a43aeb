"""What differs between Milvus backends: vector index kinds, reload after release, stored specs, the CLI.

Every test takes the ``db`` fixture: Milvus Lite in the normal run, a real Milvus 2.3.5 server in
tests/test_server.py's inner run (inside a private network namespace).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from backend_cases import BACKENDS, backend_uri, milvus_server  # noqa: F401  (milvus_server: a fixture)
from typer.testing import CliRunner

from poolvec.indexer import BackendError, ImageIndex, IndexerError, VectorIndex
from poolvec.indexer.cli.app import app
from poolvec.indexer.milvus import filters
from poolvec.indexer.milvus import store as store_module
from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.milvus.vector_index import LITE_KINDS

#: Small build parameters: 11 rows need no 1024-list IVF.
KINDS = {
    "FLAT": None,
    "HNSW": {"M": 8, "efConstruction": 64},
    "HNSW_SQ": {"M": 8, "efConstruction": 64, "sq_type": "SQ8"},
    "IVF_FLAT": {"nlist": 4},
    "IVF_SQ8": {"nlist": 4},
    "IVF_PQ": {"nlist": 4, "m": 16, "nbits": 8},
}
#: What each backend builds (Milvus server 2.3.5 has no HNSW_SQ; Lite refuses IVF_PQ).
SUPPORTED = {
    "lite": {"FLAT", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8"},
    "server": {"FLAT", "HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ"},
}


def backend(db: str) -> str:
    return "server" if db.startswith("http") else "lite"


def stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


@pytest.mark.parametrize("kind", list(KINDS))
def test_index_kinds_build_search_and_round_trip(db, photos, extractor, kind):
    spec = VectorIndex(kind, KINDS[kind], search={"nprobe": 4} if kind.startswith("IVF") else None)
    index = ImageIndex(db, collection=f"k_{kind.lower()}", extractor=extractor, vector_index=spec, tuning=False)
    if kind not in SUPPORTED[backend(db)]:
        error = IndexerError if backend(db) == "lite" else BackendError
        with pytest.raises(error, match=kind):
            index.add_folder(photos)
        assert not index.store.exists()  # refused before (Lite) or cleaned up after (server) creating anything
        return
    assert index.add_folder(photos).added == 11
    hit = index.search(photos / "coffee.jpg", k=3)[0]
    assert stem(hit.path) == "coffee" and hit.score == pytest.approx(1.0, abs=0.02)  # SQ8/PQ are lossy
    reopened = ImageIndex(db, collection=f"k_{kind.lower()}")
    assert reopened.vector_index == spec
    assert reopened.info()["vector_index"]["kind"] == kind and len(reopened) == 11


def test_default_index_is_hnsw_with_its_search_ef(db):
    spec = VectorIndex()
    assert (spec.kind, spec.params, spec.metric) == ("HNSW", {"M": 16, "efConstruction": 200}, "IP")
    assert spec.search_params(10)["params"] == {"ef": 64} and spec.search_params(50)["params"] == {"ef": 100}
    assert VectorIndex("hnsw", search={"ef": 5}).search_params(10)["params"] == {"ef": 10}  # ef ≥ k always
    assert VectorIndex("IVF_FLAT").params == {"nlist": 1024}


def test_unknown_index_kind_leaves_no_collection(db, photos, extractor):
    index = ImageIndex(
        db, collection="bad", extractor=extractor, vector_index=VectorIndex("NOT_AN_INDEX", {}), tuning=False
    )
    with pytest.raises(IndexerError):  # Lite: refused up front; server: BackendError, then the collection dropped
        index.add_folder(photos)
    assert not MilvusStore(db, "bad").exists()
    assert "NOT_AN_INDEX" not in LITE_KINDS


def test_released_collection_is_loaded_again_on_open(db, photos, extractor):
    ImageIndex(db, extractor=extractor, tuning=False).add_folder(photos)
    store = MilvusStore(db, "images")
    store.client.release_collection("images")
    state = store.client.get_load_state("images")["state"]
    assert "NotLoad" in str(state)  # released for real, so the reopen below has to load it
    reopened = ImageIndex(db)
    assert stem(reopened.search(photos / "astronaut.jpg", k=1)[0].path) == "astronaut"
    assert len(reopened) == 11


def test_stored_config_and_properties_round_trip(db, photos, extractor):
    index = ImageIndex(db, extractor=extractor, tuning=False)
    index.add_folder(photos)
    store = MilvusStore(db, "images")
    props = store.properties()
    assert store.unpack(props["poolvec.config"]) == index.config
    # the fitted 1280×1280 whitening (8.7 MB of base64) lives in blob rows: servers refuse properties over ~1 MB
    assert len(props["poolvec.config"]) < 64_000 and len(json.dumps(index.config)) > 1_000_000
    assert store.blob_digests(props["poolvec.config"])
    assert json.loads(props["poolvec.index"])["kind"] == "HNSW"
    info = ImageIndex(db).info()
    assert info["fingerprint"] == index.info()["fingerprint"] == props["poolvec.fingerprint"]
    assert info["backend"].startswith("Milvus Lite" if backend(db) == "lite" else "Milvus server")


def test_count_follows_deletes_at_once(db, photos, extractor):
    index = ImageIndex(db, extractor=extractor, tuning=False)
    index.add_folder(photos)
    assert len(index) == 11
    index.store.delete([h.id for h in index.search(photos / "rocket.jpg", k=2)])  # Strong consistency: no lag
    assert len(index) == 9


def test_cli_index_search_info(db, photos, query_dir):
    runner = CliRunner()
    res = runner.invoke(app, ["index", str(photos), "--uri", db, "--quiet"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", str(query_dir / "flower_edit.jpg"), "--uri", db, "-k", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["hits"][0]["path"] == str(photos / "flower.jpg")
    info = json.loads(runner.invoke(app, ["info", "--uri", db, "--json"]).stdout)
    assert info["count"] == 11 and info["uri"] == db


#: Builds the source index in a child process (Milvus Lite keeps a database's lock until its process exits).
COPY_SOURCE = """
import sys
from poolvec.indexer import ImageIndex
index = ImageIndex(sys.argv[1], optimize=False, tuning=False)
index.add_folder(sys.argv[2])
index.decide_distinct([sys.argv[2] + "/coffee.jpg", sys.argv[2] + "/chelsea.jpg"])
"""
#: Copies 4 rows a batch, says so after each batch written to the target, and waits to be killed after the second.
COPY_KILLED = """
import sys, time
from poolvec.indexer import ImageIndex
from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.ops import copy as copying
copying.BATCH = 4
real, landed = MilvusStore.upsert, []
def upsert(self, rows):
    real(self, rows)
    if self.uri == sys.argv[2] and rows:
        landed.append(len(rows))
        print("written", flush=True)
        if len(landed) == 2:
            time.sleep(600)
MilvusStore.upsert = upsert
ImageIndex(sys.argv[1]).copy_to(sys.argv[2], "moved")
"""


def test_copy_moves_an_index_to_another_backend_and_finishes_after_an_interruption(db, photos, tmp_path):
    """`poolvec copy` from Milvus Lite to ``db`` (a real server in the inner run): SIGKILLed after its second batch,
    the target refuses use and names the command that finishes; run again, every row, vector, setting and review
    decision equals the source's."""
    lite = str(tmp_path / "small.db")
    assert subprocess.run([sys.executable, "-c", COPY_SOURCE, lite, str(photos)]).returncode == 0
    child = subprocess.Popen([sys.executable, "-c", COPY_KILLED, lite, db], stdout=subprocess.PIPE, text=True)
    written = 0
    for line in child.stdout:
        written += line.strip() == "written"
        if written == 2:
            os.kill(child.pid, signal.SIGKILL)
            break
    assert child.wait(60) == -signal.SIGKILL
    with pytest.raises(IndexerError, match=r"interrupted copy.*poolvec copy --db .*small\.db --collection images --to"):
        ImageIndex(db, collection="moved").search(photos / "coffee.jpg")
    result = CliRunner().invoke(app, ["copy", "--db", lite, "--to", db, "--to-collection", "moved", "-q"])
    assert result.exit_code == 0, result.output
    assert "copied 11 images and 1 review decisions" in result.output
    source, target = ImageIndex(lite), ImageIndex(db, collection="moved")
    fields = ("vector", "path", "root", "dirs", "size", "mtime_ns", "width", "height", "sha256")

    def rows(index: ImageIndex) -> dict[int, dict]:
        return {int(r["id"]): r for page in index.store.scan("", fields) for r in page}

    mine, theirs = rows(source), rows(target)
    assert sorted(mine) == sorted(theirs) and len(mine) == 11
    for i, r in mine.items():
        assert {f: r[f] for f in fields if f != "vector"} == {f: theirs[i][f] for f in fields if f != "vector"}
        assert np.asarray(theirs[i]["vector"]) == pytest.approx(np.asarray(r["vector"]), abs=1e-7)
    assert target.config == source.config and target.info()["fingerprint"] == source.info()["fingerprint"]
    assert target.decisions() == source.decisions() and len(target.decisions().distinct) == 1
    assert [h.path for h in target.search(photos / "rocket.jpg", k=3)] == [
        h.path for h in source.search(photos / "rocket.jpg", k=3)
    ]
    refused = CliRunner().invoke(app, ["copy", "--db", lite, "--to", db, "--to-collection", "moved"])
    assert refused.exit_code != 0 and "already has a collection 'moved'" in refused.output


def test_a_filtered_scan_reads_each_matching_row_once_in_pages(db, photos, extractor, monkeypatch):
    sub = photos / "sub"
    sub.mkdir()
    for name in sorted(p.name for p in photos.glob("*.jpg"))[:5]:
        (photos / name).rename(sub / name)
    index = ImageIndex(db, extractor=extractor, tuning=False)
    index.add_folder(photos)
    monkeypatch.setattr(store_module, "ID_SLICE", 2)  # the matching ids asked for in six primary-key slices
    expr = filters.build(under_folder=sub)
    pages = list(index.store.scan(expr, ("path", "vector"), page=2))
    got = [r["path"] for page in pages for r in page]
    assert len(pages) >= 3 and all(len(page) <= 2 for page in pages)
    assert sorted(got) == sorted(str(p) for p in sub.iterdir())  # each once
    assert all(len(r["vector"]) == index.recipe.dim for page in pages for r in page)
    assert len(index.store.query(expr, ("path",))) == 5
