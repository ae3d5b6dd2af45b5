"""The run directory: writes a run's files safely and reads runs back."""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from nascli.errors import UserError

RUN_MARKERS = ("config.yaml", "trials.jsonl", "summary.json")


def write_atomic(path: Path, text: str) -> None:
    """Write a file atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically."""
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file; a missing or corrupt one is a UserError naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); the file is corrupt") from None


def holds_run(path: Path) -> bool:
    """Whether a folder already holds a run's files."""
    return any((path / marker).exists() for marker in RUN_MARKERS)


def ensure_free(path: Path) -> None:
    """Refuse a run directory that already holds a run, so that nothing is overwritten."""
    if holds_run(path):
        raise UserError(f"{path} already holds a run; pass another run_dir=... (nothing was overwritten)")


class RunStore:
    """Writes one run directory; the only writer of its files, which it locks while open."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = open(root / ".lock", "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the OS however the process ends
        except BlockingIOError:
            self._lock.close()
            raise UserError(f"{root} is in use by another nas process") from None

    @classmethod
    def create(cls, root: Path, config: DictConfig, record: dict[str, Any]) -> RunStore:
        """Start a run directory with its resolved config and its record (command, overrides, environment)."""
        ensure_free(root)
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root)
        store.save_config(config)
        write_json(root / "run.json", record)
        return store

    @classmethod
    def reopen(cls, root: Path) -> RunStore:
        """Open an existing run directory to continue it."""
        if not (root / "config.yaml").exists():
            raise UserError(f"{root} is not a run directory (no config.yaml)")
        return cls(root)

    def close(self) -> None:
        """Release the run directory."""
        self._lock.close()

    def save_config(self, config: DictConfig) -> None:
        """Write the run's resolved config.yaml (atomically)."""
        write_atomic(self.root / "config.yaml", OmegaConf.to_yaml(config, resolve=True))

    def recover_trials(self) -> list[dict[str, Any]]:
        """The trials logged so far; a half-written last line is dropped from the file too, so appends start clean."""
        path = self.root / "trials.jsonl"
        trials = read_trials(path)
        if path.exists():
            write_atomic(path, "".join(json.dumps(trial) + "\n" for trial in trials))
        return trials

    def append_trial(self, trial: dict[str, Any]) -> None:
        """Append one finished trial to trials.jsonl and force it to disk."""
        with open(self.root / "trials.jsonl", "a") as f:
            f.write(json.dumps(trial) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def write(self, name: str, data: Any) -> None:
        """Write a JSON file of the run (best.json, summary.json, retrain/metrics.json, ...)."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, data)

    def write_state(self, state: dict[str, Any]) -> None:
        """Write the search's checkpoint, state.json (atomically, compact: it is rewritten after every trial)."""
        write_atomic(self.root / "state.json", json.dumps(state))

    def save_model(self, name: str, checkpoint: dict[str, Any]) -> Path:
        """Save a checkpoint that loads with torch.load(..., weights_only=True)."""
        import torch  # lazily: commands that only read runs should not pay for importing torch

        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(checkpoint, path)
        return path


def read_trials(path: Path) -> list[dict[str, Any]]:
    """The trials of a trials.jsonl; a half-written last line is dropped with a warning."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    trials = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            trials.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                warnings.warn(f"{path}: dropped a half-written last line", stacklevel=2)
                break
            raise UserError(f"{path} line {number} is not valid JSON; the trial log is corrupt") from None
    return trials


@dataclass
class Run:
    """A run directory read back: its config, record, summary and best architecture."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    best: Optional[dict[str, Any]]


def load_run(path: Path) -> Run:
    """Read a run directory; a missing or corrupt file is a UserError."""
    if not (path / "config.yaml").exists():
        raise UserError(f"{path} is not a run directory (no config.yaml)")
    try:
        config = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"))
    except Exception as exc:
        raise UserError(f"{path / 'config.yaml'} cannot be read ({str(exc).splitlines()[0]})") from None
    summary = read_json(path / "summary.json") if (path / "summary.json").exists() else {"status": "unknown"}
    best = read_json(path / "best.json") if (path / "best.json").exists() else None
    return Run(path=path, config=config, summary=summary, best=best)


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories at or below each path (a run, a sweep, or any parent folder)."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist")
        if (path / "config.yaml").exists():
            found.append(path)
        else:
            found += sorted(p.parent for p in path.rglob("config.yaml") if p.parent.name != ".hydra")
    return sorted(set(found))
