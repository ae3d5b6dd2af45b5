"""Self-describing exports: the class names, preprocessing and architecture inside the file, a model card beside
it, and ONNX with the images' preprocessing in its graph."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_errors import assert_one_line_error
from test_predict import FOLDER, NOT_DATA
from test_user_data import write_images

from nascli.data.folder import decode_images

onnxruntime = pytest.importorskip("onnxruntime")


def test_onnx_carries_classes_preprocessing_and_architecture(nas, run: Path, workdir: Path) -> None:
    code, out, err = nas("export", str(run), "--format", "onnx", "--out", "model.onnx")
    assert code == 0, err
    meta = onnxruntime.InferenceSession("model.onnx").get_modelmeta().custom_metadata_map
    header = torch.load(run / "retrain" / "model.pt", weights_only=True)
    assert json.loads(meta["nascli.classes"]) == header["preprocessing"]["classes"] == ["0", "1", "2", "3"]
    assert json.loads(meta["nascli.preprocessing"])["mean"] == header["preprocessing"]["mean"]
    assert json.loads(meta["nascli.arch"]) == json.loads((run / "best.json").read_text())["arch"]
    assert json.loads(meta["nascli.input_shape"]) == list(header["input_shape"])
    card = (workdir / "model_card.md").read_text()
    assert "model_card.md" in out
    for part in ("## Data", "classes (4): 0, 1, 2, 3", "## Preprocessing", "standardised per channel", "## Metrics",
                 "test_acc", "## How to run it", "onnxruntime.InferenceSession(\"model.onnx\")"):
        assert part in card, part


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_carries_them_as_an_extra_file(nas, run: Path) -> None:
    assert nas("export", str(run))[0] == 0
    files = {"nascli.json": ""}
    torch.jit.load(str(run / "export" / "model.ts"), _extra_files=files)
    about = json.loads(files["nascli.json"])
    assert json.loads(about["nascli.classes"]) == ["0", "1", "2", "3"] and json.loads(about["nascli.space"]) == "chain"
    assert "torch.jit.load(\"model.ts\"" in (run / "export" / "model_card.md").read_text()


def test_an_existing_card_is_replaced_only_with_force(nas, run: Path, workdir: Path) -> None:
    (workdir / "model_card.md").write_text("mine")
    code, _, err = nas("export", str(run), "--format", "onnx", "--out", "model.onnx")
    assert code == 2 and "model_card.md" in err and (workdir / "model_card.md").read_text() == "mine"
    assert not (workdir / "model.onnx").exists()
    assert nas("export", str(run), "--format", "onnx", "--out", "model.onnx", "--force")[0] == 0


def test_onnx_with_preprocessing_takes_raw_pixels_as_nas_predict_does(nas, workdir: Path) -> None:
    write_images(workdir / "photos" / "train", 12)
    write_images(workdir / "photos" / "test", 4, seed=1)
    code, _, err = nas("search", *FOLDER, *NOT_DATA, "run_dir=run")
    assert code == 0, err
    code, _, err = nas("export", "run", "--format", "onnx", "--out", "raw.onnx", "--with-preprocessing")
    assert code == 0, err
    assert nas("predict", "run", "photos/test", "--out", "preds.csv")[0] == 0
    table = pd.read_csv("preds.csv")
    pixels, _ = decode_images([Path(name) for name in table["input"]], 8, 3)
    session = onnxruntime.InferenceSession("raw.onnx")
    probabilities = session.run(None, {"pixels": pixels.transpose(0, 2, 3, 1)})[0]
    classes = json.loads(session.get_modelmeta().custom_metadata_map["nascli.classes"])
    assert [classes[i] for i in probabilities.argmax(1)] == table["label"].tolist()
    assert probabilities.max(1) == pytest.approx(table["probability"].to_numpy(), abs=1e-4)


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "onnx", "--with-preprocessing"], "--with-preprocessing takes a model of images; this one has arrays"),
    (["--with-preprocessing"], "--with-preprocessing works with --format onnx"),
])
def test_with_preprocessing_refuses_what_it_cannot_do(nas, run: Path, args: list[str], message: str) -> None:
    code, _, err = nas("export", str(run), *args)
    assert_one_line_error(code, err, message)
