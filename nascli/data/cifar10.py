"""CIFAR-10 from its Python pickle batches, or from an image-folder copy (train/ and test/ class folders)."""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path
from typing import Any, Optional

import numpy as np

from nascli.data.files import FileDataset
from nascli.data.folder import FolderSettings, folder_arrays, is_split_folder
from nascli.errors import UserError
from nascli.records import Preprocessing
from nascli.registry import register

try:
    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct, scalar
    from numpy.core.numeric import _frombuffer

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

# The only globals a batch may name. Genuine batches (Python 2, protocol 2) need the array three; protocol 5
# writes arrays with _frombuffer, Python 3 writes bytes under protocols < 3 as _codecs.encode (or bytes()
# when empty), and labels written as numpy integers need scalar. numpy 2 renamed numpy.core to numpy._core.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **{(f"{core}.multiarray", "_reconstruct"): _reconstruct for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.multiarray", "scalar"): scalar for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): _frombuffer for core in ("numpy.core", "numpy._core")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    ("__builtin__", "bytes"): bytes,
    ("builtins", "bytes"): bytes,
}

# What an unreadable, truncated or malformed batch raises.
_UNREADABLE = (OSError, EOFError, pickle.UnpicklingError, AttributeError, KeyError, TypeError, ValueError)


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `_ALLOWED_GLOBALS`, so that a batch cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[module, name]
        except KeyError:
            message = f"refused forbidden global {module}.{name}, which no CIFAR-10 batch needs"
            raise pickle.UnpicklingError(message) from None


@register("dataset", "cifar10")
class CIFAR10(FileDataset):
    """60,000 colour 32x32 images in 10 classes."""

    title = "CIFAR-10"
    files = (*TRAIN_BATCHES, "test_batch")
    subdir = "cifar-10-batches-py"
    install_hint = (
        "put the extracted cifar-10-batches-py folder, or an image folder with train/ and test/ class folders, "
        "under a folder and pass dataset.root=FOLDER, or `pip install 'nascli[vision]'` to download it"
    )
    _decoded = Preprocessing("image", CLASSES, image_size=32, channels=3, pixel_divisor=255.0)  # the batches' pixels

    def alternative(self) -> Optional[Path]:
        return next((p for p in self._under_root("cifar10") if is_split_folder(p)), None)

    def _download(self, root: Path) -> None:
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)

    def arrays(self) -> tuple[np.ndarray, ...]:
        images = self.alternative()
        if images is not None:
            arrays, self._decoded = folder_arrays(FolderSettings(image_size=32, channels=3), images)
            return arrays
        folder = self.locate()

        def load(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
            images, labels = [], []
            for name in names:
                try:
                    with open(folder / name, "rb") as f:
                        batch = _BatchUnpickler(f, encoding="bytes").load()
                    images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                    labels.append(np.asarray(batch[b"labels"]))
                except _UNREADABLE as exc:
                    raise UserError(f"cannot read {folder / name}: {exc}; the CIFAR-10 batch is corrupt") from None
            return np.concatenate(images).astype(np.float32) / 255.0, np.concatenate(labels)

        return (*load(TRAIN_BATCHES), *load(("test_batch",)))

    def preprocessing(self) -> Preprocessing:
        return self._decoded
