"""``poolvec decide`` and ``poolvec undo``, and what ``poolvec dups --suggest/--resolve`` print: the review of
duplicates (the rules live in :mod:`poolvec.indexer.review`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from poolvec.indexer.cli.output import out, print_json, warn
from poolvec.indexer.cli.params import CollOpt, DbOpt, JsonOpt, TokenOpt
from poolvec.indexer.cli.run import existing_index, run
from poolvec.indexer.errors import EXIT_OK, EXIT_PARTIAL, IndexerError
from poolvec.indexer.milvus import names
from poolvec.indexer.milvus.lite import DEFAULT_COLLECTION, DEFAULT_URI

if TYPE_CHECKING:
    from poolvec.indexer import ImageIndex
    from poolvec.indexer.dups.find import DuplicateGroup
    from poolvec.indexer.review.keeper import KeepRules, Suggestion

KINDS = ("not-duplicates", "keep", "forget")
AllOpt = Annotated[bool, typer.Option("--all", help="Ignore review decisions: show pictures marked not duplicates.")]
AgainstOpt = Annotated[
    Path | None,
    typer.Option(metavar="FOLDER", help="Only files outside FOLDER that have a copy inside it (never touched)."),
]
SuggestOpt = Annotated[bool, typer.Option("--suggest", help="Name the copy of each group to keep, and why.")]
ResolveOpt = Annotated[
    str | None,
    typer.Option(
        metavar="ACTION",
        help="Act on each group but its copy to keep: move | hardlink | symlink | delete (dry run without --yes).",
    ),
]
TrashOpt = Annotated[
    Path | None, typer.Option(metavar="FOLDER", help="Where --resolve puts the duplicates (paths kept).")
]
YesOpt = Annotated[bool, typer.Option("--yes", help="Carry out --resolve (journaled; `poolvec undo` reverses it).")]
RulesOpt = Annotated[
    str | None, typer.Option(metavar="RULES", help="Order of the keep rules: pixels,quality,sharpness,format,date.")
]
PreferOpt = Annotated[
    list[Path] | None, typer.Option(metavar="FOLDER", help="Keep copies under this folder first (repeatable).")
]


def decide(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="not-duplicates | keep | forget")],
    files: Annotated[list[Path], typer.Argument(metavar="FILE", help="Indexed images.")],
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
) -> None:
    """Record a review decision, stored with the index: these pictures are not duplicates (later `dups` runs do not
    group them), keep this picture (suggested as the copy to keep, never acted on), or forget their decisions."""

    def body() -> int:
        if kind not in KINDS:
            raise IndexerError(f"KIND must be one of {', '.join(KINDS)}, got {kind!r}")
        idx = existing_index(db, collection, token)
        if kind == "not-duplicates":
            n = idx.decide_distinct(files)
            out.print(f"{len(files)} pictures marked as not duplicates of each other ({n} pairs)")
        elif kind == "keep":
            n = idx.decide_keep(files)
            out.print(f"{n} picture{'s' * (n != 1)} marked to keep")
        else:
            n = idx.forget_decisions(files)
            out.print(f"{n} decision{'s' * (n != 1)} forgotten")
        return EXIT_OK

    run(body)


def undo(
    db: DbOpt = DEFAULT_URI,
    token: TokenOpt = None,
    collection: CollOpt = DEFAULT_COLLECTION,
    as_json: JsonOpt = False,
) -> None:
    """Reverse the last `dups --resolve`: files back from the trash (or from behind their links), index rows restored.
    Run it again after an interruption: it carries on."""

    def body() -> int:
        idx = existing_index(db, collection, token)
        report = idx.undo()
        if as_json:
            fields = ("journal", "restored", "rows", "lost")
            print_json({f: getattr(report, f) for f in fields})
        else:
            out.print(f"undone: {report.restored} files back in place, {report.rows} index rows restored")
            for p in report.lost:
                warn(f"{names.shown(p)}: cannot be brought back (deleted)")
        return EXIT_PARTIAL if report.lost else EXIT_OK

    run(body)


def review_groups(
    idx: ImageIndex,
    groups: list[DuplicateGroup],
    rules: KeepRules,
    against: str | None,
    resolve: str | None,
    trash: Path | None,
    yes: bool,
    as_json: bool,
) -> int:
    """``dups --suggest`` / ``--resolve``: each group's copy to keep with its reason, then the plan (a dry run unless
    ``yes``) and what was done."""
    if resolve is None:
        items = [_suggestion_json(s) for s in idx.suggest_keepers(groups, rules)]
        if as_json:
            print_json(items)
        for n, item in enumerate(items if not as_json else [], 1):
            out.print(f"[bold]group {n}[/]: keep {escape(item['keep'])} — {escape(item['reason'])}")
            for p in item["others"]:
                how = item["derived"].get(p)
                out.print(f"  {escape(p)}" + (f" ({escape(how)})" if how else ""))
        return EXIT_OK
    if trash is None:
        raise IndexerError("--resolve needs --trash FOLDER (where the duplicates go; `poolvec undo` brings them back)")
    report = idx.resolve(groups, resolve, trash=trash, rules=rules, against=against, dry_run=not yes)
    summary: dict[str, Any] = {
        "action": report.action,
        "dry_run": report.dry_run,
        "groups": report.groups,
        "files": report.files,
        "bytes_freed": report.bytes_freed,
        "refused": [{"path": names.shown(p), "reason": r} for p, r in report.refused],
        "journal": report.journal,
        "resumed": report.resumed,
    }
    if as_json:
        print_json(summary)
    else:
        verb = "would" if report.dry_run else "did"
        out.print(
            f"{verb} {report.action} {report.files} files of {report.groups} groups, freeing "
            f"{report.bytes_freed / 1e6:.1f} MB" + (" (a dry run: add --yes to act)" if report.dry_run else "")
        )
        if report.action == "delete" and report.dry_run:
            out.print("delete cannot be undone for the files themselves: `--resolve move` keeps a way back")
        for p, reason in report.refused:
            warn(f"{names.shown(p)}: left alone: {reason}")
    return EXIT_PARTIAL if report.refused else EXIT_OK


def _suggestion_json(s: Suggestion) -> dict[str, Any]:
    return {
        "keep": names.shown(s.keep),
        "reason": s.reason,
        "others": [names.shown(p) for p in s.others],
        "derived": {names.shown(p): how for p, how in s.derived.items()},
    }


__all__ = [
    "AgainstOpt",
    "AllOpt",
    "PreferOpt",
    "ResolveOpt",
    "RulesOpt",
    "SuggestOpt",
    "TrashOpt",
    "YesOpt",
    "decide",
    "review_groups",
    "undo",
]
