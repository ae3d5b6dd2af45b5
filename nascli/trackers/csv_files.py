"""`logger=csv`: plain CSV files in the run directory, for a spreadsheet or pandas."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from typing import Any, Optional

from nascli.records import Curve, Summary, Trial
from nascli.registry import register
from nascli.trackers.base import Tracker, TrackerSettings

TRIAL_FIELDS = ("id", "status", "hash", "budget", "seed", "elapsed", "error", "arch", "metrics")
CURVE_FIELDS = ("source", "epoch", "loss", "acc", "lr", "seconds")


@dataclass
class CsvSettings(TrackerSettings):
    """CSV files under the run directory's trackers/csv."""


@register("logger", "csv")
class CsvTracker(Tracker):
    """trials.csv (a row per trial: its architecture and metrics as JSON), curves.csv (a row per epoch of each
    training: `source` is the trial id or `retrain`), outcome.csv (the summary's and the retraining's numbers) and
    the figures as PNG files. A resumed search appends."""

    Settings = CsvSettings

    def _append(self, name: str, fields: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        path = self.path(name)
        new = not path.exists()
        with path.open("a", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fields)
            if new:
                writer.writeheader()
            writer.writerows(rows)

    def _curve(self, source: str, curve: Optional[Curve]) -> None:
        self._append("curves.csv", CURVE_FIELDS, [{"source": source, **point} for point in curve or []])

    def start(self, config: dict[str, Any]) -> None:
        self.folder()  # there from the start, as the other trackers' folders are

    def trial(self, trial: Trial) -> None:
        row = {key: getattr(trial, key) for key in TRIAL_FIELDS[:7]}
        self._append("trials.csv", TRIAL_FIELDS, [{**row, "arch": json.dumps(trial.arch),
                                                   "metrics": json.dumps(trial.metrics)}])
        self._curve(str(trial.id), trial.curve)

    def finish(self, summary: Summary, retrained: Optional[dict[str, Any]], figures: dict[str, bytes]) -> None:
        outcome = {k: v for k, v in summary.to_dict().items() if isinstance(v, (int, float, str))}
        if retrained is not None:
            self._curve("retrain", retrained.get("curve"))
            outcome.update({f"retrain.{k}": v for k, v in retrained.items() if isinstance(v, (int, float, str))})
        with self.path("outcome.csv").open("w", newline="", encoding="utf-8") as out:
            csv.writer(out).writerows([("key", "value"), *outcome.items()])
        for name, png in figures.items():
            self.path(name).write_bytes(png)
