"""Real datasets end to end (slow; run with `pytest -m slow`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import read_trials

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_search_and_retrain(nas, workdir: Path) -> None:
    code, _, err = nas("search", "dataset=fashion_mnist", "space=chain", "strategy=evolution",
                       "search.max_trials=2", "evaluator.epochs=1", "retrain.epochs=1", "run_dir=run")
    assert code == 0, err
    assert len(read_trials(workdir / "run")) == 2
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_acc"] > 70
