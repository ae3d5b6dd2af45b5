"""Images in an image-folder layout, decoded with Pillow in parallel and cached as a uint8 memory-mapped array."""

from __future__ import annotations

import json
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from nascli.data.base import ArrayDataset, DatasetSettings, hold_out_test
from nascli.data.cache import CACHE_ROOT, cache_folder, cached, decode_into, files_digest, load_array, read_json
from nascli.errors import UserError, require, warn
from nascli.records import Preprocessing
from nascli.registry import register

CACHE = CACHE_ROOT / "folders"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
CACHE_VERSION = 1
SIZE_SAMPLE = 1000  # images whose sizes and modes choose image_size and channels
CHUNK = 256  # images decoded per task


@dataclass
class FolderSettings(DatasetSettings):
    """Where the images are and how they are made one size: `root/<class>/*` or `root/{train,test}/<class>/*`."""

    root: Optional[str] = None  # the image folder: root/<class>/* or root/{train,test}/<class>/*; required
    image_size: Optional[int] = None  # side of the square images; null: the median side, capped at max_image_size
    max_image_size: int = 64  # with image_size null: the largest side, in pixels, the automatic size may have
    channels: Optional[int] = None  # 1 (grey), 3 (RGB) or 4 (RGBA); null: 1 if the images are grey, else 3
    test_fraction: float = 0.2  # held out, stratified, when root has no test/ folder
    workers: Optional[int] = None  # decoding processes; null: every core
    cache_dir: Optional[str] = None  # null: ~/.cache/nascli/folders

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.image_size is None or self.image_size >= 1, "image_size must be at least 1 (or null)")
        require(self.max_image_size >= 1, "max_image_size must be at least 1")
        require(self.channels in (None, 1, 3, 4), f"channels must be 1, 3, 4 or null, got {self.channels}")
        require(0 < self.test_fraction < 1, "test_fraction must be in (0, 1)")
        require(self.workers is None or self.workers >= 1, "workers must be at least 1 (or null)")


@dataclass
class Listing:
    """The image files of a folder, their class indices, which form the official test split, and a digest."""

    root: Path
    classes: list[str]
    files: list[str]  # paths relative to root
    labels: np.ndarray
    is_test: Optional[np.ndarray]  # None: no test/ folder, a test split is held out
    digest: str  # of every file's path, size and modification time: the cache key

    def paths(self, files: list[str]) -> list[Path]:
        return [self.root / name for name in files]


