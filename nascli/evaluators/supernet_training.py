"""Training a supernet: on uniform random paths (SPOS) or as a continuous relaxation (DARTS, DrNAS), checkpointed.

One-shot strategies run this before their trials (`Strategy.before_trials`); the supernet evaluator runs it to
fine-tune a supernet taken from another run. Either way the weights go to the run's supernet.pt after every
epoch, with what a resumed run needs to continue the same training, and the evaluator scores paths of it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.distributions import Dirichlet, kl_divergence

from nascli.console import progress
from nascli.data.base import DataSplits
from nascli.errors import TrialFailed, UserError, require, warn
from nascli.evaluators.metrics import evaluate_model
from nascli.evaluators.training import (Epoch, batches_per_epoch, every_parameter, optimizer_and_schedule, train,
                                        training_loss)
from nascli.hardware import Hardware
from nascli.printout import log_progress
from nascli.records import ArchitectureWeights, SupernetHeader
from nascli.rundir import SUPERNET, RunDir
from nascli.seeding import derive_seed
from nascli.settings import TrainSettings
from nascli.spaces.base import SearchSpace, Supernet

RELAXATIONS = ("softmax", "dirichlet")  # DARTS's, DrNAS's
SELECTIONS = ("strength", "perturbation")
# perturbation by measurement: on NAS-Bench-201 it derived cells at 87.4 against 67.8 (DARTS) and 82.2 (DrNAS) by
# strength (docs/benchmarks.md)
DEFAULT_SELECTION = "perturbation"
CHANCE_SHARE = 0.9  # a supernet whose loss stays above this share of the chance loss, ln(classes), has not learned


@dataclass
class SupernetTrainSettings(TrainSettings):
    """How a supernet's weights train: the training settings of one-shot strategies."""

    epochs: int = 30  # passes over the training data, a path (or the mixture) per step


def build_supernet(space: SearchSpace, data: DataSplits, hardware: Hardware, seed: int) -> Supernet:
    """A freshly initialised supernet of `space` for `data` on the device, its weights drawn from `seed` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "supernet"))
        net = space.supernet(data.input_shape, data.num_classes, data.vocab_size)
    return net.to(hardware.device)


@dataclass
class Supernets:
    """What a supernet is trained and checkpointed with: the space, the data, the device and the run."""

    space: SearchSpace
    data: DataSplits
    hardware: Hardware
    run: RunDir

    def build(self, seed: int) -> Supernet:
        """A freshly initialised supernet on the device (see build_supernet)."""
        return build_supernet(self.space, self.data, self.hardware, seed)

    def space_config(self) -> dict[str, Any]:
        """The run's space settings, as supernet.pt records them (a supernet only fits the space it was built for)."""
        return OmegaConf.to_container(self.run.config().space)

    def load(self, net: Supernet) -> Optional[dict[str, Any]]:
        """This run's supernet.pt loaded into `net` (its state, None when there is none), refused for another space."""
        state = self.run.load_supernet()
        if state is not None:
            if state["space"] != self.space_config():
                raise UserError(f"{self.run.file(SUPERNET)} belongs to another space ({state['space']}); "
                                "the file is corrupt")
            net.load_state_dict(state["state_dict"])
        return state

    def saver(self, net: Supernet, epochs: int) -> Callable[[dict[str, Any]], None]:
        """A function that saves supernet.pt: the weights, the space, the data's shape and the loop's state."""
        shape, space = self.data.input_shape, self.space_config()

        def save(loop: dict[str, Any]) -> None:
            header = SupernetHeader(space, shape if isinstance(shape, dict) else list(shape), self.data.num_classes,
                                    epochs, loop["epoch"])
            self.run.save_supernet(header, net.state_dict(), loop)

        return save


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


