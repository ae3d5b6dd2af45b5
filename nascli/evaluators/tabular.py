"""Evaluate by table look-up: a tabular benchmark's recorded metrics instead of training."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from nascli.errors import TrialFailed, UserError, require
from nascli.evaluators.base import Evaluator
from nascli.registry import register
from nascli.spaces.base import Arch

COST_METRICS = ("params", "flops", "latency_ms", "train_seconds")


@dataclass
class TabularSettings:
    """The CSV (an `arch` column plus metric columns), the column to maximise, the one to report and the costs."""

    # CSV with an `arch` column (the space's key, e.g. nb201's cell string) and numeric metric columns; required
    table: Optional[str] = None
    objective: str = "val_acc"  # column the search maximises (unless search.objectives is set)
    report: str = "test_acc"  # column reported as the found architecture's test score
    costs: list[str] = field(default_factory=list)  # columns known without training (params, a device's latency)

    def __post_init__(self) -> None:
        require(self.table is not None, "evaluator.table is required: a CSV with an `arch` column and metric columns")
        require(Path(self.table).expanduser().is_file(), f"evaluator.table {self.table} is not a file")


@register("evaluator", "tabular")
class TabularEvaluator(Evaluator):
    """Looks each architecture up by the space's key (for nb201, the official cell string)."""

    Settings = TabularSettings
    needs_data = False

    def __init__(self, settings: TabularSettings, **dependencies: Any) -> None:
        super().__init__(settings, **dependencies)
        self.objective = settings.objective
        self.test_metric = settings.report
        self.dataset_label = f"table:{Path(settings.table).stem}"
        self.rows = self._load(Path(settings.table).expanduser(), [settings.objective, settings.report, *settings.costs])

    @classmethod
    def check(cls, settings: TabularSettings) -> None:
        """Read the table now, so that a missing column or a non-number fails before the run directory exists."""
        cls._load(Path(settings.table).expanduser(), [settings.objective, settings.report, *settings.costs])

    @classmethod
    def check_metrics(cls, settings: TabularSettings, names: list[str]) -> None:
        """Objectives and constraints must be columns of the table."""
        cls._load(Path(settings.table).expanduser(), [settings.objective, settings.report, *settings.costs, *names])

    @staticmethod
    def _load(path: Path, columns: list[str]) -> dict[str, dict[str, Any]]:
        """The table's numeric columns by architecture key; `columns` must exist and hold numbers."""
        try:
            table = pd.read_csv(path)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read evaluator.table {path}: {str(exc).splitlines()[0]}") from None
        missing = {"arch", *columns} - set(table.columns)
        if missing:
            raise UserError(f"evaluator.table {path} lacks the column(s) {', '.join(sorted(missing))}")
        for column in columns:
            values = pd.to_numeric(table[column], errors="coerce")
            bad = table[column][values.isna() & table[column].notna()]
            if len(bad):
                raise UserError(f"evaluator.table {path}: column {column} holds a non-number ({bad.iloc[0]!r}, "
                                f"row {bad.index[0] + 2})")
        table = table.drop_duplicates("arch").set_index("arch")
        numeric = table.apply(pd.to_numeric, errors="coerce").dropna(axis=1, how="all")  # text columns go
        return {arch: {k: None if v != v else v for k, v in row.items()}  # NaN (v != v) is a missing value
                for arch, row in numeric.to_dict("index").items()}

    def pre_training_metrics(self) -> set[str]:
        return set(self.settings.costs)

    def known_metrics(self, arch: Arch, names: list[str]) -> dict[str, Any]:
        row = self.rows.get(self.space.key(arch), {})
        return {name: row.get(name) for name in names if name in self.settings.costs}

    def evaluate(self, arch: Arch, seed: int, budget: Optional[float] = None, fold: int = 0) -> dict[str, Any]:
        row = self.rows.get(self.space.key(arch))
        if row is None:
            raise TrialFailed(f"{self.space.key(arch)} is not in the table")
        if row[self.objective] is None or not math.isfinite(row[self.objective]):
            raise TrialFailed(f"the table has no {self.objective} for this architecture")
        return {**{name: None for name in COST_METRICS}, **row}
