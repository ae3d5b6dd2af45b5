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
        arch = self._random_unseen()
        return Proposal(arch) if arch is not None else None

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """Random search learns nothing."""
