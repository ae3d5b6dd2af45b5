"""`nas predict`: new raw inputs labelled by a run's model, preprocessed from what its checkpoint stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY
from test_errors import assert_one_line_error
from test_text import QUICK as TEXT_QUICK, text_data
from test_user_data import write_images

from nascli import api
from nascli.config import load_config
from nascli.data.folder import decode_images, list_folder
from nascli.evaluators.metrics import predict as scored
from nascli.hardware import resolve_hardware
from nascli.settings import HardwareSettings
from nascli.spaces.stored import load_model

NOT_DATA = [o for o in TINY if not o.startswith("dataset")]
FOLDER = ["dataset=folder", "dataset.root=photos", "dataset.cache_dir=cache", "dataset.workers=1",
          "dataset.image_size=8"]


def own_scoring(overrides: list[str], run: Path) -> tuple[list[str], torch.Tensor]:
    """The class names and the run's model's probabilities on its test split, as its retraining scored it."""
    cfg = load_config(overrides)
    data = cfg.dataset.cls(cfg.dataset.settings).load()
    model, _ = load_model(run)
    return data.preprocessing.classes, scored(model, data.test_x, resolve_hardware(HardwareSettings(device="cpu")))


def predicted(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False)


@pytest.fixture
def image_run(nas, workdir: Path) -> Path:
    write_images(workdir / "photos" / "train", 12)
    write_images(workdir / "photos" / "test", 4, seed=1)
    code, _, err = nas("search", *FOLDER, *NOT_DATA, "run_dir=run")
    assert code == 0, err
    return workdir / "run"


def test_image_files_are_labelled_as_the_run_scored_its_test_split(nas, image_run: Path, workdir: Path) -> None:
    code, out, err = nas("predict", str(image_run), "photos/test", "--out", "preds.csv", "--top", "2")
    assert code == 0, err
    assert "labelled 12 input(s)" in out and "wrote preds.csv" in out
    classes, probabilities = own_scoring(FOLDER, image_run)
    assert classes == ["class0", "class1", "class2"]
    listing = list_folder(workdir / "photos")
    test_files = [f"photos/{name}" for name, test in zip(listing.files, listing.is_test) if test]
    table = predicted(workdir / "preds.csv")
    assert list(table.columns) == ["input", "label", "probability", "label_2", "probability_2"]
    assert table["input"].tolist() == test_files
    assert table["label"].tolist() == [classes[i] for i in probabilities.argmax(1).tolist()]
    np.testing.assert_allclose(table["probability"], probabilities.max(1).values.numpy(), atol=1e-5)
    from_api = api.load_run(image_run).predict(["photos/test"], top=2)
    assert from_api["label"].tolist() == table["label"].tolist() and list(from_api.columns) == list(table.columns)


def test_arrays_of_pixels_are_labelled_like_the_files_they_came_from(nas, image_run: Path, workdir: Path) -> None:
    files = sorted((workdir / "photos" / "test").rglob("*.png"))
    pixels, _ = decode_images(files, 8, 3)
    np.save(workdir / "pixels.npy", pixels)
    assert nas("predict", str(image_run), "photos/test", "--out", "files.csv")[0] == 0
    code, _, err = nas("predict", str(image_run), "pixels.npy", "--out", "arrays.csv")
    assert code == 0, err
    files_table, arrays_table = predicted(workdir / "files.csv"), predicted(workdir / "arrays.csv")
    assert arrays_table["input"].iloc[0] == "pixels.npy[0]"
    assert arrays_table["label"].tolist() == files_table["label"].tolist()


def test_an_unreadable_image_is_skipped_with_a_warning_and_out_is_not_overwritten(nas, image_run: Path,
                                                                                   workdir: Path) -> None:
    (workdir / "photos" / "test" / "class1" / "broken.png").write_bytes(b"not a png")
    code, out, err = nas("predict", str(image_run), "photos/test", "--out", "preds.csv")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: skipped 1 unreadable image(s)"), err
    assert "class1/broken.png" in warnings[0] and "labelled 12 input(s), skipped 1" in out
    (workdir / "preds.csv").write_text("mine")
    code, _, err = nas("predict", str(image_run), "photos/test/class0", "--out", "preds.csv")
    assert_one_line_error(code, err, "preds.csv exists", "--force")
    assert (workdir / "preds.csv").read_text() == "mine"
    assert nas("predict", str(image_run), "photos/test/class0", "--out", "preds.csv", "--force")[0] == 0
    assert len(predicted(workdir / "preds.csv")) == 4


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (lambda root: (root / "notes.csv").write_text("text\nhello\n"), ["notes.csv"], "labels image files"),
        (lambda root: None, ["nowhere.png"], "nowhere.png does not exist"),
        (lambda root: (root / "empty").mkdir(), ["empty"], "holds no image files"),
        (lambda root: np.save(root / "wrong.npy", np.zeros((2, 1, 5, 5))), ["wrong.npy"], "the model takes (3, 8, 8)"),
        (lambda root: (root / "bad.npy").write_bytes(b"junk"), ["bad.npy"], "cannot read bad.npy"),
        (lambda root: None, ["photos", "--top", "0"], "--top must be at least 1"),
        (lambda root: None, ["photos", "--device", "tpu"], "--device must be one of"),
    ],
    ids=["wrong-modality", "missing", "empty-folder", "wrong-shape", "corrupt-array", "top", "device"],
)
def test_bad_image_inputs_are_one_line(nas, image_run: Path, workdir: Path, make, args: list[str], message: str) -> None:
    make(workdir)
    code, _, err = nas("predict", str(image_run), *args)
    assert_one_line_error(code, err, message)


def test_a_checkpoint_from_before_predict_still_loads_and_predict_says_what_it_lacks(nas, image_run: Path) -> None:
    path = image_run / "retrain" / "model.pt"
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["preprocessing"]["classes"] == ["class0", "class1", "class2"]
    assert checkpoint["preprocessing"]["image_size"] == 8 and checkpoint["preprocessing"]["channels"] == 3
    del checkpoint["preprocessing"]
    torch.save(checkpoint, path)
    load_model(image_run)
    code, _, err = nas("predict", str(image_run), "photos/test")
    assert_one_line_error(code, err, "holds no class names", "normalisation", "nas retrain")
    checkpoint["preprocessing"] = {"kind": "image", "classes": ["a", "b", "c"], "mean": [0.0], "std": [1.0],
                                   "image_size": 8, "channels": 3}
    torch.save(checkpoint, path)
    code, _, err = nas("predict", str(image_run), "photos/test")
    assert_one_line_error(code, err, "no valid preprocessing 'mean'", "corrupt")


def test_arrays_are_labelled_as_the_run_scored_its_test_split(nas, workdir: Path) -> None:
    code, _, err = nas("search", *TINY, "run_dir=run")
    assert code == 0, err
    cfg = load_config(TINY)
    _, _, test_x, _ = cfg.dataset.cls(cfg.dataset.settings).arrays()
    np.savez(workdir / "test.npz", x=test_x)
    code, out, err = nas("predict", "run", "test.npz", "--top", "1", "--out", "preds.csv")
    assert code == 0, err
    classes, probabilities = own_scoring(TINY, workdir / "run")
    assert classes == ["0", "1", "2", "3"]
    table = predicted(workdir / "preds.csv")
    assert list(table.columns) == ["input", "label", "probability"] and len(table) == len(test_x)
    assert table["label"].astype(str).tolist() == [classes[i] for i in probabilities.argmax(1).tolist()]
    write_images(workdir / "photos", 1)
    code, _, err = nas("predict", "run", "photos")
    assert_one_line_error(code, err, "labels arrays (.npy, .npz)")


def test_sentences_are_labelled_as_the_run_scored_its_test_split(nas, workdir: Path) -> None:
    data = text_data(workdir)
    code, _, err = nas("search", *data, *TEXT_QUICK, "run_dir=run")
    assert code == 0, err
    code, out, err = nas("predict", "run", "test.csv", "--out", "preds.csv")
    assert code == 0, err
    classes, probabilities = own_scoring(data, workdir / "run")
    assert classes == ["neg", "pos"]
    table = predicted(workdir / "preds.csv")
    assert table["input"].iloc[1] == "test.csv[1]" and list(table.columns)[-1] == "probability_2"
    assert table["label"].tolist() == [classes[i] for i in probabilities.argmax(1).tolist()]
    np.testing.assert_allclose(table["probability"], probabilities.max(1).values.numpy(), atol=1e-5)
    pd.DataFrame({"sentence": ["good movie", "awful dull"]}).to_csv(workdir / "mine.csv", index=False)
    code, out, err = nas("predict", "run", "mine.csv")  # its only column
    assert code == 0, err
    assert "labelled 2 input(s)" in out
    (workdir / "empty.csv").write_text("text\n")
    code, _, err = nas("predict", "run", "empty.csv")
    assert_one_line_error(code, err, "empty.csv holds no rows")
    code, _, err = nas("predict", "run", "test.csv", "--column", "review")
    assert_one_line_error(code, err, "no column 'review'", "--column")
    write_images(workdir / "photos", 1)
    code, _, err = nas("predict", "run", "photos/class0/000.png")
    assert_one_line_error(code, err, "labels sentences")


def test_recordings_are_labelled_as_the_run_scored_its_test_split(nas, workdir: Path) -> None:
    pytest.importorskip("librosa")
    from test_audio import QUICK as AUDIO_QUICK, tone

    for split, count in (("train", 10), ("test", 3)):
        for c, frequency in enumerate((300, 900, 2000)):
            for i in range(count):
                tone(workdir / "sounds" / split / f"class{c}" / f"{i}.wav", frequency, 0.4, seed=i + 50 * (split == "test"))
    data = ["dataset=audio_folder", "dataset.root=sounds"]
    code, _, err = nas("search", *data, *AUDIO_QUICK, "run_dir=run")
    assert code == 0, err
    code, _, err = nas("predict", "run", "sounds/test", "--out", "preds.csv")
    assert code == 0, err
    classes, probabilities = own_scoring([*data, *AUDIO_QUICK], workdir / "run")
    table = predicted(workdir / "preds.csv")
    assert len(table) == 9 and table["input"].iloc[0] == "sounds/test/class0/0.wav"
    assert table["label"].tolist() == [classes[i] for i in probabilities.argmax(1).tolist()]
    np.testing.assert_allclose(table["probability"], probabilities.max(1).values.numpy(), atol=1e-5)
