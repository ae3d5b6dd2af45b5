"""The records a run directory holds, each declared once: a trial, the summary, and the checks of a record read back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from nascli.errors import UserError


def require_fields(data: Any, types: dict[str, type | tuple[type, ...]], where: str) -> dict[str, Any]:
    """`data` as a dict whose listed keys exist with the listed types; else a UserError naming `where`."""
    if not isinstance(data, dict):
        raise UserError(f"{where} is not a JSON object (found {type(data).__name__}); the file is corrupt")
    for key, kind in types.items():
        if not isinstance(data.get(key), kind):
            raise UserError(f"{where} has no valid '{key}'; the file is corrupt")
    return data


@dataclass
class Trial:
    """One finished trial, as trials.jsonl holds it."""

    id: int
    arch: dict[str, Any]
    hash: str
    status: str  # ok | failed
    metrics: dict[str, Any]
    budget: Optional[float] = None
    seed: Optional[int] = None
    error: Optional[str] = None
    elapsed: Optional[float] = None  # seconds of search when it was logged
    feasible: Optional[bool] = None  # whether it met search.constraints (recorded only when there are any)
    repeat: Optional[int] = None  # search.confirm_top: the how-manieth extra run of an architecture (1, 2, ...)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def value(self, metric: str) -> Optional[float]:
        """A metric of a successful trial (None when it failed or lacks it)."""
        return self.metrics.get(metric) if self.ok else None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("budget", "seed")}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Trial:
        """A trial from its JSON record; a record that is not one is a UserError naming `where`."""
        require_fields(data, {"id": int, "arch": dict, "hash": str, "status": str, "metrics": dict}, where)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Summary:
    """What summary.json holds: how a search or a retraining ended."""

    kind: str  # search | retrain
    status: str = "running"  # running | completed | failed | interrupted | crashed
    dataset: Optional[str] = None
    space: Optional[str] = None
    strategy: Optional[str] = None
    seed: Optional[int] = None
    objective: str = "val_acc"
    n_trials: int = 0
    n_failed: int = 0
    best: Optional[dict[str, Any]] = None  # id, hash and objective value of the best trial
    goal: Optional[dict[str, Any]] = None  # objectives, constraints and pick rule, when not one plain objective
    n_feasible: Optional[int] = None  # with constraints: the successful trials that met them
    n_screened: Optional[int] = None  # with constraints: architectures ruled out before training, never run
    front_size: Optional[int] = None  # with several objectives: the trials on the Pareto front
    hypervolume: Optional[dict[str, Any]] = None  # with several objectives: value, bounds (best, worst) per objective
    test_acc: Optional[float] = None
    wall_seconds: Optional[float] = None
    error: Optional[str] = None
    source: Optional[str] = None  # a retraining's source run or file
    baselines: Optional[dict[str, Optional[float]]] = None  # test accuracy of each baseline retrained beside the best

    def to_dict(self) -> dict[str, Any]:
        """The JSON record; unknown values (a test accuracy not measured, no error) are left out."""
        return {k: v for k, v in asdict(self).items() if v is not None or k == "best"}

    @property
    def best_value(self) -> Optional[float]:
        return (self.best or {}).get(self.objective)

    def count(self, trial: Trial, screened: Optional[int] = None) -> None:
        """Count a finished trial (and whether it met the constraints, when there are any; `screened`: the
        architectures ruled out before training so far)."""
        if screened is not None:
            self.n_screened = screened
        self.n_trials += 1
        self.n_failed += not trial.ok
        if trial.feasible is not None:
            self.n_feasible = (self.n_feasible or 0) + trial.feasible

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Summary:
        """A summary from its JSON; one that is not a summary is a UserError naming `where`."""
        require_fields(data, {"kind": str, "status": str}, where)
        if data.get("best") is not None and not isinstance(data["best"], dict):
            raise UserError(f"{where} has no valid 'best'; the file is corrupt")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
