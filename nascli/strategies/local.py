"""Local search: walk to a better one-edit neighbour; restart from a random architecture at a local optimum."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from nascli.strategies.base import Outcome, Proposal, Strategy, StrategySettings
from nascli.registry import register


@dataclass
class LocalSettings(StrategySettings):
    """First improvement: move as soon as a neighbour beats the current architecture."""

    first_improvement: bool = True


@register("strategy", "local")
class LocalSearch(Strategy):
    """Hill climbing over the one-edit neighbourhood with random restarts (White et al., 2021)."""

    Settings = LocalSettings

    def __init__(self, settings: LocalSettings, space: Any, seed: int) -> None:
        super().__init__(settings, space, seed)
        self.current: Optional[list] = None  # [arch, score] of the point being climbed from
        self.best_neighbour: Optional[list] = None
        self.queue: list[dict] = []  # neighbours of current not yet proposed

    def _move_to(self, arch: dict, score: float) -> None:
        self.current = [arch, score]
        self.best_neighbour = None
        self.queue = self.space.neighbours(arch)
        self.rng.shuffle(self.queue)

    def ask(self) -> Optional[Proposal]:
        while self.queue:
            arch = self.queue.pop()
            if self._claim(arch):
                return Proposal(arch)
        if self.best_neighbour is not None and self.best_neighbour[1] > self.current[1]:
            self._move_to(*self.best_neighbour)
            return self.ask()
        self.current = None  # a local optimum: restart
        return self._propose_random()

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        if not outcome.ok:
            return
        if self.current is None or (self.settings.first_improvement and outcome.objective > self.current[1]):
            self._move_to(proposal.arch, outcome.objective)
        elif self.best_neighbour is None or outcome.objective > self.best_neighbour[1]:
            self.best_neighbour = [proposal.arch, outcome.objective]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "current": self.current, "best_neighbour": self.best_neighbour,
                "queue": self.queue}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.current, self.best_neighbour, self.queue = state["current"], state["best_neighbour"], state["queue"]
