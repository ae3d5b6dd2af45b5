"""Hyperband (Li et al., 2018): brackets of successive halving over training epochs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from nascli.errors import require
from nascli.registry import register
from nascli.strategies.base import Outcome, Proposal, Strategy, StrategySettings


@dataclass
class HyperbandSettings(StrategySettings):
    """Epoch budgets from `min_epochs` to `max_epochs`; each rung keeps the best 1/eta."""

    # shortest training, in epochs: budgets run max_epochs, max_epochs/eta, ... down to no less than this
    min_epochs: int = 1
    max_epochs: int = 9  # longest training, in epochs: the budget of each bracket's last rung
    eta: int = 3  # each rung keeps the best 1/eta of its trials and trains them eta times longer (>= 2)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(1 <= self.min_epochs <= self.max_epochs, "need 1 <= min_epochs <= max_epochs")
        require(self.eta >= 2, "eta must be at least 2")


@register("strategy", "hyperband")
class Hyperband(Strategy):
    """Cycles through brackets; a bracket trains many architectures briefly and promotes the best."""

    Settings = HyperbandSettings

    def __init__(self, settings: HyperbandSettings, space: Any, seed: int) -> None:
        super().__init__(settings, space, seed)
        self.s_max = int(math.floor(math.log(settings.max_epochs / settings.min_epochs, settings.eta) + 1e-9))
        self.bracket = self.s_max  # s: the bracket's number of halvings
        self.rung = 0
        self.queue: list[dict] = []  # architectures of the current rung not yet proposed
        self.results: list[tuple[dict, float]] = []  # outcomes of the current rung
        self.expected = 0  # proposals of the current rung
        self._start_bracket()

    def _budget(self) -> int:
        return round(self.settings.max_epochs * self.settings.eta ** (self.rung - self.bracket))

    def _start_bracket(self) -> None:
        eta, s = self.settings.eta, self.bracket
        n = math.ceil((self.s_max + 1) / (s + 1) * eta**s)
        self.rung, self.results = 0, []
        self.queue = [arch for arch in (self._random_unseen() for _ in range(n)) if arch is not None]
        self.expected = len(self.queue)

    def _next_rung(self) -> None:
        keep = len(self.results) // self.settings.eta
        if self.rung < self.bracket and keep >= 1:
            ranked = sorted(self.results, key=lambda r: -r[1])
            self.rung += 1
            self.queue, self.results, self.expected = [a for a, _ in ranked[:keep]], [], keep
        else:
            self.bracket = self.bracket - 1 if self.bracket > 0 else self.s_max
            self._start_bracket()

    def ask(self) -> Optional[Proposal]:
        if not self.queue:
            return None
        return Proposal(self.queue.pop(0), budget=self._budget())

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        self.expected -= 1
        if outcome.ok:
            self.results.append((proposal.arch, outcome.objective))
        if self.expected == 0:
            self._next_rung()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "bracket": self.bracket, "rung": self.rung, "queue": self.queue,
                "results": [list(r) for r in self.results], "expected": self.expected}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.bracket, self.rung, self.queue = state["bracket"], state["rung"], state["queue"]
        self.results = [(arch, score) for arch, score in state["results"]]
        self.expected = state["expected"]
