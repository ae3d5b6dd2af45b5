"""Cross-run reports: one row per setting, mean ± std over seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from nascli.errors import UserError
from nascli.records import Summary
from nascli.rundir import RunDir, find_runs

# Keys that differ between runs of the same setting and so do not split groups.
PER_RUN_KEYS = ("seed", "run_dir", "sweep_dir", "logger")  # settings that do not change what a run finds
METRICS = ("trials", "val_acc", "test_acc", "params", "flops", "latency_ms", "wall_s", "front_size", "hypervolume",
           "int8_test_acc", "int8_speedup")
SPREAD = ("val_acc", "test_acc", "hypervolume", "int8_test_acc")  # shown as mean ± std
BASELINE = "test_acc:"  # column prefix of a baseline's test accuracy (fusion: each input alone, late fusion)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as one level of dotted keys (each under `prefix`), lists as JSON text."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(node) if isinstance(node, list) else node}


def _run_row(run: RunDir) -> dict[str, Any]:
    config = OmegaConf.to_container(run.config())
    summary = run.summary() or Summary(kind="search", status="unknown")
    best = run.best()
    found = best.metrics if best is not None else {}
    costs = run.retrain_metrics() or found
    int8 = (costs.get("compressed") or {}).get("int8") or {}
    settings = {k: v for k, v in flatten(config).items() if k.split(".")[0] not in PER_RUN_KEYS}
    return {
        "run": str(run.path),
        "kind": summary.kind,
        "dataset": summary.dataset or (config.get("dataset") or {}).get("name"),
        "space": (config.get("space") or {}).get("name"),
        "strategy": (config.get("strategy") or {}).get("name") if summary.kind == "search" else "(retrain)",
        "seed": config.get("seed"),
        "status": summary.status,
        "trials": len(run.trials()) if summary.kind == "search" else summary.n_trials,
        "val_acc": found.get("val_acc"),  # of the best trial, whatever the objective was
        "test_acc": summary.test_acc,
        "params": costs.get("params"),
        "flops": costs.get("flops"),
        "latency_ms": costs.get("latency_ms"),
        "wall_s": summary.wall_seconds,
        "front_size": summary.front_size,  # several objectives: the Pareto front and its hypervolume
        "hypervolume": (summary.hypervolume or {}).get("value"),
        "int8_test_acc": int8.get("int8_test_acc"),  # nas export --quantize int8: the int8 model's, and its speed
        "int8_speedup": int8.get("speedup_batch64"),
        **{f"{BASELINE}{name}": acc for name, acc in (summary.baselines or {}).items()},
        "_settings": settings,
        "_key": json.dumps([summary.kind, sorted(settings.items(), key=lambda kv: kv[0])], default=str),
    }


def collect_runs(paths: list[Path]) -> pd.DataFrame:
    """One row per run directory found at or below `paths`."""
    run_dirs = find_runs(paths)
    if not run_dirs:
        raise UserError(f"no runs found under {', '.join(str(p) for p in paths)}")
    return pd.DataFrame([_run_row(run) for run in run_dirs])


def _distinguishing(groups: list[dict[str, Any]]) -> list[str]:
    """The settings keys whose values differ between groups of the same dataset, space and strategy."""
    keys = sorted({k for g in groups for k in g})
    return [k for k in keys if len({json.dumps(g.get(k), default=str) for g in groups}) > 1]


def _baselines(table: pd.DataFrame) -> list[str]:
    """The baseline columns of a table of runs (or of its summary, without the _mean suffix)."""
    return sorted({c.removesuffix("_mean") for c in table.columns if c.startswith(BASELINE) and not c.endswith("_std")})


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Group runs that differ only in seed; numeric columns get _mean (and _std for accuracies); `_key` names the group."""
    rows = []
    for _, group in runs.groupby("_key", sort=False):
        first = group.iloc[0]
        row: dict[str, Any] = {c: first[c] for c in ("dataset", "space", "strategy")}
        row["_settings"] = first["_settings"]
        row["_key"] = first["_key"]
        row["runs"] = len(group)
        row["seeds"] = ",".join(str(s) for s in sorted(group["seed"].dropna().astype(int)))
        for metric in (*METRICS, *_baselines(runs)):
            values = pd.to_numeric(group[metric], errors="coerce").dropna()
            row[f"{metric}_mean"] = values.mean() if len(values) else math.nan
            if metric in SPREAD or metric.startswith(BASELINE):
                row[f"{metric}_std"] = values.std() if len(values) > 1 else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    labels = []
    for _, row in table.iterrows():
        peers = table[(table.dataset == row.dataset) & (table.space == row.space) & (table.strategy == row.strategy)]
        keys = _distinguishing(list(peers["_settings"])) if len(peers) > 1 else []
        labels.append(" ".join(f"{k}={row['_settings'].get(k)}" for k in keys))
    table.insert(3, "settings", labels)
    return table.drop(columns="_settings").sort_values(["dataset", "space", "strategy", "settings"], ignore_index=True)


def report(paths: list[Path]) -> pd.DataFrame:
    """The summary table of every run at or below `paths`."""
    return summarize(collect_runs(paths)).drop(columns="_key")


def _count(value: float) -> str:
    if math.isnan(value):
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def _whole(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:g}"


def _spread(mean: float, std: float, digits: int = 2) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The summary formatted for people: accuracies as mean ± std, counts with units."""
    shown = table[["dataset", "space", "strategy", "settings", "runs", "seeds"]].copy()
    shown["trials"] = table["trials_mean"].map(_whole)
    shown["val_acc"] = [_spread(m, s) for m, s in zip(table["val_acc_mean"], table["val_acc_std"])]
    shown["test_acc"] = [_spread(m, s) for m, s in zip(table["test_acc_mean"], table["test_acc_std"])]
    shown["params"] = table["params_mean"].map(_count)
    shown["flops"] = table["flops_mean"].map(_count)
    shown["wall_s"] = table["wall_s_mean"].map(lambda v: "-" if math.isnan(v) else f"{v:.1f}")
    if table["front_size_mean"].notna().any():
        shown["front"] = table["front_size_mean"].map(_whole)
        shown["hypervolume"] = [_spread(m, s, 3) for m, s in zip(table["hypervolume_mean"], table["hypervolume_std"])]
    if table["int8_test_acc_mean"].notna().any():
        shown["int8 test_acc"] = [_spread(m, s) for m, s in zip(table["int8_test_acc_mean"], table["int8_test_acc_std"])]
        shown["int8 speed-up"] = table["int8_speedup_mean"].map(lambda v: "-" if math.isnan(v) else f"{v:.2f}x")
    for column in _baselines(table):
        shown[column] = [_spread(m, s) for m, s in zip(table[f"{column}_mean"], table[f"{column}_std"])]
    if not shown["settings"].astype(bool).any():
        shown = shown.drop(columns="settings")
    return shown
