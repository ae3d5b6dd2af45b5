"""scikit-learn's 8x8 handwritten digits: the offline default."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits

from nascli.data.base import ArrayDataset, DatasetSettings, hold_out_test
from nascli.errors import require
from nascli.records import Preprocessing
from nascli.registry import register


@dataclass
class DigitsSettings(DatasetSettings):
    """Digits has no official test set: `test_fraction` of it is held out as one."""

    test_fraction: float = 0.2  # share of the images held out, stratified, as the test set, in (0, 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.test_fraction < 1, "test_fraction must be in (0, 1)")


@register("dataset", "digits")
class Digits(ArrayDataset):
    """1,797 grey 8x8 digit images in 10 classes."""

    Settings = DigitsSettings

    def arrays(self) -> tuple[np.ndarray, ...]:
        digits = load_digits()
        images = digits.images.reshape(-1, 1, 8, 8).astype(np.float32) / 16.0
        return hold_out_test(images, digits.target, self.settings.test_fraction)

    def preprocessing(self) -> Preprocessing:
        """Grey 8 x 8 images in [0, 1]: an image file's 0-255 pixels scaled to the same range."""
        return Preprocessing("image", image_size=8, channels=1, pixel_divisor=255.0)
