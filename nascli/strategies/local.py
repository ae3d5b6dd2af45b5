"""Local search: walk to a better one-edit neighbour; restart from a random architecture at a local optimum."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import moocore
import numpy as np

from nascli.registry import register
from nascli.strategies.base import Outcome, Proposal, Strategy, StrategySettings


@dataclass
class LocalSettings(StrategySettings):
    """First improvement: move as soon as a neighbour beats the current architecture."""

    # one objective: move to the first neighbour that beats the current architecture (false: the best, once all tried)
    first_improvement: bool = True


@register("strategy", "local")
class LocalSearch(Strategy):
    """Hill climbing over the one-edit neighbourhood with random restarts (White et al., 2021).

    With several objectives, Pareto local search (Paquete et al., 2004): the neighbours of each member of the
    observed front are proposed in turn; a neighbour that no observed architecture dominates joins the front
    (dominance-based acceptance) and is explored later; when every member is explored, a random restart.
    """

    Settings = LocalSettings
    multi_objective = True

    def __init__(self, settings: LocalSettings, space: Any, seed: int) -> None:
        super().__init__(settings, space, seed)
        self.current: Optional[list] = None  # [arch, score] of the point being climbed from
        self.best_neighbour: Optional[list] = None
        self.queue: list[dict] = []  # neighbours of current not yet proposed
        self.observed: list[tuple[dict, list[float]]] = []  # several objectives: everything told, with its values
        self.explored: list[str] = []  # several objectives: the front members whose neighbours were queued

    def _move_to(self, arch: dict, score: float) -> None:
        self.current = [arch, score]
        self.best_neighbour = None
        self.queue = self.space.neighbours(arch)
        self.rng.shuffle(self.queue)

    def ask(self) -> Optional[Proposal]:
        if self.multi:
            return self._ask_pareto()
        while self.queue:
            arch = self.queue.pop()
            if self._claim(arch):
                return Proposal(arch)
        if self.best_neighbour is not None and self.best_neighbour[1] > self.current[1]:
            self._move_to(*self.best_neighbour)
            return self.ask()
        self.current = None  # a local optimum: restart
        return self._propose_random()

    def _ask_pareto(self) -> Optional[Proposal]:
        while True:
            while self.queue:
                arch = self.queue.pop()
                if self._claim(arch):
                    return Proposal(arch)
            unexplored = self._unexplored()
            if unexplored is None:
                return self._propose_random()
            self.explored.append(self.space.hash(unexplored))
            self.queue = self.space.neighbours(unexplored)
            self.rng.shuffle(self.queue)

    def _unexplored(self) -> Optional[dict]:
        """The earliest observed front member whose neighbours were not queued yet."""
        if not self.observed:
            return None
        keep = moocore.is_nondominated(-np.array([values for _, values in self.observed]))
        done = set(self.explored)
        return next((arch for (arch, _), k in zip(self.observed, keep) if k and self.space.hash(arch) not in done), None)

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        if not outcome.ok:
            return
        if self.multi:
            self.observed.append((proposal.arch, list(outcome.values)))
            return
        if self.current is None or (self.settings.first_improvement and outcome.objective > self.current[1]):
            self._move_to(proposal.arch, outcome.objective)
        elif self.best_neighbour is None or outcome.objective > self.best_neighbour[1]:
            self.best_neighbour = [proposal.arch, outcome.objective]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "current": self.current, "best_neighbour": self.best_neighbour,
                "queue": self.queue, "observed": [list(o) for o in self.observed], "explored": self.explored}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.current, self.best_neighbour, self.queue = state["current"], state["best_neighbour"], state["queue"]
        self.observed = [(arch, values) for arch, values in state.get("observed", [])]
        self.explored = state.get("explored", [])
