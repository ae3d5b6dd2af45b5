"""`nas show`: one run in detail — its outcome, config, best architecture, top trials, retraining and files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from nascli.store import load_run, read_json, read_trials

TRIAL_COLUMNS = ("params", "flops", "latency_ms", "train_seconds")


def _size(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def show(run_dir: Path, console: Console, top: int = 10) -> None:
    """Print a run directory for people."""
    run = load_run(run_dir)
    summary = run.summary
    objective = summary.get("objective", "val_acc")
    console.rule(f"[bold]{run_dir}")
    facts = {
        "kind": summary.get("kind"), "status": summary.get("status"), "dataset": summary.get("dataset"),
        "space": run.config.get("space", {}).get("name"), "strategy": summary.get("strategy"),
        "seed": run.config.get("seed"),
        "trials": f"{summary.get('n_trials')} ({summary.get('n_failed')} failed)",
        f"best {objective}": (summary.get("best") or {}).get(objective), "test_acc": summary.get("test_acc"),
        "wall seconds": summary.get("wall_seconds"), "error": summary.get("error"),
    }
    for key, value in facts.items():
        if value is not None:
            console.print(f"{key:>14}  {_cell(value)}")
    console.rule("config")
    console.print(OmegaConf.to_yaml(OmegaConf.create(run.config)).rstrip(), markup=False)
    if run.best is not None:
        console.rule("best architecture")
        console.print(json.dumps(run.best["arch"], indent=2), markup=False)
        console.print(f"hash {run.best.get('hash')}", markup=False)
    trials = read_trials(run_dir / "trials.jsonl")
    if trials:
        ok = sorted((t for t in trials if t["status"] == "ok"), key=lambda t: -t["metrics"][objective])
        console.rule(f"top {min(top, len(ok))} of {len(trials)} trials by {objective}")
        extra = [c for c in ("test_acc", *TRIAL_COLUMNS) if any(t["metrics"].get(c) is not None for t in ok)]
        table = Table("id", objective, *extra, "budget", "hash")
        for trial in ok[:top]:
            metrics = trial["metrics"]
            table.add_row(str(trial["id"]), _cell(metrics[objective]), *(_cell(metrics.get(c)) for c in extra),
                          _cell(trial.get("budget")), trial["hash"])
        console.print(table)
        failed = [t for t in trials if t["status"] != "ok"]
        for trial in failed[:top]:
            console.print(f"trial {trial['id']} failed: {trial.get('error')}", markup=False)
    metrics_path = run_dir / "retrain" / "metrics.json"
    if metrics_path.exists():
        console.rule("retraining")
        for key, value in read_json(metrics_path).items():
            console.print(f"{key:>14}  {_cell(value)}")
    console.rule("files")
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.name.startswith(".")):
        console.print(f"{_size(path.stat().st_size):>9}  {path.relative_to(run_dir)}", markup=False)
