"""The typed settings of a run: one dataclass per config group, validated in `__post_init__`.

This is the bottom of the configuration: every default lives in these dataclasses (and each component's
`Settings`); Hydra composition and the derivation of cross-group values live above it, in `nascli.config`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from nascli.errors import UserError, first_line, require
from nascli.goal import parse_constraints, parse_objective, parse_pick
from nascli.registry import lookup


@dataclass
class TrainSettings:
    """How a network is trained: shared by the train evaluator and retraining."""

    MIN_EPOCHS: ClassVar[int] = 1

    epochs: int = 5  # passes over the training data
    batch_size: int = 64  # samples per step
    lr: float = 0.05  # the peak learning rate of the one-cycle schedule
    weight_decay: float = 5e-4  # L2 penalty (decoupled with adamw)
    label_smoothing: float = 0.1  # share of each target's probability spread over the other classes
    augment: bool = True  # the dataset's augmentation (crops, flips, word dropout) on the training data
    optimizer: str = "sgd"  # sgd (Nesterov momentum 0.9) or adamw; both on a one-cycle schedule peaking at lr

    def __post_init__(self) -> None:
        require(self.optimizer in ("sgd", "adamw"), f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        require(self.epochs >= self.MIN_EPOCHS, f"epochs must be at least {self.MIN_EPOCHS}, got {self.epochs}")
        require(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        require(math.isfinite(self.lr) and self.lr > 0, f"lr must be positive and finite, got {self.lr}")
        require(math.isfinite(self.weight_decay) and self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)")


@dataclass
class HardwareSettings:
    """Where trials run: device, parallel workers, CPU threads, mixed precision and memory layout."""

    device: str = "auto"  # auto: CUDA when a GPU is visible, else the CPU
    gpus: Optional[list[int]] = None  # GPU indices; null: every visible GPU (job k of a sweep: GPU k mod count)
    trials_per_gpu: int = 1  # trials that share one GPU at once, each in its own worker process
    workers: int = 1  # on the CPU: trials at once, each in its own worker process
    threads: Optional[int] = None  # CPU threads per trial; null: the cores shared out among the workers
    amp: str = "auto"  # auto: bf16 autocast on CUDA and on CPUs with AMX, else off
    channels_last: str = "auto"  # auto: image networks train in channels_last on every device
    compile: bool = False  # torch.compile each network a trial or the retraining trains (not supernets)
    executor: str = "local"  # local: this machine; ray: a Ray cluster
    ray_address: Optional[str] = None  # null: start Ray here; "auto" or "ray://host:10001": join a cluster

    def __post_init__(self) -> None:
        require(self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}")
        require(self.gpus is None or (len(self.gpus) > 0 and min(self.gpus) >= 0), "gpus must list GPU indices")
        require(self.trials_per_gpu >= 1, "trials_per_gpu must be at least 1")
        require(self.workers >= 1, "workers must be at least 1")
        require(self.threads is None or self.threads >= 1, "threads must be at least 1 (or null for all)")
        require(self.amp in ("auto", "bf16", "off"), f"amp must be auto, bf16 or off, got {self.amp!r}")
        require(self.channels_last in ("auto", "on", "off"), "channels_last must be auto, on or off")
        require(self.executor in ("local", "ray"), f"executor must be local or ray, got {self.executor!r}")


DEFAULT_MAX_TRIALS = 30


@dataclass
class SearchSettings:
    """When the search stops, and whether outcomes reach the strategy in proposal order (reproducible with workers)."""

    max_trials: Optional[int] = None  # null: 30, or no limit with max_seconds (the search then runs until it is spent)
    max_seconds: Optional[float] = None  # no new trial starts after this many seconds of search
    ordered: bool = True  # tell outcomes in proposal order: the same search for any worker timing
    objectives: Optional[list[str]] = None  # metric:max|min, one or more; null: the evaluator's objective, maximised
    # {metric: upper bound, min_<metric>: lower bound}; typed Any, as a typed dict would refuse new keys in Hydra
    constraints: Any = None
    pick: Optional[str] = None  # which front member best.json holds: max:METRIC, min:METRIC or knee; null: the first objective
    warm_start: Optional[list[str]] = None  # earlier run or sweep directories (same space) whose trials guide this one
    warm_start_suggestions: int = 10  # at most this many of their best architectures are proposed first
    baselines: Optional[bool] = None  # also retrain the space's baselines (fusion: each input alone, late fusion); null: where it has them
    # after the search, train the K best architectures (and the space's references) again with `confirm_seeds` other
    # seeds each and choose the best by its mean over every run: one training per candidate is noisy, and the top of
    # a search is its luckiest
    confirm_top: int = 0
    confirm_seeds: int = 2  # with confirm_top: the extra seeds each of those architectures trains with
    # confirming runs also validate on other held-out parts of the training data: a small validation set is
    # itself something a search fits
    confirm_folds: bool = True
    # a confirmed reference of the space (e.g. Kim's CNN) stays the answer unless another architecture's mean beats
    # its mean by more than this many standard errors of the difference (the one-standard-error rule; 0: best mean)
    reference_margin: float = 1.0

    def __post_init__(self) -> None:
        require(self.max_trials is None or self.max_trials >= 1, f"max_trials must be at least 1, got {self.max_trials}")
        require(self.max_seconds is None or (math.isfinite(self.max_seconds) and self.max_seconds > 0),
                "max_seconds must be a positive finite number (or null)")
        require(self.warm_start_suggestions >= 0, "warm_start_suggestions must be >= 0")
        require(self.objectives is None or len(self.objectives) > 0, "objectives must name one or more metric:max|min")
        metrics = [parse_objective(text).metric for text in self.objectives or []]
        require(len(set(metrics)) == len(metrics), "objectives must name each metric once")
        require(self.constraints is None or isinstance(self.constraints, dict),
                "constraints must map metrics to bounds, e.g. search.constraints='{params: 1e6, min_val_acc: 90}'")
        parse_constraints(self.constraints or {})
        if self.pick is not None:
            parse_pick(self.pick)
        require(self.confirm_top >= 0, f"confirm_top must be >= 0 (0: off), got {self.confirm_top}")
        require(self.confirm_seeds >= 1, f"confirm_seeds must be at least 1, got {self.confirm_seeds}")
        require(math.isfinite(self.reference_margin) and self.reference_margin >= 0,
                f"reference_margin must be a finite number >= 0, got {self.reference_margin}")
        require(self.confirm_top == 0 or len(self.objectives or []) <= 1,
                "confirm_top works with one objective; with several, the Pareto front is the search's answer")

    @property
    def trial_limit(self) -> Optional[int]:
        """The trials the search runs at most: max_trials, or by default 30 without a time budget and no limit with
        one (None)."""
        if self.max_trials is None and self.max_seconds is None:
            return DEFAULT_MAX_TRIALS
        return self.max_trials


@dataclass
class RetrainSettings(TrainSettings):
    """Retraining of the best architecture on train+validation, scored on the test split."""

    enabled: bool = True  # retrain the best architecture after the search
    epochs: int = 40  # passes over train+validation
    max_seconds: Optional[float] = None  # the training fitted to this many seconds as it runs (at least one epoch)
    init: Optional[str] = None  # a run directory whose retrained model (or supernet) the weights start from
    finetune: str = "full"  # with init: full, head (only the new classifier trains) or last:K (and the last K layers)
    copied_lr: float = 1.0  # with init: the copied layers' learning rate, as a share of lr

    def __post_init__(self) -> None:
        super().__post_init__()
        kind, _, count = self.finetune.partition(":")
        require(self.finetune in ("full", "head") or (kind == "last" and count.isdigit() and int(count) >= 1),
                f"finetune must be full, head or last:K, got {self.finetune!r}")
        require(math.isfinite(self.copied_lr) and self.copied_lr > 0, "copied_lr must be a positive share of lr")
        require(self.max_seconds is None or self.max_seconds > 0, "max_seconds must be positive (or null: no limit)")


@dataclass
class ConfigSchema:
    """The top level of every composed config; component groups are typed by their option's schema."""

    dataset: Any = None
    space: Any = None
    strategy: Any = None
    evaluator: Any = None
    logger: Any = None  # an experiment tracker's settings (logger=tensorboard|mlflow|wandb|csv); null: none
    hardware: HardwareSettings = field(default_factory=HardwareSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    seed: int = 0  # seeds the strategy, every trial's training and the retraining: the same seed, the same search
    run_dir: str = "outputs/run"  # the run directory (by default outputs/DATE/TIME-dataset-space-strategy)
    sweep_dir: str = "outputs/multirun"  # with -m: the folder of the sweep's run directories, one per job
    source: Optional[str] = None  # `nas retrain`: the search run directory or architecture file retrained
    pick: Optional[int] = None  # `nas retrain`: the id of the source run's trial to retrain; null: its best


@dataclass(frozen=True)
class Component:
    """A validated option of a component group: its registered class, its name and its typed settings."""

    name: str
    cls: type
    settings: Any


def typed_settings(schema: type, values: Any, where: str) -> Any:
    """Merge values onto a settings dataclass and build it; errors become UserError naming the key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(merged)
    except ConfigKeyError as exc:
        key = getattr(exc, "key", None) or first_line(exc)
        valid = ", ".join(f.name for f in schema.__dataclass_fields__.values())
        raise UserError(f"unknown key '{where}{key}'; valid keys: {valid}") from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        raise UserError(f"invalid value for '{where}{key}': {first_line(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"invalid {where.rstrip('.') or 'setting'}: {first_line(exc)}") from None


def component(group: str, node: Any) -> Component:
    """The validated Component of a group's config node: `name` selects a registered class, the rest are settings."""
    if not isinstance(node, (dict, DictConfig)) or not isinstance(node.get("name"), str):
        raise UserError(f"config group '{group}' needs a 'name'; see `nas list`")
    cls = lookup(group, node["name"])
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    settings = typed_settings(cls.Settings, {k: v for k, v in values.items() if k != "name"}, f"{group}.")
    return Component(name=node["name"], cls=cls, settings=settings)
