"""Wires config, data, space, strategy, evaluator, executor and run directory into a search and a retraining."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from nascli.config import RunConfig, resume_config, validate
from nascli.data.base import DataSplits, joined
from nascli.errors import TrialFailed, UserError
from nascli.evaluators.base import Evaluator
from nascli.evaluators.profile import LATENCY_BATCH, count_flops, count_params, measure_latency
from nascli.evaluators.metrics import evaluate_model
from nascli.evaluators.training import TimeLimit, batches_per_epoch, train
from nascli.executors.base import failure_reason
from nascli.factory import (build_evaluator, build_executor, build_space, build_strategy,
                            check_data, load_data, multi_objective_strategies)
from nascli.goal import Goal
from nascli.hardware import Hardware, describe_environment, resolve_hardware, trial_devices
from nascli.printout import console, print_result, progress
from nascli.rundir import STATE, RunDir, Summary, Trial, read_json
from nascli.scheduler import Scheduler
from nascli.seeding import derive_seed
from nascli.spaces.base import Arch, SearchSpace
from nascli.strategies.base import Strategy
from nascli.transfer import initialise, input_channels, parameter_groups, weight_source
from nascli.warmstart import Knowledge, load_earlier


@dataclass
class SearchParts:
    """What a search runs with, built and checked before its run directory is created."""

    space: SearchSpace
    strategy: Strategy
    evaluator: Evaluator
    hardware: Hardware
    devices: list[str]
    knowledge: Optional[Knowledge] = None


def _record(command: str, overrides: list[str], hardware: Hardware, **extra: Any) -> dict[str, Any]:
    return {
        "command": command,
        "overrides": overrides,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
        "environment": describe_environment(hardware),
    }


def check_job(cfg: RunConfig) -> None:
    """Cheap checks of a job before anything is created: what is retrained, the data, a table, the GPUs, Ray.

    Building the job repeats none of them: loading the data and reading a table fail with the same errors.
    """
    if cfg.source:
        source_architecture(cfg)
    if cfg.trains or cfg.source:
        check_data(cfg)
    needed = cfg.strategy.cls.needs_evaluator
    if needed is not None and cfg.evaluator.name != needed:
        raise UserError(f"strategy={cfg.strategy.name} works with evaluator={needed}, not evaluator={cfg.evaluator.name}")
    cfg.space.cls.check(cfg.space.settings)
    cfg.strategy.cls.check(cfg.strategy.settings)
    cfg.evaluator.cls.check(cfg.evaluator.settings)
    goal = Goal.from_settings(cfg.search, "")  # the evaluator's objective is not needed to check the rest
    if goal.multi and not cfg.strategy.cls.multi_objective:
        raise UserError(f"strategy={cfg.strategy.name} optimises one objective; for several search.objectives use "
                        f"one of: {', '.join(multi_objective_strategies())}")
    named = [c.metric for c in goal.constraints] + [o.metric for o in goal.objectives if cfg.search.objectives]
    if named:
        cfg.evaluator.cls.check_metrics(cfg.evaluator.settings, named)
    if cfg.search.warm_start:
        load_earlier(cfg.search.warm_start, build_space(cfg), cfg.space.name)
    if cfg.retrain.init and (cfg.retrain.enabled or cfg.source):
        RunDir(Path(cfg.retrain.init).expanduser()).require_run()
    trial_devices(cfg.hardware)
    _check_ray(cfg)


def _check_ray(cfg: RunConfig) -> None:
    if cfg.hardware.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise UserError("hardware=ray needs Ray: pip install 'nascli[ray]'")


def _parts(cfg: RunConfig, job_index: Optional[int] = None) -> SearchParts:
    """Build the search's components: the data is loaded and a table read here, before the run directory exists."""
    _check_ray(cfg)
    devices = trial_devices(cfg.hardware, job_index)
    hardware = resolve_hardware(cfg.hardware, devices[0])
    space = build_space(cfg)
    data = load_data(cfg, hardware) if cfg.trains else None
    if data is not None:
        _check_fits(cfg, space, data)
    evaluator = build_evaluator(cfg, space, hardware, data)
    earlier = load_earlier(cfg.search.warm_start, space, cfg.space.name) if cfg.search.warm_start else None
    knowledge = Knowledge(earlier, space, cfg.search.warm_start_suggestions) if earlier else None
    return SearchParts(space, build_strategy(cfg, space), evaluator, hardware, devices, knowledge)


