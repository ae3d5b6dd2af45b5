"""The run directory: one class owns its file names, its typed records, and every read and write of them.

A run directory may come from someone else, so reading one treats its files as data: configs are loaded
without resolving interpolations, checkpoints with `weights_only=True`, and nothing it names is imported.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from nascli.errors import StorageError, UserError, first_line, writing
from nascli.fileio import bounded, parse_json, read_json, read_text, refuse_aliases, reject_interpolations, write_atomic
from nascli.records import (ArchitectureWeights, Best, Front, ModelHeader, Record, State, Summary, SupernetHeader,
                            Trial, WarmStartRecord, checked_metrics, corrupt, json_object)
from nascli.registry import COMPONENT_GROUPS, OPTIONAL_GROUPS, names

CONFIG = "config.yaml"
RECORD = "run.json"
TRIALS = "trials.jsonl"
BEST = "best.json"
SUMMARY = "summary.json"
STATE = "state.json"
RETRAIN_METRICS = "retrain/metrics.json"
MODEL = "retrain/model.pt"
VOCABULARY = "vocabulary.json"
SUPERNET = "supernet.pt"
ARCHITECTURE_WEIGHTS = "architecture_weights.json"
FRONT = "front.json"
WARM_START = "warm_start.json"
EXPORT = "export"
LOGS = {"search": "search.log", "retrain": "retrain.log"}  # the log of each kind of work
LOCK = ".lock"
MARKERS = (CONFIG, TRIALS, SUMMARY)
OWN_FILES = (CONFIG, RECORD, TRIALS, BEST, SUMMARY, STATE, RETRAIN_METRICS, MODEL, VOCABULARY, SUPERNET,
             ARCHITECTURE_WEIGHTS, FRONT, WARM_START)


def usable_dir(path_text: str, what: str) -> Path:
    """The folder `path_text`, created if needed; an empty, file-blocked or unwritable path is a UserError."""
    if not path_text.strip():
        raise UserError(f"{what} is empty; pass {what}=FOLDER")
    path = Path(path_text).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{what} {path} is a file, not a folder") from None
    except NotADirectoryError:
        raise UserError(f"{what} {path} lies inside a file") from None
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be created: {exc.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{what} {path} is not writable")
    return path


class RunDir:
    """A run directory: the names of its files, typed reads of them and, once locked, their writes.

    One process writes a run directory at a time: `create` and `open_for_writing` take an exclusive lock,
    released by `close` or by the OS however the process ends.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock: Optional[Any] = None

    def file(self, name: str) -> Path:
        """The path of the run's file `name`; a link anywhere below the run directory is refused, so that no read
        or write of the run follows one out of it."""
        path = self.path
        for part in Path(name).parts:
            path = path / part
            if path.is_symlink():
                raise UserError(f"{path} is a symbolic link; a run directory's files must be its own (refused)")
        return path

    def log_file(self, kind: str) -> Path:
        """The log of the run's work of `kind` (search, retrain)."""
        return self.file(LOGS[kind])

    def owns(self, path: Path) -> bool:
        """Whether `path` is one of the files that hold this run's records."""
        return any(path.resolve() == (self.path / name).resolve() for name in (*OWN_FILES, *LOGS.values(), LOCK))

    # -- reading ------------------------------------------------------------------------------------
    def holds_run(self) -> bool:
        """Whether the folder already holds a run's files."""
        return any(self.file(marker).exists() for marker in MARKERS)

    def ensure_free(self) -> None:
        """Refuse a folder that already holds a run, so that nothing is overwritten."""
        if self.holds_run():
            raise UserError(f"{self.path} already holds a run; pass another run_dir=... (nothing was overwritten)")

    def require_run(self) -> None:
        """Refuse a path that is not a run directory."""
        if not self.file(CONFIG).is_file():
            raise UserError(f"{self.path} is not a run directory (no {CONFIG})")

    def in_use(self) -> bool:
        """Whether a nas process holds the run's lock, i.e. writes it now (asked without disturbing that process)."""
        try:
            fd = os.open(self.file(LOCK), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released with the descriptor below
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def config(self) -> DictConfig:
        """The stored config, as data: interpolations are refused, not resolved."""
        self.require_run()
        path = self.file(CONFIG)
        text = read_text(path)
        refuse_aliases(text, str(path))
        try:
            container = OmegaConf.to_container(OmegaConf.create(text), resolve=False)
        except Exception as exc:
            raise UserError(f"{path} cannot be read ({first_line(exc)}); the file is corrupt") from None
        if not isinstance(container, dict):
            raise UserError(f"{path} is not a mapping of settings; the file is corrupt")
        reject_interpolations(bounded(container, str(path)), str(path))
        for group in COMPONENT_GROUPS + OPTIONAL_GROUPS:
            node = container.get(group)
            if group in OPTIONAL_GROUPS and node is None:
                continue
            if not isinstance(node, dict) or node.get("name") not in names(group):
                name = node.get("name") if isinstance(node, dict) else node
                raise UserError(f"{path} names no registered {group} ({name!r}; registered: {', '.join(names(group))}); "
                                "the file is corrupt")
        return OmegaConf.create(container)

    def record(self) -> dict[str, Any]:
        """run.json: the command, its overrides, package versions and machine (empty when missing)."""
        if not self.file(RECORD).exists():
            return {}
        record = json_object(read_json(self.file(RECORD)), str(self.file(RECORD)))
        overrides = record.get("overrides", [])
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise UserError(f"{self.file(RECORD)} has no valid 'overrides'; the file is corrupt")
        reject_interpolations(overrides, str(self.file(RECORD)))
        for override in overrides:
            if override.split("=", 1)[0].lstrip("+~").replace("/", ".").split(".")[0] == "hydra":
                raise UserError(f"{self.file(RECORD)} has an override of Hydra's own settings ({override!r}); a stored "
                                "override sets nascli's settings only; the file is corrupt")
        return record

    def overrides(self) -> list[str]:
        """The overrides the run was started with."""
        return self.record().get("overrides", [])

    def summary(self) -> Optional[Summary]:
        """summary.json, or None while the run has none."""
        path = self.file(SUMMARY)
        return Summary.from_dict(read_json(path), str(path)) if path.exists() else None

    def best(self) -> Optional[Best]:
        """best.json, or None when the run found no architecture."""
        path = self.file(BEST)
        return Best.from_dict(read_json(path), str(path)) if path.exists() else None

    def trials(self) -> list[Trial]:
        """The logged trials; a half-written last line is dropped with a warning."""
        return self._read_trials()[0]

    def _read_trials(self) -> tuple[list[Trial], list[str]]:
        """The logged trials and the lines that hold them."""
        path = self.file(TRIALS)
        if not path.exists():
            return [], []
        lines = read_text(path).splitlines()
        trials, kept = [], []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    warnings.warn(f"{path}: dropped a half-written last line", stacklevel=3)
                    break
                raise UserError(f"{path} line {number} is not valid JSON; the trial log is corrupt") from None
            except RecursionError:
                raise UserError(f"{path} line {number} nests too deeply; the trial log is corrupt") from None
            trials.append(Trial.from_dict(bounded(data, f"{path} line {number}"), f"{path} line {number}"))
            kept.append(line)
        return trials, kept

    def state(self) -> Optional[State]:
        """The search's checkpoint, or None when it is missing or empty."""
        path = self.file(STATE)
        text = read_text(path) if path.exists() else ""
        return State.from_dict(parse_json(text, str(path)), str(path)) if text.strip() else None

    def retrain_metrics(self) -> Optional[dict[str, Any]]:
        """retrain/metrics.json, or None when no retraining finished."""
        path = self.file(RETRAIN_METRICS)
        return checked_metrics(read_json(path), str(path)) if path.exists() else None

    def _load_tensors(self, name: str, header: type[Record]) -> dict[str, Any]:
        """A torch file of the run, loaded as tensors and plain values only (never unpickling objects), its header
        and state_dict checked."""
        path = self.file(name)
        try:
            checkpoint = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:
            raise UserError(f"{path} cannot be loaded ({str(exc).strip().splitlines()[0]}); the file is corrupt") from None
        header.from_dict(checkpoint, str(path))
        if not isinstance(checkpoint.get("state_dict"), dict):
            raise corrupt(str(path), "state_dict")
        return checkpoint

    def load_checkpoint(self) -> dict[str, Any]:
        """retrain/model.pt: the retrained network."""
        if not self.file(MODEL).exists():
            raise UserError(f"{self.path} has no retrained model ({self.file(MODEL)}); run `nas retrain {self.path}` first")
        return self._load_tensors(MODEL, ModelHeader)

    def load_supernet(self) -> Optional[dict[str, Any]]:
        """supernet.pt (the shared weights and how far their training got), or None when there is none."""
        if not self.file(SUPERNET).exists():
            return None
        return self._load_tensors(SUPERNET, SupernetHeader)

    def files(self) -> list[Path]:
        """The run's files (hidden ones left out)."""
        return sorted(p for p in self.path.rglob("*") if p.is_file() and not p.name.startswith("."))

    # -- writing ------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, config: DictConfig, record: dict[str, Any]) -> RunDir:
        """Start a run directory with its config and record, atomically: it appears whole or not at all."""
        run = cls(path)
        run.ensure_free()
        if path.exists() and any(path.iterdir()):
            raise UserError(f"{path} is not empty; pass another run_dir=... (nothing was overwritten)")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.creating-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            staging_run = cls(staging)
            staging_run._acquire()
            staging_run.save_config(config)
            staging_run.write_record(record)
            try:
                os.replace(staging, path)  # an empty folder made by Hydra is replaced; a filled one refuses
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                raise UserError(f"{path} already holds a run (another search created it just now); pass another "
                                "run_dir=... (nothing was overwritten)") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        run._lock = staging_run._lock
        return run

    def open_for_writing(self) -> RunDir:
        """Lock an existing run directory to continue it."""
        self.require_run()
        self._acquire()
        return self

    def _acquire(self) -> None:
        path = self.file(LOCK)
        with writing(path):
            lock = _open_to_append(path)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise UserError(f"{self.path} is in use by another nas process") from None
        self._lock = lock

    def close(self) -> None:
        """Release the run directory."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _write_json(self, name: str, data: Any, indent: Optional[int] = 2) -> None:
        path = self.file(name)
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(data, indent=indent) + "\n")

    def save_config(self, config: DictConfig) -> None:
        """Write the run's resolved config.yaml."""
        write_atomic(self.file(CONFIG), OmegaConf.to_yaml(config, resolve=True))

    def write_record(self, record: dict[str, Any]) -> None:
        self._write_json(RECORD, record)

    def write_summary(self, summary: Summary) -> None:
        self._write_json(SUMMARY, summary.to_dict())

    def write_best(self, best: Best) -> None:
        self._write_json(BEST, best.to_dict())

    def write_state(self, state: State) -> None:
        """Write the search's checkpoint (compact: it is rewritten before every trial)."""
        self._write_json(STATE, state.to_dict(), indent=None)

    def write_vocabulary(self, vocabulary: dict[str, Any]) -> None:
        """Write the tokenizer's vocabulary and settings, so that retraining and export encode text the same way."""
        self._write_json(VOCABULARY, vocabulary, indent=None)

    def write_architecture_weights(self, weights: ArchitectureWeights) -> None:
        self._write_json(ARCHITECTURE_WEIGHTS, weights.to_dict(), indent=None)

    def architecture_weights(self) -> Optional[ArchitectureWeights]:
        """The operation weights of a relaxed search per epoch, or None when the run made none."""
        path = self.file(ARCHITECTURE_WEIGHTS)
        return ArchitectureWeights.from_dict(read_json(path), str(path)) if path.exists() else None

    def write_front(self, front: Front) -> None:
        self._write_json(FRONT, front.to_dict())

    def front(self) -> Optional[Front]:
        """front.json, or None when the search had one objective."""
        path = self.file(FRONT)
        return Front.from_dict(read_json(path), str(path)) if path.exists() else None

    def write_warm_start(self, record: WarmStartRecord) -> None:
        self._write_json(WARM_START, record.to_dict(), indent=None)

    def warm_start(self) -> Optional[WarmStartRecord]:
        """The warm start's record, or None when the search had none."""
        path = self.file(WARM_START)
        return WarmStartRecord.from_dict(read_json(path), str(path)) if path.exists() else None

    def write_retrain_metrics(self, metrics: dict[str, Any]) -> None:
        self._write_json(RETRAIN_METRICS, metrics)

    def append_trial(self, trial: Trial) -> None:
        """Append one finished trial to trials.jsonl and force it to disk."""
        path = self.file(TRIALS)
        with writing(path), _open_to_append(path) as f:
            f.write(json.dumps(trial.to_dict()) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def recover_trials(self) -> list[Trial]:
        """The logged trials; a half-written last line is dropped from the file too, so appends start clean."""
        trials, kept = self._read_trials()
        text = "".join(line + "\n" for line in kept)
        if self.file(TRIALS).exists() and read_text(self.file(TRIALS)) != text:
            write_atomic(self.file(TRIALS), text)
        return trials

    def save_supernet(self, header: SupernetHeader, state_dict: dict[str, Any], loop: dict[str, Any]) -> None:
        """Replace supernet.pt atomically, so that a kill while saving leaves the previous epoch's: the header, the
        weights and what its training loop needs to continue."""
        checkpoint = {**loop, **header.to_dict(), "state_dict": state_dict}
        _save_tensors(checkpoint, self.file(SUPERNET))

    def save_model(self, header: ModelHeader, state_dict: dict[str, Any]) -> Path:
        """Save retrain/model.pt so that it loads with torch.load(..., weights_only=True)."""
        checkpoint = {**header.to_dict(), "state_dict": state_dict}
        path = self.file(MODEL)
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
        _save_tensors(checkpoint, path)
        return path


def _open_to_append(path: Path) -> Any:
    """`path` opened to append text, never through a link planted in its place."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644), "a")


def check_output(path: Path, force: bool) -> None:
    """Refuse to write `path` over a run's own records (ever), or over an existing file without --force."""
    for folder in path.resolve().parents:
        if (folder / CONFIG).is_file() and RunDir(folder).owns(path):
            raise UserError(f"{path} is one of the run {folder}'s own files; write elsewhere (nothing was overwritten)")
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to replace it (nothing was overwritten)")


def _save_tensors(checkpoint: dict[str, Any], path: Path) -> None:
    """torch.save `checkpoint` to `path` through a staging file, so that a kill or a full disk leaves the previous
    file whole; a failed write is a StorageError."""
    staging = path.with_name(f".{path.name}.saving")
    with writing(path):
        staging.unlink(missing_ok=True)  # a planted link is removed, never written through
        try:
            torch.save(checkpoint, staging)
        except RuntimeError as exc:  # torch's zip writer reports a failed write so (a full disk, a size limit)
            staging.unlink(missing_ok=True)
            raise StorageError(f"cannot write {path}: torch's writer failed ({first_line(exc)})") from None
        os.replace(staging, path)


def find_runs(paths: list[Path]) -> list[RunDir]:
    """Run directories at or below each path (a run, a sweep, or any parent folder)."""
    found: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist")
        if (path / CONFIG).exists():
            found.add(path)
        else:
            found.update(p.parent for p in path.rglob(CONFIG) if not p.parent.name.startswith("."))  # nor staging
    return [RunDir(p) for p in sorted(found)]
