"""Random search: uniform samples from the space, never the same architecture twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nascli.strategies.base import Outcome, Proposal, Strategy, StrategySettings
from nascli.registry import register


@dataclass
class RandomSettings(StrategySettings):
    """Random search has no settings of its own."""


@register("strategy", "random")
class RandomSearch(Strategy):
    """Samples architectures uniformly at random (for any number of objectives)."""

    Settings = RandomSettings
    multi_objective = True

    def ask(self) -> Optional[Proposal]:
        return self._propose_random()

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """Random search learns nothing."""
