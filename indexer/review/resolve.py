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
from collections.abc import Callable, Iterator
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
#: Groups whose rows are read in one call while planning.
CHUNK = 500
#: Steps carried out between two deletes of their rows (and two fsyncs of the journal).
BATCH = 256


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


@dataclass
class Tally:
    """What a plan found besides its steps: the refusals and their reasons, the files and bytes it acts on, the
    groups that have a file acted on."""

    refused: list[tuple[str, str]] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    keepers: set[str] = field(default_factory=set)


def plan_steps(
    store: MilvusStore,
    groups: list[Planned],
    action: str,
    trash: str | os.PathLike[str],
    against: str | None = None,
    tally: Tally | None = None,
    rows: bool = True,
) -> Iterator[Step]:
    """The steps of a resolution (``trash`` paths worked out), yielded as they are planned: the groups' rows are read
    :data:`CHUNK` groups at a time, so that memory does not grow with the number of groups. Refusals, files and bytes
    go to ``tally``; without ``rows`` (a dry run) the steps carry no index row (the vectors are not read). The
    action is checked at once, before any step is asked for."""
    if action not in ACTIONS:
        raise IndexerError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}", kind="invalid")
    tally = tally if tally is not None else Tally()
    return _steps(store, groups, action, os.path.abspath(trash), against, tally, rows)


def _steps(
    store: MilvusStore, groups: list[Planned], action: str, trash: str, against: str | None, tally: Tally, rows: bool
) -> Iterator[Step]:
    fields = ROW_FIELDS if rows else tuple(f for f in ROW_FIELDS if f != "vector")
    keepers = {g.keep for g in groups}
    planned: set[str] = set()
    for start in range(0, len(groups), CHUNK):
        part = groups[start : start + CHUNK]
        ids = {p: path_id(p) for g in part for p in (g.keep, *g.remove)}
        found = store.get(sorted(set(ids.values())), fields=fields)
        for g in part:
            keep_row = found.get(ids[g.keep])
            why = _check(keep_row, g.keep)
            if why is not None:
                tally.refused.extend((p, f"the copy to keep, {g.keep}, is {why}") for p in g.remove)
                continue
            assert keep_row is not None
            for p in g.remove:
                if p in planned:
                    continue  # in two groups: acted on once
                row = found.get(ids[p])
                why = "the copy to keep of another group" if p in keepers else _check(row, p)
                if why is None and against is not None and is_under(p, against):
                    why = f"inside the reference folder {against}"
                if why is None and is_under(p, trash):
                    why = "already in the trash folder"
                if why is None and action in ("hardlink", "symlink") and row["sha256"] != keep_row["sha256"]:  # type: ignore[index]
                    why = f"not the same bytes as {g.keep}: a link would change the picture (use move or delete)"
                if why is not None:
                    tally.refused.append((p, why))
                    continue
                assert row is not None
                rel = os.path.relpath(p, row["root"])
                where = os.path.join(trash, os.path.basename(row["root"]) or "root", rel)
                link = action if action in ("hardlink", "symlink") else None
                planned.add(p)
                tally.files += 1
                tally.bytes += int(row["size"])
                tally.keepers.add(g.keep)
                yield Step(p, where, g.keep, link, pack_row({k: row[k] for k in fields}) if rows else {})


Progress = Callable[[int, int], None]


def apply(store: MilvusStore, journal: Journal, progress: Progress | None = None) -> tuple[int, bool]:
    """Carry out (or finish) the steps of ``journal``; returns (steps done now, whether it had been started).

    Files are moved :data:`BATCH` at a time, then their rows deleted in one call and the batch marked done with one
    fsync. A kill inside a batch leaves files moved whose rows and marks are not: both directions redo such a step
    (moving an already moved file is nothing), so the next run or ``undo`` finishes it."""
    header, total, state = journal.read()
    if state["reversed"]:
        raise IndexerError(f"resolution {journal.path.name} was undone; plan a new one", kind="invalid")
    started = bool(state["done"])
    done = 0
    batch: list[tuple[int, Step]] = []

    def settle() -> None:
        gone = [path_id(step.path) for _, step in batch if step.link is None]
        if gone:
            store.delete(gone)
        journal.mark(*({"done": i} for i, _ in batch))
        batch.clear()

    for n, (i, step) in enumerate(journal.steps(), 1):
        if i not in state["done"]:
            _forward(step)
            batch.append((i, step))
            done += 1
            if len(batch) >= BATCH:
                settle()
        if progress is not None:
            progress(n, total)
    if batch:
        settle()
    if header.get("action") == "delete" and not state["purged"]:
        for _, step in journal.steps():
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
    (steps are marked undone :data:`BATCH` at a time, once their rows are back). Idempotent: a kill in the middle is
    finished by running it again."""
    _, total, state = journal.read()
    report = UndoReport(str(journal.path))
    pending: list[tuple[int, dict[str, Any] | None]] = []

    def settle() -> None:
        rows = [r for _, r in pending if r is not None]
        if rows:
            store.upsert(rows)
            report.rows += len(rows)
        journal.mark(*({"undone": i} for i, _ in pending))
        pending.clear()

    for n, (i, step) in enumerate(journal.steps(newest_first=True), 1):
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
        if len(pending) >= BATCH:
            settle()
        if progress is not None:
            progress(n, total)
    if pending:
        settle()
    store.flush()
    journal.mark(reversed=True)
    return report


def journals(store: MilvusStore) -> Path:
    """The folder of this index's journals."""
    return journal_dir(store.uri, store.collection)


__all__ = ["ACTIONS", "Planned", "ResolveReport", "Tally", "UndoReport", "apply", "journals", "plan_steps", "undo"]