def search(cfg: RunConfig, run_dir: Path, overrides: list[str], job_index: Optional[int] = None) -> Summary:
    """Search the space with the strategy, log every trial, then retrain the best architecture."""
    RunDir(run_dir).ensure_free()
    parts = _parts(cfg, job_index)
    record = _record("search", overrides, parts.hardware, trial_devices=parts.devices)
    run = _start_run(run_dir, cfg, record, parts.evaluator.data)
    return _search(cfg, run, parts)


def _check_fits(cfg: RunConfig, space: SearchSpace, data: DataSplits) -> None:
    """Refuse a space whose networks cannot take the dataset's inputs (images vs token sequences)."""
    if space.modality != data.modality:
        hints = {"tokens": "space=text", "image": "an image space such as space=chain"}
        hint = hints.get(data.modality, "space=fusion") if isinstance(data.modality, str) else "space=fusion"
        raise UserError(f"space={cfg.space.name} builds networks for {space.modality} inputs, but "
                        f"dataset={cfg.dataset.name} gives {data.modality}; use {hint}")


def _start_run(run_dir: Path, cfg: RunConfig, record: dict[str, Any], data: Optional[DataSplits]) -> RunDir:
    """Create the run directory with its config and record, and the tokenizer when the data is text."""
    cfg.raw.run_dir = str(run_dir)
    run = RunDir.create(run_dir, cfg.raw, record)
    if data is not None and data.vocabulary is not None:
        run.write_vocabulary(data.vocabulary)
    return run


def resume(run_dir: Path, overrides: list[str]) -> Summary:
    """Continue a search that was stopped, from its checkpoint and trial log; overrides may change search.*, hardware.*.

    Everything is read and checked before anything is written, so a refused resume leaves the run as it was.
    """
    run = RunDir(run_dir)
    run.require_run()
    previous = run.summary()
    if previous is not None and previous.status in ("completed", "failed"):
        raise UserError(f"{run_dir} holds a finished search (status {previous.status}); there is nothing to resume")
    record = run.record()
    cfg = validate(resume_config(run.config(), record.get("overrides", []), overrides))
    state, logged = run.state(), run.trials()
    if state is None and logged:
        raise UserError(f"{run_dir} has {len(logged)} logged trials but no checkpoint (state.json is missing or "
                        "empty), so the search cannot continue exactly; start a new search")
    parts = _parts(cfg)
    if state is not None:
        try:
            parts.strategy.load_state_dict(state["strategy"])
        except Exception as exc:
            raise UserError(f"{run.file(STATE)} does not hold a {cfg.strategy.name} checkpoint ({exc}); "
                            "the file is corrupt") from None
    run.open_for_writing()
    try:
        logged = run.recover_trials()
        run.save_config(cfg.raw)
        record.setdefault("resumed", []).append(_record("resume", overrides, parts.hardware, trial_devices=parts.devices))
        run.write_record(record)
    except BaseException:
        run.close()
        raise
    crashed = previous is None or previous.status in ("running", "crashed")  # it died rather than being interrupted
    return _search(cfg, run, parts, state, logged, crashed)


