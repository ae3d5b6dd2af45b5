"""Regularized evolution (Real et al., 2019): tournament selection, mutation, the oldest dies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from nascli.errors import require
from nascli.registry import register
from nascli.strategies.base import Outcome, Proposal, Strategy, StrategySettings


@dataclass
class EvolutionSettings(StrategySettings):
    """Population and tournament sizes."""

    # the latest successful trials kept (the oldest dies); the search starts with up to this many random architectures
    population_size: int = 10
    # members drawn per tournament; the best one's mutant is the next child (1 to population_size)
    tournament_size: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.population_size >= 2, "population_size must be at least 2")
        require(
            1 <= self.tournament_size <= self.population_size,
            "tournament_size must be between 1 and population_size",
        )


@register("strategy", "evolution")
class RegularizedEvolution(Strategy):
    """Random architectures until the population is full, then mutated tournament winners."""

    Settings = EvolutionSettings

    def __init__(self, settings: EvolutionSettings, space: Any, seed: int) -> None:
        super().__init__(settings, space, seed)
        self.population: list[tuple[dict, float]] = []
        self.asked = 0

    def ask(self) -> Optional[Proposal]:
        self.asked += 1
        if not self.population or self.in_initial_design(self.asked - 1, self.settings.population_size):
            return self._propose_random()
        contenders = self.rng.sample(self.population, min(self.settings.tournament_size, len(self.population)))
        parent = max(contenders, key=lambda member: member[1])[0]
        child = self._unseen(lambda: self.space.mutate(parent, self.rng))
        return Proposal(child) if child is not None else self._propose_random()

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        if not outcome.ok:
            return
        self.population.append((proposal.arch, outcome.objective))
        if len(self.population) > self.settings.population_size:
            self.population.pop(0)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": [list(m) for m in self.population], "asked": self.asked}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = [(arch, score) for arch, score in state["population"]]
        self.asked = state["asked"]
