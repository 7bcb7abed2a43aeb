"""Shared fixtures: real photos written from scikit-image/scikit-learn, edited copies, one shared extractor."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from backend_cases import (  # noqa: F401  (milvus_server: a fixture)
    BACKENDS,
    SERVER_ENV,
    backend_uri,
    milvus_server,
    shared_temp,
)

ROOT = Path(__file__).resolve().parents[1]


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


sample_photos = _load_script("sample_photos")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the real-Milvus-server run in the background as soon as it is known to be wanted: it mostly waits on
    the server, so it overlaps the rest of the suite (tests/test_server.py collects its result)."""
    if any("test_server.py::test_backend_suite_against_a_real_milvus_server" in item.nodeid for item in session.items):
        from test_server import InnerRun

        if not os.environ.get(SERVER_ENV) and not session.config.option.collectonly:
            InnerRun.start(shared_temp(session.config._tmp_path_factory))


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """11 real photos as JPEG files (read-only for tests: copy before modifying)."""
    folder = tmp_path_factory.mktemp("photos")
    sample_photos.write(folder)
    return folder


@pytest.fixture(scope="session")
def query_dir(tmp_path_factory) -> Path:
    """Edited copies (cropped, resized, JPEG-recompressed) of every photo, named ``<photo>_edit.jpg``."""
    photos = tmp_path_factory.mktemp("photos_for_queries")
    queries = tmp_path_factory.mktemp("queries")
    sample_photos.write(photos, queries)
    return queries


@pytest.fixture(scope="session")
def extractor():
    """The default extractor (packaged EfficientNet-Lite0, GeM + L2), built once; eager throughout, so that
    exact comparisons do not depend on how many images the session has embedded (``optimize="auto"``)."""
    from poolvec.extractor import Extractor

    return Extractor(optimize=False)


@pytest.fixture
def held_lite_db(tmp_path):
    """A Milvus Lite database path held open by another process (as a second `poolvec index` would find it)."""
    db = str(tmp_path / "held.db")
    code = (
        f"from pymilvus import MilvusClient; MilvusClient({db!r}); print('ok', flush=True); import time; time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        yield db
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def photos(tmp_path, photo_dir) -> Path:
    """A writable copy of the 11 real photos."""
    folder = tmp_path / "photos"
    shutil.copytree(photo_dir, folder)
    return folder


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path) -> str:
    """A fresh Milvus Lite path; in tests/test_server.py's inner run, a real Milvus server's URI."""
    return backend_uri(request, tmp_path)