def _search(
    cfg: RunConfig, run: RunDir, parts: SearchParts, state: Optional[dict[str, Any]] = None,
    logged: list[Trial] = (), crashed: bool = False,
) -> Summary:
    evaluator = parts.evaluator
    goal = Goal.from_settings(cfg.search, evaluator.objective)
    summary = Summary(
        kind="search", dataset=evaluator.dataset_label or cfg.dataset.name, space=cfg.space.name,
        strategy=cfg.strategy.name, seed=cfg.seed, objective=goal.primary.metric,
    )
    references = {parts.space.hash(arch) for arch in parts.space.references()}
    incumbents = Incumbents(goal, run, summary, cfg.space.name, evaluator.test_metric, references,
                            cfg.search.reference_margin)

    with _summary_written(run, summary, state["elapsed"] if state else 0.0):
        if getattr(evaluator.settings, "epoch_seconds", None) != getattr(cfg.evaluator.settings, "epoch_seconds", None):
            console.print(f"trials: at most {evaluator.settings.epoch_seconds:.3g} s of training per epoch, as in the "
                          f"retraining (retrain.max_seconds={cfg.retrain.max_seconds:g} over {cfg.retrain.epochs} "
                          "epochs); longer ones are shortened to the steps that fit, their schedule compressed "
                          "(evaluator.epoch_seconds sets it; inf: no limit)")
        evaluator.prepare(run, cfg.seed)
        parts.strategy.prepare(evaluator, goal, parts.knowledge)
        parts.strategy.log = console.print
        with build_executor(cfg, evaluator, parts.devices) as executor:
            scheduler = Scheduler(parts.strategy, parts.space, executor, cfg.seed, cfg.search, goal, run.write_state)
            scheduler.log = console.print
            if state:
                scheduler.restore(state, {trial.id: trial for trial in logged}, crashed)
            for trial in logged:
                incumbents.add(trial)
            with progress() as bar:
                limit = cfg.search.trial_limit
                total = None if limit is None else limit + scheduler.confirming_planned()
                task = bar.add_task(f"search {cfg.strategy.name}", total=total, completed=len(logged))
                for trial in scheduler.run():
                    run.append_trial(trial)
                    incumbents.add(trial, parts.strategy.screened)
                    if parts.knowledge is not None:  # the weights up to the trial before: it is told after this
                        run.write_warm_start(parts.knowledge.describe())
                    best_text = f"best {summary.objective} {summary.best_value:.2f}" if summary.best else ""
                    bar.update(task, advance=1, description=f"search {cfg.strategy.name}  {best_text}")
            if parts.knowledge is not None:
                run.write_warm_start(parts.knowledge.describe())
            best = incumbents.best
            if best is None:
                met = " and met the constraints" if goal.constraints else ""
                summary.status, summary.error = "failed", f"none of the {summary.n_trials} trials succeeded{met}"
            elif cfg.retrain.enabled:
                data = parts.evaluator.data if parts.evaluator.data is not None else load_data(cfg, parts.hardware)
                _retrain_into(run, summary, best.arch, cfg, parts.space, data, parts.hardware)
            else:
                summary.status = "completed"
    return summary


