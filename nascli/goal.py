"""What a search aims for: one or more objectives, constraints on metrics, the Pareto front and the pick from it.

Objectives are written `metric:max` or `metric:min`; constraints map a metric to an upper bound, or `min_<metric>`
to a lower bound. Fronts, ranks and hypervolumes come from moocore; values are turned into minimisation first
(a maximised metric is negated), so that "lower is better" holds for every column of the arrays used here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import moocore
import numpy as np

from nascli.errors import require

SENSES = ("max", "min")
KNEE = "knee"


@dataclass(frozen=True)
class Objective:
    """A metric and whether it is maximised."""

    metric: str
    maximise: bool

    def __str__(self) -> str:
        return f"{self.metric}:{'max' if self.maximise else 'min'}"


@dataclass(frozen=True)
class Constraint:
    """A bound on a metric: an upper bound unless `lower`."""

    metric: str
    bound: float
    lower: bool = False

    def holds(self, value: Optional[float]) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value >= self.bound if self.lower else value <= self.bound

    def __str__(self) -> str:
        return f"{self.metric} {'>=' if self.lower else '<='} {self.bound:g}"


def parse_objective(text: str) -> Objective:
    """`metric:max` or `metric:min` (ValueError otherwise)."""
    metric, _, sense = text.rpartition(":")
    require(bool(metric) and sense in SENSES, f"an objective is written metric:max or metric:min, got {text!r}")
    return Objective(metric, sense == "max")


def parse_constraints(bounds: dict[str, float]) -> list[Constraint]:
    """Constraints from `{metric: upper bound, min_<metric>: lower bound}` (ValueError for a bound that is no number)."""
    constraints = []
    for key, bound in bounds.items():
        require(isinstance(bound, (int, float)) and math.isfinite(bound), f"constraint {key} needs a finite number")
        lower = key.startswith("min_")
        constraints.append(Constraint(key[4:] if lower else key, float(bound), lower))
    return constraints


def parse_pick(text: str) -> Optional[Objective]:
    """A pick rule: `max:METRIC` or `min:METRIC` (also written like an objective), or None for `knee`."""
    if text == KNEE:
        return None
    sense, _, metric = text.partition(":")
    if sense in SENSES and metric:
        return Objective(metric, sense == "max")
    require(text.rpartition(":")[2] in SENSES, f"search.pick is max:METRIC, min:METRIC or knee, got {text!r}")
    return parse_objective(text)


class Goal:
    """The objectives and constraints of a search, and what follows from them for a set of trial metrics."""

    def __init__(self, objectives: Sequence[Objective], constraints: Sequence[Constraint] = (),
                 pick: Optional[str] = None) -> None:
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        primary = self.objectives[0]
        self.pick_rule = pick or f"{'max' if primary.maximise else 'min'}:{primary.metric}"

    @classmethod
    def from_settings(cls, settings: Any, objective: str) -> Goal:
        """The goal of `search.*` settings; without `objectives`, the evaluator's `objective`, maximised."""
        objectives = [parse_objective(t) for t in settings.objectives] if settings.objectives else [Objective(objective, True)]
        return cls(objectives, parse_constraints(settings.constraints or {}), settings.pick)

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    @property
    def metrics(self) -> list[str]:
        """Every metric the goal reads."""
        return list(dict.fromkeys([o.metric for o in self.objectives] + [c.metric for c in self.constraints]))

    @property
    def primary(self) -> Objective:
        return self.objectives[0]

    def feasible(self, metrics: dict[str, Any]) -> bool:
        """Whether every constraint holds (a metric that is missing breaks its constraint)."""
        return all(c.holds(metrics.get(c.metric)) for c in self.constraints)

    def violation(self, known: dict[str, Any]) -> Optional[str]:
        """The first constraint that metrics known already (e.g. before training) break, or None."""
        for constraint in self.constraints:
            if constraint.metric in known and not constraint.holds(known[constraint.metric]):
                return f"{constraint.metric} {known[constraint.metric]:g} breaks {constraint}"
        return None

    def values(self, metrics: dict[str, Any]) -> Optional[tuple[float, ...]]:
        """The objectives as a point where larger is better in every coordinate; None if one is missing."""
        point = []
        for objective in self.objectives:
            value = metrics.get(objective.metric)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                return None
            point.append(float(value) if objective.maximise else -float(value))
        return tuple(point)

    def minimised(self, metrics_list: Sequence[dict[str, Any]]) -> np.ndarray:
        """The objectives of each entry as rows of an array where lower is better (entries must have them all)."""
        return -np.array([self.values(m) for m in metrics_list], dtype=float).reshape(len(metrics_list), -1)

    def front(self, metrics_list: Sequence[dict[str, Any]]) -> list[int]:
        """Indices of the feasible, non-dominated entries (the first of equal points only)."""
        usable = [i for i, m in enumerate(metrics_list) if self.feasible(m) and self.values(m) is not None]
        if not usable:
            return []
        points = self.minimised([metrics_list[i] for i in usable])
        keep = moocore.is_nondominated(points)
        return [i for i, k in zip(usable, keep) if k]

    def pick(self, metrics_list: Sequence[dict[str, Any]], front: Sequence[int]) -> Optional[int]:
        """The index of the front member chosen by the pick rule (None when the front is empty)."""
        if not front:
            return None
        rule = parse_pick(self.pick_rule)
        if rule is None:  # the knee
            points = self.minimised([metrics_list[i] for i in front])
            low, high = points.min(axis=0), points.max(axis=0)
            scaled = (points - low) / np.where(high > low, high - low, 1.0)
            return front[int(np.argmin(np.linalg.norm(scaled, axis=1)))]
        sign = 1.0 if rule.maximise else -1.0
        scored = [i for i in front if isinstance(metrics_list[i].get(rule.metric), (int, float))]
        return max(scored, key=lambda i: sign * metrics_list[i][rule.metric]) if scored else front[0]

    def hypervolume(self, metrics_list: Sequence[dict[str, Any]], bounds: dict[str, tuple[float, float]]) -> float:
        """The hypervolume of the entries' feasible front, each objective scaled to [0, 1] between `bounds`.

        `bounds[metric]` is (best, worst); a point is clipped into the box, so the reference point is the
        worst corner and the ideal point has hypervolume 1.
        """
        front = self.front(metrics_list)
        if not front:
            return 0.0
        points = self.minimised([metrics_list[i] for i in front])
        best = -np.array([bounds[o.metric][0] if o.maximise else -bounds[o.metric][0] for o in self.objectives])
        worst = -np.array([bounds[o.metric][1] if o.maximise else -bounds[o.metric][1] for o in self.objectives])
        scaled = np.clip((points - best) / np.where(worst != best, worst - best, 1.0), 0.0, 1.0)
        return float(moocore.hypervolume(scaled, ref=np.ones(len(self.objectives))))

    def observed_bounds(self, metrics_list: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float]]:
        """(best, worst) of each objective over the feasible entries that have every objective."""
        rows = [m for m in metrics_list if self.feasible(m) and self.values(m) is not None]
        bounds = {}
        for objective in self.objectives:
            values = [m[objective.metric] for m in rows]
            best, worst = (max(values), min(values)) if objective.maximise else (min(values), max(values))
            bounds[objective.metric] = (best, worst)
        return bounds

    def describe(self) -> dict[str, Any]:
        """The goal as summary.json and front.json record it (in the settings' own syntax; `described` reads it)."""
        return {"objectives": [str(o) for o in self.objectives],
                "constraints": {("min_" if c.lower else "") + c.metric: c.bound for c in self.constraints},
                "pick": self.pick_rule}

    @classmethod
    def described(cls, record: dict[str, Any]) -> Goal:
        """The goal a `describe()` record holds (ValueError when it holds none)."""
        return cls([parse_objective(t) for t in record["objectives"]], parse_constraints(record.get("constraints") or {}),
                   record.get("pick"))
