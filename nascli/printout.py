"""What a search or a retraining prints: progress bars and the closing summary with the paths that matter."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nascli.records import Summary
from nascli.rundir import BEST, MODEL, RunDir

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


def print_result(run: RunDir, summary: Summary) -> None:
    """A short summary of the finished work, the paths that matter and what to run next."""
    parts = [f"{summary.n_trials} trials ({summary.n_failed} failed)"] if summary.kind == "search" else []
    if summary.best:
        parts.append(f"best {summary.objective} {summary.best_value:.2f} (trial {summary.best['id']})")
    if summary.test_acc is not None:
        parts.append(f"test_acc {summary.test_acc:.2f}")
    if summary.error:
        parts.append(f"[red]{summary.error}[/red]")
    console.print(f"{summary.kind} {summary.status} in {summary.wall_seconds or 0:.0f} s: {', '.join(parts)}")
    if summary.baselines:
        scores = (f"{name} {'failed' if acc is None else f'{acc:.2f}'}" for name, acc in summary.baselines.items())
        console.print(f"baselines (test_acc, same retraining): {', '.join(scores)}")
    console.print(f"results in {run.path}")
    for name, what in ((BEST, "best architecture"), (MODEL, "retrained model")):
        if run.file(name).exists():
            console.print(f"  {what:<18} {run.file(name)}")
    if summary.status == "interrupted" and summary.kind == "search":
        console.print(f"continue with: nas search --resume {run.path}")
    elif run.file(MODEL).exists():
        console.print(f"next: nas show {run.path}\n      nas export {run.path} --format onnx\n"
                      f"      nas report {run.path} --html report.html")
