"""One way to fit and score a network: what a trial and the retraining both do with an architecture."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from nascli.data.base import DataSplits, joined
from nascli.evaluators.metrics import evaluate_model
from nascli.evaluators.profile import count_flops, count_params
from nascli.evaluators.training import Epoch, TimeLimit, train
from nascli.hardware import Hardware
from nascli.settings import TrainSettings
from nascli.spaces.base import Arch, SearchSpace
from nascli.transfer import Transfer, initialise, input_channels, parameter_groups


@dataclass(frozen=True)
class Start:
    """Trained weights a network starts from (a run's model or supernet path) and which of its layers train.

    `finetune` None trains every layer at the learning rate (a trial's inherited weights); `strict` refuses a
    source from which nothing fits.
    """

    source: str
    weights: Callable[[Arch], dict[str, Tensor]]
    finetune: Optional[str] = None
    copied_lr: float = 1.0
    strict: bool = True
    keep_head: bool = False  # the classifier too (the same classes: a pruned network fine-tuned)


@dataclass
class Fitted:
    """A fitted network, its metrics, and what it started from (None: fresh weights)."""

    model: nn.Module
    metrics: dict[str, Any]
    transfer: Optional[Transfer] = None


def fit_and_score(
    space: SearchSpace, arch: Arch, data: DataSplits, settings: TrainSettings, hardware: Hardware, seed: int,
    epochs: int, latency: Callable[[nn.Module], float], final: bool = False, limits: tuple[TimeLimit, ...] = (),
    start: Optional[Start] = None, on_epoch: Optional[Callable[[Epoch], None]] = None,
) -> Fitted:
    """`arch` built for `data` (seeded by `seed`), started from `start`, trained for `epochs` and scored.

    A trial trains on the train split and is scored on validation; the final network (`final`) trains on train
    and validation together and is scored on test, with its confusion matrix. A limit that shortens the training
    (`TimeLimit(shorten=True)`) makes `epochs` in the metrics the share of the planned epochs that ran. The
    metrics' `curve` is the training's learning curve, a point per epoch (see Epoch).
    """
    torch.manual_seed(seed)
    model = space.build(arch, data.input_shape, data.num_classes, data.vocab_size)
    transfer, groups = None, None
    if start is not None:
        transfer = initialise(model, start.weights(arch), start.source, input_channels(data), strict=start.strict,
                              keep_head=start.keep_head)
        if start.finetune is not None:
            groups = parameter_groups(model, transfer, start.finetune, start.copied_lr)
    model = hardware.place(model)
    if final:
        x, y = joined(data.train_x, data.val_x), torch.cat([data.train_y, data.val_y])
        held_out, split = (data.test_x, data.test_y), "test"
    else:
        x, y, held_out, split = data.train_x, data.train_y, (data.val_x, data.val_y), "val"
    curve: list[dict[str, float]] = []

    def kept(point: Epoch) -> None:
        curve.append(asdict(point))
        if on_epoch is not None:
            on_epoch(point)

    seconds = train(model, x, y, settings, hardware, seed, epochs=epochs, augmentation=data.augmentation,
                    on_epoch=kept, groups=groups, limits=limits, compiled=hardware.compile)
    shortening = next((limit for limit in limits if limit.shorten), None)
    scores = evaluate_model(model, *held_out, hardware, split, confusion=final)
    milliseconds = latency(model)
    return Fitted(model, {
        **scores,
        "params": count_params(model),
        "flops": count_flops(model, data.input_shape, hardware.device, vocab_size=data.vocab_size),
        "latency_ms": milliseconds,
        "train_seconds": seconds,
        "epochs": shortening.fitted_epochs(epochs) if shortening is not None else epochs,
        "curve": curve,
    }, transfer)
