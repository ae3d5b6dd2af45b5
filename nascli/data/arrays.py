"""Arrays you made: an .npz file with x_train, y_train and optionally x_test, y_test (images or feature vectors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from numpy.lib.npyio import NpzFile

from nascli.data.base import ArrayDataset, DatasetSettings, hold_out_test
from nascli.errors import UserError, first_line, require
from nascli.records import Preprocessing
from nascli.registry import register

CHANNEL_COUNTS = (1, 3, 4)


def read_npz(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file, read without unpickling; a file that cannot be read is a UserError naming it."""
    member = ""  # the array being read, to name in an error
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, NpzFile):
            raise UserError(f"{path} holds one array; an .npz of named arrays ({', '.join(keys)}) is expected")
        with loaded as data:
            missing = [key for key in keys if key not in data.files]
            if missing:
                raise UserError(f"{path} lacks the array(s) {', '.join(missing)} (it holds {', '.join(data.files)})")
            arrays = {}
            for member in (key for key in (*keys, *optional) if key in data.files):
                arrays[member] = data[member]
            return arrays
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except Exception as exc:  # numpy's parsers raise many kinds (ValueError, TokenError, SyntaxError, ...) on a bad file
        where = f"array {member} of {path}" if member else str(path)
        raise UserError(f"cannot read {where}: {first_line(exc)} (an .npz of plain arrays is expected)") from None


def as_images(x: np.ndarray, name: str) -> np.ndarray:
    """Samples as (N, C, H, W): images NCHW, NHWC or NHW, or feature vectors (N, D) as D channels of 1x1."""
    if x.ndim == 2:
        return x[:, :, None, None]
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in CHANNEL_COUNTS and x.shape[1] not in CHANNEL_COUNTS:
            return x.transpose(0, 3, 1, 2)
        return x
    raise UserError(f"{name} has shape {x.shape}; expected (N, D) features or (N, H, W[, C]) / (N, C, H, W) images")


def samples(x: np.ndarray, x_name: str) -> np.ndarray:
    """Samples of real finite numbers as (N, C, H, W), as `as_images` makes them; others are a UserError."""
    if np.issubdtype(x.dtype, np.complexfloating):
        raise UserError(f"{x_name} holds complex numbers (dtype {x.dtype}); give real ones, e.g. the real and "
                        "imaginary parts (or magnitude and phase) as separate channels")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise UserError(f"{x_name} must hold finite numbers (dtype {x.dtype})")
    return as_images(x, x_name)


def labelled(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Samples and labels checked against each other: one label per sample, real finite numbers, no NaN label."""
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{x_name} has {len(x)} samples but {y_name} has shape {y.shape}; one label per sample is needed")
    x = samples(x, x_name)
    unlabelled = int(np.isnan(y).sum()) if np.issubdtype(y.dtype, np.floating) else 0
    if unlabelled:
        raise UserError(f"{unlabelled} of the {len(y)} labels in {y_name} are NaN; label those samples or drop them")
    return x, y


def unlabelled_samples(path: Path) -> np.ndarray:
    """The samples (N, C, H, W) of a .npy file, or of an .npz's array x (else x_test, else its only one), read
    without unpickling; a file that holds none is a UserError naming it."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, NpzFile):
            return samples(loaded, str(path))
        with loaded as data:
            only = data.files[0] if len(data.files) == 1 else None
            name = next((n for n in ("x", "x_test") if n in data.files), only)
            if name is None:
                raise UserError(f"{path} holds the arrays {', '.join(data.files) or 'none'}; name the samples x")
            x = data[name]
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except Exception as exc:  # numpy's parsers raise many kinds (ValueError, EOFError, ...) on a bad file
        raise UserError(f"cannot read {path}: {first_line(exc)} (a .npy or .npz of numbers is expected)") from None
    return samples(x, f"{path} {name}")


@dataclass
class ArraySettings(DatasetSettings):
    """The .npz file; without x_test/y_test, `test_fraction` of the samples is held out (stratified) as the test set."""

    path: Optional[str] = None  # the .npz file with x_train, y_train and optionally x_test, y_test; required
    # without x_test/y_test: share of the samples held out, stratified, as the test set, in (0, 1)
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.path is not None, "dataset.path is required: an .npz with x_train, y_train[, x_test, y_test]")
        require(0 < self.test_fraction < 1, "test_fraction must be in (0, 1)")


@register("dataset", "arrays")
class Arrays(ArrayDataset):
    """Your arrays: images (NCHW, NHWC or NHW) or feature vectors, with integer or string labels."""

    Settings = ArraySettings

    def check(self) -> None:
        if not Path(self.settings.path).expanduser().is_file():
            raise UserError(f"dataset.path {self.settings.path} is not a file")

    def arrays(self) -> tuple[np.ndarray, ...]:
        path = Path(self.settings.path).expanduser()
        data = read_npz(path, ("x_train", "y_train"), ("x_test", "y_test"))
        if ("x_test" in data) != ("y_test" in data):
            raise UserError(f"{path} has only one of x_test and y_test; give both or neither")
        x, y = labelled(data["x_train"], data["y_train"], "x_train", "y_train")
        if "x_test" not in data:
            self._classes, y = np.unique(y, return_inverse=True)
            return hold_out_test(x, y, self.settings.test_fraction)
        test_x, test_y = labelled(data["x_test"], data["y_test"], "x_test", "y_test")
        if test_x.shape[1:] != x.shape[1:]:
            raise UserError(f"x_test samples have shape {test_x.shape[1:]} but x_train samples {x.shape[1:]}")
        self._classes, codes = np.unique(np.concatenate([y, test_y]), return_inverse=True)
        return x, codes[: len(y)], test_x, codes[len(y) :]

    def preprocessing(self) -> Preprocessing:
        """Samples taken as they are; each class named by its label."""
        return Preprocessing("arrays", [str(label) for label in self._classes])
