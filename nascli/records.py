"""The records a run directory holds, each declared once as a dataclass: written from it and read back into it.

A record's fields are its file's shape: `to_dict` writes them (leaving out unknown values), `from_dict` reads a
file's object back, checking each field against its type, so that a tampered or truncated file is a one-line
error naming the file and the key, never a record with a wrong type inside.
"""

from __future__ import annotations

import types
from dataclasses import MISSING, dataclass, field, fields, replace
from functools import cache
from typing import Any, ClassVar, Optional, TypeVar, Union, get_args, get_origin, get_type_hints

from nascli.errors import UserError
from nascli.goal import Goal, parse_objective

R = TypeVar("R", bound="Record")


def corrupt(where: str, key: str) -> UserError:
    """The error for a file whose `key` is missing or of the wrong type."""
    return UserError(f"{where} has no valid '{key}'; the file is corrupt")


def json_object(data: Any, where: str) -> dict[str, Any]:
    """`data` when it is a JSON object; else a UserError naming `where`."""
    if not isinstance(data, dict):
        raise UserError(f"{where} is not a JSON object (found {type(data).__name__}); the file is corrupt")
    return data


def _fits(value: Any, hint: Any) -> bool:
    """Whether a value read from a file has the type a field declares (ints pass for floats, never bools)."""
    origin = get_origin(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    kind = origin or hint
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if not isinstance(value, (list, tuple) if kind is list else kind):  # a torch checkpoint may hold tuples
        return False
    args = get_args(hint)
    if kind is list and args:
        return all(_fits(item, args[0]) for item in value)
    if kind is dict and args:
        return all(_fits(key, args[0]) and _fits(item, args[1]) for key, item in value.items())
    return True


def _records_in(hint: Any) -> tuple[Optional[type], bool]:
    """The record type a field holds (alone, optional, or as a list of them) and whether it is a list."""
    for arg in (hint, *get_args(hint)):
        if get_origin(arg) is list and get_args(arg) and _is_record(get_args(arg)[0]):
            return get_args(arg)[0], True
        if _is_record(arg):
            return arg, False
    return None, False


@cache
def _fields(cls: type) -> list[tuple[str, Any, bool, Optional[type], bool]]:
    """Each field of a record class, read once per class: its name, its type, whether a file must hold it, and the
    record type it holds (and whether as a list)."""
    hints = get_type_hints(cls)
    return [(item.name, hints[item.name],
             (item.default is MISSING and item.default_factory is MISSING) or item.name in cls.REQUIRED,
             *_records_in(hints[item.name])) for item in fields(cls)]


def _is_record(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Record)


class Record:
    """A dataclass that is one file's (or one JSON line's) shape. `REQUIRED` names fields a file must hold even
    where the dataclass has a default; `KEEP_NONE` those written as null rather than left out."""

    REQUIRED: ClassVar[tuple[str, ...]] = ()
    KEEP_NONE: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """The record as its file holds it: nested records as objects, unknown (None) values left out."""
        out = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, Record):
                value = value.to_dict()
            elif isinstance(value, list) and value and isinstance(value[0], Record):
                value = [entry.to_dict() for entry in value]
            if value is not None or item.name in self.KEEP_NONE:
                out[item.name] = value
        return out

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str) -> R:
        """The record a file's object holds (other keys ignored); a missing or mistyped field is a UserError."""
        json_object(data, where)
        values = {}
        for name, hint, required, record, many in _fields(cls):
            if data.get(name) is None:
                if required:
                    raise corrupt(where, name)
                continue
            value = data[name]
            if record is not None and many and isinstance(value, list):
                value = [record.from_dict(entry, f"{where} '{name}'") for entry in value]
            elif record is not None and not many:
                value = record.from_dict(value, f"{where} '{name}'")
            elif not _fits(value, hint):
                raise corrupt(where, name)
            values[name] = value
        return cls(**values)


Metric = Union[bool, float, None, list[Any], dict[str, Any]]  # a number or flag, or a structured one (confusion matrix)
Curve = list[dict[str, float]]  # a training's learning curve: a point per epoch (epoch, loss, acc, lr, seconds)
SHAPED_METRICS = {"confusion_matrix": list[list[int]], "init": dict[str, Any], "baselines": dict[str, dict[str, Any]],
                  "curve": Curve, "compressed": dict[str, dict[str, Any]], "pruned": dict[str, Any]}


def kept_flops_share(metrics: dict[str, Any]) -> Optional[float]:
    """The share of its source's FLOPs a pruned network keeps (its retraining metrics' `pruned`), or None."""
    source = (metrics.get("pruned") or {}).get("source_flops")
    return metrics["flops"] / source if source and isinstance(metrics.get("flops"), (int, float)) else None


