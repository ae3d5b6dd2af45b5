"""Data larger than the memory budget streams from its host array batch by batch, with the same results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from conftest import TINY, read_trials, untimed
from nascli.config import load_config
from nascli.data.base import StreamedSamples


def test_streamed_batches_equal_the_in_memory_tensors() -> None:
    small = load_config(["dataset=synthetic", "dataset.num_samples=200", "dataset.shape=[2,6,6]"])
    streamed = load_config(["dataset=synthetic", "dataset.num_samples=200", "dataset.shape=[2,6,6]",
                            "dataset.max_memory_gb=1e-9"])
    a = small.dataset.cls(small.dataset.settings).load()
    b = streamed.dataset.cls(streamed.dataset.settings).load()
    assert not a.streamed and b.streamed and isinstance(b.train_x, StreamedSamples)
    assert b.input_shape == a.input_shape and len(b.val_x) == len(a.val_x)
    index = torch.tensor([5, 0, 17, 3])
    assert torch.equal(b.train_x[index], a.train_x[index])
    assert torch.equal(b.test_x[2:9], a.test_x[2:9])
    both = b.train_x.joined(b.val_x)
    assert torch.equal(both[torch.arange(len(both))], torch.cat([a.train_x, a.val_x]))


def test_a_streamed_search_gives_the_same_trials_and_retraining(nas, workdir: Path) -> None:
    args = [*TINY, "search.max_trials=2", "dataset.crop_padding=1"]
    assert nas("search", *args, "run_dir=memory")[0] == 0
    code, _, err = nas("search", *args, "dataset.max_memory_gb=1e-9", "run_dir=streamed")
    assert code == 0, err
    assert untimed(read_trials(workdir / "streamed")) == untimed(read_trials(workdir / "memory"))
    metrics = [json.loads((workdir / run / "retrain" / "metrics.json").read_text()) for run in ("memory", "streamed")]
    assert metrics[0]["test_acc"] == metrics[1]["test_acc"]
    assert metrics[0]["confusion_matrix"] == metrics[1]["confusion_matrix"]


def test_channel_statistics_are_those_of_the_whole_pool() -> None:
    from nascli.data.base import channel_stats

    x = np.random.default_rng(0).integers(0, 255, (9000, 3, 4, 4), dtype=np.uint8)
    mean, std = channel_stats(x)
    assert np.allclose(mean.flatten(), x.mean(axis=(0, 2, 3)), rtol=1e-6)
    assert np.allclose(std.flatten(), x.std(axis=(0, 2, 3)), rtol=1e-5)
