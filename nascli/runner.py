"""Wires config, data, space, strategy, evaluator, executor and run directory into a search and a retraining."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from nascli.config import RunConfig, override_key, resume_config, validate
from nascli.console import progress
from nascli.data.base import DataSplits
from nascli.errors import Stopped, StorageError, UserError, first_line, require_extra
from nascli.evaluators.base import Evaluator
from nascli.evaluators.fitting import Start
from nascli.evaluators.profile import LATENCY_BATCH
from nascli.executors.ray import check_cluster
from nascli.factory import (build_evaluator, build_executor, build_space, build_strategy, check_data, load_data,
                            multi_objective_strategies)
from nascli.fileio import read_json
from nascli.goal import Goal
from nascli.hardware import Hardware, describe_environment, resolve_hardware, trial_devices
from nascli.printout import log, log_trial, print_result, run_log, say
from nascli.records import Best, GoalRecord, State, Summary, Trial
from nascli.retraining import Retraining
from nascli.rundir import STATE, RunDir
from nascli.scheduler import Scheduler
from nascli.selection import write_answer
from nascli.settings import Component
from nascli.spaces.base import Arch, SearchSpace
from nascli.strategies.base import Strategy
from nascli.trackers.base import tracking
from nascli.warmstart import Knowledge, load_earlier

INHERITED = ("dataset", "space", "hardware", "seed", "retrain")  # what `nas retrain RUN` takes from the search


@dataclass
class SearchParts:
    """What a search runs with, built and checked before its run directory is created."""

    space: SearchSpace
    strategy: Strategy
    evaluator: Evaluator
    hardware: Hardware
    devices: list[str]
    knowledge: Optional[Knowledge] = None


def run_record(command: str, overrides: list[str], hardware: Hardware, **extra: Any) -> dict[str, Any]:
    """run.json: the command, its overrides, when it started, what else it names (`extra`), and the machine."""
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
    _check_supernet(cfg)
    cfg.space.cls.check(cfg.space.settings)
    cfg.strategy.cls.check(cfg.strategy.settings)
    cfg.evaluator.cls.check(cfg.evaluator.settings)
    if cfg.logger is not None:
        cfg.logger.cls.check(cfg.logger.settings)
    goal = Goal.from_settings(cfg.search, "")  # the evaluator's objective is not needed to check the rest
    if goal.multi and not cfg.strategy.cls.multi_objective:
        raise UserError(f"strategy={cfg.strategy.name} optimises one objective; for several search.objectives use "
                        f"one of: {', '.join(multi_objective_strategies())}")
    named = [c.metric for c in goal.constraints] + [o.metric for o in goal.objectives if cfg.search.objectives]
    if named:
        cfg.evaluator.cls.check_metrics(cfg.evaluator.settings, named)
    if cfg.search.warm_start:
        load_earlier(cfg.search.warm_start, build_space(cfg), cfg.space.name)
    inits = {"retrain.init": cfg.retrain.init if cfg.retrain.enabled or cfg.source else None,
             "evaluator.init": getattr(cfg.evaluator.settings, "init", None)}
    for key, init in inits.items():
        if not init:
            continue
        init_space = RunDir(Path(init).expanduser()).config().space.name
        if init_space != cfg.space.name:
            raise UserError(f"{key}={init} is a run of space={init_space}; its weights cannot start a "
                            f"space={cfg.space.name} network")
    trial_devices(cfg.hardware)
    if not cfg.source:  # a retraining trains in this process, never on Ray
        _check_ray(cfg)


def _check_supernet(cfg: RunConfig) -> None:
    """A supernet evaluator scores one supernet: the one-shot strategy's, or one taken from another run."""
    taken = getattr(cfg.evaluator.settings, "supernet", None)
    if cfg.strategy.cls.trains_supernet and taken is not None:
        raise UserError(f"strategy={cfg.strategy.name} trains this run's supernet; to search the paths of "
                        f"{taken}'s, use a multi-trial strategy (e.g. strategy=evolution) with evaluator.supernet")
    if cfg.evaluator.cls.needs_supernet and not cfg.strategy.cls.trains_supernet and taken is None:
        raise UserError(f"evaluator={cfg.evaluator.name} scores the paths of a trained supernet, and this search has "
                        "no supernet to score: use a one-shot strategy (strategy=spos or strategy=darts), or "
                        "evaluator.supernet=RUN_DIR to take an earlier run's")


