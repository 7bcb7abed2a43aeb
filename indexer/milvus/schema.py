"""The row schema of an index, in one place: its fields, their types, and the row builder.

Every image is one row keyed by a stable id of its absolute path. The Milvus collection (:mod:`.store`), the
rewrite operations (which copy rows: :mod:`poolvec.indexer.ops`), the ``where`` filter's field list
(:mod:`.filters`) and the HTTP API's response models (:mod:`poolvec.indexer.serve.models`) are all derived from
:data:`FIELDS`. No pymilvus here: the CLI reads it before anything heavy loads.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

#: Longest file name stored (bytes of its stored form; Milvus's VARCHAR limit is 65 535).
MAX_PATH = 4096


@dataclass(frozen=True)
class Field:
    """One stored field: its name, its kind (``int64``, ``varchar``, ``json`` or ``vector``), its VARCHAR length, and
    what it holds."""

    name: str
    kind: str
    doc: str
    max_length: int | None = None

    @property
    def python_type(self) -> type:
        """The Python type of the field's values as the API returns them."""
        return {"int64": int, "varchar": str, "json": dict, "vector": list}[self.kind]


#: Every field of a row, in the collection's order. ``id`` is the primary key, ``vector`` the embedding (its dimension
#: comes from the recipe).
FIELDS: tuple[Field, ...] = (
    Field("id", "int64", "stable 63-bit id of the absolute path (path_id)"),
    Field("vector", "vector", "the image's embedding"),
    Field("path", "varchar", "the file's absolute path", MAX_PATH),
    Field("root", "varchar", "the folder it was indexed under", MAX_PATH),
    # {"d": [every ancestor folder]}: `under=` filters need no LIKE escaping (an object: Milvus 2.3 refuses arrays)
    Field("dirs", "json", "every folder the file is under"),
    Field("size", "int64", "file size in bytes"),
    Field("mtime_ns", "int64", "file modification time, ns since the epoch"),
    Field("width", "int64", "image width in pixels (upright, full size)"),
    Field("height", "int64", "image height in pixels (upright, full size)"),
    Field("sha256", "varchar", "sha256 of the file's bytes", 64),
)
BY_NAME = {f.name: f for f in FIELDS}
#: What a row holds besides its id and vector: copied as it is when a rewrite replaces only the vector.
STORED_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.name not in ("id", "vector"))
#: The fields returned with every search hit and shown to people (``dirs`` is for filtering only).
META_FIELDS: tuple[str, ...] = tuple(f for f in STORED_FIELDS if f != "dirs")


def path_id(path: str) -> int:
    """Stable 63-bit primary key of an absolute path (the same file always maps to the same row)."""
    digest = hashlib.blake2b(os.fsencode(path), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def ancestors(path: str) -> list[str]:
    """Every folder above an absolute POSIX path, outermost first (``/a/b/c.jpg`` → ``["/a", "/a/b"]``)."""
    parts = path.split("/")[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def make_row(path: str, root: str, vector: Any, info: dict[str, Any]) -> dict[str, Any]:
    """The row of one image file: ``info`` holds ``size``, ``mtime_ns``, ``width``, ``height`` and ``sha256``."""
    import numpy as np

    return {
        "id": path_id(path),
        "vector": np.asarray(vector, dtype=np.float32).tolist(),
        "path": path,
        "root": root,
        "dirs": {"d": ancestors(path)},
        "size": int(info["size"]),
        "mtime_ns": int(info["mtime_ns"]),
        "width": int(info["width"]),
        "height": int(info["height"]),
        "sha256": info["sha256"],
    }


def row_bytes(row: dict[str, Any]) -> int:
    """About how many bytes a row takes in an insert request (4 per float, UTF-8 text, 8 per integer, framing)."""
    text = (row["path"], row["root"], row["sha256"], *row["dirs"]["d"])
    return 4 * len(row["vector"]) + sum(len(t.encode("utf-8", "surrogateescape")) + 8 for t in text) + 64


__all__ = [
    "BY_NAME",
    "FIELDS",
    "MAX_PATH",
    "META_FIELDS",
    "STORED_FIELDS",
    "Field",
    "ancestors",
    "make_row",
    "path_id",
    "row_bytes",
]
