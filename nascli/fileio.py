"""Files that may come from someone else, read as bounded data; files written so that a crash leaves no half of one."""

from __future__ import annotations

import json
import os
import stat
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml

from nascli.errors import UserError, first_line, writing

MAX_BYTES = 256 << 20  # no record file of a real run comes near; a bigger one is refused before it is read
MAX_DEPTH = 32  # nor nests deeper (an architecture is a few levels); deeper JSON would only exhaust the stack


def write_atomic(path: Path, text: str) -> None:
    """Write a file atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path):
        with suppress(FileNotFoundError):
            tmp.unlink()  # a planted link is removed, never written through
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def read_text(path: Path) -> str:
    """The text of a regular file of at most MAX_BYTES; else a UserError (a device or a pipe would never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a pipe is refused below, not waited on
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except OSError as exc:
        raise UserError(f"{path} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UserError(f"{path} is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path} is not a regular file (a device, a pipe or a socket); refused")
        if info.st_size > MAX_BYTES:
            raise UserError(f"{path} is {info.st_size >> 20} MB, more than any run writes; the file is corrupt")
        data = f.read(MAX_BYTES + 1)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; the file is corrupt") from None


def _depth(value: Any) -> int:
    """How deeply lists and mappings nest in `value` (counted without recursion)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth <= MAX_DEPTH:
            children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
            stack.extend((child, depth + 1) for child in children)
    return deepest


def bounded(value: Any, where: str) -> Any:
    """`value`, read from a file, when it nests no deeper than MAX_DEPTH; else a UserError naming `where`."""
    if _depth(value) > MAX_DEPTH:
        raise UserError(f"{where} nests deeper than {MAX_DEPTH} levels; the file is corrupt")
    return value


def parse_json(text: str, where: str) -> Any:
    """JSON text read from a file, its depth bounded; invalid JSON is a UserError naming `where`."""
    try:
        return bounded(json.loads(text), where)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = "nests too deeply" if isinstance(exc, RecursionError) else f"is not valid JSON ({exc})"
        raise UserError(f"{where} {reason}; the file is corrupt") from None


def read_json(path: Path) -> Any:
    """Read a JSON file; a missing, linked, oversized or corrupt one is a UserError naming it."""
    return parse_json(read_text(path), str(path))


def refuse_aliases(text: str, where: str) -> None:
    """Refuse YAML anchors and aliases: a stored config never holds them, and a few can expand into billions."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise UserError(f"{where} holds a YAML alias; a stored config holds plain values; the file is corrupt")
    except yaml.YAMLError as exc:
        raise UserError(f"{where} cannot be read ({first_line(exc)}); the file is corrupt") from None


def reject_interpolations(node: Any, where: str) -> None:
    """Refuse `${...}` anywhere in a stored config (resolving it could read the environment or call resolvers), and
    Hydra's instantiation keys (`_target_`, ...), which no stored config holds."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.startswith("_") and key.endswith("_"):
                raise UserError(f"{where} holds an unknown key '{key}' (no stored config has one); the file is corrupt")
            reject_interpolations(value, where)
    elif isinstance(node, list):
        for value in node:
            reject_interpolations(value, where)
    elif isinstance(node, str) and "${" in node:
        raise UserError(f"{where} holds an interpolation ({node!r}); a stored config must hold plain values")
