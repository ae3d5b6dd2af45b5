"""The registry of components: a config names a registered class; nothing else is ever imported from a config."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import TypeVar

from nascli.errors import UserError

COMPONENT_GROUPS = ("dataset", "space", "strategy", "evaluator")
OPTIONAL_GROUPS = ("logger",)  # groups a config may leave null
# The packages whose modules register the components of each group when imported.
_PACKAGES = {"dataset": "nascli.data", "space": "nascli.spaces", "strategy": "nascli.strategies",
             "evaluator": "nascli.evaluators", "logger": "nascli.trackers"}
SCHEMA_GROUP = "nascli_schema"  # Hydra group of each option's structured-config schema: <this>/<group>/<name>

_classes: dict[str, dict[str, type]] = {group: {} for group in COMPONENT_GROUPS + OPTIONAL_GROUPS}
T = TypeVar("T", bound=type)


def register(group: str, name: str) -> Callable[[T], T]:
    """Class decorator: make the class the component `name` of `group` (it needs a `Settings` dataclass)."""

    def add(cls: T) -> T:
        if name in _classes[group] and _classes[group][name] is not cls:
            raise RuntimeError(f"two {group} components are registered as '{name}'")
        cls.name = name
        _classes[group][name] = cls
        return cls

    return add


def _load(group: str) -> dict[str, type]:
    importlib.import_module(_PACKAGES[group])
    return _classes[group]


def names(group: str) -> list[str]:
    """The registered names of a group."""
    return sorted(_load(group))


def lookup(group: str, name: str) -> type:
    """The class registered as `name` in `group`; any other name is a UserError."""
    classes = _load(group)
    if name not in classes:
        raise UserError(f"unknown {group} '{name}'; registered: {', '.join(sorted(classes))}")
    return classes[name]


def schema(group: str, name: str) -> type:
    """The structured-config schema of an option: its class's Settings plus the `name` that selects the class."""
    settings = lookup(group, name).Settings
    return dataclasses.make_dataclass(f"{settings.__name__}Config", [("name", str, dataclasses.field(default=name))],
                                      bases=(settings,))
