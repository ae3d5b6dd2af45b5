"""Several objectives and constraints: fronts, hypervolumes, pick rules, strategies, screening before training."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import moocore
import numpy as np
import pandas as pd
import pytest

from conftest import TINY, read_trials, synthetic_score
from nascli.goal import Constraint, Goal, Objective, parse_constraints
from nascli.spaces.nb201 import OPS, cell_string
from nascli.strategies.bo import hypervolume_improvement
from nascli.strategies.nsga2 import crowding_distance
from test_resume import assert_resumes_exactly, prepared_scheduler

ACC_LAT = Goal([Objective("acc", True), Objective("lat", False)])
MULTI = ["random", "nsga2", "bo", "local"]


def points(*pairs: tuple[float, float]) -> list[dict]:
    return [{"acc": a, "lat": t} for a, t in pairs]


def test_front_is_the_non_dominated_points_and_infeasible_ones_never_join() -> None:
    trials = points((90, 5), (80, 1), (85, 3), (84, 4), (70, 2), (90, 6), (95, 9))
    assert ACC_LAT.front(trials) == [0, 1, 2, 6]
    constrained = Goal(ACC_LAT.objectives, [Constraint("lat", 5)])
    assert constrained.front(trials) == [0, 1, 2]
    assert [constrained.feasible(t) for t in trials] == [True, True, True, True, True, False, False]
    assert not constrained.feasible({"acc": 99})  # a constrained metric that is missing breaks its constraint


def test_hypervolume_matches_a_hand_computed_value() -> None:
    # acc scaled between 100 (best) and 50 (worst), lat between 0 (best) and 10 (worst); reference = worst corner
    bounds = {"acc": (100.0, 50.0), "lat": (0.0, 10.0)}
    trials = points((90, 5), (80, 1))  # scaled (minimised): (0.2, 0.5) and (0.4, 0.1)
    # area dominated: [0.2,1]x[0.5,1] = 0.4 plus [0.4,1]x[0.1,0.5] = 0.24
    assert ACC_LAT.hypervolume(trials, bounds) == pytest.approx(0.64)
    assert ACC_LAT.hypervolume(points((40, 5)), bounds) == 0.0  # below the worst accuracy: outside the box
    assert ACC_LAT.hypervolume(points((100, 0)), bounds) == pytest.approx(1.0)


def test_pick_rules_choose_from_the_front() -> None:
    trials = points((90, 5), (80, 1), (85, 3), (50, 0.5))
    front = ACC_LAT.front(trials)
    assert ACC_LAT.pick(trials, front) == 0  # default: the first objective
    assert Goal(ACC_LAT.objectives, pick="min:lat").pick(trials, front) == 3
    # scaled to [0, 1] (0 best): (0, 1), (0.25, 0.11), (0.125, 0.56), (1, 0): the second is nearest the ideal corner
    assert Goal(ACC_LAT.objectives, pick="knee").pick(trials, front) == 1
    assert Goal([Objective("lat", False)]).pick(trials, Goal([Objective("lat", False)]).front(trials)) == 3


def test_constraints_parse_upper_and_lower_bounds() -> None:
    upper, lower = parse_constraints({"params": 1e6, "min_val_acc": 90})
    assert (upper.metric, upper.bound, upper.lower) == ("params", 1e6, False)
    assert (lower.metric, lower.bound, lower.lower) == ("val_acc", 90.0, True)
    assert upper.holds(1e6) and not upper.holds(1e6 + 1) and lower.holds(90) and not lower.holds(89.9)
    assert Goal([Objective("val_acc", True)], [upper]).violation({"params": 2e6}) == "params 2e+06 breaks params <= 1e+06"


@pytest.mark.parametrize("dims", [2, 3])
def test_hypervolume_improvement_equals_the_difference_of_hypervolumes(dims: int) -> None:
    rng = np.random.default_rng(dims)
    front = rng.random((8, dims))
    front = front[moocore.is_nondominated(front)]
    new = rng.random((40, dims)) * 1.4 - 0.2
    ref = np.full(dims, 1.1)
    expected = [moocore.hypervolume(np.vstack([front, np.minimum(p, 1.1)]), ref=ref) - moocore.hypervolume(front, ref=ref)
                for p in new]
    assert hypervolume_improvement(front, new, 1.1) == pytest.approx(expected, abs=1e-12)


def test_crowding_distance_by_hand() -> None:
    distance = crowding_distance(np.array([[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]]))
    # inner points: (3 - 0) / 4 + (4 - 1) / 4 = 1.5 and (4 - 1) / 4 + (3 - 0) / 4 = 1.5; the ends are infinite
    assert list(distance) == [np.inf, 1.5, 1.5, np.inf]


@pytest.fixture
def hw_table(workdir: Path) -> Path:
    """Every NB201 cell with a made-up accuracy and a latency that grows with its convolutions (a real trade-off)."""
    rows = []
    for ops in itertools.product(OPS, repeat=6):
        latency = 1 + 3 * ops.count("nor_conv_3x3") + ops.count("nor_conv_1x1") + 0.1 * ops.count("avg_pool_3x3")
        rows.append({"arch": cell_string(list(ops)), "val_acc": synthetic_score(ops), "test_acc": synthetic_score(ops) + 1,
                     "latency": latency})
    path = workdir / "hw.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def tabular(table: Path, *extra: str) -> list[str]:
    return ["space=nb201", "evaluator=tabular", f"evaluator.table={table}", "evaluator.costs=[latency]", *extra]


@pytest.mark.parametrize("strategy", MULTI)
def test_multi_objective_search_records_its_front_hypervolume_and_pick(nas, workdir: Path, hw_table: Path,
                                                                       strategy: str) -> None:
    code, out, err = nas("search", *tabular(hw_table, f"strategy={strategy}", "search.max_trials=40",
                                            "search.objectives=[val_acc:max,latency:min]", "run_dir=run"))
    assert code == 0, err
    trials = [t for t in read_trials(workdir / "run") if t["status"] == "ok"]
    front = json.loads((workdir / "run" / "front.json").read_text())
    ids = {t["id"] for t in front["trials"]}
    values = np.array([[-t["metrics"]["val_acc"], t["metrics"]["latency"]] for t in trials])
    expected = {t["id"] for t, keep in zip(trials, moocore.is_nondominated(values)) if keep}
    assert ids == expected and len(ids) >= 2
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["front_size"] == len(ids) and 0 < summary["hypervolume"]["value"] <= 1
    assert summary["goal"]["objectives"] == ["val_acc:max", "latency:min"]
    best = json.loads((workdir / "run" / "best.json").read_text())
    assert best["id"] in ids and best["metrics"]["val_acc"] == max(t["metrics"]["val_acc"] for t in front["trials"])
    assert f"Pareto front of {len(ids)}, hypervolume {summary['hypervolume']['value']:.3f}" in out
    code, out, _ = nas("show", "run")
    assert code == 0 and "Pareto front" in out
    code, out, _ = nas("report", "run")
    assert code == 0 and "hypervolume" in out and f"{summary['hypervolume']['value']:.3f}" in out


def test_multi_objective_search_is_reproducible(nas, workdir: Path, hw_table: Path) -> None:
    args = tabular(hw_table, "strategy=bo", "search.max_trials=35", "search.objectives=[val_acc:max,latency:min]")
    assert nas("search", *args, "run_dir=a")[0] == 0
    assert nas("search", *args, "run_dir=b")[0] == 0
    assert [t["hash"] for t in read_trials(workdir / "a")] == [t["hash"] for t in read_trials(workdir / "b")]


@pytest.mark.parametrize("strategy", ["bo", "evolution", "nsga2"])
def test_a_cost_known_before_training_screens_candidates_out(nas, workdir: Path, hw_table: Path, strategy: str) -> None:
    code, _, err = nas("search", *tabular(hw_table, f"strategy={strategy}", "search.max_trials=30",
                                          "search.constraints={latency: 4}", "run_dir=run"))
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert len(trials) == 30 and all(t["metrics"]["latency"] <= 4 and t["feasible"] for t in trials)
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["n_screened"] > 0 and summary["n_feasible"] == 30
    assert json.loads((workdir / "run" / "best.json").read_text())["metrics"]["latency"] <= 4


def test_a_constraint_known_only_after_the_trial_is_recorded_and_never_the_best(nas, workdir: Path,
                                                                                hw_table: Path) -> None:
    code, _, err = nas("search", *tabular(hw_table, "strategy=random", "search.max_trials=40",
                                          "search.constraints={test_acc: 60}", "run_dir=run"))
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert {t["feasible"] for t in trials} == {True, False}  # the table's test_acc is no cost: trials run, then judged
    best = json.loads((workdir / "run" / "best.json").read_text())
    feasible = [t for t in trials if t["feasible"]]
    assert best["metrics"]["val_acc"] == max(t["metrics"]["val_acc"] for t in feasible)
    assert json.loads((workdir / "run" / "summary.json").read_text())["n_feasible"] == len(feasible)


def test_params_constraint_screens_trained_candidates_and_front_member_is_retrained(nas, workdir: Path) -> None:
    code, _, err = nas("search", *TINY, "strategy=nsga2", "search.max_trials=6", "retrain.enabled=false",
                       "search.objectives=[val_acc:max,params:min]", "search.constraints={params: 3000}",
                       "run_dir=run")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert all(t["metrics"]["params"] <= 3000 for t in trials)
    member = json.loads((workdir / "run" / "front.json").read_text())["trials"][-1]
    code, _, err = nas("retrain", "run", "--pick", str(member["id"]), "retrain.epochs=1", "run_dir=again")
    assert code == 0, err
    assert json.loads((workdir / "again" / "best.json").read_text())["arch"] == member["arch"]
    code, _, err = nas("retrain", "run", "--pick", "999", "run_dir=never")
    assert code == 2 and "no successful trial 999" in err


@pytest.mark.parametrize(("args", "message"), [
    (["strategy=evolution", "search.objectives=[val_acc:max,latency:min]"], "optimises one objective"),
    (["search.objectives=[val_acc:max,latncy:min]"], "lacks the column(s) latncy"),
    (["search.objectives=[val_acc:up]"], "metric:max or metric:min"),
    (["search.constraints={latency: fast}"], "needs a finite number"),
    (["search.pick=middle"], "max:METRIC, min:METRIC or knee"),
    (["evaluator.costs=[watts]"], "lacks the column(s) watts"),
])
def test_bad_goals_are_one_line_errors(nas, workdir: Path, hw_table: Path, args: list[str], message: str) -> None:
    code, _, err = nas("search", *tabular(hw_table, *args), "run_dir=run")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (workdir / "run").exists()


def test_an_objective_trials_do_not_record_stops_with_one_line(nas, workdir: Path) -> None:
    code, _, err = nas("search", *TINY, "strategy=random", "search.max_trials=2", "retrain.enabled=false",
                       "search.objectives=[val_acc:max,watts:min]", "run_dir=run")
    assert code == 2 and "watts" in err and "they record" in err


@pytest.mark.parametrize("strategy", ["nsga2 strategy.population_size=8", "bo strategy.initial=10", "local"])
def test_a_resumed_multi_objective_search_continues_as_if_never_stopped(hw_table: Path, strategy: str) -> None:
    name, *settings = strategy.split()
    overrides = tabular(hw_table, f"strategy={name}", *settings, "search.max_trials=30", "seed=2",
                        "search.objectives=[val_acc:max,latency:min]", "search.constraints={latency: 9}")
    assert_resumes_exactly(lambda states: prepared_scheduler(overrides, states), stop_after=19)


def test_report_draws_fronts_and_hypervolume_of_multi_objective_runs(nas, workdir: Path, hw_table: Path) -> None:
    code, _, err = nas("search", "-m", *tabular(hw_table, "strategy=random,nsga2", "search.max_trials=12",
                                                "search.objectives=[val_acc:max,latency:min]", "sweep_dir=sweep"))
    assert code == 0, err
    code, _, err = nas("report", "sweep", "--html", "report.html", "--plots", "plots")
    assert code == 0, err
    assert len(list((workdir / "plots").glob("front-*.png"))) == 1
    assert "Several objectives" in (workdir / "report.html").read_text()


@pytest.mark.parametrize("batch", [1, 4])  # one request (the default), and a batch
def test_latency_measured_with_onnxruntime_is_an_objective(nas, workdir: Path, batch: int) -> None:
    code, _, err = nas("search", *TINY, "strategy=random", "search.max_trials=1", "retrain.enabled=false",
                       "evaluator.latency=onnxruntime", f"evaluator.latency_batch={batch}",
                       "search.objectives=[val_acc:max,latency_ms:min]", "run_dir=run")
    assert code == 0, err
    assert all(t["status"] == "ok" and t["metrics"]["latency_ms"] > 0 for t in read_trials(workdir / "run"))
    assert json.loads((workdir / "run" / "summary.json").read_text())["front_size"] >= 1
