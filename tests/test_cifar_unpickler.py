"""CIFAR-10 batches are read by an unpickler that refuses every global a genuine batch does not need."""

from __future__ import annotations

import builtins
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nascli.data.cifar10 import CIFAR10, TRAIN_BATCHES
from nascli.data.files import FileDatasetSettings
from nascli.errors import UserError

ROWS = 4  # images per batch


def genuine_batch(index: int) -> dict[bytes, Any]:
    """A batch shaped like the real ones: uint8 rows of 3072 pixels, int labels, a label and file names as bytes."""
    rng = np.random.default_rng(index)
    return {
        b"batch_label": f"training batch {index} of 5".encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, ROWS)],
        b"data": rng.integers(0, 256, (ROWS, 3072), dtype=np.uint8),
        b"filenames": [f"image_{index}_{i}.png".encode() for i in range(ROWS)],
    }


def write_folder(root: Path, dump: Callable[[dict[bytes, Any]], bytes]) -> list[dict[bytes, Any]]:
    """Write the six batches under root/cifar-10-batches-py; returns them in the order of TRAIN_BATCHES + test."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    batches = []
    for index, name in enumerate((*TRAIN_BATCHES, "test_batch"), start=1):
        batch = genuine_batch(index)
        (folder / name).write_bytes(dump(batch))
        batches.append(batch)
    return batches


def numpy1_protocol2(batch: dict[bytes, Any]) -> bytes:
    """Protocol 2 naming numpy.core.multiarray, as the original batches (and numpy < 2) do."""
    data = pickle.dumps(batch, protocol=2)
    return data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


@pytest.mark.parametrize(
    "dump",
    [lambda b: pickle.dumps(b, protocol=2), numpy1_protocol2, lambda b: pickle.dumps(b, protocol=5)],
    ids=["protocol2", "protocol2-numpy1-names", "protocol5"],
)
def test_genuine_batches_load(tmp_path: Path, dump: Callable[[dict[bytes, Any]], bytes]) -> None:
    batches = write_folder(tmp_path, dump)
    train_x, train_y, test_x, test_y = CIFAR10(FileDatasetSettings(root=str(tmp_path))).arrays()
    assert train_x.shape == (5 * ROWS, 3, 32, 32) and train_x.dtype == np.float32
    assert train_y.shape == (5 * ROWS,) and test_x.shape == (ROWS, 3, 32, 32) and test_y.shape == (ROWS,)
    expected = np.concatenate([b[b"data"] for b in batches[:5]]).reshape(-1, 3, 32, 32) / np.float32(255)
    np.testing.assert_array_equal(train_x, expected)
    assert train_y.tolist() == sum((b[b"labels"] for b in batches[:5]), [])
    assert test_y.tolist() == batches[5][b"labels"]


class Evil:
    """Unpickling it calls `call(argument)`."""

    def __init__(self, call: Callable[[str], Any], argument: str) -> None:
        self.call, self.argument = call, argument

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return self.call, (self.argument,)


def payloads(marker: Path) -> dict[str, Any]:
    """Malicious objects that would create `marker` if unpickled by pickle.load."""
    shell = Evil(os.system, f"touch {marker}")
    python = Evil(builtins.exec, f"open({str(marker)!r}, 'w').close()")
    return {
        "os.system": shell,
        "builtins.exec": python,
        "in-labels": {**genuine_batch(3), b"labels": [1, shell, 2]},
        "in-object-array": {**genuine_batch(3), b"data": np.array([python], dtype=object)},
    }


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("payload", ["os.system", "builtins.exec", "in-labels", "in-object-array"])
def test_malicious_batch_is_refused_without_running(tmp_path: Path, payload: str, protocol: int) -> None:
    marker = tmp_path / "MARKER"
    write_folder(tmp_path, lambda b: pickle.dumps(b, protocol=protocol))
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(pickle.dumps(payloads(marker)[payload], protocol=protocol))
    with pytest.raises(UserError, match=r"data_batch_3: refused forbidden global .*the CIFAR-10 batch is corrupt"):
        CIFAR10(FileDatasetSettings(root=str(tmp_path))).arrays()
    assert not marker.exists()


def test_truncated_batch_is_a_user_error(tmp_path: Path) -> None:
    write_folder(tmp_path, lambda b: pickle.dumps(b, protocol=2))
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(UserError, match="test_batch: .*the CIFAR-10 batch is corrupt"):
        CIFAR10(FileDatasetSettings(root=str(tmp_path))).arrays()
