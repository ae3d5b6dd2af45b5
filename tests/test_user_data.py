"""Users' own data: image folders (decoded once, then cached), .npz arrays, and CIFAR-10 / MNIST in those layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY
from nascli.config import load_config
from nascli.data import folder as folder_module
from nascli.errors import UserError
from test_errors import assert_one_line_error

QUICK = [o for o in TINY if not o.startswith("dataset")] + ["retrain.enabled=false", "search.max_trials=2"]
COLOURS = [(220, 40, 40), (40, 220, 40), (40, 40, 220)]


def write_images(folder: Path, per_class: int, mode: str = "RGB", classes: int = 3, seed: int = 0) -> None:
    """Class folders of small noisy images of one colour each, in varied sizes."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            width, height = 12 + i % 5, 10 + i % 3
            pixels = np.array(COLOURS[c]) + rng.normal(0, 30, (height, width, 3))
            image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
            image.convert(mode).save(folder / f"class{c}" / f"{i:03d}.png")


def load(*overrides: str):
    cfg = load_config(list(overrides))
    return cfg.dataset.cls(cfg.dataset.settings).load()


def test_folder_is_decoded_once_then_read_from_its_cache(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_images(workdir / "photos", per_class=20)
    args = ["dataset=folder", "dataset.root=photos", "dataset.cache_dir=cache", "dataset.workers=1"]
    first = load(*args)
    assert first.input_shape == (3, 14, 14)  # the median longest side of the images
    assert first.num_classes == 3 and len(first.train_x) + len(first.val_x) + len(first.test_x) == 60
    assert len(first.test_x) == 12  # test_fraction 0.2, stratified

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cached folder was decoded again")

    with monkeypatch.context() as patch:
        patch.setattr(folder_module, "decode_images", no_decoding)
        patch.setattr(folder_module, "probe_images", no_decoding)
        second = load(*args)
    assert np.array_equal(second.train_x.numpy(), first.train_x.numpy())
    (workdir / "photos" / "class0" / "000.png").unlink()  # a changed folder is decoded anew
    reloaded = load(*args)
    assert len(reloaded.train_x) + len(reloaded.val_x) + len(reloaded.test_x) == 59
    assert len(list((workdir / "cache").iterdir())) == 2


def test_folder_with_train_and_test_folders_keeps_the_official_split(workdir: Path) -> None:
    write_images(workdir / "data" / "train", per_class=10, mode="L")
    write_images(workdir / "data" / "test", per_class=4, mode="L", seed=1)
    splits = load("dataset=folder", "dataset.root=data", "dataset.cache_dir=cache", "dataset.image_size=8",
                  "dataset.workers=1")
    assert splits.input_shape == (1, 8, 8)  # grey images stay one channel
    assert len(splits.test_x) == 12 and len(splits.train_x) + len(splits.val_x) == 30


def test_folder_search_end_to_end_skips_a_corrupt_image_with_one_warning(nas, workdir: Path) -> None:
    write_images(workdir / "photos", per_class=15)
    (workdir / "photos" / "class1" / "broken.jpg").write_bytes(b"not an image")
    code, _, err = nas("search", "dataset=folder", "dataset.root=photos", "dataset.cache_dir=cache",
                       "dataset.workers=1", *QUICK, "run_dir=run")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: skipped 1 unreadable image(s) in photos (first: class1/broken.jpg: "
                        "UnidentifiedImageError)"]
    assert json.loads((workdir / "run" / "summary.json").read_text())["status"] == "completed"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.mkdir(), "holds no images"),
        (lambda root: write_images(root, per_class=3, classes=1), "one class"),
        (lambda root: (root.mkdir(), (root / "a.png").write_bytes(b"x")), "holds no images in class folders"),
        (lambda root: None, "is not a folder"),
    ],
    ids=["empty", "one-class", "flat", "missing"],
)
def test_folder_that_is_not_an_image_folder_is_one_line(nas, workdir: Path, make, message: str) -> None:
    make(workdir / "photos")
    code, _, err = nas("search", "dataset=folder", "dataset.root=photos", *QUICK, "run_dir=run")
    assert_one_line_error(code, err, message)


