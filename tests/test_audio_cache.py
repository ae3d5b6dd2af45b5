"""The audio cache: spectrograms decoded once, keyed by the files and the settings, rebuilt when unreadable."""

from __future__ import annotations

import json
import hashlib
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nascli.data import audio, folder
from nascli.data.audio import FSDD, AudioFolder, AudioSettings, CachedSpectrogramSettings
from nascli.data.folder import FolderSettings, ImageFolder
from nascli.errors import UserError
from test_audio import tone, write_fsdd

pytest.importorskip("librosa")

SHARED_FSDD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fsdd" / "fsdd-wav.tar.gz"


@pytest.fixture
def recordings(workdir: Path) -> Path:
    """A tiny FSDD: 2 digits x 2 speakers x 6 recordings of a fifth of a second."""
    return write_fsdd(workdir / "fsdd", 2, 6, 0.2)


@pytest.fixture(autouse=True, scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Decode once in this process: librosa's compiled functions are inherited by the decoding processes it forks."""
    wav = tmp_path_factory.mktemp("warm") / "tone.wav"
    tone(wav, 300, 0.2, seed=0)
    audio._log_mel([wav], CachedSpectrogramSettings(seconds=0.25, n_mels=8))


def fsdd(root: Path, **settings) -> FSDD:
    return FSDD(CachedSpectrogramSettings(**{"root": str(root), "workers": 1, "seconds": 0.25, "n_mels": 8,
                                             "cache_dir": "cache", **settings}))


def not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any decoding of recordings fail the test."""
    def decode(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(audio, "decode_into", decode)


def cached_folders(cache: Path) -> list[Path]:
    """The settings folders (<digest>/<settings>) of a cache."""
    return sorted(p for p in cache.glob("*/*") if p.is_dir())


def test_spectrograms_are_decoded_once_then_read_silently_from_the_cache(
        recordings: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    first = fsdd(recordings).arrays()
    assert "decoding recordings" in capsys.readouterr().out  # the progress bar, printed once it ends (no terminal)
    (cache,) = cached_folders(workdir / "cache")
    assert sorted(p.name for p in cache.iterdir()) == ["errors.json", "features.npy"]
    assert not list((workdir / "cache").glob("*/.*"))  # no staging folder left
    not_decoded(monkeypatch)
    second = fsdd(recordings).arrays()
    assert capsys.readouterr() == ("", "")
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_a_changed_file_or_setting_is_a_new_cache(recordings: Path, workdir: Path) -> None:
    fsdd(recordings).arrays()
    wav = recordings / "recordings" / "0_ann_0.wav"
    os.utime(wav, ns=(wav.stat().st_atime_ns, wav.stat().st_mtime_ns + 10**9))
    fsdd(recordings).arrays()
    assert len(list((workdir / "cache").iterdir())) == 2  # another digest
    tone(wav, 500, 0.3, seed=1)  # another size
    fsdd(recordings).arrays()
    assert len(list((workdir / "cache").iterdir())) == 3
    fsdd(recordings, n_mels=6).arrays()
    fsdd(recordings, noise_snr_db=0.0).arrays()
    assert len(cached_folders(workdir / "cache")) == 5  # the last digest holds three settings
    assert fsdd(recordings, n_mels=6).arrays()[0].shape[2] == 6


@pytest.mark.parametrize("damage", ["garble", "truncate", "remove", "errors"])
def test_an_unreadable_cache_is_built_again_with_a_warning(
        recordings: Path, workdir: Path, capsys: pytest.CaptureFixture, damage: str) -> None:
    first = fsdd(recordings).arrays()
    (cache,) = cached_folders(workdir / "cache")
    features = cache / "features.npy"
    if damage == "garble":
        features.write_bytes(b"\x93NUMPY garbled")
    elif damage == "truncate":
        features.write_bytes(features.read_bytes()[:200])
    elif damage == "remove":
        features.unlink()
    else:
        (cache / "errors.json").write_text("[1, 2")
    capsys.readouterr()
    second = fsdd(recordings).arrays()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: the cache {cache.relative_to(workdir)} cannot be read (")
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_an_interrupted_build_leaves_no_cache(recordings: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(out: Path, *args, **kwargs):
        out.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(audio, "decode_into", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fsdd(recordings).arrays()
    assert not any(p.is_dir() for p in (workdir / "cache").glob("*/*")) and not list((workdir / "cache").glob("*/.*"))


def test_an_unwritable_cache_folder_is_one_line(recordings: Path, workdir: Path) -> None:
    (workdir / "cache").write_text("a file, not a folder")
    with pytest.raises(UserError, match=r"^cannot write the cache .*dataset.cache_dir"):
        fsdd(recordings).arrays()


def test_cache_dir_or_the_default_folder(recordings: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "CACHE", workdir / "default")
    fsdd(recordings, cache_dir=None).arrays()
    fsdd(recordings, cache_dir=str(workdir / "elsewhere")).arrays()
    assert len(cached_folders(workdir / "default")) == len(cached_folders(workdir / "elsewhere")) == 1
    assert not (workdir / "cache").exists()


def test_audio_folder_is_cached_with_its_unreadable_files(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    for split in ("train", "test"):
        for c, frequency in enumerate((300, 900)):
            for i in range(4):
                tone(workdir / "sounds" / split / f"c{c}" / f"{i}.wav", frequency, 0.2, seed=i)
    (workdir / "sounds" / "test" / "c1" / "1.wav").write_bytes(b"RIFF not a wave")

    def load() -> tuple[np.ndarray, ...]:
        return AudioFolder(AudioSettings(root="sounds", workers=1, seconds=0.25, n_mels=8, cache_dir="cache")).arrays()

    first = load()
    assert "skipped 1 unreadable recording(s)" in capsys.readouterr().err
    not_decoded(monkeypatch)
    second = load()
    assert capsys.readouterr().err.count("skipped 1 unreadable recording(s)") == 1  # the data's warning stays
    assert [len(a) for a in second] == [8, 8, 7, 7]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_a_garbled_image_folder_cache_is_built_again(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    for c in range(2):
        for i in range(3):
            (workdir / "photos" / f"c{c}").mkdir(parents=True, exist_ok=True)
            Image.new("L", (6, 6), 40 * i + 100 * c).save(workdir / "photos" / f"c{c}" / f"{i}.png")

    def load() -> tuple[np.ndarray, ...]:
        return ImageFolder(FolderSettings(root="photos", image_size=6, channels=1, workers=1,
                                          cache_dir="cache")).arrays()

    first = load()
    (cache,) = cached_folders(workdir / "cache")
    (cache / "keep.npy").write_bytes(b"garbled")
    capsys.readouterr()
    second = load()
    assert capsys.readouterr().err.startswith(f"warning: the cache {cache.relative_to(workdir)} cannot be read")
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_a_garbled_remembered_image_shape_is_probed_again(workdir: Path) -> None:
    for name in ("a/1.png", "a/2.png", "a/3.png", "b/1.png", "b/2.png", "b/3.png"):
        (workdir / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (6, 6)).save(workdir / "photos" / name)

    def load() -> tuple[np.ndarray, ...]:
        return ImageFolder(FolderSettings(root="photos", workers=1, cache_dir="cache")).arrays()

    first = load()
    (remembered,) = (workdir / "cache").rglob("shape-*.json")
    remembered.write_text('{"not": "a shape"')
    second = load()
    assert second[0].shape == first[0].shape and first[0].shape[1:] == (1, 6, 6)
    assert json.loads(remembered.read_text()) == [6, 1]


def test_images_keep_their_cache_key(workdir: Path) -> None:
    """The image folders' key is as before the shared digest, so existing caches stay valid."""
    (workdir / "photos" / "a").mkdir(parents=True)
    (workdir / "photos" / "b").mkdir(parents=True)
    for name in ("a/1.png", "b/2.png"):
        Image.new("L", (4, 4)).save(workdir / "photos" / name)
        os.utime(workdir / "photos" / name, ns=(0, 0))
    listing = folder.list_folder(workdir / "photos")
    expected = hashlib.sha256(f"1:{(workdir / 'photos').resolve()}".encode())
    for name in ("a/1.png", "b/2.png"):
        expected.update(f"\n{name}:{(workdir / 'photos' / name).stat().st_size}:0".encode())
    assert listing.digest == expected.hexdigest()[:24]


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_FSDD.exists(), reason="no shared FSDD archive")
def test_real_fsdd_loads_fast_from_the_cache(workdir: Path) -> None:
    with tarfile.open(SHARED_FSDD) as archive:
        archive.extractall(workdir, filter="data")
    dataset = FSDD(CachedSpectrogramSettings(root=str(workdir / "fsdd"), cache_dir="cache"))
    start = time.perf_counter()
    first = dataset.arrays()
    decoding = time.perf_counter() - start
    start = time.perf_counter()
    second = dataset.arrays()
    cached = time.perf_counter() - start
    print(f"FSDD: {decoding:.1f} s decoding, {cached:.2f} s from the cache")
    assert cached < 2 and cached < decoding / 5
    assert [len(a) for a in second] == [2700, 2700, 300, 300]
    np.testing.assert_array_equal(first[0], second[0])