def train_paths(supernets: Supernets, net: Supernet, settings: TrainSettings, state: dict[str, Any], seed: int) -> None:
    """Train `net` on uniform random paths from state["epoch"] to state["epochs"], saving supernet.pt each epoch
    (a loop state in `state` continues an interrupted training)."""
    data, epochs = supernets.data, state["epochs"]
    save = supernets.saver(net, epochs)
    if state["epoch"] >= epochs:
        if not supernets.run.file(SUPERNET).exists():  # a taken supernet used as it is
            save({"epoch": epochs})
        return
    paths = RandomPaths(net, supernets.space, seed)
    paths.start_epoch(state["epoch"])
    last_loss: Optional[float] = None  # the mean training loss of the last epoch trained here
    with progress() as bar:
        task = bar.add_task("supernet", total=epochs, completed=state["epoch"])

        def on_epoch(point: Epoch) -> None:
            nonlocal last_loss
            paths.start_epoch(point.epoch)
            last_loss = point.loss
            bar.update(task, completed=point.epoch, description=f"supernet loss {point.loss:.3f}")
            log_progress(f"supernet epoch {point.epoch}/{epochs} loss {point.loss:.4f} ({point.seconds:.1f} s)")

        try:
            train(paths, data.train_x, data.train_y, settings, supernets.hardware, derive_seed(seed, "supernet"),
                  epochs=epochs, augmentation=data.augmentation, on_epoch=on_epoch,
                  resume=state if "optimizer" in state else None, checkpoint=save)
        except TrialFailed as exc:
            raise UserError(f"supernet training failed: {exc}") from None
    chance = math.log(data.num_classes)
    if last_loss is not None and last_loss > CHANCE_SHARE * chance:
        warn(f"the supernet did not learn: its last epoch's loss {last_loss:.3f} is near chance "
             f"({chance:.3f}), so one-shot scores will not rank architectures; train longer, or restrict the "
             "space (README: which weight-sharing method, when)")


