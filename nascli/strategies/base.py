"""The ask/tell interface of multi-trial strategies, with state that can be saved and restored."""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from nascli.errors import require
from nascli.evaluators.base import Evaluator
from nascli.evaluators.proxies import PROXIES
from nascli.evaluators.proxy import proxy_scorer
from nascli.goal import Goal
from nascli.rundir import RunDir
from nascli.seeding import derive_seed
from nascli.spaces.base import Arch, SearchSpace
from nascli.warmstart import Knowledge


@dataclass
class Proposal:
    """What a strategy asks to evaluate: an architecture and, for multi-fidelity search, a budget."""

    arch: Arch
    budget: Optional[float] = None


@dataclass
class Outcome:
    """What the runner tells a strategy about a proposal: `objective` is None when the trial failed."""

    objective: Optional[float]
    metrics: dict[str, Any] = field(default_factory=dict)
    values: Optional[tuple[float, ...]] = None  # every objective, larger is better; None when failed or infeasible

    @property
    def ok(self) -> bool:
        return self.objective is not None


@dataclass
class Pace:
    """How many trials the search is expected to run in all, and why (its trial limit, or the time left); with
    search.max_seconds, the share of it spent so far."""

    trials: Optional[int]  # None: not known yet (no trial limit, and no trial has finished)
    reason: str
    spent: Optional[float] = None


INITIAL_SHARE = 1 / 3  # an initial design takes at most this share of the trials the search is expected to run
MIN_INITIAL = 4


@dataclass
class StrategySettings:
    """What every multi-trial strategy has: zero-cost pre-screening of the random architectures it draws."""

    prescreen: Optional[str] = None  # a proxy (synflow, jacov, snip, grad_norm, params, flops), or null: none
    prescreen_pool: int = 10  # each random architecture is the best of this many draws by the proxy

    def __post_init__(self) -> None:
        require(self.prescreen is None or self.prescreen in PROXIES,
                f"prescreen must be one of {', '.join(PROXIES)} (or null), got {self.prescreen!r}")
        require(self.prescreen_pool >= 1, "prescreen_pool must be at least 1")


