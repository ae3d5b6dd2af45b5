"""`nas predict`: new raw inputs labelled by a run's retrained model, each made into the network's input by the
same code, settings and statistics as its training data (all read from retrain/model.pt, never from that data)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from nascli.config import RunConfig, validate
from nascli.console import progress
from nascli.data.arrays import unlabelled_samples
from nascli.data.audio import AUDIO_SUFFIXES, front_end_settings, spectrograms
from nascli.data.base import Inputs, StreamedSamples
from nascli.data.cache import decoded_chunks
from nascli.data.folder import CHUNK, IMAGE_SUFFIXES, decode_images
from nascli.data.text import encode, read_table
from nascli.errors import UserError, warn, writing
from nascli.evaluators.metrics import EVAL_BATCH, predict as class_probabilities
from nascli.hardware import Hardware, resolve_hardware
from nascli.records import ModelHeader, Preprocessing
from nascli.rundir import MODEL, RunDir, check_output
from nascli.spaces.stored import load_model

ARRAY_SUFFIXES = frozenset({".npy", ".npz"})
TABLE_SUFFIXES = frozenset({".csv", ".tsv"})
RAW_FILES = {"image": IMAGE_SUFFIXES, "audio": AUDIO_SUFFIXES}  # the files of each kind of input, besides arrays
TAKES = {  # what a model of each kind of input labels, for the error that names it
    "image": "image files (.png, .jpg, ...), folders of them, or arrays (.npy, .npz)",
    "audio": "recordings (.wav, .flac, .ogg), folders of them, or spectrogram arrays (.npy, .npz)",
    "text": "sentences: a CSV or TSV file with a column of them (--column)",
    "arrays": "arrays (.npy, .npz)",
}
NEEDS = {"image": ("mean", "std", "image_size", "channels"), "audio": ("mean", "std", "audio"),
         "text": ("vocabulary",), "arrays": ("mean", "std")}  # what each kind's preprocessing must hold
DEVICES = ("auto", "cpu", "cuda")
BLOCK = 8  # scoring batches between updates of the progress bar


@dataclass
class Labelled:
    """What `predict` returns: a row per labelled input (input, label, probability, then the next likeliest
    labels and theirs), and each skipped input with why."""

    table: pd.DataFrame
    skipped: list[str]


@dataclass
class Samples:
    """Inputs read so far: each one's name and its rows, as the training arrays held them (token ids for text)."""

    names: list[str]
    rows: list[np.ndarray]
    skipped: list[str]


def described_model(run_dir: Path) -> tuple[torch.nn.Module, ModelHeader, str]:
    """The run's retrained network, its checkpoint's header, and the checkpoint's path; a checkpoint without the
    preprocessing `nas predict` needs (saved by an older nascli, or for several inputs) is a UserError."""
    model, checkpoint = load_model(run_dir)
    where = str(RunDir(run_dir).file(MODEL))
    header = ModelHeader.from_dict(checkpoint, where)
    described = header.preprocessing
    if described is None:
        raise UserError(f"{where} holds no class names nor how its inputs were made (normalisation, image size and "
                        f"channels, vocabulary, audio settings): it predates nas predict; retrain it with "
                        f"`nas retrain {run_dir}` to label new inputs")
    if described.kind == "multimodal" or isinstance(header.input_shape, dict):
        takes = ", ".join(header.input_shape) if isinstance(header.input_shape, dict) else "several"
        raise UserError(f"nas predict does not take several inputs yet; {run_dir}'s model takes {takes}")
    wrong = _wrong_field(described, header)
    if wrong is not None:
        raise UserError(f"{where} has no valid preprocessing '{wrong}'; the file is corrupt")
    return model, header, where


