"""Decoded files cached on disk: keyed by every file's path, size and modification time, decoded in parallel with a
progress bar into a staging folder that is renamed into place only when complete."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Optional, TypeVar

import numpy as np

from nascli.console import progress
from nascli.errors import StorageError, UserError, first_line, warn

CACHE_ROOT = Path.home() / ".cache" / "nascli"  # each kind of cache in a folder of its own
UNREADABLE = (OSError, ValueError, LookupError, TypeError, EOFError)  # what a missing or garbled cache file raises
Cached = TypeVar("Cached")
Decoder = Callable[..., tuple[np.ndarray, list[Any]]]  # (chunk of paths, *args) -> (rows, each one's error or None)


def cache_folder(cache_dir: Optional[str], default: Path) -> Path:
    """Where caches go: `cache_dir` (dataset.cache_dir) when set, else `default`."""
    return Path(cache_dir).expanduser() if cache_dir else default


def files_digest(head: str, files: Iterable[tuple[str, int, int]]) -> str:
    """A short digest of `head` and each file's (path, size, modification time): another file, or a changed one, gives
    another digest."""
    # surrogateescape: a name that is not UTF-8 keeps its bytes (as Python decoded them), so it hashes as it is
    digest = hashlib.sha256(head.encode(errors="surrogateescape"))
    for path, size, mtime in files:
        digest.update(f"\n{path}:{size}:{mtime}".encode(errors="surrogateescape"))
    return digest.hexdigest()[:24]


def paths_digest(head: str, root: Path, paths: list[Path]) -> str:
    """`files_digest` of files under `root`, read from the file system; one that cannot be read is a UserError."""
    files = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
        files.append((str(path.relative_to(root)), stat.st_size, stat.st_mtime_ns))
    return files_digest(f"{head}:{root.resolve()}", files)


def cached(folder: Path, build: Callable[[Path], None], read: Callable[[Path], Cached]) -> Cached:
    """What `read` makes of the cache `folder`, after `build` wrote it into a staging folder renamed into place (an
    interrupted build leaves no cache); a cache that cannot be read is built again, with a warning."""
    if folder.is_dir():
        try:
            return read(folder)
        except UNREADABLE as exc:
            warn(f"the cache {folder} cannot be read ({first_line(exc)}); building it again")
            shutil.rmtree(folder, ignore_errors=True)
    staging = folder.with_name(f".{folder.name}.{os.getpid()}")
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        build(staging)
        try:
            os.replace(staging, folder)
        except OSError:
            if not folder.is_dir():  # else another process built the same cache first: theirs is used
                raise
    except OSError as exc:
        raise StorageError(f"cannot write the cache {folder}: {exc.strerror or first_line(exc)} "
                           f"(dataset.cache_dir sets where caches go)") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    try:
        return read(folder)
    except UNREADABLE as exc:
        raise UserError(f"the cache {folder} cannot be read right after writing it ({first_line(exc)})") from None


def read_json(path: Path) -> dict[str, Any]:
    """A cache's JSON object; anything else is a TypeError (an unreadable cache)."""
    found = json.loads(path.read_text())
    if not isinstance(found, dict):
        raise TypeError(f"{path.name} holds no JSON object")
    return found


def load_array(path: Path, mmap: bool = False) -> np.ndarray:
    """An array a cache saved (memory-mapped when `mmap`); never unpickled."""
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def decoded_chunks(decode: Decoder, paths: list[Path], size: int, args: tuple, workers: int,
                   what: str) -> Iterator[tuple[np.ndarray, list[Any]]]:
    """`decode(chunk, *args)` of each chunk of `size` paths, in order, over `workers` processes under a progress bar
    counting `what`."""
    chunks = [paths[i : i + size] for i in range(0, len(paths), size)]
    with progress() as bar, ProcessPoolExecutor(workers) as pool:
        task = bar.add_task(f"decoding {what}", total=len(paths))
        repeated = [[arg] * len(chunks) for arg in args]
        for chunk, result in zip(chunks, pool.map(decode, chunks, *repeated)):
            yield result
            bar.advance(task, len(chunk))


def decode_into(out: Path, decode: Decoder, paths: list[Path], size: int, args: tuple, workers: int, what: str,
                row: tuple[int, ...], dtype: type) -> list[Any]:
    """Decode `paths` (`size` a task, as `decoded_chunks`) into the .npy `out`, rows of shape `row`; returns each
    path's error, None for the rows kept (only those are in `out`)."""
    every = out.with_name(f"every-{out.name}")
    array = np.lib.format.open_memmap(every, "w+", dtype, (len(paths), *row))
    errors: list[Any] = []
    for rows, chunk_errors in decoded_chunks(decode, paths, size, args, workers, what):
        array[len(errors) : len(errors) + len(rows)] = rows
        errors += chunk_errors
    array.flush()
    keep = np.asarray([e is None for e in errors], dtype=bool)
    if keep.all():  # the usual case: no copy
        del array
        os.replace(every, out)
    else:
        kept = np.lib.format.open_memmap(out, "w+", dtype, (int(keep.sum()), *row))
        kept[:] = array[keep]
        kept.flush()
        del array, kept
        every.unlink()
    return errors
