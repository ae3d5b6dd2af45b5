"""Multi-objective and constrained search on a tabular benchmark with cost columns (accuracy against a device's latency).

Usage: python scripts/bench_multiobjective.py --table ../shared/benchmarks/nb201/cifar10-hw.csv
           [--costs eyeriss_latency 1080ti_1_latency params_m] [--seeds 20] [--budget 100]
           [--strategies random nsga2 bo local] [--constrained bo evolution local random] [--quantile 0.25]
           [--overrides strategy.initial=15 ...]

Front: each strategy searches `val_acc:max` and `COST:min` (the cost known before training, from the table) for
`--budget` queries; the figure is the hypervolume of the front it measured as a share of the whole table's true
front, accuracy scaled between the table's median and maximum val_acc, the cost between its minimum and maximum,
reference point at the worst corner. Constrained: each strategy maximises val_acc under `COST <= the --quantile
quantile of the column`; the figure is the test accuracy of the best (feasible) cell found against the test accuracy
of the best-validation feasible cell of the table, and how many runs returned an infeasible best (must be none).
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
from nascli.config import load_config
from nascli.goal import Goal


def _one_thread() -> None:
    threadpool_limits(1)
    torch.set_num_threads(1)


def run(table: str, strategy: str, seed: int, budget: int, overrides: list[str]) -> list[dict]:
    """The metrics of every trial of one search (failed trials left out); its run directory is a temporary one."""
    with tempfile.TemporaryDirectory(prefix="bench-multiobjective-") as folder:
        run = api.search(["space=nb201", "evaluator=tabular", f"evaluator.table={table}", f"strategy={strategy}",
                             f"seed={seed}", f"search.max_trials={budget}", "retrain.enabled=false", *overrides],
                            run_dir=Path(folder) / "run", quiet=True)
        return [trial.metrics for trial in run.records if trial.ok]


def front_share(args: argparse.Namespace, table: pd.DataFrame, cost: str, pool: ProcessPoolExecutor) -> None:
    goal = Goal.from_settings(load_config([f"search.objectives=[val_acc:max,{cost}:min]"]).search, "val_acc")
    bounds = {"val_acc": (table["val_acc"].max(), table["val_acc"].median()), cost: (table[cost].min(), table[cost].max())}
    true = goal.hypervolume(table[["val_acc", cost]].to_dict("records"), bounds)
    overrides = [f"search.objectives=[val_acc:max,{cost}:min]", f"evaluator.costs=[{cost}]", *args.overrides]
    jobs = [(args.table, s, seed, args.budget, overrides) for s in args.strategies for seed in range(args.seeds)]
    results = list(pool.map(run, *zip(*jobs)))
    print(f"\n### val_acc:max, {cost}:min — hypervolume share of the true front ({true:.4f}) at {args.budget} queries\n")
    print("| strategy | mean ± std | min | queries to 0.9 (median) |")
    print("|---|---|---|---|")
    for name in args.strategies:
        shares, reach = [], []
        for (_, s, _, _, _), trials in zip(jobs, results):
            if s != name:
                continue
            shares.append(goal.hypervolume(trials, bounds) / true)
            curve = [goal.hypervolume(trials[:n], bounds) / true for n in range(10, len(trials) + 1, 10)]
            reach.append(next((10 * (k + 1) for k, v in enumerate(curve) if v >= 0.9), float("inf")))
        print(f"| {name} | {statistics.mean(shares):.3f} ± {statistics.stdev(shares):.3f} | {min(shares):.3f} | "
              f"{statistics.median(reach)} |")


def constrained(args: argparse.Namespace, table: pd.DataFrame, cost: str, pool: ProcessPoolExecutor) -> None:
    bound = float(table[cost].quantile(args.quantile))
    feasible = table[table[cost] <= bound]
    oracle = feasible.loc[feasible["val_acc"].idxmax(), "test_acc"]
    overrides = [f"search.constraints={{{cost}: {bound}}}", f"evaluator.costs=[{cost}]", *args.overrides]
    jobs = [(args.table, s, seed, args.budget, overrides) for s in args.constrained for seed in range(args.seeds)]
    results = list(pool.map(run, *zip(*jobs)))
    print(f"\n### val_acc:max subject to {cost} <= {bound:.4g} (quantile {args.quantile}: {len(feasible)} feasible "
          f"cells; best-validation feasible cell: test_acc {oracle:.2f}) at {args.budget} queries\n")
    print("| strategy | test_acc of the best | gap to the feasible oracle | infeasible bests | queries used |")
    print("|---|---|---|---|---|")
    goal = Goal.from_settings(load_config(overrides[:1]).search, "val_acc")
    for name in args.constrained:
        found, infeasible, used = [], 0, []
        for (_, s, _, _, _), trials in zip(jobs, results):
            if s != name:
                continue
            best = trials[goal.pick(trials, goal.front(trials))]  # the runner's rule for best.json
            infeasible += best[cost] > bound
            found.append(best["test_acc"])
            used.append(len(trials))
        mean = statistics.mean(found)
        print(f"| {name} | {mean:.2f} ± {statistics.stdev(found):.2f} | {oracle - mean:.2f} | {infeasible} | "
              f"{statistics.mean(used):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True)
    parser.add_argument("--costs", nargs="+", default=["eyeriss_latency"])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--strategies", nargs="*", default=["random", "nsga2", "bo", "local"])
    parser.add_argument("--constrained", nargs="*", default=["random", "evolution", "local", "bo"])
    parser.add_argument("--quantile", type=float, default=0.25, help="the latency bound as a quantile of the column")
    parser.add_argument("--overrides", nargs="*", default=[], help="more overrides for every search, e.g. strategy.initial=15")
    args = parser.parse_args()
    table = pd.read_csv(args.table)
    start = time.perf_counter()
    print(f"table {args.table} ({len(table)} architectures), {args.seeds} seeds; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    with ProcessPoolExecutor(max_workers=os.cpu_count(), initializer=_one_thread) as pool:
        for cost in args.costs:
            if args.strategies:
                front_share(args, table, cost, pool)
            if args.constrained:
                constrained(args, table, cost, pool)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