def _check_ray(cfg: RunConfig) -> None:
    """Ray is installed, and the cluster of hardware.ray_address answers and accepts this process (within seconds)."""
    if cfg.hardware.executor != "ray":
        return
    require_extra("hardware=ray", "ray", "ray")
    check_cluster(cfg.hardware.ray_address)


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
    strategy = build_strategy(cfg, space)
    strategy.check_evaluator(evaluator)
    earlier = load_earlier(cfg.search.warm_start, space, cfg.space.name) if cfg.search.warm_start else None
    knowledge = Knowledge(earlier, space, cfg.search.warm_start_suggestions) if earlier else None
    return SearchParts(space, strategy, evaluator, hardware, devices, knowledge)


def search(cfg: RunConfig, run_dir: Path, overrides: list[str], job_index: Optional[int] = None) -> Summary:
    """Search the space with the strategy, log every trial, then retrain the best architecture."""
    RunDir(run_dir).ensure_free()
    cfg = cfg.at(run_dir)
    parts = _parts(cfg, job_index)
    record = run_record("search", overrides, parts.hardware, trial_devices=parts.devices)
    run = start_run(cfg, record, parts.evaluator.data)
    return _search(cfg, run, parts)


def _check_fits(cfg: RunConfig, space: SearchSpace, data: DataSplits) -> None:
    """Refuse a space whose networks cannot take the dataset's inputs (images vs token sequences)."""
    if space.modality != data.modality:
        hints = {"tokens": "space=text", "image": "an image space such as space=chain"}
        hint = hints.get(data.modality, "space=fusion") if isinstance(data.modality, str) else "space=fusion"
        raise UserError(f"space={cfg.space.name} builds networks for {space.modality} inputs, but "
                        f"dataset={cfg.dataset.name} gives {data.modality}; use {hint}")


def start_run(cfg: RunConfig, record: dict[str, Any], data: Optional[DataSplits]) -> RunDir:
    """Create the config's run directory with its config and record, and the tokenizer when the data is text."""
    run = RunDir.create(Path(cfg.run_dir), cfg.raw, record)
    if data is not None and data.vocabulary is not None:
        run.write_vocabulary(data.vocabulary)
    return run


def resume(run_dir: Path, overrides: list[str]) -> Summary:
    """Continue a search that was stopped, from its checkpoint and trial log; overrides may change search.*,
    hardware.* and logger.

    Everything is read and checked before anything is written, so a refused resume leaves the run as it was.
    """
    run = RunDir(run_dir)
    run.require_run()
    previous = run.summary()
    if previous is not None and previous.status in ("completed", "failed"):
        raise UserError(f"{run_dir} holds a finished search (status {previous.status}); there is nothing to resume")
    record = run.record()
    cfg = validate(resume_config(run.config(), record.get("overrides", []), overrides))
    if cfg.logger is not None:
        cfg.logger.cls.check(cfg.logger.settings)
    address = cfg.hardware.ray_address
    if address and "hardware.ray_address" not in {override_key(o) for o in overrides}:
        raise UserError(f"{run_dir} ran on the Ray cluster at {address}, and a stored address is never used on its "
                        f"own: pass hardware.ray_address={address} to resume there (or hardware.ray_address=null)")
    state, logged = run.state(), run.trials()
    if state is None and logged:
        raise UserError(f"{run_dir} has {len(logged)} logged trials but no checkpoint (state.json is missing or "
                        "empty), so the search cannot continue exactly; start a new search")
    parts = _parts(cfg)
    if state is not None:
        try:
            parts.strategy.load_state_dict(state.strategy)
        except Exception as exc:
            raise UserError(f"{run.file(STATE)} does not hold a {cfg.strategy.name} checkpoint ({exc}); "
                            "the file is corrupt") from None
        for pending in state.pending:
            try:
                parts.space.validate(pending.arch)
            except Exception as exc:
                raise UserError(f"{run.file(STATE)} has a pending trial {pending.id} that is no {cfg.space.name} "
                                f"architecture ({first_line(exc)}); the file is corrupt") from None
    run.open_for_writing()
    try:
        logged = run.recover_trials()
        run.save_config(cfg.raw)
        record.setdefault("resumed", []).append(
            run_record("resume", overrides, parts.hardware, trial_devices=parts.devices))
        run.write_record(record)
    except BaseException:
        run.close()
        raise
    crashed = previous is None or previous.status in ("running", "crashed")  # it died rather than being interrupted
    return _search(cfg, run, parts, state, logged, crashed)


