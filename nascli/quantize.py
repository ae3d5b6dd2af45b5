"""Post-training int8 quantisation of an exported ONNX model with ONNX Runtime's tools, checked on the test split.

Networks of images (convolutions) are quantised statically: weights per channel and activations with ranges
calibrated on training samples, in QDQ format. Networks of token ids are quantised dynamically: their linear
and recurrent weights in int8, activations at run time.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from nascli.data.base import DataSplits, holds_tokens
from nascli.errors import UserError, first_line
from nascli.evaluators.profile import session_milliseconds

CALIBRATION_SAMPLES = 512  # training samples whose activations set the int8 ranges
CALIBRATION_BATCH = 64
LATENCY_BATCHES = (1, 64)


def _rows(x: Any, start: int, stop: int) -> np.ndarray:
    """Rows of a split (a tensor or streamed samples) as the network takes them, on the CPU."""
    return x[start:stop].cpu().numpy()


class _Calibration:
    """A calibration data reader for ONNX Runtime (any class with `get_next`): batches of training samples, once
    each."""

    def __init__(self, name: str, x: Any, count: int) -> None:
        self.batches = iter([{name: _rows(x, i, min(i + CALIBRATION_BATCH, count))}
                             for i in range(0, count, CALIBRATION_BATCH)])

    def get_next(self) -> Any:
        return next(self.batches, None)


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantiser warns on Python's root logger about layers it leaves in float (e.g. a batch norm's
    rank-1 weight); the result is checked on the test split instead."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize(float_path: Path, out: Path, data: DataSplits) -> str:
    """Write the int8 model of `float_path` to `out`; returns how it was quantised (static or dynamic)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_dynamic, quantize_static

    with tempfile.TemporaryDirectory() as folder, _quiet_root_logger():
        prepared = Path(folder) / "prepared.onnx"
        try:
            quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        except Exception as exc:
            raise UserError(f"ONNX Runtime cannot prepare {float_path} for quantisation: {first_line(exc)}") from None
        if holds_tokens(data.train_x):
            quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8)
            return "dynamic (int8 weights of linear and recurrent layers)"
        reader = _Calibration(_input_name(prepared), data.train_x, min(CALIBRATION_SAMPLES, len(data.train_x)))
        quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return f"static (int8 weights per channel, activations calibrated on {CALIBRATION_SAMPLES} training samples)"


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path)).graph.input[0].name


def compared(float_path: Path, int8_path: Path, data: DataSplits) -> dict[str, Any]:
    """Test accuracy, file size and median latency (ONNX Runtime, CPU, batches of 1 and 64) of both models."""
    import onnxruntime

    result: dict[str, Any] = {}
    for label, path in (("float", float_path), ("int8", int8_path)):
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        predicted = np.concatenate([session.run(None, {name: _rows(data.test_x, i, i + 256)})[0].argmax(1)
                                    for i in range(0, len(data.test_x), 256)])
        result[f"{label}_test_acc"] = float(100.0 * (predicted == data.test_y.cpu().numpy()).mean())
        result[f"{label}_bytes"] = path.stat().st_size
        for batch in LATENCY_BATCHES:
            feed = {name: _rows(data.test_x, 0, batch) if len(data.test_x) >= batch
                    else np.repeat(_rows(data.test_x, 0, 1), batch, axis=0)}
            result[f"{label}_latency_ms_batch{batch}"] = session_milliseconds(session, feed, repeats=20)
    result["test_acc_loss"] = result["float_test_acc"] - result["int8_test_acc"]
    for batch in LATENCY_BATCHES:
        result[f"speedup_batch{batch}"] = result[f"float_latency_ms_batch{batch}"] / result[f"int8_latency_ms_batch{batch}"]
    return result
