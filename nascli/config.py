"""Hydra composition of overrides (sweeps, resume) and the one step that turns a composed config into a RunConfig.

The settings themselves, with every default, live in `nascli.settings`; here they are composed, and the values
that one group derives from another (a multimodal space's inputs, a trial's seconds per epoch) are resolved.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Optional

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from nascli.errors import UserError, first_line
from nascli.registry import COMPONENT_GROUPS, OPTIONAL_GROUPS, SCHEMA_GROUP, names, schema
from nascli.settings import (Component, ConfigSchema, HardwareSettings, RetrainSettings, SearchSettings, component,
                             typed_settings)

GROUPS = ("dataset", "space", "strategy", "hardware", "evaluator", "logger")


def config_dir() -> Path:
    """The `conf/` folder: packaged inside nascli when installed, beside it in a source checkout."""
    packaged = Path(__file__).parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "conf"


@dataclass
class RunConfig:
    """A composed, validated configuration: what the runner works from."""

    dataset: Component
    space: Component
    strategy: Component
    evaluator: Component
    hardware: HardwareSettings
    logger: Optional[Component]
    search: SearchSettings
    retrain: RetrainSettings
    seed: int
    run_dir: str
    source: Optional[str]
    pick: Optional[int]
    raw: DictConfig
    derived: dict[str, str] = field(default_factory=dict)  # a key derived from another group's -> the line saying so

    def at(self, run_dir: Path) -> RunConfig:
        """This config with its run directory set to `run_dir` (where Hydra or the caller put the run)."""
        raw = self.raw.copy()
        raw.run_dir = str(run_dir)
        return dataclasses.replace(self, run_dir=str(run_dir), raw=raw)

    @property
    def trains(self) -> bool:
        """Whether the search trains (or pre-screens) networks, and so needs the dataset."""
        prescreen = getattr(self.strategy.settings, "prescreen", None)
        return self.evaluator.cls.needs_data or self.retrain.enabled or prescreen is not None


def validate(cfg: DictConfig) -> RunConfig:
    """Check a composed config against the schemas and return typed settings."""
    if not isinstance(cfg, DictConfig):
        raise UserError("a config must be a mapping of keys to values")
    try:  # Hydra's own node is left out: it is not ours to check, and resolves only inside a running job
        container = OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    except OmegaConfBaseException as exc:
        raise UserError(f"cannot resolve config: {first_line(exc)}") from None
    top = {k: v for k, v in container.items() if k not in COMPONENT_GROUPS + OPTIONAL_GROUPS}
    typed = typed_settings(ConfigSchema, top, "")
    components = {group: component(group, container.get(group)) for group in COMPONENT_GROUPS}
    optional = {group: component(group, container[group]) if container.get(group) is not None else None
                for group in OPTIONAL_GROUPS}
    derived = _resolve(container, components, typed.retrain)
    return RunConfig(
        **components,
        **optional,
        hardware=typed.hardware,
        search=typed.search,
        retrain=typed.retrain,
        seed=typed.seed,
        run_dir=typed.run_dir,
        source=typed.source,
        pick=typed.pick,
        raw=OmegaConf.create(container),
        derived=derived,
    )


def _resolve(container: dict[str, Any], components: dict[str, Component], retrain: RetrainSettings) -> dict[str, str]:
    """Derive the values one group takes from another, in place; returns what was derived, and how.

    - A multimodal space's `inputs` (null) are the dataset's named inputs; the stored config then names them,
      so the space never needs the data to know its architectures.
    - A trial's `evaluator.epoch_seconds` (null) is the retraining's, retrain.max_seconds / retrain.epochs, so
      that a trial is a scaled-down retraining (no limit without retrain.max_seconds). The stored config keeps
      null: it is derived again wherever the config is read.
    """
    derived = {}
    if getattr(components["space"].settings, "inputs", False) is None:
        components["space"] = _with_dataset_inputs(container, components)
    evaluator = components["evaluator"]
    if getattr(evaluator.settings, "epoch_seconds", math.inf) is None and retrain.enabled and retrain.max_seconds:
        seconds = retrain.max_seconds / retrain.epochs
        components["evaluator"] = dataclasses.replace(
            evaluator, settings=dataclasses.replace(evaluator.settings, epoch_seconds=seconds))
        derived["evaluator.epoch_seconds"] = (
            f"trials: at most {seconds:.3g} s of training per epoch, as in the retraining (retrain.max_seconds="
            f"{retrain.max_seconds:g} over {retrain.epochs} epochs); longer ones are shortened to the steps that fit, "
            "their schedule compressed (evaluator.epoch_seconds sets it; inf: no limit)")
    return derived


def _with_dataset_inputs(container: dict[str, Any], components: dict[str, Component]) -> Component:
    """The space of a config whose `space.inputs` is null, given the dataset's named inputs (multimodal data)."""
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


