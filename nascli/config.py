"""Config schemas, Hydra composition of overrides, and validation into typed settings."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from nascli.errors import UserError
from nascli.registry import COMPONENT_GROUPS, lookup, store_schemas

GROUPS = ("dataset", "space", "strategy", "hardware", "evaluator")


def config_dir() -> Path:
    """The `conf/` folder: packaged inside nascli when installed, beside it in a source checkout."""
    packaged = Path(__file__).parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "conf"


def require(condition: bool, message: str) -> None:
    """Raise ValueError(message) unless condition holds; used by settings' __post_init__."""
    if not condition:
        raise ValueError(message)


@dataclass
class TrainSettings:
    """How a network is trained: shared by the train evaluator and retraining."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    augment: bool = True
    optimizer: str = "sgd"  # sgd (Nesterov momentum 0.9) or adamw; both on a one-cycle schedule peaking at lr

    def __post_init__(self) -> None:
        require(self.optimizer in ("sgd", "adamw"), f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        require(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
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
    confirm_seeds: int = 2
    # confirming runs also validate on other held-out parts of the training data: a small validation set is
    # itself something a search fits
    confirm_folds: bool = True
    # a confirmed reference of the space (e.g. Kim's CNN) stays the answer unless another architecture's mean beats
    # its mean by more than this many standard errors of the difference (the one-standard-error rule; 0: best mean)
    reference_margin: float = 1.0

    def __post_init__(self) -> None:
        from nascli.goal import parse_constraints, parse_objective, parse_pick

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

    enabled: bool = True
    epochs: int = 40
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
    hardware: HardwareSettings = field(default_factory=HardwareSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    seed: int = 0
    run_dir: str = "outputs/run"
    sweep_dir: str = "outputs/multirun"
    source: Optional[str] = None  # `nas retrain`: the search run directory or architecture file retrained
    pick: Optional[int] = None  # `nas retrain`: the id of the source run's trial to retrain; null: its best


@dataclass(frozen=True)
class Component:
    """A validated option of a component group: its registered class, its name and its typed settings."""

    name: str
    cls: type
    settings: Any


@dataclass
class RunConfig:
    """A composed, validated configuration: what the runner works from."""

    dataset: Component
    space: Component
    strategy: Component
    evaluator: Component
    hardware: HardwareSettings
    search: SearchSettings
    retrain: RetrainSettings
    seed: int
    run_dir: str
    source: Optional[str]
    pick: Optional[int]
    raw: DictConfig

    @property
    def trains(self) -> bool:
        """Whether the search trains (or pre-screens) networks, and so needs the dataset."""
        prescreen = getattr(self.strategy.settings, "prescreen", None)
        return self.evaluator.cls.needs_data or self.retrain.enabled or prescreen is not None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _typed(schema: type, values: Any, where: str) -> Any:
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
    settings = _typed(cls.Settings, {k: v for k, v in values.items() if k != "name"}, f"{group}.")
    return Component(name=node["name"], cls=cls, settings=settings)


def validate(cfg: DictConfig) -> RunConfig:
    """Check a composed config against the schemas and return typed settings."""
    if not isinstance(cfg, DictConfig):
        raise UserError("a config must be a mapping of keys to values")
    try:  # Hydra's own node is left out: it is not ours to check, and resolves only inside a running job
        container = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    except OmegaConfBaseException as exc:
        raise UserError(f"cannot resolve config: {first_line(exc)}") from None
    top = {k: v for k, v in container.items() if k not in COMPONENT_GROUPS}
    typed = _typed(ConfigSchema, top, "")
    components = {group: component(group, container.get(group)) for group in COMPONENT_GROUPS}
    if getattr(components["space"].settings, "inputs", False) is None:
        components["space"] = _with_dataset_inputs(container, components)
    return RunConfig(
        **components,
        hardware=typed.hardware,
        search=typed.search,
        retrain=typed.retrain,
        seed=typed.seed,
        run_dir=typed.run_dir,
        source=typed.source,
        pick=typed.pick,
        raw=OmegaConf.create(container),
    )


def _with_dataset_inputs(container: dict[str, Any], components: dict[str, Component]) -> Component:
    """The space of a config whose `space.inputs` is null, given the dataset's named inputs (multimodal data);
    the stored config then names them, so the space never needs the data to know its architectures."""
    dataset = components["dataset"]
    kinds = getattr(dataset.cls, "kinds", None)
    inputs = kinds(dataset.cls(dataset.settings)) if kinds is not None else None
    if not inputs:
        return components["space"]
    container["space"]["inputs"] = inputs
    return component("space", container["space"])


@contextmanager
def hydra_errors(overrides: list[str]) -> Iterator[None]:
    """Turn Hydra's composition errors into one-line UserErrors that say what to do."""
    try:
        yield
    except MissingConfigException as exc:
        if exc.options and exc.missing_cfg_file:
            group, _, option = exc.missing_cfg_file.partition("/")
            raise UserError(f"unknown {group} '{option}'; choose one of: {', '.join(sorted(exc.options))}") from None
        raise UserError(first_line(exc)) from None
    except OverrideParseException as exc:
        raise UserError(f"malformed override: {first_line(exc)} (Hydra syntax: key=value)") from None
    except (HydraException, OmegaConfBaseException) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
        if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
            raise UserError(_unknown_key_message(cause.full_key, overrides)) from None
        if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
            raise UserError(f"invalid value for '{cause.full_key}': {first_line(cause)}") from None
        raise UserError("; ".join(line.strip() for line in str(exc).splitlines()[:2] if line.strip())) from None


