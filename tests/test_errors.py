"""Bad input exits with code 2 and one line on stderr, without a traceback or losing anything."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("strategy=annealing", ("unknown strategy 'annealing'", "bo, darts, evolution, hyperband, list, local, nsga2, random, reinforce, spos")),
        ("dataset=imagenet", ("unknown dataset 'imagenet'", "digits")),
        ("seed=[1", ("malformed override",)),
        ("foo=1", ("unknown key 'foo'", "search")),
        ("strategy=evolution strategy.populaton=3", ("unknown key 'strategy.populaton'", "population_size")),
        ("strategy=evolution +strategy.populaton=3", ("unknown key 'strategy.populaton'", "population_size")),
        ("search.max_trials=-1", ("max_trials must be at least 1",)),
        ("search.max_trials=abc", ("search.max_trials", "Integer")),
        ("strategy=evolution strategy.population_size=1", ("population_size must be at least 2",)),
        ("strategy=evolution strategy.tournament_size=50", ("tournament_size",)),
        ("strategy=bo strategy.initial=1", ("initial must be at least 2",)),
        ("space.widths=[]", ("widths",)),
        ("hardware.amp=fp8", ("amp must be auto, bf16 or off",)),
        ("evaluator.lr=0", ("lr must be positive",)),
        ("evaluator.lr=inf", ("lr must be positive and finite",)),
        ("evaluator.optimizer=rmsprop", ("optimizer must be sgd or adamw",)),
        ("retrain.enabled=maybe", ("retrain.enabled",)),
    ],
)
def test_bad_search_overrides(nas, workdir: Path, override: str, fragments: tuple[str, ...]) -> None:
    code, _, err = nas("search", *TINY, *override.split())
    assert_one_line_error(code, err, *fragments)
    assert not (workdir / "outputs").exists()


def test_bad_override_in_a_sweep_fails_before_any_job(nas, workdir: Path) -> None:
    code, _, err = nas("search", "-m", *TINY, "seed=0,1", "strategy=random,typo", "sweep_dir=sweep")
    assert_one_line_error(code, err, "unknown strategy 'typo'")
    assert not (workdir / "sweep").exists()


def test_existing_run_dir_is_refused_and_kept(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "run_dir=run")[0] == 0
    before = {p: p.read_bytes() for p in (workdir / "run").rglob("*") if p.is_file()}
    code, _, err = nas("search", *TINY, "run_dir=run", "seed=5")
    assert_one_line_error(code, err, "already holds a run")
    assert {p: p.read_bytes() for p in (workdir / "run").rglob("*") if p.is_file()} == before


def test_non_empty_sweep_dir_is_refused(nas, workdir: Path) -> None:
    (workdir / "sweep").mkdir()
    (workdir / "sweep" / "keep.txt").write_text("mine")
    code, _, err = nas("search", "-m", *TINY, "seed=0,1", "sweep_dir=sweep")
    assert_one_line_error(code, err, "is not empty")
    assert [p.name for p in (workdir / "sweep").iterdir()] == ["keep.txt"]


def test_gpu_without_cuda_is_refused(nas, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, _, err = nas("search", *TINY, "hardware=gpu")
    assert_one_line_error(code, err, "hardware=gpu needs a CUDA GPU")


def test_missing_dataset_says_how_to_get_it(nas, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nascli.data.files.CACHE", workdir / "cache")
    monkeypatch.setattr("nascli.data.files.importlib.util.find_spec", lambda name: None)
    code, _, err = nas("search", "dataset=mnist", f"dataset.root={workdir / 'nowhere'}")
    assert_one_line_error(code, err, "MNIST not found", "dataset.root")


def test_corrupt_dataset_file(nas, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = workdir / "fmnist"
    root.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (root / f"{name}.gz").write_bytes(gzip.compress(b"garbage"))
    code, _, err = nas("search", "dataset=fashion_mnist", f"dataset.root={root}", "run_dir=run")
    assert_one_line_error(code, err, "corrupt")


def test_retrain_missing_source(nas) -> None:
    code, _, err = nas("retrain", "no/such/run")
    assert_one_line_error(code, err, "does not exist")


def test_retrain_corrupt_best_json(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "run_dir=run", "retrain.enabled=false")[0] == 0
    (workdir / "run" / "best.json").write_text("{not json")
    code, _, err = nas("retrain", "run")
    assert_one_line_error(code, err, "best.json", "corrupt")


def test_retrain_invalid_architecture_file(nas, workdir: Path) -> None:
    (workdir / "arch.json").write_text(json.dumps({"blocks": [{"op": "conv9x9", "width": 16, "down": False}] * 2}))
    code, _, err = nas("retrain", "arch.json", *TINY)
    assert_one_line_error(code, err, "not hold a valid chain architecture", "conv9x9")


def test_report_missing_path(nas) -> None:
    code, _, err = nas("report", "no/such/dir")
    assert_one_line_error(code, err, "does not exist")


def test_report_folder_without_runs(nas, workdir: Path) -> None:
    (workdir / "empty").mkdir()
    code, _, err = nas("report", "empty")
    assert_one_line_error(code, err, "no runs found")


def test_console_script_prints_one_line_without_traceback(workdir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nascli", "search", "strategy=nope"], capture_output=True, text=True, timeout=120
    )
    assert_one_line_error(result.returncode, result.stderr, "unknown strategy 'nope'")
