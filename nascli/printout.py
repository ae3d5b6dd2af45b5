"""What a search or a retraining prints and logs: progress bars, a line per trial, notices, the closing summary.

Each run directory gets a log (`search.log`, `retrain.log`) of every trial, notice, warning and the closing
summary. Where stdout is not a terminal (nohup, SLURM, CI) the trial lines are printed too, since no progress
bar redraws there.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nascli.console import console
from nascli.errors import LOGGER, writing
from nascli.records import Summary, Trial
from nascli.rundir import BEST, MODEL, RunDir

log = logging.getLogger(LOGGER)
TRIAL_COLUMNS = ("params", "flops", "latency_ms", "train_seconds")


@contextmanager
def run_log(run: RunDir, kind: str) -> Iterator[None]:
    """Log the work on `run` to its `<kind>.log` while it runs, and progress lines to stdout when it is no terminal."""
    path = run.log_file(kind)
    with writing(path):
        to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handlers: list[logging.Handler] = [to_file]
    if not console.is_terminal:
        to_stdout = logging.StreamHandler(sys.stdout)
        to_stdout.addFilter(lambda record: getattr(record, "progress", False))  # notices reach stdout by `say`
        handlers.append(to_stdout)
    log.setLevel(logging.INFO)
    for handler in handlers:
        log.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()


def say(message: str) -> None:
    """A line for the user: printed, and kept in the run's log."""
    console.print(message, markup=False)
    log.info(message)


def log_trial(trial: Trial, objective: str) -> None:
    """One line per finished trial: in the run's log, and on stdout when it is no terminal."""
    if trial.ok:
        shown = [(objective, trial.metrics.get(objective))] + [(k, trial.metrics.get(k)) for k in TRIAL_COLUMNS]
        outcome = " ".join(f"{k}={cell(v)}" for k, v in shown if v is not None)
    else:
        outcome = f"error: {trial.error}"
    budget = f" budget={trial.budget:g}" if trial.budget is not None else ""
    log_progress(f"trial {trial.id} {trial.status} {trial.hash}{budget} {outcome} (at {trial.elapsed or 0:.1f} s)")


def log_progress(message: str) -> None:
    """A line of progress (a trial, an epoch): in the run's log, and on stdout when it is no terminal."""
    log.info(message, extra={"progress": True})


def cell(value: Any) -> str:
    """A value as nascli prints it: floats to 4 significant digits, unknown as `-`."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_result(run: RunDir, summary: Summary) -> None:
    """A short summary of the finished work, the paths that matter and what to run next."""
    parts = [f"{summary.n_trials} trials ({summary.n_failed} failed)"] if summary.kind == "search" else []
    if summary.best:
        parts.append(f"best {summary.objective} {summary.best_value:.2f} (trial {summary.best['id']})")
    if summary.front_size is not None:
        volume = (summary.hypervolume or {}).get("value")
        parts.append(f"Pareto front of {summary.front_size}" + (f", hypervolume {volume:.3f}" if volume is not None else ""))
    if summary.test_acc is not None:
        parts.append(f"test_acc {summary.test_acc:.2f}")
    if summary.error:
        parts.append(summary.error)
    say(f"{summary.kind} {summary.status} in {summary.wall_seconds or 0:.0f} s: {', '.join(parts)}")
    if summary.baselines:
        scores = (f"{name} {'failed' if acc is None else f'{acc:.2f}'}" for name, acc in summary.baselines.items())
        say(f"baselines (test_acc, same retraining): {', '.join(scores)}")
    console.print(f"results in {run.path}")
    for name, what in ((BEST, "best architecture"), (MODEL, "retrained model")):
        if run.file(name).exists():
            console.print(f"  {what:<18} {run.file(name)}")
    if summary.status == "interrupted" and summary.kind == "search":
        console.print(f"continue with: nas search --resume {run.path}")
    elif run.file(MODEL).exists():
        console.print(f"next: nas show {run.path}\n      nas export {run.path} --format onnx\n"
                      f"      nas report {run.path} --html report.html")