def _compose(overrides: list[str]) -> DictConfig:
    store_schemas()
    GlobalHydra.instance().clear()  # a Hydra app that just failed in this process leaves it initialised
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides)


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides; errors become one-line UserErrors."""
    with hydra_errors(overrides):
        return _compose(overrides)


def _unknown_key_message(key: str, overrides: list[str]) -> str:
    """Name the unknown key and list the keys valid where it was put."""
    parent = key.rpartition(".")[0]
    choices = [o for o in overrides if o.split("=", 1)[0] in GROUPS]
    try:
        node = _compose(choices)
        node = OmegaConf.select(node, parent) if parent else node
        valid = [k for k in node if k not in ("name", "hydra")]
    except Exception:
        return f"unknown key '{key}'; see `nas search --cfg job` for the valid keys"
    where = f" under {parent}" if parent else ""
    return f"unknown key '{key}'; valid keys{where}: {', '.join(valid) if valid else '(none)'}"


def parse_overrides(overrides: list[str]) -> list:
    """Parse Hydra overrides; a malformed one (or one without a key) becomes a one-line UserError."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as exc:
        raise UserError(f"malformed override: {first_line(exc)} (Hydra syntax: key=value)") from None
    for override in parsed:
        if not override.key_or_group:
            raise UserError(f"malformed override '{override.input_line}': it names no key (Hydra syntax: key=value)")
    return parsed


def override_key(override: str) -> str:
    """The key an override sets, without its +/~ prefix or @package."""
    return override.split("=", 1)[0].lstrip("+~").split("@")[0]


def sweep_jobs(overrides: list[str]) -> Optional[list[list[str]]]:
    """The overrides of every job of a basic sweep (comma lists, range()); None if another sweeper must expand it."""
    jobs: list[list[str]] = [[]]
    for override in parse_overrides(overrides):
        if not override.is_sweep_override():
            values = [override.input_line]
        elif override.is_discrete_sweep():
            values = [f"{override.get_key_element()}={value}" for value in override.sweep_string_iterator()]
        else:
            return None
        jobs = [job + [value] for job in jobs for value in values]
    return jobs


def merge_overrides(base: list[str], extra: list[str]) -> list[str]:
    """Overrides of `base` with those of `extra` replacing any for the same key."""
    replaced = {override_key(o.input_line) for o in parse_overrides(extra)}
    return [o.input_line for o in parse_overrides(base) if override_key(o.input_line) not in replaced] + extra


RESUMABLE = ("search", "hardware")


def resume_config(stored: DictConfig, original: list[str], extra: list[str]) -> DictConfig:
    """A run's stored config with `extra` overrides applied; only search.* and hardware.* may change."""
    groups = {override_key(o.input_line).split(".")[0] for o in parse_overrides(extra)}
    fixed = groups - set(RESUMABLE)
    if fixed:
        raise UserError(f"a resumed search keeps its config; only search.* and hardware.* may change, not {sorted(fixed)[0]}")
    if not extra:
        return stored
    fresh = compose_config(merge_overrides(original, extra))
    for group in groups:
        stored[group] = fresh[group]
    return stored


def load_config(overrides: list[str]) -> RunConfig:
    """Compose and validate the config of one job."""
    return validate(compose_config(overrides))


def group_options(group: str) -> dict[str, str]:
    """The options of a config group with the one-line description of each."""
    options = {}
    for path in sorted((config_dir() / group).glob("*.yaml")):
        comments = [line for line in path.read_text().splitlines() if line.startswith("#") and "@package" not in line]
        options[path.stem] = comments[0].lstrip("# ").strip() if comments else ""
    return options


def default_options() -> dict[str, str]:
    """The option each group takes when not overridden (from conf/config.yaml's defaults list)."""
    defaults = OmegaConf.load(config_dir() / "config.yaml").get("defaults", [])
    return {k: v for item in defaults if isinstance(item, DictConfig) for k, v in item.items() if k in GROUPS}
