"""Recordings as log-mel spectrograms (librosa), searched with the image spaces as 1 x mels x frames inputs."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from nascli.data.base import ArrayDataset, DatasetSettings
from nascli.data.folder import list_folder, official_or_held_out, required_root
from nascli.errors import UserError, first_line, require, require_extra, warn
from nascli.registry import register

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
FSDD_TEST_INDICES = range(5)  # the official split: recordings 0-4 of each digit and speaker are the test set
CHUNK = 64
AUDIO_MAGIC = {".wav": (b"RIFF", b"RIFX", b"RF64"), ".flac": (b"fLaC", b"ID3"), ".ogg": (b"OggS",)}  # how files begin


@dataclass
class SpectrogramSettings(DatasetSettings):
    """How recordings become fixed-size log-mel spectrograms."""

    # the data folder (required): audio_folder: root/<class>/*.wav or root/{train,test}/<class>/*.wav;
    # fsdd: holding recordings/; av_digits: holding mnist.npz (or mnist/) and FSDD's recordings; unused by multimodal
    root: Optional[str] = None
    sample_rate: int = 8000  # recordings are resampled to this rate
    seconds: float = 1.0  # clips are padded with silence or trimmed to this length
    n_mels: int = 40  # mel bands: the spectrogram's height
    n_fft: int = 256  # FFT window length, in samples at sample_rate
    hop_length: int = 128  # frames = seconds * sample_rate / hop_length + 1
    noise_snr_db: Optional[float] = None  # white noise at this signal-to-noise ratio is added to each recording
    workers: Optional[int] = None  # feature processes; null: every core

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.sample_rate >= 1000, "sample_rate must be at least 1000")
        require(self.seconds > 0, "seconds must be positive")
        require(self.n_mels >= 1 and self.n_fft >= 16 and self.hop_length >= 1, "n_mels, n_fft, hop_length must be positive")
        require(self.workers is None or self.workers >= 1, "workers must be at least 1 (or null)")


@dataclass
class AudioSettings(SpectrogramSettings):
    """Spectrogram settings, and the test share held out when a folder has no test split."""

    test_fraction: float = 0.2  # held out, stratified, when there is no official test split

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.test_fraction < 1, "test_fraction must be in (0, 1)")


def with_noise(wave: np.ndarray, snr_db: float, name: str) -> np.ndarray:
    """`wave` plus white noise `snr_db` decibels below its mean power, drawn from a seed of the file's name."""
    seed = hashlib.sha256(name.encode(errors="surrogateescape")).digest()[:8]  # any name's bytes, as they are
    rng = np.random.default_rng(int.from_bytes(seed, "little"))
    power = float(np.mean(np.square(wave))) if len(wave) else 0.0
    return (wave + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), len(wave))).astype(np.float32)


