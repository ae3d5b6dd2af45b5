"""MNIST and Fashion-MNIST from their IDX files."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Optional

import numpy as np

from nascli.data.arrays import labelled, read_npz
from nascli.data.files import FileDataset
from nascli.errors import UserError
from nascli.records import Preprocessing
from nascli.registry import register

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """An array from an IDX file (optionally gzipped), the format of MNIST-like datasets."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype_code, ndim = data[0] * 256 + data[1], data[2], data[3]
        if zero != 0 or dtype_code not in IDX_DTYPES:
            raise ValueError("bad magic number")
        shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
        return np.frombuffer(data, dtype=IDX_DTYPES[dtype_code], offset=4 + 4 * ndim).reshape(shape)
    except (OSError, ValueError, IndexError, EOFError) as exc:
        raise UserError(f"cannot read {path}: {exc}; the file is corrupt or not an IDX file") from None


class _IdxDataset(FileDataset):
    files = IDX_FILES
    torchvision_class = ""
    npz_name = ""  # the same data as one .npz of x_train, y_train, x_test, y_test (as Keras ships it)
    classes: list[str] = []  # the name of each class; none: its index
    _divisor: Optional[float] = 255.0  # what the pixels read were divided by (IDX files: 255; an .npz's: none)

    def alternative(self) -> Optional[Path]:
        return next((p for p in self._under_root(self.npz_name) if p.is_file() and p.suffix == ".npz"), None)

    def _download(self, root: Path) -> None:
        import torchvision

        getattr(torchvision.datasets, self.torchvision_class)(str(root), train=True, download=True)
        getattr(torchvision.datasets, self.torchvision_class)(str(root), train=False, download=True)

    def arrays(self) -> tuple[np.ndarray, ...]:
        npz = self.alternative()
        self._divisor = None if npz is not None else 255.0
        if npz is not None:
            data = read_npz(npz, ("x_train", "y_train", "x_test", "y_test"))
            return (*labelled(data["x_train"], data["y_train"], "x_train", "y_train"),
                    *labelled(data["x_test"], data["y_test"], "x_test", "y_test"))
        folder = self.locate()

        def load(name: str) -> np.ndarray:
            path = folder / name
            return read_idx(path if path.exists() else folder / f"{name}.gz")

        train_x, train_y, test_x, test_y = (load(name) for name in IDX_FILES)
        return train_x[:, None].astype(np.float32) / 255.0, train_y, test_x[:, None].astype(np.float32) / 255.0, test_y

    def preprocessing(self) -> Preprocessing:
        """Grey 28 x 28 images; an .npz's pixels are taken as they are (Keras ships 0-255), the IDX files' scaled."""
        return Preprocessing("image", self.classes, image_size=28, channels=1, pixel_divisor=self._divisor)


@register("dataset", "fashion_mnist")
class FashionMNIST(_IdxDataset):
    """Zalando's Fashion-MNIST: 70,000 grey 28x28 images of clothing in 10 classes."""

    title = "Fashion-MNIST"
    subdir = "FashionMNIST/raw"
    system_dir = "/usr/share/datasets/fashion-mnist"
    torchvision_class = "FashionMNIST"
    npz_name = "fashion-mnist.npz"
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    install_hint = (
        "install it with `apt-get install dataset-fashion-mnist`, put the four IDX files in a folder "
        "and pass dataset.root=FOLDER, or `pip install 'nascli[vision]'` to download it"
    )


@register("dataset", "mnist")
class MNIST(_IdxDataset):
    """LeCun's MNIST: 70,000 grey 28x28 handwritten digits in 10 classes."""

    title = "MNIST"
    subdir = "MNIST/raw"
    system_dir = "/usr/share/datasets/mnist"
    torchvision_class = "MNIST"
    npz_name = "mnist.npz"
    install_hint = "put the four IDX files in a folder and pass dataset.root=FOLDER, or `pip install 'nascli[vision]'` to download it"
