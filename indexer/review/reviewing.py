"""The review operations of an :class:`~poolvec.indexer.ImageIndex` (a mixin: the index's rules stay in
``index.py``): decisions, the copy to keep, resolutions and their undo. The CLI and the server only translate."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from poolvec.indexer.dups.current import keeps_graph_current
from poolvec.indexer.errors import IndexerError
from poolvec.indexer.milvus.schema import path_id
from poolvec.indexer.review import decisions as stored
from poolvec.indexer.review.decisions import Decisions
from poolvec.indexer.review.journal import Journal
from poolvec.indexer.review.keeper import KeepRules, Suggestion, suggest
from poolvec.indexer.review.resolve import (
    CHUNK,
    Planned,
    ResolveReport,
    Tally,
    UndoReport,
    apply,
    journals,
    plan_steps,
    undo,
)

if TYPE_CHECKING:
    from poolvec.indexer.dups.find import DuplicateGroup
    from poolvec.indexer.milvus.store import MilvusStore
    from poolvec.indexer.review.resolve import Progress


class Reviewing:
    """Decisions that stick, keep-best suggestions and undoable resolutions (needs ``self.store``)."""

    store: MilvusStore

    # -- decisions -----------------------------------------------------------------------------------------------
    def _hashes(self, paths: Sequence[str | os.PathLike[str]]) -> dict[str, str]:
        """sha256 of indexed files by absolute path; a file not in the index is refused by name."""
        wanted = {os.path.abspath(p): path_id(os.path.abspath(p)) for p in paths}
        rows = self.store.get(sorted(set(wanted.values())), fields=("path", "sha256"))
        missing = [p for p, i in wanted.items() if i not in rows]
        if missing:
            raise IndexerError(f"{missing[0]}: not in the index (index it first)", kind="not_found")
        return {p: rows[i]["sha256"] for p, i in wanted.items()}

    def decide_distinct(self, paths: Sequence[str | os.PathLike[str]]) -> int:
        """Say the pictures of ``paths`` (two or more, e.g. a whole group) are not duplicates of each other: later
        ``dups`` runs no longer join them. Returns the pairs stored."""
        hashes = sorted(set(self._hashes(paths).values()))
        if len(hashes) < 2:
            raise IndexerError(
                "give two or more different pictures (identical files are always copies)", kind="invalid"
            )
        rows = stored.distinct_rows(hashes)
        self.store.decisions_put(rows)
        return len(rows)

    def decide_keep(self, paths: Sequence[str | os.PathLike[str]]) -> int:
        """Say these pictures are to be kept: suggested as the copy to keep of their groups, never acted on."""
        rows = stored.keep_rows(list(self._hashes(paths).values()))
        self.store.decisions_put(rows)
        return len(rows)

    def forget_decisions(self, paths: Sequence[str | os.PathLike[str]]) -> int:
        """Forget every decision naming one of these pictures. Returns how many were forgotten."""
        hashes = set(self._hashes(paths).values())
        rows = [(k, a, b) for k, a, b, _ in self.store.decisions_all() if a in hashes or b in hashes]
        self.store.decisions_delete(rows)
        return len(rows)

    def decisions(self) -> Decisions:
        """The stored decisions."""
        return Decisions.load(self.store)

    # -- the copy to keep ------------------------------------------------------------------------------------------
    def suggest_keeper(self, group: DuplicateGroup | Sequence[str], rules: KeepRules | None = None) -> Suggestion:
        """The copy of a group to keep and why (:class:`~poolvec.indexer.review.keeper.KeepRules`; a copy made from
        another member never): pictures marked "keep" come first among the rest, and are never among the others."""
        return self.suggest_keepers([group], rules)[0]

    def suggest_keepers(
        self, groups: Sequence[DuplicateGroup | Sequence[str]], rules: KeepRules | None = None
    ) -> list[Suggestion]:
        """:meth:`suggest_keeper` for many groups (the decisions read once)."""
        paths = [list(g.paths if hasattr(g, "paths") else g) for g in groups]
        return list(self._suggestions(paths, rules or KeepRules()))

    def _suggestions(self, groups: Sequence[list[str]], rules: KeepRules) -> Iterator[Suggestion]:
        """Each group's suggestion, in order; the hashes of its files (for the pictures marked "keep") are looked up
        :data:`~poolvec.indexer.review.resolve.CHUNK` groups a call, and only when some picture is marked."""
        kept = self.decisions().keep
        for start in range(0, len(groups), CHUNK):
            part = groups[start : start + CHUNK]
            hashes = self._hashes([p for paths in part for p in paths]) if kept else {}
            for paths in part:
                yield self._suggest(paths, rules, kept, hashes)

    def _suggest(self, paths: list[str], rules: KeepRules, kept: frozenset[str], hashes: dict[str, str]) -> Suggestion:
        marked = [p for p in paths if hashes.get(p) in kept]
        if marked:
            rules = KeepRules(rules.order, (*marked, *rules.prefer))
        choice = suggest(paths, rules)
        choice.others = [p for p in choice.others if hashes.get(p) not in kept]  # a kept picture is never acted on
        return choice

    # -- resolutions -------------------------------------------------------------------------------------------------
    @keeps_graph_current()
    def resolve(
        self,
        groups: Sequence[DuplicateGroup] | Sequence[Planned],
        action: str = "move",
        *,
        trash: str | os.PathLike[str],
        rules: KeepRules | None = None,
        against: str | os.PathLike[str] | None = None,
        dry_run: bool = True,
        progress: Progress | None = None,
    ) -> ResolveReport:
        """Act on duplicate groups: keep one copy of each (:meth:`suggest_keeper`, or a :class:`Planned`'s own) and
        ``move``/``hardlink``/``symlink``/``delete`` the others (:mod:`poolvec.indexer.review.resolve`). The default
        is a dry run (counts and bytes, nothing touched); the plan is journaled before any file is, and a
        resolution left unfinished by a kill is finished first. Undo with :meth:`undo`."""
        against = os.path.abspath(against) if against is not None else None
        report = ResolveReport(action, dry_run)
        folder = journals(self.store)
        last = Journal.latest(folder)
        if last is not None:
            _, _, state = last.read()
            if not state["complete"] and not state["reversed"]:
                if dry_run:
                    report.refused.append((str(last.path), "an interrupted resolution: run with --yes to finish it"))
                else:
                    apply(self.store, last, progress)
                    report.resumed = True
                    groups = self._still_indexed(groups)  # those groups were found before it was finished
        base = rules or KeepRules()
        if against is not None:
            base = KeepRules(base.order, (against, *base.prefer))
        groups = merged(groups)
        planned = [p for p in self._plans(groups, base) if p.remove]
        tally = Tally()
        steps = plan_steps(self.store, planned, action, trash, against, tally, rows=not dry_run)
        if dry_run:
            for _ in steps:
                pass
        else:
            header = {"action": action, "trash": os.path.abspath(trash), "collection": self.store.collection}
            journal = Journal.create(folder, header, steps)
            if journal is not None:
                report.journal = str(journal.path)
                apply(self.store, journal, progress)
                self.store.flush()
        report.groups, report.files, report.bytes_freed = len(tally.keepers), tally.files, tally.bytes
        report.refused.extend(tally.refused)
        return report

    def _still_indexed(self, groups: Sequence[DuplicateGroup] | Sequence[Planned]) -> list:
        """The groups without the members whose rows are gone (those with fewer than two left dropped)."""
        paths = {p for g in groups for p in (g.paths if hasattr(g, "paths") else (g.keep, *g.remove))}
        rows = self.store.get(sorted({path_id(p) for p in paths}), fields=("path",))
        present = {r["path"] for r in rows.values()}
        kept: list = []
        for g in groups:
            if isinstance(g, Planned):
                if g.keep in present:
                    kept.append(Planned(g.keep, [p for p in g.remove if p in present], g.reason))
            else:
                members = [p for p in g.paths if p in present]
                if len(members) > 1:
                    kept.append(replace(g, paths=members, ids=[path_id(p) for p in members]))
        return kept

    def _plans(self, groups: Sequence[DuplicateGroup] | Sequence[Planned], rules: KeepRules) -> Iterator[Planned]:
        """Each group's plan, in order: a :class:`Planned` as given, else the suggested keeper and the rest."""
        choices = self._suggestions([list(g.paths) for g in groups if not isinstance(g, Planned)], rules)
        for g in groups:
            if isinstance(g, Planned):
                yield g
            else:
                choice = next(choices)
                yield Planned(choice.keep, choice.others, choice.reason)

    @keeps_graph_current()
    def undo(self, progress: Progress | None = None) -> UndoReport:
        """Reverse the last resolution that was not undone yet (files back in place, index rows restored)."""
        folder = journals(self.store)
        files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
        for path in reversed(files):
            journal = Journal(path)
            if not journal.read()[2]["reversed"]:
                return undo(self.store, journal, progress)
        raise IndexerError("nothing to undo: no resolution of this index is left to reverse", kind="not_found")


def merged(groups: Sequence[DuplicateGroup] | Sequence[Planned]) -> list:
    """Duplicate groups that share a file merged into one (an exact pair inside a near group), so that each file gets
    one decision; :class:`Planned` groups are kept as they are."""
    plans = [g for g in groups if isinstance(g, Planned)]
    found = [g for g in groups if not isinstance(g, Planned)]
    owner: dict[str, int] = {}
    parent = list(range(len(found)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for n, g in enumerate(found):
        for p in g.paths:
            if p in owner:
                parent[root(n)] = root(owner[p])
            else:
                owner[p] = n
    members: dict[int, list] = {}
    for n, g in enumerate(found):
        members.setdefault(root(n), []).append(g)
    out: list = list(plans)
    for parts in members.values():
        if len(parts) == 1:
            out.append(parts[0])
            continue
        paths = sorted({p for g in parts for p in g.paths})
        out.append(replace(parts[0], kind="near", paths=paths, ids=[path_id(p) for p in paths]))
    return out


__all__ = ["Reviewing", "merged"]
