"""Differentiable architecture search: DARTS (Liu et al. 2019, first order) and DrNAS (Chen et al. 2021).

Before its one trial, the strategy trains the supernet's weights on the training split and a continuous
relaxation of the choices (one weight per operation and position) on the validation split, in alternating steps.
`relaxation=softmax` is DARTS; `relaxation=dirichlet` is DrNAS, whose sampled Dirichlet weights resist DARTS's
collapse onto skip connections and parameter-free operations. The architecture is then derived: by each
operation's effect on the supernet's validation accuracy (`selection=perturbation`, DARTS-PT, Wang et al. 2021),
which the weights of a collapsed relaxation do not mislead, or by the largest weight (`selection=strength`).
The one trial scores it as a path of the trained supernet (`evaluator=supernet`); retraining follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nascli.evaluators.base import Evaluator
from nascli.evaluators.supernet_training import RelaxationSettings, Supernets, select_by_perturbation, train_relaxation
from nascli.registry import register
from nascli.rundir import RunDir
from nascli.spaces.base import Arch, SearchSpace
from nascli.strategies.base import Outcome, Proposal, Strategy


@dataclass
class DARTSSettings(RelaxationSettings):
    """The relaxation's training and how it becomes one architecture (every key is the supernet's)."""


@register("strategy", "darts")
class DARTS(Strategy):
    """Trains a relaxed supernet, then proposes the one architecture derived from it and stops."""

    Settings = DARTSSettings
    needs_evaluator = "supernet"
    trains_supernet = True

    def __init__(self, settings: DARTSSettings, space: SearchSpace, seed: int) -> None:
        super().__init__(settings, space, seed)
        self.derived: Optional[Arch] = None

    def check_evaluator(self, evaluator: Evaluator) -> None:
        evaluator.net.relaxation()  # a space whose supernet has no continuous relaxation is refused now

    def before_trials(self, run: RunDir, evaluator: Evaluator, seed: int) -> None:
        """Train the relaxation (continuing supernet.pt) and derive the architecture.

        With perturbation, the selection trains the weights further; supernet.pt then holds those weights and the
        selected mixture, which the one trial scores. A run interrupted before that selects again, to the same result.
        """
        supernets = Supernets(self.space, evaluator.data, evaluator.hardware, run)
        net = supernets.build(seed)
        state = supernets.load(net) or {"epoch": 0, "epochs": self.settings.epochs}
        relaxation = train_relaxation(supernets, net, self.settings, state, seed)
        weights = state.get("selected")
        if weights is None and self.settings.selection == "perturbation":
            weights = select_by_perturbation(supernets, relaxation, seed)
            trained = {k: v for k, v in run.load_supernet().items() if k != "state_dict"}  # the loop's state
            supernets.saver(net, state["epochs"])({**trained, "selected": weights})
        self.derived = net.derive(weights if weights is not None else relaxation.operation_weights())

    def ask(self) -> Optional[Proposal]:
        if self.derived is not None and self._claim(self.derived):
            return Proposal(self.derived)
        return None

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """The relaxation was trained before the proposal; its score changes nothing."""
