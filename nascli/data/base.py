"""Dataset interface and the splits every dataset produces."""

from __future__ import annotations

import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Optional

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split
from torch import Tensor

from nascli.errors import UserError, require
from nascli.records import Preprocessing

SPLIT_SEED = 0  # fixed so that runs with different seeds compare on the same splits
UNKNOWN_ID = 1  # the token id of a word outside the vocabulary (0 pads)
MEMORY_SHARE = 0.5  # without dataset.max_memory_gb, data larger than this share of the device's memory streams
STATS_CHUNK = 4096  # samples per chunk when computing channel statistics


@dataclass(frozen=True)
class Augmentation:
    """How training batches vary: images shifted by up to `crop_padding` pixels and flipped, words made unknown."""

    crop_padding: int = 0
    hflip: bool = False
    word_dropout: float = 0.0  # the chance that a training sentence's word is replaced by the unknown token


@dataclass
class DatasetSettings:
    """Settings every dataset has: the validation share held out from training, and augmentation."""

    val_fraction: float = 0.1  # share of the training pool held out, stratified, as the validation split, in (0, 1)
    train_fraction: float = 1.0  # the share of the training pool kept (stratified), before validation is held out
    train_per_class: Optional[int] = None  # at most this many samples per class of the training pool (seeded)
    classes: Optional[list[int]] = None  # keep only these classes (indices of the dataset's), re-indexed in this order
    crop_padding: int = 0  # pixels of random-crop padding in training augmentation of images (0: none)
    hflip: bool = False  # flip each training image horizontally with probability 0.5
    max_memory_gb: Optional[float] = None  # larger (as float32) array data streams from the host; null: half the device's

    def __post_init__(self) -> None:
        require(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}")
        require(0 < self.train_fraction <= 1, f"train_fraction must be in (0, 1], got {self.train_fraction}")
        require(self.train_per_class is None or self.train_per_class >= 1, "train_per_class must be at least 1")
        require(self.classes is None or (len(self.classes) >= 2 and len(set(self.classes)) == len(self.classes)
                                         and min(self.classes) >= 0),
                "classes must list two or more distinct class indices")
        require(self.crop_padding >= 0, "crop_padding must be >= 0")
        require(self.max_memory_gb is None or self.max_memory_gb > 0, "max_memory_gb must be positive (or null)")

    def augmentation(self) -> Augmentation:
        """The augmentation of training batches these settings ask for."""
        return Augmentation(self.crop_padding, self.hflip)


