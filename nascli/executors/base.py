"""What executors share: a task, the evaluation of a task into a trial record, and the slot interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import OmegaConf

from nascli.config import validate
from nascli.errors import TrialFailed
from nascli.evaluators.base import Evaluator
from nascli.hardware import resolve_hardware
from nascli.spaces.base import Arch


@dataclass(frozen=True)
class Task:
    """One trial to run: its id, architecture (and its hash), budget and seed."""

    id: int
    arch: Arch
    hash: str
    budget: Optional[float]
    seed: int


def build_worker_evaluator(config: dict[str, Any], device: Optional[str], threads: Optional[int]) -> Evaluator:
    """Inside a worker: the evaluator of a run's resolved config, with its data on the worker's device."""
    cfg = validate(OmegaConf.create(config))
    hardware = resolve_hardware(cfg.hardware, device, threads)
    data = cfg.dataset.create().load().to(hardware.device) if cfg.evaluator.cls.needs_data else None
    return cfg.evaluator.create(space=cfg.space.create(), data=data, hardware=hardware)


def _trial(task: Task, **outcome: Any) -> dict[str, Any]:
    return {"id": task.id, "arch": task.arch, "hash": task.hash, "budget": task.budget, **outcome, "seed": task.seed}


def run_task(evaluator: Evaluator, task: Task) -> dict[str, Any]:
    """Evaluate a task into a trial record; a trial that fails (out of memory, diverged) is recorded, not raised."""
    try:
        return _trial(task, status="ok", metrics=evaluator.evaluate(task.arch, task.seed, task.budget))
    except TrialFailed as exc:
        return _trial(task, status="failed", metrics={}, error=str(exc))


def settle(
    inner: Future, task: Task, lost: type[BaseException], reason: str, replace_worker: Callable[[], None]
) -> Future:
    """The trial record from a worker's future; if the worker died (`lost`), a failed trial and a new worker."""
    result: Future = Future()

    def finished(done: Future) -> None:
        try:
            result.set_result(done.result())
        except lost:
            replace_worker()
            result.set_result(_trial(task, status="failed", metrics={}, error=reason))
        except BaseException as exc:  # the coordinator re-raises it from result()
            result.set_exception(exc)

    inner.add_done_callback(finished)
    return result


class Executor(ABC):
    """Runs tasks on a fixed number of slots; a slot runs one task at a time."""

    slots: int = 1

    @abstractmethod
    def submit(self, slot: int, task: Task) -> Future:
        """Start `task` on a free `slot`; the future's result is the trial record."""

    def close(self) -> None:
        """Stop the workers (running tasks are abandoned)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