class Strategy(ABC):
    """Proposes architectures one at a time and learns from their outcomes (higher objective is better).

    A strategy searches for one objective unless it is `multi_objective`, in which case it reads every
    objective of an outcome (`values`) when the goal has several. Architectures that break a constraint
    on a metric known before training (`known`) are never proposed.
    """

    Settings: type
    name: str = ""
    max_attempts = 200
    needs_evaluator: Optional[str] = None  # the evaluator a strategy works with, when it works with one only
    trains_supernet = False  # a one-shot strategy: it trains the run's supernet before its trials
    multi_objective: bool = False

    def __init__(self, settings: Any, space: SearchSpace, seed: int) -> None:
        self.settings = settings
        self.space = space
        self.seed = seed
        self.rng = random.Random(seed)
        self.seen: set[str] = set()
        self.screen: Optional[Callable[[Arch], float]] = None  # the pre-screening proxy, once prepared
        self.goal: Optional[Goal] = None
        self.screened = 0  # architectures never proposed because a constraint ruled them out before training
        self._known: Callable[[Arch], dict[str, Any]] = lambda arch: {}
        self._known_cache: dict[str, dict[str, Any]] = {}
        self.knowledge: Optional[Knowledge] = None  # earlier searches (search.warm_start), once prepared
        self._earlier_state: dict[str, Any] = {}
        self.pace: Optional[Pace] = None  # set by the scheduler before each proposal
        self.initial_over = False
        self.log: Callable[[str], None] = lambda line: None

    @classmethod
    def check(cls, settings: Any) -> None:
        """Raise UserError now if the settings name something unusable (cheap; called before any work starts)."""

    @property
    def multi(self) -> bool:
        """Whether the search has several objectives."""
        return self.goal is not None and self.goal.multi

    def check_evaluator(self, evaluator: Evaluator) -> None:
        """Raise UserError before any work when this strategy cannot search with `evaluator` (most can)."""

    def before_trials(self, run: RunDir, evaluator: Evaluator, seed: int) -> None:
        """A search phase before the trial loop, in the run's directory (one-shot strategies train their supernet
        here, resuming where an interrupted run stopped); most have none."""

    def prepare(self, evaluator: Evaluator, goal: Optional[Goal] = None, knowledge: Optional[Knowledge] = None) -> None:
        """Read what the evaluator prepared before the first proposal: its data (for pre-screening by a proxy),
        the goal, the metrics it knows without training (for constraints and known objectives) and what
        earlier searches know (a warm start)."""
        name = getattr(self.settings, "prescreen", None)
        if name is not None:
            self.screen = proxy_scorer(name, self.space, evaluator.data, evaluator.hardware,
                                       derive_seed(self.seed, "prescreen"))
        self.goal = goal
        if goal is not None:
            names = [m for m in goal.metrics if m in evaluator.pre_training_metrics()]
            if names:
                self._known = lambda arch: evaluator.known_metrics(arch, names)
        self.knowledge = knowledge
        if knowledge is not None and self._earlier_state:
            knowledge.restore(self._earlier_state)

    def observe(self, proposal: Proposal, outcome: Outcome) -> None:
        """What every strategy learns before its own `tell`: how well earlier searches rank this one's results."""
        if self.knowledge is not None and outcome.ok:
            self.knowledge.observe(proposal.arch, outcome.objective)

    def in_initial_design(self, done: int, configured: int) -> bool:
        """Whether a random initial design of `configured` trials goes on after `done` of them.

        It ends early where it would take more than a third of the trials the search is expected to run
        (`pace`: the trial limit, or the trials that fit in search.max_seconds at the measured pace), and
        says so in the log. Once over, it stays over.
        """
        if self.initial_over:
            return False
        size = configured
        if self.pace is not None and self.pace.trials is not None:
            size = min(configured, max(MIN_INITIAL, math.ceil(INITIAL_SHARE * self.pace.trials)))
        if done < size:
            return True
        self.initial_over = True
        if size < configured:
            self.log(f"{self.name}: the random initial design ends after {done} of its {configured} trials, "
                     f"a third of the search ({self.pace.reason})")
        return False

    def known(self, arch: Arch) -> dict[str, Any]:
        """The goal's metrics of `arch` that the evaluator knows without training it (params, a table's costs)."""
        key = self.space.hash(arch)
        if key not in self._known_cache:
            self._known_cache[key] = self._known(arch)
        return self._known_cache[key]

    def admissible(self, arch: Arch) -> bool:
        """False when a metric known before training already breaks a constraint."""
        return self.goal is None or not self.goal.constraints or self.goal.violation(self.known(arch)) is None

    def _open(self, arch: Arch) -> bool:
        """Whether `arch` may still be proposed: never proposed before and not ruled out by a constraint."""
        return self.space.hash(arch) not in self.seen and self.admissible(arch)

    @abstractmethod
    def ask(self) -> Optional[Proposal]:
        """The next proposal, or None when the strategy has nothing left to propose."""

    @abstractmethod
    def tell(self, proposal: Proposal, outcome: Outcome) -> None:
        """Learn from the outcome of an earlier proposal."""

    def _claim(self, arch: Arch) -> bool:
        """Mark `arch` as proposed; False if it was proposed before or a constraint rules it out before training."""
        key = self.space.hash(arch)
        if key in self.seen:
            return False
        self.seen.add(key)
        if not self.admissible(arch):
            self.screened += 1
            return False
        return True

    def _unseen(self, generate: Callable[[], Arch]) -> Optional[Arch]:
        """The first architecture from `generate` never proposed before, or None after many tries."""
        for _ in range(self.max_attempts):
            arch = generate()
            if self._claim(arch):
                return arch
        return None

    def _random_unseen(self) -> Optional[Arch]:
        """The space's reference architectures first (those never proposed), then uniform samples.

        With a warm start, while earlier searches are trusted, their best architectures come before the samples.
        With pre-screening, a sample is the best by the proxy of `prescreen_pool` unseen draws.
        """
        for arch in self.space.references():
            if self._claim(arch):
                return arch
        suggested = self._suggested()
        if suggested is not None:
            return suggested
        if self.screen is None:
            return self._unseen(lambda: self.space.sample(self.rng))
        pool: dict[str, Arch] = {}
        for _ in range(self.max_attempts):
            arch = self.space.sample(self.rng)
            if self._open(arch):
                pool.setdefault(self.space.hash(arch), arch)
            if len(pool) == self.settings.prescreen_pool:
                break
        if not pool:
            return None
        best = max(pool.values(), key=self.screen)
        self._claim(best)
        return best

    def _suggested(self) -> Optional[Arch]:
        """With a trusted warm start, the earlier tasks' best architecture not proposed yet (claimed); else None."""
        return self.knowledge.suggest(self._claim) if self.knowledge is not None else None

    def _propose_random(self) -> Optional[Proposal]:
        """A random architecture never proposed before, or None when none can be found."""
        arch = self._random_unseen()
        return Proposal(arch) if arch is not None else None

    def state_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot from which `load_state_dict` continues the search identically."""
        version, internal, gauss = self.rng.getstate()
        earlier = self.knowledge.state_dict() if self.knowledge is not None else {}
        return {"rng": [version, list(internal), gauss], "seen": sorted(self.seen), "screened": self.screened,
                "earlier": earlier, "initial_over": self.initial_over}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a snapshot taken by `state_dict`."""
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.seen = set(state["seen"])
        self.screened = state.get("screened", 0)
        self._earlier_state = state.get("earlier", {})
        self.initial_over = state.get("initial_over", False)
        if self.knowledge is not None:
            self.knowledge.restore(self._earlier_state)
