"""Evaluate by training: fit on the train split, score on the held-out validation split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from nascli.config import TrainSettings, require
from nascli.errors import TrialFailed
from nascli.evaluators.base import Evaluator
from nascli.evaluators.profile import count_flops, count_params, measure_latency
from nascli.evaluators.training import accuracy, train
from nascli.spaces.base import Arch
from nascli.registry import register


@dataclass
class TrainEvaluatorSettings(TrainSettings):
    """Training settings per candidate, plus the batch size at which latency is measured."""

    latency_batch: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.latency_batch >= 1, "latency_batch must be at least 1")


@register("evaluator", "train")
class TrainEvaluator(Evaluator):
    """Trains each candidate for `epochs` (or its budget in epochs) and reports validation accuracy."""

    Settings = TrainEvaluatorSettings

    def evaluate(self, arch: Arch, seed: int, budget: Optional[float] = None) -> dict[str, Any]:
        data, hardware = self.data, self.hardware
        epochs = max(1, round(budget)) if budget is not None else self.settings.epochs
        torch.manual_seed(seed)
        model = self.space.build(arch, data.input_shape, data.num_classes).to(hardware.device)
        if hardware.channels_last:
            model = model.to(memory_format=torch.channels_last)
        try:
            seconds = train(
                model, data.train_x, data.train_y, self.settings, hardware, seed,
                epochs=epochs, crop_padding=data.crop_padding, hflip=data.hflip,
            )
            val_acc, val_top5 = accuracy(model, data.val_x, data.val_y, hardware)
            latency = measure_latency(model, data.input_shape, self.settings.latency_batch, hardware)
        except torch.OutOfMemoryError:
            raise TrialFailed("out of memory") from None
        return {
            "val_acc": val_acc,
            "val_top5": val_top5,
            "params": count_params(model),
            "flops": count_flops(model, data.input_shape, hardware.device),
            "latency_ms": latency,
            "train_seconds": seconds,
            "epochs": epochs,
        }
