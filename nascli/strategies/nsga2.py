"""NSGA-II (Deb et al., 2002): multi-objective evolution by non-dominated sorting and crowding distance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import moocore
import numpy as np

from nascli.errors import require
from nascli.registry import register
from nascli.spaces.base import Arch
from nascli.strategies.base import Outcome, Proposal, Strategy, StrategySettings


@dataclass
class NSGA2Settings(StrategySettings):
    """Population size and how children are made."""

    population_size: int = 20  # survivors kept, and children told per generation; the first generation is random (>= 2)
    crossover_rate: float = 0.9  # a child mixes two parents this often, else it copies one; then it is mutated

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.population_size >= 2, "population_size must be at least 2")
        require(0 <= self.crossover_rate <= 1, "crossover_rate must be in [0, 1]")


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """Each point's crowding distance within its set: the normalised size of the box its neighbours span."""
    count, dims = points.shape
    distance = np.zeros(count)
    if count <= 2:
        return np.full(count, np.inf)
    for d in range(dims):
        order = np.argsort(points[:, d], kind="stable")
        span = points[order[-1], d] - points[order[0], d]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (points[order[2:], d] - points[order[:-2], d]) / span
    return distance


def rank_and_crowding(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pareto rank (0 = non-dominated) and crowding distance within the rank of each row (larger is better)."""
    ranks = moocore.pareto_rank(-values)
    crowding = np.zeros(len(values))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        crowding[members] = crowding_distance(values[members])
    return ranks, crowding


@register("strategy", "nsga2")
class NSGA2(Strategy):
    """Random architectures until a generation is told, then children of binary-tournament parents.

    Each generation of `population_size` told children joins the population, which keeps the best
    `population_size` by rank, then crowding distance. With one objective it is a plain genetic algorithm.
    """

    Settings = NSGA2Settings
    multi_objective = True

    def __init__(self, settings: NSGA2Settings, space: Any, seed: int) -> None:
        super().__init__(settings, space, seed)
        self.population: list[tuple[Arch, list[float]]] = []
        self.offspring: list[tuple[Arch, list[float]]] = []

    def _tournament(self, ranks: np.ndarray, crowding: np.ndarray) -> Arch:
        a, b = self.rng.sample(range(len(self.population)), 2)
        better = a if (ranks[a], -crowding[a]) <= (ranks[b], -crowding[b]) else b
        return self.population[better][0]

    def _child(self, ranks: np.ndarray, crowding: np.ndarray) -> Arch:
        first = self._tournament(ranks, crowding)
        if self.rng.random() < self.settings.crossover_rate:
            first = self.space.crossover(first, self._tournament(ranks, crowding), self.rng)
        return self.space.mutate(first, self.rng)

    def ask(self) -> Optional[Proposal]:
        if len(self.population) < 2:
            return self._propose_random()
        ranks, crowding = rank_and_crowding(np.array([values for _, values in self.population]))
        child = self._unseen(lambda: self._child(ranks, crowding))
        return Proposal(child) if child is not None else self._propose_random()

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        if not outcome.ok:
            return
        self.offspring.append((proposal.arch, list(outcome.values or (outcome.objective,))))
        first = not self.population and not self.in_initial_design(len(self.offspring), self.settings.population_size)
        if first or len(self.offspring) >= self.settings.population_size:
            self.population = self._survivors(self.population + self.offspring)
            self.offspring = []

    def _survivors(self, members: list[tuple[Arch, list[float]]]) -> list[tuple[Arch, list[float]]]:
        """The best `population_size` by rank, then by crowding distance (Deb et al.'s environmental selection)."""
        ranks, crowding = rank_and_crowding(np.array([values for _, values in members]))
        order = sorted(range(len(members)), key=lambda i: (ranks[i], -crowding[i]))
        return [members[i] for i in order[: self.settings.population_size]]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": [list(m) for m in self.population],
                "offspring": [list(m) for m in self.offspring]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = [(arch, values) for arch, values in state["population"]]
        self.offspring = [(arch, values) for arch, values in state["offspring"]]
