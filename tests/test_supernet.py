"""Weight sharing: supernets of chain and nb201, SPOS end to end, resumed supernet training, a supernet taken to new data."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import TINY, read_trials, untimed
from omegaconf import OmegaConf
from test_errors import assert_one_line_error
from test_text import sentences

from nascli.config import load_config
from nascli.factory import build_space
from nascli.rundir import RunDir

SMALL = [o for o in TINY if not o.startswith("evaluator.")] + ["space.max_blocks=3", "space.widths=[8,16]"]
SPOS = [*SMALL, "strategy=spos", "strategy.epochs=2"]


def search_stopped_after_saves(nas, monkeypatch, overrides: list[str], saves: int) -> None:
    """Run a search into run_dir=stopped that is interrupted (Ctrl-C) right after its `saves`-th supernet.pt."""
    original, done = RunDir.save_supernet, []

    def interrupted(self, header, state_dict, loop):
        original(self, header, state_dict, loop)
        done.append(header.epoch)
        if len(done) == saves:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "save_supernet", interrupted)
    code, _, _ = nas("search", *overrides, "run_dir=stopped")
    monkeypatch.setattr(RunDir, "save_supernet", original)
    assert code == 130


@pytest.mark.parametrize("space_overrides, shape", [
    (["space=chain", "space.widths=[8,16,24]", "space.max_blocks=4"], (3, 12, 12)),
    (["space=nb201", "space.stem_channels=4", "space.cells_per_stage=1"], (3, 8, 8)),
])
def test_a_path_of_the_supernet_computes_what_its_extracted_network_does(space_overrides, shape) -> None:
    space = build_space(load_config(space_overrides))
    torch.manual_seed(0)
    net = space.supernet(shape, 5)
    rng = random.Random(0)
    x = torch.randn(6, *shape)
    net.train()
    for _ in range(10):  # batch-norm statistics differ between paths and from their initial values
        net.use(space.sample(rng))(x)
    net.eval()
    for _ in range(20):
        arch = space.sample(rng)
        extracted = net.extract(arch).eval()
        assert type(extracted) is type(space.build(arch, shape, 5))
        with torch.no_grad():
            assert torch.allclose(net.use(arch)(x), extracted(x), atol=1e-5), arch


def test_spos_trains_a_supernet_scores_paths_and_retrains_the_best(nas, workdir: Path) -> None:
    code, _, err = nas("search", *SPOS, "run_dir=run")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert len(trials) == 3 and all(t["metrics"]["one_shot"] for t in trials)
    supernet = RunDir(workdir / "run").load_supernet()  # loads with weights_only=True
    assert supernet["epoch"] == supernet["epochs"] == 2 and supernet["space"]["name"] == "chain"
    assert (workdir / "run" / "retrain" / "model.pt").exists()
    code, _, err = nas("search", *SPOS, "run_dir=again")
    assert code == 0, err
    assert untimed(read_trials(workdir / "again")) == untimed(trials)  # the same seed, the same scores


def test_a_supernet_that_does_not_learn_is_said_to_have_not_learned(nas, workdir: Path) -> None:
    code, _, err = nas("search", *SPOS, "strategy.lr=1e-9", "retrain.enabled=false", "run_dir=run")
    assert code == 0, err
    assert "warning: the supernet did not learn" in err and "near chance (1.386)" in err


@pytest.mark.slow
def test_spos_learns_on_the_default_chain_space(nas, workdir: Path) -> None:
    code, _, err = nas("search", "strategy=spos", "strategy.epochs=20", "search.max_trials=30",
                       "retrain.enabled=false", "run_dir=run")
    assert code == 0, err
    assert "did not learn" not in err
    best = json.loads((workdir / "run" / "summary.json").read_text())["best"]
    assert best["val_acc"] > 50  # 20.83 before the chain's projection shortcuts


def test_interrupted_supernet_training_resumes_where_it_stopped(nas, workdir: Path, monkeypatch) -> None:
    longer = [*SPOS, "strategy.epochs=3"]
    code, _, err = nas("search", *longer, "run_dir=whole")
    assert code == 0, err
    search_stopped_after_saves(nas, monkeypatch, longer, 2)
    assert RunDir(workdir / "stopped").load_supernet()["epoch"] == 2
    code, _, err = nas("search", "--resume", "stopped")
    assert code == 0, err
    whole, resumed = RunDir(workdir / "whole").load_supernet(), RunDir(workdir / "stopped").load_supernet()
    assert all(torch.equal(whole["state_dict"][k], resumed["state_dict"][k]) for k in whole["state_dict"])
    assert untimed(read_trials(workdir / "stopped")) == untimed(read_trials(workdir / "whole"))


def test_a_supernet_is_taken_to_other_data_after_fine_tuning(nas, workdir: Path) -> None:
    code, _, err = nas("search", *SPOS, "run_dir=source")
    assert code == 0, err
    other = [*SMALL, "strategy=random", "evaluator=supernet", "evaluator.supernet=source", "dataset.num_classes=3"]
    code, _, err = nas("search", *other, "run_dir=refused")
    assert_one_line_error(code, err, "trained on other inputs or classes", "evaluator.epochs")
    code, _, err = nas("search", *other, "evaluator.epochs=1", "run_dir=target")
    assert code == 0, err
    assert RunDir(workdir / "target").load_supernet()["num_classes"] == 3
    code, _, err = nas("search", *other, "space.widths=[8]", "evaluator.epochs=1", "run_dir=other_space")
    assert_one_line_error(code, err, "was trained for space")


def test_weight_sharing_refuses_what_it_cannot_do(nas, workdir: Path) -> None:
    code, _, err = nas("search", *SPOS, "evaluator=train", "run_dir=a")
    assert_one_line_error(code, err, "strategy=spos works with evaluator=supernet")
    code, _, err = nas("search", *SMALL, "strategy=random", "evaluator=supernet", "evaluator.supernet=nowhere",
                       "run_dir=b")
    assert_one_line_error(code, err, "evaluator.supernet nowhere holds no supernet.pt")
    code, _, err = nas("search", *SMALL, "strategy=random", "evaluator=supernet", "run_dir=b")
    assert_one_line_error(code, err, "this search has no supernet to score", "strategy=spos")
    code, _, err = nas("search", *SPOS, "evaluator.supernet=elsewhere", "run_dir=b")
    assert_one_line_error(code, err, "strategy=spos trains this run's supernet")
    assert not (workdir / "b").exists()
    code, _, err = nas("search", *SPOS, "+strategy.search_settings.nope=3", "run_dir=c")
    assert_one_line_error(code, err, "strategy.search_settings do not fit strategy evolution")
    sentences(40, 0).to_csv(workdir / "train.csv", index=False)
    text = [o for o in SPOS if not o.startswith(("dataset", "space."))] + ["dataset=text", "dataset.train=train.csv"]
    code, _, err = nas("search", *text, "run_dir=d")
    assert_one_line_error(code, err, "space=text has no supernet")


def test_spos_passes_its_settings_to_the_inner_search(nas, workdir: Path) -> None:
    code, _, err = nas("search", *SPOS, "+strategy.search_settings.population_size=2",
                       "+strategy.search_settings.tournament_size=2", "run_dir=run")
    assert code == 0, err
    state = json.loads((workdir / "run" / "state.json").read_text())["strategy"]
    assert len(state["population"]) <= 2 and OmegaConf.load(workdir / "run" / "config.yaml").strategy.search_settings == {
        "population_size": 2, "tournament_size": 2}


def test_spos_scores_exactly_the_listed_paths(nas, workdir: Path) -> None:
    space = build_space(load_config(SMALL))
    rng = random.Random(0)
    listed = list({space.hash(arch): arch for arch in (space.sample(rng) for _ in range(6))}.values())[:4]
    (workdir / "paths.txt").write_text("".join(json.dumps(arch) + "\n" for arch in listed))
    inner = ["strategy.search=list", "+strategy.search_settings.path=paths.txt", "retrain.enabled=false"]
    code, _, err = nas("search", *SPOS, *inner, "search.max_trials=10", "run_dir=run")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert [t["arch"] for t in trials] == listed and all(t["metrics"]["one_shot"] for t in trials)
    code, _, err = nas("search", *SPOS, "strategy.search=list", "+strategy.search_settings.path=nowhere.txt",
                       "run_dir=missing")
    assert_one_line_error(code, err, "strategy.path nowhere.txt is not a file")
    assert not (workdir / "missing").exists()


@pytest.mark.parametrize("relaxation", ["softmax", "dirichlet"])
@pytest.mark.parametrize("space", [["space=chain", "space.max_blocks=3", "space.widths=[8,16]"],
                                   ["space=nb201", "space.stem_channels=4", "space.cells_per_stage=1"]])
def test_darts_derives_one_architecture_and_logs_its_weights(nas, workdir: Path, relaxation: str, space) -> None:
    tiny = [o for o in TINY if not o.startswith("evaluator.")]
    code, _, err = nas("search", *tiny, *space, "strategy=darts", "strategy.epochs=2",
                       f"strategy.relaxation={relaxation}", "strategy.selection=strength", "run_dir=run")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert len(trials) == 1 and trials[0]["metrics"]["one_shot"]
    weights = RunDir(workdir / "run").architecture_weights()
    positions, ops = (3, 7) if "space=chain" in space else (6, 5)
    assert len(weights.epochs) == 2 and len(weights.operations) == ops
    last = torch.tensor(weights.epochs[-1])
    assert last.shape == (positions, ops) and torch.allclose(last.sum(dim=1), torch.ones(positions))
    strongest = [weights.operations[i] for i in last.argmax(dim=1).tolist()]
    arch = trials[0]["arch"]
    assert strongest == ([b["op"] for b in arch["blocks"]] if "blocks" in arch else
                         [edge.split("~")[0] for node in arch["cell"].split("+") for edge in node.strip("|").split("|")])
    code, _, err = nas("report", "run", "--plots", "figures")
    assert code == 0 and (workdir / "figures" / "weights-run.png").stat().st_size > 0, err


def test_perturbation_selection_keeps_the_op_whose_removal_costs_most(nas, workdir: Path) -> None:
    tiny = [o for o in TINY if not o.startswith("evaluator.")]
    code, _, err = nas("search", *tiny, "space=nb201", "space.stem_channels=4", "space.cells_per_stage=1",
                       "strategy=darts", "strategy.epochs=2", "run_dir=run")  # perturbation: the default
    assert code == 0, err
    weights = RunDir(workdir / "run").architecture_weights()
    ops, steps = weights.operations, weights.selection
    assert len(weights.epochs) == 2 and sorted(step["position"] for step in steps) == list(range(6))
    for step in steps:
        assert step["kept"] == ops[max(range(len(ops)), key=step["drops"].__getitem__)]
        assert step["drops"][ops.index("none")] == 0  # "none" adds nothing to the sum, so removing it changes nothing
    kept = {step["position"]: step["kept"] for step in steps}
    cell = read_trials(workdir / "run")[0]["arch"]["cell"]
    assert [edge.split("~")[0] for node in cell.split("+") for edge in node.strip("|").split("|")] == [
        kept[p] for p in range(6)]


@pytest.mark.parametrize("override, message", [
    ("strategy.selection=largest", "selection must be one of strength, perturbation, got 'largest'"),
    ("strategy.selection_epochs=-1", "selection_epochs must be >= 0"),
])
def test_a_bad_selection_is_a_one_line_error(nas, override: str, message: str) -> None:
    code, _, err = nas("search", "space=nb201", "strategy=darts", override)
    assert_one_line_error(code, err, message)


@pytest.mark.parametrize("selection", ["strength", "perturbation"])
def test_an_interrupted_relaxation_resumes_where_it_stopped(nas, workdir: Path, monkeypatch, selection: str) -> None:
    darts = [o for o in TINY if not o.startswith("evaluator.")] + [
        "space=nb201", "space.stem_channels=4", "space.cells_per_stage=1", "strategy=darts", "strategy.epochs=3",
        "strategy.relaxation=dirichlet", f"strategy.selection={selection}"]
    code, _, err = nas("search", *darts, "run_dir=whole")
    assert code == 0, err
    search_stopped_after_saves(nas, monkeypatch, darts, 1)
    code, _, err = nas("search", "--resume", "stopped")
    assert code == 0, err
    assert RunDir(workdir / "stopped").architecture_weights() == RunDir(workdir / "whole").architecture_weights()
    assert untimed(read_trials(workdir / "stopped")) == untimed(read_trials(workdir / "whole"))
