"""The modules of fusion networks: per-input encoders, fusion steps and ops, the ensemble's experts and losses.

`nascli.spaces.fusion` holds the space that builds them; `nascli.spaces.fusion_supernet` shares their weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nascli.seeding import derive_seed
from nascli.spaces.base import Arch
from nascli.spaces.pooling import global_avg_pool
from nascli.spaces.text import TextLayers, pool_over_time

if TYPE_CHECKING:
    from nascli.spaces.fusion import FusionSpace


FUSION_OPS = ("concat", "sum", "product", "gated", "attention", "ensemble")
ENSEMBLE = "ensemble"  # a fusion's only step: each tapped layer its own classifier, trained on its own loss
ATTENTION_HEADS = 4
ATTENTION_SIDE = 8  # attention sees a tapped map average-pooled to at most this many positions per side


Positions = tuple[Tensor, Optional[Tensor]]  # features (N, P, C) at P positions, and which are real (N, P)


def map_positions(features: Tensor) -> Tensor:
    """A feature map (N, C, H, W) average-pooled to at most ATTENTION_SIDE positions per side (an exportable
    fixed pooling), as (N, P, C)."""
    size = math.ceil(max(features.shape[2:]) / ATTENTION_SIDE)
    coarse = F.avg_pool2d(features, size, size, ceil_mode=True) if size > 1 else features
    return coarse.flatten(2).transpose(1, 2)


def map_pooled(features: Tensor) -> Tensor:
    """A feature map (N, C, H, W) averaged over its positions, as (N, C)."""
    return global_avg_pool(features).flatten(1)


class ChainEncoder(nn.ModuleList):
    """An image-like input's encoder: the stem and the blocks of a chain architecture, each a tappable layer."""

    def layers(self, x: Tensor) -> tuple[list[Tensor], Optional[Tensor]]:
        """Every stage's output; no padding mask."""
        outputs = []
        for stage in self:
            x = stage(x)
            outputs.append(x)
        return outputs, None

    @staticmethod  # static: a supernet's chains pool their layers the same way
    def pooled(depth: int, features: Tensor, mask: Optional[Tensor]) -> Tensor:
        return map_pooled(features)

    @staticmethod
    def positions(features: Tensor, mask: Optional[Tensor]) -> Positions:
        return map_positions(features), None


class TextEncoder(TextLayers):
    """A token input's encoder: the embedding and blocks of a text architecture; a tapped layer is pooled over
    its tokens by the architecture's pooling and dropout."""

    def __init__(self, arch: Arch, vocab_size: int) -> None:
        super().__init__(arch, vocab_size)
        self.pool = arch["pool"]
        # attention pooling scores the positions of each layer (from the last, as taps count)
        self.scores = nn.ModuleList(nn.Linear(w, 1) for w in reversed(self.widths)) if self.pool == "attention" else None
        self.dropout = nn.Dropout(arch["dropout"])

    def pooled(self, depth: int, features: Tensor, mask: Optional[Tensor]) -> Tensor:
        return self.dropout(pool_over_time(features, mask, self.pool, self.scores[depth] if self.scores else None))

    def positions(self, features: Tensor, mask: Optional[Tensor]) -> Positions:
        """The tokens' features averaged in windows to at most ATTENTION_SIDE**2 positions; padding never counts."""
        size = math.ceil(features.shape[2] / ATTENTION_SIDE**2)
        if size > 1:
            counts = F.avg_pool1d(mask[:, None, :].float(), size, size, ceil_mode=True) * size
            features = F.avg_pool1d(features, size, size, ceil_mode=True) * size / counts.clamp(min=1)
            mask = counts[:, 0] > 0
        return features.transpose(1, 2), mask


