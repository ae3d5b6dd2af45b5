"""Transfer of trained weights: layer matching, stem adaptation, freezing, and the CLI paths that use them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from conftest import TINY, read_trials
from nascli.config import load_config
from nascli.factory import build_space
from nascli.transfer import Transfer, head_names, initialise, parameter_groups

ARCH = {"blocks": [{"op": "conv3x3", "width": 16, "down": False}, {"op": "conv1x1", "width": 32, "down": True}]}


def chain(channels: int, classes: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_space(load_config([])).build(ARCH, (channels, 8, 8), classes)


def test_every_fitting_layer_is_copied_the_head_is_new_and_a_grey_stem_becomes_colour() -> None:
    source, target = chain(1, 10, 0), chain(3, 5, 1)
    transfer = initialise(target, source.state_dict(), "src", channels=3)
    stem = "0.weight"
    assert transfer.adapted == [stem]
    assert set(transfer.new) >= head_names(target)
    weights = source.state_dict()
    for name in transfer.copied:
        assert torch.equal(target.state_dict()[name], weights[name])
    grey = torch.randn(2, 1, 8, 8)
    # a grey image repeated on three channels gives the colour stem the grey stem's response
    assert torch.allclose(target[0](grey.repeat(1, 3, 1, 1)), source[0](grey), atol=1e-6)


def test_finetune_modes_freeze_all_but_the_head_or_the_last_layers() -> None:
    model = chain(1, 10, 0)
    transfer = initialise(model, chain(1, 10, 1).state_dict(), "src", channels=1)
    head = {name.rpartition(".")[0] for name in head_names(model)}

    def training() -> set[str]:
        return {name.rpartition(".")[0] for name, p in model.named_parameters() if p.requires_grad}

    parameter_groups(model, transfer, "head", 1.0)
    assert training() == head
    parameter_groups(model, transfer, "last:2", 1.0)
    assert len(training() - head) == 2 and head <= training()
    groups = parameter_groups(model, transfer, "full", 0.1)
    assert training() == {name.rpartition(".")[0] for name, _ in model.named_parameters()}
    factors = {group["lr_factor"]: sum(p.numel() for p in group["params"]) for group in groups}
    assert set(factors) == {0.1, 1.0} and factors[1.0] == sum(model.get_submodule(h).weight.numel() +
                                                             model.get_submodule(h).bias.numel() for h in head)


def test_retrain_from_another_run_with_a_frozen_body(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "run_dir=source")[0] == 0
    code, _, err = nas("retrain", "source", "retrain.init=source", "retrain.finetune=head", "retrain.epochs=1",
                       "run_dir=tuned")
    assert code == 0, err
    init = json.loads((workdir / "tuned" / "retrain" / "metrics.json").read_text())["init"]
    assert init["copied"] > 0 and init["finetune"] == "head" and init["source"] == "source"
    before = torch.load(workdir / "source" / "retrain" / "model.pt", weights_only=True)["state_dict"]
    after = torch.load(workdir / "tuned" / "retrain" / "model.pt", weights_only=True)["state_dict"]
    body = [name for name in list(after)[:-2] if before[name].is_floating_point()]  # the classifier is the last layer
    assert all(torch.equal(before[name], after[name]) for name in body)  # frozen, batch-norm statistics too
    assert not torch.equal(before[list(after)[-1]], after[list(after)[-1]])


def test_candidates_inherit_weights_and_bad_sources_are_one_line(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "run_dir=source")[0] == 0
    code, _, err = nas("search", *TINY, "retrain.enabled=false", "evaluator.init=source", "run_dir=inherit")
    assert code == 0, err
    assert any(t["metrics"]["inherited"] > 0 for t in read_trials(workdir / "inherit"))
    code, _, err = nas("search", *TINY, "evaluator.init=nowhere", "run_dir=none")
    assert code == 2 and "nowhere is not a run directory" in err and not (workdir / "none").exists()
    nb201 = [o for o in TINY if not o.startswith("search")] + ["space=nb201", "space.cells_per_stage=1",
                                                                 "space.stem_channels=4", "search.max_trials=1"]
    assert nas("search", *nb201, "run_dir=cells")[0] == 0
    arch = workdir / "arch.json"
    arch.write_text(json.dumps(build_space(load_config([])).sample(random.Random(0))))
    code, _, err = nas("retrain", str(arch), *TINY[:4], "retrain.init=cells", "retrain.epochs=1", "run_dir=never")
    assert code == 2 and "retrain.init=cells is a run of space=nb201" in err and len(err.strip().splitlines()) == 1
    assert not (workdir / "never").exists()  # refused before Hydra made its output folder


def test_bad_finetune_is_refused() -> None:
    with pytest.raises(Exception, match="finetune must be full, head or last:K"):
        load_config(["retrain.finetune=last:0"])
    assert isinstance(Transfer("x").summary(), dict)


def test_a_head_searched_on_a_frozen_backbone(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "run_dir=backbone")[0] == 0
    cfg = load_config(["space=head", f"space.backbone={workdir / 'backbone'}"])
    space = build_space(cfg)
    rng = random.Random(0)
    for _ in range(20):
        arch = space.validate(space.sample(rng))
        assert all(space.validate(n) for n in space.neighbours(arch))
        assert len(space.encode(arch)) == len(space.encode(space.from_decisions([0] * len(space.decisions()))))
    arch = {"layers": [{"width": 64, "activation": "gelu"}], "dropout": 0.25}
    model = space.build(arch, (1, 8, 8), 3)
    model.train()
    assert not model.backbone.training and all(not p.requires_grad for p in model.backbone.parameters())
    assert model(torch.randn(4, 1, 8, 8)).shape == (4, 3)
    code, _, err = nas("search", *TINY, "space=head", "space.backbone=backbone", "strategy=random", "run_dir=heads")
    assert code == 0, err
    assert all(t["status"] == "ok" for t in read_trials(workdir / "heads"))
    code, _, err = nas("search", *TINY, "space=head", "space.backbone=missing", "run_dir=never")
    assert code == 2 and "missing" in err and not (workdir / "never").exists()
