"""Warm starts: what earlier searches on other tasks (the same space) say about this one, and how far to trust it.

Each earlier task (the runs of one dataset under `search.warm_start`) gets a Gaussian process fitted on its
trials' standardised objective. How much each is trusted follows RGPE (Feurer et al. 2018): on bootstrap
samples of this search's observations, count the pairs each model ranks wrongly — for this task's own model,
from leave-one-out predictions — and give each model the share of samples in which it ranks best. An earlier
task that ranks this one's observations worse than this task's own model almost always (its median loss above
the own model's 95th percentile) gets no weight, so an unrelated or anti-correlated task is dropped as soon as
the observations show it. Until EVIDENCE observations can weigh them, only the earlier tasks' single best
architecture is proposed: an unrelated task costs this search one trial, not several.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from sklearn.gaussian_process import GaussianProcessRegressor

from nascli.errors import UserError
from nascli.records import WarmStartRecord
from nascli.rundir import find_runs
from nascli.spaces.base import Arch, SearchSpace
from nascli.surrogate import fit_gp

MAX_POINTS = 300  # an earlier task's GP is fitted on at most this many trials: its best half and a random rest
MAX_OBSERVED = 200  # the weights are computed on this search's latest observations, at most this many
BOOTSTRAPS = 100
TRUST = 0.5  # the earlier tasks' summed weight above which their best architectures are proposed first
EVIDENCE = 3  # observations of this search before the models are weighed


def standardised(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() or 1.0)


@dataclass
class EarlierTask:
    """The trials of earlier searches on one dataset: each architecture once, with its mean objective."""

    name: str
    runs: list[str]
    archs: list[Arch]
    values: np.ndarray  # standardised objective, larger is better


def load_earlier(paths: list[str], space: SearchSpace, space_name: str) -> list[EarlierTask]:
    """The earlier tasks of the runs at or below `paths` (grouped by dataset); a run of another space is a UserError."""
    grouped: dict[str, dict[str, Any]] = {}
    for run in find_runs([Path(p).expanduser() for p in paths]):
        config, summary = run.config(), run.summary()
        searched = (config.get("space") or {}).get("name")
        if summary is None or summary.kind != "search":
            continue
        if searched != space_name:
            raise UserError(f"search.warm_start: {run.path} searched space={searched}, not space={space_name}")
        task = grouped.setdefault(summary.dataset or str(run.path), {"runs": [], "values": {}, "archs": {}})
        task["runs"].append(str(run.path))
        for trial in run.trials():
            value = trial.value(summary.objective)
            if value is None or trial.feasible is False:
                continue
            try:
                space.validate(trial.arch)
            except ValueError as exc:
                raise UserError(f"search.warm_start: {run.path} holds an architecture outside this space "
                                f"({exc})") from None
            key = space.hash(trial.arch)
            task["archs"][key] = trial.arch
            task["values"].setdefault(key, []).append(float(value))
    tasks = []
    for name, task in grouped.items():
        keys = sorted(task["values"])
        if len(keys) >= 2:
            means = np.array([np.mean(task["values"][k]) for k in keys])
            tasks.append(EarlierTask(name, task["runs"], [task["archs"][k] for k in keys], standardised(means)))
    if not tasks:
        raise UserError(f"search.warm_start: no search with two or more successful trials under {', '.join(paths)}")
    return tasks


class Knowledge:
    """Earlier tasks, the GP of each, this search's observations and the weight each model has on them."""

    def __init__(self, tasks: list[EarlierTask], space: SearchSpace, limit: int = 10) -> None:
        self.tasks, self.space, self.limit = tasks, space, limit
        self.models = [self._fit(task) for task in tasks]
        self.suggested = 0  # suggestions proposed so far
        self._candidates: Optional[list[Arch]] = None  # every earlier architecture, and each model's predictions
        self._predictions = np.empty(0)
        self.observed: list[tuple[Arch, float]] = []
        self.weights = self._prior()
        self.history: list[list[float]] = []  # the weights after each observation

    def _fit(self, task: EarlierTask) -> GaussianProcessRegressor:
        order = np.argsort(-task.values, kind="stable")
        rng = np.random.default_rng(0)
        best, rest = order[: MAX_POINTS // 2], order[MAX_POINTS // 2:]
        chosen = np.concatenate([best, rng.permutation(rest)[: MAX_POINTS - len(best)]])
        x = np.array([self.space.encode(task.archs[i]) for i in chosen])
        return fit_gp(x, task.values[chosen])

    def _prior(self) -> list[float]:
        """Before EVIDENCE observations: the earlier tasks share all the weight."""
        return [1.0 / len(self.tasks)] * len(self.tasks) + [0.0]

    def observe(self, arch: Arch, value: float) -> None:
        """Add an observation of this search and weigh the models again."""
        self.observed.append((arch, value))
        self.weights = self._weigh()
        self.history.append(list(self.weights))

    @property
    def trusted(self) -> bool:
        """Whether the earlier tasks together outweigh this search's own model."""
        return sum(self.weights[:-1]) >= TRUST

    def _weigh(self) -> list[float]:
        observed = self.observed[-MAX_OBSERVED:]
        n = len(observed)
        if n < EVIDENCE:
            return self._prior()
        x = np.array([self.space.encode(a) for a, _ in observed])
        y = standardised(np.array([v for _, v in observed]))
        predictions = [model.predict(x) for model in self.models] + [leave_one_out(x, y)]
        rng = np.random.default_rng(n)
        samples = rng.integers(n, size=(BOOTSTRAPS, n))
        losses = np.array([ranking_losses(p, y, samples) for p in predictions], dtype=float)  # (models, samples)
        own = losses[-1]
        for i in range(len(self.models)):
            if np.median(losses[i]) > np.percentile(own, 95):
                losses[i] = np.inf  # dilution prevention: this task never ranks better than the own model
        best = losses == losses.min(axis=0)
        shares = (best / best.sum(axis=0)).mean(axis=1)
        return [float(s) for s in shares]

    def suggest(self, claim: Callable[[Arch], bool]) -> Optional[Arch]:
        """The best suggestion `claim` accepts, while trusted and fewer than `limit` were proposed (one before the
        evidence weighs the models); else None."""
        if not self.trusted or self.suggested >= (self.limit if len(self.observed) >= EVIDENCE else min(1, self.limit)):
            return None
        for arch in self.suggestions():
            if claim(arch):
                self.suggested += 1
                return arch
        return None

    def suggestions(self) -> list[Arch]:
        """Earlier tasks' architectures, best first by the weighted sum of their models' predictions."""
        if self._candidates is None:  # the architectures and the models' predictions do not change: once
            self._candidates = list({self.space.hash(a): a for task in self.tasks for a in task.archs}.values())
            x = np.array([self.space.encode(a) for a in self._candidates])
            self._predictions = np.array([model.predict(x) for model in self.models])
        weights = np.array(self.weights[:-1])
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(weights), 1 / len(weights))
        score = weights @ self._predictions
        return [self._candidates[i] for i in np.argsort(-score, kind="stable")]

    def predict(self, own: Optional[GaussianProcessRegressor], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The weighted ensemble's mean and standard deviation at `x` (standardised scale); `own` is this task's GP."""
        mean, variance = np.zeros(len(x)), np.zeros(len(x))
        models = [*self.models, own]
        for weight, model in zip(self.weights, models):
            if weight > 0 and model is not None:
                m, s = model.predict(x, return_std=True)
                mean += weight * m
                variance += weight**2 * s**2
        return mean, np.sqrt(variance)

    def state_dict(self) -> dict[str, Any]:
        """This search's observations and the weights after each: what a resumed search continues from."""
        return {"observed": [[arch, value] for arch, value in self.observed], "history": self.history,
                "suggested": self.suggested}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict`."""
        self.observed = [(arch, value) for arch, value in state.get("observed", [])]
        self.history = state.get("history", [])
        self.suggested = state.get("suggested", 0)
        self.weights = list(self.history[-1]) if self.history else self._prior()

    def describe(self) -> WarmStartRecord:
        """What warm_start.json records: the earlier tasks and their weights after each observation."""
        return WarmStartRecord([t.name for t in self.tasks] + ["(this search)"], self.history,
                               [{"name": t.name, "runs": t.runs, "architectures": len(t.archs)} for t in self.tasks])


def leave_one_out(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The GP's leave-one-out predictions of `y` (closed form: y - [K⁻¹y]ᵢ / [K⁻¹]ᵢᵢ, with fitted hyperparameters)."""
    model = fit_gp(x, y, normalize_y=False)
    inverse = np.linalg.pinv(model.kernel_(x))
    return y - (inverse @ y) / np.diag(inverse)


def ranking_losses(predicted: np.ndarray, actual: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """For each bootstrap sample (rows of indices), the number of pairs `predicted` orders unlike `actual`."""
    p, a = predicted[samples], actual[samples]
    wrong = (p[:, :, None] < p[:, None, :]) != (a[:, :, None] < a[:, None, :])
    return wrong.sum(axis=(1, 2))