def _search(
    cfg: RunConfig, run: RunDir, parts: SearchParts, state: Optional[State] = None,
    logged: list[Trial] = (), crashed: bool = False,
) -> Summary:
    evaluator = parts.evaluator
    goal = Goal.from_settings(cfg.search, evaluator.objective)
    summary = Summary(
        kind="search", dataset=evaluator.dataset_label or cfg.dataset.name, space=cfg.space.name,
        strategy=cfg.strategy.name, seed=cfg.seed, objective=goal.primary.metric,
    )
    if goal.multi or goal.constraints:
        summary.goal = GoalRecord(**goal.describe())
    if goal.constraints:
        summary.n_feasible, summary.n_screened = 0, 0

    with summary_written(run, summary, cfg.logger, state.elapsed if state else 0.0) as track:
        for line in cfg.derived.values():
            say(line)
        parts.strategy.before_trials(run, evaluator, cfg.seed)
        evaluator.prepare(run, cfg.seed)
        parts.strategy.prepare(evaluator, goal, parts.knowledge)
        parts.strategy.log = say
        with build_executor(cfg, evaluator, parts.devices) as executor:
            scheduler = Scheduler(parts.strategy, parts.space, executor, cfg.seed, cfg.search, goal, run.write_state)
            scheduler.log = say
            if state:
                scheduler.restore(state, {trial.id: trial for trial in logged}, crashed)

            def answer() -> None:
                write_answer(run, summary, scheduler.selection, cfg.space.name, evaluator.test_metric)

            for trial in logged:
                summary.count(trial)
            if logged:
                answer()
            run.write_summary(summary)  # status running: `nas show` reads the search's progress from it
            with progress() as bar:
                limit = cfg.search.trial_limit
                timed = limit is None  # a time budget only: the bar counts its seconds, not trials
                label = f"search {cfg.strategy.name}" + (" (seconds)" if timed else "")
                total = cfg.search.max_seconds if timed else limit + scheduler.confirming_planned()
                task = bar.add_task(label, total=total, completed=scheduler.elapsed() if timed else len(logged))
                for trial in scheduler.run():
                    run.append_trial(trial)
                    log_trial(trial, summary.objective)
                    track(trial)
                    summary.count(trial, parts.strategy.screened if goal.constraints else None)
                    if scheduler.selection.changed:
                        answer()
                    if parts.knowledge is not None:  # the weights up to the trial before: it is told after this
                        run.write_warm_start(parts.knowledge.describe())
                    summary.wall_seconds = round(scheduler.elapsed(), 3)
                    run.write_summary(summary)
                    best_text = f"best {summary.objective} {summary.best_value:.2f}" if summary.best else ""
                    done = {"completed": min(scheduler.elapsed(), total)} if timed else {"advance": 1}
                    bar.update(task, description=f"{label}  {best_text}", **done)
            if parts.knowledge is not None:
                run.write_warm_start(parts.knowledge.describe())
            best = scheduler.selection.best
            if best is None:
                met = " and met the constraints" if goal.constraints else ""
                summary.status, summary.error = "failed", f"none of the {summary.n_trials} trials succeeded{met}"
            elif cfg.retrain.enabled:
                data = parts.evaluator.data if parts.evaluator.data is not None else load_data(cfg, parts.hardware)
                retraining(cfg, parts.space, data, parts.hardware).into(run, summary, best.trial.arch)
            else:
                summary.status = "completed"
    return summary


