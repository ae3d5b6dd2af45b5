"""Compare every strategy on a tabular benchmark: test accuracy of the best-validation cell found.

Usage: python scripts/bench_strategies.py --table ../shared/benchmarks/nb201/cifar10.csv
           [--seeds 20] [--budgets 50 100 150] [--strategies random evolution ...] [--space nb201]
Per strategy and budget it prints mean ± std over seeds of the test accuracy (the table's `report`
column) of the cell with the best validation accuracy among those queried, and the share of the
random-to-oracle gap it closes: (found - random) / (oracle - random), random being random search's
mean in the same run and the oracle the test accuracy of the best-validation cell in the whole table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from nascli import api
from nascli.registry import lookup, names

# every multi-trial strategy that searches a table by itself (one-shot strategies need a supernet, list a file)
TABLE_STRATEGIES = sorted(name for name in names("strategy") if lookup("strategy", name).needs_evaluator is None
                          and name != "list")


def _one_thread() -> None:
    """One BLAS and torch thread per worker: the workers already use every core."""
    threadpool_limits(1)
    torch.set_num_threads(1)


def trajectory(table: str, space: str, strategy: str, seed: int, budget: int, objective: str, report: str,
               work: str) -> list[float]:
    """The `report` column of the best-`objective` architecture after each query (the run goes under `work`)."""
    run = api.search([f"space={space}", "evaluator=tabular", f"evaluator.table={table}", f"strategy={strategy}",
                         f"evaluator.objective={objective}", f"evaluator.report={report}", f"seed={seed}",
                         f"search.max_trials={budget}", "retrain.enabled=false"],
                        run_dir=Path(work) / f"{strategy}-seed{seed}", quiet=True)
    best_val, best_test, curve = float("-inf"), float("nan"), []
    for trial in run.records:
        value = trial.value(objective)
        if value is not None and value > best_val:
            best_val, best_test = value, trial.metrics[report]
        curve.append(best_test)
    return curve + [best_test] * (budget - len(curve))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True)
    parser.add_argument("--space", default="nb201")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 150])
    parser.add_argument("--strategies", nargs="+", default=TABLE_STRATEGIES)
    parser.add_argument("--objective", default="val_acc")
    parser.add_argument("--report", default="test_acc")
    args = parser.parse_args()
    strategies = ["random"] + [s for s in args.strategies if s != "random"]
    table = pd.read_csv(args.table)
    oracle = table.loc[table[args.objective].idxmax(), args.report]

    start = time.perf_counter()
    work = tempfile.mkdtemp(prefix="bench-strategies-")
    jobs = [(args.table, args.space, s, seed, max(args.budgets), args.objective, args.report, work)
            for s in strategies for seed in range(args.seeds)]
    with ProcessPoolExecutor(max_workers=os.cpu_count(), initializer=_one_thread) as pool:
        curves = list(pool.map(trajectory, *zip(*jobs)))
    by_strategy = {s: [c for (_, _, name, *_), c in zip(jobs, curves) if name == s] for s in strategies}

    print(f"table {args.table} ({len(table)} architectures), space {args.space}, {args.seeds} seeds; "
          f"oracle {args.report} {oracle:.2f}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {time.perf_counter() - start:.0f} s\n")
    print("| strategy | " + " | ".join(f"{b} queries: {args.report} | gap closed" for b in args.budgets) + " |")
    print("|---|" + "---|---|" * len(args.budgets))
    random_mean = {b: statistics.mean(c[b - 1] for c in by_strategy["random"]) for b in args.budgets}
    for name, runs in by_strategy.items():
        cells = []
        for b in args.budgets:
            found = [c[b - 1] for c in runs]
            gap = (statistics.mean(found) - random_mean[b]) / (oracle - random_mean[b])
            cells.append(f"{statistics.mean(found):.2f} ± {statistics.stdev(found):.2f} | {100 * gap:.0f}%")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
