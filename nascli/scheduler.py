"""The trial loop: keep the executor's slots busy with the strategy's proposals, checkpointed for resume."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, Optional

from nascli.config import SearchSettings
from nascli.executors.base import Executor, Task
from nascli.strategies.base import Outcome, Proposal, Strategy


def derive_seed(seed: int, key: str) -> int:
    """A seed for one piece of work: fixed by the run seed and the work's key, not by its order."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16)


@dataclass
class Pending:
    """A proposal the strategy has not been told about yet.

    `future` is None while it waits for a free slot; `slot` is None for a trial read back from the log.
    """

    task: Task
    future: Optional[Future] = None
    slot: Optional[int] = None


class Scheduler:
    """Asks the strategy for work while a slot is free and the budget lasts; yields each finished trial.

    After every change it hands `save_state` a checkpoint: the strategy's state, the proposals in flight and
    the time spent. A trial is yielded (to be recorded) before the strategy is told its outcome, so a
    search killed at any point resumes from the checkpoint and the trial log without losing or repeating
    a trial. With `settings.ordered`, outcomes reach the strategy in proposal order, which makes the
    search reproducible whatever the number of workers; otherwise in the order trials finish.
    """

    def __init__(
        self, strategy: Strategy, executor: Executor, seed: int, settings: SearchSettings,
        objective: str, save_state: Optional[Callable[[dict[str, Any]], None]] = None,
    ) -> None:
        self.strategy, self.executor, self.seed, self.settings = strategy, executor, seed, settings
        self.objective, self.save_state = objective, save_state
        self.next_id = 0
        self.pending: list[Pending] = []
        self.elapsed_before = 0.0
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of search so far, across resumed sessions."""
        return self.elapsed_before + time.perf_counter() - self.start

    def restore(self, state: dict[str, Any], logged: dict[int, dict[str, Any]]) -> None:
        """Continue from a checkpoint: proposals in flight that are in the log are told, the others run again."""
        self.strategy.load_state_dict(state["strategy"])
        self.next_id, self.elapsed_before = state["next_id"], state["elapsed"]
        for item in state["pending"]:
            pending = self._pending(item["id"], Proposal(item["arch"], item["budget"]))
            if item["id"] in logged:
                pending.future = Future()
                pending.future.set_result(logged[item["id"]])
            self.pending.append(pending)

    def run(self) -> Iterator[dict[str, Any]]:
        """Run until the budget is spent or the strategy has nothing left; yield each new trial record."""
        self._fill()
        while self.pending:
            item = self._next_finished()
            self.pending.remove(item)
            trial = item.future.result()
            if item.slot is not None:  # not one read back from the log
                trial["elapsed"] = round(self.elapsed(), 3)
                yield trial
            objective = trial["metrics"].get(self.objective) if trial["status"] == "ok" else None
            self.strategy.tell(Proposal(item.task.arch, item.task.budget), Outcome(objective, trial["metrics"]))
            self._fill()

    def _next_finished(self) -> Pending:
        if self.settings.ordered:
            return self.pending[0]
        wait([item.future for item in self.pending if item.future], return_when=FIRST_COMPLETED)
        return next(item for item in self.pending if item.future and item.future.done())

    def _fill(self) -> None:
        """Propose work for every free slot, checkpoint, then start it."""
        max_seconds = self.settings.max_seconds
        while len(self.pending) < self.executor.slots and self.next_id < self.settings.max_trials:
            if max_seconds is not None and self.elapsed() >= max_seconds:
                break
            proposal = self.strategy.ask()
            if proposal is None:  # nothing to propose now; asked again when a trial finishes
                break
            self.pending.append(self._pending(self.next_id, proposal))
            self.next_id += 1
        if self.save_state is not None:
            self.save_state({
                "next_id": self.next_id,
                "elapsed": round(self.elapsed(), 3),
                "pending": [{"id": p.task.id, "arch": p.task.arch, "budget": p.task.budget} for p in self.pending],
                "strategy": self.strategy.state_dict(),
            })
        self._dispatch()

    def _pending(self, trial_id: int, proposal: Proposal) -> Pending:
        key = self.strategy.space.hash(proposal.arch)
        return Pending(Task(trial_id, proposal.arch, key, proposal.budget, derive_seed(self.seed, key)))

    def _dispatch(self) -> None:
        """Start waiting proposals, oldest first, on free slots."""
        busy = {item.slot for item in self.pending if item.slot is not None}
        free = [slot for slot in range(self.executor.slots) if slot not in busy]
        for item in self.pending:
            if item.future is None and free:
                item.slot = free.pop(0)
                item.future = self.executor.submit(item.slot, item.task)
