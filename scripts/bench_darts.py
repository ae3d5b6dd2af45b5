"""Differentiable search on NAS-Bench-201: the table's test accuracy of the cell DARTS / DrNAS derive, per seed.

Usage: python scripts/bench_darts.py --table ../shared/benchmarks/nb201/cifar10.csv --root CIFAR_DIR
       [--relaxations softmax dirichlet] [--selection strength] [--seeds 0 1 2] [--out DIR] [--overrides KEY=VALUE ...]
Runs `nas search dataset=cifar10 space=nb201 strategy=darts strategy.relaxation=R strategy.selection=SELECTION seed=S
retrain.enabled=false` plus the CPU-sized overrides (default: one cell per stage, 8 stem channels, a fifth of the
training pool split half for the weights and half for the architecture, 12 epochs), looks up the derived cell in
the table and prints its test accuracy, how many of its six edges hold a parameter-free operation (skip, pooling,
none: DARTS's collapse), and each relaxation's mean next to the table's random-search reference.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

CPU_SIZED = ["space.cells_per_stage=1", "space.stem_channels=8", "dataset.train_fraction=0.2",
             "dataset.val_fraction=0.5", "strategy.epochs=12"]
PARAMETER_FREE = {"skip_connect", "avg_pool_3x3", "none"}
RANDOM_SEARCH_MEAN = 88.13  # random search, 100 queries, on the 12-epoch table (docs/benchmarks.md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True, help="CIFAR-10 (image folder or python batches)")
    parser.add_argument("--relaxations", nargs="+", default=["softmax", "dirichlet"])
    parser.add_argument("--selection", default="strength", help="strength (DARTS) or perturbation (DARTS-PT)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="where the run directories go (default: a temporary folder)")
    parser.add_argument("--overrides", nargs="*", default=CPU_SIZED, help="the CPU-sized setting (default: %(default)s)")
    args = parser.parse_args()
    table = pd.read_csv(args.table).set_index("arch")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-darts-"))
    print(f"setting: {' '.join(args.overrides)}; selection {args.selection}; runs in {out}\n")
    print("| relaxation | seed | derived cell | parameter-free edges | test_acc | minutes |")
    print("|---|---|---|---|---|---|")
    results: dict[str, list[float]] = {}
    for relaxation in args.relaxations:
        for seed in args.seeds:
            run = out / f"{relaxation}-{seed}"
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "nascli", "search", "dataset=cifar10", f"dataset.root={args.root}",
                            "space=nb201", "strategy=darts", f"strategy.relaxation={relaxation}",
                            f"strategy.selection={args.selection}", f"seed={seed}",
                            "retrain.enabled=false", f"run_dir={run}", *args.overrides],
                           check=True, stdout=subprocess.DEVNULL)
            minutes = (time.perf_counter() - start) / 60
            cell = json.loads((run / "best.json").read_text())["arch"]["cell"]
            free = sum(op in PARAMETER_FREE for op in re.findall(r"\|([a-z_0-9]+)~\d", cell))
            accuracy = float(table.loc[cell, "test_acc"])
            results.setdefault(relaxation, []).append(accuracy)
            print(f"| {relaxation} | {seed} | `{cell}` | {free}/6 | {accuracy:.2f} | {minutes:.1f} |", flush=True)
    print()
    for relaxation, accuracies in results.items():
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        print(f"{relaxation}: mean test_acc {statistics.mean(accuracies):.2f} ± {spread:.2f} over {len(accuracies)} "
              f"seeds (random search, 100 queries: {RANDOM_SEARCH_MEAN})")


if __name__ == "__main__":
    main()
