"""Every strategy: no repeats, determinism, state save/restore, exhaustion; evolution beats random."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest
from conftest import read_trials

from nascli.config import group_options, load_config
from nascli.errors import UserError
from nascli.factory import build_space, build_strategy
from nascli.spaces.chain import ChainSettings, ChainSpace
from nascli.spaces.nb201 import OPS, cell_string
from nascli.strategies.base import Outcome, Pace, Proposal, Strategy

# list proposes a file's architectures (tested below); spos (a wrapper of these) and darts: test_supernet.py
STRATEGIES = sorted(set(group_options("strategy")) - {"list", "darts", "spos"})
MULTI_FIDELITY = {"hyperband"}  # re-evaluates promoted architectures at larger budgets


def toy_objective(arch: dict) -> float:
    """A deterministic stand-in for accuracy: favours wide conv3x3 blocks, or 3x3 convs in a cell."""
    if "cell" in arch:
        return arch["cell"].count("nor_conv_3x3") + 0.5 * arch["cell"].count("skip_connect")
    return sum((b["op"] == "conv3x3") * b["width"] for b in arch["blocks"]) / 64


def make(name: str, seed: int = 0, space: ChainSpace | None = None) -> Strategy:
    cfg = load_config([f"strategy={name}", f"seed={seed}"])
    return build_strategy(cfg, space or build_space(cfg))


def drive(strategy: Strategy, steps: int) -> list[dict]:
    """Proposals of `steps` ask/tell rounds; with a budget, the budget is part of the proposal."""
    proposals = []
    for _ in range(steps):
        proposal = strategy.ask()
        if proposal is None:
            break
        proposals.append(proposal.arch if proposal.budget is None else {**proposal.arch, "budget": proposal.budget})
        strategy.tell(proposal, Outcome(toy_objective(proposal.arch) + (proposal.budget or 0) / 100))
    return proposals


def test_strategy_options_are_found() -> None:
    assert {"random", "evolution", "local", "bo", "reinforce", "hyperband"} <= set(STRATEGIES)


@pytest.mark.parametrize("space", ["chain", "nb201", "text"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_never_proposes_an_architecture_twice(name: str, space: str) -> None:
    strategy = make(name, space=build_space(load_config([f"space={space}"])))
    proposals = drive(strategy, 50)
    assert len(proposals) == 50
    for proposal in proposals:
        strategy.space.validate({k: v for k, v in proposal.items() if k != "budget"})
    # a multi-fidelity strategy may train an architecture again, but only at a larger budget
    assert len({json.dumps(p, sort_keys=True) for p in proposals}) == 50
    if name not in MULTI_FIDELITY:
        assert len({strategy.space.hash(p) for p in proposals}) == 50


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
    proposals = drive(make(name, space=space), 10)
    assert len({json.dumps({k: v for k, v in p.items() if k != "budget"}) for p in proposals}) == 4
    if name not in MULTI_FIDELITY:
        assert len(proposals) == 4


@pytest.mark.parametrize("name", STRATEGIES)
def test_failed_trials_are_tolerated(name: str) -> None:
    strategy = make(name)
    for step in range(30):
        proposal = strategy.ask()
        strategy.tell(proposal, Outcome(None if step % 2 else toy_objective(proposal.arch)))
    assert strategy.ask() is not None


@pytest.mark.parametrize("name", ["evolution", "local", "bo", "reinforce"])
def test_model_guided_strategies_beat_random_search(name: str) -> None:
    def best_after(strategy: str, seed: int) -> float:
        return max(toy_objective(a) for a in drive(make(strategy, seed=seed), 60))

    guided = statistics.mean(best_after(name, s) for s in range(5))
    random_search = statistics.mean(best_after("random", s) for s in range(5))
    assert guided > random_search


def test_hyperband_promotes_the_best_to_larger_budgets() -> None:
    strategy = make("hyperband")
    first_bracket = drive(strategy, 13)  # 9 at 1 epoch, the best 3 at 3, the best 1 at 9
    assert [p["budget"] for p in first_bracket] == [1] * 9 + [3] * 3 + [9]
    strip = [{k: v for k, v in p.items() if k != "budget"} for p in first_bracket]
    top3 = sorted(strip[:9], key=toy_objective, reverse=True)[:3]
    assert sorted(map(toy_objective, strip[9:12])) == sorted(map(toy_objective, top3))
    assert strip[12] == max(strip[9:12], key=toy_objective)
    assert [p["budget"] for p in drive(strategy, 6)] == [3] * 5 + [9]  # the next bracket


def test_list_strategy_proposes_the_file_in_order_and_resumes(tmp_path) -> None:
    cells = [cell_string([op] * 6) for op in OPS]
    path = tmp_path / "cells.txt"
    path.write_text("# five cells\n" + cells[0] + "\n\n" + json.dumps({"arch": {"cell": cells[1]}}) + "\n"
                    + "\n".join([json.dumps({"cell": c}) for c in cells[2:]] + [cells[0]]) + "\n")
    cfg = load_config(["strategy=list", f"strategy.path={path}", "space=nb201"])
    strategy = build_strategy(cfg, build_space(cfg))
    assert drive(strategy, 2) == [{"cell": c} for c in cells[:2]]
    resumed = build_strategy(cfg, build_space(cfg))
    resumed.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
    assert drive(resumed, 10) == [{"cell": c} for c in cells[2:]]  # the repeated first cell is not proposed again


@pytest.mark.parametrize("content, message", [
    ("", "lists no architecture"),
    ('{"cell": "|nope~0|"}\n', "line 1: not an architecture"),
    ("|none~0|+|none~0|none~1|\n", "line 1: not an architecture"),
])
def test_list_strategy_refuses_a_bad_file(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "cells.txt"
    path.write_text(content)
    cfg = load_config(["strategy=list", f"strategy.path={path}", "space=nb201"])
    with pytest.raises(UserError, match=message):
        build_strategy(cfg, build_space(cfg))


def test_list_strategy_runs_from_the_cli(nas, workdir, table) -> None:
    cells = [cell_string([op] * 6) for op in OPS]
    (workdir / "cells.txt").write_text("\n".join(cells) + "\n")
    code, _, err = nas("search", "strategy=list", "strategy.path=cells.txt", "space=nb201", "evaluator=tabular",
                       f"evaluator.table={table}", "run_dir=run")
    assert code == 0, err
    assert [t["arch"]["cell"] for t in read_trials(workdir / "run")] == cells
    code, _, err = nas("search", "strategy=list", "strategy.path=missing.txt", "run_dir=run2")
    assert code != 0 and "strategy.path missing.txt is not a file" in err and "Traceback" not in err


@pytest.mark.parametrize("name, configured", [("bo", 25), ("evolution", 10), ("nsga2", 20)])
def test_an_initial_design_takes_at_most_a_third_of_the_expected_trials(name: str, configured: int) -> None:
    """With 12 trials expected, the random initial design ends after 4 and says so once; without, it runs whole."""
    lines: list[str] = []
    strategy = make(name)
    strategy.log = lines.append
    strategy.pace = Pace(12, "about 12 trials fit in search.max_seconds=60 at 5.0 s per trial")
    drive(strategy, 6)
    assert strategy.initial_over
    assert lines == [f"{name}: the random initial design ends after 4 of its {configured} trials, a third of the "
                     "search (about 12 trials fit in search.max_seconds=60 at 5.0 s per trial)"]
    unlimited = make(name)
    drive(unlimited, 6)
    assert not unlimited.initial_over
    assert drive(strategy, 6) != drive(make(name), 12)[6:]


def test_the_pace_counts_the_trials_that_fit_in_the_time_left() -> None:
    """8 s per finished trial and 60 s left: 7 more trials after the 5 proposed, fewer than max_trials=30."""
    from nascli.scheduler import Scheduler
    from nascli.settings import SearchSettings

    def pace(max_seconds: float | None) -> Pace:
        scheduler = Scheduler(make("bo"), build_space(load_config([])), None, 0,
                              SearchSettings(max_trials=30, max_seconds=max_seconds), None)
        scheduler.next_id, scheduler.elapsed = 5, lambda: 40.0
        return scheduler._pace()

    assert pace(100) == Pace(12, "about 12 trials fit in search.max_seconds=100 at 8.0 s per trial", 0.4)
    assert pace(1000) == Pace(30, "search.max_trials=30", 0.04) and pace(None) == Pace(30, "search.max_trials=30")


def test_a_time_budget_alone_sets_no_trial_limit() -> None:
    """search.max_seconds without search.max_trials runs trials until the budget is spent; the pace then counts only
    the trials that fit, and before any has finished it knows none (the initial design keeps its configured size)."""
    from nascli.scheduler import Scheduler
    from nascli.settings import SearchSettings

    assert SearchSettings().trial_limit == 30 and SearchSettings(max_seconds=60).trial_limit is None
    assert SearchSettings(max_trials=5, max_seconds=60).trial_limit == 5
    scheduler = Scheduler(make("bo"), build_space(load_config([])), None, 0, SearchSettings(max_seconds=1000), None)
    scheduler.elapsed = lambda: 40.0
    assert scheduler._pace() == Pace(None, "no trial has finished yet", 0.04)
    scheduler.next_id = 5
    assert scheduler._pace() == Pace(125, "about 125 trials fit in search.max_seconds=1000 at 8.0 s per trial", 0.04)
    strategy = make("bo")
    strategy.pace = Pace(None, "no trial has finished yet", 0.0)
    assert strategy.in_initial_design(24, 25) and not strategy.in_initial_design(25, 25)


def test_bo_divides_expected_improvement_by_expected_cost_while_the_time_budget_lasts() -> None:
    import random

    from scipy.stats import spearmanr

    strategy, lines = make("bo"), []
    strategy.settings.cost_aware = True
    strategy.log = lines.append

    def seconds(arch: dict) -> float:
        return sum(b["width"] * (2 if b["op"].startswith("conv") else 1) for b in arch["blocks"]) / 10

    rng = random.Random(1)
    for _ in range(15):
        arch = strategy.space.sample(rng)
        strategy.tell(Proposal(arch), Outcome(toy_objective(arch), {"train_seconds": seconds(arch)}))
    pool = [strategy.space.sample(rng) for _ in range(60)]
    strategy.pace = Pace(40, "about 40 trials fit in search.max_seconds=600", spent=0.2)
    early = strategy._cost(pool)
    assert spearmanr(early, [seconds(a) for a in pool]).statistic > 0.7  # cheap candidates are divided by less
    strategy.pace = Pace(40, "about 40 trials fit in search.max_seconds=600", spent=0.6)
    later = strategy._cost(pool)
    assert np.ptp(np.log(later)) == pytest.approx(0.5 * np.ptp(np.log(early)))  # the exponent falls 1 -> 0.5
    strategy.pace = Pace(40, "search.max_trials=40", spent=1.0)
    assert strategy._cost(pool) == 1.0  # the budget spent: the best regardless of cost
    assert len(lines) == 1 and "per expected training second" in lines[0]
    strategy.pace = Pace(40, "search.max_trials=40")
    assert strategy._cost(pool) == 1.0  # no time budget: plain EI
    strategy.settings.cost_aware, strategy.pace = False, Pace(40, "about 40 trials fit", spent=0.2)
    assert strategy._cost(pool) == 1.0
