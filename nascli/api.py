"""The Python API: search, retrain and read runs from a notebook or a script, as `nas` does from a terminal.

    from nascli import api
    run = api.search(["dataset=digits", "search.max_trials=10"], run_dir="runs/digits")
    run.trials            # a pandas DataFrame, one row per trial
    run.best.arch         # the architecture found
    model = run.model()   # the retrained network, ready for inference
    run.predict(["new_images/"])  # its labels of new inputs, a row each (as `nas predict` gives them)
    again = api.retrain(run.path, ["retrain.epochs=100"], run_dir="runs/digits-100")

Settings are the same Hydra overrides the CLI takes. A mistake (an unknown option, a missing dataset) raises
`api.UserError` with the one-line message `nas` would print; reading a run never executes anything it names.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from omegaconf import DictConfig
from torch import nn

from nascli.config import expand_home, load_config
from nascli.errors import UserError
from nascli.predict import predict as predict_inputs
from nascli.records import Best, Summary, Trial
from nascli.rundir import RunDir, find_runs
from nascli.runner import check_job, retrain as retrain_run, retrain_overrides, search as search_run
from nascli.spaces.stored import load_model

__all__ = ["Run", "UserError", "find", "load_run", "retrain", "search"]


@dataclass(frozen=True)
class Run:
    """A run directory (an absolute path), read as data: its config, trials, best architecture, summary and model."""

    path: Path

    @property
    def config(self) -> DictConfig:
        """The run's resolved config (config.yaml)."""
        return RunDir(self.path).config()

    @property
    def summary(self) -> Optional[Summary]:
        """How the run ended (summary.json), or None while it has none."""
        return RunDir(self.path).summary()

    @property
    def records(self) -> list[Trial]:
        """Every logged trial as a typed record."""
        return RunDir(self.path).trials()

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial: id, status, hash, budget, seed, error, each metric as a column, and the architecture."""
        rows = [{"id": t.id, "status": t.status, "hash": t.hash, "budget": t.budget, "seed": t.seed,
                 "repeat": t.repeat, "error": t.error, **t.metrics, "arch": t.arch} for t in self.records]
        return pd.DataFrame(rows).set_index("id") if rows else pd.DataFrame()

    @property
    def best(self) -> Optional[Best]:
        """best.json: the architecture found (`arch`), its trial (`chosen`, `metrics`), its confirmation if any."""
        return RunDir(self.path).best()

    @property
    def retrain_metrics(self) -> Optional[dict[str, Any]]:
        """The retrained network's test metrics (retrain/metrics.json), or None when it was not retrained."""
        return RunDir(self.path).retrain_metrics()

    def model(self) -> nn.Module:
        """The retrained network in eval mode, on the CPU."""
        return load_model(self.path)[0]

    def predict(self, inputs: Sequence[str | Path], column: Optional[str] = None, top: int = 3) -> pd.DataFrame:
        """The retrained network's labels of new raw inputs (files, folders, arrays, tables of sentences) with their
        probabilities, a row each, as `nas predict` gives them; unreadable inputs are skipped with a warning."""
        return predict_inputs(self.path, [Path(p).expanduser() for p in inputs], column, top).table


def load_run(path: str | Path) -> Run:
    """The run directory at `path` (a UserError when it is none)."""
    run = RunDir(Path(path).expanduser().resolve())
    run.require_run()
    return Run(run.path)


def find(paths: Sequence[str | Path]) -> list[Run]:
    """Every run directory at or below `paths` (a run, a sweep, or any parent folder)."""
    return [Run(run.path) for run in find_runs([Path(p).expanduser().resolve() for p in paths])]


def _printing(quiet: bool) -> AbstractContextManager:
    """What the work prints to stdout (progress bars, the closing summary): shown, or dropped when `quiet`."""
    return redirect_stdout(io.StringIO()) if quiet else nullcontext()


def search(overrides: Sequence[str] = (), run_dir: Optional[str | Path] = None, quiet: bool = False) -> Run:
    """Search with Hydra `overrides` (and retrain the best, unless retrain.enabled=false), as `nas search` does.

    The run is written to `run_dir` (default: the config's run_dir, under outputs/); returns it. `quiet` prints
    no progress or summary (warnings still go to stderr).
    """
    overrides = expand_home(list(overrides))
    cfg = load_config(overrides)
    check_job(cfg)
    path = Path(run_dir if run_dir is not None else cfg.run_dir).expanduser().resolve()
    with _printing(quiet):
        search_run(cfg, path, overrides)
    return Run(path)


def retrain(source: str | Path, overrides: Sequence[str] = (), run_dir: Optional[str | Path] = None,
            pick: Optional[int] = None, quiet: bool = False) -> Run:
    """Retrain the architecture of `source` (a search run, or an architecture JSON file) as `nas retrain` does:
    a search run's dataset, space, hardware, seed and retrain settings carry over unless `overrides` change them;
    `pick` retrains that trial instead of the best; `quiet` as for `search`."""
    overrides = retrain_overrides(Path(source).expanduser(), expand_home(list(overrides)), pick)
    cfg = load_config(overrides, "retrain")
    check_job(cfg)
    path = Path(run_dir if run_dir is not None else cfg.run_dir).expanduser().resolve()
    with _printing(quiet):
        retrain_run(cfg, path, overrides)
    return Run(path)