def _identity(path: Path) -> tuple[int, int]:
    """The device and inode of a folder (links followed), which the same folder has under any name."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _scan(folder: Path, relative: str, suffixes: frozenset[str], above: frozenset[tuple[int, int]],
          unlisted: list[str]) -> list[tuple[str, int, int]]:
    """(path relative to root, size, mtime) of every file with one of `suffixes` below `folder`, sorted (scandir: fast).

    A link back to a folder `above` (a loop) and an entry that cannot be read are not followed but added to `unlisted`.
    """
    try:
        identity = _identity(folder)
        if identity in above:
            unlisted.append(f"{relative}: a link to a folder above it")
            return []
        entries = list(os.scandir(folder))
    except OSError as exc:
        unlisted.append(f"{relative}: {exc.strerror or type(exc).__name__}")
        return []
    found = []
    for entry in entries:
        name = f"{relative}/{entry.name}"
        try:
            if entry.is_dir() and not entry.name.startswith("."):
                found += _scan(Path(entry.path), name, suffixes, above | {identity}, unlisted)
            elif os.path.splitext(entry.name)[1].lower() in suffixes and entry.is_file():
                stat = entry.stat()
                found.append((name, stat.st_size, stat.st_mtime_ns))
        except OSError as exc:
            unlisted.append(f"{name}: {exc.strerror or type(exc).__name__}")
    return sorted(found)


def _class_folders(folder: Path, unlisted: list[str] | None = None) -> list[str]:
    """The (non-hidden) folders in `folder`; entries that cannot be followed (a link loop) are added to `unlisted`."""
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise UserError(f"cannot read {folder}: {exc.strerror or type(exc).__name__}") from None
    names = []
    for entry in entries:
        try:
            if entry.is_dir() and not entry.name.startswith("."):
                names.append(entry.name)
        except OSError as exc:
            if unlisted is not None:
                unlisted.append(f"{entry.name}: {exc.strerror or type(exc).__name__}")
    return sorted(names)


def is_split_folder(path: Path) -> bool:
    """Whether `path` is an image folder with train/ and test/ class folders."""
    return (path / "train").is_dir() and (path / "test").is_dir() and bool(_class_folders(path / "train"))


def list_folder(
    root: Path, suffixes: frozenset[str] = IMAGE_SUFFIXES, kind: str = "images", example: str = "jpg|png",
    quiet: bool = False,
) -> Listing:
    """The files (images, or other `suffixes`) of a class-folder layout; a folder that is not one is a UserError.

    Files and folders are read whatever the bytes of their names; links are followed, except back to a folder
    above them (a loop). What cannot be followed is left out with a warning line (none when `quiet`).
    """
    if not root.is_dir():
        raise UserError(f"dataset.root {root} is not a folder")
    split = is_split_folder(root)
    unlisted: list[str] = []
    found = []  # (path, class folder, in test/)
    stats = []  # (path, size, modification time)
    for prefix, testing in [("train", False), ("test", True)] if split else [("", False)]:
        above = frozenset({_identity(root), _identity(root / prefix)})
        for name in _class_folders(root / prefix, unlisted):
            for path, size, mtime in _scan(root / prefix / name, f"{prefix}/{name}".lstrip("/"), suffixes, above,
                                           unlisted):
                found.append((path, name, testing))
                stats.append((path, size, mtime))
    if unlisted and not quiet:
        entries = "entry" if len(unlisted) == 1 else "entries"
        warn(f"skipped {len(unlisted)} {entries} in {root} that cannot be read or followed "
             f"(first: {', '.join(unlisted[:3])})")
    classes = sorted({name for _, name, _ in found})  # folders holding files: no class without samples
    index = {name: i for i, name in enumerate(classes)}
    files = [path for path, _, _ in found]
    labels = [index[name] for _, name, _ in found]
    is_test = [testing for _, _, testing in found]
    layout = f"root/<class>/*.{example} or root/train/<class>/… and root/test/<class>/…"
    if not files:
        raise UserError(f"dataset.root {root} holds no {kind} in class folders (expected {layout})")
    if len(classes) < 2:
        raise UserError(f"dataset.root {root} holds one class ({classes[0]}); a classifier needs two or more")
    if split and not any(is_test):
        raise UserError(f"dataset.root {root}: test/ holds no {kind}")
    return Listing(root, classes, files, np.asarray(labels, dtype=np.int64), np.asarray(is_test) if split else None,
                   files_digest(f"{CACHE_VERSION}:{root.resolve()}", stats))


def _mode_channels(mode: str) -> int:
    return 1 if mode in ("1", "L", "I", "I;16", "F", "P;L") else 4 if mode in ("RGBA", "LA", "PA") else 3


def probe_images(paths: list[Path]) -> list[Optional[tuple[int, int, int]]]:
    """Width, height and channel count of each image from its header (None when it cannot be read)."""
    found = []
    for path in paths:
        try:
            with Image.open(path) as image:
                found.append((*image.size, _mode_channels(image.mode)))
        except Exception:
            found.append(None)
    return found


def decode_images(paths: list[Path], size: int, channels: int) -> tuple[np.ndarray, list[Optional[str]]]:
    """Images resized to size x size with `channels` channels (N, C, H, W uint8), and each one's error or None."""
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    out = np.zeros((len(paths), channels, size, size), dtype=np.uint8)
    errors: list[Optional[str]] = []
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert(mode).resize((size, size), Image.Resampling.BILINEAR))
            out[i] = pixels.reshape(size, size, channels).transpose(2, 0, 1)
            errors.append(None)
        except Exception as exc:  # a corrupt or unreadable file is skipped, not fatal
            errors.append(f"{path.parent.name}/{path.name}: {type(exc).__name__}")
    return out, errors


def chunked(paths: list[Path]) -> list[list[Path]]:
    return [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]


