"""The terminal nascli prints to, and its one style of progress bar."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(highlight=False, soft_wrap=True)  # paths stay whole, for copying


def progress() -> Progress:
    """A progress bar with counts, elapsed and remaining time."""
    # Redrawn once a second on a terminal (its clocks tick in seconds) and only at the end elsewhere: rich's
    # default 10 redraws a second take CPU time from training on a small machine, even with nothing to show.
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console,
        auto_refresh=console.is_terminal, refresh_per_second=1,
    )
