"""A searched head on a trained backbone: the layers between its features and the classes.

The backbone is another nascli run's retrained model without its classifier (offline), or a torchvision
classification model with its pretrained weights (`torchvision:resnet18`; downloaded by torchvision, so it
needs the internet once). The backbone is frozen unless `space.train_backbone`; the head is a stack of
0 to `max_layers` fully connected layers (a width and an activation each), then dropout and the classifier.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from nascli.errors import UserError, require, require_extra
from nascli.registry import register
from nascli.rundir import RunDir
from nascli.spaces.base import Arch, SearchSpace, draw_boxes
from nascli.spaces.stored import load_model

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
TORCHVISION = "torchvision:"


@dataclass
class HeadSettings:
    """The backbone, whether it trains, and which heads the space holds."""

    backbone: Optional[str] = None  # a nascli run directory with a retrained model, or torchvision:NAME
    train_backbone: bool = False  # train the backbone with the head (false: frozen, its batch norm in eval mode)
    max_layers: int = 2  # most hidden fully connected layers before the classifier (0: the classifier alone)
    widths: list[int] = field(default_factory=lambda: [64, 128, 256])  # output sizes a hidden layer may have
    # activations a hidden layer may use: relu, gelu, tanh
    activations: list[str] = field(default_factory=lambda: ["relu", "gelu"])
    # dropout rates before the classifier, each in [0, 1)
    dropouts: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5])

    def __post_init__(self) -> None:
        require(self.backbone is not None, "space=head needs space.backbone: a run directory or torchvision:NAME")
        require(self.max_layers >= 0, "max_layers must be >= 0")
        require(len(self.widths) > 0 and min(self.widths) >= 1, "widths must be positive integers")
        require(len(self.activations) > 0 and set(self.activations) <= set(ACTIVATIONS),
                f"activations must be a non-empty subset of {list(ACTIVATIONS)}")
        require(len(self.dropouts) > 0 and all(0 <= d < 1 for d in self.dropouts), "dropouts must be in [0, 1)")


def classifier_removed(model: nn.Module) -> nn.Module:
    """`model` with its last linear layer replaced by the identity: it outputs its features."""
    last = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][-1]
    parent, _, attribute = last.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attribute, nn.Identity())
    return model


def load_backbone(spec: str, input_shape: tuple[int, ...]) -> nn.Module:
    """The feature extractor `spec` names, for inputs of `input_shape`."""
    if spec.startswith(TORCHVISION):
        import torchvision  # lazily: optional, and it downloads the weights the first time

        try:
            model = torchvision.models.get_model(spec[len(TORCHVISION):], weights="DEFAULT")
        except ValueError as exc:
            raise UserError(f"space.backbone={spec}: {exc}") from None
        return classifier_removed(model)
    run = Path(spec).expanduser()
    RunDir(run).require_run()
    model, checkpoint = load_model(run)
    if checkpoint["input_shape"][0] != input_shape[0]:
        raise UserError(f"space.backbone {run} takes {checkpoint['input_shape'][0]} input channels; this data has "
                        f"{input_shape[0]}")
    return classifier_removed(model)


class HeadNetwork(nn.Module):
    """A backbone (frozen unless told otherwise: no gradients, batch norm in eval mode) and a head."""

    def __init__(self, backbone: nn.Module, head: nn.Module, frozen: bool) -> None:
        super().__init__()
        self.backbone, self.head, self.frozen = backbone, head, frozen
        if frozen:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> HeadNetwork:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


@register("space", "head")
class HeadSpace(SearchSpace):
    """Heads on a trained backbone: 0 to max_layers linear layers, each a width and an activation, and dropout."""

    Settings = HeadSettings

    def __init__(self, settings: HeadSettings) -> None:
        self.s = settings

    @classmethod
    def check(cls, settings: HeadSettings) -> None:
        """A backbone run must exist and hold a retrained model; a torchvision name needs torchvision (its name is
        checked when it loads)."""
        if settings.backbone.startswith(TORCHVISION):
            require_extra(f"space.backbone={settings.backbone}", "vision", "torchvision")
        else:
            RunDir(Path(settings.backbone).expanduser()).load_checkpoint()

    def _layer(self, rng: random.Random) -> dict[str, Any]:
        return {"width": rng.choice(self.s.widths), "activation": rng.choice(self.s.activations)}

    def sample(self, rng: random.Random) -> Arch:
        return {"layers": [self._layer(rng) for _ in range(rng.randint(0, self.s.max_layers))],
                "dropout": rng.choice(self.s.dropouts)}

    def neighbours(self, arch: Arch) -> list[Arch]:
        layers, variants = arch["layers"], []
        for i, layer in enumerate(layers):
            variants += [{**arch, "layers": [*layers[:i], {**layer, "width": w}, *layers[i + 1:]]}
                         for w in self.s.widths if w != layer["width"]]
            variants += [{**arch, "layers": [*layers[:i], {**layer, "activation": a}, *layers[i + 1:]]}
                         for a in self.s.activations if a != layer["activation"]]
            variants.append({**arch, "layers": [*layers[:i], *layers[i + 1:]]})
        if len(layers) < self.s.max_layers:
            variants += [{**arch, "layers": [*layers, {"width": w, "activation": a}]}
                         for w in self.s.widths for a in self.s.activations]
        variants += [{**arch, "dropout": d} for d in self.s.dropouts if d != arch["dropout"]]
        return variants

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        return rng.choice(self.neighbours(arch))

    def encode(self, arch: Arch) -> list[float]:
        vector = [self.s.dropouts.index(arch["dropout"]) / max(1, len(self.s.dropouts) - 1)]
        for i in range(self.s.max_layers):
            if i < len(arch["layers"]):
                layer = arch["layers"][i]
                vector += [1.0, self.s.widths.index(layer["width"]) / max(1, len(self.s.widths) - 1),
                           *(float(layer["activation"] == a) for a in self.s.activations)]
            else:
                vector += [0.0] * (2 + len(self.s.activations))
        return vector

    def decisions(self) -> list[int]:
        return [self.s.max_layers + 1, len(self.s.dropouts)] + [len(self.s.widths), len(self.s.activations)] * self.s.max_layers

    def from_decisions(self, choices: list[int]) -> Arch:
        return {"layers": [{"width": self.s.widths[choices[2 + 2 * i]], "activation": self.s.activations[choices[3 + 2 * i]]}
                           for i in range(choices[0])],
                "dropout": self.s.dropouts[choices[1]]}

    def validate(self, arch: Arch) -> Arch:
        require(isinstance(arch, dict) and set(arch) == {"layers", "dropout"}, "a head is {'layers': [...], 'dropout'}")
        require(isinstance(arch["layers"], list) and len(arch["layers"]) <= self.s.max_layers,
                f"a head has at most {self.s.max_layers} layers")
        for i, layer in enumerate(arch["layers"]):
            require(isinstance(layer, dict) and set(layer) == {"width", "activation"}, f"layer {i} needs width, activation")
            require(layer["width"] in self.s.widths, f"layer {i}: width {layer['width']!r} is not one of {self.s.widths}")
            require(layer["activation"] in self.s.activations, f"layer {i}: activation is not one of {self.s.activations}")
        require(arch["dropout"] in self.s.dropouts, f"dropout {arch['dropout']!r} is not one of {self.s.dropouts}")
        return arch

    def build(self, arch: Arch, input_shape: tuple[int, ...], num_classes: int,
              vocab_size: Optional[int] = None) -> nn.Module:
        backbone = load_backbone(self.s.backbone, input_shape)
        with torch.no_grad():
            features = backbone.eval()(torch.zeros(2, *input_shape)).flatten(1).shape[1]
        layers: list[nn.Module] = [nn.Flatten()]
        width = features
        for layer in arch["layers"]:
            layers += [nn.Linear(width, layer["width"]), ACTIVATIONS[layer["activation"]]()]
            width = layer["width"]
        layers += [nn.Dropout(arch["dropout"]), nn.Linear(width, num_classes)]
        return HeadNetwork(backbone, nn.Sequential(*layers), frozen=not self.s.train_backbone)

    def draw(self, arch: Arch, ax: Any) -> None:
        boxes = [(f"backbone\n{Path(self.s.backbone).name}", "#d9d9d9")]
        boxes += [(f"linear {layer['width']}\n{layer['activation']}", "#9ecae1") for layer in arch["layers"]]
        boxes.append((f"dropout {arch['dropout']}\nlinear", "#d9d9d9"))
        draw_boxes(ax, boxes)
