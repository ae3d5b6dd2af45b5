"""Evaluate by training: fit on the train split, score on the held-out validation split."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from nascli.data.base import DataSplits
from nascli.errors import TrialFailed, UserError, require, require_extra
from nascli.evaluators.base import Evaluator
from nascli.evaluators.fitting import Start, fit_and_score
from nascli.evaluators.metrics import OBJECTIVES
from nascli.evaluators.profile import LATENCY_BATCH, measure_latency, measure_latency_onnxruntime
from nascli.evaluators.training import TimeLimit
from nascli.registry import register
from nascli.rundir import RunDir
from nascli.settings import TrainSettings
from nascli.spaces.base import Arch
from nascli.spaces.stored import weight_source


@dataclass
class TrainEvaluatorSettings(TrainSettings):
    """Training settings per candidate, plus the batch size at which latency is measured."""

    latency_batch: int = LATENCY_BATCH  # samples per timed forward pass of the latency measurement (1: one request)
    latency: str = "torch"  # torch: the network on the run's device; onnxruntime: exported to ONNX, ONNX Runtime (CPU)
    init: Optional[str] = None  # a run directory: each candidate inherits its model's (or supernet's) fitting weights
    objective: str = "val_acc"  # what the strategy maximises: val_acc, val_f1 (macro) or val_auc (two classes)
    max_seconds: Optional[float] = None  # a trial projected to train longer stops after its first steps, recorded failed
    # a trial trains at most the steps that fit in this many seconds per epoch of its budget (timed on its first
    # steps), its schedule compressed to them; null: as the retraining, retrain.max_seconds / retrain.epochs (no
    # limit without retrain.max_seconds); inf: no limit
    epoch_seconds: Optional[float] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.latency_batch >= 1, "latency_batch must be at least 1")
        require(self.latency in ("torch", "onnxruntime"), f"latency must be torch or onnxruntime, got {self.latency!r}")
        require(self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        require(self.max_seconds is None or (math.isfinite(self.max_seconds) and self.max_seconds > 0),
                "max_seconds must be a positive finite number (or null: no limit)")
        require(self.epoch_seconds is None or self.epoch_seconds > 0,
                "epoch_seconds must be positive (inf: no limit; null: as the retraining)")


@register("evaluator", "train")
class TrainEvaluator(Evaluator):
    """Trains each candidate for `epochs` (or its budget in epochs) and reports validation accuracy."""

    Settings = TrainEvaluatorSettings

    def __init__(self, settings: TrainEvaluatorSettings, **dependencies: Any) -> None:
        super().__init__(settings, **dependencies)
        self.objective = settings.objective
        self._inherited_from: Optional[Callable[[Arch], dict[str, torch.Tensor]]] = None  # evaluator.init's weights
        self._fold: tuple[int, Optional[DataSplits]] = (0, self.data)  # the splits of the last fold asked for
        if self.objective == "val_auc" and self.data is not None and self.data.num_classes != 2:
            raise UserError(f"evaluator.objective=val_auc needs two classes; this dataset has {self.data.num_classes}")

    @classmethod
    def check(cls, settings: TrainEvaluatorSettings) -> None:
        if settings.latency == "onnxruntime":  # exported by torch's dynamo exporter (onnxscript), run by ONNX Runtime
            require_extra("evaluator.latency=onnxruntime", "onnx", "onnxruntime", "onnxscript")
        if settings.init:
            RunDir(Path(settings.init).expanduser()).require_run()

    def _latency(self, model: torch.nn.Module) -> float:
        """Milliseconds per batch of `latency_batch` samples, as the `latency` setting measures them."""
        data = self.data
        if self.settings.latency == "onnxruntime":
            return measure_latency_onnxruntime(model, data.input_shape, self.settings.latency_batch,
                                               vocab_size=data.vocab_size)
        return measure_latency(model, data.input_shape, self.settings.latency_batch, self.hardware,
                               vocab_size=data.vocab_size)

    def _splits(self, fold: int) -> DataSplits:
        """The data with validation set `fold`, kept for the next trial (confirming runs come fold by fold)."""
        if self._fold[0] != fold:
            self._fold = (fold, self.data.resampled(fold))
        return self._fold[1]

    def evaluate(self, arch: Arch, seed: int, budget: Optional[float] = None, fold: int = 0) -> dict[str, Any]:
        data = self._splits(fold)
        epochs = max(1, round(budget)) if budget is not None else self.settings.epochs
        start = None
        if self.settings.init:
            if self._inherited_from is None:  # read the source once, at the first candidate
                self._inherited_from = weight_source(self.settings.init)
            start = Start(self.settings.init, self._inherited_from, strict=False)
        per_epoch, max_seconds = self.settings.epoch_seconds, self.settings.max_seconds
        fit = None
        if per_epoch is not None and math.isfinite(per_epoch):
            fit = TimeLimit(per_epoch * epochs, "evaluator.epoch_seconds", shorten=True)
        limits = tuple(limit for limit in (fit, max_seconds and TimeLimit(max_seconds, "evaluator.max_seconds")) if limit)
        try:
            fitted = fit_and_score(self.space, arch, data, self.settings, self.hardware, seed, epochs, self._latency,
                                   limits=limits, start=start)
        except torch.OutOfMemoryError:
            raise TrialFailed("out of memory") from None
        transfer = fitted.transfer
        return {
            **fitted.metrics,
            **({"inherited": len(transfer.copied) + len(transfer.adapted)} if transfer is not None else {}),
            **({"val_fold": fold} if data is not self.data else {}),
        }
