"""Spaces and networks as a run directory stores them: the space its config names, its model, its weights.

Everything here reads a run as data (`RunDir`): the space is looked up in the registry by name, weights are
loaded with `weights_only=True`; nothing the run names is imported or executed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from nascli.data.base import input_shape_of
from nascli.errors import UserError, first_line
from nascli.rundir import MODEL, SUPERNET, RunDir
from nascli.settings import component
from nascli.spaces.base import Arch, SearchSpace


def space_of(config: Any) -> SearchSpace:
    """The search space a stored config (a run directory's, read as data) names."""
    chosen = component("space", config.get("space"))
    return chosen.cls(chosen.settings)


def load_model(run_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The retrained network of a run directory in eval mode, and its checkpoint."""
    run = RunDir(run_dir)
    space = space_of(run.config())
    checkpoint = run.load_checkpoint()
    try:
        model = space.build(space.validate(checkpoint["arch"]), input_shape_of(checkpoint),
                            checkpoint["num_classes"], checkpoint.get("vocab_size"))
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as exc:  # an architecture or weights that do not fit the space or each other
        raise UserError(f"{run.file(MODEL)} does not match its run's {space.name} space: {first_line(exc)}") from None
    return model.eval(), checkpoint


def weight_source(path_text: str) -> Callable[[Arch], dict[str, Tensor]]:
    """The weights to start each architecture from, read once: a run's retrained model, or the architecture's
    path through a run's supernet."""
    run = RunDir(Path(path_text).expanduser())
    run.require_run()
    if run.file(MODEL).exists():
        weights = run.load_checkpoint()["state_dict"]
        return lambda arch: weights
    checkpoint = run.load_supernet()
    if checkpoint is None:
        raise UserError(f"{run.path} has neither a retrained model nor a supernet to initialise from")
    space = space_of(run.config())
    try:
        supernet = space.supernet(input_shape_of(checkpoint), checkpoint["num_classes"])
        supernet.load_state_dict(checkpoint["state_dict"])
    except Exception as exc:  # weights that do not fit the space's supernet
        raise UserError(f"{run.file(SUPERNET)} does not match its run's {space.name} supernet: {first_line(exc)}") from None

    def path_weights(arch: Arch) -> dict[str, Tensor]:
        try:
            return supernet.extract(space.validate(arch)).state_dict()
        except ValueError as exc:
            raise UserError(f"{run.path}'s supernet holds no path for this architecture ({exc})") from None

    return path_weights
