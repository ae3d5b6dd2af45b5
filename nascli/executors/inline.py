"""Run each trial in the coordinating process: one slot, no start-up cost."""

from __future__ import annotations

from concurrent.futures import Future

from nascli.evaluators.base import Evaluator
from nascli.executors.base import Executor, Task, run_task


class InlineExecutor(Executor):
    """Evaluates a task as it is submitted; the returned future is already done."""

    slots = 1

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator

    def submit(self, slot: int, task: Task) -> Future:
        future: Future = Future()
        future.set_result(run_task(self.evaluator, task))
        return future
