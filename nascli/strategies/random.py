"""Random search: uniform samples from the space, never the same architecture twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nascli.strategies.base import Outcome, Proposal, Strategy


@dataclass
class RandomSettings:
    """Random search has no settings."""


class RandomSearch(Strategy):
    """Samples architectures uniformly at random."""

    Settings = RandomSettings
    name = "random"

    def ask(self) -> Optional[Proposal]:
        return self._propose_random()

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """Random search learns nothing."""
