"""Wires config, data, space, strategy, evaluator and store into a search and a retraining."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from omegaconf import OmegaConf

from nascli.config import RunConfig, resume_config, validate
from nascli.data.base import DataSplits
from nascli.errors import TrialFailed, UserError
from nascli.evaluators.base import Evaluator
from nascli.evaluators.profile import count_flops, count_params, measure_latency
from nascli.evaluators.training import accuracy, train
from nascli.executors.base import Executor
from nascli.executors.inline import InlineExecutor
from nascli.hardware import Hardware, cpu_threads, describe_environment, resolve_hardware, trial_devices
from nascli.scheduler import Scheduler, derive_seed
from nascli.spaces.base import Arch, SearchSpace
from nascli.store import RunStore, ensure_free, load_run, read_json

console = Console(highlight=False, soft_wrap=True)  # paths stay whole, for copying


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console,
    )


def _record(command: str, overrides: list[str], hardware: Hardware, **extra: Any) -> dict[str, Any]:
    return {
        "command": command,
        "overrides": overrides,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
        "environment": describe_environment(hardware),
    }


def _load_data(cfg: RunConfig, hardware: Hardware) -> DataSplits:
    return cfg.dataset.create().load().to(hardware.device)


def _executor(cfg: RunConfig, evaluator: Evaluator, devices: list[str]) -> Executor:
    """Trials in this process when one slot on its device suffices, else in worker processes or on Ray."""
    if cfg.hardware.executor == "ray":
        from nascli.executors.ray import RayExecutor

        return RayExecutor(OmegaConf.to_container(cfg.raw), cfg.hardware)
    if devices == [str(evaluator.hardware.device)]:
        return InlineExecutor(evaluator)
    from nascli.executors.processes import ProcessExecutor

    return ProcessExecutor(OmegaConf.to_container(cfg.raw), devices, cpu_threads(cfg.hardware, len(devices)))


def search(cfg: RunConfig, run_dir: Path, overrides: list[str], job_index: Optional[int] = None) -> dict[str, Any]:
    """Search the space with the strategy, log every trial, then retrain the best architecture."""
    ensure_free(run_dir)
    devices = trial_devices(cfg.hardware, job_index)
    hardware = resolve_hardware(cfg.hardware, devices[0])
    cfg.raw.run_dir = str(run_dir)
    store = RunStore.create(run_dir, cfg.raw, _record("search", overrides, hardware, trial_devices=devices))
    return _search(cfg, store, hardware, devices)


def resume(run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """Continue a search that was stopped, from its checkpoint and trial log; overrides may change search.*, hardware.*."""
    store = RunStore.reopen(run_dir)
    try:
        status = read_json(run_dir / "summary.json").get("status") if (run_dir / "summary.json").exists() else None
        if status in ("completed", "failed"):
            raise UserError(f"{run_dir} holds a finished search (status {status}); there is nothing to resume")
        record = read_json(run_dir / "run.json")
        stored = OmegaConf.load(run_dir / "config.yaml")
        cfg = validate(resume_config(stored, record.get("overrides", []), overrides))
        check_job(cfg)
        devices = trial_devices(cfg.hardware)
        hardware = resolve_hardware(cfg.hardware, devices[0])
        store.save_config(cfg.raw)
        record.setdefault("resumed", []).append(_record("resume", overrides, hardware, trial_devices=devices))
        store.write("run.json", record)
        state = read_json(run_dir / "state.json") if (run_dir / "state.json").exists() else None
    except BaseException:
        store.close()
        raise
    return _search(cfg, store, hardware, devices, state, store.recover_trials())


def check_job(cfg: RunConfig) -> None:
    """Checks that are cheap and would otherwise fail only after work started: the data, the GPUs, Ray."""
    if cfg.trains:
        cfg.dataset.create().check()
    trial_devices(cfg.hardware)
    if cfg.hardware.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise UserError("hardware=ray needs Ray: pip install 'nascli[ray]'")


def _search(
    cfg: RunConfig, store: RunStore, hardware: Hardware, devices: list[str],
    state: Optional[dict[str, Any]] = None, logged: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    space = cfg.space.create()
    strategy = cfg.strategy.create(space=space, seed=cfg.seed)
    data = _load_data(cfg, hardware) if cfg.trains else None
    evaluator = cfg.evaluator.create(space=space, data=data, hardware=hardware)
    summary: dict[str, Any] = {
        "kind": "search", "status": "running", "dataset": evaluator.dataset_label or cfg.dataset.name,
        "space": cfg.space.name, "strategy": cfg.strategy.name, "seed": cfg.seed,
        "objective": evaluator.objective, "n_trials": 0, "n_failed": 0, "best": None,
    }
    best: Optional[dict[str, Any]] = None

    def account(trial: dict[str, Any]) -> None:
        nonlocal best
        summary["n_trials"] += 1
        summary["n_failed"] += trial["status"] != "ok"
        objective = trial["metrics"].get(evaluator.objective)
        if trial["status"] == "ok" and (best is None or objective > best["metrics"][evaluator.objective]):
            best = {**trial, "space": cfg.space.name}
            store.write("best.json", best)
            summary["best"] = {"id": trial["id"], "hash": trial["hash"], evaluator.objective: objective}
            if evaluator.test_metric:
                summary["test_acc"] = trial["metrics"][evaluator.test_metric]

    elapsed_before = state["elapsed"] if state else 0.0
    with _summary_written(store, summary, elapsed_before), _executor(cfg, evaluator, devices) as executor:
        scheduler = Scheduler(
            strategy, executor, cfg.seed, cfg.search, evaluator.objective, store.write_state
        )
        if state:
            scheduler.restore(state, {trial["id"]: trial for trial in logged})
        for trial in logged:
            account(trial)
        with _progress() as progress:
            task = progress.add_task(f"search {cfg.strategy.name}", total=cfg.search.max_trials, completed=len(logged))
            for trial in scheduler.run():
                store.append_trial(trial)
                account(trial)
                best_text = f"best {evaluator.objective} {best['metrics'][evaluator.objective]:.2f}" if best else ""
                progress.update(task, advance=1, description=f"search {cfg.strategy.name}  {best_text}")
        if best is None:
            summary.update(status="failed", error="no trial succeeded")
        elif cfg.retrain.enabled:
            summary.update(_retrain_into(store, best["arch"], cfg, space, data, hardware))
        else:
            summary["status"] = "completed"
    return summary


@contextmanager
def _summary_written(store: RunStore, summary: dict[str, Any], elapsed_before: float = 0.0) -> Iterator[None]:
    """Write summary.json with the wall time however the work ends (Ctrl-C: status interrupted); print the result."""
    start = time.perf_counter()
    try:
        yield
    except KeyboardInterrupt:
        summary["status"] = "interrupted"
        raise
    finally:
        summary["wall_seconds"] = round(elapsed_before + time.perf_counter() - start, 3)
        store.write("summary.json", summary)
        store.close()
    _print_result(store.root, summary)


def _retrain_into(
    store: RunStore, arch: Arch, cfg: RunConfig, space: SearchSpace, data: DataSplits, hardware: Hardware
) -> dict[str, Any]:
    """Retrain `arch` on train+validation, score it on test, save metrics and checkpoint; summary fields."""
    seed = derive_seed(cfg.seed, "retrain:" + space.hash(arch))
    torch.manual_seed(seed)
    model = space.build(arch, data.input_shape, data.num_classes).to(hardware.device)
    if hardware.channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.cat([data.train_x, data.val_x])
    y = torch.cat([data.train_y, data.val_y])
    try:
        with _progress() as progress:
            task = progress.add_task("retrain", total=cfg.retrain.epochs)

            def on_epoch(epoch: int, loss: float) -> None:
                progress.update(task, completed=epoch, description=f"retrain  loss {loss:.3f}")

            seconds = train(
                model, x, y, cfg.retrain, hardware, seed,
                crop_padding=data.crop_padding, hflip=data.hflip, on_epoch=on_epoch,
            )
    except TrialFailed as exc:
        return {"status": "failed", "error": f"retraining failed: {exc}"}
    test_acc, test_top5 = accuracy(model, data.test_x, data.test_y, hardware)
    metrics = {
        "test_acc": test_acc,
        "test_top5": test_top5,
        "params": count_params(model),
        "flops": count_flops(model, data.input_shape, hardware.device),
        "latency_ms": measure_latency(model, data.input_shape, cfg.retrain.batch_size, hardware),
        "train_seconds": seconds,
        "epochs": cfg.retrain.epochs,
    }
    store.write("retrain/metrics.json", metrics)
    store.save_model("retrain/model.pt", {
        "arch": arch,
        "space": cfg.space.name,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    })
    return {"status": "completed", "test_acc": test_acc}


def read_architecture(source: Path) -> tuple[Arch, Optional[list[str]]]:
    """The architecture to retrain from a search run directory (with its overrides) or an architecture JSON file."""
    if source.is_dir():
        run = load_run(source)
        if run.best is None:
            raise UserError(f"{source} has no best.json: its search found no architecture to retrain")
        record = read_json(source / "run.json") if (source / "run.json").exists() else {}
        return run.best["arch"], record.get("overrides", [])
    if not source.exists():
        raise UserError(f"{source} does not exist; pass a search run directory or an architecture JSON file")
    data = read_json(source)
    arch = data.get("arch", data) if isinstance(data, dict) else data
    return arch, None


def retrain(cfg: RunConfig, arch: Arch, source: Path, run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """Retrain an architecture from a search run or a JSON file into a new run directory."""
    ensure_free(run_dir)
    space = cfg.space.create()
    try:
        space.validate(arch)
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{source} does not hold a valid {cfg.space.name} architecture: {exc}") from None
    hardware = resolve_hardware(cfg.hardware)
    data = _load_data(cfg, hardware)
    cfg.raw.run_dir = str(run_dir)
    store = RunStore.create(run_dir, cfg.raw, _record("retrain", overrides, hardware, source=str(source)))
    store.write("best.json", {"arch": arch, "hash": space.hash(arch), "space": cfg.space.name, "source": str(source)})
    summary: dict[str, Any] = {
        "kind": "retrain", "status": "running", "source": str(source), "dataset": cfg.dataset.name,
        "space": cfg.space.name, "strategy": None, "seed": cfg.seed, "n_trials": 0, "n_failed": 0, "best": None,
    }
    with _summary_written(store, summary):
        summary.update(_retrain_into(store, arch, cfg, space, data, hardware))
    return summary


def _print_result(run_dir: Path, summary: dict[str, Any]) -> None:
    """A short summary of the finished work and the paths that matter."""
    parts = [f"{summary['n_trials']} trials ({summary['n_failed']} failed)"] if summary["kind"] == "search" else []
    if summary.get("best"):
        objective = summary["objective"]
        parts.append(f"best {objective} {summary['best'][objective]:.2f} (trial {summary['best']['id']})")
    if summary.get("test_acc") is not None:
        parts.append(f"test_acc {summary['test_acc']:.2f}")
    if summary.get("error"):
        parts.append(f"[red]{summary['error']}[/red]")
    console.print(f"{summary['kind']} {summary['status']} in {summary['wall_seconds']:.0f} s: {', '.join(parts)}")
    console.print(f"results in {run_dir}")
    for name, what in (("best.json", "best architecture"), ("retrain/model.pt", "retrained model")):
        if (run_dir / name).exists():
            console.print(f"  {what:<18} {run_dir / name}")
    if summary["status"] == "interrupted":
        console.print(f"continue with: nas search --resume {run_dir}")
    elif (run_dir / "retrain" / "model.pt").exists():
        console.print(f"next: nas show {run_dir}\n      nas export {run_dir} --format onnx\n"
                      f"      nas report {run_dir} --html report.html")
