"""The trial loop: keep the executor's slots busy with the strategy's proposals, checkpointed for resume."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, Optional

from nascli.errors import Stopped
from nascli.executors.base import Executor, Task
from nascli.goal import Goal
from nascli.records import PendingTrial, State, Trial
from nascli.seeding import derive_seed
from nascli.selection import Selection
from nascli.settings import SearchSettings
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

    With search.confirm_top=K, once the strategy's trials are done the K best architectures run again with
    search.confirm_seeds other seeds each (`repeat` trials, which the strategy is not told about); under
    search.max_seconds the strategy's proposals stop early enough to leave time for them at the pace measured.

    After every change it hands `save_state` a checkpoint: the strategy's state, the proposals in flight and
    the time spent. A trial is yielded (to be recorded) before the strategy is told its outcome, so a
    search killed at any point resumes from the checkpoint and the trial log without losing or repeating
    a trial. With `settings.ordered`, outcomes reach the strategy in proposal order, which makes the
    search reproducible whatever the number of workers; otherwise in the order trials finish.
    """

    def __init__(
        self, strategy: Strategy, space: SearchSpace, executor: Executor, seed: int, settings: SearchSettings,
        goal: Optional[Goal], save_state: Optional[Callable[[State], None]] = None,
    ) -> None:
        self.strategy, self.space, self.executor, self.seed, self.settings = strategy, space, executor, seed, settings
        self.goal, self.save_state = goal, save_state
        references = [space.hash(arch) for arch in space.references()]
        self.selection = Selection(goal, references, settings.reference_margin) if goal is not None else None
        self.next_id = 0
        self.pending: list[Pending] = []
        self.results: list[Trial] = []  # every finished trial, for the pace of the recent ones
        self.confirming: Optional[list[dict[str, Any]]] = None  # the confirming runs not started yet, once chosen
        self.log: Callable[[str], None] = lambda line: None
        self.elapsed_before = 0.0
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of search so far, across resumed sessions."""
        return self.elapsed_before + time.perf_counter() - self.start

    def restore(self, state: State, logged: dict[int, Trial], crashed: bool) -> None:
        """Continue from a checkpoint: proposals in flight that are in the log are told, the others run again.

        When the previous process died (`crashed`) rather than being interrupted, each trial it was running
        counts an attempt; one that reached MAX_ATTEMPTS is recorded as failed instead of killing this one too.
        """
        self.strategy.load_state_dict(state.strategy)
        self.next_id, self.elapsed_before = state.next_id, state.elapsed
        self.confirming = state.confirming
        pending_ids = {item.id for item in state.pending}
        self.results = [logged[i] for i in sorted(logged) if i not in pending_ids]
        if self.selection is not None:
            for trial in logged.values():
                self.selection.add(trial)
        for item in state.pending:
            pending = self._pending(item.id, Proposal(item.arch, item.budget), item.attempts, item.repeat)
            if item.id in logged:
                pending.logged = True
                pending.future = _done(logged[item.id])
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
                if self.selection is not None:
                    self.selection.add(trial)
                trial.elapsed = round(self.elapsed(), 3)
                if self.goal.constraints and trial.ok:
                    trial.feasible = self.goal.feasible(trial.metrics)
                yield trial
            self.results.append(trial)
            if item.task.repeat is None:
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
        """Propose work for every free slot (or, once the strategy's trials are done, confirming runs), checkpoint,
        then start it."""
        if self.confirming is None:
            self._propose()
            if not self.pending and self.settings.confirm_top:
                self.confirming = self._confirming_runs()
        max_seconds = self.settings.max_seconds
        if self.confirming and max_seconds is not None and self.elapsed() >= max_seconds:
            self.log(f"search.max_seconds={max_seconds:g} is spent: {len(self.confirming)} confirming trials left out")
            self.confirming = []
        while self.confirming and len(self.pending) < self._capacity():
            run = self.confirming.pop(0)
            self.pending.append(self._pending(self.next_id, Proposal(run["arch"], run["budget"]), repeat=run["repeat"]))
            self.next_id += 1
        if self.save_state is not None:
            self.save_state(State(
                self.next_id, round(self.elapsed(), 3),
                [PendingTrial(p.task.id, p.task.arch, p.task.budget, p.attempts, p.task.repeat) for p in self.pending],
                self.strategy.state_dict(), self.confirming,
            ))
        self._dispatch()

    def _propose(self) -> None:
        """Ask the strategy for a proposal per free slot while the trial limit and the time budget last."""
        deadline = self._deadline()
        limit = self.settings.trial_limit
        while len(self.pending) < self._capacity() and (limit is None or self.next_id < limit):
            if deadline is not None and self.elapsed() >= deadline:
                break
            self.strategy.pace = self._pace()
            proposal = self.strategy.ask()
            if proposal is None:  # nothing to propose now; asked again when a trial finishes
                break
            self.pending.append(self._pending(self.next_id, proposal))
            self.next_id += 1

    def _confirming_runs(self) -> list[dict[str, Any]]:
        """The runs that confirm the search's best architectures (as the selection ranks them) at their best trial's
        budget, a round of them per extra seed."""
        ranked, references = self.selection.to_confirm(self.settings.confirm_top)
        runs = [{"arch": t.arch, "budget": t.budget, "repeat": r}
                for r in range(1, self.settings.confirm_seeds + 1) for t in ranked + references]
        if runs:
            also = f" and {len(references)} of the space's references" if references else ""
            folds = " and validation folds" if self.settings.confirm_folds else ""
            self.log(f"confirming the {len(ranked)} best architectures{also} with {self.settings.confirm_seeds} "
                     f"more seeds{folds} each ({len(runs)} trials; search.confirm_top)")
        return runs

    def _deadline(self) -> Optional[float]:
        """The seconds of search after which the strategy proposes nothing more: search.max_seconds less the time
        the confirming runs, and the strategy's last trial, are expected to take (at most half of it)."""
        max_seconds = self.settings.max_seconds
        if max_seconds is None or not self.settings.confirm_top:
            return max_seconds
        per_trial = self._recent_pace()
        if per_trial is None:
            return max_seconds
        return max(max_seconds / 2, max_seconds - (self.confirming_planned() + 1) * per_trial)

    def confirming_planned(self) -> int:
        """At most how many confirming runs there will be: a round per extra seed of the K best and the references."""
        if not self.settings.confirm_top:
            return 0
        return (self.settings.confirm_top + len(self.space.references())) * self.settings.confirm_seeds

    def _recent_pace(self) -> Optional[float]:
        """Wall seconds per trial (all slots together) over the last (planned confirming runs) finished trials, or
        all when fewer (None before the first): a search climbs towards its best, often its slowest, networks,
        so its recent trials, not its first, show what confirming them will take."""
        finished = sorted(t.elapsed for t in self.results if t.elapsed is not None)
        if not finished:
            return None
        count = min(len(finished), self.confirming_planned())
        since = finished[-count - 1] if len(finished) > count else 0.0
        return (finished[-1] - since) / count

    def _pace(self) -> Pace:
        """The trials this search is expected to run: its limit, or fewer where search.max_seconds runs out first
        at the pace measured so far (wall seconds per finished trial, all slots together)."""
        limit, max_seconds = self.settings.trial_limit, self.settings.max_seconds
        finished = self.next_id - len(self.pending)
        if max_seconds is None:
            return Pace(limit, f"search.max_trials={limit}")
        deadline = self._deadline()
        spent = min(1.0, self.elapsed() / deadline)
        at_limit = Pace(limit, f"search.max_trials={limit}" if limit else "no trial has finished yet", spent)
        if finished == 0:
            return at_limit
        per_trial = self.elapsed() / finished
        fit = self.next_id + int(max(0.0, deadline - self.elapsed()) / per_trial)
        if limit is not None and fit >= limit:
            return at_limit
        confirming = " with time left to confirm the best" if deadline < max_seconds else ""
        return Pace(fit, f"about {fit} trials fit in search.max_seconds={max_seconds:g}{confirming} at "
                         f"{per_trial:.1f} s per trial", spent)

    def _pending(self, trial_id: int, proposal: Proposal, attempts: int = 0, repeat: Optional[int] = None) -> Pending:
        """Work for a slot; a confirming run (`repeat`) gets a seed of its own and, with confirm_folds, its fold.

        Every architecture trains with the same seed (each repeat with its own): common random numbers, as
        NAS-Bench-201 trains every cell with the same seeds, so that trials differ by their architecture and
        not by the draw of initial weights and batches."""
        key = self.space.hash(proposal.arch)
        seed = derive_seed(self.seed, "trial" if repeat is None else f"repeat{repeat}")
        fold = repeat if repeat is not None and self.settings.confirm_folds else 0
        return Pending(Task(trial_id, proposal.arch, key, proposal.budget, seed, repeat, fold), attempts=attempts)

    def _capacity(self) -> int:
        """How many proposals may be in flight: one per usable slot, and one when none is left, so that a search
        whose every slot was given up stops with an error (resumable) rather than ending as if it were done."""
        return max(1, len(self.executor.usable_slots()))

    def _dispatch(self) -> None:
        """Start waiting proposals, oldest first, on free slots."""
        usable = self.executor.usable_slots()
        busy = {item.slot for item in self.pending if item.slot is not None}
        free = [slot for slot in usable if slot not in busy]
        for item in self.pending:
            if item.future is None and free:
                item.slot = free.pop(0)
                item.future = self.executor.submit(item.slot, item.task)
        if not usable and any(item.future is None for item in self.pending):
            raise Stopped("every trial slot was given up (no machine could start its worker again); make room for "
                          "its workers")


def _done(trial: Trial) -> Future:
    future: Future = Future()
    future.set_result(trial)
    return future
