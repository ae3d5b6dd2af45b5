"""Hostile data: odd names, link loops, corrupt or ill-typed arrays, unreadable recordings and missing roots give a
one-line error, one warning line or the right result; never a traceback, a hang or a silently wrong run."""

from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from PIL import Image
from scipy.io import wavfile
from test_errors import assert_one_line_error

from nascli.config import load_config
from nascli.data.base import DataSplits
from nascli.data.cifar10 import CIFAR10
from nascli.data.files import FileDatasetSettings
from nascli.data.mnist import MNIST, FashionMNIST
from nascli.errors import UserError

RATE = 8000


def load(*overrides: str) -> DataSplits:
    cfg = load_config(list(overrides))
    dataset = cfg.dataset.cls(cfg.dataset.settings)
    dataset.check()
    return dataset.load()


def sample_count(splits: DataSplits) -> int:
    return len(splits.train_x) + len(splits.val_x) + len(splits.test_x)


def image(path: bytes | Path, shade: int) -> None:
    """A small grey PNG; `path` may be bytes that are not UTF-8."""
    Image.fromarray(np.full((6, 6), shade, dtype=np.uint8)).save(os.fsdecode(path), format="PNG")


def image_folder(root: Path, classes: tuple[bytes, ...], per_class: int) -> None:
    for c, name in enumerate(classes):
        folder = os.path.join(os.fsencode(root), name)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            image(os.path.join(folder, b"%d.png" % i), 60 * c + i)


def test_names_that_are_not_utf8_are_read_as_any_other(workdir: Path) -> None:
    image_folder(workdir / "photos", (b"a", b"b", b"cl\xff"), per_class=10)
    image(os.fsencode(workdir / "photos" / "a") + b"/caf\xe9.png", 7)
    args = ["dataset=folder", "dataset.root=photos", "dataset.cache_dir=cache", "dataset.workers=1"]
    splits = load(*args)
    assert splits.num_classes == 3 and sample_count(splits) == 31
    assert sample_count(load(*args)) == 31  # and from the cache


def test_link_loops_in_an_image_folder_are_skipped_with_one_warning(workdir: Path, capsys) -> None:
    image_folder(workdir / "photos", (b"a", b"b"), per_class=10)
    os.symlink("loop", workdir / "photos" / "a" / "loop")
    os.symlink("..", workdir / "photos" / "b" / "up")
    os.symlink(".", workdir / "photos" / "b" / "here")
    splits = load("dataset=folder", "dataset.root=photos", "dataset.cache_dir=cache", "dataset.workers=1")
    assert splits.num_classes == 2 and sample_count(splits) == 20
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [("warning: skipped 3 entries in photos that cannot be read or followed (first: a/loop: Too many "
                         "levels of symbolic links, b/here: a link to a folder above it, b/up: a link to a folder above "
                         "it)")]


def npz_with_a_corrupt_header(path: Path) -> None:
    """An .npz whose x_train member has a header dictionary numpy's parser cannot tokenize."""
    header = b"{'descr': '<f8', 'shape': (((("
    text = header + b" " * (-(10 + len(header) + 1) % 64) + b"\n"  # padded as numpy pads it
    np.savez(path, y_train=np.arange(20) % 2)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("x_train.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + bytes(480))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (npz_with_a_corrupt_header, "cannot read array x_train of data.npz"),
        (lambda path: path.write_bytes(b"PK\x03\x04 truncated"), "cannot read data.npz"),
        (lambda path: np.save(path.with_suffix(".npy"), np.zeros(3)) or path.with_suffix(".npy").rename(path),
         "data.npz holds one array; an .npz of named arrays"),
    ],
    ids=["corrupt-header", "truncated", "npy"],
)
def test_an_npz_that_cannot_be_read_is_one_line_naming_it(workdir: Path, make, message: str) -> None:
    make(workdir / "data.npz")
    with pytest.raises(UserError, match=message):
        load("dataset=arrays", "dataset.path=data.npz")


def test_complex_arrays_are_refused(workdir: Path) -> None:
    np.savez("data.npz", x_train=np.ones((20, 3)) + 1j, y_train=np.arange(20) % 2)
    with pytest.raises(UserError, match=r"x_train holds complex numbers \(dtype complex128\)"):
        load("dataset=arrays", "dataset.path=data.npz")