def _wrong_field(described: Preprocessing, header: ModelHeader) -> Optional[str]:
    """The first field of a checkpoint's preprocessing that its kind of input needs and that is missing or does not
    fit the network (None: every one fits)."""
    needs = NEEDS.get(described.kind)
    if needs is None:
        return "kind"
    missing = [name for name in ("classes", *needs) if not getattr(described, name)]
    if missing or len(described.classes) != header.num_classes:
        return (missing or ["classes"])[0]
    channels = header.input_shape[0]
    if described.mean is not None and not len(described.mean) == len(described.std or []) == channels:
        return "mean"
    vocabulary = described.vocabulary
    if vocabulary is not None and not (isinstance(vocabulary.get("tokens"), list) and isinstance(
            vocabulary.get("max_length"), int) and isinstance(vocabulary.get("token_pattern"), str)
            and isinstance(vocabulary.get("lowercase"), bool)):
        return "vocabulary"
    return None


def gathered(inputs: list[Path], kind: str) -> tuple[list[Path], list[Path]]:
    """The raw files among `inputs` (images or recordings; folders searched for them below), and the array or
    table files; an input the model cannot take is a UserError naming it."""
    raw, other = [], []
    suffixes = RAW_FILES.get(kind, frozenset())
    takes = ARRAY_SUFFIXES if kind != "text" else TABLE_SUFFIXES
    for path in inputs:
        if path.is_dir() and suffixes:
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise UserError(f"{path} holds no {kind} files ({', '.join(sorted(suffixes))})")
            raw += found
        elif not path.exists():
            raise UserError(f"{path} does not exist")
        elif path.is_file() and path.suffix.lower() in suffixes:
            raw.append(path)
        elif path.is_file() and path.suffix.lower() in takes:
            other.append(path)
        else:
            raise UserError(f"{path} is not an input this run's model takes: it labels {TAKES[kind]}")
    return raw, other


def _images(paths: list[Path], described: Preprocessing, found: Samples) -> None:
    """Image files decoded as the training images were: resized, in their channels, their pixels scaled."""
    size, channels, divisor = described.image_size, described.channels, described.pixel_divisor
    chunks = decoded_chunks(decode_images, paths, CHUNK, (size, channels), os.cpu_count() or 1, "images")
    for (pixels, errors), start in zip(chunks, range(0, len(paths), CHUNK)):  # the chunks first: each ends its bar
        keep = np.asarray([e is None for e in errors], dtype=bool)
        found.names += [str(p) for p, ok in zip(paths[start : start + CHUNK], keep) if ok]
        found.rows.append(pixels[keep] if divisor is None else pixels[keep].astype(np.float32) / divisor)
        found.skipped += [e for e in errors if e is not None]
    if found.skipped:
        if not found.names:
            raise UserError(f"none of the {len(paths)} images can be read (first: {', '.join(found.skipped[:3])})")
        warn(f"skipped {len(found.skipped)} unreadable image(s) (first: {', '.join(found.skipped[:3])})")


def _recordings(paths: list[Path], described: Preprocessing, where: str, found: Samples) -> None:
    """Recordings as the training ones became spectrograms (the unreadable ones skipped with a warning)."""
    features, keep = spectrograms(paths, front_end_settings(described.audio, where), Path(os.path.commonpath(paths)))
    found.names += [str(p) for p, ok in zip(paths, keep) if ok]
    found.skipped += [f"{p}: unreadable" for p, ok in zip(paths, keep) if not ok]
    found.rows.append(features)


def _sentences(path: Path, column: Optional[str], default: Optional[str], described: Preprocessing, found: Samples) -> None:
    """A table's sentences (its `column`; none given: the `default` column, else its only one) as token ids of the
    model's vocabulary."""
    table = read_table(path, set(), "")
    if column is None:
        column = table.columns[0] if default not in table.columns and len(table.columns) == 1 else default
    if column not in table.columns:
        raise UserError(f"{path} has no column {column!r} (it has {', '.join(map(str, table.columns))}); pass --column")
    vocabulary = described.vocabulary
    found.names += [f"{path}[{row}]" for row in range(len(table))]
    found.rows.append(encode(table[column].astype(str).tolist(), vocabulary, vocabulary["max_length"]))


def _arrays(path: Path, shape: list[int], found: Samples) -> None:
    """An array file's samples, taken as the training arrays were (before normalisation)."""
    x = unlabelled_samples(path)
    if list(x.shape[1:]) != list(shape):
        raise UserError(f"{path} holds samples of shape {tuple(x.shape[1:])}; the model takes {tuple(shape)}")
    found.names += [f"{path}[{row}]" for row in range(len(x))]
    found.rows.append(x)