def checked_metrics(data: Any, where: str) -> dict[str, Metric]:
    """A metrics object read from a file (retrain/metrics.json): numbers by name, and the structured ones in their
    own shapes; anything else is a UserError naming the key."""
    for key, value in json_object(data, where).items():
        if not _fits(value, SHAPED_METRICS.get(key, Optional[float])):
            raise corrupt(where, key)
    return data


@dataclass
class Trial(Record):
    """One finished trial, as trials.jsonl holds it."""

    KEEP_NONE: ClassVar[tuple[str, ...]] = ("budget", "seed")

    id: int
    arch: dict[str, Any]
    hash: str
    status: str  # ok | failed
    metrics: dict[str, Metric]
    budget: Optional[float] = None
    seed: Optional[int] = None
    error: Optional[str] = None
    elapsed: Optional[float] = None  # seconds of search when it was logged
    feasible: Optional[bool] = None  # whether it met search.constraints (recorded only when there are any)
    repeat: Optional[int] = None  # search.confirm_top: the how-manieth extra run of an architecture (1, 2, ...)
    curve: Optional[Curve] = None  # the trial's training, a point per epoch, where it trained

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def value(self, metric: str) -> Optional[float]:
        """A metric of a successful trial (None when it failed or lacks it)."""
        return self.metrics.get(metric) if self.ok else None


@dataclass
class GoalRecord(Record):
    """A search's goal as summary.json records it, in the settings' own syntax (`Goal.described` reads it)."""

    objectives: list[str]
    constraints: dict[str, float] = field(default_factory=dict)
    pick: Optional[str] = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> GoalRecord:
        record = super().from_dict(data, where)
        try:
            Goal.described(record.to_dict())
        except ValueError as exc:
            raise UserError(f"{where} holds no valid goal ({exc}); the file is corrupt") from None
        return record


@dataclass
class Summary(Record):
    """What summary.json holds: how a search or a retraining ended."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("status",)
    KEEP_NONE: ClassVar[tuple[str, ...]] = ("best",)

    kind: str  # search | retrain
    status: str = "running"  # running | completed | failed | interrupted | crashed
    dataset: Optional[str] = None
    space: Optional[str] = None
    strategy: Optional[str] = None
    seed: Optional[int] = None
    objective: str = "val_acc"
    n_trials: int = 0
    n_failed: int = 0
    best: Optional[dict[str, Union[float, str, None]]] = None  # id, hash and objective value of the best trial
    goal: Optional[GoalRecord] = None  # objectives, constraints and pick rule, when not one plain objective
    n_feasible: Optional[int] = None  # with constraints: the successful trials that met them
    n_screened: Optional[int] = None  # with constraints: architectures ruled out before training, never run
    front_size: Optional[int] = None  # with several objectives: the trials on the Pareto front
    hypervolume: Optional[dict[str, Any]] = None  # with several objectives: value, bounds (best, worst) per objective
    test_acc: Optional[float] = None
    wall_seconds: Optional[float] = None
    error: Optional[str] = None
    source: Optional[str] = None  # a retraining's source run or file
    baselines: Optional[dict[str, Optional[float]]] = None  # test accuracy of each baseline retrained beside the best

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


@dataclass
class Confirmation(Record):
    """How confirming runs (search.confirm_top) chose the best: its runs' objective values and their mean."""

    runs: int
    mean: float
    values: list[float]
    reference_kept_over: Optional[dict[str, Any]] = None  # the better mean a reference of the space was kept over


@dataclass
class Best(Record):
    """best.json: the architecture a run answers with.

    A search's is its chosen trial (written with the trial's fields at the top level) and, after confirming
    runs, their confirmation; a retraining's is the architecture it took from `source` (its trial `trial`).
    """

    arch: dict[str, Any]
    hash: Optional[str] = None
    space: Optional[str] = None
    confirmed: Optional[Confirmation] = None
    source: Optional[str] = None  # a retraining's source run or file
    trial: Optional[int] = None  # a retraining's: the source run's trial it took (--pick)
    chosen: Optional[Trial] = field(default=None, repr=False)  # a search's: the trial

    def to_dict(self) -> dict[str, Any]:
        own = {k: v for k, v in super().to_dict().items() if k != "chosen"}
        return {**self.chosen.to_dict(), **own} if self.chosen is not None else own

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Best:
        best = super().from_dict({k: v for k, v in json_object(data, where).items() if k != "chosen"}, where)
        if "id" in data:
            best.chosen = Trial.from_dict(data, where)
        return best

    @property
    def metrics(self) -> dict[str, Any]:
        """The chosen trial's metrics (none for a retraining's)."""
        return self.chosen.metrics if self.chosen is not None else {}


