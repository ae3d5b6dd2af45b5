"""`nas retrain`, `nas report`, `nas list` and help through the CLI."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import hydra.core.utils
import pandas as pd
import torch
from conftest import TINY

import nascli.evaluators.train
import nascli.retraining


def test_retrain_a_search_run_with_other_settings(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "run_dir=run", "retrain.enabled=false")[0] == 0
    code, out, err = nas("retrain", "run", "retrain.epochs=2", "run_dir=again")
    assert code == 0, err
    again = workdir / "again"
    summary = json.loads((again / "summary.json").read_text())
    assert summary["kind"] == "retrain" and summary["status"] == "completed" and summary["source"] == "run"
    assert json.loads((again / "retrain" / "metrics.json").read_text())["epochs"] == 2
    best = json.loads((workdir / "run" / "best.json").read_text())
    assert json.loads((again / "best.json").read_text())["arch"] == best["arch"]
    # settings of the source run are inherited: the synthetic dataset, not the default digits
    assert torch.load(again / "retrain" / "model.pt", weights_only=True)["input_shape"] == [1, 8, 8]
    record = json.loads((again / "run.json").read_text())
    assert "dataset=synthetic" in record["overrides"] and "retrain.epochs=2" in record["overrides"]


def test_trials_and_the_retraining_time_the_same_batch(nas, workdir: Path, monkeypatch) -> None:
    """Latency is per `evaluator.latency_batch` samples (default one request) in the trials and the retraining."""
    batches = []

    def recorded(model, input_shape, batch, *args, **kwargs) -> float:
        batches.append(batch)
        return 1.0

    for module in (nascli.evaluators.train, nascli.retraining):
        monkeypatch.setattr(module, "measure_latency", recorded)
    assert nas("search", *TINY, "search.max_trials=1", "evaluator.latency_batch=3", "run_dir=run")[0] == 0
    assert batches == [3, 3]
    assert nas("search", *[o for o in TINY if "latency" not in o], "search.max_trials=1", "run_dir=default")[0] == 0
    assert batches[2:] == [1, 1]


class TickingClock:
    """A stand-in for `datetime` whose clock moves one second each time it is read."""

    def __init__(self) -> None:
        self.reads = 0

    def now(self) -> datetime.datetime:
        self.reads += 1
        return datetime.datetime(2026, 1, 1, 12, 0, 0) + datetime.timedelta(seconds=self.reads)


def test_retrain_an_architecture_file_into_a_dated_directory(nas, workdir: Path, monkeypatch) -> None:
    """One dated folder, however many times the clock is read while the job is checked and started."""
    monkeypatch.setattr(hydra.core.utils, "datetime", TickingClock())
    arch = {"blocks": [{"op": "conv3x3", "width": 16, "down": True}, {"op": "identity", "width": 32, "down": False}]}
    (workdir / "arch.json").write_text(json.dumps(arch))
    code, _, err = nas("retrain", "arch.json", *TINY)
    assert code == 0, err
    (run,) = (workdir / "outputs").glob("*/*-retrain-synthetic-chain")
    assert json.loads((run / "best.json").read_text())["arch"] == arch
    assert (run / "retrain" / "model.pt").exists()


def test_report_aggregates_seeds_and_writes_files(nas, workdir: Path) -> None:
    assert nas("search", "-m", *TINY, "seed=0,1", "strategy=random,evolution", "sweep_dir=sweep")[0] == 0
    assert nas("search", *TINY, "strategy=evolution", "evaluator.epochs=2", "run_dir=other/two_epochs")[0] == 0
    code, out, err = nas("report", "sweep", "other", "--csv", "table.csv", "--md", "table.md")
    assert code == 0, err
    table = pd.read_csv(workdir / "table.csv")
    assert len(table) == 3
    random_row = table[table.strategy == "random"].iloc[0]
    assert random_row.runs == 2 and random_row.seeds == "0,1"
    best = [json.loads((d / "summary.json").read_text())["best"]["val_acc"] for d in workdir.glob("sweep/*-random-*")]
    assert len(best) == 2 and random_row.val_acc_mean == sum(best) / 2
    evolution = table[table.strategy == "evolution"].sort_values("runs")
    assert list(evolution.runs) == [1, 2]
    assert list(evolution.settings.fillna("")) == ["evaluator.epochs=2", "evaluator.epochs=1"]
    markdown = (workdir / "table.md").read_text()
    assert "| dataset" in markdown and "±" in markdown
    for column in ("dataset", "space", "strategy", "seeds", "trials", "val_acc", "test_acc", "params", "flops", "wall_s"):
        assert column in out


def test_list_shows_every_group_and_default(nas) -> None:
    code, out, _ = nas("list")
    assert code == 0
    for option in ("digits", "fashion_mnist", "mnist", "cifar10", "synthetic", "chain", "random",
                   "bo *", "auto *", "cpu", "gpu", "train *", "spos", "darts", "proxy", "supernet"):
        assert option in out
    assert "nascli[audio]" in out.replace("\n", "").replace("│", "").replace(" ", "")  # not taken for markup


def test_help_texts(nas) -> None:
    code, out, _ = nas("--help")
    assert code == 0
    for command in ("search", "retrain", "report", "list"):
        assert command in out
    code, out, _ = nas("search", "--help")
    assert code == 0 and "-m" in out and "override" in out.lower()
    code, out, _ = nas("retrain", "--help")
    assert code == 0 and "SOURCE" in out


def test_retrain_max_seconds_cuts_the_epochs_to_what_fits(nas, workdir: Path) -> None:
    """A budget too small for one epoch still trains one and says how many of the epochs fit; a large one cuts none."""
    arch = {"blocks": [{"op": "conv3x3", "width": 16, "down": True}, {"op": "identity", "width": 16, "down": False}]}
    (workdir / "arch.json").write_text(json.dumps(arch))
    code, out, err = nas("retrain", "arch.json", *TINY, "retrain.epochs=3", "retrain.batch_size=4",
                         "retrain.max_seconds=1e-6", "run_dir=short")
    assert code == 0, err
    assert "retrain: 1.0 of 3 epochs fit in retrain.max_seconds=1e-06 (" in out
    assert json.loads((workdir / "short" / "retrain" / "metrics.json").read_text())["epochs"] == 1
    code, out, err = nas("retrain", "arch.json", *TINY, "retrain.epochs=3", "retrain.max_seconds=1e6", "run_dir=long")
    assert code == 0 and "epochs fit" not in out, err
    assert json.loads((workdir / "long" / "retrain" / "metrics.json").read_text())["epochs"] == 3
