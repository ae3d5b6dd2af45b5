"""Sentences with labels (CSV/TSV) as padded token ids; the vocabulary is built on the training split only."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch
from sklearn.feature_extraction.text import CountVectorizer

from nascli.data.base import (UNKNOWN_ID, Augmentation, Dataset, DatasetSettings, DataSplits, kept_classes,
                              stratified_split, train_and_validation, training_pool)
from nascli.errors import UserError, require
from nascli.records import Preprocessing
from nascli.registry import register

PAD, UNKNOWN = "<pad>", "<unk>"  # ids 0 and 1
TOKEN_PATTERN = r"(?u)\b\w+\b|[^\w\s]"  # words, and each punctuation mark as a token


@dataclass
class TokenSettings(DatasetSettings):
    """How texts become token ids: the vocabulary's minimum frequency, the kept length, lowercasing."""

    min_freq: int = 1  # tokens in fewer training texts are unknown
    max_length: int = 64  # tokens kept per text; shorter ones are padded
    lowercase: bool = True  # lowercase texts before splitting them into tokens
    word_dropout: float = 0.1  # training words made unknown at random, so that the unknown token learns what they mean

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.min_freq >= 1, "min_freq must be at least 1")
        require(self.max_length >= 1, "max_length must be at least 1")
        require(0 <= self.word_dropout < 1, "word_dropout must be in [0, 1)")

    def augmentation(self) -> Augmentation:
        return Augmentation(self.crop_padding, self.hflip, self.word_dropout)


@dataclass
class TextSettings(TokenSettings):
    """The files and columns of labelled sentences."""

    root: Optional[str] = None  # a folder the file names are relative to (built-in sets: the one holding them)
    train: Optional[str] = None  # CSV or TSV with a text and a label column
    test: Optional[str] = None  # null: the `fold` column's test_fold, else test_fraction held out
    val: Optional[str] = None  # a file of validation sentences (e.g. a dev set); null: val_fraction of train held out
    text_column: str = "text"  # the files' column holding each sentence
    # the files' column holding each sentence's class (any values; sorted, they become class indices)
    label_column: str = "label"
    # with no dataset.test: when train has this column, its rows in fold test_fold are the test set
    fold_column: str = "fold"
    test_fold: int = 0  # the fold_column value that marks the test rows
    # with no dataset.test and no fold_column in train: share of train held out, stratified, as the test set, in (0, 1)
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.test_fraction < 1, "test_fraction must be in (0, 1)")


def tokenizer(vocabulary: dict[str, Any]) -> Any:
    """The function that splits a sentence into tokens, as scikit-learn's CountVectorizer does for this vocabulary."""
    return CountVectorizer(lowercase=vocabulary["lowercase"], token_pattern=vocabulary["token_pattern"]).build_analyzer()


def vocabulary_tokens(sentences: list[list[str]], min_freq: int) -> list[str]:
    """The vocabulary of tokenised sentences: tokens in at least min_freq of them, most frequent first."""
    counts = Counter(token for tokens in sentences for token in set(tokens))
    kept = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
    return [PAD, UNKNOWN, *kept]


def token_ids(sentences: list[list[str]], vocabulary: dict[str, Any], length: int) -> np.ndarray:
    """Ids (N, length) of tokenised sentences: unknown tokens are 1, the rest is padded with 0 or cut."""
    ids = {token: i for i, token in enumerate(vocabulary["tokens"])}
    out = np.zeros((len(sentences), length), dtype=np.int64)
    for row, tokens in enumerate(sentences):
        row_ids = [ids.get(token, UNKNOWN_ID) for token in tokens][:length]
        out[row, : len(row_ids)] = row_ids
    return out


def encode(sentences: list[str], vocabulary: dict[str, Any], length: int) -> np.ndarray:
    """Token ids (N, length) of raw sentences, as the saved tokenizer (vocabulary.json) makes them."""
    split = tokenizer(vocabulary)
    return token_ids([split(sentence) for sentence in sentences], vocabulary, length)


def fitted_tokens(texts: list[str], fit: np.ndarray, settings: TokenSettings) -> tuple[dict[str, Any], np.ndarray]:
    """The vocabulary and length fitted on the texts of rows `fit` only, and every text's token ids (N, length)."""
    vocabulary: dict[str, Any] = {"lowercase": settings.lowercase, "token_pattern": TOKEN_PATTERN}
    split = tokenizer(vocabulary)
    sentences = [split(text) for text in texts]
    fitted = [sentences[i] for i in fit]  # other rows shape neither the vocabulary nor the length
    vocabulary.update(tokens=vocabulary_tokens(fitted, settings.min_freq),
                      max_length=min(settings.max_length, max(1, *map(len, fitted))))
    return vocabulary, token_ids(sentences, vocabulary, vocabulary["max_length"])