def test_arrays_in_every_layout(workdir: Path) -> None:
    rng = np.random.default_rng(0)
    layouts = {"nchw": (40, 3, 6, 6), "nhwc": (40, 6, 6, 3), "nhw": (40, 6, 6), "features": (40, 7)}
    shapes = {"nchw": (3, 6, 6), "nhwc": (3, 6, 6), "nhw": (1, 6, 6), "features": (7, 1, 1)}
    for name, shape in layouts.items():
        x = rng.normal(size=shape).astype(np.float32)
        labels = np.array(["ant", "bee"])[np.arange(40) % 2]
        np.savez(workdir / f"{name}.npz", x_train=x, y_train=labels)
        splits = load("dataset=arrays", f"dataset.path={name}.npz")
        assert splits.input_shape == shapes[name] and splits.num_classes == 2 and len(splits.test_x) == 8
    np.savez(workdir / "split.npz", x_train=rng.normal(size=(30, 5)), y_train=np.arange(30) % 3,
             x_test=rng.normal(size=(9, 5)), y_test=np.arange(9) % 3)
    splits = load("dataset=arrays", "dataset.path=split.npz")
    assert len(splits.test_x) == 9 and splits.test_y.tolist() == [0, 1, 2] * 3


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 2))}, "lacks the array(s) x_train, y_train"),
        ({"x_train": np.zeros((10, 3)), "y_train": np.zeros(9)}, "one label per sample"),
        ({"x_train": np.zeros((10, 3)), "y_train": np.zeros(10), "x_test": np.zeros((2, 3))}, "both or neither"),
        ({"x_train": np.zeros((10, 3)), "y_train": np.zeros(10), "x_test": np.zeros((2, 4)), "y_test": np.zeros(2)},
         "x_test samples have shape"),
        ({"x_train": np.full((10, 3), np.nan), "y_train": np.zeros(10)}, "finite numbers"),
        ({"x_train": np.array([None] * 10, dtype=object), "y_train": np.zeros(10)}, "cannot read"),
    ],
    ids=["missing-key", "label-count", "half-test", "test-shape", "nan", "pickled-objects"],
)
def test_bad_arrays_are_one_line(nas, workdir: Path, arrays: dict, message: str) -> None:
    np.savez(workdir / "data.npz", **arrays)
    code, _, err = nas("search", "dataset=arrays", "dataset.path=data.npz", *QUICK, "run_dir=run")
    assert_one_line_error(code, err, message)
    assert not (workdir / "run" / "config.yaml").exists()


def test_mnist_from_an_npz_and_cifar10_from_an_image_folder(workdir: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(workdir / "mnist.npz", x_train=rng.integers(0, 255, (200, 28, 28), dtype=np.uint8),
             y_train=np.arange(200) % 10, x_test=rng.integers(0, 255, (20, 28, 28), dtype=np.uint8),
             y_test=np.arange(20) % 10)
    splits = load("dataset=mnist", f"dataset.root={workdir}")
    assert splits.input_shape == (1, 28, 28) and len(splits.test_x) == 20
    for part, count in (("train", 10), ("test", 2)):
        write_images(workdir / "cifar" / "cifar10" / part, per_class=count, classes=3)
    cfg = load_config(["dataset=cifar10", f"dataset.root={workdir / 'cifar'}"])
    dataset = cfg.dataset.cls(cfg.dataset.settings)
    dataset.check()
    monkeypatch_cache = pytest.MonkeyPatch()
    monkeypatch_cache.setattr(folder_module, "CACHE", workdir / "cache")
    try:
        splits = dataset.load()
    finally:
        monkeypatch_cache.undo()
    assert splits.input_shape == (3, 32, 32) and len(splits.test_x) == 6


def test_npz_is_never_unpickled(workdir: Path) -> None:
    np.savez(workdir / "data.npz", x_train=np.array([object()] * 4, dtype=object), y_train=np.zeros(4))
    with pytest.raises(UserError, match="cannot read"):
        load("dataset=arrays", "dataset.path=data.npz")
