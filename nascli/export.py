"""The retrained model of a run: loaded back, and exported to TorchScript or ONNX with a check of its outputs."""

from __future__ import annotations

import inspect
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from nascli.data.base import input_shape_of
from nascli.errors import UserError, writing
from nascli.factory import space_of
from nascli.rundir import MODEL, VOCABULARY, RunDir

FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx"}
SAMPLE_BATCH = 8


def load_model(run_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The retrained network of a run directory in eval mode, and its checkpoint."""
    run = RunDir(run_dir)
    space = space_of(run.config())
    checkpoint = run.load_checkpoint()
    try:
        model = space.build(space.validate(checkpoint["arch"]), input_shape_of(checkpoint),
                            checkpoint["num_classes"], checkpoint.get("vocab_size"))
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as exc:  # an architecture or weights that do not fit the space or each other
        raise UserError(f"{run.file(MODEL)} does not match its run's {space.name} space: "
                        f"{str(exc).strip().splitlines()[0]}") from None
    return model.eval(), checkpoint


def _torchscript(model: nn.Module, sample: tuple[torch.Tensor, ...], out: Path) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream; users still ask for it
        torch.jit.trace(model, sample).save(str(out))
        return torch.jit.load(str(out))(*sample)


def write_onnx(model: nn.Module, sample: tuple[torch.Tensor, ...], out: Path, names: Optional[list[str]] = None) -> None:
    """Export `model` (on the CPU) to an ONNX file whose batch size is free; `sample` is one batch of its inputs,
    named `names` in the file (default: "input")."""
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
                              dynamic_shapes=shapes, dynamo=True, verbose=False,
                              report=False)
    finally:
        exporter_log.setLevel(level)


def _onnx(model: nn.Module, sample: tuple[torch.Tensor, ...], out: Path, names: Optional[list[str]] = None) -> torch.Tensor:
    try:
        import onnxruntime
    except ImportError:
        raise UserError("--format onnx needs ONNX: pip install 'nascli[onnx]'") from None
    names = names or ["input"]
    write_onnx(model, sample, out, names)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {name: part.numpy() for name, part in zip(names, sample)})[0])


def export(run_dir: Path, fmt: str, out: Optional[Path] = None, atol: float = 1e-4) -> tuple[Path, float]:
    """Export the run's retrained model; check it reproduces the checkpoint's outputs on a sample batch.

    Returns the file and the largest absolute difference of the outputs; a file that does not
    reproduce them is removed and reported as an error.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    model, checkpoint = load_model(run_dir)
    out = out or run_dir / "export" / FORMATS[fmt]
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; name the file to write")
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    generator = torch.Generator().manual_seed(0)
    shape = checkpoint["input_shape"]
    shapes = shape if isinstance(shape, dict) else {"input": shape}
    vocab_size = checkpoint.get("vocab_size")
    sizes = vocab_size if isinstance(vocab_size, dict) else {"input": vocab_size} if vocab_size else {}
    # token ids, as the tokenizer saved beside the model makes them; images as floats
    sample = tuple(torch.randint(0, sizes[name], (SAMPLE_BATCH, *part), generator=generator) if name in sizes
                   else torch.randn(SAMPLE_BATCH, *part, generator=generator) for name, part in shapes.items())
    with torch.no_grad():
        expected = model(*sample)
        got = _torchscript(model, sample, out) if fmt == "torchscript" else _onnx(model, sample, out, list(shapes))
    difference = (got.float() - expected).abs().max().item()
    if not difference <= atol:
        out.unlink(missing_ok=True)
        raise UserError(f"the {fmt} export's outputs differ from the checkpoint's by {difference:.2e} (> {atol}); "
                        "nothing was written")
    vocabulary = RunDir(run_dir).file(VOCABULARY)
    if vocabulary.exists():
        with writing(out.parent / VOCABULARY):
            shutil.copyfile(vocabulary, out.parent / VOCABULARY)
    return out, difference
