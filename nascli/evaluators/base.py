"""The interface of evaluators: an architecture and an optional budget in, metrics out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Optional

from nascli.data.base import DataSplits
from nascli.evaluators.profile import count_flops, count_params
from nascli.hardware import Hardware
from nascli.rundir import RunDir
from nascli.spaces.base import Arch, SearchSpace

PRE_TRAINING = ("params", "flops")  # metrics of a network that do not depend on its training


class Evaluator(ABC):
    """Scores architectures; `objective` names the metric strategies maximise.

    `test_metric` names a metric that already is a test score (a table's), reported when no retraining runs;
    `dataset_label` names the data the scores come from when it is not the configured dataset.
    """

    Settings: type
    objective: str = "val_acc"
    test_metric: Optional[str] = None
    dataset_label: Optional[str] = None
    needs_data: bool = True
    needs_supernet: bool = False  # scores paths of a supernet: a one-shot strategy's, or one taken from another run

    def __init__(
        self, settings: Any, space: SearchSpace, data: Optional[DataSplits], hardware: Hardware
    ) -> None:
        self.settings = settings
        self.space = space
        self.data = data
        self.hardware = hardware

    @classmethod
    def check(cls, settings: Any) -> None:
        """Raise UserError now if the settings name something unusable (cheap; called before any work starts)."""

    @classmethod
    def check_metrics(cls, settings: Any, names: list[str]) -> None:
        """Raise UserError now if the trials will not record one of `names` (when that is known before any trial)."""

    def prepare(self, run: RunDir, seed: int) -> None:
        """Get ready in the run's directory before the first trial (e.g. load the supernet whose paths it scores);
        most need nothing."""

    def pre_training_metrics(self) -> set[str]:
        """The metrics `known_metrics` gives: those of the untrained network (none without data to build it for)."""
        return set(PRE_TRAINING) if self.data is not None else set()

    def known_metrics(self, arch: Arch, names: list[str]) -> dict[str, Any]:
        """The metrics among `names` that are known before training, from the untrained network on the CPU."""
        wanted = [name for name in names if name in self.pre_training_metrics()]
        if not wanted:
            return {}
        data = self.data
        model = self.space.build(arch, data.input_shape, data.num_classes, data.vocab_size)
        counts = {"params": lambda: count_params(model),
                  "flops": lambda: count_flops(model, data.input_shape, "cpu", vocab_size=data.vocab_size)}
        return {name: counts[name]() for name in wanted}

    @abstractmethod
    def evaluate(self, arch: Arch, seed: int, budget: Optional[float] = None, fold: int = 0) -> dict[str, Any]:
        """Metrics of `arch` (at least the objective); raises TrialFailed when the trial cannot finish.

        `fold` > 0 asks for validation on another held-out part of the training data (DataSplits.resampled);
        evaluators that train use it, those that read scores (tables, proxies, supernets) score as for fold 0.
        """
