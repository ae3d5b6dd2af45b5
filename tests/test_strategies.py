"""Every strategy: no repeats, determinism, state save/restore, exhaustion; evolution beats random."""

from __future__ import annotations

import json
import statistics

import pytest

from nascli.config import group_options, load_config
from nascli.spaces.chain import ChainSettings, ChainSpace
from nascli.strategies.base import Outcome, Strategy

STRATEGIES = sorted(group_options("strategy"))


def toy_objective(arch: dict) -> float:
    """A deterministic stand-in for accuracy: favours wide conv3x3 blocks."""
    return sum((b["op"] == "conv3x3") * b["width"] for b in arch["blocks"]) / 64


def make(name: str, seed: int = 0, space: ChainSpace | None = None) -> Strategy:
    cfg = load_config([f"strategy={name}"])
    return cfg.strategy.create(space=space or cfg.space.create(), seed=seed)


def drive(strategy: Strategy, steps: int) -> list[dict]:
    archs = []
    for _ in range(steps):
        proposal = strategy.ask()
        if proposal is None:
            break
        archs.append(proposal.arch)
        strategy.tell(proposal, Outcome(toy_objective(proposal.arch)))
    return archs


def test_strategy_options_are_found() -> None:
    assert {"random", "evolution"} <= set(STRATEGIES)


@pytest.mark.parametrize("name", STRATEGIES)
def test_never_proposes_an_architecture_twice(name: str) -> None:
    strategy = make(name)
    archs = drive(strategy, 80)
    assert len(archs) == 80
    assert len({strategy.space.hash(a) for a in archs}) == 80


@pytest.mark.parametrize("name", STRATEGIES)
def test_same_seed_same_sequence(name: str) -> None:
    assert drive(make(name, seed=3), 30) == drive(make(name, seed=3), 30)
    assert drive(make(name, seed=3), 30) != drive(make(name, seed=4), 30)


@pytest.mark.parametrize("name", STRATEGIES)
def test_saved_state_continues_identically(name: str) -> None:
    uninterrupted = make(name, seed=5)
    expected = drive(uninterrupted, 40)

    first = make(name, seed=5)
    head = drive(first, 25)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = make(name, seed=999)
    resumed.load_state_dict(state)
    assert head + drive(resumed, 15) == expected


@pytest.mark.parametrize("name", STRATEGIES)
def test_stops_when_the_space_is_exhausted(name: str) -> None:
    space = ChainSpace(ChainSettings(min_blocks=1, max_blocks=1, ops=["conv3x3"], widths=[8, 16], max_downsamples=1))
    archs = drive(make(name, space=space), 10)
    assert len(archs) == 4


@pytest.mark.parametrize("name", STRATEGIES)
def test_failed_trials_are_tolerated(name: str) -> None:
    strategy = make(name)
    for step in range(30):
        proposal = strategy.ask()
        strategy.tell(proposal, Outcome(None if step % 2 else toy_objective(proposal.arch)))
    assert strategy.ask() is not None


def test_evolution_finds_better_architectures_than_random() -> None:
    def best_after(name: str, seed: int) -> float:
        return max(toy_objective(a) for a in drive(make(name, seed=seed), 100))

    evolution = statistics.mean(best_after("evolution", s) for s in range(10))
    random_search = statistics.mean(best_after("random", s) for s in range(10))
    assert evolution > random_search