class FusionStep(nn.Module):
    """One fusion step: each tapped layer pooled (for attention: at its positions) and the previous output."""

    def __init__(self, op: str, channels: dict[str, int], width: int, previous: Optional[int]) -> None:
        super().__init__()
        self.op = op
        if op == "concat":
            self.mix = nn.Linear(sum(channels.values()) + (previous or 0), width)
        elif op == "attention":  # keys and values of every position of every tapped layer
            self.project = nn.ModuleDict({name: nn.Linear(c, 2 * width) for name, c in channels.items()})
            self.kind = nn.Parameter(torch.zeros(len(channels), 2 * width))  # which input a position comes from
            self.query = nn.Parameter(torch.zeros(1, width))  # zero: the first attention is a mean over positions
            self.heads = ATTENTION_HEADS if width % ATTENTION_HEADS == 0 else 1
            self.out = nn.Linear(width, width)
        else:
            self.project = nn.ModuleDict({name: nn.Linear(c, width) for name, c in channels.items()})
        if op != "concat":
            self.carry = nn.Linear(previous, width) if previous else None
        if op == "gated":
            self.gates = nn.Linear(width * len(channels), width * len(channels))
        self.norm = nn.LayerNorm(width)

    def forward(self, features: dict[str, Any], previous: Optional[Tensor]) -> Tensor:
        """`features`: each tapped layer pooled (N, C), or for attention its Positions."""
        if self.op == "concat":
            pooled = list(features.values()) + ([previous] if previous is not None else [])
            return F.relu(self.norm(self.mix(torch.cat(pooled, 1))))
        if self.op == "attention":
            fused = self._attend(features, previous)
        else:
            parts = [self.project[name](f) for name, f in features.items()]
            if self.op == "sum":
                fused = torch.stack(parts).sum(0)
            elif self.op == "product":
                fused = torch.stack(parts).prod(0)
            else:  # gated: a softmax over the inputs, per feature, decides how much of each is kept
                stacked = torch.stack(parts, 1)  # (batch, inputs, width)
                weights = self.gates(stacked.flatten(1)).view_as(stacked).softmax(1)
                fused = (weights * stacked).sum(1)
            if previous is not None:
                fused = fused + self.carry(previous)
        return F.relu(self.norm(fused))

    def _attend(self, features: dict[str, Positions], previous: Optional[Tensor]) -> Tensor:
        """A learned query (plus the previous step's output) attending to every real position of the tapped layers."""
        keys, values = torch.cat([self.project[name](f) + self.kind[i]
                                  for i, (name, (f, _)) in enumerate(features.items())], 1).chunk(2, dim=2)
        batch, _, width = keys.shape
        mask = None  # every position is real unless a text input says otherwise
        if any(m is not None for _, m in features.values()):
            mask = torch.cat([m if m is not None else torch.ones(f.shape[:2], dtype=torch.bool, device=f.device)
                              for f, m in features.values()], 1)[:, None, None, :]
        query = self.query.repeat(batch, 1)  # a copy, not a view: torch's flop counter needs its gradient function
        if previous is not None:
            query = query + self.carry(previous)

        def heads(x: Tensor) -> Tensor:
            return x.reshape(batch, -1, self.heads, width // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(heads(query), heads(keys), heads(values), attn_mask=mask)
        return self.out(attended.reshape(batch, width))


@contextmanager
def initialised(base: Optional[int], role: str) -> Iterator[None]:
    """Layers made inside start from torch's generator seeded by `base` and their role (an encoder of one input,
    the classifier over some inputs), then the generator goes on as before; `base` None leaves it as it is.

    So an encoder starts alike in every fusion network of a trial seed, and an ensemble's expert as the network
    of its input alone: comparisons between fusions are not confounded by the draw of initial weights (common
    random numbers)."""
    if base is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(base, role))
        yield


class Experts(nn.Module):
    """The ensemble op: each tapped layer, pooled, its own classifier (a hidden layer of `width`, as a one-input
    concat step and the head); the output is the sum of their log-probabilities, a product of experts."""

    def __init__(self, channels: dict[str, int], width: int, num_classes: int, base: Optional[int] = None) -> None:
        super().__init__()
        self.op = ENSEMBLE
        self.experts = nn.ModuleDict()
        for name, c in channels.items():
            with initialised(base, f"classifier:{name}"):
                self.experts[name] = nn.Sequential(nn.Linear(c, width), nn.LayerNorm(width), nn.ReLU(),
                                                   nn.Linear(width, num_classes))

    def forward(self, features: dict[str, Tensor], previous: Optional[Tensor] = None) -> Tensor:
        """`previous` is always None: the ensemble is a fusion's only step."""
        return torch.stack([self.experts[name](f).log_softmax(1) for name, f in features.items()]).sum(0)


