"""The journal of a resolution: the whole plan written (and fsynced) before the first file is touched, then a line per
step done (a batch of steps at a time, one fsync each). A resolution killed at any moment is finished by running it
again, or reversed by ``undo``: every step is idempotent in both directions, so either reads the journal and the
files as they are and carries on.

Journals live in the user's state folder (``$POOLVEC_STATE_DIR``, else ``$XDG_STATE_HOME/poolvec``, else
``~/.local/state/poolvec``), one folder per index (its URI and collection), one file per resolution.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: How a plan line starts (``json.dumps`` of ``{"plan": …}``): counted and found without parsing its row.
PLAN = '{"plan": '


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
    def create(cls, folder: Path, header: dict[str, Any], steps: Iterable[Step]) -> Journal | None:
        """Write the plan in full, durably, under a new name (written aside, then renamed: never half a plan); the
        steps are written as they come, never all held at once. None, and nothing written, when there is no step."""
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000_000:09d}"
        path = folder / f"{stamp}.jsonl"
        tmp = path.with_suffix(".tmp")
        n = 0
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps({"header": header}) + "\n")
                for n, s in enumerate(steps, 1):
                    f.write(json.dumps({"plan": n - 1, **asdict(s)}) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # a plan that failed half-way is no plan
            raise
        if n == 0:
            tmp.unlink()
            return None
        os.replace(tmp, path)
        _fsync_dir(folder)
        return cls(path)

    @classmethod
    def latest(cls, folder: Path) -> Journal | None:
        """The newest journal of an index, None when there is none."""
        files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
        return cls(files[-1]) if files else None

    def read(self) -> tuple[dict[str, Any], int, dict[str, Any]]:
        """(header, number of steps, state): ``state`` has the sets ``done`` and ``undone`` (step numbers) and the
        flags ``complete``, ``purged`` and ``reversed``. The steps themselves are read by :meth:`steps`."""
        header: dict[str, Any] = {}
        count = 0
        state: dict[str, Any] = {"done": set(), "undone": set(), "complete": False, "purged": False, "reversed": False}
        for line in self._lines():
            if line.startswith(PLAN):
                count += 1
                continue
            entry = json.loads(line)
            if "header" in entry:
                header = entry["header"]
            elif "done" in entry:
                state["done"].add(entry["done"])
            elif "undone" in entry:
                state["undone"].add(entry["undone"])
            else:
                state.update({k: True for k in ("complete", "purged", "reversed") if entry.get(k)})
        return header, count, state

    def steps(self, newest_first: bool = False) -> Iterator[tuple[int, Step]]:
        """The plan's steps with their numbers, read from the file as they are used (a plan of 30 000 files holds
        150 MB of rows): in order, or newest first (as ``undo`` goes) by seeking to each step's line."""
        if not newest_first:
            for line in self._lines():
                if line.startswith(PLAN):
                    yield _step(line)
            return
        offsets = []
        with open(self.path, "rb") as f:
            at = 0
            for raw in f:
                if raw.startswith(PLAN.encode()) and raw.endswith(b"\n"):
                    offsets.append(at)
                at += len(raw)
            for at in reversed(offsets):
                f.seek(at)
                yield _step(f.readline().decode("utf-8"))

    def _lines(self) -> Iterator[str]:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a line cut by a kill: never acted on
                yield line

    def mark(self, *entries: dict[str, Any], **entry: Any) -> None:
        """Append progress lines (``entries``, or one made of the keywords), durably: one fsync for them all."""
        lines = [*entries, entry] if entry else list(entries)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(e) + "\n" for e in lines))
            f.flush()
            os.fsync(f.fileno())


def _step(line: str) -> tuple[int, Step]:
    entry = json.loads(line)
    return entry.pop("plan"), Step(**entry)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["Journal", "Step", "journal_dir", "pack_row", "state_dir", "unpack_row"]
