"""The search's answer as trials arrive: the best trial, the Pareto front, and what confirming runs decide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from nascli.errors import UserError
from nascli.goal import Goal
from nascli.records import Best, Confirmation, Front, Summary, Trial
from nascli.rundir import RunDir


@dataclass
class Choice:
    """The trial the search answers with, worth `value` (its objective, or the mean of its runs once confirmed)."""

    trial: Trial
    value: float
    confirmed: Optional[list[float]] = None  # the objective of each of its runs, once confirming runs came in
    over: Optional[dict[str, Any]] = None  # the architecture with a better mean that a reference was kept over

    def record(self, space: str) -> Best:
        """best.json: the trial and, once confirming runs came in, how they chose it."""
        confirmed = None
        if self.confirmed:
            confirmed = Confirmation(len(self.confirmed), round(self.value, 6), self.confirmed, self.over)
        return Best(self.trial.arch, self.trial.hash, space, confirmed, chosen=self.trial)


class Selection:
    """Keeps the best trial and, with several objectives, the Pareto front as trials arrive.

    The best is the front member the goal's pick rule chooses (with one objective: the first trial with the
    best value); infeasible and failed trials never become it. Once confirming runs (search.confirm_top) have
    come in, the best is the confirmed architecture with the best mean objective over all its runs, none of
    them failed — or the best confirmed of the space's `references` (hashes) where that mean beats the
    reference's by no more than `margin` standard errors of the difference (the one-standard-error rule).
    """

    def __init__(self, goal: Goal, references: list[str] = (), margin: float = 0.0) -> None:
        self.goal, self.references, self.margin = goal, list(references), margin
        self.objective = goal.primary.metric
        self.trials: list[Trial] = []  # the successful trials of the strategy, in arrival order
        self.runs: dict[tuple[str, Optional[float]], list[Trial]] = {}  # every run of an architecture at a budget
        self.front: list[Trial] = []
        self.best: Optional[Choice] = None
        self.changed = False  # whether the last trial taken in may have changed the best (or the front)

    def add(self, trial: Trial) -> None:
        """Take in a finished trial."""
        self.changed = self._add(trial)

    def _add(self, trial: Trial) -> bool:
        self.runs.setdefault((trial.hash, trial.budget), []).append(trial)
        if trial.repeat is not None:
            return self._confirm()
        if not trial.ok:
            return False
        missing = [name for name in self.goal.metrics if name not in trial.metrics]
        if missing:
            raise UserError(f"the search's objectives and constraints name {', '.join(missing)}, which trials do "
                            f"not record; they record: {', '.join(sorted(trial.metrics))}")
        self.trials.append(trial)
        metrics = [t.metrics for t in self.trials]
        front = self.goal.front(metrics)
        self.front = [self.trials[i] for i in front]
        chosen = self.goal.pick(metrics, front)
        if chosen is not None and (self.best is None or self.trials[chosen] is not self.best.trial):
            self.best = Choice(self.trials[chosen], self.trials[chosen].metrics[self.objective])
            return True
        return self.goal.multi

    def to_confirm(self, top: int) -> tuple[list[Trial], list[Trial]]:
        """The `top` best feasible architectures (each by its best trial) and the space's references among the rest
        that ran: what confirming runs train again."""
        best: dict[str, Trial] = {}
        for trial in self.trials:
            if trial.repeat is None and self.goal.feasible(trial.metrics):
                value = self.goal.values(trial.metrics)[0]
                if trial.hash not in best or value > self.goal.values(best[trial.hash].metrics)[0]:
                    best[trial.hash] = trial
        ranked = sorted(best.values(), key=lambda t: -self.goal.values(t.metrics)[0])[:top]
        chosen = {t.hash for t in ranked}
        return ranked, [best[key] for key in self.references if key in best and key not in chosen]

    def _confirm(self) -> bool:
        """Choose, among the architectures with confirming runs, the one with the best mean objective; a reference
        of the space within `margin` standard errors of it is chosen instead."""
        confirmed = [runs for runs in self.runs.values()
                     if len(runs) > 1 and all(t.ok for t in runs) and self.goal.feasible(runs[0].metrics)]
        if not confirmed:
            return False

        def scores(runs: list[Trial]) -> np.ndarray:
            return np.array([self.goal.values(t.metrics)[0] for t in runs])

        runs = max(confirmed, key=lambda runs: scores(runs).mean())
        references = [r for r in confirmed if r[0].hash in self.references]
        over = None
        if references and runs[0].hash not in self.references:
            reference = max(references, key=lambda runs: scores(runs).mean())
            a, b = scores(runs), scores(reference)
            error = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
            if a.mean() - b.mean() <= self.margin * error:
                mean = float(np.mean([t.metrics[self.objective] for t in runs]))
                over = {"hash": runs[0].hash, "mean": round(mean, 6), "standard_error": round(error, 6)}
                runs = reference
        values = [t.metrics[self.objective] for t in runs]
        self.best = Choice(runs[0], float(np.mean(values)), values, over)
        return True

    def hypervolume(self) -> dict[str, Any]:
        """The front's hypervolume with the bounds it is scaled by (several objectives)."""
        metrics = [t.metrics for t in self.trials]
        bounds = self.goal.observed_bounds(metrics) if self.front else {}
        return {"value": round(self.goal.hypervolume(metrics, bounds), 6) if self.front else 0.0,
                "bounds": {name: list(pair) for name, pair in bounds.items()},
                "note": "objectives scaled to [0, 1] between the best and worst feasible values of this run; "
                        "reference point at the worst corner"}


def write_answer(run: RunDir, summary: Summary, selection: Selection, space: str,
                 test_metric: Optional[str] = None) -> None:
    """Write the selection's best trial to best.json (and its front to front.json with several objectives) and the
    summary; `test_metric` names a metric that is already a test score (a table's)."""
    goal = selection.goal
    if goal.multi:
        volume = selection.hypervolume()
        summary.front_size, summary.hypervolume = len(selection.front), volume
        run.write_front(Front(**goal.describe(), hypervolume=volume, trials=selection.front))
    best = selection.best
    if best is None:
        return
    run.write_best(best.record(space))
    summary.best = {"id": best.trial.id, "hash": best.trial.hash, summary.objective: best.value,
                    **({"runs": len(best.confirmed)} if best.confirmed else {})}
    if test_metric:
        summary.test_acc = best.trial.metrics.get(test_metric)
