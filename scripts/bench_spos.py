"""SPOS against the default multi-trial search, end to end with the same retraining, in one benchmark run.

Usage: python scripts/bench_spos.py [--common ...] [--default ...] [--spos ...] [--seed 0] [--out DIR]
Defaults: Fashion-MNIST, the default search with search.max_seconds=720 and one-epoch trials; SPOS with a
2-epoch supernet and 90 s of inner search; both retrained within retrain.max_seconds=420.
Prints a Markdown table: the search's seconds (supernet training included), best val_acc, retrained test_acc.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    # the search (supernet training included) ends with the last trial written; retraining follows
    search_s = (run_dir / "trials.jsonl").stat().st_mtime - (run_dir / "run.json").stat().st_mtime
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"wall_s": wall, "search_s": round(search_s),
            "val_acc": summary["best"]["val_acc"], "test_acc": summary["test_acc"],
            "arch": json.dumps(json.loads((run_dir / "best.json").read_text())["arch"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--common", nargs="*", default=["dataset=fashion_mnist", "retrain.max_seconds=420"])
    parser.add_argument("--default", nargs="*", default=["search.max_seconds=720", "evaluator.epochs=1"])
    parser.add_argument("--spos", nargs="*", default=["strategy=spos", "strategy.epochs=2",
                                                      "search.max_seconds=90"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-spos-"))
    results = {name: run([*args.common, *extra, f"seed={args.seed}"], out / name)
               for name, extra in (("spos", args.spos), ("default", args.default))}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; seed {args.seed}; "
          f"common {args.common}; runs in {out}\n")
    print("| setting | overrides | search s | whole command s | best val_acc | retrained test_acc |")
    print("|---|---|---|---|---|---|")
    for name, extra in (("spos", args.spos), ("default", args.default)):
        r = results[name]
        print(f"| {name} | `{' '.join(extra)}` | {r['search_s']} | {r['wall_s']:.0f} | {r['val_acc']:.2f} "
              f"| {r['test_acc']:.2f} |")
    spos, default = results["spos"], results["default"]
    print(f"\nsearch-time ratio spos / default: {spos['search_s'] / default['search_s']:.2f}; "
          f"test_acc difference spos - default: {spos['test_acc'] - default['test_acc']:+.2f}")
    for name, r in results.items():
        print(f"{name} architecture: {r['arch']}")


if __name__ == "__main__":
    main()
