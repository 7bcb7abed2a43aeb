"""The journal of a resolution: the whole plan written (and fsynced) before the first file is touched, then one line
after each step. A resolution killed at any moment is finished by running it again, or reversed by ``undo``: every
step is idempotent in both directions, so either reads the journal and the files as they are and carries on.

Journals live in the user's state folder (``$POOLVEC_STATE_DIR``, else ``$XDG_STATE_HOME/poolvec``, else
``~/.local/state/poolvec``), one folder per index (its URI and collection), one file per resolution.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Step:
    """One duplicate acted on: ``path`` goes to ``trash_path``; with ``link``, a hard or symbolic link to ``keep``
    takes its place; ``row`` is its index row (vector as base64 float32), restored by ``undo``."""

    path: str
    trash_path: str
    keep: str
    link: str | None
    row: dict[str, Any]


def state_dir() -> Path:
    """Where poolvec keeps its own state (journals)."""
    explicit = os.environ.get("POOLVEC_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "poolvec"


def journal_dir(uri: str, collection: str) -> Path:
    """The journals of one index (a Lite database by its absolute path, a server by its URI)."""
    where = uri if "://" in uri else os.path.abspath(uri)
    key = hashlib.sha256(f"{where}\0{collection}".encode()).hexdigest()[:16]
    return state_dir() / "journals" / key


def pack_row(row: dict[str, Any]) -> dict[str, Any]:
    """An index row for the journal: the vector as base64 float32 (5 kB for 1 280 dimensions, not 25 kB of JSON)."""
    out = {k: v for k, v in row.items() if k != "vector"}
    out["vector_b64"] = base64.b64encode(np.asarray(row["vector"], np.float32).tobytes()).decode()
    return out


def unpack_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "vector_b64"}
    out["vector"] = np.frombuffer(base64.b64decode(row["vector_b64"]), np.float32).tolist()
    return out


class Journal:
    """One resolution's journal file (JSON lines)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, folder: Path, header: dict[str, Any], steps: list[Step]) -> Journal:
        """Write the plan in full, durably, under a new name (written aside, then renamed: never half a plan)."""
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000_000:09d}"
        path = folder / f"{stamp}.jsonl"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"header": header, "steps": len(steps)}) + "\n")
            for i, s in enumerate(steps):
                f.write(json.dumps({"plan": i, **asdict(s)}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
        return cls(path)

    @classmethod
    def latest(cls, folder: Path) -> Journal | None:
        """The newest journal of an index, None when there is none."""
        files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
        return cls(files[-1]) if files else None

    def read(self) -> tuple[dict[str, Any], list[Step], dict[str, Any]]:
        """(header, steps, state): ``state`` has the sets ``done`` and ``undone`` (step numbers) and the flags
        ``complete``, ``purged`` and ``reversed``."""
        header: dict[str, Any] = {}
        steps: list[Step] = []
        state: dict[str, Any] = {"done": set(), "undone": set(), "complete": False, "purged": False, "reversed": False}
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a line cut by a kill: never acted on
                entry = json.loads(line)
                if "header" in entry:
                    header = entry["header"]
                elif "plan" in entry:
                    steps.append(Step(**{k: v for k, v in entry.items() if k != "plan"}))
                elif "done" in entry:
                    state["done"].add(entry["done"])
                elif "undone" in entry:
                    state["undone"].add(entry["undone"])
                else:
                    state.update({k: True for k in ("complete", "purged", "reversed") if entry.get(k)})
        return header, steps, state

    def mark(self, **entry: Any) -> None:
        """Append one progress line, durably."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["Journal", "Step", "journal_dir", "pack_row", "state_dir", "unpack_row"]
