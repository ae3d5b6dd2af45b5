"""The one place that builds components from a validated config: space, strategy, data, evaluator, executor."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from nascli.config import RunConfig, validate
from nascli.data.base import DataSplits
from nascli.evaluators.base import Evaluator
from nascli.executors.base import EvaluatorMaker, Executor
from nascli.executors.inline import InlineExecutor
from nascli.executors.processes import ProcessExecutor
from nascli.executors.ray import RayExecutor
from nascli.hardware import Hardware, cpu_threads, resolve_hardware
from nascli.registry import lookup, names
from nascli.rundir import RunDir
from nascli.spaces.base import SearchSpace
from nascli.strategies.base import Strategy


def build_space(cfg: RunConfig) -> SearchSpace:
    """The search space."""
    return cfg.space.cls(cfg.space.settings)


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


def build_evaluator(
    cfg: RunConfig, space: SearchSpace, hardware: Hardware, data: Optional[DataSplits] = None
) -> Evaluator:
    """The evaluator, with the data it needs loaded onto the device unless given."""
    if data is None and cfg.evaluator.cls.needs_data:
        data = load_data(cfg, hardware)
    return cfg.evaluator.cls(cfg.evaluator.settings, space=space, data=data, hardware=hardware)


def worker_evaluator_maker(cfg: RunConfig) -> EvaluatorMaker:
    """What a worker calls with its device and threads to build its own evaluator: picklable, for worker processes
    and Ray actors, since it holds only the run's resolved config as plain data."""
    return partial(build_worker_evaluator, OmegaConf.to_container(cfg.raw))


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
        return RayExecutor(worker_evaluator_maker(cfg), cfg.hardware)
    if devices == [str(evaluator.hardware.device)]:
        return InlineExecutor(evaluator)
    return ProcessExecutor(worker_evaluator_maker(cfg), devices, cpu_threads(cfg.hardware, len(devices)))