def read_table(path: Path, columns: set[str], hint: str) -> pd.DataFrame:
    """The rows of a CSV (or, by suffix, TSV) file that has `columns`; otherwise a UserError ending in `hint`."""
    try:
        table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    missing = columns - set(table.columns)
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(sorted(missing))} (it has {', '.join(table.columns)}); "
                        + hint)
    if table.empty:
        raise UserError(f"{path} holds no rows")
    return table


class TextDataset(Dataset):
    """Labelled sentences from CSV/TSV files; subclasses name the files of a built-in set."""

    Settings = TextSettings
    folder: str = ""  # a built-in set's folder under root

    def _file(self, name: Optional[str], what: str) -> Optional[Path]:
        if name is None:
            return None
        root = Path(self.settings.root).expanduser() if self.settings.root else None
        candidates = [root / name, root / self.folder / name, root / "text-classification" / self.folder / name] \
            if root else [Path(name).expanduser()]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise UserError(f"dataset.{what} {name} not found (looked for {', '.join(map(str, candidates))})")
        return found

    def check(self) -> None:
        if self.settings.train is None:
            raise UserError("dataset.train is required: a CSV/TSV with text and label columns")
        self._file(self.settings.train, "train")
        self._file(self.settings.test, "test")
        self._file(self.settings.val, "val")

    def _read(self, path: Path) -> pd.DataFrame:
        return read_table(path, {self.settings.text_column, self.settings.label_column},
                          "set dataset.text_column / dataset.label_column")

    def _tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        self.check()
        s = self.settings
        train = self._read(self._file(s.train, "train"))
        if s.test is not None:
            return train, self._read(self._file(s.test, "test"))
        if s.fold_column in train.columns:
            test = train[train[s.fold_column] == s.test_fold]
            if test.empty:
                raise UserError(f"no rows of {s.train} are in fold {s.test_fold} (dataset.test_fold)")
            return train[train[s.fold_column] != s.test_fold], test
        codes = pd.factorize(train[s.label_column])[0]
        kept, held = stratified_split(np.arange(len(train)), fraction=s.test_fraction, what="test", y=codes)
        return train.iloc[np.sort(kept)], train.iloc[np.sort(held)]

    def load(self, device: Optional[torch.device] = None) -> DataSplits:
        """Token ids of every split, with the vocabulary of the training part (validation and test never seen).

        The validation sentences are dataset.val's, or a stratified val_fraction of the training ones.
        """
        s = self.settings
        train, test = self._tables()
        trained = len(train)  # rows after these in the pool are dataset.val's
        if s.val is not None:
            train = pd.concat([train, self._read(self._file(s.val, "val"))], ignore_index=True)
        classes, labels = np.unique(np.concatenate([train[s.label_column].astype(str), test[s.label_column].astype(str)]),
                                    return_inverse=True)
        if len(classes) < 2:
            raise UserError(f"{s.train} holds one class; a classifier needs two or more")
        y, test_y = labels[: len(train)], labels[len(train) :]
        rows, y, test_rows, test_y = kept_classes(y, test_y, s.classes)
        train, test = train.iloc[rows], test.iloc[test_rows]
        classes = classes if s.classes is None else classes[s.classes]
        if s.val is None:
            fit, val = train_and_validation(y, s)
        else:
            own, val = np.flatnonzero(rows < trained), np.flatnonzero(rows >= trained)
            fit = own[training_pool(y[own], s)]
        vocabulary, x = fitted_tokens(train[s.text_column].astype(str).tolist(), fit, s)
        vocabulary["classes"] = classes.tolist()
        x = torch.from_numpy(x)
        test_x = torch.from_numpy(encode(test[s.text_column].astype(str).tolist(), vocabulary, vocabulary["max_length"]))

        def labels_of(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.asarray(a, dtype=np.int64))

        return DataSplits(x[fit], labels_of(y[fit]), x[val], labels_of(y[val]), test_x, labels_of(test_y),
                          num_classes=len(classes), augmentation=s.augmentation(), vocabulary=vocabulary,
                          val_held_out=s.val is None,
                          preprocessing=Preprocessing("text", vocabulary["classes"], vocabulary=vocabulary))


@register("dataset", "text")
class Text(TextDataset):
    """Your sentences: dataset.train=FILE.csv [dataset.test=FILE.csv], columns text and label."""


@register("dataset", "trec")
class TREC(TextDataset):
    """TREC question classification (6 classes), official train/test."""

    folder = "trec"


@register("dataset", "sst2")
class SST2(TextDataset):
    """Stanford Sentiment Treebank, binary: labelled phrases for training, dev and test sentences (official)."""

    folder = "sst2"


@register("dataset", "mr")
class MR(TextDataset):
    """Movie-review polarity (Pang & Lee 2005): 10 folds in a `fold` column; fold dataset.test_fold is the test set."""

    folder = "mr"
