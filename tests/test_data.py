"""Datasets: splits, normalisation, IDX and CIFAR readers from a dataset.root."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nascli.data.cifar10 import CIFAR10
from nascli.data.digits import Digits, DigitsSettings
from nascli.data.files import FileDatasetSettings
from nascli.data.mnist import IDX_FILES, FashionMNIST, read_idx
from nascli.data.synthetic import Synthetic, SyntheticSettings
from nascli.errors import UserError


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_digits_splits_are_disjoint_stratified_and_normalised() -> None:
    data = Digits(DigitsSettings()).load()
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    sizes = len(data.train_x), len(data.val_x), len(data.test_x)
    assert sum(sizes) == 1797 and sizes[2] == 360
    assert set(data.val_y.tolist()) == set(range(10))
    assert abs(data.train_x.mean().item()) < 0.1 and abs(data.train_x.std().item() - 1) < 0.1
    rows = {tuple(r) for r in data.test_x.flatten(1).tolist()}
    assert not rows & {tuple(r) for r in data.train_x.flatten(1).tolist()}


def test_splits_do_not_depend_on_the_run() -> None:
    a, b = Synthetic(SyntheticSettings()).load(), Synthetic(SyntheticSettings()).load()
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.test_y, b.test_y)


def test_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), array)


def test_fashion_mnist_from_dataset_root(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shapes = {"train": 100, "t10k": 20}
    for name in IDX_FILES:
        n = shapes[name.split("-")[0]]
        array = rng.integers(0, 255, (n, 28, 28)) if "images" in name else np.arange(n) % 10
        write_idx(tmp_path / f"{name}.gz", array)
    data = FashionMNIST(FileDatasetSettings(root=str(tmp_path), val_fraction=0.1)).load()
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert (len(data.train_x), len(data.val_x), len(data.test_x)) == (90, 10, 20)


def test_cifar10_from_dataset_root(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": np.full((20, 3072), 7, dtype=np.uint8), b"labels": list(np.arange(20) % 10)}
        (folder / name).write_bytes(pickle.dumps(batch))
    data = CIFAR10(FileDatasetSettings(root=str(tmp_path), val_fraction=0.1, hflip=True)).load()
    assert data.input_shape == (3, 32, 32) and len(data.test_x) == 20 and data.augmentation.hflip


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package() -> None:
    data = FashionMNIST(FileDatasetSettings()).load()
    assert (len(data.train_x) + len(data.val_x), len(data.test_x)) == (60000, 10000)


def test_missing_files_name_the_folders_looked_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nascli.data.files.CACHE", tmp_path / "cache")
    monkeypatch.setattr(FashionMNIST, "system_dir", str(tmp_path / "system"))
    monkeypatch.setattr("nascli.data.files.importlib.util.find_spec", lambda name: None)
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        FashionMNIST(FileDatasetSettings(root=str(tmp_path / "mine"))).check()


def test_train_fraction_keeps_a_stratified_share_of_the_training_pool() -> None:
    whole = Digits(DigitsSettings()).load()
    half = Digits(DigitsSettings(train_fraction=0.5)).load()
    pool, half_pool = len(whole.train_y) + len(whole.val_y), len(half.train_y) + len(half.val_y)
    assert abs(half_pool - pool / 2) <= 1 and torch.equal(half.test_y, whole.test_y)
    counts = torch.bincount(torch.cat([whole.train_y, whole.val_y]))
    assert ((torch.bincount(torch.cat([half.train_y, half.val_y])) - counts / 2).abs() <= 1).all()
    with pytest.raises(ValueError, match="train_fraction"):
        DigitsSettings(train_fraction=0)


def test_classes_keeps_and_reindexes_those_classes_in_every_split() -> None:
    whole = Digits(DigitsSettings()).load()
    subset = Digits(DigitsSettings(classes=[7, 2])).load()
    assert subset.num_classes == 2
    pool, kept_pool = torch.cat([whole.train_y, whole.val_y]), torch.cat([subset.train_y, subset.val_y])
    for labels, kept in ((pool, kept_pool), (whole.test_y, subset.test_y)):
        assert (kept == 0).sum() == (labels == 7).sum() and (kept == 1).sum() == (labels == 2).sum()
        assert len(kept) == int(((labels == 7) | (labels == 2)).sum())
    with pytest.raises(UserError, match="names class 12; the dataset has 10 classes"):
        Digits(DigitsSettings(classes=[1, 12])).load()
    with pytest.raises(ValueError, match="two or more distinct"):
        DigitsSettings(classes=[3, 3])


def test_train_per_class_keeps_that_many_of_each_class_the_same_every_time() -> None:
    few = Digits(DigitsSettings(train_per_class=10, val_fraction=0.2)).load()
    assert torch.bincount(torch.cat([few.train_y, few.val_y])).tolist() == [10] * 10  # what retraining sees
    assert torch.bincount(few.val_y).tolist() == [2] * 10
    again = Digits(DigitsSettings(train_per_class=10, val_fraction=0.2)).load()
    assert torch.equal(few.train_x, again.train_x)
    assert torch.equal(few.test_y, Digits(DigitsSettings()).load().test_y)  # the test set is untouched


@pytest.mark.parametrize("memory", [None, 1e-9])
def test_resampled_folds_hold_out_disjoint_stratified_parts_of_training_and_train_on_the_validation(memory) -> None:
    data = Synthetic(SyntheticSettings(num_samples=400, val_fraction=0.1, max_memory_gb=memory)).load()
    assert data.resampled(0) is data

    def rows(x) -> set[bytes]:
        x = x[torch.arange(len(x))]  # streamed samples as a tensor
        return {sample.numpy().tobytes() for sample in x}

    everything = rows(data.train_x) | rows(data.val_x)
    held = []
    for fold in (1, 2):
        other = data.resampled(fold)
        assert type(other.train_x) is type(data.train_x) and torch.equal(other.test_y, data.test_y)
        assert len(other.val_x) == pytest.approx(len(data.val_x), abs=2)
        assert rows(other.train_x) | rows(other.val_x) == everything
        assert rows(other.val_x).isdisjoint(rows(other.train_x)) and rows(data.val_x) <= rows(other.train_x)
        assert sorted(torch.bincount(other.val_y).tolist()) == sorted(torch.bincount(data.val_y).tolist())
        held.append(rows(other.val_x))
    assert held[0].isdisjoint(held[1])
    assert rows(data.resampled(1).val_x) == held[0]  # the same fold every time


def test_validation_given_apart_is_kept_by_resampling() -> None:
    data = Synthetic(SyntheticSettings(num_samples=100)).load()
    data.val_held_out = False
    assert data.resampled(3) is data
