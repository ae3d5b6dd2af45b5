"""How well cheap scores rank NAS-Bench-201 cells: zero-cost proxies or one-shot (supernet) scores vs test accuracy.

Usage: python scripts/bench_ranking.py --table ../shared/benchmarks/nb201/cifar10.csv --root CIFAR_DIR
       [--cells 1000] [--seed 0] [--out DIR] [--overrides evaluator=proxy evaluator.proxy=rank_mean]
       [--spos EPOCHS]  (one-shot scores: a supernet trained EPOCHS epochs scores the cells)
       [--from-run DIR]  (analyse an earlier run of this script again instead of scoring cells)
Draws `--cells` random cells and scores them with `nas search dataset=cifar10 space=nb201 strategy=list` plus the
overrides (`evaluator=proxy ...`), or with `--spos`, `strategy=spos strategy.search=list` (a supernet trained first,
its paths scored; overrides such as `dataset.train_fraction=... space.cells_per_stage=...`), then prints
Spearman's rho and Kendall's tau of every score the trials recorded (proxies, their rank averages, val_acc) with
the table's test_acc, next to published figures.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from scipy.stats import kendalltau, spearmanr

# Abdelfattah et al. 2021, Table 1 (NAS-Bench-201, CIFAR-10, 200-epoch test accuracy, all 15,625 cells),
# as in the authors' notebook zero-cost-nas/notebooks/nasbench201_correlations.ipynb.
PUBLISHED = {"proxy_synflow": 0.737, "proxy_snip": 0.596, "proxy_grad_norm": 0.594, "proxy_jacov": 0.731}
COMBINATIONS = {"rank average: synflow + jacov": ["proxy_synflow", "proxy_jacov"],
                "rank average: synflow + jacov + snip + grad_norm":
                    ["proxy_synflow", "proxy_jacov", "proxy_snip", "proxy_grad_norm"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--root", type=Path, default=None, help="CIFAR-10 (image folder or python batches)")
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="the run directory (default: a temporary folder)")
    parser.add_argument("--overrides", nargs="*", default=["evaluator=proxy", "evaluator.proxy=rank_mean"],
                        help="the evaluator and its settings (default: every proxy and their rank_mean)")
    parser.add_argument("--spos", type=int, default=None, metavar="EPOCHS",
                        help="score the cells as paths of a supernet trained this many epochs (strategy=spos)")
    parser.add_argument("--from-run", type=Path, default=None, help="only analyse this earlier run of the script")
    args = parser.parse_args()
    table = pd.read_csv(args.table).set_index("arch")
    start = time.perf_counter()
    if args.from_run is None and args.root is None:
        parser.error("--root is required unless --from-run names an earlier run")
    if args.from_run is None:
        cells = random.Random(args.seed).sample(list(table.index), args.cells)
        out = args.out or Path(tempfile.mkdtemp(prefix="bench-ranking-")) / "run"
        out.parent.mkdir(parents=True, exist_ok=True)
        listing = out.parent / "cells.txt"
        listing.write_text("\n".join(cells) + "\n")
        listed = (["strategy=list", f"strategy.path={listing}"] if args.spos is None else
                  ["strategy=spos", f"strategy.epochs={args.spos}", "strategy.search=list",
                   f"+strategy.search_settings.path={listing}"])
        subprocess.run([sys.executable, "-m", "nascli", "search", "dataset=cifar10", f"dataset.root={args.root}",
                        "space=nb201", *listed, f"search.max_trials={args.cells}",
                        "retrain.enabled=false", f"seed={args.seed}", f"run_dir={out}", *args.overrides],
                       check=True, stdout=subprocess.DEVNULL)
    else:
        out = args.from_run
    wall = time.perf_counter() - start if args.from_run is None else json.loads((out / "summary.json").read_text())["wall_seconds"]
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    rows = pd.DataFrame([{"arch": t["arch"]["cell"], **(t["metrics"] or {})} for t in trials if t["status"] == "ok"])
    rows["test_acc"] = table.loc[rows["arch"], "test_acc"].to_numpy()
    scores = [c for c in rows.columns if c.startswith("proxy_") or c in ("rank_mean", "val_acc")]
    columns = sorted(scores) + [c for c in ("params", "flops") if f"proxy_{c}" not in scores]
    ranks = rows[columns].rank(na_option="top")  # ascending: no score (NaN jacov) gets the lowest ranks
    combined = {name: parts for name, parts in COMBINATIONS.items() if set(parts) <= set(columns)}
    for name, parts in combined.items():
        rows[name] = ranks[parts].mean(axis=1)
    print(f"{len(rows)} of {len(trials)} cells scored in {wall:.0f} s ({wall / len(trials):.2f} s per cell); {out}\n")
    print("| score | Spearman rho | Kendall tau | published rho |")
    print("|---|---|---|---|")
    for column in [*columns, *combined]:
        values = rows[column].fillna(rows[column].min() - 1)  # no score (NaN jacov): ranked last
        rho = spearmanr(values, rows["test_acc"]).statistic
        tau = kendalltau(values, rows["test_acc"]).statistic
        print(f"| {column} | {rho:.3f} | {tau:.3f} | {PUBLISHED.get(column, '')} |")


if __name__ == "__main__":
    main()
