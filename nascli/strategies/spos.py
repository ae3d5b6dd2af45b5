"""Single-path one-shot (Guo et al., 2020): a supernet trained on uniform random paths, then a search of its paths.

The supernet is trained by `evaluator=supernet` (which this strategy's option selects); the search over its
sub-networks, scored with inherited weights, is any multi-trial strategy (`strategy.search`, evolution by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from nascli.config import require
from nascli.errors import UserError
from nascli.goal import Goal
from nascli.registry import lookup, register
from nascli.spaces.base import SearchSpace
from nascli.strategies.base import Outcome, Proposal, Strategy

if TYPE_CHECKING:
    from nascli.warmstart import Knowledge

NOT_INNER = ("spos", "list", "darts")  # strategies that cannot be the search over a supernet's paths


@dataclass
class SPOSSettings:
    """The supernet's training epochs and the search run over its paths."""

    supernet_epochs: int = 30
    search: str = "evolution"
    search_settings: dict[str, Any] = field(default_factory=dict)  # settings of `search` that differ from its defaults

    def __post_init__(self) -> None:
        require(self.supernet_epochs >= 1, "supernet_epochs must be at least 1")
        require(self.search not in NOT_INNER, f"search must be a multi-trial strategy, not {self.search}")


def _inner_class(settings: SPOSSettings) -> type:
    return lookup("strategy", settings.search)


@register("strategy", "spos")
class SPOS(Strategy):
    """Proposes what the inner strategy proposes; the evaluator scores each as a path of the trained supernet."""

    Settings = SPOSSettings
    needs_evaluator = "supernet"

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
        cls._inner_settings(_inner_class(settings), settings)

    def prepare(self, evaluator: Any, goal: Optional[Goal] = None, knowledge: Optional[Knowledge] = None) -> None:
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
