"""Acting on duplicate groups: a plan (what would move, and the bytes freed), then the file operations, journaled,
and their reversal.

Every action first moves the duplicate into the trash folder (its path below its indexed root kept), so that
nothing is lost until the user says so: ``move`` stops there; ``hardlink``/``symlink`` then put a link to the
kept copy in its place (exact copies only: a link must show the same bytes); ``delete`` empties the trashed copies
once every step is done (the only action whose files ``undo`` cannot bring back; their rows are not restored).
Refused, each with its reason: a group whose kept copy is gone or changed, a file that changed since it was
indexed, a file outside the folders it was indexed from, a file inside the reference folder (``against``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolvec.extractor.files import is_under
from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus.schema import path_id
from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.review.journal import Journal, Step, journal_dir, pack_row, unpack_row

ACTIONS = ("move", "hardlink", "symlink", "delete")
#: Fields read back from the index for every file of a plan (the vector too: ``undo`` restores rows).
ROW_FIELDS = ("path", "root", "dirs", "size", "mtime_ns", "width", "height", "sha256", "vector")


@dataclass
class Planned:
    """One group's resolution: keep ``keep``, act on ``remove`` (those refused are in ``refused``)."""

    keep: str
    remove: list[str]
    reason: str = ""


@dataclass
class ResolveReport:
    """What a resolution did, or would do (``dry_run``): files acted on, bytes freed, refusals with reasons."""

    action: str
    dry_run: bool
    groups: int = 0
    files: int = 0
    bytes_freed: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    journal: str | None = None
    resumed: bool = False


@dataclass
class UndoReport:
    """What ``undo`` put back: files returned to their place, rows restored, files that cannot come back."""

    journal: str
    restored: int = 0
    rows: int = 0
    lost: list[str] = field(default_factory=list)


def _check(row: dict[str, Any] | None, path: str) -> str | None:
    """Why ``path`` must not be touched (None: it may)."""
    if row is None:
        return "not in the index"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "file gone since it was indexed"
    if not os.path.isfile(path) or os.path.islink(path):
        return "not a regular file any more"
    if st.st_size != row["size"] or st.st_mtime_ns != row["mtime_ns"]:
        return "changed since it was indexed: index it again first"
    root = row["root"]
    if not is_under(os.path.realpath(path), os.path.realpath(root)):
        return f"outside the indexed folder {root}"
    return None


def plan_steps(
    store: MilvusStore,
    groups: list[Planned],
    action: str,
    trash: str | os.PathLike[str],
    against: str | None = None,
) -> tuple[list[Step], list[tuple[str, str]], int]:
    """The steps of a resolution (``trash`` paths worked out), the refusals, and the bytes the steps free."""
    if action not in ACTIONS:
        raise IndexerError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}", kind="invalid")
    trash = os.path.abspath(trash)
    ids = {p: path_id(p) for g in groups for p in (g.keep, *g.remove)}
    rows = store.get(sorted(set(ids.values())), fields=ROW_FIELDS)
    steps: list[Step] = []
    refused: list[tuple[str, str]] = []
    freed = 0
    keepers = {g.keep for g in groups}
    planned: set[str] = set()
    for g in groups:
        keep_row = rows.get(ids[g.keep])
        why = _check(keep_row, g.keep)
        if why is not None:
            refused.extend((p, f"the copy to keep, {g.keep}, is {why}") for p in g.remove)
            continue
        assert keep_row is not None
        for p in g.remove:
            if p in planned:
                continue  # in two groups: acted on once
            row = rows.get(ids[p])
            why = "the copy to keep of another group" if p in keepers else _check(row, p)
            if why is None and against is not None and is_under(p, against):
                why = f"inside the reference folder {against}"
            if why is None and is_under(p, trash):
                why = "already in the trash folder"
            if why is None and action in ("hardlink", "symlink") and row["sha256"] != keep_row["sha256"]:  # type: ignore[index]
                why = f"not the same bytes as {g.keep}: a link would change the picture (use move or delete)"
            if why is not None:
                refused.append((p, why))
                continue
            assert row is not None
            rel = os.path.relpath(p, row["root"])
            where = os.path.join(trash, os.path.basename(row["root"]) or "root", rel)
            link = action if action in ("hardlink", "symlink") else None
            steps.append(Step(p, where, g.keep, link, pack_row({k: row[k] for k in ROW_FIELDS})))
            planned.add(p)
            freed += int(row["size"])
    return steps, refused, freed


