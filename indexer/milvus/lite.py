"""Which URIs are Milvus Lite databases, and whether another process holds one — answered without pymilvus.

The CLI asks these first, so that a mistyped ``--db`` or a database held by another process is reported in
milliseconds, before torch or pymilvus load.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from poolvec.indexer.errors import BackendError, IndexerError

#: The index a command uses unless told otherwise: a Milvus Lite database in the working directory.
DEFAULT_URI = "./poolvec.db"
DEFAULT_COLLECTION = "images"
#: URI schemes of a Milvus server; anything else is a Milvus Lite database path.
SERVER_SCHEMES = ("http://", "https://", "tcp://", "grpc://")


def is_server_uri(uri: str) -> bool:
    """True for a Milvus server address, False for a Milvus Lite database path."""
    return uri.startswith(SERVER_SCHEMES)


def lite_path(uri: str) -> Path:
    """The folder of a Milvus Lite database; refuses a name pymilvus would not take as one."""
    if "://" in uri:
        raise IndexerError(f"{uri!r} is not a Milvus address: use http(s)://host:port for a server")
    if not uri.endswith(".db"):
        raise IndexerError(
            f"a Milvus Lite database is a folder whose name ends in .db (pymilvus tells a local database from a "
            f"server address by it): got {uri!r}; try {uri.rstrip('/') + '.db'!r}"
        )
    path = Path(uri).expanduser()
    if path.exists() and not path.is_dir():
        raise BackendError(f"{path} is not a Milvus Lite database (a file, not a folder)")
    return path


def lock_busy(path: Path) -> bool:
    """True if another open file description holds Milvus Lite's lock on the database folder."""
    lock = path / "LOCK"
    if not lock.exists():
        return False
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def held_message(path: Path) -> str:
    """What to say when another process holds the database."""
    return (
        f"another process holds the index {path} (Milvus Lite allows one process per database); wait for it to "
        "finish, or serve it with `milvus-lite server` and use its http:// address"
    )


def check_uri(uri: str) -> Path | None:
    """The one check of a ``--db``/``--uri`` value, made before anything opens it: ``None`` for a server address;
    for a Milvus Lite database its folder, refused at once when the name is malformed or another process holds it."""
    if is_server_uri(uri):
        return None
    path = lite_path(uri)
    # A Milvus Lite server started by this process (an earlier command in the same interpreter) holds the lock
    # itself and lets this process in again: only a process that has not started one can ask the lock.
    if "milvus_lite" not in sys.modules and lock_busy(path):
        raise BackendError(held_message(path))
    return path


__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_URI",
    "check_uri",
    "held_message",
    "is_server_uri",
    "lite_path",
    "lock_busy",
]
