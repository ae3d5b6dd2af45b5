"""On a CUDA GPU: data on the device, bf16 and channels_last, several trials per GPU (skips without CUDA)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import TINY, read_trials

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
GPU = [o for o in TINY if not o.startswith("hardware")] + ["hardware=gpu"]


def test_search_on_a_gpu_runs_several_trials_per_gpu(nas, workdir: Path) -> None:
    code, _, err = nas("search", *GPU, "search.max_trials=6", "hardware.trials_per_gpu=3", "run_dir=run")
    assert code == 0, err
    record = json.loads((workdir / "run" / "run.json").read_text())
    assert record["trial_devices"] == [f"cuda:{g}" for g in range(torch.cuda.device_count()) for _ in range(3)]
    assert record["environment"]["machine"]["amp"] == "bfloat16" and record["environment"]["machine"]["channels_last"]
    trials = read_trials(workdir / "run")
    assert [t["id"] for t in trials] == list(range(6)) and all(t["status"] == "ok" for t in trials)


def test_a_gpu_search_resumes(nas, workdir: Path) -> None:
    assert nas("search", *GPU, "search.max_trials=2", "retrain.enabled=false", "run_dir=run")[0] == 0
    (workdir / "run" / "summary.json").unlink()
    assert nas("search", "--resume", "run", "search.max_trials=4")[0] == 0
    assert [t["id"] for t in read_trials(workdir / "run")] == [0, 1, 2, 3]
