"""What executors share: a task, the evaluation of a task into a trial record, and the slot interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Optional

import torch

from nascli.errors import TrialFailed, first_line
from nascli.evaluators.base import Evaluator
from nascli.records import Trial
from nascli.spaces.base import Arch

EvaluatorMaker = Callable[[str, int], Evaluator]  # (device, CPU threads) -> the worker's evaluator


@dataclass(frozen=True)
class Task:
    """One trial to run: its id, architecture (and its hash), budget, seed and, for a confirming run, its repeat and
    the validation fold it is scored on (0: the validation split)."""

    id: int
    arch: Arch
    hash: str
    budget: Optional[float]
    seed: int
    repeat: Optional[int] = None
    fold: int = 0

    def trial(self, status: str, metrics: dict[str, Any], error: Optional[str] = None) -> Trial:
        """The record of this task's trial; a learning curve among the metrics becomes the trial's own."""
        metrics = dict(metrics)
        curve = metrics.pop("curve", None)
        return Trial(self.id, self.arch, self.hash, status, metrics, self.budget, self.seed, error=error,
                     repeat=self.repeat, curve=curve)

    def failed(self, reason: str) -> Trial:
        """The record of this task failing for `reason`."""
        return self.trial("failed", {}, reason)


def failure_reason(exc: Exception) -> str:
    """One line saying why a trial failed."""
    if isinstance(exc, TrialFailed):
        return str(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        return "out of GPU memory"
    if isinstance(exc, MemoryError):
        return "out of memory"
    return f"{type(exc).__name__}: {first_line(exc)}"


def run_task(evaluator: Evaluator, task: Task) -> Trial:
    """Evaluate a task into a trial record; any error inside the trial is recorded as its failure, not raised."""
    try:
        metrics = evaluator.evaluate(task.arch, task.seed, task.budget, task.fold)
    except Exception as exc:  # a trial's failure must never end the search
        return task.failed(failure_reason(exc))
    return task.trial("ok", metrics)


def settle(inner: Future, task: Task, lost: type[BaseException], on_lost: Callable[[], str]) -> Future:
    """The trial record from a worker's future; if the worker died (`lost`), a failed trial for the reason `on_lost`
    gives as it replaces the worker (or gives its slot up)."""
    result: Future = Future()

    def finished(done: Future) -> None:
        try:
            result.set_result(done.result())
        except lost:
            result.set_result(task.failed(on_lost()))
        except Exception as exc:  # e.g. a result that could not be sent back: the trial failed, the search goes on
            result.set_result(task.failed(failure_reason(exc)))

    inner.add_done_callback(finished)
    return result


class Executor(ABC):
    """Runs tasks on `slots` slots, a task at a time each; an executor may give a slot up (see usable_slots)."""

    slots: int = 1

    def usable_slots(self) -> list[int]:
        """The slots that take tasks: all of them unless the executor gave one up (a worker no machine could start)."""
        return list(range(self.slots))

    @abstractmethod
    def submit(self, slot: int, task: Task) -> Future:
        """Start `task` on a free `slot`; the future's result is the trial record."""

    def close(self) -> None:
        """Stop the workers (running tasks are abandoned)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
