"""The retrained model of a run: loaded back, and exported to TorchScript or ONNX with a check of its outputs."""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from nascli.config import validate
from nascli.errors import UserError, require_extra, warn, writing
from nascli.factory import load_data
from nascli.hardware import resolve_hardware
from nascli.model_card import card_beside, description, model_card
from nascli.onnx_writer import set_metadata, write_onnx
from nascli.quantize import compared, quantize
from nascli.records import ModelHeader, Preprocessing
from nascli.rundir import EXPORT, MODEL, VOCABULARY, RunDir, check_output
from nascli.settings import HardwareSettings
from nascli.spaces.stored import load_model

FORMATS = {"torchscript": "model.ts", "onnx": "model.onnx"}
SAMPLE_BATCH = 8
QUANTISATIONS = ("int8",)


@dataclass
class Exported:
    """What an export wrote: the model file, how far its outputs are from the checkpoint's, its card, and (with
    quantisation) the compressed file with its comparison to the float model."""

    path: Path
    difference: float
    card: Path
    compressed: Optional[Path] = None
    compression: Optional[dict[str, Any]] = None


class WithPreprocessing(nn.Module):
    """A network of images behind the preprocessing of its training images: uint8 pixels (N, H, W, C) at its image
    size in, class probabilities out."""

    def __init__(self, model: nn.Module, described: Preprocessing) -> None:
        super().__init__()
        self.model, self.divisor = model, described.pixel_divisor or 1.0
        self.register_buffer("mean", torch.tensor(described.mean).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(described.std).reshape(1, -1, 1, 1))

    def forward(self, pixels: Tensor) -> Tensor:
        x = pixels.permute(0, 3, 1, 2).float() / self.divisor
        return self.model((x - self.mean) / self.std).softmax(1)


def _torchscript(model: nn.Module, sample: tuple[Tensor, ...], out: Path, about: dict[str, str]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated upstream; users still ask for it
        torch.jit.trace(model, sample).save(str(out), _extra_files={"nascli.json": json.dumps(about)})
        return torch.jit.load(str(out))(*sample)


def _onnx(model: nn.Module, sample: tuple[Tensor, ...], out: Path, names: list[str], about: dict[str, str]) -> Tensor:
    import onnxruntime  # optional: checked by export()

    write_onnx(model, sample, out, names)
    set_metadata(out, about)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {name: part.numpy() for name, part in zip(names, sample)})[0])


def _samples(header: ModelHeader, generator: torch.Generator) -> dict[str, Tensor]:
    """A batch of each input the network takes, by name: token ids as the tokenizer makes them, images as floats."""
    shapes = header.input_shape if isinstance(header.input_shape, dict) else {"input": header.input_shape}
    vocab_size = header.vocab_size
    sizes = vocab_size if isinstance(vocab_size, dict) else {"input": vocab_size} if vocab_size else {}
    return {name: torch.randint(0, sizes[name], (SAMPLE_BATCH, *part), generator=generator) if name in sizes
            else torch.randn(SAMPLE_BATCH, *part, generator=generator) for name, part in shapes.items()}


def _with_preprocessing(model: nn.Module, header: ModelHeader, generator: torch.Generator
                        ) -> tuple[nn.Module, dict[str, Tensor]]:
    """The network behind its images' preprocessing, and a batch of raw pixels; a model of other inputs is refused."""
    described = header.preprocessing
    if described is None or described.kind != "image" or described.mean is None:
        kind = "a checkpoint without its preprocessing" if described is None else f"{described.kind} inputs"
        raise UserError(f"--with-preprocessing takes a model of images; this one has {kind}")
    pixels = torch.randint(0, 256, (SAMPLE_BATCH, described.image_size, described.image_size, described.channels),
                           generator=generator, dtype=torch.uint8)
    return WithPreprocessing(model, described).eval(), {"pixels": pixels}


def _record_compression(run: RunDir, name: str, compression: dict[str, Any]) -> None:
    """Keep a compressed model's comparison with the float one in the run's retraining metrics (`compressed`)."""
    run.open_for_writing()
    try:
        metrics = run.retrain_metrics() or {}
        run.write_retrain_metrics({**metrics, "compressed": {**metrics.get("compressed", {}), name: compression}})
    finally:
        run.close()


