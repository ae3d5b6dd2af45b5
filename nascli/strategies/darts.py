"""Differentiable architecture search: DARTS (Liu et al. 2019, first order) and DrNAS (Chen et al. 2021).

`evaluator=supernet` (which this strategy's option selects) trains the supernet's weights on the training split
and a continuous relaxation of the choices (one weight per operation and position) on the validation split, in
alternating steps; this strategy then proposes the architecture keeping the strongest operation at each position.
`relaxation=softmax` is DARTS; `relaxation=dirichlet` is DrNAS, whose sampled Dirichlet weights resist DARTS's
collapse onto skip connections and parameter-free operations. `selection=perturbation` derives the architecture
by each operation's effect on the supernet's validation accuracy rather than by its weight (DARTS-PT, Wang et
al. 2021), which the weights of a collapsed relaxation do not mislead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from nascli.config import require
from nascli.evaluators.supernet import DEFAULT_SELECTION, SELECTIONS
from nascli.goal import Goal
from nascli.registry import register
from nascli.spaces.base import Arch, SearchSpace
from nascli.strategies.base import Outcome, Proposal, Strategy

if TYPE_CHECKING:
    from nascli.warmstart import Knowledge


@dataclass
class DARTSSettings:
    """How long the relaxation trains and which one it is."""

    epochs: int = 50
    relaxation: str = "softmax"  # softmax (DARTS) or dirichlet (DrNAS)
    selection: str = DEFAULT_SELECTION  # perturbation (DARTS-PT) or strength (the largest weight); see evaluator=supernet

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "epochs must be at least 1")
        require(self.selection in SELECTIONS, f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        require(self.relaxation in ("softmax", "dirichlet"), f"relaxation must be softmax or dirichlet, got {self.relaxation!r}")


@register("strategy", "darts")
class DARTS(Strategy):
    """Proposes the one architecture derived from the trained relaxation, then stops."""

    Settings = DARTSSettings
    needs_evaluator = "supernet"

    def __init__(self, settings: DARTSSettings, space: SearchSpace, seed: int) -> None:
        super().__init__(settings, space, seed)
        self.derived: Optional[Arch] = None

    def prepare(self, evaluator: Any, goal: Optional[Goal] = None, knowledge: Optional[Knowledge] = None) -> None:
        super().prepare(evaluator, goal, knowledge)
        self.derived = evaluator.derived()

    def ask(self) -> Optional[Proposal]:
        if self.derived is not None and self._claim(self.derived):
            return Proposal(self.derived)
        return None

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """The relaxation was trained before the proposal; its score changes nothing."""