def read_inputs(inputs: list[Path], header: ModelHeader, where: str, column: Optional[str] = None,
                default_column: Optional[str] = None) -> Samples:
    """Every input as the network's rows before normalisation: the image or audio files first (folders' sorted),
    then the array or table files, each in the order given."""
    described, found = header.preprocessing, Samples([], [], [])
    raw, other = gathered(inputs, described.kind)
    if raw and described.kind == "image":
        _images(raw, described, found)
    elif raw:
        _recordings(raw, described, where, found)
    for path in other:
        if described.kind == "text":
            _sentences(path, column, default_column, described, found)
        else:
            _arrays(path, header.input_shape, found)
    if not found.names:
        raise UserError(f"no inputs to label in {', '.join(map(str, inputs))}")
    return found


def network_rows(found: Samples, described: Preprocessing, device: torch.device) -> Inputs:
    """The inputs as the network takes them: token ids, or arrays normalised batch by batch as in training."""
    if described.kind == "text":
        return torch.from_numpy(np.concatenate(found.rows)).to(device)
    # one dtype for all: uint8 pixels stay uint8 unless arrays of floats join them
    x = np.concatenate([rows.astype(np.result_type(*found.rows), copy=False) for rows in found.rows])
    shape = (1, len(described.mean), *([1] * (x.ndim - 2)))
    mean, std = (torch.tensor(values, dtype=torch.float32).reshape(shape) for values in (described.mean, described.std))
    return StreamedSamples(x, np.arange(len(x)), mean, std, device)


def scored(model: torch.nn.Module, x: Inputs, hardware: Hardware) -> Tensor:
    """Class probabilities of every input, in blocks of scoring batches under a progress bar."""
    block = BLOCK * EVAL_BATCH.get(hardware.device.type, EVAL_BATCH["cuda"])
    parts = []
    with progress() as bar:
        task = bar.add_task("labelling", total=len(x))
        for start in range(0, len(x), block):
            parts.append(class_probabilities(model, x[start : start + block], hardware))
            bar.advance(task, len(parts[-1]))
    return torch.cat(parts)


def labelled_table(names: list[str], probabilities: Tensor, classes: list[str], top: int) -> pd.DataFrame:
    """A row per input: its likeliest label and probability, then the next `top` - 1 labels and theirs."""
    values, indices = probabilities.topk(min(top, len(classes)), dim=1)
    table = pd.DataFrame({"input": names})
    for k in range(values.shape[1]):
        suffix = "" if k == 0 else f"_{k + 1}"
        table[f"label{suffix}"] = [classes[i] for i in indices[:, k].tolist()]
        table[f"probability{suffix}"] = values[:, k].numpy()
    return table


def hardware_for(cfg: RunConfig, device: str) -> Hardware:
    """`device` (auto: a GPU when one is visible) with the precision and memory layout the run scored its model in."""
    if device not in DEVICES:
        raise UserError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    return resolve_hardware(dataclasses.replace(cfg.hardware, device=device, gpus=None))


def predict(run_dir: Path, inputs: list[Path], column: Optional[str] = None, top: int = 3, device: str = "auto",
            out: Optional[Path] = None, force: bool = False) -> Labelled:
    """Label `inputs` with the run's retrained model; the table is also written to `out` (an existing file only
    with `force`). `column`: a table's column of sentences (default: the run's dataset.text_column, or the only one)."""
    if top < 1:
        raise UserError(f"--top must be at least 1, got {top}")
    if out is not None:
        check_output(out, force)
    cfg = validate(RunDir(run_dir).config())
    model, header, where = described_model(run_dir)
    described = header.preprocessing
    found = read_inputs(inputs, header, where, column, getattr(cfg.dataset.settings, "text_column", None))
    hardware = hardware_for(cfg, device)
    probabilities = scored(hardware.place(model), network_rows(found, described, hardware.device), hardware)
    table = labelled_table(found.names, probabilities, described.classes, top)
    if out is not None:
        with writing(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(out, index=False)
    return Labelled(table, found.skipped)