class Incumbents:
    """The search's best trial and, with several objectives, its Pareto front, kept in the run as trials arrive.

    The best is the front member the goal's pick rule chooses (with one objective: the first trial with the
    best value); infeasible and failed trials never become it. Once confirming runs (search.confirm_top) have
    come in, the best is the confirmed architecture with the best mean objective over all its runs, none of
    them failed — or the best confirmed of the space's `references` where that mean beats the reference's by
    no more than `margin` standard errors of the difference.
    """

    def __init__(self, goal: Goal, run: RunDir, summary: Summary, space: str, test_metric: Optional[str],
                 references: Optional[set[str]] = None, margin: float = 0.0) -> None:
        self.goal, self.run, self.summary, self.space, self.test_metric = goal, run, summary, space, test_metric
        self.references, self.margin = references or set(), margin
        self.trials: list[Trial] = []
        self.runs: dict[tuple[str, Optional[float]], list[Trial]] = {}  # every run of an architecture at a budget
        self.best: Optional[Trial] = None
        if goal.multi or goal.constraints:
            summary.goal = goal.describe()
        if goal.constraints:
            summary.n_feasible, summary.n_screened = 0, 0

    def add(self, trial: Trial, screened: Optional[int] = None) -> None:
        """Count `trial`; update best.json, and front.json with several objectives, when it changes them."""
        self.summary.count(trial)
        if screened is not None and self.goal.constraints:
            self.summary.n_screened = screened
        self.runs.setdefault((trial.hash, trial.budget), []).append(trial)
        if trial.repeat is not None:
            self._confirm()
            return
        if not trial.ok:
            return
        missing = [name for name in self.goal.metrics if name not in trial.metrics]
        if missing:
            raise UserError(f"the search's objectives and constraints name {', '.join(missing)}, which trials do "
                            f"not record; they record: {', '.join(sorted(trial.metrics))}")
        self.trials.append(trial)
        metrics = [t.metrics for t in self.trials]
        front = self.goal.front(metrics)
        if self.goal.multi:
            self._write_front(metrics, front)
        chosen = self.goal.pick(metrics, front)
        if chosen is not None and self.trials[chosen] is not self.best:
            self._choose(self.trials[chosen], self.trials[chosen].metrics[self.summary.objective])

    def _confirm(self) -> None:
        """Choose, among the architectures with confirming runs, the one with the best mean objective; a reference
        of the space within `margin` standard errors of it is chosen instead."""
        confirmed = [runs for runs in self.runs.values()
                     if len(runs) > 1 and all(t.ok for t in runs) and self.goal.feasible(runs[0].metrics)]
        if not confirmed:
            return

        def scores(runs: list[Trial]) -> np.ndarray:
            return np.array([self.goal.values(t.metrics)[0] for t in runs])

        runs = max(confirmed, key=lambda runs: scores(runs).mean())
        references = [r for r in confirmed if r[0].hash in self.references]
        over = None
        if references and runs[0].hash not in self.references:
            reference = max(references, key=lambda runs: scores(runs).mean())
            a, b = scores(runs), scores(reference)
            error = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
            if a.mean() - b.mean() <= self.margin * error:
                mean = float(np.mean([t.metrics[self.summary.objective] for t in runs]))
                over = {"hash": runs[0].hash, "mean": round(mean, 6), "standard_error": round(error, 6)}
                runs = reference
        values = [t.metrics[self.summary.objective] for t in runs]
        self._choose(runs[0], float(np.mean(values)), values, over)

    def _choose(self, trial: Trial, value: float, confirmed: Optional[list[float]] = None,
                over: Optional[dict[str, Any]] = None) -> None:
        """Make `trial` the best, worth `value` (its objective, or the mean of its runs when `confirmed`); `over`:
        the architecture with a better mean that a reference was kept over."""
        self.best = trial
        extra = {"confirmed": {"runs": len(confirmed), "mean": round(value, 6), "values": confirmed,
                               **({"reference_kept_over": over} if over else {})}} if confirmed else {}
        self.run.write_best({**trial.to_dict(), "space": self.space, **extra})
        self.summary.best = {"id": trial.id, "hash": trial.hash, self.summary.objective: value,
                             **({"runs": len(confirmed)} if confirmed else {})}
        if self.test_metric:
            self.summary.test_acc = trial.metrics.get(self.test_metric)

    def _write_front(self, metrics: list[dict[str, Any]], front: list[int]) -> None:
        bounds = self.goal.observed_bounds(metrics) if front else {}
        volume = {"value": round(self.goal.hypervolume(metrics, bounds), 6) if front else 0.0,
                  "bounds": {name: list(pair) for name, pair in bounds.items()},
                  "note": "objectives scaled to [0, 1] between the best and worst feasible values of this run; "
                          "reference point at the worst corner"}
        self.summary.front_size, self.summary.hypervolume = len(front), volume
        self.run.write_front({**self.goal.describe(), "hypervolume": volume,
                              "trials": [self.trials[i].to_dict() for i in front]})


@contextmanager
def _summary_written(run: RunDir, summary: Summary, elapsed_before: float = 0.0) -> Iterator[None]:
    """Write summary.json with the wall time however the work ends, release the run, and print the result.

    Ctrl-C (or SIGTERM) records the status `interrupted`, prints how to continue, and exits with code 130.
    """
    start = time.perf_counter()
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted, summary.status = True, "interrupted"
    except BaseException as exc:  # a bug or a kill: the run stays resumable, as after a crash
        summary.status, summary.error = "crashed", f"stopped by {type(exc).__name__}: {exc}"
        raise
    finally:
        summary.wall_seconds = round(elapsed_before + time.perf_counter() - start, 3)
        run.write_summary(summary)
        run.close()
    print_result(run, summary)
    if interrupted:
        raise SystemExit(130)


