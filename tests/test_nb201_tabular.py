"""NAS-Bench-201: cell strings, the real network, and every strategy on a synthetic table via the CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import TINY, read_trials, synthetic_score, untimed
from nascli.config import group_options
from nascli.spaces.nb201 import OPS, NB201Settings, NB201Space, cell_string, parse_cell

# every strategy that searches with any evaluator: spos and darts need evaluator=supernet, list a file
STRATEGIES = sorted(set(group_options("strategy")) - {"spos", "darts", "list"})
SHARED_TABLE = Path(__file__).parents[2] / "shared" / "benchmarks" / "nb201" / "cifar10.csv"


def test_cell_string_round_trip() -> None:
    rng = random.Random(0)
    for _ in range(100):
        ops = [rng.choice(OPS) for _ in range(6)]
        assert parse_cell(cell_string(ops)) == ops
    text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert cell_string(parse_cell(text)) == text


@pytest.mark.skipif(not SHARED_TABLE.exists(), reason="the shared NAS-Bench-201 table is not beside the checkout")
def test_every_cell_of_the_published_table_parses() -> None:
    cells = pd.read_csv(SHARED_TABLE)["arch"]
    assert len(cells) == 15625
    assert all(cell_string(parse_cell(c)) == c for c in cells)


@pytest.mark.parametrize("bad", ["|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "|none~0|", "", "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"])
def test_malformed_cells_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        NB201Space(NB201Settings()).validate({"cell": bad})


def test_network_follows_the_benchmark_skeleton() -> None:
    space = NB201Space(NB201Settings())
    conv = space.build({"cell": cell_string(["nor_conv_3x3"] * 6)}, (3, 32, 32), 10)
    empty = space.build({"cell": cell_string(["none"] * 6)}, (3, 32, 32), 10)
    assert conv(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, torch.nn.Module) and type(m).__name__ == "Cell" for m in conv) == 15
    assert sum(type(m).__name__ == "ResidualReduction" for m in conv) == 2
    assert sum(p.numel() for p in conv.parameters()) > 1_000_000 > sum(p.numel() for p in empty.parameters())
    assert empty(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_searches_the_table_through_the_cli(nas, workdir: Path, table: Path, strategy: str) -> None:
    args = ["space=nb201", "evaluator=tabular", f"evaluator.table={table}", f"strategy={strategy}",
            "search.max_trials=40"]
    assert nas("search", *args, "run_dir=a")[0] == 0
    assert nas("search", *args, "run_dir=b")[0] == 0
    trials = read_trials(workdir / "a")
    assert untimed(trials) == untimed(read_trials(workdir / "b"))
    assert len(trials) == 40 and all(t["status"] == "ok" for t in trials)
    for t in trials:
        assert t["metrics"]["val_acc"] == synthetic_score(tuple(parse_cell(t["arch"]["cell"])))
    summary = json.loads((workdir / "a" / "summary.json").read_text())
    best = max(trials, key=lambda t: t["metrics"]["val_acc"])
    assert summary["best"]["val_acc"] == best["metrics"]["val_acc"]
    assert summary["test_acc"] == best["metrics"]["val_acc"] + 1
    assert summary["dataset"] == "table:table" and not (workdir / "a" / "retrain").exists()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_both_spaces(nas, workdir: Path, strategy: str) -> None:
    tiny_hyperband = ["strategy.max_epochs=3"] if strategy == "hyperband" else []
    for space in ("chain", "nb201"):
        code, _, err = nas("search", *TINY, f"space={space}", f"strategy={strategy}", *tiny_hyperband,
                           "space.cells_per_stage=1" if space == "nb201" else "space.max_blocks=3",
                           "search.max_trials=4", f"run_dir={space}")
        assert code == 0, err
        trials = read_trials(workdir / space)
        assert len(trials) == 4 and all(t["status"] == "ok" for t in trials)
        if strategy == "hyperband":  # 3 architectures for 1 epoch, the best of them for 3
            assert [t["budget"] for t in trials] == [t["metrics"]["epochs"] for t in trials] == [1, 1, 1, 3]


def test_a_table_search_needs_no_dataset(nas, workdir: Path, table: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nascli.data.files.CACHE", workdir / "cache")
    monkeypatch.setattr("nascli.data.files.importlib.util.find_spec", lambda name: None)
    args = ["space=nb201", "evaluator=tabular", f"evaluator.table={table}", "dataset=mnist", "search.max_trials=5"]
    assert nas("search", *args, "run_dir=run")[0] == 0
    code, _, err = nas("search", *args, "retrain.enabled=true", "run_dir=again")
    assert code == 2 and "MNIST not found" in err


def test_table_errors(nas, workdir: Path) -> None:
    code, _, err = nas("search", "space=nb201", "evaluator=tabular")
    assert code == 2 and "evaluator.table is required" in err
    code, _, err = nas("search", "space=nb201", "evaluator=tabular", "evaluator.table=missing.csv")
    assert code == 2 and "is not a file" in err
    (workdir / "bad.csv").write_text("arch,accuracy\nx,1\n")
    code, _, err = nas("search", "space=nb201", "evaluator=tabular", "evaluator.table=bad.csv")
    assert code == 2 and "lacks the column(s) test_acc, val_acc" in err


def test_convert_script_writes_the_tabular_format(workdir: Path) -> None:
    import importlib.util

    script = Path(__file__).parents[1] / "scripts" / "convert_nb201.py"
    spec = importlib.util.spec_from_file_location("convert_nb201", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class FakeAPI:
        """The slice of the official API the converter uses."""

        cells = [cell_string(["nor_conv_3x3"] * 6), cell_string(["none"] * 6)]

        def __len__(self) -> int:
            return len(self.cells)

        def arch(self, index: int) -> str:
            return self.cells[index]

        def get_more_info(self, index: int, dataset: str, hp: str, is_random: bool) -> dict:
            assert hp == "12" and is_random is False
            base = 90.0 - 80 * index
            return {"valid-accuracy": base - (dataset == "cifar10-valid"), "test-accuracy": base + 0.5,
                    "train-all-time": 100.0}

    table = module.convert(FakeAPI(), "cifar10", "12")
    assert list(table.columns) == ["arch", "val_acc", "test_acc", "train_seconds"]
    assert table.iloc[0].to_dict() == {"arch": FakeAPI.cells[0], "val_acc": 89.0, "test_acc": 90.5, "train_seconds": 100.0}
