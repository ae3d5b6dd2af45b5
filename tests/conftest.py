"""Shared fixtures: every test runs in its own folder on tiny synthetic data on the CPU."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from nascli.cli import main
from nascli.spaces.nb201 import OPS, cell_string

TINY = [
    "dataset=synthetic",
    "dataset.num_samples=200",
    "hardware=cpu",
    "hardware.threads=1",
    "search.max_trials=3",
    "evaluator.epochs=1",
    "evaluator.latency_batch=4",
    "retrain.epochs=1",
]


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in an empty folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def nas(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Run the `nas` command in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["nas", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def run(nas, workdir: Path) -> Path:
    """A tiny search's run directory (a test module may define its own `run`)."""
    code, _, err = nas("search", *TINY, "run_dir=run")
    assert code == 0, err
    return workdir / "run"


def interrupt_on_call(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    """Make the train evaluator's `call`-th evaluation raise KeyboardInterrupt, as Ctrl-C would."""
    from nascli.evaluators.train import TrainEvaluator

    original = TrainEvaluator.evaluate
    calls = []

    def interrupted(self, arch, seed, budget=None, fold=0):
        calls.append(arch)
        if len(calls) == call:
            raise KeyboardInterrupt
        return original(self, arch, seed, budget, fold)

    monkeypatch.setattr(TrainEvaluator, "evaluate", interrupted)


def read_trials(run_dir: Path) -> list[dict]:
    """The trials of a run directory."""
    return [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]


TIMING = ("elapsed", "train_seconds", "latency_ms")


def untimed(trials: list[dict]) -> list[dict]:
    """Trials without their timings (and their curves' seconds), which differ between identical runs."""
    return [
        {**{k: v for k, v in t.items() if k not in TIMING}, "metrics": {k: v for k, v in t["metrics"].items() if k not in TIMING},
         "curve": [{k: v for k, v in point.items() if k != "seconds"} for point in t.get("curve") or []]}
        for t in trials
    ]


def synthetic_score(ops: tuple[str, ...]) -> float:
    """A made-up validation accuracy of an NB201 cell."""
    return 50 + 6 * ops.count("nor_conv_3x3") + 3 * ops.count("skip_connect") - 4 * ops.count("none")


@pytest.fixture
def table(workdir: Path) -> Path:
    """Every NB201 cell with a made-up validation accuracy and a test accuracy one point above it."""
    rows = [(cell_string(list(ops)), synthetic_score(ops)) for ops in itertools.product(OPS, repeat=6)]
    path = workdir / "table.csv"
    pd.DataFrame([{"arch": a, "val_acc": v, "test_acc": v + 1} for a, v in rows]).to_csv(path, index=False)
    return path


@pytest.fixture
def report_runs(nas, workdir: Path, table: Path) -> Path:
    """A tabular sweep (two strategies x two seeds) and one run that trained chain networks."""
    code, _, err = nas("search", "-m", "strategy=random,local", "seed=0,1", "space=nb201", "evaluator=tabular",
                       f"evaluator.table={table}", "search.max_trials=20", "sweep_dir=runs/sweep")
    assert code == 0, err
    code, _, err = nas("search", *TINY, "run_dir=runs/trained")
    assert code == 0, err
    return workdir / "runs"
