"""`logger=tensorboard`: TensorBoard event files in the run directory (`tensorboard --logdir RUN`)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from PIL import Image

from nascli.records import Curve, Summary, Trial
from nascli.registry import register
from nascli.trackers.base import Tracker, TrackerSettings, architecture, curve_points, numbers


@dataclass
class TensorBoardSettings(TrackerSettings):
    """TensorBoard's event files, under the run directory's trackers/tensorboard."""


@register("logger", "tensorboard")
class TensorBoardTracker(Tracker):
    """The search's metrics by trial id (`search/`), each trial's learning curve and architecture (`trial-NNNN/`, in
    the HParams dashboard), the retraining's curve and test metrics (`retrain/`), the report's figures as images."""

    Settings = TensorBoardSettings
    EXTRA, MODULES = "tensorboard", ("tensorboard",)

    def _writer(self, name: str) -> Any:
        from torch.utils.tensorboard import SummaryWriter  # needs the optional tensorboard package

        return SummaryWriter(str(self.folder() / name))

    def start(self, config: dict[str, Any]) -> None:
        self.main = self._writer(self.kind)
        rows = "\n".join(f"| {key} | {json.dumps(value)} |" for key, value in config.items())
        self.main.add_text("config", f"| key | value |\n|---|---|\n{rows}")

    def trial(self, trial: Trial) -> None:
        self.main.add_scalar("trial/failed", float(not trial.ok), trial.id)
        for metric, value in numbers(trial.metrics).items():
            self.main.add_scalar(f"trial/{metric}", value, trial.id)
        self.main.add_text("trial/architecture", f"trial {trial.id} ({trial.status}): `{json.dumps(trial.arch)}`",
                           trial.id)
        if not trial.ok:
            return
        writer = self._writer(f"trial-{trial.id:04d}")
        self._curve(writer, trial.curve)
        scores = {f"hparam/{metric}": value for metric, value in numbers(trial.metrics).items()}
        writer.add_hparams(architecture(trial), scores, run_name=".")
        writer.close()

    def _curve(self, writer: Any, curve: Optional[Curve]) -> None:
        for epoch, values in curve_points(curve):
            for key, value in values.items():
                writer.add_scalar(key, value, epoch)

    def finish(self, summary: Summary, retrained: Optional[dict[str, Any]], figures: dict[str, bytes]) -> None:
        if retrained is not None:
            writer = self._writer("retrain")
            self._curve(writer, retrained.get("curve"))
            last = int(retrained["curve"][-1]["epoch"]) if retrained.get("curve") else 0
            for metric, value in numbers(retrained).items():
                writer.add_scalar(f"retrain/{metric}", value, last)
            writer.close()
        for name, png in figures.items():
            image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            self.main.add_image(f"figures/{name.removesuffix('.png')}", image, dataformats="HWC")
        self.main.add_text("summary", f"`{json.dumps(summary.to_dict())}`")
        self.main.close()

    def where(self) -> str:
        return f"logger=tensorboard: tensorboard --logdir {self.folder()}"
