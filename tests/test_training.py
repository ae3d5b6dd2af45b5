"""The training loop and the runner's handling of failing trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import TINY, interrupt_on_call, read_trials
from nascli.config import TrainSettings
from nascli.errors import TrialFailed
from nascli.evaluators.train import TrainEvaluator
from nascli.evaluators.training import augment, train
from nascli.hardware import Hardware

CPU = Hardware(device=torch.device("cpu"), amp_dtype=None, channels_last=False)


class Diverging(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * float("nan")


def test_nan_loss_raises_trial_failed() -> None:
    x, y = torch.randn(16, 1, 2, 2), torch.randint(0, 2, (16,))
    with pytest.raises(TrialFailed, match="diverged"):
        train(Diverging(), x, y, TrainSettings(epochs=2, augment=False), CPU, seed=0)


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.5), ("adamw", 0.05)])
def test_training_learns_and_is_deterministic(optimizer: str, lr: float) -> None:
    x = torch.randn(64, 1, 2, 2)
    y = (x.flatten(1).sum(1) > 0).long()

    def fit() -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        settings = TrainSettings(epochs=20, batch_size=16, lr=lr, augment=False, optimizer=optimizer)
        train(model, x, y, settings, CPU, seed=0)
        return model

    a, b = fit(), fit()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert (a(x).argmax(1) == y).float().mean() > 0.9


@pytest.mark.parametrize("steps", range(1, 12))
def test_the_schedule_takes_any_number_of_steps(steps: int) -> None:
    """A run of 5 steps once divided by zero in OneCycleLR (its warm-up ended on step 0)."""
    x, y = torch.randn(4 * steps, 1, 2, 2), torch.randint(0, 2, (4 * steps,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    train(model, x, y, TrainSettings(epochs=1, batch_size=4, augment=False), CPU, seed=0)


def test_augment_shifts_and_flips_within_bounds() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    out = augment(x, crop_padding=1, hflip=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert augment(x, 0, False, torch.Generator()).equal(x)


def test_failed_trials_are_recorded_and_the_search_goes_on(nas, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = TrainEvaluator.evaluate
    calls = []

    def flaky(self, arch, seed, budget=None):
        calls.append(arch)
        if len(calls) == 2:
            raise TrialFailed("out of memory")
        if len(calls) == 3:
            raise TrialFailed("training diverged: loss is nan in epoch 1")
        return original(self, arch, seed, budget)

    monkeypatch.setattr(TrainEvaluator, "evaluate", flaky)
    code, out, err = nas("search", *TINY, "search.max_trials=5", "run_dir=run")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert [t["status"] for t in trials] == ["ok", "failed", "failed", "ok", "ok"]
    assert trials[1]["error"] == "out of memory" and "diverged" in trials[2]["error"]
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["n_trials"] == 5 and summary["n_failed"] == 2 and summary["status"] == "completed"


def test_search_where_every_trial_fails_records_why_and_exits_1(
    nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors = iter([MemoryError(), RuntimeError("CUDA error: an illegal memory access\nmore"), ValueError("abc")])

    def always_fail(self, arch, seed, budget=None):
        raise next(errors)

    monkeypatch.setattr(TrainEvaluator, "evaluate", always_fail)
    code, out, err = nas("search", *TINY, "run_dir=run")
    assert code == 1 and err.count("\n") == 1 and "none of the 3 trials succeeded" in err, err
    assert [t["error"] for t in read_trials(workdir / "run")] == [
        "out of memory", "RuntimeError: CUDA error: an illegal memory access", "ValueError: abc"]
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "none of the 3 trials succeeded"
    assert not (workdir / "run" / "best.json").exists()


def test_ctrl_c_keeps_finished_trials_and_marks_the_run_interrupted(
    nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupt_on_call(monkeypatch, 2)
    code, out, err = nas("search", *TINY, "run_dir=run")
    assert code == 130 and "Traceback" not in err
    assert f"continue with: nas search --resume {workdir / 'run'}" in out
    assert len(read_trials(workdir / "run")) == 1
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["n_trials"] == 1
