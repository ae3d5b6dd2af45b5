"""Metrics of every task: accuracy, macro-F1, ROC-AUC for two classes, the confusion matrix; the objective is chosen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY, read_trials
from nascli.evaluators.metrics import classification_metrics
from test_errors import assert_one_line_error


def test_metrics_of_known_predictions() -> None:
    probabilities = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8]])
    metrics = classification_metrics(probabilities, torch.tensor([0, 0, 1, 1]), "test", confusion=True)
    assert metrics["test_acc"] == 75.0 and metrics["test_top5"] == 100.0
    assert metrics["test_f1"] == pytest.approx(100 * (2 / 3 + 0.8) / 2)  # class 0: 2/3, class 1: 0.8
    assert metrics["test_auc"] == 100.0  # every positive scores above every negative
    assert metrics["confusion_matrix"] == [[1, 1], [0, 2]]


def test_auc_only_for_two_classes() -> None:
    probabilities = torch.eye(3)[[0, 1, 2, 2]]
    metrics = classification_metrics(probabilities, torch.tensor([0, 1, 2, 1]), "val")
    assert metrics["val_auc"] is None and metrics["val_acc"] == 75.0 and "confusion_matrix" not in metrics


def test_search_maximises_macro_f1_and_retraining_reports_every_metric(nas, workdir: Path) -> None:
    code, _, err = nas("search", *TINY, "dataset.num_classes=2", "evaluator.objective=val_f1", "run_dir=run")
    assert code == 0, err
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    trials = read_trials(workdir / "run")
    assert summary["objective"] == "val_f1"
    assert summary["best"]["val_f1"] == max(t["metrics"]["val_f1"] for t in trials)
    assert all({"val_acc", "val_f1", "val_auc"} <= set(t["metrics"]) for t in trials)
    retrained = json.loads((workdir / "run" / "retrain" / "metrics.json").read_text())
    assert {"test_acc", "test_f1", "test_auc", "confusion_matrix"} <= set(retrained)
    assert sum(map(sum, retrained["confusion_matrix"])) == 40  # the held-out test set of 200 samples
    code, out, _ = nas("show", "run")
    assert code == 0 and "best val_f1" in out and "confusion" in out


def test_auc_objective_needs_two_classes(nas) -> None:
    code, _, err = nas("search", *TINY, "evaluator.objective=val_auc", "run_dir=run")
    assert_one_line_error(code, err, "val_auc needs two classes")
    code, _, err = nas("search", *TINY, "evaluator.objective=loss", "run_dir=run")
    assert_one_line_error(code, err, "objective must be one of val_acc, val_f1, val_auc")


def test_scoring_on_the_cpu_runs_batches_of_256_with_the_probabilities_of_larger_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CPU scores in batches of 256 (faster there than 1,024); the batch does not change what is predicted."""
    from torch import nn

    import nascli.evaluators.metrics as metrics
    from nascli.hardware import Hardware

    sizes = []
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    model.register_forward_pre_hook(lambda _, inputs: sizes.append(len(inputs[0])))
    x = torch.randn(600, 1, 8, 8)
    cpu = Hardware(device=torch.device("cpu"), amp_dtype=None, channels_last=False)
    probabilities = metrics.predict(model, x, cpu)
    assert sizes == [256, 256, 88]
    monkeypatch.setitem(metrics.EVAL_BATCH, "cpu", 1024)
    assert torch.allclose(metrics.predict(model, x, cpu), probabilities, atol=1e-6) and sizes[3:] == [600]
