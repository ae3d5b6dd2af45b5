"""`nas show`: one run in detail — its outcome, config, best architecture, top trials, retraining and files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from nascli.goal import parse_constraints
from nascli.printout import TRIAL_COLUMNS, cell
from nascli.records import Front, GoalRecord, Summary, WarmStartRecord, kept_flops_share
from nascli.rundir import MODEL, RunDir
from nascli.settings import SearchSettings, typed_settings
from nascli.spaces.stored import load_model


def _size(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def show(run_dir: Path, console: Console, top: int = 10) -> None:
    """Print a run directory for people."""
    run = RunDir(run_dir)
    config = OmegaConf.to_container(run.config())
    summary = run.summary() or Summary(kind="search", status="unknown")
    running = summary.status == "running" and run.in_use()
    status = summary.status
    if summary.status == "running" and not running:
        status = f"stopped without a summary (killed or crashed); continue with: nas search --resume {run_dir}"
    goal = summary.goal or GoalRecord(objectives=[])
    best, trials, retrained = run.best(), run.trials(), run.retrain_metrics()
    objective = summary.objective
    console.rule(f"[bold]{run_dir}")
    facts = {
        "kind": summary.kind, "status": status, "dataset": summary.dataset,
        "space": (config.get("space") or {}).get("name"), "strategy": summary.strategy, "seed": config.get("seed"),
        "trials": f"{summary.n_trials} ({summary.n_failed} failed)",
        "objectives": ", ".join(goal.objectives) or None,
        "constraints": ", ".join(str(c) for c in parse_constraints(goal.constraints)) or None,
        "feasible": summary.n_feasible, "screened out": summary.n_screened,
        "hypervolume": (summary.hypervolume or {}).get("value"),
        f"best {objective}": summary.best_value, "test_acc": summary.test_acc,
        "wall seconds": summary.wall_seconds, "budget left": _budget_left(config, summary) if running else None,
        "error": summary.error,
    }
    for key, value in facts.items():
        if value is not None:
            console.print(f"{key:>14}  {cell(value)}", markup=False)
    console.rule("config")
    console.print(OmegaConf.to_yaml(OmegaConf.create(config)).rstrip(), markup=False)
    if best is not None:
        console.rule("best architecture")
        console.print(json.dumps(best.arch, indent=2), markup=False)
        console.print(f"hash {best.hash}", markup=False)
        confirmed = best.confirmed
        if confirmed is not None:
            console.print(f"confirmed: {objective} {cell(confirmed.mean)} on average over {confirmed.runs} runs "
                          f"({', '.join(cell(v) for v in confirmed.values)})", markup=False)
            over = confirmed.reference_kept_over
            if over is not None:
                console.print(f"a reference of the space, kept over {over.get('hash')} (mean {cell(over.get('mean'))}): "
                              f"not better by more than search.reference_margin standard errors "
                              f"({cell(over.get('standard_error'))})", markup=False)
    if trials:
        ok = sorted((t for t in trials if t.value(objective) is not None), key=lambda t: -t.metrics[objective])
        console.rule(f"top {min(top, len(ok))} of {len(trials)} trials by {objective}")
        extra = [c for c in ("test_acc", *TRIAL_COLUMNS) if any(t.metrics.get(c) is not None for t in ok)]
        repeats = any(t.repeat is not None for t in trials)
        table = Table("id", objective, *extra, "budget", *(["repeat"] if repeats else []), "hash")
        for trial in ok[:top]:
            table.add_row(str(trial.id), cell(trial.metrics[objective]), *(cell(trial.metrics.get(c)) for c in extra),
                          cell(trial.budget), *([cell(trial.repeat)] if repeats else []), trial.hash)
        console.print(table)
        for trial in [t for t in trials if not t.ok][:top]:
            console.print(f"trial {trial.id} failed: {trial.error}", markup=False)
    front = run.front()
    if front is not None:
        _print_front(front, console)
    warm = run.warm_start()
    if warm is not None:
        _print_warm_start(warm, console)
    if retrained is not None:
        console.rule("retraining")
        for key, value in retrained.items():
            if key not in ("confusion_matrix", "baselines", "curve", "compressed", "pruned"):
                console.print(f"{key:>14}  {cell(value)}", markup=False)
        curve = retrained.get("curve")
        if curve:
            console.print(f"{'curve':>14}  {len(curve)} epochs, training loss {cell(curve[0]['loss'])} -> "
                          f"{cell(curve[-1]['loss'])}, accuracy {cell(curve[0]['acc'])} -> {cell(curve[-1]['acc'])}",
                          markup=False)
        matrix = retrained.get("confusion_matrix")
        if matrix:
            console.print(f"{'confusion':>14}  rows: true class, columns: predicted", markup=False)
            for row in matrix:
                console.print(" " * 16 + " ".join(f"{v:>5}" for v in row), markup=False)
    if retrained is not None and retrained.get("baselines"):
        _print_baselines(retrained, console)
    pruned = (retrained or {}).get("pruned")
    if pruned:
        console.print(f"{'pruned':>14}  from {pruned.get('source')}: {cell(kept_flops_share(retrained))} of its "
                      f"FLOPs; test_acc {cell(pruned.get('source_test_acc'))} there, "
                      f"{cell(pruned.get('test_acc_before_finetune'))} once cut, {cell(retrained.get('test_acc'))} "
                      f"after {pruned.get('finetune_epochs')} epochs of fine-tuning", markup=False)
    for name, c in ((retrained or {}).get("compressed") or {}).items():
        console.print(f"{name:>14}  test_acc {cell(c.get('int8_test_acc'))} (float {cell(c.get('float_test_acc'))}), "
                      f"{_size(c.get('int8_bytes', 0))} (float {_size(c.get('float_bytes', 0))}), "
                      f"{cell(c.get('speedup_batch1'))}x / {cell(c.get('speedup_batch64'))}x the float speed "
                      f"(batch 1 / 64): {c.get('file')}", markup=False)
    if run.file(MODEL).exists():
        checkpoint = load_model(run_dir)[1]  # built and loaded: a checkpoint that does not fit its space is refused
        tensors = checkpoint["state_dict"].values()
        console.print(f"{'checkpoint':>14}  {len(tensors)} tensors, {sum(t.numel() for t in tensors)} values, "
                      f"input {checkpoint['input_shape']}, {checkpoint['num_classes']} classes", markup=False)
    console.rule("files")
    for path in run.files():
        console.print(f"{_size(path.stat().st_size):>9}  {path.relative_to(run_dir)}", markup=False)


def _budget_left(config: dict[str, Any], summary: Summary) -> Optional[str]:
    """What a running search has left of search.max_trials and search.max_seconds."""
    search = typed_settings(SearchSettings, config.get("search") or {}, "search.")
    left = [] if search.trial_limit is None else [f"{max(search.trial_limit - summary.n_trials, 0)} trials"]
    if search.max_seconds is not None:
        left.append(f"{max(search.max_seconds - (summary.wall_seconds or 0), 0):.0f} s")
    return ", ".join(left) or None


def watch(run_dir: Path, console: Console, top: int, seconds: float) -> None:
    """Show the run again every `seconds` while a nas process writes it; Ctrl-C stops watching (not the search)."""
    try:
        while True:
            console.clear()
            show(run_dir, console, top)
            if not RunDir(run_dir).in_use():
                return
            console.print(f"watching: redrawn every {seconds:g} s while the search runs; Ctrl-C stops watching",
                          markup=False)
            time.sleep(seconds)
    except KeyboardInterrupt:
        return


def _print_baselines(retrained: dict[str, Any], console: Console) -> None:
    console.rule("baselines, retrained the same way")
    columns = ("test_acc", "test_f1", "params", "flops", "train_seconds")
    table = Table("network", *columns)
    table.add_row("found", *(cell(retrained.get(c)) for c in columns))
    for name, result in retrained["baselines"].items():
        label = f"{name} (= {result['same_as']})" if "same_as" in result else name
        table.add_row(label, *(cell(result.get(c)) for c in columns) if "error" not in result
                      else ("failed: " + str(result["error"]), *[""] * (len(columns) - 1)))
    console.print(table)


def _print_front(front: Front, console: Console) -> None:
    """The Pareto front's members, by their first objective; `nas retrain RUN --pick ID` retrains one."""
    metrics = [text.rpartition(":")[0] for text in front.objectives]
    first = front.objectives[0]
    members = sorted(front.trials, key=lambda t: t.metrics[metrics[0]], reverse=first.endswith(":max"))
    console.rule(f"Pareto front: {len(members)} trials ({', '.join(front.objectives)}); "
                 "retrain one with --pick ID")
    table = Table("id", *metrics, "hash")
    for trial in members:
        table.add_row(str(trial.id), *(cell(trial.metrics.get(m)) for m in metrics), trial.hash)
    console.print(table)


def _print_warm_start(warm: WarmStartRecord, console: Console) -> None:
    """The earlier tasks a warm start used and each model's weight after every tenth observation and the last."""
    console.rule("warm start: earlier tasks and their weights (RGPE)")
    for task in warm.tasks:
        console.print(f"{task['name']}: {task['architectures']} architectures from {', '.join(task['runs'])}",
                      markup=False)
    history = warm.weights
    table = Table("after observation", *warm.models)
    for n, weights in enumerate(history, start=1):
        if n % 10 == 0 or n == len(history):
            table.add_row(str(n), *(f"{w:.2f}" for w in weights))
    console.print(table)