def _choose_shape(listing: Listing, settings: FolderSettings, folder: Path, workers: int) -> tuple[int, int]:
    """The image size and channel count: as set, else from a sample's headers (remembered beside the cache)."""
    if settings.image_size and settings.channels:
        return settings.image_size, settings.channels
    remembered = folder / f"shape-{settings.image_size}-{settings.max_image_size}-{settings.channels}.json"
    if remembered.exists():
        try:
            size, channels = json.loads(remembered.read_text())
            if isinstance(size, int) and size >= 1 and channels in (1, 3):
                return size, channels
        except (ValueError, TypeError, UnicodeDecodeError):  # garbled: probed again and rewritten
            pass
    sample = listing.paths(listing.files[:: max(1, len(listing.files) // SIZE_SAMPLE)])
    with ProcessPoolExecutor(workers) as pool:
        probed = [p for chunk in pool.map(probe_images, chunked(sample)) for p in chunk if p is not None]
    if not probed:
        raise UserError(f"dataset.root {listing.root}: none of the images can be read")
    size = settings.image_size or min(settings.max_image_size, int(statistics.median(max(w, h) for w, h, _ in probed)))
    channels = settings.channels or (1 if all(c == 1 for _, _, c in probed) else 3)
    folder.mkdir(parents=True, exist_ok=True)
    remembered.write_text(json.dumps([size, channels]))
    return size, channels


def decode_folder(listing: Listing, settings: FolderSettings) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Decode a folder once (in parallel), cache it, and return memory-mapped images, labels and test marks."""
    workers = settings.workers or os.cpu_count() or 1
    folder = cache_folder(settings.cache_dir, CACHE) / listing.digest
    size, channels = _choose_shape(listing, settings, folder, workers)

    def build(staging: Path) -> None:
        """Every image as uint8 rows of images.npy, which ones were kept (keep.npy), and what was skipped."""
        errors = decode_into(staging / "images.npy", decode_images, listing.paths(listing.files), CHUNK,
                             (size, channels), workers, "images", (channels, size, size), np.uint8)
        skipped = [e for e in errors if e is not None]
        if len(skipped) == len(errors):
            raise UserError(f"dataset.root {listing.root}: none of the {len(errors)} images can be decoded")
        np.save(staging / "keep.npy", np.asarray([e is None for e in errors]))
        meta = {"classes": listing.classes, "image_size": size, "channels": channels,
                "images": len(errors) - len(skipped), "skipped": len(skipped), "first_skipped": skipped[:3]}
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))

    def read(cache: Path) -> tuple[np.ndarray, np.ndarray, dict]:
        images, keep = load_array(cache / "images.npy", mmap=True), load_array(cache / "keep.npy")
        meta = read_json(cache / "meta.json")
        shape = (keep.sum(), channels, size, size)
        if keep.dtype != bool or keep.shape != (len(listing.files),) or images.shape != shape:
            raise ValueError("its arrays do not match the folder")
        return images, keep, meta

    images, keep, meta = cached(folder / f"{channels}x{size}x{size}", build, read)
    if meta["skipped"]:
        warn(f"skipped {meta['skipped']} unreadable image(s) in {listing.root} (first: {', '.join(meta['first_skipped'])})")
    return images, listing.labels[keep], listing.is_test[keep] if listing.is_test is not None else None


def official_or_held_out(
    x: np.ndarray, y: np.ndarray, is_test: Optional[np.ndarray], test_fraction: float
) -> tuple[np.ndarray, ...]:
    """Training pool and test set: the samples of the official test/ folder, else a stratified hold-out."""
    if is_test is None:
        return hold_out_test(x, y, test_fraction)
    return x[~is_test], y[~is_test], x[is_test], y[is_test]


def required_root(root: Optional[str], dataset: str, layout: str) -> Path:
    """dataset.root as a path; a dataset that needs one and has none is a UserError."""
    if not root:
        raise UserError(f"dataset={dataset} needs dataset.root=FOLDER ({layout})")
    return Path(root).expanduser()


def folder_arrays(settings: FolderSettings, root: Path) -> tuple[tuple[np.ndarray, ...], Preprocessing]:
    """Training pool and test set of an image folder, and how its files became them."""
    listing = list_folder(root)
    x, y, is_test = decode_folder(listing, settings)
    return (official_or_held_out(x, y, is_test, settings.test_fraction),
            Preprocessing("image", listing.classes, image_size=x.shape[2], channels=x.shape[1]))


@register("dataset", "folder")
class ImageFolder(ArrayDataset):
    """Your images: one folder per class (optionally under train/ and test/), any size and channel count."""

    Settings = FolderSettings
    _decoded = Preprocessing("image")

    def _root(self) -> Path:
        return required_root(self.settings.root, "folder", "root/<class>/*.jpg|png")

    def check(self) -> None:
        list_folder(self._root(), quiet=True)

    def arrays(self) -> tuple[np.ndarray, ...]:
        arrays, self._decoded = folder_arrays(self.settings, self._root())
        return arrays

    def preprocessing(self) -> Preprocessing:
        return self._decoded
