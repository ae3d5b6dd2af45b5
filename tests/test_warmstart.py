"""Warm starts: earlier searches on related or unrelated tasks guide a new search, and are weighed by RGPE."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor

from conftest import TINY, read_trials, synthetic_score
from nascli.spaces.nb201 import OPS, NB201Settings, NB201Space, cell_string
from nascli.surrogate import fit_gp
from nascli.warmstart import EarlierTask, Knowledge, leave_one_out, ranking_losses
from test_resume import assert_resumes_exactly, prepared_scheduler


def write_table(path: Path, score) -> Path:
    rows = [{"arch": cell_string(list(ops)), "val_acc": score(ops), "test_acc": score(ops) + 1}
            for ops in itertools.product(OPS, repeat=6)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def wobble(ops: tuple[str, ...]) -> float:
    """A small deterministic perturbation, so that a related task is not the same task."""
    return (sum(ord(c) for c in "".join(ops)) % 7) / 7


@pytest.fixture
def tables(workdir: Path) -> dict[str, Path]:
    return {
        "source": write_table(workdir / "source.csv", synthetic_score),
        "related": write_table(workdir / "related.csv", lambda ops: 2 * synthetic_score(ops) + wobble(ops)),
        "opposite": write_table(workdir / "opposite.csv", lambda ops: 100 - synthetic_score(ops)),
    }


def tabular(table: Path, *extra: str) -> list[str]:
    return ["space=nb201", "evaluator=tabular", f"evaluator.table={table}", *extra]


def test_ranking_loss_counts_misordered_pairs() -> None:
    actual = np.array([1.0, 2.0, 3.0])
    every = np.array([[0, 1, 2]])
    assert ranking_losses(np.array([1.0, 2.0, 3.0]), actual, every).tolist() == [0]
    assert ranking_losses(np.array([3.0, 2.0, 1.0]), actual, every).tolist() == [6]  # 3 pairs, each both ways
    assert ranking_losses(np.array([2.0, 1.0, 3.0]), actual, every).tolist() == [2]


def test_leave_one_out_equals_refitting_without_each_point() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((12, 4)), rng.standard_normal(12)
    fitted = fit_gp(x, y, normalize_y=False)
    expected = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        model = GaussianProcessRegressor(fitted.kernel_, optimizer=None, normalize_y=False).fit(x[keep], y[keep])
        expected.append(model.predict(x[i:i + 1])[0])
    assert leave_one_out(x, y) == pytest.approx(expected, abs=1e-6)


def test_a_related_source_starts_the_search_at_its_best_and_keeps_its_weight(nas, workdir: Path,
                                                                             tables: dict[str, Path]) -> None:
    assert nas("search", *tabular(tables["source"], "strategy=bo", "search.max_trials=30", "run_dir=earlier"))[0] == 0
    code, _, err = nas("search", *tabular(tables["related"], "strategy=bo", "search.max_trials=15",
                                          "search.warm_start=[earlier]", "run_dir=warm"))
    assert code == 0, err
    assert nas("search", *tabular(tables["related"], "strategy=bo", "search.max_trials=15", "run_dir=cold"))[0] == 0
    warm, cold = read_trials(workdir / "warm"), read_trials(workdir / "cold")
    target = pd.read_csv(tables["related"])["val_acc"]
    assert warm[0]["metrics"]["val_acc"] >= target.quantile(0.99)  # the earlier search's best, first
    assert max(t["metrics"]["val_acc"] for t in warm[:10]) > max(t["metrics"]["val_acc"] for t in cold[:10])
    code, _, err = nas("search", *tabular(tables["related"], "strategy=bo", "search.max_trials=15",
                                          "search.warm_start=[earlier]", "search.warm_start_suggestions=0",
                                          "run_dir=unsuggested"))
    assert code == 0, err  # no suggestions: bo's random design (5 trials, a third of 15) is the cold one
    assert [t["hash"] for t in read_trials(workdir / "unsuggested")][:5] == [t["hash"] for t in cold][:5]
    record = json.loads((workdir / "warm" / "warm_start.json").read_text())
    assert record["models"] == ["table:source", "(this search)"] and len(record["weights"]) == 15
    assert record["weights"][-1][0] >= 0.5
    code, out, _ = nas("show", "warm")
    assert code == 0 and "warm start" in out and "table:source" in out


def test_one_suggestion_before_the_evidence_then_more_while_trusted() -> None:
    space = NB201Space(NB201Settings())
    cells = list(itertools.product(OPS, repeat=6))
    picked = [cells[i] for i in np.random.default_rng(0).choice(len(cells), 60, replace=False)]
    scores = np.array([synthetic_score(ops) for ops in picked])
    source = EarlierTask("source", [], [{"cell": cell_string(list(ops))} for ops in picked],
                         (scores - scores.mean()) / scores.std())
    knowledge, claimed = Knowledge([source], space), set()

    def claim(arch) -> bool:
        fresh = space.hash(arch) not in claimed
        claimed.add(space.hash(arch))
        return fresh

    assert knowledge.suggest(claim) is not None and knowledge.suggest(claim) is None  # untested: one trial only
    ranked = knowledge.suggestions()
    for rank, arch in enumerate(ranked[:6]):  # the target ranks them as the source does: it stays trusted
        knowledge.observe(arch, -float(rank))
    assert knowledge.trusted and knowledge.suggest(claim) is not None


@pytest.mark.parametrize("strategy", ["bo", "evolution", "reinforce"])
def test_an_anti_correlated_source_loses_its_weight_within_a_few_trials(nas, workdir: Path, tables: dict[str, Path],
                                                                        strategy: str) -> None:
    assert nas("search", *tabular(tables["source"], "strategy=random", "search.max_trials=40", "run_dir=earlier"))[0] == 0
    code, _, err = nas("search", *tabular(tables["opposite"], f"strategy={strategy}", "search.max_trials=20",
                                          "search.warm_start=[earlier]", "run_dir=warm"))
    assert code == 0, err
    weights = json.loads((workdir / "warm" / "warm_start.json").read_text())["weights"]
    trusted = [n for n, w in enumerate(weights) if w[0] >= 0.5]
    assert trusted[:2] == [0, 1] and len(trusted) <= 5 and weights[-1][0] < 0.5  # dropped after a few observations
    trials = read_trials(workdir / "warm")
    median = pd.read_csv(tables["opposite"])["val_acc"].median()
    assert trials[0]["metrics"]["val_acc"] < median  # what it suggested: the target's worse half
    assert max(t["metrics"]["val_acc"] for t in trials[1:]) > median  # one suggestion before the evidence, then none


def test_a_resumed_warm_started_search_continues_as_if_never_stopped(nas, workdir: Path,
                                                                     tables: dict[str, Path]) -> None:
    assert nas("search", *tabular(tables["source"], "strategy=random", "search.max_trials=30", "run_dir=earlier"))[0] == 0
    overrides = tabular(tables["related"], "strategy=bo", "search.max_trials=14", "strategy.initial=4")
    assert_resumes_exactly(lambda states: prepared_scheduler(overrides, states, [str(workdir / "earlier")]), stop_after=9)


def test_a_warm_start_from_another_space_or_from_nothing_is_one_line(nas, workdir: Path,
                                                                    tables: dict[str, Path]) -> None:
    assert nas("search", *tabular(tables["source"], "strategy=random", "search.max_trials=5", "run_dir=earlier"))[0] == 0
    code, _, err = nas("search", *TINY, "search.warm_start=[earlier]", "run_dir=run")
    assert code == 2 and "searched space=nb201, not space=chain" in err and len(err.strip().splitlines()) == 1
    (workdir / "empty").mkdir()
    code, _, err = nas("search", *tabular(tables["related"], "search.warm_start=[empty]", "run_dir=run"))
    assert code == 2 and "no search with two or more successful trials" in err
    code, _, err = nas("search", *tabular(tables["related"], "search.warm_start=[missing]", "run_dir=run"))
    assert code == 2 and "missing does not exist" in err
    assert not (workdir / "run").exists()
