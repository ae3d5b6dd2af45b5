"""CIFAR-10 from its Python pickle batches."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from nascli.data.files import FileDataset
from nascli.errors import UserError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


class CIFAR10(FileDataset):
    """60,000 colour 32x32 images in 10 classes."""

    title = "CIFAR-10"
    files = (*TRAIN_BATCHES, "test_batch")
    subdir = "cifar-10-batches-py"
    install_hint = (
        "put the extracted cifar-10-batches-py folder under a folder and pass dataset.root=FOLDER, "
        "or `pip install torchvision` to download it"
    )

    def _download(self, root: Path) -> None:
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)

    def arrays(self) -> tuple[np.ndarray, ...]:
        folder = self.locate()

        def load(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
            images, labels = [], []
            for name in names:
                try:
                    with open(folder / name, "rb") as f:
                        batch = pickle.load(f, encoding="bytes")
                    images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                    labels.append(np.asarray(batch[b"labels"]))
                except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
                    raise UserError(f"cannot read {folder / name}: {exc}; the CIFAR-10 batch is corrupt") from None
            return np.concatenate(images).astype(np.float32) / 255.0, np.concatenate(labels)

        return (*load(TRAIN_BATCHES), *load(("test_batch",)))