@cache
def store_schemas() -> None:
    """Put every component's schema into Hydra's ConfigStore, so option YAMLs hold only what differs (once per
    process: the store outlives Hydra's own state, which each composition clears)."""
    store = ConfigStore.instance()
    store.store(name="config_schema", node=ConfigSchema)
    for group in COMPONENT_GROUPS + OPTIONAL_GROUPS:
        for name in names(group):
            store.store(group=f"{SCHEMA_GROUP}/{group}", name=name, node=schema(group, name))


def _compose(overrides: list[str], name: str = "config") -> DictConfig:
    store_schemas()
    GlobalHydra.instance().clear()  # a Hydra app that just failed in this process leaves it initialised
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(name, overrides=overrides)


def compose_config(overrides: list[str], name: str = "config") -> DictConfig:
    """Compose conf/<name>.yaml with Hydra overrides; errors become one-line UserErrors."""
    with hydra_errors(overrides):
        return _compose(overrides, name)


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


# a `~` (or `~user`) that starts a value, a list or sweep element, or a quoted string: Hydra's grammar has no `~`
TILDE = re.compile(r"(?:^|(?<=[,\['\"]))~[\w.-]*(?=[/,\]'\"]|$)")


def expand_home(args: list[str]) -> list[str]:
    """Overrides with `~` expanded as a shell expands it after `x=`, which it does not do for dotted keys."""
    expanded = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and not arg.startswith("-"):
            arg = key + sep + TILDE.sub(lambda home: os.path.expanduser(home.group()), value)
        expanded.append(arg)
    return expanded


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


RESUMABLE = ("search", "hardware", "logger")


def resume_config(stored: DictConfig, original: list[str], extra: list[str]) -> DictConfig:
    """A run's stored config with `extra` overrides applied; only search.*, hardware.* and logger may change."""
    groups = {override_key(o.input_line).split(".")[0] for o in parse_overrides(extra)}
    fixed = groups - set(RESUMABLE)
    if fixed:
        raise UserError(f"a resumed search keeps its config; only search.*, hardware.* and logger may change, "
                        f"not {sorted(fixed)[0]}")
    if not extra:
        return stored
    fresh = compose_config(merge_overrides(original, extra))
    for group in groups:
        stored[group] = fresh[group]
    return stored


def load_config(overrides: list[str], name: str = "config") -> RunConfig:
    """Compose and validate the config of one job (`name`: retrain for a retraining's)."""
    return validate(compose_config(overrides, name))


def group_options(group: str) -> dict[str, str]:
    """The options of a config group with the description of each: its leading comment lines, joined."""
    options = {}
    for path in sorted((config_dir() / group).glob("*.yaml")):
        lines = path.read_text().splitlines()
        leading = itertools.takewhile(lambda line: line.startswith("#"), lines)
        options[path.stem] = " ".join(line.lstrip("# ").strip() for line in leading if "@package" not in line)
    return options


def default_options() -> dict[str, str]:
    """The option each group takes when not overridden (from conf/config.yaml's defaults list)."""
    defaults = OmegaConf.load(config_dir() / "config.yaml").get("defaults", [])
    return {k: v for item in defaults if isinstance(item, DictConfig) for k, v in item.items() if k in GROUPS}
