"""Errors that reach the user as one line and exit code 2."""

import importlib.util
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

LOGGER = "nascli.run"  # the logger of the work on a run directory: `printout.run_log` gives it the run's log file
logging.getLogger(LOGGER).addHandler(logging.NullHandler())  # outside a run, nothing more than what is printed
logging.getLogger(LOGGER).propagate = False


def require(condition: bool, message: str) -> None:
    """Raise ValueError(message) unless condition holds; used by settings' __post_init__."""
    if not condition:
        raise ValueError(message)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class UserError(Exception):
    """A mistake the user can fix (bad option, missing file, ...); shown as one line, exit code 2."""


def require_extra(purpose: str, extra: str, *modules: str) -> None:
    """A one-line UserError with the pip hint unless each module of an optional extra is installed (not imported)."""
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a dotted name whose parent package is missing
            found = False
        if not found:
            raise UserError(f"{purpose} needs {module.rpartition('.')[2]}, which is not installed: "
                            f"pip install 'nascli[{extra}]'")


class Stopped(UserError):
    """Work that stopped part-way for a cause the user can remove (a full disk, no machine left for a worker): what
    was done is kept and the run continues once the cause is gone."""


class StorageError(Stopped):
    """A file could not be written (a full disk, a file-size limit, a read-only folder)."""


class TrialFailed(Exception):
    """A trial that could not finish (diverged, out of memory); recorded as failed, the search goes on."""


def exit_with(error: UserError) -> NoReturn:
    """Print a user error as one line on stderr and exit with code 2."""
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2)


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing `path` (unwritable, a directory, no space) into a StorageError naming it."""
    try:
        yield
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None


def warn(message: str) -> None:
    """Print a warning the user should see as one line on stderr (the work goes on), and log it with the run's."""
    print(f"warning: {message}", file=sys.stderr)
    logging.getLogger(LOGGER).warning(message)
