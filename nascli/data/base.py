"""Dataset interface and the splits every dataset produces."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import Tensor

from nascli.config import require
from nascli.errors import UserError

SPLIT_SEED = 0  # fixed so that runs with different seeds compare on the same splits


@dataclass
class DatasetSettings:
    """Settings every dataset has: the validation share held out from training, and augmentation."""

    val_fraction: float = 0.1
    crop_padding: int = 0
    hflip: bool = False

    def __post_init__(self) -> None:
        require(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}")
        require(self.crop_padding >= 0, "crop_padding must be >= 0")


@dataclass
class DataSplits:
    """Inputs (normalised images (N, C, H, W), or token ids (N, L)) and integer labels for train, validation, test."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    crop_padding: int = 0
    hflip: bool = False
    vocabulary: Optional[dict[str, Any]] = None  # token data: the tokenizer; x holds ids into its "tokens"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def vocab_size(self) -> Optional[int]:
        return len(self.vocabulary["tokens"]) if self.vocabulary is not None else None

    @property
    def modality(self) -> str:
        return "tokens" if self.vocabulary is not None else "image"

    def to(self, device: torch.device) -> DataSplits:
        """The same splits on `device`."""
        moved = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in self.__dict__.items()}
        return DataSplits(**moved)


class Dataset(ABC):
    """Loads a dataset into train / validation / test splits."""

    Settings: type

    def __init__(self, settings: DatasetSettings) -> None:
        self.settings = settings

    def check(self) -> None:
        """Raise UserError now if the data cannot be found (cheap; called before any work starts)."""

    @abstractmethod
    def load(self) -> DataSplits:
        """The splits, as tensors on the CPU."""


class ArrayDataset(Dataset):
    """A dataset of arrays (images, spectrograms, features); the base class splits, normalises and wraps them."""

    @abstractmethod
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Samples (N, C, H, W) and labels (N,) of the training pool and of the test set."""

    def load(self) -> DataSplits:
        """Train / validation / test splits, normalised by the training pool's channel statistics."""
        x, y, test_x, test_y = self.arrays()
        train, val = stratified_split(np.arange(len(y)), fraction=self.settings.val_fraction, what="validation", y=y)
        pool = torch.from_numpy(np.ascontiguousarray(x)).float()  # one float copy, normalised in place
        mean = pool.mean(dim=(0, 2, 3), keepdim=True)
        std = pool.std(dim=(0, 2, 3), keepdim=True, correction=0) + 1e-8
        pool.sub_(mean).div_(std)
        test = torch.from_numpy(np.ascontiguousarray(test_x)).float().sub_(mean).div_(std)

        def labels(a: np.ndarray) -> Tensor:
            return torch.from_numpy(np.asarray(a).astype(np.int64))

        return DataSplits(
            pool[train], labels(y[train]), pool[val], labels(y[val]), test, labels(test_y),
            num_classes=int(max(y.max(), test_y.max()) + 1),
            crop_padding=self.settings.crop_padding,
            hflip=self.settings.hflip,
        )


def stratified_split(*arrays: np.ndarray, fraction: float, what: str, y: np.ndarray) -> list[np.ndarray]:
    """`arrays` split into a part and a held-out `fraction` with the classes of `y` in both; too few samples is a UserError."""
    try:
        return train_test_split(*arrays, test_size=fraction, random_state=SPLIT_SEED, stratify=y)
    except ValueError as exc:
        classes = len(np.unique(y))
        raise UserError(f"too few samples to hold out a {what} split of {fraction:g} with all {classes} classes in it "
                        f"({len(y)} samples; {str(exc).splitlines()[0]})") from None


def hold_out_test(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[np.ndarray, ...]:
    """Split a dataset without an official test set into a training pool and a stratified test set."""
    train_x, test_x, train_y, test_y = stratified_split(x, y, fraction=fraction, what="test", y=y)
    return train_x, train_y, test_x, test_y
