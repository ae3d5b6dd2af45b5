"""`logger=mlflow`: an MLflow run per search (a SQLite store in the run directory unless a tracking URI is given),
a nested run per trial and one for the retraining."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from nascli.records import Curve, Summary, Trial
from nascli.registry import register
from nascli.rundir import BEST, SUMMARY
from nascli.trackers.base import FINISHED, Tracker, TrackerSettings, architecture, curve_points, numbers

PARAM_LENGTH = 6000  # MLflow's longest parameter value
METRICS_PER_BATCH, PARAMS_PER_BATCH = 1000, 100  # MLflow's limits on one logged batch


@dataclass
class MLflowSettings(TrackerSettings):
    """Where MLflow keeps the runs."""

    tracking_uri: Optional[str] = None  # null: a SQLite store in the run directory (trackers/mlflow/mlflow.db)
    experiment: str = "nascli"  # the experiment the runs belong to


@register("logger", "mlflow")
class MLflowTracker(Tracker):
    """A parent run with the config as parameters and the outcome as metrics; a nested run per trial (its
    architecture as parameters, its metrics, its curve by epoch) and one for the retraining; the figures as
    artifacts. A resumed search goes on in the same parent run."""

    Settings = MLflowSettings
    EXTRA, MODULES = "mlflow", ("mlflow", "sqlalchemy", "alembic")

    def start(self, config: dict[str, Any]) -> None:
        from mlflow.tracking import MlflowClient  # needs the optional mlflow package

        for name in ("mlflow", "alembic"):  # their INFO lines (creating tables, ...) are not the user's business
            logging.getLogger(name).setLevel(logging.WARNING)
        local = self.settings.tracking_uri is None
        uri = f"sqlite:///{self.folder().resolve() / 'mlflow.db'}" if local else self.settings.tracking_uri
        self.client = MlflowClient(uri)
        experiment = self.client.get_experiment_by_name(self.settings.experiment)
        if experiment is not None:
            self.experiment = experiment.experiment_id
        else:
            artifacts = (self.folder().resolve() / "artifacts").as_uri() if local else None
            self.experiment = self.client.create_experiment(self.settings.experiment, artifact_location=artifacts)
        earlier = self.client.search_runs([self.experiment], f"tags.`nascli.run_id` = '{self.run_id()}'", max_results=1)
        if earlier:
            self.parent = earlier[0].info.run_id
            self.client.update_run(self.parent, "RUNNING")
            return
        tags = {"nascli.run_id": self.run_id(), "nascli.run_dir": str(self.run.path), "nascli.kind": self.kind}
        self.parent = self.client.create_run(self.experiment, run_name=self.run.path.name, tags=tags).info.run_id
        self._log(self.parent, config, {})

    def _log(self, run_id: str, params: dict[str, Any], metrics: dict[str, float], curve: Optional[Curve] = None) -> None:
        """Log parameters, final metrics (step 0) and a learning curve (by epoch) to one run."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        rows = [Metric(key, value, now, 0) for key, value in metrics.items()]
        rows += [Metric(key, value, now, epoch) for epoch, values in curve_points(curve) for key, value in values.items()]
        for first in range(0, len(rows), METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=rows[first:first + METRICS_PER_BATCH])
        kept = [Param(key, str(value)[:PARAM_LENGTH]) for key, value in params.items()]
        for first in range(0, len(kept), PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=kept[first:first + PARAMS_PER_BATCH])

    def trial(self, trial: Trial) -> None:
        tags = {"mlflow.parentRunId": self.parent, "nascli.trial": str(trial.id), "nascli.hash": trial.hash}
        if trial.error:
            tags["nascli.error"] = trial.error[:PARAM_LENGTH]
        child = self.client.create_run(self.experiment, run_name=f"trial {trial.id}", tags=tags).info.run_id
        params = {**architecture(trial), "budget": trial.budget, "seed": trial.seed}
        self._log(child, params, numbers(trial.metrics), trial.curve)
        self.client.set_terminated(child, "FINISHED" if trial.ok else "FAILED")

    def finish(self, summary: Summary, retrained: Optional[dict[str, Any]], figures: dict[str, bytes]) -> None:
        if retrained is not None:
            tags = {"mlflow.parentRunId": self.parent, "nascli.trial": "retrain"}
            child = self.client.create_run(self.experiment, run_name="retrain", tags=tags).info.run_id
            self._log(child, {}, numbers(retrained), retrained.get("curve"))
            self.client.set_terminated(child, "FINISHED")
        outcome = {"n_trials": summary.n_trials, "n_failed": summary.n_failed, "wall_seconds": summary.wall_seconds,
                   f"best_{summary.objective}": summary.best_value, "test_acc": summary.test_acc}
        self._log(self.parent, {}, {k: v for k, v in outcome.items() if v is not None})
        for name in (SUMMARY, BEST):
            if self.run.file(name).exists():
                self.client.log_artifact(self.parent, str(self.run.file(name)))
        if figures:
            with tempfile.TemporaryDirectory() as folder:
                for name, png in figures.items():
                    (Path(folder) / name).write_bytes(png)
                self.client.log_artifacts(self.parent, folder, "figures")
        self.client.set_terminated(self.parent, FINISHED.get(summary.status, "FAILED"))

    def where(self) -> str:
        if self.settings.tracking_uri is None:
            return f"logger=mlflow: mlflow ui --backend-store-uri sqlite:///{self.folder() / 'mlflow.db'}"
        return f"logger=mlflow: experiment {self.settings.experiment} at {self.settings.tracking_uri}"