Progress = Callable[[int, int], None]


def apply(store: MilvusStore, journal: Journal, progress: Progress | None = None) -> tuple[int, bool]:
    """Carry out (or finish) the steps of ``journal``; returns (steps done now, whether it had been started)."""
    header, steps, state = journal.read()
    if state["reversed"]:
        raise IndexerError(f"resolution {journal.path.name} was undone; plan a new one", kind="invalid")
    started = bool(state["done"])
    done = 0
    for i, step in enumerate(steps):
        if i not in state["done"]:
            _forward(step)
            if step.link is None:
                store.delete([path_id(step.path)])
            journal.mark(done=i)
            done += 1
        if progress is not None:
            progress(i + 1, len(steps))
    if header.get("action") == "delete" and not state["purged"]:
        for step in steps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(step.trash_path)
        journal.mark(purged=True)
    journal.mark(complete=True)
    return done, started


def _forward(step: Step) -> None:
    """Move the duplicate to the trash and put its link in place; idempotent (a repeat after a kill finishes it)."""
    if os.path.lexists(step.path) and not _is_link_to(step):
        if os.path.lexists(step.trash_path):
            raise IndexerError(f"{step.trash_path}: already exists in the trash; move it away and run again")
        os.makedirs(os.path.dirname(step.trash_path), exist_ok=True)
        _move(step.path, step.trash_path)
    if step.link is not None and not os.path.lexists(step.path):
        if step.link == "hardlink":
            os.link(step.keep, step.path)
        else:
            os.symlink(step.keep, step.path)


def _is_link_to(step: Step) -> bool:
    if step.link == "symlink":
        return os.path.islink(step.path) and os.readlink(step.path) == step.keep
    if step.link == "hardlink":
        try:
            a, b = os.stat(step.path), os.stat(step.keep)
        except FileNotFoundError:
            return False
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) and os.path.lexists(step.trash_path)
    return False


def _move(src: str, dst: str) -> None:
    """Rename when one file system holds both; else copy (with times) to a temporary name, rename, remove the
    source — so that a kill never leaves a half-copied file under the final name."""
    try:
        os.rename(src, dst)
        return
    except OSError as e:
        if e.errno != 18:  # EXDEV: another file system
            raise
    tmp = dst + ".poolvec-partial"
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    os.unlink(src)


def undo(store: MilvusStore, journal: Journal, progress: Progress | None = None) -> UndoReport:
    """Reverse ``journal``'s steps, newest first: links removed, files moved back from the trash, rows restored
    (a step is marked undone only once its row is back). Idempotent: a kill in the middle is finished by running
    it again."""
    _, steps, state = journal.read()
    report = UndoReport(str(journal.path))
    pending: list[tuple[int, dict[str, Any] | None]] = []

    def settle() -> None:
        rows = [r for _, r in pending if r is not None]
        if rows:
            store.upsert(rows)
            report.rows += len(rows)
        for i, _ in pending:
            journal.mark(undone=i)
        pending.clear()

    for n, i in enumerate(reversed(range(len(steps)))):
        step = steps[i]
        if i in state["undone"]:
            continue
        if step.link is not None and os.path.lexists(step.trash_path) and _is_link_to(step):
            os.unlink(step.path)
        if os.path.lexists(step.trash_path) and not os.path.lexists(step.path):
            _move(step.trash_path, step.path)
            report.restored += 1
        elif not os.path.lexists(step.path):
            report.lost.append(step.path)  # deleted (the delete action), or removed by hand from the trash
        restore = step.link is None and os.path.lexists(step.path)
        pending.append((i, unpack_row({"id": path_id(step.path), **step.row}) if restore else None))
        if len(pending) >= 256:
            settle()
        if progress is not None:
            progress(n + 1, len(steps))
    settle()
    store.flush()
    journal.mark(reversed=True)
    return report


def journals(store: MilvusStore) -> Path:
    """The folder of this index's journals."""
    return journal_dir(store.uri, store.collection)


__all__ = ["ACTIONS", "Planned", "ResolveReport", "UndoReport", "apply", "journals", "plan_steps", "undo"]
