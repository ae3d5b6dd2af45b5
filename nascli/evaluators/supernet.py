"""Evaluate with inherited weights: score each candidate as a path of a trained supernet.

The supernet is this run's (supernet.pt, trained before the trials by a one-shot strategy: strategy=spos or
strategy=darts) or another run's (`evaluator.supernet=RUN_DIR`), fine-tuned on this run's data for
`evaluator.epochs` when asked. Scoring a path recomputes its batch-norm statistics on a few training batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from nascli.data.base import Inputs, batch_parts
from nascli.errors import TrialFailed, UserError, require
from nascli.evaluators.base import Evaluator
from nascli.evaluators.metrics import OBJECTIVES, evaluate_model
from nascli.evaluators.profile import count_flops, count_params
from nascli.evaluators.supernet_training import Supernets, build_supernet, train_paths
from nascli.registry import register
from nascli.rundir import SUPERNET, RunDir
from nascli.settings import TrainSettings
from nascli.spaces.base import Arch


@dataclass
class SupernetEvaluatorSettings(TrainSettings):
    """Which supernet scores the paths, its fine-tuning on this run's data, and how a path is scored."""

    MIN_EPOCHS: ClassVar[int] = 0

    supernet: Optional[str] = None  # a run directory whose supernet.pt is taken; null: this run's (spos, darts)
    epochs: int = 0  # with supernet: epochs of fine-tuning on random paths of this run's data (0: used as it is)
    calibration_batches: int = 8  # training batches that recompute a path's batch-norm statistics before scoring
    objective: str = "val_acc"  # what the strategy maximises: val_acc, val_f1 (macro) or val_auc (two classes)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.calibration_batches >= 0, "calibration_batches must be >= 0")
        require(self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")


@torch.no_grad()
def recalibrate(model: nn.Module, x: Inputs, batch_size: int, batches: int, generator: torch.Generator) -> None:
    """Recompute the batch-norm statistics of the model's current path on `batches` random training batches."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches == 0:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration batches
    model.train()
    for _ in range(batches):
        rows = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=generator, device=x.device)
        model(*batch_parts(x[rows]))
    model.eval()


@register("evaluator", "supernet")
class SupernetEvaluator(Evaluator):
    """Scores each candidate on the validation split with the weights it inherits from a trained supernet."""

    Settings = SupernetEvaluatorSettings
    needs_supernet = True

    def __init__(self, settings: SupernetEvaluatorSettings, **dependencies: Any) -> None:
        super().__init__(settings, **dependencies)
        self.objective = settings.objective
        # built now, so that a space without a supernet is refused before any work
        self.net = build_supernet(self.space, self.data, self.hardware, 0)

    @classmethod
    def check(cls, settings: SupernetEvaluatorSettings) -> None:
        if settings.supernet is not None:
            source = RunDir(Path(settings.supernet).expanduser())
            if not source.file(SUPERNET).is_file():
                raise UserError(f"evaluator.supernet {settings.supernet} holds no {SUPERNET}; name a run that trained "
                                "a supernet (strategy=spos or strategy=darts)")

    def prepare(self, run: RunDir, seed: int) -> None:
        """Load the supernet: this run's, or another run's taken (and fine-tuned) into this run's supernet.pt."""
        supernets = Supernets(self.space, self.data, self.hardware, run)
        self.net = supernets.build(seed)
        state = supernets.load(self.net)  # None: it is taken from evaluator.supernet (the job was checked)
        if state is None or state["epoch"] < state["epochs"]:
            state = state or self._taken(supernets.space_config())
            train_paths(supernets, self.net, self.settings, state, seed)
        self.net.eval()

    def _taken(self, space_config: dict[str, Any]) -> dict[str, Any]:
        """Start from another run's supernet: every weight whose shape matches (the head and stem may not)."""
        source = RunDir(Path(self.settings.supernet).expanduser())
        state = source.load_supernet()
        if state["space"] != space_config:
            raise UserError(f"evaluator.supernet {self.settings.supernet} was trained for space {state['space']}, "
                            f"not this run's {space_config}")
        own = self.net.state_dict()
        matching = {k: v for k, v in state["state_dict"].items() if k in own and own[k].shape == v.shape}
        if len(matching) < len(own) and self.settings.epochs == 0:
            raise UserError(f"the supernet of {self.settings.supernet} was trained on other inputs or classes; "
                            "set evaluator.epochs to fine-tune its new layers on this data")
        self.net.load_state_dict({**own, **matching})
        return {"epoch": 0, "epochs": self.settings.epochs}

    def evaluate(self, arch: Arch, seed: int, budget: Optional[float] = None, fold: int = 0) -> dict[str, Any]:
        data, hardware = self.data, self.hardware
        self.net.use(arch)
        generator = torch.Generator(device=data.train_x.device).manual_seed(seed)
        try:
            recalibrate(self.net, data.train_x, self.settings.batch_size, self.settings.calibration_batches, generator)
            scores = evaluate_model(self.net, data.val_x, data.val_y, hardware, "val")
        except torch.OutOfMemoryError:
            raise TrialFailed("out of memory") from None
        model = self.space.build(arch, data.input_shape, data.num_classes, data.vocab_size)
        return {**scores, "one_shot": True, "params": count_params(model),
                "flops": count_flops(model, data.input_shape, torch.device("cpu"), vocab_size=data.vocab_size)}
