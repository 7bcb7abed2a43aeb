"""The pymilvus client of one collection: connecting to Milvus Lite or a server, and calls whose failures become
one-line :class:`~poolvec.indexer.errors.BackendError` s (library log lines that repeat our own reports silenced)."""

from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager, suppress

from pymilvus import MilvusClient, MilvusException

from poolvec.indexer.errors import BackendError
from poolvec.indexer.milvus.lite import check_uri, held_message, lock_busy

#: pymilvus pings idle channels every 10 s; Milvus Lite's embedded gRPC server answers pings more often than every
#: 5 minutes with GOAWAY "too_many_pings" (logged on the terminal), e.g. while an index tunes itself for a minute
#: without a call. A local channel needs no keepalive.
LITE_GRPC = {"grpc.keepalive_time_ms": 600_000, "grpc.keepalive_permit_without_calls": 0}


class Client:
    """A lazily opened ``MilvusClient`` for ``uri`` and the name of one collection; subclasses add what they do."""

    def __init__(self, uri: str, collection: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.uri = uri
        self.collection = collection
        self.path = check_uri(uri)
        self.is_lite = self.path is not None
        self.timeout = timeout
        self.token = token  # also read by the Ray engine's workers, which open their own connection
        self._client: MilvusClient | None = None
        if self.path is None or self.path.exists():
            self._client = self._connect()  # a server is reached at once; a new Lite database waits for a write

    # -- connection ----------------------------------------------------------------------------------------
    @property
    def client(self) -> MilvusClient:
        """The client; opening it creates a new Milvus Lite database folder (only done when something is written)."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> MilvusClient:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with quiet("milvus_lite.server_manager"):
                    return MilvusClient(str(self.path), grpc_options=LITE_GRPC)
            except MilvusException as e:
                if lock_busy(self.path):
                    raise BackendError(held_message(self.path)) from None
                raise BackendError(f"cannot open Milvus Lite database {self.path}: {reason(e)}") from None
        try:
            return MilvusClient(uri=self.uri, token=self.token or "", timeout=self.timeout)
        except MilvusException as e:
            raise BackendError(f"cannot reach Milvus at {self.uri}: {reason(e)}") from None

    @property
    def missing(self) -> bool:
        """True for a Milvus Lite database that does not exist yet (nothing has been written to it)."""
        return self._client is None and self.path is not None and not self.path.exists()

    def close(self) -> None:
        """Close the client (Milvus Lite keeps its lock until the process exits)."""
        if self._client is not None:
            with suppress(MilvusException):
                self._client.close()

    def properties(self) -> dict[str, str]:
        """The collection's properties (where poolvec keeps its settings)."""
        desc = self._call(self.client.describe_collection, self.collection)
        props = desc.get("properties") or {}
        return {str(k): str(v) for k, v in props.items()}

    def set_property(self, key: str, value: str) -> None:
        """Set one collection property."""
        self._call(self.client.alter_collection_properties, self.collection, {key: value})

    def _create_collection(self, name: str, **kwargs) -> None:
        """Create collection ``name``. On Milvus Lite a folder of that name that Lite does not know is removed first: a
        kill -9 during an earlier create leaves one, and Lite then refuses the name ("File exists")."""
        if self.path is not None:
            orphan = self.path / "collections" / name
            if orphan.is_dir() and not self._call(self.client.has_collection, name):
                shutil.rmtree(orphan)
        with quiet("grpc._server"):  # Milvus Lite lacks an RPC pymilvus polls while loading; grpc logs it
            self._call(self.client.create_collection, name, **kwargs)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MilvusException as e:
            raise BackendError(f"Milvus ({self.uri}) failed: {reason(e)}") from None


def reason(e: MilvusException) -> str:
    """Milvus's message in one line."""
    msg = getattr(e, "message", "") or str(e)
    return " ".join(str(msg).split()) or type(e).__name__


@contextmanager
def quiet(logger_name: str):
    """Silence a library logger that prints tracebacks for errors we report ourselves."""
    log = logging.getLogger(logger_name)
    old = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = old
