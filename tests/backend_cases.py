"""The Milvus backends index tests run on: Milvus Lite in the normal run, a real Milvus server in the inner run.

``tests/test_server.py`` re-runs the backend-parametrised tests (those taking a ``db`` fixture built with
:func:`backend_uri`) inside ``unshare --net`` with :data:`SERVER_ENV` set; there ``BACKENDS`` is ``["server"]``
and the session fixture :func:`milvus_server` runs the PyPI ``milvus`` package's standalone server
(v2.3.5), whose ports bind every interface — hence the private network namespace with loopback only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

#: Set (to "1") for the server-backed inner run; tests/test_server.py sets it inside the namespace.
SERVER_ENV = "POOLVEC_TEST_MILVUS_SERVER"
#: Backends of this run: parametrise a ``db`` fixture with them.
BACKENDS = ["server"] if os.environ.get(SERVER_ENV) else ["lite"]
#: The test files whose ``db``-parametrised tests the inner run executes.
SERVER_SUITE = (
    "tests/test_index.py",
    "tests/test_backends.py",
    "tests/test_sync.py",
    "tests/test_dups_kept.py",
    "tests/test_dups_current.py",
    "tests/test_serve.py",
    "tests/test_ray.py",
    "tests/test_server_kill.py",
)


def shared_temp(factory: pytest.TempPathFactory) -> Path:
    """The run's temporary folder, shared by pytest-xdist's workers (each has its own ``popen-gwN`` below it)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def namespace_problem() -> str | None:
    """Why a private network namespace (``unshare --net``, loopback only) cannot be made here (None when it can)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs `unshare` (util-linux) and `ip` (iproute2) to run servers on loopback only"
    probe = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace (needs root or CAP_SYS_ADMIN): {probe.stderr.strip()}"
    return None


_server_uri: list[str] = []  # one server per session, however many modules import the fixture
_server: list = []  # its MilvusServer (tests/test_server_kill.py kills and restarts it)


@pytest.fixture(scope="session")
def milvus_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real Milvus standalone server, started once per (inner) session and stopped at its end; its URI."""
    if not os.environ.get(SERVER_ENV):
        pytest.fail(f"the Milvus server only runs in tests/test_server.py's private network namespace ({SERVER_ENV})")
    if not _server_uri:
        from milvus import MilvusServer

        server = MilvusServer()
        server.set_base_dir(str(tmp_path_factory.mktemp("milvus_server")))
        # a restart (tests/test_server_kill.py) otherwise waits 30 s for the killed server's session to lapse
        server.config.extra_configs["common.session.ttl"] = 3
        request.config.add_cleanup(server.stop)
        server.start()
        _server.append(server)
        _server_uri.append(f"http://127.0.0.1:{server.listen_port}")
    return _server_uri[0]


def restart_milvus_server(kill: bool = True) -> str:
    """Kill the session's server with SIGKILL (or not) and start it again on the same data; its URI (the ports may
    change: the old ones can still be in TIME_WAIT). Only the last test file of the inner run may use this."""
    import signal

    server = _server[0]
    if kill and server.server_proc is not None:
        os.kill(server.server_proc.pid, signal.SIGKILL)
        server.server_proc.wait()
    server.stop()
    server.start()
    _server_uri[0] = f"http://127.0.0.1:{server.listen_port}"
    return _server_uri[0]


def backend_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The index URI for ``request.param``: a fresh Lite database, or the server emptied of collections."""
    if request.param == "lite":
        return str(tmp_path / "index.db")
    from pymilvus import MilvusClient

    uri = request.getfixturevalue("milvus_server")
    client = MilvusClient(uri=uri, timeout=30)
    try:
        for name in client.list_collections():
            client.drop_collection(name)
    finally:
        client.close()
    return uri
