"""What ``dups`` leaves out once the user has decided: pairs said not to be duplicates, copies that are links to one
file, and (``against``) groups with no copy on each side of a reference folder."""

from __future__ import annotations

import os
from collections.abc import Iterable

from poolvec.extractor.files import is_under
from poolvec.indexer.dups.find import DuplicateGroup, Edge, Judge, Pair
from poolvec.indexer.milvus.store import MilvusStore
from poolvec.indexer.review.decisions import Decisions


def honouring(store: MilvusStore, decisions: Decisions, judge: Judge) -> Judge:
    """``judge`` without the pairs whose pictures the user said are not duplicates."""
    if not decisions.distinct:
        return judge

    def decided(edges: list[Edge], paths: dict[int, str]) -> list[Pair]:
        pairs = judge(edges, paths)
        ids = sorted({n for p in pairs for n in (p.a, p.b)})
        sha = {i: r["sha256"] for i, r in store.get(ids, fields=("sha256",)).items()}
        return [p for p in pairs if not decisions.are_distinct(sha.get(p.a, ""), sha.get(p.b, ""))]

    return decided


def distinct_files(paths: Iterable[str]) -> int:
    """How many different files ``paths`` name: hard links to one file and symbolic links to another member count
    once (a resolved group of links takes no extra space)."""
    seen: set[tuple[int, int]] = set()
    for p in paths:
        try:
            st = os.stat(p)  # follows a symbolic link to the file it names
        except OSError:
            continue
        seen.add((st.st_dev, st.st_ino))
    return len(seen)


def reference_groups(groups: list[DuplicateGroup], archive: str) -> list[DuplicateGroup]:
    """The groups with at least one copy inside ``archive`` and one outside it."""
    inside = [[is_under(p, archive) for p in g.paths] for g in groups]
    return [g for g, ins in zip(groups, inside, strict=True) if any(ins) and not all(ins)]


__all__ = ["distinct_files", "honouring", "reference_groups"]
