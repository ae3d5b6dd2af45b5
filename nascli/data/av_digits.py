"""Audio-visual digits (after AV-MNIST): MNIST images paired with spoken FSDD recordings of the same digit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
from sklearn.decomposition import PCA

from nascli.data.audio import FSDD, CachedSpectrogramSettings
from nascli.data.base import kept_classes, train_and_validation, training_pool
from nascli.data.files import FileDatasetSettings
from nascli.data.folder import required_root
from nascli.data.mnist import MNIST
from nascli.data.multimodal import Arrays, MultimodalDataset
from nascli.errors import UserError, require
from nascli.registry import register


@dataclass
class AVDigitsSettings(CachedSpectrogramSettings):
    """Where the two datasets are, how much of the images survives, and how images meet recordings."""

    # MNIST training images of each digit (null: all, about 6,000); this default and the 32 x 32 spectrograms keep a
    # fusion trial on 2 CPU cores under a minute; the test set is MNIST's whole
    train_per_class: Optional[int] = 500
    n_mels: int = 32  # mel bands: the spectrogram's height
    hop_length: int = 256  # 32 frames a second at 8 kHz
    image_variance: float = 0.25  # the images keep the principal components that explain this share of variance
    noise_snr_db: Optional[float] = -9.0  # AV-MNIST mixes noise into its audio; null: clean FSDD (about 99% alone)
    pairing_seed: int = 0  # which recording of its digit each image is paired with

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.image_variance <= 1, "image_variance must be in (0, 1]")


def paired(labels: np.ndarray, recording_labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each label, the index of a recording of the same class; each class's recordings are used evenly."""
    missing = sorted(set(labels.tolist()) - set(recording_labels.tolist()))
    if missing:
        raise UserError(f"no recordings of digit(s) {', '.join(map(str, missing))} to pair images with")
    pairs = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        images = np.flatnonzero(labels == label)
        pairs[images] = np.resize(rng.permutation(np.flatnonzero(recording_labels == label)), len(images))
    return pairs


def held_out(labels: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Which recordings (a `share` of each class's, at least one and never all of two or more) are kept for the
    rows outside the training part, so that validation never hears a recording the training saw."""
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) >= 2:
            held[members[: min(len(members) - 1, max(1, round(share * len(members))))]] = True
    return held


def weakened(images: np.ndarray, fit_rows: np.ndarray, variance: float) -> np.ndarray:
    """`images` rebuilt from the principal components (fitted on `fit_rows`) that keep `variance` of the variance."""
    flat = images.reshape(len(images), -1)
    pca = PCA(n_components=variance, svd_solver="full", random_state=0).fit(flat[fit_rows])
    return pca.inverse_transform(pca.transform(flat)).astype(np.float32).reshape(images.shape)


@register("dataset", "av_digits")
class AVDigits(MultimodalDataset):
    """Each MNIST image with an FSDD recording of its digit (train with train, test with test); the images are
    weakened by PCA and the recordings by noise so that neither input alone suffices. `root` holds mnist.npz
    (or mnist/) and FSDD's recordings."""

    Settings = AVDigitsSettings
    val_held_out = False  # validation images hear recordings training never does; a redrawn fold would not

    def _root(self) -> Path:
        return required_root(self.settings.root, "av_digits", "holding mnist.npz (or the MNIST IDX files) and "
                                                               "FSDD's recordings/")

    def _parts(self) -> tuple[MNIST, FSDD]:
        root = self._root()
        images_root = root / "mnist" if (root / "mnist").is_dir() else root
        audio_root = root / "fsdd" if (root / "fsdd").is_dir() else root
        fields = {name: getattr(self.settings, name) for name in CachedSpectrogramSettings.__dataclass_fields__}
        return (MNIST(FileDatasetSettings(root=str(images_root))),
                FSDD(CachedSpectrogramSettings(**{**fields, "root": str(audio_root)})))

    def check(self) -> None:
        for part in self._parts():
            part.check()

    def kinds(self) -> dict[str, str]:
        return {"image": "image", "audio": "image"}

    def arrays(self) -> tuple[Arrays, np.ndarray, Arrays, np.ndarray]:
        """The images, each with a recording of its digit: test images with test recordings; the training part's
        images with most of the training recordings, and the other images of the pool (validation) with the
        rest, so that validation scores recordings the training never heard, as the test does."""
        s = self.settings
        mnist, fsdd = self._parts()
        images, y, test_images, test_y = mnist.arrays()
        # only the images training_pool may draw (it draws them again from these): pairing and weakening others is waste
        used = training_pool(np.asarray(y), replace(s, train_fraction=1.0))
        images, y, test_y = images[used], np.asarray(y)[used], np.asarray(test_y)
        audio, audio_y, test_audio, test_audio_y = fsdd.arrays()
        rows, kept_y, _, _ = kept_classes(y, test_y, s.classes)
        training = np.zeros(len(y), dtype=bool)
        training[rows[train_and_validation(kept_y, s)[0]]] = True  # the rows the base class will train on
        rng = np.random.default_rng(s.pairing_seed)
        held = held_out(audio_y, s.val_fraction, rng)
        pairs = np.empty(len(y), dtype=np.int64)
        for rows_of, recordings in ((training, ~held), (~training, held if held.any() else ~held)):
            pairs[rows_of] = np.flatnonzero(recordings)[paired(y[rows_of], audio_y[recordings], rng)]
        test_pairs = paired(test_y, test_audio_y, rng)
        return ({"image": images, "audio": audio[pairs]}, y,
                {"image": test_images, "audio": test_audio[test_pairs]}, test_y)

    def fitted(self, pool: Arrays, test: Arrays, train_rows: np.ndarray) -> tuple[Arrays, Arrays]:
        if self.settings.image_variance >= 1:
            return pool, test
        both = np.concatenate([pool["image"], test["image"]])
        images = weakened(both, train_rows, self.settings.image_variance)
        return {**pool, "image": images[: len(pool["image"])]}, {**test, "image": images[len(pool["image"]):]}