@contextmanager
def summary_written(
    run: RunDir, summary: Summary, logger: Optional[Component], elapsed_before: float = 0.0
) -> Iterator[Callable[[Trial], None]]:
    """Write summary.json with the wall time however the work ends, release the run, and print the result; the
    work is reported to the `logger` tracker (yielded: what takes each finished trial) and to the run's log.

    Ctrl-C (or SIGTERM) records the status `interrupted`, prints how to continue, and exits with code 130. A file
    that cannot be written (a full disk) stops the work with one line; what was written before is kept.
    """
    with run_log(run, summary.kind), tracking(logger, run, summary) as track:
        start = time.perf_counter()
        interrupted = False
        try:
            yield track
        except KeyboardInterrupt:
            interrupted, summary.status = True, "interrupted"
        except Stopped as exc:
            summary.status, summary.error = "crashed", str(exc)
            log.error(summary.error)
            again = f"nas search --resume {run.path}" if summary.kind == "search" else "the same nas retrain"
            fix = f"free space (or make {run.path} writable) and " if isinstance(exc, StorageError) else "then "
            raise type(exc)(f"{exc}; the finished work is kept: {fix}run `{again}`") from None
        except BaseException as exc:  # a bug or a kill: the run stays resumable, as after a crash
            summary.status, summary.error = "crashed", f"stopped by {type(exc).__name__}: {exc}"
            log.error(summary.error)
            raise
        finally:
            summary.wall_seconds = round(elapsed_before + time.perf_counter() - start, 3)
            try:
                run.write_summary(summary)
            except StorageError:
                if summary.status != "crashed":
                    raise
            finally:
                run.close()
        print_result(run, summary)
    if interrupted:
        raise SystemExit(130)


def retraining(cfg: RunConfig, space: SearchSpace, data: DataSplits, hardware: Hardware,
               start: Optional[Start] = None) -> Retraining:
    """Retraining at the trials' latency batch; `start`: weights to start from other than retrain.init's."""
    latency_batch = getattr(cfg.evaluator.settings, "latency_batch", LATENCY_BATCH)
    return Retraining(cfg.retrain, space, cfg.space.name, data, hardware, cfg.seed, latency_batch, cfg.search.baselines,
                      start)


def retrain_overrides(source: Path, args: list[str], pick: Optional[int] = None) -> list[str]:
    """The overrides of a retraining of `source`: the user's first (Hydra takes flags such as -m only before the
    overrides that follow them), `pick=`, those inherited from a search run, and `source=` quoted so that any path
    survives Hydra's parser."""
    args = [*args, *([f"pick={pick}"] if pick is not None else [])]
    quoted = str(source).replace("\\", "\\\\").replace("'", "\\'")
    return [*args, *_inherited_overrides(source, args), f"source='{quoted}'"]


def _inherited_overrides(source: Path, args: list[str]) -> list[str]:
    """The overrides a retraining takes from the search run it retrains: its dataset, space, hardware, seed, retrain.*.

    Keys the user sets are not inherited, nor are the settings of a group the user switches.
    """
    if not source.is_dir():
        return []
    run = RunDir(source)
    stored = validate(run.config())  # a run directory is data: its config must name registered components only
    given = {override_key(arg) for arg in args if "=" in arg and not arg.startswith("-")}
    if "dataset" not in given and not stored.evaluator.cls.needs_data:
        raise UserError(f"the search in {source} looked scores up in a table and trained on no dataset; "
                        f"say what to train on, e.g. nas retrain {source} dataset=cifar10")

    def kept(override: str) -> bool:
        key = override_key(override)
        group = key.split(".")[0]
        return group in INHERITED and key not in given and group not in given and key != "hardware.ray_address"

    return [override for override in run.overrides() if kept(override)]


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
        return best.arch
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
    retrainer = retraining(cfg, space, data, hardware)
    retrainer.check_start(arch)  # fails now, before the run directory exists, if nothing fits
    run = start_run(cfg.at(run_dir), run_record("retrain", overrides, hardware, source=str(source)), data)
    run.write_best(Best(arch, space.hash(arch), cfg.space.name, source=str(source), trial=cfg.pick))
    summary = Summary(kind="retrain", source=str(source), dataset=cfg.dataset.name, space=cfg.space.name,
                      seed=cfg.seed)
    with summary_written(run, summary, cfg.logger):
        retrainer.into(run, summary, arch)
    return summary
