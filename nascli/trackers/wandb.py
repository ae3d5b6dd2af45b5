"""`logger=wandb`: a Weights & Biases run per search, offline (files in the run directory) unless configured."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from PIL import Image

from nascli.errors import require
from nascli.records import Summary, Trial
from nascli.registry import register
from nascli.trackers.base import Tracker, TrackerSettings, curve_points, numbers

MODES = ("offline", "online", "disabled")


@dataclass
class WandbSettings(TrackerSettings):
    """Where the W&B run goes."""

    project: str = "nascli"  # the W&B project
    entity: Optional[str] = None  # the W&B team or user; null: your default
    mode: str = "offline"  # offline: kept in trackers/wandb (upload later with `wandb sync`); online; disabled

    def __post_init__(self) -> None:
        require(self.mode in MODES, f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")


@register("logger", "wandb")
class WandbTracker(Tracker):
    """One W&B run: the config; each trial's metrics against `trial/id` and its learning curve as a table; the
    retraining's curve against `retrain/epoch`; the outcome in the run's summary; the figures as images. A resumed
    search goes on in the same run."""

    Settings = WandbSettings
    EXTRA, MODULES = "wandb", ("wandb",)

    def start(self, config: dict[str, Any]) -> None:
        import wandb  # the optional wandb package

        self.wandb = wandb
        s = self.settings
        self.wb = wandb.init(project=s.project, entity=s.entity, mode=s.mode, dir=str(self.folder()),
                             name=self.run.path.name, id=self.run_id(), resume="allow", config=config,
                             settings=wandb.Settings(quiet=True))
        self.wb.define_metric("trial/*", step_metric="trial/id")
        self.wb.define_metric("retrain/*", step_metric="retrain/epoch")

    def trial(self, trial: Trial) -> None:
        logged: dict[str, Any] = {"trial/id": trial.id, "trial/failed": int(not trial.ok)}
        logged.update({f"trial/{metric}": value for metric, value in numbers(trial.metrics).items()})
        points = list(curve_points(trial.curve))
        if points:
            rows = [[epoch, *values.values()] for epoch, values in points]
            logged["trial/curve"] = self.wandb.Table(columns=["epoch", *points[0][1]], data=rows)
        self.wb.log(logged)

    def finish(self, summary: Summary, retrained: Optional[dict[str, Any]], figures: dict[str, bytes]) -> None:
        if retrained is not None:
            for epoch, values in curve_points(retrained.get("curve")):
                self.wb.log({"retrain/epoch": epoch, **{f"retrain/{k}": v for k, v in values.items()}})
            self.wb.summary.update({f"retrain/{k}": v for k, v in numbers(retrained).items()})
        self.wb.summary.update({k: v for k, v in summary.to_dict().items() if isinstance(v, (int, float, str))})
        if figures:
            self.wb.log({f"figures/{name.removesuffix('.png')}": self.wandb.Image(Image.open(io.BytesIO(png)))
                         for name, png in figures.items()})
        self.wb.finish(exit_code=0 if summary.status == "completed" else 1)

    def where(self) -> str:
        if self.settings.mode == "offline":
            return f"logger=wandb: offline; upload it with: wandb sync {Path(self.wb.dir).parent}"
        return f"logger=wandb: project {self.settings.project}"
