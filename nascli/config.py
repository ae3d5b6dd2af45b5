"""Config schemas, Hydra composition of overrides, and validation into typed settings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from nascli.errors import UserError

GROUPS = ("dataset", "space", "strategy", "hardware", "evaluator")
COMPONENT_GROUPS = ("dataset", "space", "strategy", "evaluator")


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

    def __post_init__(self) -> None:
        require(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        require(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        require(self.lr > 0, f"lr must be positive, got {self.lr}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)")


@dataclass
class HardwareSettings:
    """Where trials run: device, parallel workers, CPU threads, mixed precision and memory layout."""

    device: str = "auto"
    gpus: Optional[list[int]] = None
    trials_per_gpu: int = 1
    workers: int = 1
    threads: Optional[int] = None
    amp: str = "auto"
    channels_last: str = "auto"
    executor: str = "local"
    ray_address: Optional[str] = None

    def __post_init__(self) -> None:
        require(self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}")
        require(self.gpus is None or (len(self.gpus) > 0 and min(self.gpus) >= 0), "gpus must list GPU indices")
        require(self.trials_per_gpu >= 1, "trials_per_gpu must be at least 1")
        require(self.workers >= 1, "workers must be at least 1")
        require(self.threads is None or self.threads >= 1, "threads must be at least 1 (or null for all)")
        require(self.amp in ("auto", "bf16", "off"), f"amp must be auto, bf16 or off, got {self.amp!r}")
        require(self.channels_last in ("auto", "on", "off"), "channels_last must be auto, on or off")
        require(self.executor in ("local", "ray"), f"executor must be local or ray, got {self.executor!r}")


@dataclass
class SearchSettings:
    """When the search stops, and whether outcomes reach the strategy in proposal order (reproducible with workers)."""

    max_trials: int = 30
    max_seconds: Optional[float] = None
    ordered: bool = True

    def __post_init__(self) -> None:
        require(self.max_trials >= 1, f"max_trials must be at least 1, got {self.max_trials}")
        require(self.max_seconds is None or self.max_seconds > 0, "max_seconds must be positive (or null)")


@dataclass
class RetrainSettings(TrainSettings):
    """Retraining of the best architecture on train+validation, scored on the test split."""

    enabled: bool = True
    epochs: int = 40


@dataclass
class _Schema:
    """The top level of conf/config.yaml; component groups are checked against their own settings."""

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


@dataclass(frozen=True)
class Component:
    """A validated option of a component group: its class, its name and its typed settings."""

    name: str
    cls: type
    settings: Any

    def create(self, **dependencies: Any) -> Any:
        """Instantiate the component with its settings and runtime dependencies."""
        return self.cls(self.settings, **dependencies)


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
    raw: DictConfig

    @property
    def trains(self) -> bool:
        """Whether the search trains networks (and so needs the dataset)."""
        return self.evaluator.cls.needs_data or self.retrain.enabled


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _typed(schema: type, values: Any, where: str) -> Any:
    """Merge values onto a settings dataclass and build it; errors become UserError naming the key."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        return OmegaConf.to_object(merged)
    except ConfigKeyError as exc:
        key = getattr(exc, "key", None) or _first_line(exc)
        valid = ", ".join(f.name for f in schema.__dataclass_fields__.values())
        raise UserError(f"unknown key '{where}{key}'; valid keys: {valid}") from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        raise UserError(f"invalid value for '{where}{key}': {_first_line(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"invalid {where.rstrip('.') or 'setting'}: {_first_line(exc)}") from None


def component(group: str, node: Any) -> Component:
    """The validated Component of a group's config node (its `_target_`, `name` and settings)."""
    if not isinstance(node, DictConfig) or "_target_" not in node or "name" not in node:
        raise UserError(f"config group '{group}' needs '_target_' and 'name'; see `nas list`")
    try:
        cls = get_class(node._target_)
    except Exception:
        raise UserError(f"{group}: cannot import '{node._target_}'") from None
    params = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in ("_target_", "name")}
    settings = _typed(cls.Settings, params, f"{group}.")
    return Component(name=str(node.name), cls=cls, settings=settings)


def validate(cfg: DictConfig) -> RunConfig:
    """Check a composed config against the schemas and return typed settings."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise UserError(f"cannot resolve config: {_first_line(exc)}") from None
    top = {k: v for k, v in container.items() if k not in COMPONENT_GROUPS}
    typed = _typed(_Schema, top, "")
    components = {group: component(group, cfg[group]) for group in COMPONENT_GROUPS}
    return RunConfig(
        **components,
        hardware=typed.hardware,
        search=typed.search,
        retrain=typed.retrain,
        seed=typed.seed,
        run_dir=typed.run_dir,
        raw=OmegaConf.create(container),
    )


def _compose(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides)


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides; errors become one-line UserErrors."""
    try:
        return _compose(overrides)
    except MissingConfigException as exc:
        if exc.options and exc.missing_cfg_file:
            group, _, option = exc.missing_cfg_file.rpartition("/")
            raise UserError(f"unknown {group} '{option}'; choose one of: {', '.join(sorted(exc.options))}") from None
        raise UserError(_first_line(exc)) from None
    except OverrideParseException as exc:
        raise UserError(f"malformed override: {_first_line(exc)} (Hydra syntax: key=value)") from None
    except (HydraException, OmegaConfBaseException) as exc:
        if isinstance(exc.__cause__, OmegaConfBaseException) and "not in struct" in str(exc.__cause__):
            raise UserError(_unknown_key_message(str(exc).split("'")[1], overrides)) from None
        raise UserError("; ".join(line.strip() for line in str(exc).splitlines()[:2] if line.strip())) from None


def _unknown_key_message(key: str, overrides: list[str]) -> str:
    """Name the unknown key and list the keys valid where it was put."""
    parent = key.rpartition(".")[0]
    choices = [o for o in overrides if o.split("=", 1)[0] in GROUPS]
    try:
        node = _compose(choices)
        node = OmegaConf.select(node, parent) if parent else node
        valid = [k for k in node if k not in ("_target_", "name")]
    except Exception:
        return f"unknown key '{key}'; see `nas search --cfg job` for the valid keys"
    where = f" under {parent}" if parent else ""
    return f"unknown key '{key}'; valid keys{where}: {', '.join(valid) if valid else '(none)'}"


def parse_overrides(overrides: list[str]) -> list:
    """Parse Hydra overrides; a malformed one becomes a one-line UserError."""
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as exc:
        raise UserError(f"malformed override: {_first_line(exc)} (Hydra syntax: key=value)") from None


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """The override list of every job in a multirun sweep (comma lists and range(...))."""
    choices = []
    for override in parse_overrides(overrides):
        if override.is_sweep_override() and override.is_discrete_sweep():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(job) for job in itertools.product(*choices)]


def merge_overrides(base: list[str], extra: list[str]) -> list[str]:
    """Overrides of `base` with those of `extra` replacing any for the same key."""
    replaced = {override.get_key_element().lstrip("+~") for override in parse_overrides(extra)}
    kept = [o.input_line for o in parse_overrides(base) if o.get_key_element().lstrip("+~") not in replaced]
    return kept + extra


RESUMABLE = ("search", "hardware")


def resume_config(stored: DictConfig, original: list[str], extra: list[str]) -> DictConfig:
    """A run's stored config with `extra` overrides applied; only search.* and hardware.* may change."""
    keys = [o.get_key_element().lstrip("+~") for o in parse_overrides(extra)]
    groups = {key.split(".")[0].split("@")[0] for key in keys}
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
