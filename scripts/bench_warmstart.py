"""Warm starts on tabular benchmarks: a search on a target table guided by earlier searches on a source table.

Usage: python scripts/bench_warmstart.py --source ../shared/benchmarks/nb201/cifar10.csv
           --target ../shared/benchmarks/nb201/cifar100.csv [--seeds 20] [--strategies bo evolution local]
           [--source-runs 3] [--source-queries 100] [--first-seed 0]

It first runs `--source-runs` bo searches of `--source-queries` queries on the source table, and the same on a
copy of it whose val_acc is shuffled across cells (an unrelated source). Then, per strategy and seed, it searches
the target table cold, warm-started from the source runs, and warm-started from the shuffled runs, and prints the
share of the random-to-oracle gap closed at 10, 20, 50 and 100 queries: (found - random) / (oracle - random), where
found is the target test accuracy of the best-validation cell queried so far, random is random search's mean at
that many queries in the same run and the oracle is the best-validation cell of the whole target table.
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

BUDGETS = (10, 20, 50, 100)


def _one_thread() -> None:
    threadpool_limits(1)
    torch.set_num_threads(1)


def tabular(table: str, strategy: str, seed: int, queries: int) -> list[str]:
    """The overrides of a search of `queries` queries on a NAS-Bench-201 table."""
    return ["space=nb201", "evaluator=tabular", f"evaluator.table={table}", f"strategy={strategy}", f"seed={seed}",
            f"search.max_trials={queries}", "retrain.enabled=false"]


def source_run(table: str, seed: int, queries: int, run_dir: str) -> str:
    api.search(tabular(table, "bo", seed, queries), run_dir=run_dir, quiet=True)
    return run_dir


def curve(table: str, strategy: str, seed: int, warm: list[str]) -> list[float]:
    """Target test accuracy of the best-validation cell after each query."""
    overrides = tabular(table, strategy, seed, max(BUDGETS))
    if warm:
        overrides.append(f"search.warm_start=[{','.join(warm)}]")
    with tempfile.TemporaryDirectory(prefix="bench-warmstart-") as folder:
        trials = api.search(overrides, run_dir=Path(folder) / "run", quiet=True).records
    best_val, best_test, values = float("-inf"), float("nan"), []
    for trial in trials:
        if trial.ok and trial.metrics["val_acc"] > best_val:
            best_val, best_test = trial.metrics["val_acc"], trial.metrics["test_acc"]
        values.append(best_test)
    return values + [best_test] * (max(BUDGETS) - len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0, help="target searches use seeds first-seed, first-seed + 1, ...")
    parser.add_argument("--strategies", nargs="+", default=["bo", "evolution", "local"])
    parser.add_argument("--source-runs", type=int, default=3)
    parser.add_argument("--source-queries", type=int, default=100)
    args = parser.parse_args()
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-warmstart-"))
    shuffled = work / "shuffled.csv"
    table = pd.read_csv(args.source)
    table["val_acc"] = table["val_acc"].sample(frac=1.0, random_state=0).to_numpy()
    table.to_csv(shuffled, index=False)
    target = pd.read_csv(args.target)
    oracle = target.loc[target["val_acc"].idxmax(), "test_acc"]
    with ProcessPoolExecutor(max_workers=os.cpu_count(), initializer=_one_thread) as pool:
        jobs = [(src, seed, args.source_queries, str(work / name / f"seed{seed}"))
                for name, src in (("related", args.source), ("shuffled", str(shuffled))) for seed in range(args.source_runs)]
        list(pool.map(source_run, *zip(*jobs)))
        sources = {"cold": [], "warm": [str(work / "related")], "warm from shuffled": [str(work / "shuffled")]}
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        runs = [(strategy, kind, seed) for strategy in ["random", *args.strategies] for kind in sources
                for seed in seeds if strategy != "random" or kind == "cold"]
        curves = list(pool.map(curve, *zip(*[(args.target, s, seed, sources[kind]) for s, kind, seed in runs])))
    random = {b: statistics.mean(c[b - 1] for (s, _, _), c in zip(runs, curves) if s == "random") for b in BUDGETS}
    print(f"source {args.source} ({args.source_runs} bo runs x {args.source_queries} queries), target {args.target}, "
          f"{args.seeds} seeds; oracle test_acc {oracle:.2f}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {time.perf_counter() - start:.0f} s\n")
    print("| strategy | start | " + " | ".join(f"{b} queries: gap closed (test_acc)" for b in BUDGETS) + " |")
    print("|---|---|" + "---|" * len(BUDGETS))
    for strategy in ["random", *args.strategies]:
        for kind in sources:
            chosen = [c for (s, k, _), c in zip(runs, curves) if s == strategy and k == kind]
            if not chosen:
                continue
            cells = []
            for b in BUDGETS:
                found = statistics.mean(c[b - 1] for c in chosen)
                cells.append(f"{(found - random[b]) / (oracle - random[b]):.2f} ({found:.2f})")
            print(f"| {strategy} | {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
