"""`nas search` end to end on tiny synthetic data: the run directory contract and reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from conftest import TINY, read_trials
from nascli.config import load_config
from nascli.factory import build_space


def test_search_writes_the_run_directory(nas, workdir: Path) -> None:
    code, out, err = nas("search", *TINY, "run_dir=run")
    assert code == 0, err
    run = workdir / "run"
    assert "results in" in out and str(run) in out

    config = OmegaConf.load(run / "config.yaml")
    assert "${" not in (run / "config.yaml").read_text()
    assert config.dataset.name == "synthetic" and config.search.max_trials == 3
    assert config.run_dir == str(run)

    trials = read_trials(run)
    assert [t["id"] for t in trials] == [0, 1, 2]
    for trial in trials:
        assert trial["status"] == "ok"
        assert {"val_acc", "params", "flops", "latency_ms", "train_seconds"} <= set(trial["metrics"])
        assert trial["metrics"]["params"] > 0 and trial["metrics"]["flops"] > 0
    assert len({t["hash"] for t in trials}) == 3

    best = json.loads((run / "best.json").read_text())
    assert best["metrics"]["val_acc"] == max(t["metrics"]["val_acc"] for t in trials)

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["n_trials"] == 3
    assert summary["objective"] == "val_acc" and summary["best"]["val_acc"] == best["metrics"]["val_acc"]
    assert summary["best"]["hash"] == best["hash"]
    assert summary["wall_seconds"] > 0

    metrics = json.loads((run / "retrain" / "metrics.json").read_text())
    assert summary["test_acc"] == metrics["test_acc"]
    assert 0 <= metrics["test_acc"] <= 100

    record = json.loads((run / "run.json").read_text())
    assert record["command"] == "search" and "run_dir=run" in record["overrides"]
    assert record["environment"]["packages"]["torch"] and record["environment"]["machine"]["device"] == "cpu"


def test_checkpoint_loads_safely_and_reproduces_test_accuracy(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "run_dir=run")[0] == 0
    checkpoint = torch.load(workdir / "run" / "retrain" / "model.pt", weights_only=True)
    cfg = load_config(TINY)
    space = build_space(cfg)
    model = space.build(checkpoint["arch"], tuple(checkpoint["input_shape"]), checkpoint["num_classes"])
    model.load_state_dict(checkpoint["state_dict"])
    data = cfg.dataset.cls(cfg.dataset.settings).load()
    model.eval()
    with torch.no_grad():
        acc = 100.0 * (model(data.test_x).argmax(1) == data.test_y).sum().item() / len(data.test_y)
    metrics = json.loads((workdir / "run" / "retrain" / "metrics.json").read_text())
    assert abs(acc - metrics["test_acc"]) < 1e-6


def test_same_seed_same_architectures_and_metrics(nas, workdir: Path) -> None:
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert nas("search", *TINY, f"seed={seed}", f"run_dir={name}", "retrain.enabled=false")[0] == 0
    a, b, c = (read_trials(workdir / name) for name in "abc")
    assert [t["arch"] for t in a] == [t["arch"] for t in b]
    assert [t["metrics"]["val_acc"] for t in a] == [t["metrics"]["val_acc"] for t in b]
    assert [t["arch"] for t in a] != [t["arch"] for t in c]


def test_retrain_disabled_writes_no_model(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "run_dir=run", "retrain.enabled=false")[0] == 0
    assert not (workdir / "run" / "retrain").exists()
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and "test_acc" not in summary


def test_max_seconds_stops_the_search(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "run_dir=run", "search.max_trials=50", "search.max_seconds=0.01")[0] == 0
    assert len(read_trials(workdir / "run")) == 1


def test_default_run_dir_is_dated_and_named(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "retrain.enabled=false")[0] == 0
    (run,) = (workdir / "outputs").glob("*/*")
    assert run.name.endswith("-synthetic-chain-bo")
    assert (run / "summary.json").exists()


def test_multirun_sweep_one_directory_per_job(nas, workdir: Path) -> None:
    code, out, err = nas("search", "-m", "strategy=random,evolution", "seed=0,1", *TINY, "sweep_dir=sweep")
    assert code == 0, err
    runs = sorted(p.name for p in (workdir / "sweep").iterdir() if p.is_dir())
    assert runs == [
        "0-synthetic-chain-random-seed0",
        "1-synthetic-chain-random-seed1",
        "2-synthetic-chain-evolution-seed0",
        "3-synthetic-chain-evolution-seed1",
    ]
    for name in runs:
        config = OmegaConf.load(workdir / "sweep" / name / "config.yaml")
        assert config.run_dir == str(workdir / "sweep" / name)
        assert json.loads((workdir / "sweep" / name / "summary.json").read_text())["status"] == "completed"


def test_cfg_job_prints_config_without_running(nas, workdir: Path) -> None:
    code, out, _ = nas("search", "--cfg", "job", "strategy=random")
    assert code == 0
    assert "name: random" in out and "max_trials" in out
    assert not (workdir / "outputs").exists()
