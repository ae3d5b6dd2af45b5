"""Evaluate with inherited weights: score each candidate as a path of a trained supernet.

The supernet is trained in the run directory before the first trial — on uniform random paths (single-path
one-shot, Guo et al. 2020) or as a continuous relaxation (DARTS, DrNAS) — and checkpointed each epoch
(`supernet.pt`), so a resumed run continues its training; or it is taken from another run
(`evaluator.supernet=RUN_DIR`), fine-tuned on this run's data for `finetune_epochs` when asked.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.distributions import Dirichlet, kl_divergence

from nascli.config import TrainSettings, require
from nascli.data.base import Inputs, batch_parts
from nascli.errors import TrialFailed, UserError, warn
from nascli.evaluators.base import Evaluator
from nascli.evaluators.metrics import OBJECTIVES, evaluate_model
from nascli.evaluators.profile import count_flops, count_params
from nascli.evaluators.training import (batches_per_epoch, every_parameter, optimizer_and_schedule, train,
                                       training_loss)
from nascli.printout import progress
from nascli.registry import register
from nascli.rundir import SUPERNET, RunDir
from nascli.seeding import derive_seed
from nascli.spaces.base import Arch, SearchSpace, Supernet


TRAININGS = ("spos", "softmax", "dirichlet")
SELECTIONS = ("strength", "perturbation")
# perturbation by measurement: on NAS-Bench-201 it derived cells at 87.4 against 67.8 (DARTS) and 82.2 (DrNAS) by
# strength (docs/benchmarks.md)
DEFAULT_SELECTION = "perturbation"
CHANCE_SHARE = 0.9  # a supernet whose loss stays above this share of the chance loss, ln(classes), has not learned


@dataclass
class SupernetEvaluatorSettings(TrainSettings):
    """How the supernet is trained (random paths or a relaxation) and how its paths are scored."""

    epochs: int = 30  # supernet training, when this run trains its own
    training: str = "spos"  # spos: uniform random paths; softmax: DARTS's relaxation; dirichlet: DrNAS's
    arch_lr: float = 3e-4  # Adam on the relaxation's architecture weights, fitted on the validation split
    arch_weight_decay: float = 1e-3
    dirichlet_reg: float = 1e-3  # dirichlet: weight of the KL divergence to a flat Dirichlet prior
    # How a trained relaxation becomes one architecture: strength keeps the op of largest weight per position
    # (DARTS); perturbation keeps, position by position, the op whose removal costs the supernet the most
    # validation accuracy, training the weights selection_epochs after each (DARTS-PT, Wang et al. 2021).
    selection: str = DEFAULT_SELECTION
    selection_epochs: int = 1
    supernet: Optional[str] = None  # a run directory whose supernet.pt is used; null: train one in this run
    finetune_epochs: int = 0  # training of a taken supernet on this run's data before the search
    calibration_batches: int = 8  # training batches that recompute a path's batch-norm statistics before scoring
    objective: str = "val_acc"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.finetune_epochs >= 0, "finetune_epochs must be >= 0")
        require(self.calibration_batches >= 0, "calibration_batches must be >= 0")
        require(self.selection in SELECTIONS, f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        require(self.selection_epochs >= 0, "selection_epochs must be >= 0")
        require(self.training in TRAININGS, f"training must be one of {', '.join(TRAININGS)}, got {self.training!r}")
        require(self.arch_lr > 0 and self.arch_weight_decay >= 0 and self.dirichlet_reg >= 0,
                "arch_lr must be positive; arch_weight_decay and dirichlet_reg >= 0")
        require(self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")


class RandomPaths(nn.Module):
    """A supernet that takes a new uniformly drawn path at every training step (SPOS)."""

    def __init__(self, supernet: Supernet, space: SearchSpace, seed: int) -> None:
        super().__init__()
        self.supernet, self.space, self.seed = supernet, space, seed
        self.rng = random.Random()

    def start_epoch(self, epoch: int) -> None:
        """Seed the paths of `epoch` (0-based), so that a resumed training draws the paths an uninterrupted one would."""
        self.rng.seed(derive_seed(self.seed, f"paths:{epoch}"))

    def forward(self, *inputs: Tensor) -> Tensor:
        if self.training:
            self.supernet.use(self.space.sample(self.rng))
        return self.supernet(*inputs)

    def criterion(self, output: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """The loss of the path taken: the supernet's own where it has one (a fusion ensemble's), else cross-entropy."""
        return training_loss(self.supernet)(output, targets, label_smoothing=label_smoothing)


class _Mixed(nn.Module):
    """A supernet that always sums its operations with the same weights (a relaxation's fixed mixture)."""

    def __init__(self, supernet: Supernet, weights: Tensor) -> None:
        super().__init__()
        self.supernet, self.weights = supernet, weights

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.supernet.mix(self.weights)(*inputs)


@torch.no_grad()
def recalibrate(model: nn.Module, x: Inputs, batch_size: int, batches: int, generator: torch.Generator) -> None:
    """Recompute the batch-norm statistics of the model's current path on `batches` random training batches."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches == 0:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration batches
    model.train()
    for _ in range(batches):
        rows = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=generator, device=x.device)
        model(*batch_parts(x[rows]))
    model.eval()


@register("evaluator", "supernet")
class SupernetEvaluator(Evaluator):
    """Scores each candidate on the validation split with the weights it inherits from a trained supernet."""

    Settings = SupernetEvaluatorSettings

    def __init__(self, settings: SupernetEvaluatorSettings, **dependencies: Any) -> None:
        super().__init__(settings, **dependencies)
        self.objective = settings.objective
        self.net = self._build(0)  # built now so that a space without a supernet is refused before any work
        if settings.training != "spos" and settings.supernet is None:
            self.net.relaxation()  # and one without a continuous relaxation
        self.arch: Optional[nn.Parameter] = None  # the relaxation's architecture weights (softmax, dirichlet)
        self.selected: Optional[Tensor] = None  # the relaxation's weights after perturbation-based selection

    def _build(self, seed: int) -> Supernet:
        """A freshly initialised supernet on the device, its weights drawn from `seed` alone."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "supernet"))
            net = self.space.supernet(self.data.input_shape, self.data.num_classes, self.data.vocab_size)
        return net.to(self.hardware.device)

    @classmethod
    def check(cls, settings: SupernetEvaluatorSettings) -> None:
        if settings.supernet is not None:
            source = RunDir(Path(settings.supernet).expanduser())
            if not source.file(SUPERNET).is_file():
                raise UserError(f"evaluator.supernet {settings.supernet} holds no {SUPERNET}; name a run that trained "
                                "a supernet (strategy=spos or evaluator=supernet)")

    def prepare(self, run: RunDir, seed: int) -> None:
        """Make the supernet ready before the first trial: continue this run's training, or start it."""
        s = self.settings
        space_config = OmegaConf.to_container(run.config().space)
        state = run.load_supernet()
        if state is None:
            self.net = self._build(seed)
            state = self._taken(space_config) if s.supernet is not None else {"epoch": 0, "epochs": s.epochs}
        elif state["space"] != space_config:
            raise UserError(f"{run.file(SUPERNET)} belongs to another space ({state['space']}); the file is corrupt")
        else:
            self.net.load_state_dict(state["state_dict"])
        if s.training == "spos" or s.supernet is not None:
            self._train_paths(run, state, space_config, seed)
        else:
            self._train_relaxed(run, state, space_config, seed)
            if s.selection == "perturbation":
                self.selected = self._select_by_perturbation(run, seed)
        self.net.eval()

    def _taken(self, space_config: dict[str, Any]) -> dict[str, Any]:
        """Start from another run's supernet: every weight whose shape matches (the head and stem may not)."""
        source = RunDir(Path(self.settings.supernet).expanduser())
        state = source.load_supernet()
        if state["space"] != space_config:
            raise UserError(f"evaluator.supernet {self.settings.supernet} was trained for space {state['space']}, "
                            f"not this run's {space_config}")
        own = self.net.state_dict()
        matching = {k: v for k, v in state["state_dict"].items() if k in own and own[k].shape == v.shape}
        if len(matching) < len(own) and self.settings.finetune_epochs == 0:
            raise UserError(f"the supernet of {self.settings.supernet} was trained on other inputs or classes; "
                            "set evaluator.finetune_epochs to train its new layers on this data")
        self.net.load_state_dict({**own, **matching})
        return {"epoch": 0, "epochs": self.settings.finetune_epochs}

    def _saver(self, run: RunDir, state: dict[str, Any], space_config: dict[str, Any]) -> Callable[[dict], None]:
        """A function that saves supernet.pt: the weights, the space, the data's shape and the loop's state."""
        data = self.data

        def save(loop: dict[str, Any]) -> None:
            shape = data.input_shape
            run.save_supernet({"space": space_config, "input_shape": shape if isinstance(shape, dict) else list(shape),
                               "num_classes": data.num_classes, "epochs": state["epochs"],
                               "state_dict": self.net.state_dict(), **loop})

        return save

    def _train_paths(self, run: RunDir, state: dict[str, Any], space_config: dict[str, Any], seed: int) -> None:
        """Train the supernet on uniform random paths up to state["epochs"], saving supernet.pt after each epoch."""
        data, epochs = self.data, state["epochs"]
        save = self._saver(run, state, space_config)
        if state["epoch"] >= epochs:
            if not run.file(SUPERNET).exists():  # a taken supernet used as it is
                save({"epoch": epochs})
            return
        paths = RandomPaths(self.net, self.space, seed)
        paths.start_epoch(state["epoch"])
        last_loss: Optional[float] = None  # the mean training loss of the last epoch trained here
        with progress() as bar:
            task = bar.add_task("supernet", total=epochs, completed=state["epoch"])

            def on_epoch(epoch: int, loss: float) -> None:
                nonlocal last_loss
                paths.start_epoch(epoch)
                last_loss = loss
                bar.update(task, completed=epoch, description=f"supernet loss {loss:.3f}")

            try:
                train(paths, data.train_x, data.train_y, self.settings, self.hardware, derive_seed(seed, "supernet"),
                      epochs=epochs, augmentation=data.augmentation, on_epoch=on_epoch,
                      resume=state if "optimizer" in state else None, checkpoint=save)
            except TrialFailed as exc:
                raise UserError(f"supernet training failed: {exc}") from None
        chance = math.log(data.num_classes)
        if last_loss is not None and last_loss > CHANCE_SHARE * chance:
            warn(f"the supernet did not learn: its last epoch's loss {last_loss:.3f} is near chance "
                 f"({chance:.3f}), so one-shot scores will not rank architectures; train longer, or restrict the "
                 "space (README: which weight-sharing method, when)")

    def _mixture(self, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The operation weights of this step (Dirichlet: drawn, reparameterised) and the regularisation term."""
        if self.settings.training == "softmax":
            return self.arch.softmax(dim=1), torch.zeros((), device=self.arch.device)
        concentration = F.elu(self.arch) + 1
        with torch.random.fork_rng(devices=[self.arch.device] if self.arch.device.type == "cuda" else []):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            weights = Dirichlet(concentration).rsample()
        kl = kl_divergence(Dirichlet(concentration), Dirichlet(torch.ones_like(concentration))).sum()
        return weights, self.settings.dirichlet_reg * kl

    def _train_relaxed(self, run: RunDir, state: dict[str, Any], space_config: dict[str, Any], seed: int) -> None:
        """DARTS (first order) or DrNAS: alternate steps on architecture weights (validation) and weights (train).

        The architecture weights of each epoch go to architecture_weights.json; supernet.pt holds everything
        needed to continue after an interruption.
        """
        data, s, epochs = self.data, self.settings, state["epochs"]
        device = self.hardware.device
        positions, choices = self.net.relaxation()
        shape = (positions, len(choices))
        self.arch = nn.Parameter(state["arch"].to(device) if "arch" in state else
                                 1e-3 * torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device))
        history: list = list(state.get("history", []))
        if state["epoch"] >= epochs:
            return
        steps = batches_per_epoch(len(data.train_x), s.batch_size)
        optimizer, schedule = optimizer_and_schedule(every_parameter(self.net), s, epochs * steps)
        arch_optimizer = torch.optim.Adam([self.arch], lr=s.arch_lr, betas=(0.5, 0.999), weight_decay=s.arch_weight_decay)
        generator = torch.Generator(device=data.train_x.device).manual_seed(derive_seed(seed, "relaxation"))
        if "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            arch_optimizer.load_state_dict(state["arch_optimizer"])
            generator.set_state(state["generator"])
        save = self._saver(run, state, space_config)
        self.net.train()
        with progress() as bar:
            task = bar.add_task(f"{s.training} relaxation", total=epochs, completed=state["epoch"])
            for epoch in range(state["epoch"], epochs):
                order = torch.randperm(len(data.train_x), generator=generator, device=data.train_x.device)
                val_order = torch.randint(0, len(data.val_x), (steps * s.batch_size,), generator=generator,
                                          device=data.val_x.device)
                for i in range(steps):
                    rows = val_order[i * s.batch_size : (i + 1) * s.batch_size]
                    weights, penalty = self._mixture(generator)
                    loss = F.cross_entropy(self.net.mix(weights)(data.val_x[rows]), data.val_y[rows]) + penalty
                    arch_optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    arch_optimizer.step()
                    rows = order[i * s.batch_size : (i + 1) * s.batch_size]
                    weights, _ = self._mixture(generator)
                    loss = F.cross_entropy(self.net.mix(weights.detach())(data.train_x[rows]), data.train_y[rows],
                                           label_smoothing=s.label_smoothing)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                if not math.isfinite(loss.item()):
                    raise UserError(f"supernet training failed: the loss is {loss.item()} in epoch {epoch + 1}")
                history.append(self.operation_weights().tolist())
                save({"epoch": epoch + 1, "arch": self.arch.detach().cpu(), "history": history,
                      "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                      "arch_optimizer": arch_optimizer.state_dict(), "generator": generator.get_state()})
                run.write_architecture_weights({"operations": choices, "epochs": history})
                bar.update(task, completed=epoch + 1, description=f"{s.training} relaxation loss {loss.item():.3f}")

    def _select_by_perturbation(self, run: RunDir, seed: int) -> Tensor:
        """DARTS-PT: fix positions in a random order, each to the op whose removal lowers validation accuracy most.

        After each position the weights train `selection_epochs` on the partly fixed mixture. Every position's
        accuracy drops go to architecture_weights.json; the supernet.pt of the relaxation stays as it was
        trained, so a resumed run selects again from it, to the same result.
        """
        data, s = self.data, self.settings
        weights = self.operation_weights().to(self.hardware.device)
        positions, choices = self.net.relaxation()
        order = torch.randperm(positions, generator=torch.Generator().manual_seed(derive_seed(seed, "selection")))

        def accuracy(mixture: Tensor) -> float:
            return evaluate_model(self.net.mix(mixture), data.val_x, data.val_y, self.hardware, "val")["val_acc"]

        steps: list[dict[str, Any]] = []
        with progress() as bar:
            task = bar.add_task("perturbation selection", total=positions)
            for position in order.tolist():
                whole = accuracy(weights)
                drops = []
                for choice in range(len(choices)):
                    removed = weights.clone()
                    removed[position, choice] = 0
                    drops.append(whole - accuracy(removed))
                kept = max(range(len(choices)), key=drops.__getitem__)
                weights[position] = F.one_hot(torch.tensor(kept), len(choices)).to(weights)
                steps.append({"position": position, "accuracy": whole, "drops": drops, "kept": choices[kept]})
                if s.selection_epochs:
                    train(_Mixed(self.net, weights), data.train_x, data.train_y, s, self.hardware,
                          derive_seed(seed, f"selection:{position}"), epochs=s.selection_epochs,
                          augmentation=data.augmentation)
                bar.update(task, advance=1, description=f"perturbation selection: {choices[kept]} at {position}")
        recorded = run.architecture_weights() or {"operations": choices, "epochs": []}
        run.write_architecture_weights({**recorded, "selection": steps})
        return weights.cpu()

    def operation_weights(self) -> Tensor:
        """The relaxation's weight of each operation at each position (softmax, or the Dirichlet mean)."""
        if self.settings.training == "softmax":
            return self.arch.detach().softmax(dim=1).cpu()
        concentration = F.elu(self.arch.detach()) + 1
        return (concentration / concentration.sum(dim=1, keepdim=True)).cpu()

    def derived(self) -> Arch:
        """The architecture of the trained relaxation: the strongest operation at each position."""
        if self.arch is None:
            raise UserError(f"evaluator.training={self.settings.training} trains no relaxation to derive an "
                            "architecture from; strategy=darts needs softmax or dirichlet")
        return self.net.derive(self.selected if self.selected is not None else self.operation_weights())

    def evaluate(self, arch: Arch, seed: int, budget: Optional[float] = None, fold: int = 0) -> dict[str, Any]:
        data, hardware = self.data, self.hardware
        self.net.use(arch)
        generator = torch.Generator(device=data.train_x.device).manual_seed(seed)
        try:
            recalibrate(self.net, data.train_x, self.settings.batch_size, self.settings.calibration_batches, generator)
            scores = evaluate_model(self.net, data.val_x, data.val_y, hardware, "val")
        except torch.OutOfMemoryError:
            raise TrialFailed("out of memory") from None
        model = self.space.build(arch, data.input_shape, data.num_classes, data.vocab_size)
        return {**scores, "one_shot": True, "params": count_params(model),
                "flops": count_flops(model, data.input_shape, torch.device("cpu"), vocab_size=data.vocab_size)}
