"""Bayesian optimisation: a Gaussian-process surrogate over architecture encodings, expected improvement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import moocore
import numpy as np
from scipy.stats import norm

from nascli.errors import require
from nascli.registry import register
from nascli.strategies.base import Outcome, Proposal, Strategy, StrategySettings
from nascli.surrogate import fit_gp
from nascli.warmstart import standardised


@dataclass
class BOSettings(StrategySettings):
    """Random start, then the candidate with the highest expected improvement under the surrogate."""

    initial: int = 25  # at most: never more than a third of the trials the search is expected to run
    # size of the wide candidate pool, used once the incumbent's neighbours are all tried (or with several objectives):
    # the parents' neighbours, topped up to this many with double mutants of the parents and random architectures
    candidates: int = 300
    # architectures the wide pool is built around: the best observed (several objectives: random members of the front)
    parents: int = 5
    # exploration margin (>= 0): expected improvement counts only gains beyond the best observed value plus xi,
    # in the objective's units (standardised ones under a warm start)
    xi: float = 0.0
    # with search.max_seconds: expected improvement per expected second of training (off until measured end to end)
    cost_aware: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.initial >= 2, "initial must be at least 2")
        require(self.candidates >= 1 and self.parents >= 1, "candidates and parents must be at least 1")
        require(self.xi >= 0, "xi must be >= 0")


@register("strategy", "bo")
class BayesianOptimisation(Strategy):
    """GP-BO: expected improvement over the incumbent's neighbours, then over mutants of the best and random ones.

    With several objectives, one GP per objective that is not known before training (a known one, such as a
    table's latency, is used exactly) and the candidate with the highest expected hypervolume improvement
    over the front observed so far, estimated from posterior samples.

    Under a time budget (search.max_seconds) with one objective, the expected improvement is divided by the
    training seconds a GP on the observed ones expects, raised to a power that falls from 1 when the initial
    design ends to 0 when the budget is spent (cost cooling, after CArBO, Lee et al. 2020): cheap promising
    candidates first, so more of them fit, then the best regardless of cost.
    """

    Settings = BOSettings
    multi_objective = True
    samples = 64  # posterior draws per candidate for the expected hypervolume improvement

    def __init__(self, settings: BOSettings, space: Any, seed: int) -> None:
        super().__init__(settings, space, seed)
        self.observed: list[tuple[dict, list[float]]] = []  # each architecture with its objectives (larger better)
        self.costs: list[Optional[float]] = []  # each observed architecture's training seconds, where measured
        self.spent_at_start: Optional[float] = None  # the share of search.max_seconds spent when acquisition began

    def _pool(self) -> list[dict]:
        """Unseen candidates: the incumbent's neighbours while any is left, else a wider pool."""
        incumbent = max(self.observed, key=lambda o: o[1][0])[0]
        # Exhausting the incumbent's neighbourhood first (in the surrogate's order) keeps the search
        # from leaving a basin one edit short of its top, which measured better on NAS-Bench-201.
        local = [a for a in self.space.neighbours(incumbent) if self._open(a)]
        return local or self._wide_pool([arch for arch, _ in sorted(self.observed, key=lambda o: -o[1][0])])

    def _wide_pool(self, ranked: list[dict]) -> list[dict]:
        """Unseen candidates: all neighbours of the first few of `ranked`, their mutants, and random architectures."""
        parents = ranked[: self.settings.parents]
        pool = [n for parent in parents for n in self.space.neighbours(parent)]
        while len(pool) < self.settings.candidates:
            if self.rng.random() < 0.5:
                pool.append(self.space.mutate(self.space.mutate(self.rng.choice(parents), self.rng), self.rng))
            else:
                pool.append(self.space.sample(self.rng))
        unique = {self.space.hash(a): a for a in pool}
        return [arch for arch in unique.values() if self._open(arch)]

    def _posterior(self, pool: list[dict], objective: int) -> tuple[np.ndarray, np.ndarray]:
        """The GP's mean and standard deviation of one objective over the pool."""
        x = np.array([self.space.encode(a) for a, _ in self.observed])
        y = np.array([values[objective] for _, values in self.observed])
        return fit_gp(x, y).predict(np.array([self.space.encode(a) for a in pool]), return_std=True)

    def ask(self) -> Optional[Proposal]:
        if self.in_initial_design(len(self.observed), self.settings.initial):
            return self._propose_random()
        pool = self._pool_multi() if self.multi else self._pool()
        if not pool:
            return self._propose_random()
        scores = self._hypervolume_improvement(pool) if self.multi else self._expected_improvement(pool) / self._cost(pool)
        arch = pool[int(np.argmax(scores))]
        self._claim(arch)
        return Proposal(arch)

    def _expected_improvement(self, pool: list[dict]) -> np.ndarray:
        """EI under this search's GP or, with a warm start, under the RGPE ensemble of it and the earlier tasks'."""
        if self.knowledge is None:
            mean, std = self._posterior(pool, 0)
            best = max(values[0] for _, values in self.observed)
        else:
            y = standardised(np.array([values[0] for _, values in self.observed]))
            own = fit_gp(np.array([self.space.encode(a) for a, _ in self.observed]), y)
            mean, std = self.knowledge.predict(own, np.array([self.space.encode(a) for a in pool]))
            best = y.max()
        improvement = mean - best - self.settings.xi
        z = improvement / np.maximum(std, 1e-9)
        return improvement * norm.cdf(z) + std * norm.pdf(z)

    def _cost(self, pool: list[dict]) -> np.ndarray | float:
        """Each candidate's expected training seconds raised to the cost-cooling power; 1 where cost does not count
        (no time budget, cost_aware off, fewer than two measured costs, or the budget spent)."""
        spent = self.pace.spent if self.pace is not None else None
        measured = [(arch, cost) for (arch, _), cost in zip(self.observed, self.costs) if cost]
        if not self.settings.cost_aware or spent is None or len(measured) < 2:
            return 1.0
        if self.spent_at_start is None:
            self.spent_at_start = spent
            self.log(f"{self.name}: expected improvement per expected training second while search.max_seconds "
                     "lasts; the cost counts less as the budget is spent")
        power = max(0.0, 1 - spent) / max(1e-9, 1 - self.spent_at_start)
        if power <= 0:
            return 1.0
        x = np.array([self.space.encode(arch) for arch, _ in measured])
        log_seconds = fit_gp(x, np.log([cost for _, cost in measured])).predict(
            np.array([self.space.encode(a) for a in pool]))
        return np.exp(min(1.0, power) * (log_seconds - np.median(log_seconds)))

    def _front(self) -> list[dict]:
        """The observed architectures on the Pareto front."""
        keep = moocore.is_nondominated(-np.array([values for _, values in self.observed]))
        return [arch for (arch, _), k in zip(self.observed, keep) if k]

    def _pool_multi(self) -> list[dict]:
        """Unseen candidates: the neighbours of `parents` front members drawn at random, their mutants and random
        architectures (the neighbours of every member measured slightly worse: docs/benchmarks.md)."""
        front = self._front()
        self.rng.shuffle(front)
        return self._wide_pool(front)

    def _hypervolume_improvement(self, pool: list[dict]) -> np.ndarray:
        """Each candidate's expected improvement of the observed front's hypervolume (Monte Carlo over the GPs)."""
        observed = np.array([values for _, values in self.observed])
        draws = np.empty((self.samples, len(pool), observed.shape[1]))
        normal = np.random.default_rng(self.rng.randrange(2**32)).standard_normal(draws.shape)
        for j, objective in enumerate(self.goal.objectives):
            known = [self.known(arch).get(objective.metric) for arch in pool]
            if all(isinstance(v, (int, float)) for v in known):
                sign = 1.0 if objective.maximise else -1.0
                draws[:, :, j] = sign * np.array(known, dtype=float)
            else:
                mean, std = self._posterior(pool, j)
                draws[:, :, j] = mean + std * normal[:, :, j]
        low, high = observed.min(axis=0), observed.max(axis=0)
        scale = np.where(high > low, high - low, 1.0)
        front = (high - observed[moocore.is_nondominated(-observed)]) / scale  # minimised, best observed at 0
        gains = hypervolume_improvement(front, (high - draws.reshape(-1, observed.shape[1])) / scale, REFERENCE)
        return gains.reshape(self.samples, len(pool)).mean(axis=0)

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        if outcome.ok:
            self.observed.append((proposal.arch, list(outcome.values or (outcome.objective,))))
            self.costs.append(outcome.metrics.get("train_seconds"))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "observed": [list(o) for o in self.observed], "costs": self.costs,
                "spent_at_start": self.spent_at_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.observed = [(arch, values) for arch, values in state["observed"]]
        self.costs = state.get("costs", [None] * len(self.observed))
        self.spent_at_start = state.get("spent_at_start")


REFERENCE = 1.1  # the reference point, in each objective scaled so that the observed range is [0, 1] (worst 1)


def hypervolume_improvement(front: np.ndarray, points: np.ndarray, reference: float) -> np.ndarray:
    """How much each point (a row; lower is better in every column) adds to the hypervolume of `front`.

    The box a point dominates, up to the reference point, minus the part of it the front already covers:
    the hypervolume of the front's points each clipped to the new point. Vectorised for two objectives;
    moocore computes it point by point for more.
    """
    points = np.minimum(points, reference)
    own = np.prod(reference - points, axis=1)
    if front.shape[1] != 2:
        ref = np.full(front.shape[1], reference)
        base = moocore.hypervolume(front, ref=ref)
        return np.array([moocore.hypervolume(np.vstack([front, p]), ref=ref) - base for p in points])
    front = np.minimum(front[np.argsort(front[:, 0], kind="stable")], reference)
    clipped = np.maximum(front[None, :, :], points[:, None, :])  # (points, front, 2), still sorted by column 0
    widths = np.diff(np.concatenate([clipped[:, :, 0], np.full((len(points), 1), reference)], axis=1), axis=1)
    heights = reference - np.minimum.accumulate(clipped[:, :, 1], axis=1)
    return own - np.sum(widths * heights, axis=1)