@dataclass
class Front(Record):
    """front.json: the goal, the hypervolume and every non-dominated feasible trial of a multi-objective search."""

    objectives: list[str]
    trials: list[Trial]
    constraints: dict[str, float] = field(default_factory=dict)
    pick: Optional[str] = None
    hypervolume: Optional[dict[str, Any]] = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Front:
        front = super().from_dict(data, where)
        GoalRecord.from_dict(front.to_dict(), where)
        metrics = [parse_objective(text).metric for text in front.objectives]
        if not all(_fits(trial.metrics.get(metric), float) for trial in front.trials for metric in metrics):
            raise UserError(f"{where} has a trial without a value of every objective; the file is corrupt")
        return front


@dataclass
class PendingTrial(Record):
    """A trial in flight when the checkpoint was written."""

    KEEP_NONE: ClassVar[tuple[str, ...]] = ("budget", "repeat")

    id: int
    arch: dict[str, Any]
    budget: Optional[float] = None
    attempts: int = 0  # search processes that died while it ran
    repeat: Optional[int] = None


@dataclass
class State(Record):
    """state.json: the search's checkpoint, rewritten before every trial starts."""

    KEEP_NONE: ClassVar[tuple[str, ...]] = ("confirming",)

    next_id: int
    elapsed: float  # seconds of search so far
    pending: list[PendingTrial]
    strategy: dict[str, Any]  # the strategy's state_dict
    confirming: Optional[list[dict[str, Any]]] = None  # confirming runs not started yet, once chosen


@dataclass
class Preprocessing(Record):
    """How a raw input (an image file, a recording, a sentence, an array) became what the network was trained on,
    and the name of each class: what `nas predict` needs to label new inputs without the training data."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("classes",)

    kind: str  # image | audio | text | arrays | multimodal: what a raw input is
    classes: list[str] = field(default_factory=list)  # the name of each class index
    mean: Optional[list[float]] = None  # per channel: arrays are standardised as (x - mean) / std
    std: Optional[list[float]] = None
    image_size: Optional[int] = None  # image files are resized to this square side ...
    channels: Optional[int] = None  # ... with this many channels (1 grey, 3 RGB, 4 RGBA)
    pixel_divisor: Optional[float] = None  # image files' 0-255 pixels are divided by this (None: kept as they are)
    audio: Optional[dict[str, Optional[float]]] = None  # recordings: the log-mel settings (sample_rate, n_mels, ...)
    vocabulary: Optional[dict[str, Any]] = None  # sentences: the tokenizer (tokens, lowercase, pattern, max_length)

    def named(self, count: int, kept: Optional[list[int]] = None) -> Preprocessing:
        """The same with the names of the `kept` classes (all `count`), "0", "1", ... where the dataset has none."""
        names = self.classes or [str(i) for i in range(count)]
        return replace(self, classes=names if kept is None else [names[i] for i in kept])


@dataclass
class ModelHeader(Record):
    """What retrain/model.pt holds beside its state_dict: the architecture, what it was built for and how its
    inputs are made (None in checkpoints of nascli before `nas predict`)."""

    KEEP_NONE: ClassVar[tuple[str, ...]] = ("vocab_size",)

    arch: dict[str, Any]
    input_shape: list[int] | dict[str, list[int]]
    num_classes: int
    space: Optional[str] = None
    vocab_size: Optional[int | dict[str, int]] = None
    preprocessing: Optional[Preprocessing] = None


@dataclass
class SupernetHeader(Record):
    """What supernet.pt holds beside its state_dict and its training loop's state: the space, the data's shape and
    how far the training got."""

    space: dict[str, Any]
    input_shape: list[int] | dict[str, list[int]]
    num_classes: int
    epochs: int
    epoch: int


@dataclass
class ArchitectureWeights(Record):
    """architecture_weights.json: a relaxation's operation weights per position after each epoch (DARTS), and the
    perturbation selection's steps."""

    operations: list[str]
    epochs: list[list[list[float]]]  # per epoch: per position, the weight of each operation
    selection: Optional[list[dict[str, Any]]] = None  # per position fixed: its accuracy, drops and the op kept


@dataclass
class WarmStartRecord(Record):
    """warm_start.json: the earlier tasks a search used and the weight each model had after each observation."""

    models: list[str]
    weights: list[list[float]]
    tasks: list[dict[str, Any]] = field(default_factory=list)
