"""A small, fast training loop on tensors that already live on the device."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nascli.data.base import UNKNOWN_ID, Augmentation, Inputs, holds_tokens, network_inputs
from nascli.errors import TrialFailed
from nascli.hardware import Hardware
from nascli.settings import TrainSettings


@dataclass(frozen=True)
class Epoch:
    """One epoch of a training as its learning curve keeps it."""

    epoch: int
    loss: float  # the mean training loss
    acc: float  # the accuracy (%) on the epoch's training batches, as augmented
    lr: float  # the learning rate at its end (the first parameter group's)
    seconds: float  # since the training began


def augment(x: Tensor, augmentation: Augmentation, generator: torch.Generator) -> Tensor:
    """A training batch varied per sample, on its device: token ids with words made unknown at random; images
    randomly translated (pad and crop) and flipped horizontally."""
    if not x.is_floating_point():
        return drop_words(x, augmentation.word_dropout, generator)
    crop_padding, hflip = augmentation.crop_padding, augmentation.hflip
    if (not crop_padding and not hflip) or x.dim() != 4:
        return x
    n, c, h, w = x.shape
    if crop_padding:
        p = crop_padding
        padded = F.pad(x, (p, p, p, p))
        shifts = torch.randint(0, 2 * p + 1, (n, 2), generator=generator, device=x.device)
        # One gather from a view of every (2p+1)^2 window: no per-shift masked copies.
        windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (n, c, 2p+1, 2p+1, h, w)
        x = windows[torch.arange(n, device=x.device), :, shifts[:, 0], shifts[:, 1]]
    if hflip:
        flip = torch.rand(n, generator=generator, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def drop_words(ids: Tensor, rate: float, generator: torch.Generator) -> Tensor:
    """Token ids with each word (not the padding) replaced by the unknown token with probability `rate` (word
    dropout, Iyyer et al. 2015): the unknown token, which stands for every word the training never saw, learns."""
    if not rate:
        return ids
    dropped = (torch.rand(ids.shape, generator=generator, device=ids.device) < rate) & (ids > UNKNOWN_ID)
    return ids.masked_fill(dropped, UNKNOWN_ID)


def training_loss(model: nn.Module) -> Callable[..., Tensor]:
    """The loss a network trains on: its own `criterion` where it has one (a fusion ensemble's), else cross-entropy."""
    return getattr(model, "criterion", F.cross_entropy)


def every_parameter(module: nn.Module) -> list[dict[str, Any]]:
    """All of a module's parameters as one optimizer group at the full learning rate."""
    return [{"params": list(module.parameters()), "lr_factor": 1.0}]


def optimizer_and_schedule(
    groups: list[dict[str, Any]], settings: TrainSettings, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The settings' optimizer (SGD with Nesterov momentum, or AdamW) on a one-cycle schedule.

    Each group `{"params": [...], "lr_factor": f}` peaks at f times the settings' lr.
    """
    peaks = [settings.lr * group["lr_factor"] for group in groups]
    groups = [{"params": group["params"], "lr": peak} for group, peak in zip(groups, peaks)]
    if settings.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    else:
        optimizer = torch.optim.SGD(groups, lr=settings.lr, momentum=0.9, nesterov=True,
                                    weight_decay=settings.weight_decay)
    return optimizer, one_cycle(optimizer, peaks, total_steps)


def one_cycle(
    optimizer: torch.optim.Optimizer, peaks: list[float], total_steps: int, done: int = 0
) -> torch.optim.lr_scheduler.LRScheduler:
    """A one-cycle schedule over `total_steps` peaking at `peaks` (one per group), `done` steps into it."""
    # OneCycleLR divides by zero when its warm-up ends on step 0 (0.2 x 5 steps): warm up over 2+ steps then
    warm_up = 0.2 if total_steps < 4 else max(0.2, 2 / total_steps)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total_steps,
                                                   pct_start=warm_up)
    if done:  # its rate depends on the step count alone: placed there at once, not stepped through
        schedule.last_epoch = done - 1
        with warnings.catch_warnings():  # the optimizer has stepped, but not since this schedule wrapped it
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning)
            schedule.step()
    return schedule


class TimeLimit:
    """Bounds a training's duration by `seconds`, judged after steps 3-12 (after warm-up) and again whenever the
    timed steps have doubled. Projected over it, the training stops (TrialFailed; judged after each epoch too, so
    an over-long trial costs seconds, not its whole duration) or, with `shorten`, is fitted to the steps that fit
    (at least `min_steps` and 10 past the judging step, at most those planned), its one-cycle schedule stretched or
    compressed to them at each judging step."""

    WARM_UP, TIMED = 2, 10

    def __init__(self, seconds: float, what: str, shorten: bool = False, min_steps: int = 0) -> None:
        self.seconds, self.what, self.shorten = seconds, what, shorten  # `what` names the setting in messages
        self.min_steps = min_steps

    def begin(self, total_steps: int, hardware: Hardware) -> None:
        """Start the clock of a training of `total_steps` steps."""
        self.total_steps, self.planned, self.hardware, self.done = total_steps, total_steps, hardware, 0
        self.start = self.warm = time.perf_counter()

    def after_step(self) -> Optional[int]:
        """Count a step and, at a judging step, project the duration: the steps that fit when the training is to be
        fitted to them anew, else None."""
        self.done += 1
        timed = self.done - self.WARM_UP
        if timed == 0:
            self.hardware.synchronize()
            self.warm = time.perf_counter()
        rounds = timed // self.TIMED  # judged when 10, 20, 40, 80, ... steps have been timed
        if timed <= 0 or timed % self.TIMED or rounds & (rounds - 1) or self.done >= self.total_steps:
            return None
        self.hardware.synchronize()
        now = time.perf_counter()
        per_step = (now - self.warm) / timed
        if not self.shorten:
            self._check(now - self.start + per_step * (self.total_steps - self.done))
            return None
        fit = self.done + int((self.seconds - (now - self.start)) / per_step)
        fit = min(self.planned, max(self.done + self.TIMED, self.min_steps, fit))  # 10 more steps: an annealed end
        if fit == self.total_steps:
            return None
        self.total_steps = fit
        return fit

    def fitted_epochs(self, epochs: float) -> float:
        """`epochs` scaled to the share of the planned steps the training was fitted to (3 decimals)."""
        return epochs if self.total_steps >= self.planned else round(epochs * self.total_steps / self.planned, 3)

    def after_epoch(self) -> None:
        """Judge the projected duration again at the end of an epoch (the loop has synchronised)."""
        if not self.shorten and self.done < self.total_steps:
            self._check((time.perf_counter() - self.start) / self.done * self.total_steps)

    def _check(self, projected: float) -> None:
        if projected > self.seconds:
            raise TrialFailed(f"training would take about {projected:.0f} s, over {self.what}={self.seconds:g}")


def compiled_forward(model: nn.Module) -> nn.Module:
    """`model` compiled by torch.compile (inductor, static shapes) for one training.

    Dynamo's caches are emptied first: the networks of a search share their classes' forward code, and past its
    limit of recompilations for one code object dynamo would silently run the rest eagerly. Each network is thus
    compiled afresh; inductor's on-disk cache still serves the kernels an earlier network compiled.
    """
    torch.compiler.reset()
    return torch.compile(model, dynamic=False)


def batches_per_epoch(examples: int, batch_size: int) -> int:
    """Batches in an epoch; a last batch of one example is left out, since batch norm cannot train on one."""
    return max(1, examples // batch_size + (examples % batch_size > 1))


def train(
    model: nn.Module,
    x: Inputs,
    y: Tensor,
    settings: TrainSettings,
    hardware: Hardware,
    seed: int,
    epochs: Optional[int] = None,
    augmentation: Augmentation = Augmentation(),
    on_epoch: Optional[Callable[[Epoch], None]] = None,
    resume: Optional[dict[str, Any]] = None,
    checkpoint: Optional[Callable[[dict[str, Any]], None]] = None,
    groups: Optional[list[dict[str, Any]]] = None,
    limits: tuple[TimeLimit, ...] = (),
    compiled: bool = False,
) -> float:
    """Train `model` in place with SGD or AdamW on a one-cycle schedule; return the seconds it took.

    `on_epoch` receives each epoch's point of the learning curve.

    `checkpoint` receives the loop's state (epoch, optimizer, schedule, generator) after each epoch, and
    `resume` (such a state) continues from it: the model's weights are the caller's to save and restore.
    `groups` (see optimizer_and_schedule) train only some parameters, or some at another learning rate.
    `limits` stop the training (TrialFailed) or fit it to the steps that they allow (see TimeLimit); a fitted
    training may end inside an epoch, and the limit's `total_steps` says after how many steps.
    `compiled` trains full batches through `compiled_forward(model)` (an epoch's smaller last batch runs eagerly,
    sparing a second compilation for its shape); only a fixed network should be compiled, not a supernet. Token
    ids, trimmed to each batch's longest sentence, change shape every step: networks that take them train eagerly.
    """
    epochs = epochs or settings.epochs
    generator = torch.Generator(device=x.device).manual_seed(seed)
    steps_per_epoch = batches_per_epoch(len(x), settings.batch_size)
    optimizer, schedule = optimizer_and_schedule(groups or every_parameter(model), settings, epochs * steps_per_epoch)
    first_epoch = 0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["schedule"])
        generator.set_state(resume["generator"])
        first_epoch = resume["epoch"]
    criterion = training_loss(model)
    fast = compiled_forward(model) if compiled and not holds_tokens(x) else model
    transform = partial(augment, augmentation=augmentation, generator=generator) if settings.augment else None
    model.train()
    hardware.synchronize()
    start = time.perf_counter()
    total, done = (epochs - first_epoch) * steps_per_epoch, 0
    for limit in limits:
        limit.begin(total, hardware)
    for epoch in range(first_epoch, epochs):
        order = torch.randperm(len(x), generator=generator, device=x.device)
        loss_sum = torch.zeros((), device=x.device)
        correct, seen = torch.zeros((), dtype=torch.long, device=x.device), 0
        steps, i = min(steps_per_epoch, total - done), 0
        while i < steps:
            idx = order[i * settings.batch_size : (i + 1) * settings.batch_size]
            inputs = network_inputs(x[idx], hardware.channels_last, transform)
            with hardware.autocast():
                logits = (fast if len(idx) == settings.batch_size else model)(*inputs)
                loss = criterion(logits.float(), y[idx], label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(1) == y[idx]).sum()
            seen += len(idx)
            i, done = i + 1, done + 1
            for limit in limits:
                fitted = limit.after_step()
                if fitted is not None:
                    total, steps = fitted, min(steps_per_epoch, i + fitted - done)
                    schedule = one_cycle(optimizer, [group["max_lr"] for group in optimizer.param_groups], total, done)
                    for other in limits:
                        other.total_steps = total
        mean_loss = loss_sum.item() / steps  # one sync per epoch, not per step
        if not math.isfinite(mean_loss):
            raise TrialFailed(f"training diverged: loss is {mean_loss} in epoch {epoch + 1}")
        for limit in limits:
            limit.after_epoch()
        if on_epoch is not None:
            on_epoch(Epoch(epoch + 1, round(mean_loss, 5), round(100.0 * correct.item() / seen, 3),
                           float(f"{optimizer.param_groups[0]['lr']:.6g}"), round(time.perf_counter() - start, 3)))
        if checkpoint is not None:
            checkpoint({"epoch": epoch + 1, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                        "generator": generator.get_state()})
        if done == total:
            break
    hardware.synchronize()
    return time.perf_counter() - start
