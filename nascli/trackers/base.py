"""What every experiment tracker does, and the one place a run reports to its tracker.

A tracker (`logger=tensorboard|mlflow|wandb|csv`) receives the run's config when the work starts, each trial with
its learning curve as it ends, and at the end the retraining (its curve and test metrics), the summary and the
report's figures. The run directory stays the record: a tracker that fails is stopped with one warning line, and
the work goes on.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from omegaconf import OmegaConf

from nascli.errors import first_line, require_extra, warn
from nascli.html_report import build_figures
from nascli.printout import say
from nascli.records import Curve, Summary, Trial
from nascli.report import flatten
from nascli.rundir import RunDir
from nascli.settings import Component

TRACKERS = "trackers"  # the run directory's folder of tracker output: trackers/<name>/
FINISHED = {"completed": "FINISHED", "interrupted": "KILLED"}  # a run's status as trackers name it; others: FAILED


@dataclass
class TrackerSettings:
    """What every tracker takes."""

    figures: bool = True  # at the end, the report's figures of the run (drawing them takes a few seconds)


class Tracker(ABC):
    """An experiment tracker a run reports to, built with its settings for one run directory."""

    name: ClassVar[str]
    EXTRA: ClassVar[str] = ""  # the nascli extra that installs its package
    MODULES: ClassVar[tuple[str, ...]] = ()  # the packages it needs

    def __init__(self, settings: Any, run: RunDir, kind: str) -> None:
        self.settings, self.run, self.kind = settings, run, kind

    @classmethod
    def check(cls, settings: Any) -> None:
        """Raise UserError now (before any work) if the tracker's package is not installed."""
        require_extra(f"logger={cls.name}", cls.EXTRA, *cls.MODULES)

    def folder(self) -> Path:
        """The tracker's own folder in the run directory (trackers/<name>), created."""
        path = self.run.file(f"{TRACKERS}/{self.name}")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, name: str) -> Path:
        """The path of a file in the tracker's folder (a link there is refused, as everywhere in a run)."""
        self.folder()
        return self.run.file(f"{TRACKERS}/{self.name}/{name}")

    def run_id(self) -> str:
        """A stable id of this run directory's work, the same when a search is resumed."""
        return hashlib.sha1(f"{self.run.path.resolve()}:{self.kind}".encode()).hexdigest()[:16]

    @abstractmethod
    def start(self, config: dict[str, Any]) -> None:
        """Open the tracker's run with the run's resolved config (flattened, dotted keys)."""

    @abstractmethod
    def trial(self, trial: Trial) -> None:
        """Record a finished trial: its architecture, metrics and learning curve."""

    @abstractmethod
    def finish(self, summary: Summary, retrained: Optional[dict[str, Any]], figures: dict[str, bytes]) -> None:
        """Record the retraining's metrics and curve (None: none ran), the summary and the figures (PNG by file
        name), and close; `summary.status` says how the work ended."""

    def where(self) -> str:
        """One line saying where to look at what the tracker recorded."""
        return f"logger={self.name}: {self.folder()}"


def numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The metrics that are plain numbers (not flags, matrices or curves)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def curve_points(curve: Optional[Curve]) -> Iterator[tuple[int, dict[str, float]]]:
    """(epoch, {train/loss, train/acc, train/lr, train/seconds}) for each point of a learning curve."""
    for point in curve or []:
        yield int(point["epoch"]), {f"train/{k}": float(v) for k, v in point.items() if k != "epoch"}


def architecture(trial: Trial) -> dict[str, Any]:
    """A trial's architecture as flat `arch.<key>` values (lists as JSON text)."""
    return flatten(trial.arch, "arch.")


def _figures(run: RunDir) -> dict[str, bytes]:
    """The report's figures of this run, or none (with a warning) when they cannot be drawn."""
    try:
        return build_figures([run.path])[1].images
    except Exception as exc:  # figures are a courtesy to the tracker: never the reason a run fails
        warn(f"the report's figures could not be drawn for the tracker: {first_line(exc)}")
        return {}


@contextmanager
def tracking(logger: Optional[Component], run: RunDir, summary: Summary) -> Iterator[Callable[[Trial], None]]:
    """Report the work on `run` to the `logger` component (None: to none) while it runs; yields what takes each
    finished trial. At the end, however the work ends, the tracker gets the retraining, summary and figures."""
    if logger is None:
        yield lambda trial: None
        return
    tracker: Optional[Tracker] = logger.cls(logger.settings, run, summary.kind)

    def guarded(step: Callable[[], None]) -> None:
        nonlocal tracker
        if tracker is None:
            return
        try:
            step()
        except Exception as exc:  # the run directory keeps everything: a tracker's failure never stops the work
            warn(f"logger={logger.name} stopped: {first_line(exc)}; the run directory keeps every result")
            tracker = None

    config = flatten(OmegaConf.to_container(run.config()))
    guarded(lambda: tracker.start(config))
    try:
        yield lambda trial: guarded(lambda: tracker.trial(trial))
    finally:
        if tracker is not None:
            drawn = _figures(run) if logger.settings.figures else {}
            guarded(lambda: tracker.finish(summary, run.retrain_metrics(), drawn))
        if tracker is not None:
            say(tracker.where())
