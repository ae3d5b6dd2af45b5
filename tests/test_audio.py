"""Audio: recordings in class folders and FSDD become log-mel spectrograms that the image spaces search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from conftest import TINY
from nascli.config import load_config
from test_errors import assert_one_line_error

pytest.importorskip("librosa")

RATE = 8000
QUICK = [o for o in TINY if not o.startswith("dataset")] + ["dataset.seconds=0.5", "dataset.n_mels=16",
                                                             "dataset.workers=1", "dataset.cache_dir=cache"]


def tone(path: Path, frequency: float, seconds: float, seed: int) -> None:
    """A noisy sine tone as a 16-bit WAV."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.5 * np.sin(2 * np.pi * frequency * t) + 0.05 * rng.normal(size=len(t))
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, RATE, (wave * 32767).astype(np.int16))


def write_fsdd(root: Path, digits: int, per_speaker: int, seconds: float) -> Path:
    """A tiny FSDD under `root`: `digits` digits x 2 speakers x `per_speaker` tones, named as FSDD names them."""
    for digit in range(digits):
        for speaker in ("ann", "bob"):
            for index in range(per_speaker):
                tone(root / "recordings" / f"{digit}_{speaker}_{index}.wav", 300 * (digit + 1), seconds, seed=index)
    return root


def test_audio_folder_search_end_to_end_with_a_corrupt_file_skipped(nas, workdir: Path) -> None:
    for c, frequency in enumerate((300, 900, 2000)):
        for i in range(12):
            tone(workdir / "sounds" / f"class{c}" / f"{i}.wav", frequency, 0.3 + 0.05 * (i % 5), seed=i)
    (workdir / "sounds" / "class2" / "broken.wav").write_bytes(b"RIFF not a wave")
    code, _, err = nas("search", "dataset=audio_folder", "dataset.root=sounds", *QUICK, "run_dir=run")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "skipped 1 unreadable recording(s) in sounds (first: class2/broken.wav" in warnings[0]
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_acc"] is not None


def test_fsdd_keeps_the_official_split_and_shapes(workdir: Path) -> None:
    write_fsdd(workdir / "fsdd", 3, 12, 0.4)
    cfg = load_config(["dataset=fsdd", f"dataset.root={workdir / 'fsdd'}", "dataset.workers=1", "dataset.cache_dir=cache"])
    splits = cfg.dataset.cls(cfg.dataset.settings).load()
    assert splits.input_shape == (1, 40, 63)  # 40 mels, 1 s at 8 kHz with a hop of 128 samples
    assert len(splits.test_x) == 3 * 2 * 5  # recordings 0-4 of each digit and speaker
    assert len(splits.train_x) + len(splits.val_x) == 3 * 2 * 7 and splits.num_classes == 3


@pytest.mark.parametrize(
    ("dataset", "make", "message"),
    [
        ("fsdd", lambda root: root.mkdir(), "no FSDD recordings"),
        ("audio_folder", lambda root: (root / "a").mkdir(parents=True), "holds no recordings"),
        ("audio_folder", lambda root: None, "is not a folder"),
    ],
    ids=["fsdd-empty", "folder-empty", "folder-missing"],
)
def test_bad_audio_roots_are_one_line(nas, workdir: Path, dataset: str, make, message: str) -> None:
    make(workdir / "sounds")
    code, _, err = nas("search", f"dataset={dataset}", "dataset.root=sounds", *QUICK, "run_dir=run")
    assert_one_line_error(code, err, message)
