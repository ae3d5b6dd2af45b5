"""The interface of evaluators: an architecture and an optional budget in, metrics out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Optional

from nascli.data.base import DataSplits
from nascli.hardware import Hardware
from nascli.rundir import RunDir
from nascli.spaces.base import Arch, SearchSpace


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

    def prepare(self, run: RunDir, seed: int) -> None:
        """Get ready in the run's directory before the first trial (e.g. train a supernet); most need nothing."""

    @abstractmethod
    def evaluate(self, arch: Arch, seed: int, budget: Optional[float] = None) -> dict[str, Any]:
        """Metrics of `arch` (at least the objective); raises TrialFailed when the trial cannot finish."""
