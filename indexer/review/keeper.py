"""Which copy of a group to keep: ordered rules the user can change, each suggestion with its reason.

A copy made from another member (downscaled, upscaled or recompressed from it: :func:`.quality.source_of`) is never
suggested over its source, whatever the rules say; among the others the rules decide in order, the first that
tells two copies apart giving the reason ("4032×3024 vs 1600×1200").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from poolvec.extractor.errors import ImageError
from poolvec.extractor.files import is_under
from poolvec.indexer.errors import IndexerError
from poolvec.indexer.review.quality import FORMAT_RANK, Measures, measure, source_of

#: The rules, best first by default: most pixels, least compressed, sharpest, preferred format, oldest.
RULES = ("pixels", "quality", "sharpness", "format", "date")
#: JPEG qualities closer than this count as equal (estimates of re-encoded tables wobble by a point or two).
QUALITY_TIE = 3
#: Sharpness within this ratio counts as equal.
SHARPNESS_TIE = 1.15


@dataclass(frozen=True)
class KeepRules:
    """How the copy to keep is chosen.

    Args:
        order: rule names, most important first (any of :data:`RULES`).
        prefer: folders whose files are kept before any rule (e.g. the archive, the originals' folder).
    """

    order: tuple[str, ...] = RULES
    prefer: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [r for r in self.order if r not in RULES]
        if unknown or len(set(self.order)) != len(self.order) or not self.order:
            raise IndexerError(
                f"keep rules must be distinct names among {', '.join(RULES)}, got {', '.join(self.order) or 'none'}",
                kind="invalid",
            )
        object.__setattr__(self, "prefer", tuple(os.path.abspath(p) for p in self.prefer))

    @classmethod
    def parse(cls, order: str | None, prefer: Sequence[str] = ()) -> KeepRules:
        """From the CLI: ``"quality,pixels"`` (the rules not named follow in their default order)."""
        named = tuple(r.strip() for r in order.split(",") if r.strip()) if order else ()
        return cls(named + tuple(r for r in RULES if r not in named), tuple(prefer))


@dataclass
class Suggestion:
    """The copy to keep of one group, why, and how the others relate to it (``derived``: path → how it was made
    from another member)."""

    keep: str
    reason: str
    others: list[str]
    derived: dict[str, str] = field(default_factory=dict)
    measures: dict[str, Measures] = field(default_factory=dict, repr=False)


def _under(path: str, folders: tuple[str, ...]) -> bool:
    return any(is_under(path, f) for f in folders)


def _compare(rule: str, a: Measures, b: Measures) -> tuple[int, str]:
    """(1 if ``a`` wins, -1 if ``b`` wins, 0 tie; the reason in ``a``'s favour)."""
    if rule == "pixels":
        c = (a.pixels > b.pixels) - (a.pixels < b.pixels)
        return c, f"{a.width}×{a.height} vs {b.width}×{b.height}"
    if rule == "quality":
        d = a.quality - b.quality
        c = 0 if abs(d) < QUALITY_TIE else (1 if d > 0 else -1)
        name = lambda m: "lossless" if m.format not in ("JPEG", "MPO") else f"JPEG quality {m.quality}"  # noqa: E731
        return c, f"{name(a)} vs {name(b)}"
    if rule == "sharpness":
        hi, lo = max(a.sharpness, b.sharpness), max(min(a.sharpness, b.sharpness), 1e-9)
        c = 0 if hi / lo < SHARPNESS_TIE else (1 if a.sharpness > b.sharpness else -1)
        return c, f"sharper (Laplacian variance {a.sharpness:.0f} vs {b.sharpness:.0f})"
    if rule == "format":
        ra, rb = FORMAT_RANK.get(a.format, 0), FORMAT_RANK.get(b.format, 0)
        return (ra > rb) - (ra < rb), f"{a.format or 'unknown'} over {b.format or 'unknown'}"
    assert rule == "date"
    c = (a.taken < b.taken) - (a.taken > b.taken)
    what = "taken" if a.taken_from_exif and b.taken_from_exif else "dated"
    return c, f"{what} {a.taken:%Y-%m-%d %H:%M} vs {b.taken:%Y-%m-%d %H:%M}"


def better(a: Measures, b: Measures, rules: KeepRules) -> tuple[int, str]:
    """Whether ``a`` is the better copy (1), ``b`` is (-1) or neither (0), and the reason of the first rule that
    decides, in the winner's favour."""
    ua, ub = _under(a.path, rules.prefer), _under(b.path, rules.prefer)
    if ua != ub:
        return (1, f"under {_folder(a.path, rules.prefer)}") if ua else (-1, f"under {_folder(b.path, rules.prefer)}")
    for rule in rules.order:
        c, why = _compare(rule, a, b)
        if c > 0:
            return 1, why
        if c < 0:
            return -1, _compare(rule, b, a)[1]
    return 0, "identical by every rule; the first path kept"


def _folder(path: str, folders: tuple[str, ...]) -> str:
    return next(f for f in folders if _under(path, (f,)))


Measurer = Callable[[str], tuple[Measures, object, object]]


def suggest(paths: Sequence[str], rules: KeepRules | None = None, measurer: Measurer = measure) -> Suggestion:
    """The copy of ``paths`` to keep. Copies made from another member are set aside first (never kept over their
    source); the rules then choose among the rest, and the reason compares the keeper with the runner-up (or says
    which member the runner-up was made from)."""
    rules = rules or KeepRules()
    loaded, unreadable = {}, []
    for p in paths:
        try:
            loaded[p] = measurer(p)
        except (OSError, ImageError):
            unreadable.append(p)  # gone or broken since it was indexed: never the copy to keep
    if not loaded:
        raise IndexerError(f"no copy of the group can be read any more: {', '.join(sorted(paths))}", kind="not_found")
    derived: dict[str, str] = {}
    ordered = sorted(loaded)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            (_, img_a, q_a), (_, img_b, q_b) = loaded[a], loaded[b]
            found = source_of(img_a, img_b, q_a, q_b)
            if found is not None:
                src, how = found
                if src < 0:  # a resize, direction unknown from the pixels: the older file is the source
                    src = 0 if _older(loaded[a][0], loaded[b][0]) else 1
                copy, source = (b, a) if src == 0 else (a, b)
                derived.setdefault(copy, f"{how} from {source}")
    measures = {p: loaded[p][0] for p in paths}
    candidates = [p for p in ordered if p not in derived] or ordered  # a cycle (two near-identical copies): all
    best = candidates[0]
    for p in candidates[1:]:
        if better(measures[p], measures[best], rules)[0] > 0:
            best = p
    others = sorted([p for p in ordered if p != best] + unreadable)
    runner = [p for p in candidates if p != best]
    if runner:
        second = max(runner, key=lambda p: _rank(measures, p, runner, rules))
        reason = better(measures[best], measures[second], rules)[1]
    else:
        made = [p for p in others if p in derived]
        reason = "the others were made from it: " + "; ".join(f"{os.path.basename(p)} {derived[p]}" for p in made)
    return Suggestion(best, reason, others, derived, measures)


def _older(a: Measures, b: Measures) -> bool:
    """Whether ``a`` looks like the earlier file: captured or modified first; on a tie, the larger."""
    return (a.taken, -a.pixels) <= (b.taken, -b.pixels)


def _rank(measures: dict[str, Measures], p: str, pool: list[str], rules: KeepRules) -> int:
    """How many of ``pool`` ``p`` beats (to name the runner-up)."""
    return sum(better(measures[p], measures[q], rules)[0] > 0 for q in pool if q != p)


__all__ = ["RULES", "KeepRules", "Suggestion", "better", "suggest"]
