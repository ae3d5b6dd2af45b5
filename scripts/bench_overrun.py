"""How far a search runs past its `search.max_seconds` budget: the search's wall time beside the longest trial.

Usage: python scripts/bench_overrun.py [--budgets 30 60] [--overrides dataset=fsdd dataset.root=DIR] [--out DIR]
Runs `nas search search.max_seconds=B retrain.enabled=false` per budget and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=float, nargs="+", default=[30, 60])
    parser.add_argument("--overrides", nargs="*", default=[], help="overrides of every run (e.g. the dataset)")
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-overrun-"))
    print(f"overrides {args.overrides}; runs in {out}\n")
    print("| budget | command wall | search wall | overrun | trials | longest trial's training |")
    print("|---|---|---|---|---|---|")
    for budget in args.budgets:
        run = out / f"budget-{budget:g}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nascli", "search", *args.overrides, f"search.max_seconds={budget:g}",
                        "retrain.enabled=false", f"run_dir={run}"], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        summary = json.loads((run / "summary.json").read_text())
        trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
        longest = max(t["metrics"].get("train_seconds", 0.0) for t in trials)
        print(f"| {budget:g} s | {wall:.1f} s | {summary['wall_seconds']:.1f} s | {summary['wall_seconds'] - budget:.1f} s "
              f"| {len(trials)} | {longest:.1f} s |")


if __name__ == "__main__":
    main()
