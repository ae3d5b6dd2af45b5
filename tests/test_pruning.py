"""`nas prune`: a retrained chain network cut to a share of its FLOPs, fine-tuned, saved as a run of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY
from test_errors import assert_one_line_error
from test_text import QUICK as TEXT_QUICK, text_data

from nascli.pruning import layout, pruned_arch
from nascli.records import kept_flops_share
from nascli.spaces.chain import ChainSettings, ChainSpace
from nascli.spaces.stored import load_model

WIDE = [*TINY, "space.min_blocks=3", "search.max_trials=2"]


@pytest.fixture
def run(nas, workdir: Path) -> Path:
    code, _, err = nas("search", *WIDE, "run_dir=run")
    assert code == 0, err
    return workdir / "run"


def test_a_pruned_network_is_smaller_dense_and_a_run_of_its_own(nas, run: Path, workdir: Path) -> None:
    code, out, err = nas("prune", "run", "--flops", "0.5", "--epochs", "1")
    assert code == 0, err
    pruned = workdir / "run-pruned-50"
    assert f"results in {pruned.name}" in out and "pruned: 0." in out
    metrics = json.loads((pruned / "retrain" / "metrics.json").read_text())
    source = json.loads((run / "retrain" / "metrics.json").read_text())
    assert 0.3 <= kept_flops_share(metrics) <= 0.5 and metrics["flops"] < source["flops"]
    assert metrics["params"] < source["params"] and 0 <= metrics["test_acc"] <= 100
    model, checkpoint = load_model(pruned)  # rebuilt from its architecture and space, as any run's model
    assert sum(p.numel() for p in model.parameters()) == metrics["params"]
    widths = [b["width"] for b in checkpoint["arch"]["blocks"]]
    assert widths != [b["width"] for b in json.loads((run / "best.json").read_text())["arch"]["blocks"]]
    assert checkpoint["preprocessing"]["classes"] == ["0", "1", "2", "3"]
    code, out, err = nas("show", str(pruned))
    assert code == 0, err
    assert "pruned  from" in out
    assert nas("export", str(pruned))[0] == 0


def test_cut_weights_compute_what_the_kept_channels_computed(nas, run: Path) -> None:
    """With every channel kept, the sliced network is the original one: the slicing maps each tensor right."""
    from nascli.pruning import _roles, importance, sliced

    model, checkpoint = load_model(run)
    space = ChainSpace(ChainSettings(min_blocks=3))
    plan = layout(space, checkpoint["arch"], tuple(checkpoint["input_shape"]))
    arch, kept = pruned_arch(checkpoint["arch"], plan, 1.0)
    assert arch == checkpoint["arch"]
    ranked = importance(model, plan)
    keep = {g: ranked[g].argsort(descending=True)[:n] for g, n in kept.items()}  # every channel, reordered
    copy = space.build(arch, tuple(checkpoint["input_shape"]), 4).eval()
    copy.load_state_dict(sliced(model.state_dict(), _roles(model, plan), keep))
    x = torch.randn(3, *checkpoint["input_shape"])
    torch.testing.assert_close(copy(x), model(x), atol=1e-5, rtol=1e-4)


def test_a_projected_block_stays_projected() -> None:
    space = ChainSpace(ChainSettings(widths=[16, 32]))
    arch = {"blocks": [{"op": "conv3x3", "width": 32, "down": False}, {"op": "conv3x3", "width": 32, "down": False}]}
    plan = layout(space, arch, (1, 8, 8))
    pruned, _ = pruned_arch(arch, plan, 0.5)  # 32 halves to the stem's 16: the first block would lose its projection
    assert [b["width"] for b in pruned["blocks"]] == [17, 17]  # the second adds into the first's channels


def test_a_run_of_another_space_is_refused_in_one_line(nas, workdir: Path) -> None:
    assert nas("search", *text_data(workdir), *TEXT_QUICK, "search.max_trials=1", "run_dir=text")[0] == 0
    assert_one_line_error(*nas("prune", "text")[::2], "nas prune takes a run of the chain space; text is of space=text")
    assert not (workdir / "text-pruned-50").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--flops", "1.5"], "--flops must be a share of the network's FLOPs between 0 and 1"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--lr-share", "0"], "--lr-share must be a positive share of retrain.lr"),
])
def test_prune_errors_are_one_line(nas, run: Path, args: list[str], message: str) -> None:
    assert_one_line_error(*nas("prune", "run", *args)[::2], message)