def _unreadable(path: Path, exc: Exception) -> str:
    """Why a recording could not be read, in a few words: the counts of these are what the user sees."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if path.stat().st_size == 0:
        return "empty"
    with open(path, "rb") as file:
        head = file.read(4)
    magic = AUDIO_MAGIC.get(path.suffix.lower())
    if magic is not None and not head.startswith(magic):
        return f"not a {path.suffix[1:].upper()} file"
    # soundfile's errors carry libsndfile's own message apart from the file object's name
    return f"corrupt ({getattr(exc, 'error_string', '') or first_line(exc)})"


def _log_mel(paths: list[Path], settings: SpectrogramSettings) -> tuple[np.ndarray, list[Optional[tuple[str, str]]]]:
    """Log-mel spectrograms (N, 1, n_mels, frames) of fixed-length clips, and for each file None or, when it cannot
    be used, its name and why."""
    import librosa  # lazily: only audio datasets need it (pip install 'nascli[audio]')

    length = int(round(settings.seconds * settings.sample_rate))
    frames = 1 + length // settings.hop_length
    out = np.zeros((len(paths), 1, settings.n_mels, frames), dtype=np.float32)
    errors: list[Optional[tuple[str, str]]] = []
    for i, path in enumerate(paths):
        name = f"{path.parent.name}/{path.name}"
        try:
            # a file object: names in any bytes open, and librosa does not retry through audioread (slow, it warns);
            # any sample rate is resampled to sample_rate
            with open(path, "rb") as file:
                wave, _ = librosa.load(file, sr=settings.sample_rate, mono=True)
        except Exception as exc:  # a corrupt or unreadable recording is skipped, not fatal
            errors.append((name, _unreadable(path, exc)))
            continue
        if len(wave) == 0 or not np.isfinite(wave).all():
            errors.append((name, "with no samples" if len(wave) == 0 else "with NaN or infinite samples"))
            continue
        if settings.noise_snr_db is not None:
            wave = with_noise(wave, settings.noise_snr_db, path.name)
        wave = librosa.util.fix_length(wave, size=length)
        mel = librosa.feature.melspectrogram(y=wave, sr=settings.sample_rate, n_fft=settings.n_fft,
                                             hop_length=settings.hop_length, n_mels=settings.n_mels)
        out[i, 0] = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
        errors.append(None)
    return out, errors


def require_librosa() -> None:
    """Audio is read with librosa, an optional extra."""
    require_extra("reading recordings", "audio", "librosa")


def spectrograms(paths: list[Path], settings: SpectrogramSettings, where: Path) -> tuple[np.ndarray, np.ndarray]:
    """Spectrograms of every recording (in parallel) and which ones could be read; a warning counts the others, and
    why, and none readable is a UserError saying why."""
    require_librosa()
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with ProcessPoolExecutor(settings.workers or os.cpu_count() or 1) as pool:
        results = list(pool.map(_log_mel, chunks, [settings] * len(chunks)))
    features = np.concatenate([r[0] for r in results])
    errors = [e for r in results for e in r[1]]
    keep = np.asarray([e is None for e in errors])
    skipped = [e for e in errors if e is not None]
    if skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in Counter(why for _, why in skipped).most_common())
        first = ", ".join(name for name, _ in skipped[:3])
        if not keep.any():
            raise UserError(f"{len(paths)} of {len(paths)} recordings in {where} could not be read: {reasons} "
                            f"(first: {first})")
        warn(f"skipped {len(skipped)} unreadable recording(s) in {where} (first: {first}): {reasons}; "
             f"{int(keep.sum())} of {len(paths)} are used")
    return features[keep], keep


@register("dataset", "audio_folder")
class AudioFolder(ArrayDataset):
    """Your recordings: root/<class>/*.wav (or root/train/<class>/… and root/test/<class>/…)."""

    Settings = AudioSettings

    def _root(self) -> Path:
        return required_root(self.settings.root, "audio_folder", "root/<class>/*.wav")

    def check(self) -> None:
        require_librosa()
        list_folder(self._root(), AUDIO_SUFFIXES, "recordings", "wav", quiet=True)

    def arrays(self) -> tuple[np.ndarray, ...]:
        listing = list_folder(self._root(), AUDIO_SUFFIXES, "recordings", "wav")
        x, keep = spectrograms(listing.paths(listing.files), self.settings, listing.root)
        is_test = listing.is_test[keep] if listing.is_test is not None else None
        return official_or_held_out(x, listing.labels[keep], is_test, self.settings.test_fraction)


@register("dataset", "fsdd")
class FSDD(ArrayDataset):
    """The Free Spoken Digit Dataset: recordings/{digit}_{speaker}_{index}.wav; index 0-4 is the official test set."""

    Settings = SpectrogramSettings

    def _recordings(self) -> list[Path]:
        root = required_root(self.settings.root, "fsdd", "holding recordings/{digit}_{speaker}_{index}.wav")
        for folder in (root / "recordings", root / "fsdd" / "recordings", root):
            if folder.is_dir():
                found = sorted(p for p in folder.iterdir() if FSDD_NAME.match(p.name))
                if found:
                    return found
        raise UserError(f"no FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav) in {root} or {root / 'recordings'}")

    def check(self) -> None:
        require_librosa()
        self._recordings()

    def arrays(self) -> tuple[np.ndarray, ...]:
        paths = self._recordings()
        x, keep = spectrograms(paths, self.settings, paths[0].parent)
        names = [FSDD_NAME.match(p.name) for p, kept in zip(paths, keep) if kept]
        y = np.asarray([int(m.group(1)) for m in names])
        is_test = np.asarray([int(m.group(3)) in FSDD_TEST_INDICES for m in names])
        return x[~is_test], y[~is_test], x[is_test], y[is_test]
