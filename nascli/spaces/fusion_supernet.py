"""Weight sharing for the fusion space: every encoder a chain supernet, every fusion step position every op.

A step position holds one FusionStep per op at the widest sizes (every input at its encoder's widest
channels, `max(widths)` features, the widest previous step). A path's step computes with the leading
slices of those weights, through a stand-alone FusionStep of the path's sizes used as a template
(`torch.func.functional_call`), so the path's network and its extracted stand-alone copy compute the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from nascli.errors import UserError
from nascli.spaces.base import Arch, Supernet
from nascli.spaces.chain import ChainSupernet
from nascli.spaces.fusion_layers import (ENSEMBLE, ChainEncoder, Experts, FusionNet, FusionStep, fusion_loss,
                                         step_features)

if TYPE_CHECKING:
    from nascli.spaces.fusion import FusionSpace

Sizes = tuple[str, tuple[tuple[str, int], ...], int, Optional[int]]  # op, tapped (input, channels), width, previous


class FusionSupernet(Supernet):
    """A chain supernet per input, every fusion op at each step position, and a sliced linear head."""

    def __init__(self, space: FusionSpace, input_shape: dict[str, tuple[int, ...]], num_classes: int) -> None:
        super().__init__(space)
        if not isinstance(input_shape, dict) or list(input_shape) != space.inputs:
            raise UserError(f"space=fusion takes the inputs {space.inputs}; the data gives {input_shape}")
        self.input_shape = input_shape
        self.encoders = nn.ModuleDict({name: ChainSupernet(space.encoder_space(name), input_shape[name], 1)
                                       for name in space.inputs})
        self.channels = {name: max(s.stem_width, *s.widths)
                         for name, s in ((n, space.encoder_space(n).s) for n in space.inputs)}
        self.width, self.num_classes = max(space.s.widths), num_classes
        self.steps = nn.ModuleList(  # the ensemble only at the first position: it is a fusion's only step
            nn.ModuleDict({op: Experts(self.channels, self.width, num_classes) if op == ENSEMBLE
                           else FusionStep(op, self.channels, self.width, self.width if i else None)
                           for op in space.s.ops if op != ENSEMBLE or i == 0})
            for i in range(space.s.max_steps)
        )
        self.head = nn.Linear(self.width, num_classes)
        self._templates: dict[Sizes, FusionStep] = {}  # not submodules: their own weights are never used
        self._selections: dict[tuple, dict[str, list[Any]]] = {}

    def relaxation(self) -> tuple[int, list[str]]:
        raise UserError("space=fusion mixes encoders and fusion steps whose choices differ, so it has no "
                        "continuous relaxation; use strategy=spos")

    def derive(self, weights: Tensor) -> Arch:
        return self.relaxation()

    def criterion(self, output: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """The training loss of the current path's output, as its extracted network trains (see fusion_loss)."""
        return fusion_loss(output, targets, label_smoothing, self.path["fusion"][-1]["op"] == ENSEMBLE)

    def _template(self, sizes: Sizes) -> FusionStep | Experts:
        if sizes not in self._templates:
            op, tapped, width, previous = sizes
            self._templates[sizes] = (Experts(dict(tapped), width, self.num_classes) if op == ENSEMBLE
                                      else FusionStep(op, dict(tapped), width, previous))
        return self._templates[sizes]

    def _selectors(self, unit: nn.Module, template: nn.Module, tapped: dict[str, int], device: torch.device
                   ) -> dict[str, list[Any]]:
        """For each of the template's weights, the index of each dimension that cuts it out of the unit's:
        leading slices, and block-wise where a layer concatenates inputs (concat), keys and values (attention)
        or gates per input (gated). Computed once per sizes and device: they depend on nothing else."""
        key = (unit.op, tuple(tapped.items()), tuple(p.shape for p in template.parameters()), str(device))
        if key in self._selections:
            return self._selections[key]
        if unit.op == ENSEMBLE:  # each expert's own layers: leading slices
            self._selections[key] = {name: [slice(0, n) for n in weight.shape]
                                     for name, weight in template.named_parameters()}
            return self._selections[key]
        width, full = template.norm.normalized_shape[0], self.width
        rows = torch.tensor([list(self.channels).index(name) for name in tapped])  # the tapped inputs' places
        keys_values = torch.cat([torch.arange(width), full + torch.arange(width)]).to(device)
        per_input = torch.cat([k * full + torch.arange(width) for k in rows.tolist()]).to(device)
        selectors = {}
        for name, weight in template.named_parameters():
            leading = [slice(0, n) for n in weight.shape]
            if name == "mix.weight":  # columns: each input's channels at its widest offset, then the previous step
                offsets, at = {}, 0
                for input_name, channels in self.channels.items():
                    offsets[input_name], at = at, at + channels
                columns = [offsets[n] + torch.arange(c) for n, c in tapped.items()]
                columns.append(at + torch.arange(weight.shape[1] - sum(tapped.values())))
                selectors[name] = [leading[0], torch.cat(columns).to(device)]
            elif unit.op == "attention" and name == "kind":
                selectors[name] = [rows.to(device), keys_values]
            elif unit.op == "attention" and name.startswith("project."):
                selectors[name] = [keys_values, *leading[1:]]
            elif name.startswith("gates."):
                selectors[name] = [per_input] * weight.dim()
            else:
                selectors[name] = leading
        self._selections[key] = selectors
        return selectors

    def _sliced(self, unit: nn.Module, template: nn.Module, tapped: dict[str, int]) -> dict[str, Tensor]:
        """The unit's weights cut to the template's sizes."""
        own = dict(unit.named_parameters())
        sliced = {}
        for name, indices in self._selectors(unit, template, tapped, self.head.weight.device).items():
            tensor = own[name]
            for dim, index in enumerate(indices):
                tensor = tensor[(slice(None),) * dim + (index,)]
            sliced[name] = tensor
        return sliced

    def _step(self, i: int, step: dict[str, Any], maps: dict[str, Tensor], previous: Optional[Tensor]
              ) -> tuple[nn.Module, dict[str, Tensor]]:
        tapped = {name: f.shape[1] for name, f in maps.items()}
        sizes = (step["op"], tuple(tapped.items()), step["width"], None if previous is None else previous.shape[1])
        template = self._template(sizes)
        return template, self._sliced(self.steps[i][step["op"]], template, tapped)

    def forward(self, *inputs: Tensor) -> Tensor:
        if self.mixture is not None:
            self.relaxation()
        arch = self.path
        layers = {name: self.encoders[name].stage_outputs(x, arch["encoders"][name])
                  for name, x in zip(self.space.inputs, inputs) if name in arch["encoders"]}
        fused = None
        for i, step in enumerate(arch["fusion"]):
            maps = {name: layers[name][-1 - depth] for name, depth in step["taps"].items()}
            template, weights = self._step(i, step, maps, fused)
            features = step_features(step["op"], {name: (ChainEncoder, step["taps"][name], f, None)
                                                  for name, f in maps.items()})
            fused = functional_call(template, weights, (features, fused))
        if arch["fusion"][-1]["op"] == ENSEMBLE:  # the experts' summed log-probabilities: no head
            return fused
        return F.linear(fused, self.head.weight[:, : fused.shape[1]], self.head.bias)

    @torch.no_grad()
    def extract(self, arch: Arch) -> nn.Module:
        net = FusionNet(self.space, arch, self.input_shape, self.head.out_features).to(self.head.weight.device)
        channels = {}
        for name, encoder in arch["encoders"].items():
            chain = self.encoders[name].extract(encoder)  # stem conv, bn, relu, blocks..., pool, flatten, linear
            stages = net.encoders[name]
            stages[0].load_state_dict(nn.Sequential(*chain[:3]).state_dict())
            for k in range(len(encoder["blocks"])):
                stages[1 + k].load_state_dict(chain[3 + k].state_dict())
            channels[name] = [self.encoders[name].space.s.stem_width] + [b["width"] for b in encoder["blocks"]]
        previous = None
        for i, (step, target) in enumerate(zip(arch["fusion"], net.steps)):
            tapped = {name: channels[name][-1 - depth] for name, depth in step["taps"].items()}
            target.load_state_dict(self._sliced(self.steps[i][step["op"]], target, tapped))
            previous = step["width"]
        if not net.ensemble:
            net.head.weight.copy_(self.head.weight[:, :previous])
            net.head.bias.copy_(self.head.bias)
        return net
