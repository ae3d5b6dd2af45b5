"""Your multimodal data: a CSV/TSV with one row per sample, a file path per image or recording, texts, a label."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from nascli.data.audio import SpectrogramSettings, require_librosa, spectrograms
from nascli.data.base import stratified_split
from nascli.data.folder import chunked, decode_images, probe_images
from nascli.data.multimodal import Arrays, MultimodalDataset
from nascli.data.text import TokenSettings, read_table
from nascli.errors import UserError, require, warn
from nascli.registry import register

INPUT_KINDS = {"image": "image", "audio": "image", "text": "tokens"}  # a column's kind -> what networks take


@dataclass
class MultimodalTableSettings(SpectrogramSettings, TokenSettings):
    """The table(s), which columns are inputs (and of what kind), and how images, recordings and texts are read."""

    train: Optional[str] = None  # CSV/TSV: a row per sample; paths are relative to the file's folder
    test: Optional[str] = None  # null: a stratified test_fraction of train is held out
    inputs: Any = None  # {column: image | audio | text}: columns of file paths (images, recordings) or of texts
    # the table's column holding each sample's class (any values; sorted, they become class indices)
    label_column: str = "label"
    test_fraction: float = 0.2  # with no dataset.test: share of train held out, stratified, as the test set, in (0, 1)
    image_size: int = 32  # images are resized to image_size x image_size
    channels: Optional[int] = None  # 1, 3 or 4; null: the channels of the first readable image (3 if none)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.inputs is None or (isinstance(self.inputs, dict) and len(self.inputs) >= 1),
                "inputs must map the table's input columns to their kind, e.g. {photo: image, clip: audio, caption: text}")
        for column, kind in (self.inputs or {}).items():
            require(str(column).isidentifier(), f"input column {column!r} must be an identifier")
            require(kind in INPUT_KINDS, f"input {column} is {kind!r}; kinds: {', '.join(INPUT_KINDS)}")
        require(0 < self.test_fraction < 1, "test_fraction must be in (0, 1)")
        require(self.image_size >= 4, "image_size must be at least 4")
        require(self.channels in (None, 1, 3, 4), "channels must be 1, 3 or 4 (or null)")


@register("dataset", "multimodal")
class MultimodalTable(MultimodalDataset):
    """Samples listed in a table: each input column names a file (an image or a recording) or holds a text per row."""

    Settings = MultimodalTableSettings

    def class_names(self) -> list[str]:
        return self._classes

    def kinds(self) -> dict[str, str]:  # recordings: 1 x mels x frames images
        return {column: INPUT_KINDS[kind] for column, kind in (self.settings.inputs or {}).items()}

    def _file(self, name: Optional[str], what: str) -> Path:
        if name is None:
            raise UserError(f"dataset.{what} is required: a CSV/TSV with a file column per input and a label column")
        path = Path(name).expanduser()
        if not path.is_file():
            raise UserError(f"dataset.{what} {path} does not exist")
        return path

    def check(self) -> None:
        if not self.settings.inputs:
            raise UserError("dataset.inputs is required: the table's input columns and their kind, "
                            "e.g. dataset.inputs='{photo: image, clip: audio, caption: text}'")
        if "audio" in self.settings.inputs.values():
            require_librosa()
        self._file(self.settings.train, "train")
        if self.settings.test is not None:
            self._file(self.settings.test, "test")

    def _read(self, path: Path) -> pd.DataFrame:
        table = read_table(path, {self.settings.label_column, *self.settings.inputs},
                           "set dataset.inputs / dataset.label_column")
        return table.assign(_folder=str(path.parent))

    def _inputs(self, table: pd.DataFrame, where: str) -> tuple[Arrays, np.ndarray]:
        """Each input column's files decoded (its texts as they are), and which rows every input could be read for."""
        s = self.settings
        arrays, readable = {}, np.ones(len(table), dtype=bool)
        for column, kind in s.inputs.items():
            if kind == "text":
                arrays[column] = table[column].astype(str).to_numpy(dtype=object)
                continue
            paths = [Path(folder) / name for folder, name in zip(table["_folder"], table[column].astype(str))]
            if kind == "audio":
                features, keep = spectrograms(paths, s, Path(where))
                full = np.zeros((len(paths), *features.shape[1:]), dtype=features.dtype)
                full[keep] = features
            else:
                full, keep = self._images(paths)
            arrays[column], readable = full, readable & keep
        return arrays, readable

    def _images(self, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        s = self.settings
        channels = s.channels or next((shape[2] for shape in probe_images(paths[:50]) if shape), 3)
        chunks = chunked(paths)
        with ProcessPoolExecutor(s.workers or os.cpu_count() or 1) as pool:
            results = list(pool.map(decode_images, chunks, [s.image_size] * len(chunks), [channels] * len(chunks)))
        errors = [e for r in results for e in r[1]]
        return np.concatenate([r[0] for r in results]), np.asarray([e is None for e in errors])

    def arrays(self) -> tuple[Arrays, np.ndarray, Arrays, np.ndarray]:
        s = self.settings
        train = self._read(self._file(s.train, "train"))
        if s.test is not None:
            test = self._read(self._file(s.test, "test"))
        else:
            codes = pd.factorize(train[s.label_column])[0]
            kept, held = stratified_split(np.arange(len(train)), fraction=s.test_fraction, what="test", y=codes)
            train, test = train.iloc[np.sort(kept)], train.iloc[np.sort(held)]
        classes = sorted(set(train[s.label_column].astype(str)) | set(test[s.label_column].astype(str)))
        if len(classes) < 2:
            raise UserError(f"{s.train} has one class ({classes[0]}); classification needs two or more")
        index, self._classes = {name: i for i, name in enumerate(classes)}, classes
        (pool, pool_ok), (held_out, test_ok) = self._inputs(train, s.train), self._inputs(test, s.test or s.train)
        dropped = int((~pool_ok).sum() + (~test_ok).sum())
        if dropped:
            warn(f"skipped {dropped} sample(s) with an input that cannot be read")
        if not pool_ok.any() or not test_ok.any():
            raise UserError("no sample of the training or the test split has every input readable")

        def labels(table: pd.DataFrame, ok: np.ndarray) -> np.ndarray:
            return np.asarray([index[v] for v in table[s.label_column].astype(str)])[ok]

        return ({k: v[pool_ok] for k, v in pool.items()}, labels(train, pool_ok),
                {k: v[test_ok] for k, v in held_out.items()}, labels(test, test_ok))
