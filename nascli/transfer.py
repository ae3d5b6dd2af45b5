"""Transfer of trained weights: initialise a network from another run's model, and choose what keeps training.

Weights are matched by name and shape (the spaces name layers by position, so the same architecture — or
a similar one, layer by layer — matches). The classifier head is always new. An input stem whose channel
count differs (grey to colour, or back) is adapted: each new input channel gets the source kernel summed
over its input channels and divided by the new count, which keeps the response to a grey image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from torch import Tensor, nn

from nascli.errors import UserError


@dataclass
class Transfer:
    """What an initialisation copied: tensor names copied as they were, adapted (the stem), and left new."""

    source: str
    copied: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    trainable: int = 0  # parameters that train after freezing

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "copied": len(self.copied), "adapted": self.adapted, "new": len(self.new),
                "trainable_params": self.trainable}


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _evaluating(module: nn.Module, inputs: Any) -> None:
    module.eval()


def input_channels(data: Any) -> int:
    """The channel count of image inputs (0 for token sequences, whose first layer is an embedding, and for
    several inputs, whose encoders' stems are copied only where they fit)."""
    return data.input_shape[0] if data.vocabulary is None and not isinstance(data.input_shape, dict) else 0


def head_names(model: nn.Module) -> set[str]:
    """The tensor names of the classifier: the last linear layer."""
    last = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][-1]
    return {f"{last}.{tensor}" for tensor, _ in model.get_submodule(last).named_parameters()}


def stem_name(model: nn.Module, channels: int) -> Optional[str]:
    """The weight name of the first convolution, which reads the input's `channels` channels (None if none)."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.in_channels == channels and module.groups == 1:
            return f"{name}.weight"
    return None


def initialise(model: nn.Module, weights: dict[str, Tensor], source: str, channels: int, strict: bool = True,
               keep_head: bool = False) -> Transfer:
    """Copy every tensor of `weights` that fits `model` by name and shape (the head excepted unless `keep_head`;
    the stem adapted).

    With `strict`, a source of which nothing fits is a UserError; otherwise the network simply stays as it was.
    """
    own = model.state_dict()
    head, stem = set() if keep_head else head_names(model), stem_name(model, channels)
    transfer = Transfer(source)
    for name, tensor in own.items():
        given = weights.get(name)
        if name in head or given is None or not tensor.is_floating_point():  # counters such as BN's stay new
            transfer.new.append(name)
        elif given.shape == tensor.shape:
            own[name] = given.to(tensor.dtype)
            transfer.copied.append(name)
        elif name == stem and given.dim() == tensor.dim() and given.shape[0] == tensor.shape[0] \
                and given.shape[2:] == tensor.shape[2:]:
            own[name] = given.sum(dim=1, keepdim=True).repeat(1, tensor.shape[1], *[1] * (tensor.dim() - 2)) / tensor.shape[1]
            transfer.adapted.append(name)
        else:
            transfer.new.append(name)
    if strict and not transfer.copied and not transfer.adapted:
        raise UserError(f"nothing in {source} fits this network (no layer of the same name and shape); "
                        "initialise from a run of the same or a similar architecture")
    model.load_state_dict(own)
    return transfer


def parameter_groups(model: nn.Module, transfer: Transfer, finetune: str, copied_lr: float) -> list[dict[str, Any]]:
    """The parameters that train, as optimizer groups: copied ones at `copied_lr` times the lr, the rest at the lr.

    `head` trains the new classifier only; `last:K` also the last K layers with parameters before it; the
    others are frozen: no gradients, and frozen batch norm normalises with the source's statistics.
    """
    head = head_names(model)
    layers = [name for name, module in model.named_modules()
              if not list(module.children()) and list(module.parameters(recurse=False))]
    if finetune == "full":
        training = set(layers)
    else:
        count = 0 if finetune == "head" else int(finetune.partition(":")[2])
        body = [name for name in layers if not any(h.startswith(f"{name}.") for h in head)]
        training = set(body[len(body) - count:] if count else []) | {h.rpartition(".")[0] for h in head}
    copied = set(transfer.copied) | set(transfer.adapted)
    groups: dict[float, list[nn.Parameter]] = {}
    for layer in layers:
        module = model.get_submodule(layer)
        if layer not in training and isinstance(module, BATCH_NORMS):
            module.register_forward_pre_hook(_evaluating)  # frozen: its statistics stay the source's
        for tensor, parameter in module.named_parameters(recurse=False):
            parameter.requires_grad_(layer in training)
            if layer in training:
                factor = copied_lr if f"{layer}.{tensor}" in copied else 1.0
                groups.setdefault(factor, []).append(parameter)
    transfer.trainable = sum(p.numel() for params in groups.values() for p in params)
    return [{"params": params, "lr_factor": factor} for factor, params in groups.items()]
