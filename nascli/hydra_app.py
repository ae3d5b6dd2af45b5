"""Hydra's own entry points for `nas search` and `nas retrain`, so that multirun, sweepers and launchers all work.

A Hydra callback checks every job before any starts work (a sweep's jobs too, where the sweep can be
expanded here: comma lists and range()); each job also checks its own config, for sweepers that expand later.
A job returns its best value of the search's primary objective, and a sweeper that optimises what jobs return
(Optuna) is told which way is better.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf, read_write

from nascli.config import RunConfig, config_dir, hydra_errors, override_key, store_schemas, sweep_jobs, validate
from nascli.errors import UserError, exit_with, require_extra
from nascli.goal import Goal
from nascli.records import Summary
from nascli.rundir import RunDir, usable_dir
from nascli.runner import check_job, retrain, search

store_schemas()
failed_jobs: list[str] = []  # the errors of sweep jobs that ran but failed (the CLI exits 1 when there are any)
# the Hydra plugins that nascli's extras install: the override that picks one -> its module and the extra
PLUGINS = {
    "hydra/sweeper=optuna": ("hydra_plugins.hydra_optuna_sweeper", "optuna"),
    **{f"hydra/launcher={name}": ("hydra_plugins.hydra_submitit_launcher", "slurm")
       for name in ("slurm", "submitit_slurm", "submitit_local")},
}


def check_plugins(overrides: list[str]) -> None:
    """The sweeper and launcher plugins the overrides pick are installed (Hydra would only say it has no such option)."""
    for override in overrides:
        if override in PLUGINS:
            module, extra = PLUGINS[override]
            require_extra(override, extra, module)


def _checked(config: DictConfig) -> RunConfig:
    cfg = validate(config)
    check_job(cfg)
    return cfg


class JobChecks(Callback):
    """Checks each job's config, data and output folder before Hydra creates the folder or starts any job."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            _checked(config)
            # the folder Hydra will use: `now` is resolved once per config object, and this is Hydra's own
            RunDir(usable_dir(str(OmegaConf.select(config, "hydra.run.dir")), "run_dir")).ensure_free()
        except UserError as exc:
            exit_with(exc)  # SystemExit passes through Hydra; an exception here would only be warned about

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            jobs = sweep_jobs(list(config.hydra.overrides.task))
            loader = GlobalHydra.instance().config_loader()
            for job in jobs or []:  # None: a sweeper plugin expands the sweep; each job checks itself
                with hydra_errors(job):
                    _checked(loader.load_sweep_config(config, job))
            sweep_dir = Path(str(config.sweep_dir))
            if sweep_dir.is_dir() and any(sweep_dir.iterdir()):
                raise UserError(f"sweep_dir {sweep_dir} is not empty; pass another sweep_dir=... (nothing was overwritten)")
            usable_dir(str(config.sweep_dir), "sweep_dir")
            _direct_sweeper(config)
        except UserError as exc:
            exit_with(exc)


def _direct_sweeper(config: DictConfig) -> None:
    """Point a sweeper that optimises what the jobs return (Optuna's `direction`) the way the search aims.

    A job returns its best value of the primary objective, maximised unless search.objectives says `:min`; Optuna
    would minimise it by default and report the worst setting as the best. A direction given that disagrees is refused.
    """
    sweeper = config.hydra.sweeper
    if "direction" not in sweeper:
        return
    cfg = validate(config)
    primary = Goal.from_settings(cfg.search, getattr(cfg.evaluator.settings, "objective", "val_acc")).primary
    wanted = "maximize" if primary.maximise else "minimize"
    if any(override_key(o) == "hydra.sweeper.direction" for o in config.hydra.overrides.hydra):
        given = sweeper.direction if isinstance(sweeper.direction, ListConfig) else [sweeper.direction]
        names = [getattr(d, "name", str(d)) for d in given]
        if names != [wanted]:
            aim = "maximises" if primary.maximise else "minimises"
            raise UserError(f"hydra.sweeper.direction={','.join(names)}, but each job returns its best {primary.metric}, "
                            f"which the search {aim}: pass hydra.sweeper.direction={wanted} or leave it out (nas sets it)")
    with read_write(sweeper):
        sweeper.direction = wanted


def _run_job(cfg: DictConfig, work: Callable[..., Summary]) -> Optional[float]:
    """Run one job; a user error exits 2, a job that found or trained nothing exits 1 (a sweep's: at the end)."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        summary = work(validate(cfg), Path(hydra_cfg.runtime.output_dir), list(hydra_cfg.overrides.task))
    except UserError as exc:
        exit_with(exc)
    if summary.status == "failed":
        message = f"{summary.kind} in {hydra_cfg.runtime.output_dir} failed: {summary.error}"
        if not multirun:
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(1)
        failed_jobs.append(message)
    return summary.best_value


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def search_task(cfg: DictConfig) -> Optional[float]:
    """One search job: Hydra composed `cfg` and chose its output folder (run_dir, or a sweep job's folder)."""
    job_index = HydraConfig.get().job.num if HydraConfig.get().mode == RunMode.MULTIRUN else None
    return _run_job(cfg, lambda run_cfg, run_dir, overrides: search(run_cfg, run_dir, overrides, job_index))


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="retrain")
def retrain_task(cfg: DictConfig) -> Optional[float]:
    """One retraining job: the architecture of `source` trained into Hydra's output folder."""
    return _run_job(cfg, retrain)