def experts_loss(log_probs: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """The sum of the experts' cross-entropies, from the sum of their log-probabilities: each expert learns from
    its own loss alone, as if trained apart (no renormalisation of the sum)."""
    nll = -log_probs.gather(1, targets[:, None]).squeeze(1)
    return ((1 - label_smoothing) * nll - label_smoothing * log_probs.mean(1)).mean()


def fusion_loss(output: Tensor, targets: Tensor, label_smoothing: float, ensemble: bool) -> Tensor:
    """A fusion network's training loss: cross-entropy, or for an ensemble the sum of its experts' losses."""
    if ensemble:
        return experts_loss(output, targets, label_smoothing)
    return F.cross_entropy(output, targets, label_smoothing=label_smoothing)


def step_features(op: str, tapped: dict[str, tuple[Any, int, Tensor, Optional[Tensor]]]) -> dict[str, Any]:
    """What a step with `op` takes of each tapped layer, given as (its encoder, depth, features, mask)."""
    if op == "attention":
        return {name: encoder.positions(f, mask) for name, (encoder, _, f, mask) in tapped.items()}
    return {name: encoder.pooled(depth, f, mask) for name, (encoder, depth, f, mask) in tapped.items()}


class FusionNet(nn.Module):
    """Encoders of the inputs (taken positionally, in the space's order), fusion steps and a linear head."""

    def __init__(self, space: FusionSpace, arch: Arch, input_shape: dict[str, tuple[int, ...]], num_classes: int,
                 vocab_size: Optional[dict[str, int]] = None) -> None:
        super().__init__()
        self.order = list(input_shape)
        self.encoders = nn.ModuleDict()
        channels: dict[str, list[int]] = {}
        base = int(torch.randint(2**31, ()))  # one draw whatever the architecture: each part's seed derives from it
        for name, encoder in arch["encoders"].items():
            with initialised(base, f"encoder:{name}"):
                if space.modality[name] == "tokens":
                    self.encoders[name] = TextEncoder(encoder, (vocab_size or {})[name])
                    channels[name] = self.encoders[name].widths
                else:
                    stages, channels[name] = space.encoder_space(name).stages(encoder, input_shape[name])
                    self.encoders[name] = ChainEncoder(stages)
        self.taps = [step["taps"] for step in arch["fusion"]]
        self.steps = nn.ModuleList()
        self.ensemble = arch["fusion"][-1]["op"] == ENSEMBLE
        if self.ensemble:  # each expert starts as the classifier of its input's network alone
            tapped = {name: channels[name][-1 - depth] for name, depth in self.taps[0].items()}
            self.steps.append(Experts(tapped, arch["fusion"][0]["width"], num_classes, base))
            self.head: nn.Module = nn.Identity()
        else:
            with initialised(base, "classifier:" + "+".join(sorted(arch["encoders"]))):
                previous = None
                for step in arch["fusion"]:
                    tapped = {name: channels[name][-1 - depth] for name, depth in step["taps"].items()}
                    self.steps.append(FusionStep(step["op"], tapped, step["width"], previous))
                    previous = step["width"]
                self.head = nn.Linear(previous, num_classes)

    def criterion(self, output: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """The training loss of `output` (see fusion_loss)."""
        return fusion_loss(output, targets, label_smoothing, self.ensemble)

    def forward(self, *inputs: Tensor) -> Tensor:
        layers = {name: self.encoders[name].layers(x) for name, x in zip(self.order, inputs) if name in self.encoders}
        fused = None
        for step, taps in zip(self.steps, self.taps):
            tapped = {name: (self.encoders[name], depth, layers[name][0][-1 - depth], layers[name][1])
                      for name, depth in taps.items()}
            fused = step(step_features(step.op, tapped), fused)
        return self.head(fused)
