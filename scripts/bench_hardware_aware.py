"""A latency-constrained, two-objective search with real training, and every front member retrained.

Usage: python scripts/bench_hardware_aware.py [--dataset digits] [--latency-ms 1.0] [--trials 30]
           [--retrain-epochs 40] [--out DIR] [--overrides KEY=VALUE ...]

It runs `nas search dataset=D search.objectives=[val_acc:max,latency_ms:min] search.constraints={latency_ms: L}`
(strategy bo, retraining off), then `nas retrain RUN --pick ID` for every member of its front.json, and prints
each member's search-time validation accuracy and latency next to its retrained test accuracy and the latency
measured on the retrained model (both on this machine's device, a batch of 64).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def nas(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "nascli", *args], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--retrain-epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--overrides", nargs="*", default=[])
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-hardware-"))
    run = out / "search"
    start = time.perf_counter()
    nas("search", f"dataset={args.dataset}", "strategy=bo", "search.objectives=[val_acc:max,latency_ms:min]",
        f"search.constraints={{latency_ms: {args.latency_ms}}}", f"search.max_trials={args.trials}",
        "retrain.enabled=false", f"run_dir={run}", *args.overrides)
    searched = time.perf_counter() - start
    summary = json.loads((run / "summary.json").read_text())
    front = json.loads((run / "front.json").read_text())
    print(f"search: {summary['n_trials']} trials ({summary['n_feasible']} feasible, latency_ms <= {args.latency_ms}), "
          f"{len(front['trials'])} on the front, hypervolume {summary['hypervolume']['value']:.3f}, "
          f"{searched:.0f} s; {run}\n")
    print("| trial | val_acc (search) | latency_ms (search) | params | test_acc (retrained) | latency_ms (retrained) |")
    print("|---|---|---|---|---|---|")
    for member in sorted(front["trials"], key=lambda t: t["metrics"]["latency_ms"]):
        again = out / f"retrain-{member['id']}"
        nas("retrain", str(run), "--pick", str(member["id"]), f"retrain.epochs={args.retrain_epochs}", f"run_dir={again}")
        metrics = json.loads((again / "retrain" / "metrics.json").read_text())
        m = member["metrics"]
        print(f"| {member['id']} | {m['val_acc']:.2f} | {m['latency_ms']:.3f} | {m['params']} | "
              f"{metrics['test_acc']:.2f} | {metrics['latency_ms']:.3f} |")
    print(f"\n{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
