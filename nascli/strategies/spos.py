"""Single-path one-shot (Guo et al., 2020): a supernet trained on uniform random paths, then a search of its paths.

Before its trials the strategy trains the supernet (continuing supernet.pt after an interruption); the search
over its sub-networks, each scored with inherited weights by `evaluator=supernet`, is any multi-trial strategy
(`strategy.search`, evolution by default; `list` scores the listed architectures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from nascli.errors import UserError, require
from nascli.evaluators.base import Evaluator
from nascli.evaluators.supernet_training import Supernets, SupernetTrainSettings, train_paths
from nascli.goal import Goal
from nascli.registry import lookup, register
from nascli.rundir import RunDir
from nascli.spaces.base import SearchSpace
from nascli.strategies.base import Outcome, Proposal, Strategy
from nascli.warmstart import Knowledge

NOT_INNER = ("spos", "darts")  # strategies that cannot be the search over a supernet's paths


@dataclass
class SPOSSettings(SupernetTrainSettings):
    """The supernet's training (epochs, lr, ...) and the search run over its paths."""

    search: str = "evolution"  # the multi-trial strategy that searches the trained supernet's paths
    search_settings: dict[str, Any] = field(default_factory=dict)  # settings of `search` that differ from its defaults

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.search not in NOT_INNER, f"search must be a multi-trial strategy, not {self.search}")


def _inner_class(settings: SPOSSettings) -> type:
    return lookup("strategy", settings.search)


@register("strategy", "spos")
class SPOS(Strategy):
    """Trains a supernet on random paths, then proposes what the inner strategy proposes."""

    Settings = SPOSSettings
    needs_evaluator = "supernet"
    trains_supernet = True

    def __init__(self, settings: SPOSSettings, space: SearchSpace, seed: int) -> None:
        super().__init__(settings, space, seed)
        cls = _inner_class(settings)
        self.inner: Strategy = cls(self._inner_settings(cls, settings), space=space, seed=seed)

    @staticmethod
    def _inner_settings(cls: type, settings: SPOSSettings) -> Any:
        try:
            return cls.Settings(**settings.search_settings)
        except (TypeError, ValueError) as exc:
            raise UserError(f"strategy.search_settings do not fit strategy {settings.search}: {exc}") from None

    @classmethod
    def check(cls, settings: SPOSSettings) -> None:
        inner = _inner_class(settings)
        inner.check(cls._inner_settings(inner, settings))

    def before_trials(self, run: RunDir, evaluator: Evaluator, seed: int) -> None:
        """Train the supernet on random paths into supernet.pt, continuing an interrupted training."""
        supernets = Supernets(self.space, evaluator.data, evaluator.hardware, run)
        net = supernets.build(seed)
        state = supernets.load(net) or {"epoch": 0, "epochs": self.settings.epochs}
        train_paths(supernets, net, self.settings, state, seed)

    def prepare(self, evaluator: Evaluator, goal: Optional[Goal] = None, knowledge: Optional[Knowledge] = None) -> None:
        self.inner.prepare(evaluator, goal, knowledge)

    def observe(self, proposal: Proposal, outcome: Outcome) -> None:
        self.inner.observe(proposal, outcome)

    def ask(self) -> Optional[Proposal]:
        proposal = self.inner.ask()
        self.screened = self.inner.screened
        return proposal

    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        self.inner.tell(proposal, outcome)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)