def export(run_dir: Path, fmt: str, out: Optional[Path] = None, force: bool = False, atol: float = 1e-4,
           with_preprocessing: bool = False, quantisation: Optional[str] = None) -> Exported:
    """Export the run's retrained model with what it is (class names, preprocessing, architecture) inside, and a
    model card beside it; check the file reproduces the checkpoint's outputs on a sample batch.

    A file that does not reproduce them is removed and reported as an error. An earlier export in the run's export
    folder is replaced; an existing `out` (or the card, vocabulary.json or int8 file beside it) only with `force`.
    `with_preprocessing` (ONNX, image models) puts the images' preprocessing into the graph: uint8 pixels in,
    probabilities out. `quantisation` "int8" (ONNX) also writes the int8 model beside it, compared with the float
    one on the run's test split (its dataset is loaded for calibration and the comparison).
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    if fmt == "onnx":
        require_extra("--format onnx", "onnx", "onnx", "onnxruntime", "onnxscript")
    elif with_preprocessing or quantisation:
        raise UserError(f"{'--with-preprocessing' if with_preprocessing else '--quantize'} works with --format onnx")
    if quantisation is not None and (quantisation not in QUANTISATIONS or with_preprocessing):
        raise UserError(f"--quantize takes {', '.join(QUANTISATIONS)}, without --with-preprocessing")
    model, checkpoint = load_model(run_dir)
    run = RunDir(run_dir)
    header = ModelHeader.from_dict(checkpoint, str(run.file(MODEL)))
    if quantisation is not None and isinstance(header.input_shape, dict):
        raise UserError("--quantize takes a model of one input; this one takes several")
    given, out = out, out or run.file(EXPORT) / FORMATS[fmt]
    card = card_beside(out)
    compressed = out.with_name(f"{out.stem}_{quantisation}{out.suffix}") if quantisation else None
    vocabulary, beside = run.file(VOCABULARY), out.parent / VOCABULARY
    copy_vocabulary = vocabulary.exists() and vocabulary.resolve() != beside.resolve()
    if given is not None:
        if out.is_dir():
            raise UserError(f"--out {out} is a directory; name the file to write")
        for path in (out, card, *([beside] if copy_vocabulary else []), *([compressed] if compressed else [])):
            check_output(path, force)
    data = None
    if quantisation is not None:  # loaded before anything is written: missing data is one line, and nothing else
        data = load_data(validate(run.config()), resolve_hardware(HardwareSettings(device="cpu")))  # ONNX Runtime: CPU
    generator = torch.Generator().manual_seed(0)
    exported, sample = (_with_preprocessing(model, header, generator) if with_preprocessing
                        else (model, _samples(header, generator)))
    if header.preprocessing is None:
        warn(f"{run.file(MODEL)} has no class names or preprocessing (retrained before nascli kept them): the export "
             f"carries its architecture only; `nas retrain {run_dir}` makes a model that has them")
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    about = description(header)
    inputs = tuple(sample.values())
    with torch.no_grad():
        expected = exported(*inputs)
        got = (_torchscript(exported, inputs, out, about) if fmt == "torchscript"
               else _onnx(exported, inputs, out, list(sample), about))
    difference = (got.float() - expected).abs().max().item()
    if not difference <= atol:
        out.unlink(missing_ok=True)
        raise UserError(f"the {fmt} export's outputs differ from the checkpoint's by {difference:.2e} (> {atol}); "
                        "nothing was written")
    if copy_vocabulary:
        with writing(beside):
            shutil.copyfile(vocabulary, beside)
    compression = None
    if data is not None and compressed is not None:
        with writing(compressed):
            method = quantize(out, compressed, data)
            set_metadata(compressed, about)
        where = compressed.resolve()  # within the run: relative to it, so that the run can move
        file = where.relative_to(run.path.resolve()) if where.is_relative_to(run.path.resolve()) else where
        compression = {"quantisation": quantisation, "method": method, "file": str(file),
                       **compared(out, compressed, data)}
        _record_compression(run, quantisation, compression)
    text = model_card(header, fmt, out.name, str(run_dir), OmegaConf.to_container(run.config()),
                      run.retrain_metrics(), run.summary(), compression)
    with writing(card):
        card.write_text(text)
    return Exported(out, difference, card, compressed, compression)
