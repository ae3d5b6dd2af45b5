"""Watching a search: `nas show` on a running, a stopped and a finished run, and `--watch`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from conftest import TINY
from nascli.errors import warn
from nascli.evaluators.train import TrainEvaluator
from nascli.printout import run_log
from nascli.rundir import RunDir
from nascli.show import show
from test_errors import assert_one_line_error
from test_hardening import Nas, run, template  # noqa: F401


def test_show_on_a_running_search_says_so_with_its_progress_and_budget(
    nas: Nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a search runs (here: as its third trial starts), `nas show` reads its progress without disturbing it."""
    original, seen, log = TrainEvaluator.evaluate, [], workdir / "live" / "trials.jsonl"

    def evaluate(self, arch, seed, budget=None, fold=0):  # noqa: ANN001, ANN202
        if not seen and log.is_file() and len(log.read_text().splitlines()) == 2:
            buffer = io.StringIO()
            show(workdir / "live", Console(file=buffer, width=200), top=5)
            seen.append(buffer.getvalue())
        return original(self, arch, seed, budget, fold)

    monkeypatch.setattr(TrainEvaluator, "evaluate", evaluate)
    code, _, err = nas("search", *TINY, "search.max_trials=4", "retrain.enabled=false", "run_dir=live")
    assert code == 0, err
    text = seen[0]
    assert "status  running" in text and "trials  2 (0 failed)" in text and "budget left  2 trials" in text
    assert "best val_acc" in text and "top 2 of 2 trials" in text
    summary = json.loads((workdir / "live" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["n_trials"] == 4


def test_show_on_a_search_that_died_says_how_to_continue(nas: Nas, run: Path) -> None:
    """A summary still saying `running` with no process holding the run: it was killed; show says to resume."""
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    code, out, err = nas("show", str(run))
    assert code == 0, err
    assert "stopped without a summary" in out and f"nas search --resume {run}" in out and "budget left" not in out


def test_watch_returns_once_no_process_writes_the_run(nas: Nas, run: Path) -> None:
    code, out, err = nas("show", str(run), "--watch", "0.05")
    assert code == 0, err
    assert out.count("best architecture") == 1 and "watching" not in out
    code, _, err = nas("show", str(run), "--watch", "0")
    assert_one_line_error(code, err, "--watch")


def test_every_run_has_a_log_and_prints_trial_lines_where_no_terminal_is(nas: Nas, workdir: Path) -> None:
    """search.log and retrain.log hold a line per trial or epoch and the closing summary; with stdout not a terminal
    (as under pytest, nohup or SLURM) the trial lines are printed too."""
    code, out, err = nas("search", *TINY, "run_dir=run")
    assert code == 0, err
    for trial in range(3):
        assert f"trial {trial} ok " in out
    lines = (workdir / "run" / "search.log").read_text().splitlines()
    assert [line.split(" INFO ")[1].split()[:3] for line in lines if " trial " in line] == \
        [["trial", str(i), "ok"] for i in range(3)]
    assert any("retrain epoch 1/1 loss" in line for line in lines)
    assert "search completed in" in lines[-1]
    code, out, err = nas("retrain", "run", "run_dir=again")
    assert code == 0, err
    assert "retrain completed in" in (workdir / "again" / "retrain.log").read_text()


def test_a_warning_during_a_run_is_in_its_log(workdir: Path) -> None:
    run = RunDir(workdir)
    with run_log(run, "search"):
        warn("skipped 2 unreadable images")
    warn("after the run: printed only")
    text = (workdir / "search.log").read_text()
    assert "WARNING skipped 2 unreadable images" in text and "after the run" not in text


def test_under_a_time_budget_the_bar_counts_its_seconds(nas: Nas) -> None:
    """With search.max_seconds and no trial limit, the bar has a total (the budget's seconds), not `3/?`."""
    code, out, err = nas("search", *[o for o in TINY if not o.startswith("search.")], "search.max_seconds=2",
                         "retrain.enabled=false", "run_dir=timed")
    assert code == 0, err
    assert "search bo (seconds)" in out and "/?" not in out
