"""`nas export --quantize int8`: the int8 ONNX model beside the float one, compared on the test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from test_errors import assert_one_line_error
from test_text import QUICK as TEXT_QUICK, text_data

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime.quantization")


def test_an_image_model_is_quantised_statically_and_compared(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "run_dir=run")[0] == 0
    code, out, err = nas("export", "run", "--format", "onnx", "--quantize", "int8")
    assert code == 0, err
    int8 = workdir / "run" / "export" / "model_int8.onnx"
    assert "model_int8.onnx (int8, static" in out and "test_acc" in out
    assert not list((workdir / "run" / "export").glob("*.data"))  # every file self-contained
    session = onnxruntime.InferenceSession(str(int8))
    assert json.loads(session.get_modelmeta().custom_metadata_map["nascli.classes"]) == ["0", "1", "2", "3"]
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(str(int8)).graph.node)
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    assert session.run(None, {session.get_inputs()[0].name: x})[0].shape == (5, 4)
    card = (workdir / "run" / "export" / "model_card.md").read_text()
    assert "| int8 |" in card and "| float |" in card and "static (int8 weights per channel" in card
    kept = json.loads((workdir / "run" / "retrain" / "metrics.json").read_text())["compressed"]["int8"]
    assert kept["file"] == "export/model_int8.onnx" and 0 <= kept["int8_test_acc"] <= 100 and kept["speedup_batch64"] > 0
    code, out, err = nas("show", "run")
    assert code == 0, err
    assert "int8  test_acc" in out and "the float speed (batch 1 / 64)" in out
    code, out, err = nas("report", "run")
    assert code == 0, err
    assert "int8 test_acc" in out and "int8 speed-up" in out


def test_a_text_model_is_quantised_dynamically(nas, workdir: Path) -> None:
    data = text_data(workdir)
    assert nas("search", *data, *TEXT_QUICK, "run_dir=run")[0] == 0
    code, out, err = nas("export", "run", "--format", "onnx", "--quantize", "int8", "--out", "m.onnx")
    assert code == 0, err
    assert "m_int8.onnx (int8, dynamic" in out and (workdir / "m_int8.onnx").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--quantize", "int8"], "--quantize works with --format onnx"),
    (["--format", "onnx", "--quantize", "int4"], "--quantize takes int8"),
    (["--format", "onnx", "--quantize", "int8", "--with-preprocessing"], "without --with-preprocessing"),
])
def test_quantize_refuses_what_it_cannot_do(nas, workdir: Path, args: list[str], message: str) -> None:
    assert nas("search", *TINY, "search.max_trials=1", "run_dir=run")[0] == 0
    code, _, err = nas("export", "run", *args)
    assert_one_line_error(code, err, message)


def test_an_existing_int8_file_is_replaced_only_with_force(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "search.max_trials=1", "run_dir=run")[0] == 0
    (workdir / "m_int8.onnx").write_text("mine")
    code, _, err = nas("export", "run", "--format", "onnx", "--quantize", "int8", "--out", "m.onnx")
    assert code == 2 and "m_int8.onnx" in err and (workdir / "m_int8.onnx").read_text() == "mine"
