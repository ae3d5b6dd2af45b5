"""Recordings as log-mel spectrograms (librosa), searched with the image spaces as 1 x mels x frames inputs; decoded
once in parallel and cached, keyed by the files and the settings that shape the spectrograms."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from nascli.data.base import ArrayDataset, DatasetSettings
from nascli.data.cache import (CACHE_ROOT, cache_folder, cached, decode_into, decoded_chunks, load_array, paths_digest,
                               read_json)
from nascli.data.folder import list_folder, official_or_held_out, required_root
from nascli.errors import UserError, first_line, require, require_extra, warn
from nascli.records import Preprocessing
from nascli.registry import register

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
FSDD_TEST_INDICES = range(5)  # the official split: recordings 0-4 of each digit and speaker are the test set
CHUNK = 64
CACHE = CACHE_ROOT / "audio"
CACHE_VERSION = 1  # raised when the features of the same settings change
FRONT_END = ("sample_rate", "seconds", "n_mels", "n_fft", "hop_length", "noise_snr_db")  # what shapes a spectrogram
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
class CachedSpectrogramSettings(SpectrogramSettings):
    """Spectrogram settings, and where the spectrograms are cached."""

    cache_dir: Optional[str] = None  # null: ~/.cache/nascli/audio


@dataclass
class AudioSettings(CachedSpectrogramSettings):
    """Spectrogram settings, and the test share held out when a folder has no test split."""

    test_fraction: float = 0.2  # held out, stratified, when there is no official test split

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.test_fraction < 1, "test_fraction must be in (0, 1)")


def front_end(settings: SpectrogramSettings, classes: Optional[list[str]] = None) -> Preprocessing:
    """How a recording becomes a spectrogram with these settings, as a model's preprocessing records it."""
    return Preprocessing("audio", classes or [], audio={name: getattr(settings, name) for name in FRONT_END})


def front_end_settings(audio: dict[str, Any], where: str) -> SpectrogramSettings:
    """The spectrogram settings a model's preprocessing records; settings that are not valid are a UserError."""
    try:
        return SpectrogramSettings(**{name: audio[name] for name in FRONT_END}, workers=None)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{where} holds no valid audio settings ({first_line(exc)}); the file is corrupt") from None


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


def _frames(settings: SpectrogramSettings) -> int:
    """The spectrograms' width: frames = seconds * sample_rate / hop_length + 1."""
    return 1 + round(settings.seconds * settings.sample_rate) // settings.hop_length


def _log_mel(paths: list[Path], settings: SpectrogramSettings) -> tuple[np.ndarray, list[Optional[tuple[str, str]]]]:
    """Log-mel spectrograms (N, 1, n_mels, frames) of fixed-length clips, and for each file None or, when it cannot
    be used, its name and why."""
    import librosa  # lazily: only audio datasets need it (pip install 'nascli[audio]')

    length = round(settings.seconds * settings.sample_rate)
    out = np.zeros((len(paths), 1, settings.n_mels, _frames(settings)), dtype=np.float32)
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


def _checked(errors: list[Optional[tuple[str, str]]], where: Path) -> np.ndarray:
    """Which recordings could be read (`errors` None); a warning counts the others, and why, and none readable is a
    UserError saying why."""
    keep = np.asarray([e is None for e in errors], dtype=bool)
    skipped = [e for e in errors if e is not None]
    if skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in Counter(why for _, why in skipped).most_common())
        first = ", ".join(name for name, _ in skipped[:3])
        if not keep.any():
            raise UserError(f"{len(keep)} of {len(keep)} recordings in {where} could not be read: {reasons} "
                            f"(first: {first})")
        warn(f"skipped {len(skipped)} unreadable recording(s) in {where} (first: {first}): {reasons}; "
             f"{int(keep.sum())} of {len(keep)} are used")
    return keep


def spectrograms(paths: list[Path], settings: SpectrogramSettings, where: Path) -> tuple[np.ndarray, np.ndarray]:
    """Spectrograms of every readable recording (decoded in parallel, not cached) and which ones could be read, as
    `_checked` says."""
    require_librosa()
    workers = settings.workers or os.cpu_count() or 1
    results = list(decoded_chunks(_log_mel, paths, CHUNK, (settings,), workers, "recordings"))
    keep = _checked([e for r in results for e in r[1]], where)
    return np.concatenate([r[0] for r in results])[keep], keep


def features_key(settings: SpectrogramSettings) -> str:
    """Every setting that shapes the spectrograms (and librosa's version), as a folder name."""
    noise = "clean" if settings.noise_snr_db is None else f"snr{settings.noise_snr_db:g}"
    return (f"v{CACHE_VERSION}-sr{settings.sample_rate}-{settings.seconds:g}s-mels{settings.n_mels}-"
            f"fft{settings.n_fft}-hop{settings.hop_length}-{noise}-librosa{importlib.metadata.version('librosa')}")


def cached_spectrograms(paths: list[Path], settings: CachedSpectrogramSettings, where: Path,
                        digest: str) -> tuple[np.ndarray, np.ndarray]:
    """`spectrograms` of the recordings whose files have `digest`: decoded once, then read memory-mapped from the
    cache (dataset.cache_dir)."""
    require_librosa()
    shape = (1, settings.n_mels, _frames(settings))

    def build(staging: Path) -> None:
        """features.npy (float32) of the readable recordings, and each recording's error or null (errors.json)."""
        errors = decode_into(staging / "features.npy", _log_mel, paths, CHUNK, (settings,),
                             settings.workers or os.cpu_count() or 1, "recordings", shape, np.float32)
        if all(e is not None for e in errors):
            _checked(errors, where)  # none readable: a UserError, and no cache
        (staging / "errors.json").write_text(json.dumps({"errors": errors}))

    def read(cache: Path) -> tuple[np.ndarray, list[Optional[tuple[str, str]]]]:
        features, errors = load_array(cache / "features.npy", mmap=True), read_json(cache / "errors.json")["errors"]
        kept = sum(e is None for e in errors)
        if len(errors) != len(paths) or features.shape != (kept, *shape) or features.dtype != np.float32:
            raise ValueError("its spectrograms do not match the recordings")
        return features, [None if e is None else (str(e[0]), str(e[1])) for e in errors]

    features, errors = cached(cache_folder(settings.cache_dir, CACHE) / digest / features_key(settings), build, read)
    return features, _checked(errors, where)


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
        self._classes = listing.classes
        x, keep = cached_spectrograms(listing.paths(listing.files), self.settings, listing.root, listing.digest)
        is_test = listing.is_test[keep] if listing.is_test is not None else None
        return official_or_held_out(x, listing.labels[keep], is_test, self.settings.test_fraction)

    def preprocessing(self) -> Preprocessing:
        return front_end(self.settings, self._classes)


@register("dataset", "fsdd")
class FSDD(ArrayDataset):
    """The Free Spoken Digit Dataset: recordings/{digit}_{speaker}_{index}.wav; index 0-4 is the official test set."""

    Settings = CachedSpectrogramSettings

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
        folder = paths[0].parent
        x, keep = cached_spectrograms(paths, self.settings, folder, paths_digest(f"fsdd{CACHE_VERSION}", folder, paths))
        names = [FSDD_NAME.match(p.name) for p, kept in zip(paths, keep) if kept]
        y = np.asarray([int(m.group(1)) for m in names])
        is_test = np.asarray([int(m.group(3)) in FSDD_TEST_INDICES for m in names])
        return x[~is_test], y[~is_test], x[is_test], y[is_test]

    def preprocessing(self) -> Preprocessing:
        return front_end(self.settings)
