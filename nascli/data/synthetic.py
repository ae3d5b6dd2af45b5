"""Generated data: one random prototype image per class plus Gaussian noise."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nascli.data.base import ArrayDataset, DatasetSettings, hold_out_test
from nascli.errors import require
from nascli.registry import register


@dataclass
class SyntheticSettings(DatasetSettings):
    """Size, classes, image shape and noise level of the generated set."""

    num_samples: int = 600  # images generated in all (test set included), the classes in turn (at least 10 per class)
    num_classes: int = 4  # classes, each one random prototype image (>= 2)
    shape: list[int] = field(default_factory=lambda: [1, 8, 8])  # [channels, height, width] of each image
    # standard deviation of the Gaussian noise added to the prototypes (whose pixels are standard normal)
    noise: float = 0.5
    test_fraction: float = 0.2  # share held out, stratified, as the test set, in (0, 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_classes >= 2, "num_classes must be at least 2")
        require(self.num_samples >= 10 * self.num_classes, "num_samples must be at least 10 per class")
        require(len(self.shape) == 3 and min(self.shape) >= 1, "shape is [channels, height, width]")
        require(self.noise >= 0, "noise must be >= 0")
        require(0 < self.test_fraction < 1, "test_fraction must be in (0, 1)")


@register("dataset", "synthetic")
class Synthetic(ArrayDataset):
    """A learnable, instant dataset for tests and smoke runs."""

    Settings = SyntheticSettings

    def arrays(self) -> tuple[np.ndarray, ...]:
        s = self.settings
        rng = np.random.default_rng(0)
        prototypes = rng.normal(size=(s.num_classes, *s.shape)).astype(np.float32)
        labels = np.arange(s.num_samples) % s.num_classes
        images = prototypes[labels] + s.noise * rng.normal(size=(s.num_samples, *s.shape)).astype(np.float32)
        return hold_out_test(images, labels, s.test_fraction)