@dataclass
class RelaxationSettings(SupernetTrainSettings):
    """A continuous relaxation of the choices (DARTS, DrNAS) and how it becomes one architecture."""

    epochs: int = 50  # passes over the training data, alternating with steps on the architecture weights
    relaxation: str = "softmax"  # softmax (DARTS) or dirichlet (DrNAS)
    arch_lr: float = 3e-4  # Adam on the relaxation's architecture weights, fitted on the validation split
    arch_weight_decay: float = 1e-3  # weight decay of that Adam
    dirichlet_reg: float = 1e-3  # dirichlet: weight of the KL divergence to a flat Dirichlet prior
    # How a trained relaxation becomes one architecture: strength keeps the op of largest weight per position
    # (DARTS); perturbation keeps, position by position, the op whose removal costs the supernet the most
    # validation accuracy, training the weights selection_epochs after each (DARTS-PT, Wang et al. 2021).
    selection: str = DEFAULT_SELECTION
    selection_epochs: int = 1  # perturbation: epochs the weights train after each position is fixed

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.relaxation in RELAXATIONS, f"relaxation must be softmax or dirichlet, got {self.relaxation!r}")
        require(self.selection in SELECTIONS, f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")
        require(self.selection_epochs >= 0, "selection_epochs must be >= 0")
        require(self.arch_lr > 0 and self.arch_weight_decay >= 0 and self.dirichlet_reg >= 0,
                "arch_lr must be positive; arch_weight_decay and dirichlet_reg >= 0")


class Relaxation:
    """The architecture weights of a relaxed supernet (one per operation and position) and their training."""

    def __init__(self, net: Supernet, settings: RelaxationSettings, arch: Tensor) -> None:
        self.net, self.settings = net, settings
        self.arch = nn.Parameter(arch)

    def mixture(self, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The operation weights of this step (Dirichlet: drawn, reparameterised) and the regularisation term."""
        if self.settings.relaxation == "softmax":
            return self.arch.softmax(dim=1), torch.zeros((), device=self.arch.device)
        concentration = F.elu(self.arch) + 1
        with torch.random.fork_rng(devices=[self.arch.device] if self.arch.device.type == "cuda" else []):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            weights = Dirichlet(concentration).rsample()
        kl = kl_divergence(Dirichlet(concentration), Dirichlet(torch.ones_like(concentration))).sum()
        return weights, self.settings.dirichlet_reg * kl

    def operation_weights(self) -> Tensor:
        """The weight of each operation at each position (softmax, or the Dirichlet mean), on the CPU."""
        if self.settings.relaxation == "softmax":
            return self.arch.detach().softmax(dim=1).cpu()
        concentration = F.elu(self.arch.detach()) + 1
        return (concentration / concentration.sum(dim=1, keepdim=True)).cpu()


def train_relaxation(supernets: Supernets, net: Supernet, settings: RelaxationSettings, state: dict[str, Any],
                     seed: int) -> Relaxation:
    """DARTS (first order) or DrNAS: alternate steps on architecture weights (validation) and weights (train).

    The architecture weights of each epoch go to architecture_weights.json; supernet.pt holds everything needed
    to continue after an interruption.
    """
    data, s, epochs, run = supernets.data, settings, state["epochs"], supernets.run
    device = supernets.hardware.device
    positions, choices = net.relaxation()
    shape = (positions, len(choices))
    relaxation = Relaxation(net, s, state["arch"].to(device) if "arch" in state else
                            1e-3 * torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device))
    history: list = list(state.get("history", []))
    if state["epoch"] >= epochs:
        return relaxation
    steps = batches_per_epoch(len(data.train_x), s.batch_size)
    optimizer, schedule = optimizer_and_schedule(every_parameter(net), s, epochs * steps)
    arch_optimizer = torch.optim.Adam([relaxation.arch], lr=s.arch_lr, betas=(0.5, 0.999),
                                      weight_decay=s.arch_weight_decay)
    generator = torch.Generator(device=data.train_x.device).manual_seed(derive_seed(seed, "relaxation"))
    if "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        arch_optimizer.load_state_dict(state["arch_optimizer"])
        generator.set_state(state["generator"])
    save = supernets.saver(net, epochs)
    net.train()
    with progress() as bar:
        task = bar.add_task(f"{s.relaxation} relaxation", total=epochs, completed=state["epoch"])
        for epoch in range(state["epoch"], epochs):
            order = torch.randperm(len(data.train_x), generator=generator, device=data.train_x.device)
            val_order = torch.randint(0, len(data.val_x), (steps * s.batch_size,), generator=generator,
                                      device=data.val_x.device)
            for i in range(steps):
                rows = val_order[i * s.batch_size : (i + 1) * s.batch_size]
                weights, penalty = relaxation.mixture(generator)
                loss = F.cross_entropy(net.mix(weights)(data.val_x[rows]), data.val_y[rows]) + penalty
                arch_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                arch_optimizer.step()
                rows = order[i * s.batch_size : (i + 1) * s.batch_size]
                weights, _ = relaxation.mixture(generator)
                loss = F.cross_entropy(net.mix(weights.detach())(data.train_x[rows]), data.train_y[rows],
                                       label_smoothing=s.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            if not math.isfinite(loss.item()):
                raise UserError(f"supernet training failed: the loss is {loss.item()} in epoch {epoch + 1}")
            history.append(relaxation.operation_weights().tolist())
            save({"epoch": epoch + 1, "arch": relaxation.arch.detach().cpu(), "history": history,
                  "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                  "arch_optimizer": arch_optimizer.state_dict(), "generator": generator.get_state()})
            run.write_architecture_weights(ArchitectureWeights(choices, history))
            bar.update(task, completed=epoch + 1, description=f"{s.relaxation} relaxation loss {loss.item():.3f}")
    return relaxation


class _Mixed(nn.Module):
    """A supernet that always sums its operations with the same weights (a relaxation's fixed mixture)."""

    def __init__(self, supernet: Supernet, weights: Tensor) -> None:
        super().__init__()
        self.supernet, self.weights = supernet, weights

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.supernet.mix(self.weights)(*inputs)


def select_by_perturbation(supernets: Supernets, relaxation: Relaxation, seed: int) -> Tensor:
    """DARTS-PT: fix positions in a random order, each to the op whose removal lowers validation accuracy most.

    After each position the weights train `selection_epochs` on the partly fixed mixture. Every position's
    accuracy drops go to architecture_weights.json. Returns the selected (one-hot) weights.
    """
    data, s, net, hardware = supernets.data, relaxation.settings, relaxation.net, supernets.hardware
    weights = relaxation.operation_weights().to(hardware.device)
    positions, choices = net.relaxation()
    order = torch.randperm(positions, generator=torch.Generator().manual_seed(derive_seed(seed, "selection")))

    def accuracy(mixture: Tensor) -> float:
        return evaluate_model(net.mix(mixture), data.val_x, data.val_y, hardware, "val")["val_acc"]

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
                train(_Mixed(net, weights), data.train_x, data.train_y, s, hardware,
                      derive_seed(seed, f"selection:{position}"), epochs=s.selection_epochs,
                      augmentation=data.augmentation)
            bar.update(task, advance=1, description=f"perturbation selection: {choices[kept]} at {position}")
    recorded = supernets.run.architecture_weights() or ArchitectureWeights(choices, [])
    supernets.run.write_architecture_weights(ArchitectureWeights(recorded.operations, recorded.epochs, steps))
    return weights.cpu()
