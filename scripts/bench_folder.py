"""Time loading an image folder with `dataset=folder`: the first load (decode and cache) and the second (cache).

Usage: python scripts/bench_folder.py [--archive ../shared/datasets/cifar10/cifar10.tar.gz] [--root FOLDER]

With --archive the archive is extracted into a temporary folder first (not timed). Each load runs in a
fresh process, as `nas search` would; it is timed inside (listing, decoding or reading the cache,
splitting and normalising into tensors) and from the outside (interpreter start and imports too). The cache goes to a temporary folder too.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

LOAD = """
import sys, time
from nascli.config import load_config
cfg = load_config(["dataset=folder", f"dataset.root={sys.argv[1]}", f"dataset.cache_dir={sys.argv[2]}"])
start = time.perf_counter()
splits = cfg.dataset.cls(cfg.dataset.settings).load()
print(time.perf_counter() - start)
print(len(splits.train_x), len(splits.val_x), len(splits.test_x), tuple(splits.input_shape), splits.num_classes)
"""


def timed_load(root: Path, cache: Path) -> tuple[float, float, str]:
    """Seconds of one load in a fresh process, from the outside and of the load alone, and what it loaded."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", LOAD, str(root), str(cache)], capture_output=True, text=True,
                            check=True)
    inside, shape = result.stdout.strip().splitlines()
    return time.perf_counter() - start, float(inside), shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", default="../shared/datasets/cifar10/cifar10.tar.gz")
    parser.add_argument("--root", help="an image folder to load instead of the archive")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.root) if args.root else None
        if root is None:
            with tarfile.open(args.archive) as archive:
                archive.extractall(tmp, filter="data")
            root = next(p for p in Path(tmp).iterdir() if p.is_dir())
        cache = Path(tmp) / "cache"
        loads = [timed_load(root, cache) for _ in range(3)]
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"folder {root.name}: train, validation, test, input shape, classes = {loads[0][2]}")
    for name, (outside, inside, _) in zip(("first (decode on every core, write the cache)", "second (cache)",
                                            "third (cache)"), loads):
        print(f"{name}: load {inside:.2f} s; the whole process {outside:.2f} s")


if __name__ == "__main__":
    main()
