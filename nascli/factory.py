"""The one place that builds components from a validated config: space, strategy, data, evaluator, executor."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from nascli.config import RunConfig, component, validate
from nascli.data.base import DataSplits
from nascli.evaluators.base import Evaluator
from nascli.executors.base import Executor
from nascli.hardware import Hardware, cpu_threads, resolve_hardware
from nascli.registry import lookup, names
from nascli.rundir import RunDir
from nascli.spaces.base import SearchSpace
from nascli.strategies.base import Strategy


def build_space(cfg: RunConfig) -> SearchSpace:
    """The search space."""
    return cfg.space.cls(cfg.space.settings)


def space_of(config: Any) -> SearchSpace:
    """The search space a stored config (a run directory's, read as data) names."""
    chosen = component("space", config.get("space"))
    return chosen.cls(chosen.settings)


def build_strategy(cfg: RunConfig, space: SearchSpace) -> Strategy:
    """The search strategy, seeded with the run's seed."""
    return cfg.strategy.cls(cfg.strategy.settings, space=space, seed=cfg.seed)


def multi_objective_strategies() -> list[str]:
    """The strategies that search for several objectives at once."""
    return [name for name in names("strategy") if lookup("strategy", name).multi_objective]


def check_data(cfg: RunConfig) -> None:
    """Raise UserError now if the dataset cannot be found (cheap)."""
    cfg.dataset.cls(cfg.dataset.settings).check()


def load_data(cfg: RunConfig, hardware: Hardware) -> DataSplits:
    """The dataset's splits on the hardware's device."""
    return cfg.dataset.cls(cfg.dataset.settings).load(hardware.device).to(hardware.device)


def epoch_seconds_of_trials(cfg: RunConfig) -> Optional[float]:
    """The seconds per epoch a trial may train when the evaluator's `epoch_seconds` is null: the retraining's,
    retrain.max_seconds / retrain.epochs, so that a trial is a scaled-down retraining (None: no time limit)."""
    retrain = cfg.retrain
    if not retrain.enabled or retrain.max_seconds is None:
        return None
    return retrain.max_seconds / retrain.epochs


def build_evaluator(
    cfg: RunConfig, space: SearchSpace, hardware: Hardware, data: Optional[DataSplits] = None
) -> Evaluator:
    """The evaluator, with the data it needs loaded onto the device unless given."""
    if data is None and cfg.evaluator.cls.needs_data:
        data = load_data(cfg, hardware)
    settings = cfg.evaluator.settings
    if getattr(settings, "epoch_seconds", math.inf) is None:
        settings = dataclasses.replace(settings, epoch_seconds=epoch_seconds_of_trials(cfg))
    return cfg.evaluator.cls(settings, space=space, data=data, hardware=hardware)


def build_worker_evaluator(config: dict[str, Any], device: Optional[str], threads: Optional[int]) -> Evaluator:
    """Inside a worker: the evaluator of a run's resolved config, with its data on the worker's device."""
    cfg = validate(OmegaConf.create(config))
    hardware = resolve_hardware(cfg.hardware, device, threads)
    evaluator = build_evaluator(cfg, build_space(cfg), hardware)
    evaluator.prepare(RunDir(Path(cfg.run_dir)), cfg.seed)
    return evaluator


def build_executor(cfg: RunConfig, evaluator: Evaluator, devices: list[str]) -> Executor:
    """Trials in this process when one slot on its device suffices, else in worker processes or on Ray."""
    if cfg.hardware.executor == "ray":
        from nascli.executors.ray import RayExecutor

        return RayExecutor(OmegaConf.to_container(cfg.raw), cfg.hardware)
    if devices == [str(evaluator.hardware.device)]:
        from nascli.executors.inline import InlineExecutor

        return InlineExecutor(evaluator)
    from nascli.executors.processes import ProcessExecutor

    return ProcessExecutor(OmegaConf.to_container(cfg.raw), devices, cpu_threads(cfg.hardware, len(devices)))
