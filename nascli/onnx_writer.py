"""Writing a network to an ONNX file: used by the export command and by latency measured in ONNX Runtime."""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn


def write_onnx(model: nn.Module, sample: tuple[torch.Tensor, ...], out: Path, names: Optional[list[str]] = None,
               free_batch: bool = True) -> None:
    """Export `model` (on the CPU) to an ONNX file whose batch size is free (or, without `free_batch`, the
    sample's: a batch of 1 cannot be traced as a free size); `sample` is one batch of its inputs, named `names` in
    the file (default: "input")."""
    shapes: Optional[tuple] = None
    if free_batch:
        batch = torch.export.Dim("batch")
        shapes = tuple({0: batch} for _ in sample)
        parameters = inspect.signature(model.forward).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):  # forward(*inputs): one tuple argument
            shapes = (shapes,)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about torchvision ops our networks do not use
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message="# The axis name")  # several inputs share the batch axis
            torch.onnx.export(model, sample, str(out), input_names=names or ["input"], output_names=["logits"],
                              dynamic_shapes=shapes, dynamo=True, verbose=False, report=False,
                              external_data=False)  # one self-contained file: nascli's networks are far under 2 GB
    finally:
        exporter_log.setLevel(level)


def set_metadata(path: Path, properties: dict[str, str]) -> None:
    """Write `properties` into an ONNX file's metadata (ONNX Runtime reads them: session.get_modelmeta())."""
    import onnx  # the optional onnx package, checked by the caller

    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, properties)
    onnx.save(model, str(path))
