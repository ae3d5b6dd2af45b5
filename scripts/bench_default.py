"""Time the default `nas search` (digits) end to end over several seeds, next to random search.

Usage: python scripts/bench_default.py [--seeds 0 1 2] [--baseline strategy=random] [--overrides ...] [--out DIR]
`--overrides` applies to every run, e.g. `--overrides dataset=fsdd dataset.root=DIR` for another dataset.
Prints a Markdown table: wall seconds of the whole command and retrained test accuracy per run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(overrides: list[str], run_dir: Path) -> dict:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nascli", "search", *overrides, f"run_dir={run_dir}"], check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"wall_s": wall, "test_acc": summary["test_acc"], "val_acc": summary["best"]["val_acc"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--baseline", nargs="*", default=["strategy=random"], help="overrides of the baseline")
    parser.add_argument("--overrides", nargs="*", default=[], help="overrides of every run (e.g. the dataset)")
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-default-"))
    settings = {"default": args.overrides,
                "baseline (" + " ".join(args.baseline) + ")": [*args.overrides, *args.baseline]}
    results = {name: [run([*overrides, f"seed={seed}"], out / f"{i}-{seed}")
                      for seed in args.seeds] for i, (name, overrides) in enumerate(settings.items())}

    def spread(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.2f} ± {std:.2f}"

    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores; "
          f"seeds {args.seeds}; overrides {args.overrides}; runs in {out}\n")
    print("| setting | wall s (mean ± std) | max wall s | best val_acc | retrained test_acc | min test_acc |")
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        walls, tests = [r["wall_s"] for r in rows], [r["test_acc"] for r in rows]
        print(f"| {name} | {spread(walls)} | {max(walls):.1f} | {spread([r['val_acc'] for r in rows])} "
              f"| {spread(tests)} | {min(tests):.2f} |")
    default, baseline = results.values()
    ratio = statistics.mean(r["wall_s"] for r in default) / statistics.mean(r["wall_s"] for r in baseline)
    print(f"\nwall-time ratio default / baseline: {ratio:.2f}")


if __name__ == "__main__":
    main()