@dataclass
class DataSplits:
    """Inputs (normalised images (N, C, H, W), token ids (N, L), or several named ones per sample) and integer
    labels for train, validation, test."""

    train_x: Inputs
    train_y: Tensor
    val_x: Inputs
    val_y: Tensor
    test_x: Inputs
    test_y: Tensor
    num_classes: int
    augmentation: Augmentation = field(default_factory=Augmentation)
    # token data: the tokenizer, x holds ids into its "tokens"; multimodal data: each token input's, by name
    vocabulary: Optional[dict[str, Any]] = None
    val_held_out: bool = True  # validation is a share held out of the training data (False: given apart, e.g. a dev set)
    preprocessing: Optional[Preprocessing] = None  # how raw inputs became x, and the class names (saved with models)

    @property
    def input_shape(self) -> InputShape:
        """One sample's shape, or each named input's shape for multimodal data."""
        if isinstance(self.train_x, Modalities):
            return {name: tuple(part.shape[1:]) for name, part in self.train_x.parts.items()}
        return tuple(self.train_x.shape[1:])

    @property
    def vocab_size(self) -> Optional[int | dict[str, int]]:
        """The vocabulary's size; for multimodal data each token input's, by name (None: no tokens)."""
        if self.vocabulary is None:
            return None
        if isinstance(self.train_x, Modalities):
            return {name: len(vocabulary["tokens"]) for name, vocabulary in self.vocabulary.items()}
        return len(self.vocabulary["tokens"])

    @property
    def modality(self) -> str | dict[str, str]:
        """What networks must take: "image", "tokens", or for multimodal data each input's kind by name."""
        if isinstance(self.train_x, Modalities):
            return dict(self.train_x.kinds)
        return "tokens" if self.vocabulary is not None else "image"

    @property
    def streamed(self) -> bool:
        """Whether the inputs stay on the host and reach the device one batch at a time."""
        return isinstance(self.train_x, StreamedSamples)

    def resampled(self, fold: int) -> DataSplits:
        """The splits with validation set `fold` (0: these splits): the fold-th of disjoint stratified parts of the
        training split, each the validation split's size, is held out instead, and the validation samples train.

        Validation given apart from the training data (`val_held_out` False) is kept: the training data may
        differ from it in kind (e.g. SST-2's phrases and its dev sentences).
        """
        if fold == 0 or not self.val_held_out:
            return self
        labels = self.train_y.cpu().numpy()
        parts = max(2, min(len(labels) // max(1, len(self.val_y)), int(np.bincount(labels).max())))
        with warnings.catch_warnings():  # a class with fewer samples than parts: sklearn warns, the split is fine
            warnings.simplefilter("ignore", UserWarning)
            folds = list(StratifiedKFold(parts, shuffle=True, random_state=SPLIT_SEED).split(labels, labels))
        fit, held = (torch.from_numpy(rows).to(self.train_y.device) for rows in folds[(fold - 1) % parts])
        return DataSplits(**{
            **self.__dict__,
            "train_x": joined(selected(self.train_x, fit), self.val_x),
            "train_y": torch.cat([self.train_y[fit], self.val_y]),
            "val_x": selected(self.train_x, held),
            "val_y": self.train_y[held],
        })

    def to(self, device: torch.device) -> DataSplits:
        """The same splits on `device` (streamed inputs: each batch will be moved there)."""
        moved = {k: v.to(device) if isinstance(v, (Tensor, StreamedSamples, Modalities)) else v
                 for k, v in self.__dict__.items()}
        return DataSplits(**moved)


class StreamedSamples:
    """Samples kept in a host array (often memory-mapped); indexing returns that batch normalised on `device`.

    The arithmetic is the in-memory path's, batch by batch, so a streamed search gives the same results.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray, mean: Tensor, std: Tensor,
                 device: torch.device = torch.device("cpu")) -> None:
        self.array, self.rows, self.mean, self.std, self.device = array, rows, mean.to(device), std.to(device), device

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.array.shape[1:])

    def dim(self) -> int:
        return self.array.ndim

    def __getitem__(self, key: Any) -> Tensor:
        rows = self.rows[key.cpu().numpy() if isinstance(key, Tensor) else key]
        batch = torch.from_numpy(np.ascontiguousarray(self.array[rows])).to(self.device).float()
        return batch.sub_(self.mean).div_(self.std)

    def to(self, device: torch.device) -> StreamedSamples:
        return StreamedSamples(self.array, self.rows, self.mean, self.std, torch.device(device))

    def joined(self, other: StreamedSamples) -> StreamedSamples:
        """These samples followed by `other`'s (from the same array)."""
        return StreamedSamples(self.array, np.concatenate([self.rows, other.rows]), self.mean, self.std, self.device)

    def selected(self, rows: Tensor) -> StreamedSamples:
        """The samples at positions `rows`, still streamed."""
        return StreamedSamples(self.array, self.rows[rows.cpu().numpy()], self.mean, self.std, self.device)


class Modalities:
    """Several named inputs per sample (multimodal data), indexed, moved and joined together.

    `kinds` says what each input is ("image": (C, H, W) floats; "tokens": (L,) ids); networks take the
    inputs as positional arguments in this order.
    """

    def __init__(self, parts: dict[str, Tensor | StreamedSamples], kinds: dict[str, str]) -> None:
        lengths = {len(part) for part in parts.values()}
        if len(lengths) != 1 or list(parts) != list(kinds):
            raise ValueError(f"the inputs of multimodal samples must align: lengths {sorted(lengths)}")
        self.parts, self.kinds = parts, kinds

    def __len__(self) -> int:
        return len(next(iter(self.parts.values())))

    def __getitem__(self, key: Any) -> Modalities:
        return Modalities({name: part[key] for name, part in self.parts.items()}, self.kinds)

    @property
    def device(self) -> torch.device:
        return next(iter(self.parts.values())).device

    def to(self, device: torch.device) -> Modalities:
        return Modalities({name: part.to(device) for name, part in self.parts.items()}, self.kinds)

    def joined(self, other: Modalities) -> Modalities:
        """These samples followed by `other`'s."""
        return Modalities({name: joined(part, other.parts[name]) for name, part in self.parts.items()}, self.kinds)

    def selected(self, rows: Tensor) -> Modalities:
        """The samples at positions `rows`."""
        return Modalities({name: selected(part, rows) for name, part in self.parts.items()}, self.kinds)


Inputs = Tensor | StreamedSamples | Modalities
InputShape = tuple[int, ...] | dict[str, tuple[int, ...]]


def input_shape_of(checkpoint: dict[str, Any]) -> InputShape:
    """The input shape a checkpoint records: one sample's, or each named input's for multimodal networks."""
    shape = checkpoint["input_shape"]
    return {name: tuple(part) for name, part in shape.items()} if isinstance(shape, dict) else tuple(shape)


def batch_parts(batch: Tensor | Modalities) -> tuple[Tensor, ...]:
    """A batch's inputs, in the order networks take them (one, or each of several)."""
    return tuple(batch.parts.values()) if isinstance(batch, Modalities) else (batch,)


def holds_tokens(x: Inputs) -> bool:
    """Whether any of the inputs is token ids (streamed samples are always images)."""
    return any(isinstance(part, Tensor) and not part.is_floating_point() for part in batch_parts(x))


def network_inputs(batch: Tensor | Modalities, channels_last: bool,
                   transform: Optional[Callable[[Tensor], Tensor]] = None) -> tuple[Tensor, ...]:
    """A batch as a network's positional inputs: token ids without trailing padding, images in the chosen layout
    (after `transform`, e.g. augmentation, of each input)."""
    parts = batch_parts(batch)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    inputs = []
    for part in parts:
        part = trim_padding(part) if transform is None else transform(trim_padding(part))
        inputs.append(part.contiguous(memory_format=layout if part.dim() == 4 else torch.contiguous_format))
    return tuple(inputs)


def trim_padding(batch: Tensor) -> Tensor:
    """A batch of token ids without the padding columns that follow its longest sentence (floats pass through).

    Networks mask padding, so their outputs do not change; the work shrinks to the batch's real length.
    """
    if batch.is_floating_point() or batch.dim() != 2:
        return batch
    used = (batch != 0).any(dim=0).nonzero()
    return batch[:, : int(used.max()) + 1] if len(used) else batch[:, :1]


def joined(first: Inputs, second: Inputs) -> Inputs:
    """Two splits' inputs as one (e.g. train and validation, for retraining)."""
    return first.joined(second) if isinstance(first, (StreamedSamples, Modalities)) else torch.cat([first, second])


def selected(inputs: Inputs, rows: Tensor) -> Inputs:
    """The samples of `inputs` at positions `rows` (streamed ones stay streamed)."""
    return inputs.selected(rows) if isinstance(inputs, (StreamedSamples, Modalities)) else inputs[rows]


def channel_stats(x: np.ndarray) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation of (N, C, ...) samples, accumulated in float64 chunk by chunk."""
    axes = (0, *range(2, x.ndim))
    sums, squares = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for start in range(0, len(x), STATS_CHUNK):
        chunk = np.asarray(x[start : start + STATS_CHUNK], dtype=np.float32)
        sums += chunk.sum(axis=axes, dtype=np.float64)
        squares += np.square(chunk).sum(axis=axes, dtype=np.float64)
    count = x.size / x.shape[1]
    mean = sums / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0)) + 1e-8
    shape = (1, x.shape[1], *([1] * (x.ndim - 2)))
    return torch.from_numpy(mean.astype(np.float32)).reshape(shape), torch.from_numpy(std.astype(np.float32)).reshape(shape)


def normalised(x: np.ndarray, mean: Tensor, std: Tensor) -> Tensor:
    """Samples as one float32 tensor, standardised in place by per-channel statistics."""
    return torch.from_numpy(np.ascontiguousarray(x)).float().sub_(mean).div_(std)


def memory_budget(settings: DatasetSettings, device: Optional[torch.device]) -> float:
    """Bytes of float32 inputs that may live on the device: dataset.max_memory_gb, else a share of its memory."""
    if settings.max_memory_gb is not None:
        return settings.max_memory_gb * 2**30
    if device is not None and device.type == "cuda":
        return MEMORY_SHARE * torch.cuda.get_device_properties(device).total_memory
    return MEMORY_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class Dataset(ABC):
    """Loads a dataset into train / validation / test splits."""

    Settings: type

    def __init__(self, settings: DatasetSettings) -> None:
        self.settings = settings

    def check(self) -> None:
        """Raise UserError now if the data cannot be found (cheap; called before any work starts)."""

    @abstractmethod
    def load(self, device: Optional[torch.device] = None) -> DataSplits:
        """The splits, as CPU tensors (or streamed, when too large for `device`); `.to(device)` moves them."""


class ArrayDataset(Dataset):
    """A dataset of arrays (images, spectrograms, features); the base class splits, normalises and wraps them."""

    @abstractmethod
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Samples (N, C, H, W) and labels (N,) of the training pool and of the test set."""

    def preprocessing(self) -> Preprocessing:
        """How a raw input becomes a sample of `arrays()`, and the class names, once they have been read."""
        return Preprocessing("arrays")

    def load(self, device: Optional[torch.device] = None) -> DataSplits:
        """Train / validation / test splits, normalised by the training pool's channel statistics.

        Inputs larger (as float32) than the memory budget stay in their host array and stream batch by batch.
        """
        x, y, test_x, test_y = self.arrays()
        count = int(max(y.max(), test_y.max()) + 1)
        rows, y, test_rows, test_y = kept_classes(y, test_y, self.settings.classes)
        x, test_x = (x, test_x) if self.settings.classes is None else (x[rows], test_x[test_rows])
        train, val = train_and_validation(y, self.settings)
        stream = 4 * (x.size + test_x.size) > memory_budget(self.settings, device)
        mean, std = stats = channel_stats(x)
        known = replace(self.preprocessing(), mean=mean.flatten().tolist(), std=std.flatten().tolist())
        return DataSplits(
            *splits_of(x, test_x, y, test_y, train, val, stream, stats),
            num_classes=int(max(y.max(), test_y.max()) + 1),
            augmentation=self.settings.augmentation(),
            preprocessing=known.named(count, self.settings.classes),
        )


def splits_of(x: np.ndarray, test_x: np.ndarray, y: np.ndarray, test_y: np.ndarray, train: np.ndarray,
              val: np.ndarray, stream: bool, stats: Optional[tuple[Tensor, Tensor]] = None
              ) -> tuple[Inputs, Tensor, Inputs, Tensor, Inputs, Tensor]:
    """Train, validation and test inputs and labels of a pool and a test set, normalised by the pool's channel
    statistics (`stats`, computed when not given); streamed from their host arrays batch by batch, or in memory."""
    mean, std = stats if stats is not None else channel_stats(x)
    if stream:
        inputs = (StreamedSamples(x, train, mean, std), StreamedSamples(x, val, mean, std),
                  StreamedSamples(test_x, np.arange(len(test_x)), mean, std))
    else:
        pool = normalised(x, mean, std)
        inputs = (pool[train], pool[val], normalised(test_x, mean, std))

    def labels(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.asarray(a).astype(np.int64))

    return inputs[0], labels(y[train]), inputs[1], labels(y[val]), inputs[2], labels(test_y)


def stratified_split(*arrays: np.ndarray, fraction: float, what: str, y: np.ndarray) -> list[np.ndarray]:
    """`arrays` split into a part and a held-out `fraction` with the classes of `y` in both; too few samples is a UserError."""
    try:
        return train_test_split(*arrays, test_size=fraction, random_state=SPLIT_SEED, stratify=y)
    except ValueError as exc:
        classes = len(np.unique(y))
        raise UserError(f"too few samples to hold out a {what} split of {fraction:g} with all {classes} classes in it "
                        f"({len(y)} samples; {str(exc).splitlines()[0]})") from None


def train_and_validation(y: np.ndarray, settings: DatasetSettings) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training part and of the validation split (`val_fraction`) of a pool labelled `y`, the pool
    cut first as `training_pool` says."""
    pool = training_pool(y, settings)
    return stratified_split(pool, fraction=settings.val_fraction, what="validation", y=y[pool])


def training_pool(y: np.ndarray, settings: DatasetSettings) -> np.ndarray:
    """Indices of the samples labelled `y` kept for training: a stratified share (`train_fraction` < 1) and at most
    `train_per_class` samples of each class, both drawn with a fixed seed, so retraining sees exactly them; a single
    class is a UserError."""
    if len(np.unique(y)) < 2:
        raise UserError("every training sample has the same label; a classifier needs samples of two or more classes")
    pool = np.arange(len(y))
    if settings.train_fraction < 1:
        dropped = 1 - settings.train_fraction
        pool = np.sort(stratified_split(pool, fraction=dropped, what="dropped (train_fraction)", y=y)[0])
    if settings.train_per_class is not None:
        order = np.random.default_rng(SPLIT_SEED).permutation(pool)
        rank = np.zeros(len(order), dtype=int)  # each sample's position among those of its class in `order`
        for label in np.unique(y[order]):
            members = y[order] == label
            rank[members] = np.arange(members.sum())
        pool = np.sort(order[rank < settings.train_per_class])
    return pool


def kept_classes(y: np.ndarray, test_y: np.ndarray, classes: Optional[list[int]]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows of the pool and of the test set whose class is in `classes`, and their labels re-indexed in its
    order (every row, labels as they are, when `classes` is None); a class the data lacks is a UserError."""
    if classes is None:
        return np.arange(len(y)), y, np.arange(len(test_y)), test_y
    count = int(max(y.max(), test_y.max())) + 1
    if max(classes) >= count:
        raise UserError(f"dataset.classes names class {max(classes)}; the dataset has {count} classes (0-{count - 1})")
    index = np.full(count, -1)
    index[classes] = np.arange(len(classes))
    rows, test_rows = np.flatnonzero(index[y] >= 0), np.flatnonzero(index[test_y] >= 0)
    return rows, index[y[rows]], test_rows, index[test_y[test_rows]]


def hold_out_test(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[np.ndarray, ...]:
    """Split a dataset without an official test set into a training pool and a stratified test set."""
    train_x, test_x, train_y, test_y = stratified_split(x, y, fraction=fraction, what="test", y=y)
    return train_x, train_y, test_x, test_y
