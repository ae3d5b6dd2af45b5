"""The trial loop: keep the executor's slots busy with the strategy's proposals, checkpointed for resume."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, Optional

from nascli.config import SearchSettings
from nascli.executors.base import Executor, Task
from nascli.goal import Goal
from nascli.rundir import Trial
from nascli.seeding import derive_seed
from nascli.spaces.base import SearchSpace
from nascli.strategies.base import Outcome, Pace, Proposal, Strategy

MAX_ATTEMPTS = 2  # a trial in flight when the search process died this often is recorded as failed, not run again


@dataclass
class Pending:
    """A proposal the strategy has not been told about yet.

    `future` is None while it waits for a free slot; `logged` marks a trial read back from the log, which
    the strategy is told about but which is not recorded again; `attempts` counts the search processes that
    died while it ran.
    """

    task: Task
    future: Optional[Future] = None
    slot: Optional[int] = None
    logged: bool = False
    attempts: int = 0


class Scheduler:
    """Asks the strategy for work while a slot is free and the budget lasts; yields each finished trial.

    After every change it hands `save_state` a checkpoint: the strategy's state, the proposals in flight and
    the time spent. A trial is yielded (to be recorded) before the strategy is told its outcome, so a
    search killed at any point resumes from the checkpoint and the trial log without losing or repeating
    a trial. With `settings.ordered`, outcomes reach the strategy in proposal order, which makes the
    search reproducible whatever the number of workers; otherwise in the order trials finish.
    """

    def __init__(
        self, strategy: Strategy, space: SearchSpace, executor: Executor, seed: int, settings: SearchSettings,
        goal: Goal, save_state: Optional[Callable[[dict[str, Any]], None]] = None,
    ) -> None:
        self.strategy, self.space, self.executor, self.seed, self.settings = strategy, space, executor, seed, settings
        self.goal, self.save_state = goal, save_state
        self.next_id = 0
        self.pending: list[Pending] = []
        self.elapsed_before = 0.0
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of search so far, across resumed sessions."""
        return self.elapsed_before + time.perf_counter() - self.start

    def restore(self, state: dict[str, Any], logged: dict[int, Trial], crashed: bool) -> None:
        """Continue from a checkpoint: proposals in flight that are in the log are told, the others run again.

        When the previous process died (`crashed`) rather than being interrupted, each trial it was running
        counts an attempt; one that reached MAX_ATTEMPTS is recorded as failed instead of killing this one too.
        """
        self.strategy.load_state_dict(state["strategy"])
        self.next_id, self.elapsed_before = state["next_id"], state["elapsed"]
        for item in state["pending"]:
            pending = self._pending(item["id"], Proposal(item["arch"], item.get("budget")), item.get("attempts", 0))
            if item["id"] in logged:
                pending.logged = True
                pending.future = _done(logged[item["id"]])
            elif crashed:
                pending.attempts += 1
                if pending.attempts >= MAX_ATTEMPTS:
                    reason = f"the search process died {pending.attempts} times while this trial ran (out of memory?)"
                    pending.future = _done(pending.task.failed(reason))
            self.pending.append(pending)

    def run(self) -> Iterator[Trial]:
        """Run until the budget is spent or the strategy has nothing left; yield each new trial record."""
        self._fill()
        while self.pending:
            item = self._next_finished()
            self.pending.remove(item)
            trial: Trial = item.future.result()
            if not item.logged:
                trial.elapsed = round(self.elapsed(), 3)
                if self.goal.constraints and trial.ok:
                    trial.feasible = self.goal.feasible(trial.metrics)
                yield trial
            proposal, outcome = Proposal(item.task.arch, item.task.budget), self._outcome(trial)
            self.strategy.observe(proposal, outcome)
            self.strategy.tell(proposal, outcome)
            self._fill()

    def _outcome(self, trial: Trial) -> Outcome:
        """What the strategy learns: the objectives of a successful, feasible trial (the first as `objective`)."""
        values = self.goal.values(trial.metrics) if trial.ok and self.goal.feasible(trial.metrics) else None
        return Outcome(values[0] if values else None, trial.metrics, values)

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
            self.strategy.pace = self._pace()
            proposal = self.strategy.ask()
            if proposal is None:  # nothing to propose now; asked again when a trial finishes
                break
            self.pending.append(self._pending(self.next_id, proposal))
            self.next_id += 1
        if self.save_state is not None:
            self.save_state({
                "next_id": self.next_id,
                "elapsed": round(self.elapsed(), 3),
                "pending": [{"id": p.task.id, "arch": p.task.arch, "budget": p.task.budget, "attempts": p.attempts}
                            for p in self.pending],
                "strategy": self.strategy.state_dict(),
            })
        self._dispatch()

    def _pace(self) -> Pace:
        """The trials this search is expected to run: its limit, or fewer where search.max_seconds runs out first
        at the pace measured so far (wall seconds per finished trial, all slots together)."""
        limit, max_seconds = self.settings.max_trials, self.settings.max_seconds
        finished = self.next_id - len(self.pending)
        if max_seconds is None:
            return Pace(limit, f"search.max_trials={limit}")
        spent = min(1.0, self.elapsed() / max_seconds)
        if finished == 0:
            return Pace(limit, f"search.max_trials={limit}", spent)
        per_trial = self.elapsed() / finished
        fit = self.next_id + int(max(0.0, max_seconds - self.elapsed()) / per_trial)
        if fit >= limit:
            return Pace(limit, f"search.max_trials={limit}", spent)
        return Pace(fit, f"about {fit} trials fit in search.max_seconds={max_seconds:g} at {per_trial:.1f} s per trial",
                    spent)

    def _pending(self, trial_id: int, proposal: Proposal, attempts: int = 0) -> Pending:
        key = self.space.hash(proposal.arch)
        return Pending(Task(trial_id, proposal.arch, key, proposal.budget, derive_seed(self.seed, key)), attempts=attempts)

    def _dispatch(self) -> None:
        """Start waiting proposals, oldest first, on free slots."""
        busy = {item.slot for item in self.pending if item.slot is not None}
        free = [slot for slot in range(self.executor.slots) if slot not in busy]
        for item in self.pending:
            if item.future is None and free:
                item.slot = free.pop(0)
                item.future = self.executor.submit(item.slot, item.task)


def _done(trial: Trial) -> Future:
    future: Future = Future()
    future.set_result(trial)
    return future
