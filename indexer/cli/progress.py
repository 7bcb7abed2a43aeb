"""Progress bars on stderr, one at a time, switched by what is running (tuning, indexing, re-embedding…)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from poolvec.indexer.cli.output import err

if TYPE_CHECKING:
    from rich.progress import Progress


def _bar(label: str, unit: str) -> Progress:
    """A progress bar on stderr: label, bar, done/total, rate (once it means something), elapsed, eta."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(f"[bold]{escape(label)}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=err, transient=False)
    bar.add_task(label, total=None, rate="", unit=unit)
    return bar


#: Seconds before a rate is shown: the first files of a re-run are unchanged and go by at thousands per second.
RATE_AFTER = 3.0


def _advance(bar: Progress, done: int, total: int | None) -> None:
    task = bar.tasks[0]
    speed = task.speed if task.elapsed and task.elapsed > RATE_AFTER else None
    bar.update(task.id, completed=done, total=total, rate=f"{speed:.1f} {task.fields['unit']}/s" if speed else "")


class Bars:
    """One progress bar at a time, switched by key ("tune", "index", …); nothing when quiet or not a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and err.is_terminal
        self.bars: dict[str, Progress] = {}

    def show(self, key: str, label: str, unit: str, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if key not in self.bars:
            for other in self.bars.values():
                other.stop()
            self.bars[key] = _bar(label, unit)
            self.bars[key].start()
        _advance(self.bars[key], done, total)

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar in self.bars.values():
            bar.stop()


__all__ = ["RATE_AFTER", "Bars"]
