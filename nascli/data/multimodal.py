"""Multimodal datasets: several named inputs per sample (e.g. an image and a recording) and one label."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from nascli.data.base import (Dataset, DataSplits, Modalities, hold_out_test, kept_classes, memory_budget, splits_of,
                              train_and_validation)
from nascli.data.text import TokenSettings, encode, fitted_tokens
from nascli.errors import require
from nascli.records import Preprocessing
from nascli.registry import register

Arrays = dict[str, np.ndarray]


class MultimodalDataset(Dataset):
    """Named arrays of aligned samples; the base class splits them together and normalises each on its own."""

    val_held_out = True  # whether validation is like any held-out share of training (DataSplits.resampled may redraw it)

    @abstractmethod
    def kinds(self) -> dict[str, str]:
        """Each input's name and kind ("image": (C, H, W) arrays; "tokens": texts), in the order networks take them."""

    @abstractmethod
    def arrays(self) -> tuple[Arrays, np.ndarray, Arrays, np.ndarray]:
        """Each input's samples (a token input's: its texts) and the labels (N,), of the training pool and of
        the test set."""

    def fitted(self, pool: Arrays, test: Arrays, train_rows: np.ndarray) -> tuple[Arrays, Arrays]:
        """The inputs after preprocessing fitted on the training rows of the pool only (none by default)."""
        return pool, test

    def class_names(self) -> list[str]:
        """The name of each class, once `arrays()` has run (none: its index)."""
        return []

    def load(self, device: Optional[torch.device] = None) -> DataSplits:
        """Train / validation / test splits of every input: arrays normalised by the training pool's statistics,
        texts as token ids of a vocabulary built on the training split (saved as each token input's).

        When the arrays together (as float32) exceed the memory budget, each streams from its host array.
        """
        pool, y, test, test_y = self.arrays()
        count = int(max(y.max(), test_y.max()) + 1)
        rows, y, test_rows, test_y = kept_classes(y, test_y, self.settings.classes)
        pool = {name: part[rows] for name, part in pool.items()}
        test = {name: part[test_rows] for name, part in test.items()}
        train, val = train_and_validation(y, self.settings)
        pool, test = self.fitted(pool, test, train)
        kinds = self.kinds()
        arrays = [name for name, kind in kinds.items() if kind != "tokens"]
        stream = 4 * sum(pool[n].size + test[n].size for n in arrays) > memory_budget(self.settings, device)
        parts, vocabularies = {}, {}
        for name, kind in kinds.items():
            if kind == "tokens":
                vocabularies[name], ids = fitted_tokens([str(t) for t in pool[name]], train, self.settings)
                held = encode([str(t) for t in test[name]], vocabularies[name], vocabularies[name]["max_length"])
                parts[name] = (torch.from_numpy(ids[train]), torch.from_numpy(ids[val]), torch.from_numpy(held))
            else:
                parts[name] = splits_of(pool[name], test[name], y, test_y, train, val, stream)[::2]
        inputs = [Modalities({name: parts[name][i] for name in kinds}, kinds) for i in range(3)]
        labels = [torch.from_numpy(np.asarray(a, dtype=np.int64)) for a in (y[train], y[val], test_y)]
        described = Preprocessing("multimodal", self.class_names()).named(count, self.settings.classes)
        return DataSplits(inputs[0], labels[0], inputs[1], labels[1], inputs[2], labels[2],
                          num_classes=int(max(y.max(), test_y.max()) + 1), augmentation=self.settings.augmentation(),
                          vocabulary=vocabularies or None, val_held_out=self.val_held_out, preprocessing=described)


@dataclass
class SyntheticMultimodalSettings(TokenSettings):
    """Generated multimodal data: each input sees only part of the label, so only their fusion sees all of it."""

    num_samples: int = 600  # samples generated in all (test set included), the classes in turn (at least 10 per class)
    num_classes: int = 4  # classes (>= 2); each input shows some bits of the class's binary code
    # {input name: [channels, height, width], or [words] for a text input}; null: {image: [1, 8, 8], audio: [1, 6, 10]}
    shapes: Any = None
    # standard deviation of the Gaussian noise added to an array input's prototypes (text inputs have none)
    noise: float = 0.5
    test_fraction: float = 0.2  # share held out, stratified, as the test set, in (0, 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.shapes = self.shapes or {"image": [1, 8, 8], "audio": [1, 6, 10]}
        require(self.num_classes >= 2, "num_classes must be at least 2")
        require(self.num_samples >= 10 * self.num_classes, "num_samples must be at least 10 per class")
        require(isinstance(self.shapes, dict) and len(self.shapes) >= 2, "shapes must name two or more inputs")
        for name, shape in self.shapes.items():
            require(len(shape) in (1, 3) and min(shape) >= 1, f"shapes.{name} is [channels, height, width] or [words]")
        require(self.noise >= 0, "noise must be >= 0")
        require(0 < self.test_fraction < 1, "test_fraction must be in (0, 1)")


@register("dataset", "multimodal_synthetic")
class SyntheticMultimodal(MultimodalDataset):
    """Inputs named in `shapes`; each shows some bits of the label's binary code, so only all of them show the label.

    An array input is its bits' prototype plus Gaussian noise; a text input is a sentence of random filler words
    and two words that name its bits.
    """

    Settings = SyntheticMultimodalSettings

    def kinds(self) -> dict[str, str]:
        return {name: "tokens" if len(shape) == 1 else "image" for name, shape in self.settings.shapes.items()}

    def arrays(self) -> tuple[Arrays, np.ndarray, Arrays, np.ndarray]:
        s = self.settings
        rng = np.random.default_rng(0)
        labels = np.arange(s.num_samples) % s.num_classes
        bits, count = max(1, (s.num_classes - 1).bit_length()), len(s.shapes)
        parts = {}
        for k, (name, shape) in enumerate(s.shapes.items()):
            shown = range(k, bits, count)  # input k shows bits k, k + count, ... of the label
            seen = sum((((labels >> bit) & 1) << i for i, bit in enumerate(shown)), np.zeros_like(labels))
            if len(shape) == 1:
                parts[name] = np.asarray([_sentence(rng, shape[0], f"{name}{value}") for value in seen], dtype=object)
            else:
                prototypes = rng.normal(size=(2 ** len(shown), *shape)).astype(np.float32)
                parts[name] = prototypes[seen] + s.noise * rng.normal(size=(s.num_samples, *shape)).astype(np.float32)
        order = np.arange(s.num_samples)
        train_rows, train_y, test_rows, test_y = hold_out_test(order, labels, s.test_fraction)
        return ({name: part[train_rows] for name, part in parts.items()}, train_y,
                {name: part[test_rows] for name, part in parts.items()}, test_y)


def _sentence(rng: np.random.Generator, words: int, signal: str) -> str:
    """Two to `words` words: random fillers, and `signal` at two random places (once for a one-word sentence)."""
    filler = [f"filler{k}" for k in rng.integers(0, 50, size=rng.integers(min(2, words), words + 1))]
    for place in rng.choice(len(filler), size=min(2, len(filler)), replace=False):
        filler[place] = signal
    return " ".join(filler)