@pytest.mark.parametrize("with_test", [False, True], ids=["held-out-test", "given-test"])
def test_a_single_class_is_refused(workdir: Path, with_test: bool) -> None:
    test = {"x_test": np.ones((6, 3)), "y_test": np.arange(6) % 2} if with_test else {}
    np.savez("data.npz", x_train=np.ones((20, 3)), y_train=np.full(20, 7), **test)
    with pytest.raises(UserError, match="every training sample has the same label; a classifier needs samples of two"):
        load("dataset=arrays", "dataset.path=data.npz")


def test_nan_labels_are_refused_and_counted(nas, workdir: Path) -> None:
    labels = (np.arange(40) % 2).astype(float)
    labels[:15] = np.nan
    np.savez("data.npz", x_train=np.ones((40, 3)), y_train=labels)
    code, _, err = nas("search", "dataset=arrays", "dataset.path=data.npz",
                       *(o for o in TINY if not o.startswith("dataset")), "run_dir=run")
    assert_one_line_error(code, err, "15 of the 40 labels in y_train are NaN")


def tone(path: Path, rate: int, frequency: float, seconds: float = 0.25) -> None:
    t = np.arange(int(seconds * rate)) / rate
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, (0.5 * np.sin(2 * np.pi * frequency * t) * 32767).astype(np.int16))


AUDIO = ["dataset=audio_folder", "dataset.root=sounds", "dataset.workers=1", "dataset.seconds=0.25", "dataset.n_mels=16",
         "dataset.cache_dir=cache"]


def test_recordings_that_cannot_be_read_are_counted_by_why(workdir: Path) -> None:
    pytest.importorskip("librosa")
    for name in ("a", "b"):
        folder = workdir / "sounds" / name
        folder.mkdir(parents=True)
        for i in range(4):
            (folder / f"text{i}.wav").write_text("not a recording")
        (folder / "empty.wav").touch()
        wavfile.write(folder / "silent.wav", RATE, np.zeros(0, dtype=np.int16))
    with pytest.raises(UserError) as error:
        load(*AUDIO)
    assert str(error.value) == ("12 of 12 recordings in sounds could not be read: 8 not a WAV file, 2 empty, 2 with no "
                                "samples (first: a/empty.wav, a/silent.wav, a/text0.wav)")


def test_mixed_rates_are_resampled_and_some_unreadable_ones_warned_of(workdir: Path, capsys) -> None:
    pytest.importorskip("librosa")
    for c, frequency in enumerate((300, 1500)):
        for i, rate in enumerate((8000, 11025, 16000, 44100) * 2):
            tone(workdir / "sounds" / f"class{c}" / f"{i}.wav", rate, frequency)
    (workdir / "sounds" / "class1" / "notes.wav").write_text("not a recording")
    splits = load(*AUDIO)
    assert sample_count(splits) == 16  # every rate kept
    assert capsys.readouterr().err.splitlines() == [
        ("warning: skipped 1 unreadable recording(s) in sounds (first: class1/notes.wav): 1 not a WAV file; "
         "16 of 17 are used")]
    x = np.concatenate([splits.train_x.numpy(), splits.val_x.numpy(), splits.test_x.numpy()])
    y = np.concatenate([splits.train_y.numpy(), splits.val_y.numpy(), splits.test_y.numpy()])
    loudest_band = x[:, 0].mean(axis=2).argmax(axis=1)  # whatever the rate, each tone lands in its own mel band
    assert len(set(loudest_band[y == 0])) == 1 and len(set(loudest_band[y == 1])) == 1
    assert loudest_band[y == 0][0] < loudest_band[y == 1][0]


def test_a_root_that_does_not_exist_is_one_line_not_the_system_copy(nas, workdir: Path) -> None:
    code, _, err = nas("search", "dataset=fashion_mnist", "dataset.root=nowhere",
                       *(o for o in TINY if not o.startswith("dataset")), "run_dir=run")
    assert_one_line_error(code, err, "Fashion-MNIST not found: dataset.root nowhere does not exist; install it with")
    for dataset in (MNIST, CIFAR10):
        with pytest.raises(UserError, match="dataset.root nowhere does not exist"):
            dataset(FileDatasetSettings(root="nowhere")).check()


def test_a_root_without_the_files_says_where_they_are_read_from(workdir: Path, monkeypatch, capsys) -> None:
    system = workdir / "system"
    system.mkdir()
    for name in FashionMNIST.files:
        (system / name).touch()
    monkeypatch.setattr(FashionMNIST, "system_dir", str(system))
    (workdir / "mine").mkdir()
    assert FashionMNIST(FileDatasetSettings(root="mine")).locate() == system
    assert capsys.readouterr().err.startswith("warning: dataset.root mine holds no Fashion-MNIST files "
                                              "(train-images-idx3-ubyte, ")
