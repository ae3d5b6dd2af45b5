"""search.confirm_top: the best architectures trained again with other seeds, the best chosen by its mean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import pytest
from conftest import TINY, read_trials
from test_resume import assert_resumes_exactly, prepared_scheduler

from nascli.goal import Goal
from nascli.records import Trial
from nascli.selection import Selection
from nascli.settings import SearchSettings


def test_a_search_confirms_its_best_with_other_seeds_and_chooses_by_the_mean(nas, workdir: Path) -> None:
    code, out, err = nas("search", *TINY, "search.max_trials=4", "search.confirm_top=2", "search.confirm_seeds=2",
                         "retrain.enabled=false", "run_dir=run")
    assert code == 0, err
    assert "confirming the 2 best architectures with 2 more seeds and validation folds each" in out
    trials = read_trials(workdir / "run")
    searched, confirming = trials[:4], trials[4:]
    top = sorted(searched, key=lambda t: -t["metrics"]["val_acc"])[:2]
    assert [(t["hash"], t["repeat"]) for t in confirming] == [(t["hash"], r) for r in (1, 2) for t in top]
    assert all("repeat" not in t and "val_fold" not in t["metrics"] for t in searched)
    assert [t["metrics"]["val_fold"] for t in confirming] == [t["repeat"] for t in confirming]
    # every run of an architecture has a seed of its own, and every architecture the same seeds (common random numbers)
    seeds = {t.get("repeat"): t["seed"] for t in trials}
    assert len(set(seeds.values())) == 3 and all(t["seed"] == seeds[t.get("repeat")] for t in trials)

    def runs(trial: dict) -> list[float]:
        return [t["metrics"]["val_acc"] for t in trials if t["hash"] == trial["hash"]]

    chosen = max(top, key=lambda t: sum(runs(t)) / 3)
    best = json.loads((workdir / "run" / "best.json").read_text())
    assert best["id"] == chosen["id"] and best["confirmed"]["values"] == runs(chosen)
    assert best["confirmed"]["runs"] == 3 and best["confirmed"]["mean"] == pytest.approx(sum(runs(chosen)) / 3)
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["n_trials"] == 8 and summary["best"]["runs"] == 3
    assert summary["best"]["val_acc"] == pytest.approx(sum(runs(chosen)) / 3)


@pytest.mark.parametrize("stop_after", [12, 15])
def test_a_search_stopped_before_or_while_confirming_resumes_exactly(table: Path, stop_after: int) -> None:
    args = ["space=nb201", "evaluator=tabular", f"evaluator.table={table}", "search.max_trials=12",
            "search.confirm_top=3", "search.confirm_seeds=2", "strategy=evolution"]
    trials = list(prepared_scheduler(args, []).run())
    assert [t.repeat for t in trials] == [None] * 12 + [1, 1, 1, 2, 2, 2]
    assert_resumes_exactly(lambda states: prepared_scheduler(args, states), stop_after)


def test_without_confirm_folds_confirming_runs_keep_the_validation_split(nas, workdir: Path) -> None:
    code, out, err = nas("search", *TINY, "search.max_trials=2", "search.confirm_top=1", "search.confirm_seeds=1",
                         "search.confirm_folds=false", "retrain.enabled=false", "run_dir=run")
    assert code == 0, err
    assert "with 1 more seeds each" in out
    assert all("val_fold" not in t["metrics"] for t in read_trials(workdir / "run"))


def test_the_space_s_references_are_confirmed_beside_the_best(table: Path) -> None:
    args = ["space=nb201", "evaluator=tabular", f"evaluator.table={table}", "search.max_trials=6",
            "search.confirm_top=1", "search.confirm_seeds=2", "strategy=random"]
    plain = list(prepared_scheduler(args, []).run())
    worst = min(plain[:6], key=lambda t: t.metrics["val_acc"])
    scheduler = prepared_scheduler(args, [])
    scheduler.space.references = lambda: [worst.arch]
    scheduler.selection.references = [worst.hash]
    trials = list(scheduler.run())
    assert trials[0].hash == worst.hash  # the strategy tries a reference first
    best = max(trials[:6], key=lambda t: t.metrics["val_acc"])
    assert [(t.hash, t.repeat) for t in trials[6:]] == [(h, r) for r in (1, 2) for h in (best.hash, worst.hash)]
    assert scheduler.confirming_planned() == 4


def _trial(id: int, arch: str, value: Optional[float], repeat: Optional[int] = None) -> Trial:
    status = "ok" if value is not None else "failed"
    return Trial(id, {"a": arch}, arch, status, {"val_acc": value} if value is not None else {}, repeat=repeat)


def _chosen(trials: list[Trial], references: Optional[set[str]] = None, margin: float = 1.0) -> dict[str, Any]:
    """What best.json would hold after `trials`: the chosen trial and its confirmation."""
    selection = Selection(Goal.from_settings(SearchSettings(), "val_acc"), sorted(references or ()), margin)
    for trial in trials:
        selection.add(trial)
    return selection.best.record("chain").to_dict()


def test_the_luckiest_single_run_loses_to_a_better_mean_and_a_failed_repeat_rules_out() -> None:
    searched = [_trial(0, "lucky", 90.0), _trial(1, "steady", 88.0), _trial(2, "other", 70.0)]
    assert _chosen(searched)["hash"] == "lucky"
    repeats = [_trial(3, "lucky", 80.0, 1), _trial(4, "steady", 87.0, 1), _trial(5, "lucky", 81.0, 2),
               _trial(6, "steady", 89.0, 2)]
    best = _chosen(searched + repeats)
    assert best["hash"] == "steady" and best["confirmed"] == {"runs": 3, "mean": 88.0, "values": [88.0, 87.0, 89.0]}
    failed = [_trial(3, "lucky", 80.0, 1), _trial(4, "steady", None, 1)]
    assert _chosen(searched + failed)["hash"] == "lucky"


def test_the_strategy_leaves_time_for_confirming_runs_at_the_recent_pace_but_keeps_half_the_budget(table: Path) -> None:
    scheduler = prepared_scheduler(["space=nb201", "evaluator=tabular", f"evaluator.table={table}",
                                    "search.max_seconds=200", "search.confirm_top=2", "search.confirm_seeds=2"], [])
    assert scheduler._deadline() == 200  # nothing measured yet
    # trials that took 10 s each, then 20 s each: the 2 x 2 confirming runs and one more trial at 20 s
    for finished, deadline in [([10.0], 150.0), ([10.0, 20.0, 30.0, 40.0, 60.0], 200 - 5 * 12.5),
                               ([10.0, 20.0, 30.0, 40.0, 60.0, 80.0, 100.0, 120.0], 100.0),
                               ([40.0, 100.0, 160.0, 220.0], 100.0)]:
        scheduler.results = [_trial(i, f"a{i}", 50.0) for i in range(len(finished))]
        for trial, elapsed in zip(scheduler.results, finished):
            trial.elapsed = elapsed
        assert scheduler._deadline() == pytest.approx(deadline)
    scheduler.next_id, scheduler.elapsed = 4, lambda: 150.0
    pace = scheduler._pace()  # 150 s spent, past the 100 s the strategy keeps: no more proposals
    assert pace.trials == 4 and "time left to confirm the best" in pace.reason


def test_a_reference_stays_the_answer_unless_beaten_by_more_than_the_margin_of_standard_errors() -> None:
    searched = [_trial(0, "kim", 84.0), _trial(1, "found", 86.0), _trial(2, "other", 70.0)]
    close = [_trial(3, "found", 84.0, 1), _trial(4, "kim", 86.0, 1), _trial(5, "found", 88.0, 2),
             _trial(6, "kim", 85.0, 2)]  # means 86 and 85; standard error of the difference sqrt(4/3 + 1/3) = 1.29
    best = _chosen(searched + close, {"kim"})
    assert best["hash"] == "kim" and best["confirmed"]["mean"] == 85.0
    assert best["confirmed"]["reference_kept_over"] == {"hash": "found", "mean": 86.0, "standard_error": 1.290994}
    assert _chosen(searched + close, {"kim"}, margin=0.7)["hash"] == "found"
    assert "reference_kept_over" not in _chosen(searched + close, {"kim"}, margin=0.7)["confirmed"]
    assert _chosen(searched + close)["hash"] == "found"  # no reference: the best mean
    clear = [_trial(3, "found", 88.0, 1), _trial(4, "kim", 84.0, 1), _trial(5, "found", 87.0, 2),
             _trial(6, "kim", 85.0, 2)]
    assert _chosen(searched + clear, {"kim"})["hash"] == "found"


@pytest.mark.parametrize("args, message", [
    (["search.reference_margin=-1"], "reference_margin must be a finite number >= 0"),
    (["search.confirm_top=2", "search.objectives=[val_acc:max,params:min]"], "confirm_top works with one objective"),
    (["search.confirm_seeds=0"], "confirm_seeds must be at least 1"),
    (["search.confirm_top=-1"], "confirm_top must be >= 0"),
])
def test_confirming_settings_that_cannot_work_are_one_line_errors(nas, args: list[str], message: str) -> None:
    code, out, err = nas("search", *TINY, *args)
    assert code != 0 and message in err and "Traceback" not in err


def test_show_and_report_read_a_confirmed_run_and_refuse_a_corrupt_confirmation(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "search.max_trials=3", "search.confirm_top=1", "search.confirm_seeds=1",
               "retrain.enabled=false", "run_dir=run")[0] == 0
    code, out, err = nas("show", "run")
    assert code == 0, err
    assert "confirmed: val_acc" in out and "on average over 2 runs" in out and "repeat" in out
    code, out, err = nas("report", "run", "--html", "report.html")
    assert code == 0, err
    best = json.loads((workdir / "run" / "best.json").read_text())
    over = {"hash": "abc", "mean": 91.5, "standard_error": 0.8}
    (workdir / "run" / "best.json").write_text(json.dumps(
        {**best, "confirmed": {**best["confirmed"], "reference_kept_over": over}}))
    code, out, err = nas("show", "run")
    assert code == 0 and "a reference of the space, kept over abc (mean 91.5" in out, err
    (workdir / "run" / "best.json").write_text(json.dumps({**best, "confirmed": {"runs": "three"}}))
    code, out, err = nas("show", "run")
    assert code != 0 and "best.json 'confirmed' has no valid 'runs'; the file is corrupt" in err
    assert "Traceback" not in err