def _retrained(
    arch: Arch, cfg: RunConfig, space: SearchSpace, data: DataSplits, hardware: Hardware, label: str = "retrain",
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """`arch` trained on train+validation with the retrain settings and scored on test: the model and its metrics.

    Raises TrialFailed, MemoryError or RuntimeError when training fails.
    """
    seed = derive_seed(cfg.seed, "retrain")  # the same for every architecture: baselines on common random numbers
    torch.manual_seed(seed)
    model = space.build(arch, data.input_shape, data.num_classes, data.vocab_size)
    transfer, groups = None, None
    if cfg.retrain.init:
        transfer = initialise(model, weight_source(cfg.retrain.init)(arch), cfg.retrain.init, input_channels(data))
        groups = parameter_groups(model, transfer, cfg.retrain.finetune, cfg.retrain.copied_lr)
    model = hardware.place(model)
    x = joined(data.train_x, data.val_x)
    y = torch.cat([data.train_y, data.val_y])
    epochs, limits = cfg.retrain.epochs, ()
    if cfg.retrain.max_seconds is not None:  # at least one epoch, however short the budget
        limits = (TimeLimit(cfg.retrain.max_seconds, "retrain.max_seconds", shorten=True,
                            min_steps=batches_per_epoch(len(y), cfg.retrain.batch_size)),)
    with progress() as bar:
        task = bar.add_task(label, total=epochs)

        def on_epoch(epoch: int, loss: float) -> None:
            bar.update(task, completed=epoch, description=f"{label}  loss {loss:.3f}")

        seconds = train(
            model, x, y, cfg.retrain, hardware, seed, epochs=epochs,
            augmentation=data.augmentation, on_epoch=on_epoch, groups=groups, limits=limits,
            compiled=hardware.compile,
        )
    fitted = limits[0].fitted_epochs(epochs) if limits else epochs
    if fitted < epochs:
        epochs = fitted
        console.print(f"retrain: {epochs:.1f} of {cfg.retrain.epochs} epochs fit in retrain.max_seconds="
                      f"{cfg.retrain.max_seconds:g} ({seconds:.0f} s of training)")
    scores = evaluate_model(model, data.test_x, data.test_y, hardware, "test", confusion=True)
    latency_batch = getattr(cfg.evaluator.settings, "latency_batch", LATENCY_BATCH)  # as the trials measure it
    return model, {
        **scores,
        "params": count_params(model),
        "flops": count_flops(model, data.input_shape, hardware.device, vocab_size=data.vocab_size),
        "latency_ms": measure_latency(model, data.input_shape, latency_batch, hardware, vocab_size=data.vocab_size),
        "train_seconds": seconds,
        "epochs": epochs,
        **({"init": {**transfer.summary(), "finetune": cfg.retrain.finetune}} if transfer else {}),
    }


def _retrain_into(
    run: RunDir, summary: Summary, arch: Arch, cfg: RunConfig, space: SearchSpace, data: DataSplits,
    hardware: Hardware,
) -> None:
    """Retrain `arch` on train+validation, score it on test, save metrics and checkpoint; update the summary.

    With baselines (search.baselines, by default where the space has them), each baseline architecture is
    retrained the same way and its metrics are saved beside the found one's.
    """
    try:
        model, metrics = _retrained(arch, cfg, space, data, hardware)
    except (TrialFailed, MemoryError, RuntimeError) as exc:  # torch's OutOfMemoryError is a RuntimeError
        summary.status, summary.error = "failed", f"retraining failed: {failure_reason(exc)}"
        return
    run.write_retrain_metrics(metrics)
    run.save_model({
        "arch": arch,
        "space": cfg.space.name,
        "input_shape": data.input_shape if isinstance(data.input_shape, dict) else list(data.input_shape),
        "num_classes": data.num_classes,
        "vocab_size": data.vocab_size,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    })
    summary.status, summary.test_acc = "completed", metrics["test_acc"]
    baselines = space.baselines(arch) if cfg.search.baselines is not False else {}
    if not baselines:
        if cfg.search.baselines:
            console.print(f"baselines: space={cfg.space.name} has none to retrain beside the found network")
        return
    if cfg.retrain.init:
        console.print("baselines: skipped, as retrain.init starts the found network from other weights")
        return
    results: dict[str, dict[str, Any]] = {}
    # on common random numbers an architecture retrains to the same scores: one met before is not retrained
    retrained = {space.hash(arch): ("found", metrics)}
    for name, baseline in baselines.items():
        key = space.hash(baseline)
        if key in retrained:
            same, scores = retrained[key]
            results[name] = {"arch": baseline, **_scores(scores), "same_as": same}
            console.print(f"baseline {name}: the same network as {same}, not retrained")
        else:
            try:
                _, scores = _retrained(baseline, cfg, space, data, hardware, label=f"baseline {name}")
                results[name], retrained[key] = {"arch": baseline, **_scores(scores)}, (name, scores)
            except (TrialFailed, MemoryError, RuntimeError) as exc:
                results[name] = {"arch": baseline, "error": failure_reason(exc)}
        run.write_retrain_metrics({**metrics, "baselines": results})  # each as it ends: an interruption keeps them
    summary.baselines = {name: result.get("test_acc") for name, result in results.items()}


def _scores(metrics: dict[str, Any]) -> dict[str, Any]:
    """A retraining's metrics as a baseline records them: without the confusion matrix."""
    return {k: v for k, v in metrics.items() if k != "confusion_matrix"}


def read_architecture(source: Path, pick: Optional[int] = None) -> Arch:
    """The architecture to retrain: a search run directory's best (or its trial `pick`), or an architecture JSON file."""
    if pick is not None:
        if not source.is_dir():
            raise UserError(f"--pick takes a trial of a search run directory; {source} is not one")
        trial = next((t for t in RunDir(source).trials() if t.id == pick), None)
        if trial is None or not trial.ok:
            raise UserError(f"{source} has no successful trial {pick}; `nas show {source}` lists its trials and front")
        return trial.arch
    if source.is_dir():
        best = RunDir(source).best()
        if best is None:
            raise UserError(f"{source} has no best.json: its search found no architecture to retrain")
        return best["arch"]
    if not source.exists():
        raise UserError(f"{source} does not exist; pass a search run directory or an architecture JSON file")
    data = read_json(source)
    arch = data.get("arch", data) if isinstance(data, dict) else data
    if not isinstance(arch, dict) or not arch:
        raise UserError(f"{source} holds no architecture (a JSON object, or one with an 'arch' object)")
    return arch


def source_architecture(cfg: RunConfig) -> Arch:
    """The architecture `cfg.source` (and `cfg.pick`) names, checked against the configured space."""
    source = Path(cfg.source)
    arch = read_architecture(source, cfg.pick)
    try:
        build_space(cfg).validate(arch)
    except Exception as exc:
        raise UserError(f"{source} does not hold a valid {cfg.space.name} architecture: {exc}") from None
    return arch


def retrain(cfg: RunConfig, run_dir: Path, overrides: list[str]) -> Summary:
    """Retrain the architecture of `cfg.source` (a search run or a JSON file) into a new run directory."""
    if not cfg.source:
        raise UserError("nas retrain needs a source: a search run directory or an architecture JSON file")
    RunDir(run_dir).ensure_free()
    source, arch, space = Path(cfg.source), source_architecture(cfg), build_space(cfg)
    hardware = resolve_hardware(cfg.hardware)
    data = load_data(cfg, hardware)
    _check_fits(cfg, space, data)
    if cfg.retrain.init:  # fails now, before the run directory exists, if nothing fits
        initialise(space.build(arch, data.input_shape, data.num_classes, data.vocab_size),
                   weight_source(cfg.retrain.init)(arch), cfg.retrain.init, input_channels(data))
    run = _start_run(run_dir, cfg, _record("retrain", overrides, hardware, source=str(source)), data)
    run.write_best({"arch": arch, "hash": space.hash(arch), "space": cfg.space.name, "source": str(source),
                    **({"trial": cfg.pick} if cfg.pick is not None else {})})
    summary = Summary(kind="retrain", source=str(source), dataset=cfg.dataset.name, space=cfg.space.name,
                      seed=cfg.seed)
    with _summary_written(run, summary):
        _retrain_into(run, summary, arch, cfg, space, data, hardware)
    return summary
