"""The retrained model of a run: loaded back, and exported to TorchScript or ONNX with a check of its outputs."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from nascli.errors import UserError, require_extra, writing
from nascli.onnx_writer import write_onnx
from nascli.rundir import EXPORT, VOCABULARY, RunDir, check_output
from nascli.spaces.stored import load_model

FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx"}
SAMPLE_BATCH = 8


def _torchscript(model: nn.Module, sample: tuple[torch.Tensor, ...], out: Path) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream; users still ask for it
        torch.jit.trace(model, sample).save(str(out))
        return torch.jit.load(str(out))(*sample)


def _onnx(model: nn.Module, sample: tuple[torch.Tensor, ...], out: Path, names: Optional[list[str]] = None) -> torch.Tensor:
    import onnxruntime  # optional: checked by export()

    names = names or ["input"]
    write_onnx(model, sample, out, names)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {name: part.numpy() for name, part in zip(names, sample)})[0])


def export(run_dir: Path, fmt: str, out: Optional[Path] = None, force: bool = False,
           atol: float = 1e-4) -> tuple[Path, float]:
    """Export the run's retrained model; check it reproduces the checkpoint's outputs on a sample batch.

    Returns the file and the largest absolute difference of the outputs; a file that does not
    reproduce them is removed and reported as an error. An earlier export in the run's export folder is replaced;
    an existing `out` (or the vocabulary.json a text model writes beside it) only with `force`.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    if fmt == "onnx":
        require_extra("--format onnx", "onnx", "onnxruntime", "onnxscript")
    model, checkpoint = load_model(run_dir)
    run = RunDir(run_dir)
    given, out = out, out or run.file(EXPORT) / FORMATS[fmt]
    vocabulary, beside = run.file(VOCABULARY), out.parent / VOCABULARY
    copy_vocabulary = vocabulary.exists() and vocabulary.resolve() != beside.resolve()
    if given is not None:
        if out.is_dir():
            raise UserError(f"--out {out} is a directory; name the file to write")
        check_output(out, force)
        if copy_vocabulary:
            check_output(beside, force)
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
    if copy_vocabulary:
        with writing(beside):
            shutil.copyfile(vocabulary, beside)
    return out, difference
