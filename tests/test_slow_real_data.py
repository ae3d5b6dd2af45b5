"""Real datasets end to end (slow; run with `pytest -m slow`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import read_trials

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_search_and_retrain(nas, workdir: Path) -> None:
    code, _, err = nas("search", "dataset=fashion_mnist", "space=chain", "strategy=evolution",
                       "search.max_trials=2", "evaluator.epochs=1", "retrain.epochs=1", "run_dir=run")
    assert code == 0, err
    assert len(read_trials(workdir / "run")) == 2
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_acc"] > 70


SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar10" / "cifar10.tar.gz").exists(), reason="needs ../shared/datasets")
def test_cifar10_jpg_folder_loads_with_the_official_split(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    from nascli.config import load_config
    from nascli.data import folder

    with tarfile.open(SHARED / "cifar10" / "cifar10.tar.gz") as archive:
        archive.extractall(workdir, filter="data")
    monkeypatch.setattr(folder, "CACHE", workdir / "cache")
    for name in ("folder", "cifar10"):
        cfg = load_config([f"dataset={name}", f"dataset.root={workdir / 'cifar10'}"])
        splits = cfg.dataset.cls(cfg.dataset.settings).load()
        assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10
        assert len(splits.train_x) + len(splits.val_x) == 50_000 and len(splits.test_x) == 10_000


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "mnist" / "mnist.npz").exists(), reason="needs ../shared/datasets")
def test_mnist_npz_search(nas, workdir: Path) -> None:
    code, _, err = nas("search", "dataset=mnist", f"dataset.root={SHARED / 'mnist'}", "search.max_trials=1",
                       "evaluator.epochs=1", "retrain.enabled=false", "run_dir=run")
    assert code == 0, err
    assert json.loads((workdir / "run" / "summary.json").read_text())["best"]["val_acc"] > 90


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "fsdd" / "fsdd-wav.tar.gz").exists(), reason="needs ../shared/datasets")
def test_fsdd_official_split(workdir: Path) -> None:
    import tarfile

    from nascli.config import load_config

    with tarfile.open(SHARED / "fsdd" / "fsdd-wav.tar.gz") as archive:
        archive.extractall(workdir, filter="data")
    cfg = load_config(["dataset=fsdd", f"dataset.root={workdir}", "dataset.cache_dir=cache"])
    splits = cfg.dataset.cls(cfg.dataset.settings).load()
    assert splits.input_shape == (1, 40, 63) and splits.num_classes == 10
    assert len(splits.test_x) == 300 and len(splits.train_x) + len(splits.val_x) == 2700
