"""ImageIndex through real Milvus Lite (and a server, in tests/test_server.py): index, search, re-index, refuse."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from backend_cases import BACKENDS, backend_uri, milvus_server  # noqa: F401  (milvus_server: a fixture)

from poolvec.extractor import Extractor
from poolvec.indexer import BackendError, ConfigMismatchError, ImageIndex, IndexerError, path_id

STEREO = {"motorcycle_left", "motorcycle_right"}  # one scene seen by two cameras


def stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def test_index_and_search_edited_copies_find_originals(db, photos, query_dir, extractor):
    index = ImageIndex(db, extractor=extractor, tuning=False)
    report = index.add_folder(photos)
    assert (report.added, report.unchanged, report.failed) == (11, 0, [])
    assert len(index) == 11
    queries = sorted(query_dir.glob("*_edit.jpg"))
    for q, hits in zip(queries, index.search_many(queries, k=3), strict=True):
        original = q.name.removesuffix("_edit.jpg")
        top = [stem(h.path) for h in hits]
        if original in STEREO:
            assert set(top[:2]) == STEREO  # both views of the scene come first
        else:
            assert top[0] == original, (q.name, top)
        assert hits[0].score > hits[1].score > hits[2].score
        assert hits[0].meta["width"] > 0 and len(hits[0].meta["sha256"]) == 64


def test_search_by_vector_pil_and_exact_self_match(db, photos, extractor):
    index = ImageIndex(db, extractor=extractor, tuning=False)
    index.add_folder(photos)
    v = extractor.embed(photos / "coffee.jpg")[0]
    hit = index.search(v, k=1)[0]
    assert stem(hit.path) == "coffee" and hit.score == pytest.approx(1.0, abs=1e-4)
    assert hit.id == path_id(str(photos / "coffee.jpg"))
    with pytest.raises(IndexerError, match="dimensions"):
        index.search(np.zeros(7, np.float32))


def test_reindex_is_idempotent_and_sees_changes(db, photos, extractor):
    index = ImageIndex(db, extractor=extractor, tuning=False)
    index.add_folder(photos)
    again = index.add_folder(photos)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 11)
    assert len(index) == 11
    shutil.copy(photos / "rocket.jpg", photos / "coffee.jpg")  # content (and size/mtime) changed
    third = index.add_folder(photos)
    assert (third.added, third.updated, third.unchanged) == (0, 1, 10)
    hits = index.search(photos / "rocket.jpg", k=2)
    assert {stem(h.path) for h in hits} == {"rocket", "coffee"}
    assert hits[1].score == pytest.approx(1.0, abs=1e-4)
    assert len(index) == 11


def test_reopen_rebuilds_the_same_embedder(db, photos, extractor):
    ImageIndex(db, extractor=extractor, tuning=False).add_folder(photos)
    reopened = ImageIndex(db)  # no extractor given: rebuilt from the stored config
    assert reopened.extractor.config() == extractor.config()
    assert stem(reopened.search(photos / "flower.jpg", k=1)[0].path) == "flower"
    info = reopened.info()
    assert info["count"] == 11 and info["dim"] == 1280 and info["config"]["backbone"] == "tf_efficientnet_lite0"


def test_other_config_is_refused_naming_the_field(db, photos, extractor):
    ImageIndex(db, extractor=extractor, tuning=False).add_folder(photos)
    with pytest.raises(ConfigMismatchError, match="pooling") as info:
        ImageIndex(db, extractor=Extractor(pooling="mac | l2"))
    assert "gem" in str(info.value)
    with pytest.raises(ConfigMismatchError, match="max_side: 320 → 256"):
        ImageIndex(db, extractor=Extractor(max_side=256))
    other = ImageIndex(db, collection="mac", extractor=Extractor(pooling="mac | l2"))
    assert len(other) == 0  # another collection in the same database is fine
    assert len(ImageIndex(db)) == 11  # nothing was modified


def test_corrupt_file_skipped_and_counted(db, photos, extractor):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (photos / "empty.png").write_bytes(b"")
    report = ImageIndex(db, extractor=extractor, tuning=False).add_folder(photos)
    assert report.added == 11 and not report.ok
    assert sorted((stem(p), "decode" in r or "recognised" in r) for p, r in report.failed) == [
        ("broken", True),
        ("empty", True),
    ]


def test_empty_index_search_says_what_to_do(db):
    with pytest.raises(IndexerError, match="empty"):
        ImageIndex(db).search("x.jpg")


def test_second_process_on_same_lite_db_gets_clear_error(held_lite_db):
    t = time.monotonic()
    with pytest.raises(BackendError, match="another process holds the index"):
        ImageIndex(held_lite_db)
    assert time.monotonic() - t < 10
