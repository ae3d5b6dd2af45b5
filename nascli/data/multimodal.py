"""Multimodal datasets: several named inputs per sample (e.g. an image and a recording) and one label."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from nascli.config import require
from nascli.data.base import (DataSplits, Dataset, DatasetSettings, Modalities, hold_out_test, kept_classes,
                              memory_budget, splits_of, train_and_validation)
from nascli.registry import register

Arrays = dict[str, np.ndarray]


class MultimodalDataset(Dataset):
    """Named arrays of aligned samples; the base class splits them together and normalises each on its own."""

    @abstractmethod
    def kinds(self) -> dict[str, str]:
        """Each input's name and kind ("image": (C, H, W) arrays), in the order networks take them."""

    @abstractmethod
    def arrays(self) -> tuple[Arrays, np.ndarray, Arrays, np.ndarray]:
        """Each input's samples and the labels (N,), of the training pool and of the test set."""

    def fitted(self, pool: Arrays, test: Arrays, train_rows: np.ndarray) -> tuple[Arrays, Arrays]:
        """The inputs after preprocessing fitted on the training rows of the pool only (none by default)."""
        return pool, test

    def load(self, device: Optional[torch.device] = None) -> DataSplits:
        """Train / validation / test splits of every input, each normalised by the training pool's statistics.

        When all inputs together (as float32) exceed the memory budget, each streams from its host array.
        """
        pool, y, test, test_y = self.arrays()
        rows, y, test_rows, test_y = kept_classes(y, test_y, self.settings.classes)
        pool = {name: part[rows] for name, part in pool.items()}
        test = {name: part[test_rows] for name, part in test.items()}
        train, val = train_and_validation(y, self.settings)
        pool, test = self.fitted(pool, test, train)
        stream = 4 * sum(part.size for part in (*pool.values(), *test.values())) > memory_budget(self.settings, device)
        kinds = self.kinds()
        parts = {name: splits_of(pool[name], test[name], y, test_y, train, val, stream) for name in kinds}
        inputs = [Modalities({name: parts[name][i] for name in kinds}, kinds) for i in (0, 2, 4)]
        labels = next(iter(parts.values()))[1::2]
        return DataSplits(inputs[0], labels[0], inputs[1], labels[1], inputs[2], labels[2],
                          num_classes=int(max(y.max(), test_y.max()) + 1),
                          crop_padding=self.settings.crop_padding, hflip=self.settings.hflip)


@dataclass
class SyntheticMultimodalSettings(DatasetSettings):
    """Generated multimodal data: each input sees only part of the label, so only their fusion sees all of it."""

    num_samples: int = 600
    num_classes: int = 4
    shapes: Any = None  # {input name: [channels, height, width]}; null: {image: [1, 8, 8], audio: [1, 6, 10]}
    noise: float = 0.5
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        self.shapes = self.shapes or {"image": [1, 8, 8], "audio": [1, 6, 10]}
        require(self.num_classes >= 2, "num_classes must be at least 2")
        require(self.num_samples >= 10 * self.num_classes, "num_samples must be at least 10 per class")
        require(isinstance(self.shapes, dict) and len(self.shapes) >= 2, "shapes must name two or more inputs")
        for name, shape in self.shapes.items():
            require(len(shape) == 3 and min(shape) >= 1, f"shapes.{name} is [channels, height, width]")
        require(self.noise >= 0, "noise must be >= 0")
        require(0 < self.test_fraction < 1, "test_fraction must be in (0, 1)")


@register("dataset", "multimodal_synthetic")
class SyntheticMultimodal(MultimodalDataset):
    """Inputs named in `shapes`; each shows some bits of the label's binary code, so only all of them show the label."""

    Settings = SyntheticMultimodalSettings

    def kinds(self) -> dict[str, str]:
        return {name: "image" for name in self.settings.shapes}

    def arrays(self) -> tuple[Arrays, np.ndarray, Arrays, np.ndarray]:
        s = self.settings
        rng = np.random.default_rng(0)
        labels = np.arange(s.num_samples) % s.num_classes
        bits, count = max(1, (s.num_classes - 1).bit_length()), len(s.shapes)
        parts = {}
        for k, (name, shape) in enumerate(s.shapes.items()):
            shown = range(k, bits, count)  # input k shows bits k, k + count, ... of the label
            seen = sum(((labels >> bit) & 1) << i for i, bit in enumerate(shown))
            prototypes = rng.normal(size=(2 ** len(shown), *shape)).astype(np.float32)
            parts[name] = prototypes[seen] + s.noise * rng.normal(size=(s.num_samples, *shape)).astype(np.float32)
        order = np.arange(s.num_samples)
        train_rows, train_y, test_rows, test_y = hold_out_test(order, labels, s.test_fraction)
        return ({name: part[train_rows] for name, part in parts.items()}, train_y,
                {name: part[test_rows] for name, part in parts.items()}, test_y)
