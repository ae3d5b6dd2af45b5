"""A macro search space: a chain of blocks, each an op, a width and whether it downsamples."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nascli.errors import require
from nascli.registry import register
from nascli.spaces.base import Arch, SearchSpace, Supernet, arch_hash, draw_boxes
from nascli.spaces.depthwise import DepthwiseConv2d
from nascli.spaces.pooling import GlobalAvgPool, avg_pool3x3, global_avg_pool
from nascli.spaces.sliced import SlicedBatchNorm2d, SlicedConv2d

CONV_KERNELS = {"conv3x3": 3, "conv5x5": 5, "conv1x1": 1}
OPS = (*CONV_KERNELS, "sepconv3x3", "maxpool3x3", "avgpool3x3", "identity")
DRAW_COLOURS = {"conv3x3": "#9ecae1", "conv5x5": "#6baed6", "conv1x1": "#c6dbef", "sepconv3x3": "#a1d99b",
                "maxpool3x3": "#fdae6b", "avgpool3x3": "#fdd0a2", "identity": "#f0f0f0"}


@dataclass
class ChainSettings:
    """Which chains the space holds."""

    min_blocks: int = 2  # fewest blocks in a chain (>= 1)
    max_blocks: int = 6  # most blocks in a chain
    # the ops a block may use: conv3x3, conv5x5, conv1x1, sepconv3x3, maxpool3x3, avgpool3x3, identity
    ops: list[str] = field(default_factory=lambda: list(OPS))
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])  # output channels a block may have
    stem_width: int = 16  # output channels of the stem (3x3 convolution, batch norm, ReLU) before the blocks
    max_downsamples: int = 3  # most blocks of a chain that halve the feature map (stride 2); 0: none

    def __post_init__(self) -> None:
        require(1 <= self.min_blocks <= self.max_blocks, "need 1 <= min_blocks <= max_blocks")
        require(len(self.ops) > 0 and set(self.ops) <= set(OPS), f"ops must be a non-empty subset of {list(OPS)}")
        require(len(self.widths) > 0 and min(self.widths) >= 1, "widths must be positive integers")
        require(self.stem_width >= 1, "stem_width must be at least 1")
        require(self.max_downsamples >= 0, "max_downsamples must be >= 0")


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int, depthwise: bool = False) -> list[nn.Module]:
    conv = DepthwiseConv2d(c_in, kernel, stride) if depthwise else \
        nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)
    return [
        conv,
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def reduced(op: str, x: Tensor, stride: int) -> Tensor:
    """What a block passes on before its projection: the pooled input for a pooling op, else the input subsampled."""
    if op == "maxpool3x3":
        return F.max_pool2d(x, 3, stride, padding=1)
    if op == "avgpool3x3":
        return avg_pool3x3(x, stride)
    return F.avg_pool2d(x, 1, stride) if stride > 1 else x


class Block(nn.Module):
    """One block of a chain: a conv op adds its output to a shortcut, a parameter-free op is its own output.

    When the block changes the shape (width or stride), the shortcut and a parameter-free op's output pass a 1x1
    convolution and batch norm (ResNet's projection shortcut). Every block thus carries its input's channels on:
    what lets a supernet share one position's weights among ops and widths.
    """

    def __init__(self, op: str, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.op, self.stride = op, stride
        layers: list[nn.Module] = []
        if op in CONV_KERNELS:
            layers = _conv_bn_relu(c_in, c_out, CONV_KERNELS[op], stride)
        elif op == "sepconv3x3":
            layers = _conv_bn_relu(c_in, c_in, 3, stride, depthwise=True) + _conv_bn_relu(c_in, c_out, 1, 1)
        self.body = nn.Sequential(*layers)
        reshaped = stride > 1 or c_in != c_out
        self.project = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)) if reshaped \
            else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(reduced(self.op, x, self.stride))
        return out + self.body(x) if len(self.body) else out


class SuperBlock(nn.Module):
    """Every op of one chain position at the widest width, with one projection all ops share; a path's block uses
    leading channel slices."""

    def __init__(self, ops: list[str], max_in: int, max_out: int) -> None:
        super().__init__()
        self.units = nn.ModuleDict()
        for op in ops:  # the conv/batch-norm pairs of the op's stand-alone Block body, in its order
            if op in CONV_KERNELS:
                pairs = [(SlicedConv2d(max_in, max_out, CONV_KERNELS[op]), SlicedBatchNorm2d(max_out))]
            elif op == "sepconv3x3":
                pairs = [(SlicedConv2d(max_in, max_in, 3, depthwise=True), SlicedBatchNorm2d(max_in)),
                         (SlicedConv2d(max_in, max_out, 1), SlicedBatchNorm2d(max_out))]
            else:
                continue
            self.units[op] = nn.ModuleList(nn.ModuleList(pair) for pair in pairs)
        self.project = nn.ModuleList([SlicedConv2d(max_in, max_out, 1), SlicedBatchNorm2d(max_out)])

    def used(self, op: str, c_in: int, c_out: int) -> list[tuple[SlicedConv2d, SlicedBatchNorm2d, int, int]]:
        """The (conv, batch norm, c_in, c_out) of the stand-alone Block(op, c_in, c_out)'s body, in order."""
        if op not in self.units:
            return []
        pairs = [tuple(pair) for pair in self.units[op]]
        if op in CONV_KERNELS:
            return [(*pairs[0], c_in, c_out)]
        return [(*pairs[0], c_in, c_in), (*pairs[1], c_in, c_out)]

    def forward(self, x: Tensor, op: str, c_out: int, stride: int) -> Tensor:
        c_in = x.shape[1]
        out = reduced(op, x, stride)
        if stride > 1 or c_in != c_out:
            conv, bn = self.project
            out = bn(conv(out, c_out))
        if op not in self.units:
            return out
        for i, (conv, bn, _, width) in enumerate(self.used(op, c_in, c_out)):
            x = F.relu(bn(conv(x, width, stride if i == 0 else 1)))
        return out + x


class ChainSupernet(Supernet):
    """The stem, `max_blocks` positions holding every op at the widest width, and a sliced normalised linear head."""

    def __init__(self, space: ChainSpace, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(space)
        s = space.s
        self.input_shape = input_shape
        self.stem = nn.Sequential(*_conv_bn_relu(input_shape[0], s.stem_width, 3, 1))
        max_width = max(s.widths)
        self.blocks = nn.ModuleList(SuperBlock(s.ops, max(max_width, s.stem_width) if i else s.stem_width, max_width)
                                    for i in range(s.max_blocks))
        self.neck = SlicedBatchNorm2d(max_width)
        self.head = nn.Linear(max_width, num_classes)

    def _strides(self, arch: Arch) -> list[int]:
        """Each block's stride, as ChainSpace.build chooses it."""
        strides, size = [], min(self.input_shape[1:])
        for b in arch["blocks"]:
            strides.append(2 if b["down"] and size >= 2 else 1)
            size = (size + strides[-1] - 1) // strides[-1]
        return strides

    def skeleton(self) -> Arch:
        """The chain a relaxation mixes ops in: every position, the widest width, downsampling spread evenly."""
        s, n = self.space.s, self.space.s.max_blocks
        downs = {(k + 1) * n // (s.max_downsamples + 1) for k in range(min(s.max_downsamples, n))}
        return {"blocks": [{"op": s.ops[0], "width": max(s.widths), "down": i in downs} for i in range(n)]}

    def stage_outputs(self, x: Tensor, arch: Arch) -> list[Tensor]:
        """The stem's and each block's output along `arch`'s path."""
        outputs = [self.stem(x)]
        for block, b, stride in zip(self.blocks, arch["blocks"], self._strides(arch)):
            outputs.append(block(outputs[-1], b["op"], b["width"], stride))
        return outputs

    def forward(self, x: Tensor) -> Tensor:
        if self.mixture is None:
            x = self.stage_outputs(x, self.path)[-1]
        else:
            path = self.skeleton()
            x = self.stem(x)
            for i, (block, b, stride) in enumerate(zip(self.blocks, path["blocks"], self._strides(path))):
                x = sum(w * block(x, op, b["width"], stride) for w, op in zip(self.mixture[i], self.space.s.ops))
        c = x.shape[1]
        return F.linear(self.neck(global_avg_pool(x).flatten(1)), self.head.weight[:, :c], self.head.bias)

    def relaxation(self) -> tuple[int, list[str]]:
        return self.space.s.max_blocks, list(self.space.s.ops)

    def derive(self, weights: Tensor) -> Arch:
        ops = self.space.s.ops
        return {"blocks": [{**b, "op": ops[i]} for b, i in zip(self.skeleton()["blocks"], weights.argmax(dim=1).tolist())]}

    @torch.no_grad()
    def extract(self, arch: Arch) -> nn.Module:
        net = self.space.build(arch, self.input_shape, self.head.out_features)
        net[: len(self.stem)].load_state_dict(self.stem.state_dict())
        c_in = self.space.s.stem_width
        for i, b in enumerate(arch["blocks"]):
            target, source = net[len(self.stem) + i], self.blocks[i]
            pairs = list(zip(target.body[0::3], target.body[1::3], source.used(b["op"], c_in, b["width"])))
            if isinstance(target.project, nn.Sequential):
                pairs.append((*target.project, (*source.project, c_in, b["width"])))
            for conv, bn, (sconv, sbn, cin, cout) in pairs:
                conv.weight.copy_(sconv.weight_for(cin, cout))
                sbn.copy_into(bn)
            c_in = b["width"]
        self.neck.copy_into(net[-2])
        net[-1].weight.copy_(self.head.weight[:, :c_in])
        net[-1].bias.copy_(self.head.bias)
        return net


@register("space", "chain")
class ChainSpace(SearchSpace):
    """Chains of `min_blocks`..`max_blocks` blocks between a conv stem and a pooled, normalised linear head."""

    Settings = ChainSettings

    def __init__(self, settings: ChainSettings) -> None:
        self.s = settings

    def _block(self, rng: random.Random, down: bool) -> dict:
        return {"op": rng.choice(self.s.ops), "width": rng.choice(self.s.widths), "down": down}

    def sample(self, rng: random.Random) -> Arch:
        depth = rng.randint(self.s.min_blocks, self.s.max_blocks)
        downs = set(rng.sample(range(depth), rng.randint(0, min(depth, self.s.max_downsamples))))
        return {"blocks": [self._block(rng, i in downs) for i in range(depth)]}

    def _edits(self, arch: Arch) -> dict[str, list[Arch]]:
        """Every one-edit variant of `arch`, by kind of edit."""
        blocks = arch["blocks"]
        n_down = sum(b["down"] for b in blocks)

        def with_blocks(new_blocks: list[dict]) -> Arch:
            return {"blocks": new_blocks}

        def replaced(i: int, **change: object) -> Arch:
            return with_blocks([{**b, **change} if j == i else b for j, b in enumerate(blocks)])

        edits: dict[str, list[Arch]] = {
            "op": [replaced(i, op=op) for i, b in enumerate(blocks) for op in self.s.ops if op != b["op"]],
            "width": [replaced(i, width=w) for i, b in enumerate(blocks) for w in self.s.widths if w != b["width"]],
            "down": [
                replaced(i, down=not b["down"])
                for i, b in enumerate(blocks)
                if b["down"] or n_down < self.s.max_downsamples
            ],
            "insert": [],
            "remove": [],
        }
        if len(blocks) < self.s.max_blocks:
            inserts = (
                with_blocks(blocks[:i] + [{"op": op, "width": w, "down": False}] + blocks[i:])
                for i in range(len(blocks) + 1)
                for op in self.s.ops
                for w in self.s.widths
            )
            # inserting a copy of a block just before or just after it gives the same chain
            edits["insert"] = list({arch_hash(a): a for a in inserts}.values())
        if len(blocks) > self.s.min_blocks:
            edits["remove"] = [with_blocks(blocks[:i] + blocks[i + 1 :]) for i in range(len(blocks))]
        return edits

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        edits = {kind: variants for kind, variants in self._edits(arch).items() if variants}
        return rng.choice(edits[rng.choice(sorted(edits))])

    def neighbours(self, arch: Arch) -> list[Arch]:
        return [variant for variants in self._edits(arch).values() for variant in variants]

    def encode(self, arch: Arch) -> list[float]:
        vector: list[float] = []
        widths = sorted(self.s.widths)
        for i in range(self.s.max_blocks):
            if i < len(arch["blocks"]):
                b = arch["blocks"][i]
                width = widths.index(b["width"]) / max(1, len(widths) - 1)
                vector += [1.0, *(float(b["op"] == op) for op in self.s.ops), width, float(b["down"])]
            else:
                vector += [0.0] * (len(self.s.ops) + 3)
        return vector

    def decisions(self) -> list[int]:
        per_block = [len(self.s.ops), len(self.s.widths), 2]
        return [self.s.max_blocks - self.s.min_blocks + 1] + per_block * self.s.max_blocks

    def from_decisions(self, choices: list[int]) -> Arch:
        depth = self.s.min_blocks + choices[0]
        blocks, downs = [], 0
        for i in range(depth):
            op, width, down = choices[1 + 3 * i : 4 + 3 * i]
            down = bool(down) and downs < self.s.max_downsamples
            downs += down
            blocks.append({"op": self.s.ops[op], "width": self.s.widths[width], "down": down})
        return {"blocks": blocks}

    def validate(self, arch: Arch) -> Arch:
        require(isinstance(arch, dict) and set(arch) == {"blocks"}, "a chain architecture is {'blocks': [...]}")
        blocks = arch["blocks"]
        require(isinstance(blocks, list), "'blocks' must be a list")
        require(
            self.s.min_blocks <= len(blocks) <= self.s.max_blocks,
            f"a chain has {self.s.min_blocks} to {self.s.max_blocks} blocks, this one {len(blocks)}",
        )
        for i, b in enumerate(blocks):
            require(isinstance(b, dict) and set(b) == {"op", "width", "down"}, f"block {i} needs op, width, down")
            require(b["op"] in self.s.ops, f"block {i}: op {b['op']!r} is not one of {self.s.ops}")
            require(b["width"] in self.s.widths, f"block {i}: width {b['width']!r} is not one of {self.s.widths}")
            require(isinstance(b["down"], bool), f"block {i}: down must be true or false")
        require(sum(b["down"] for b in blocks) <= self.s.max_downsamples, "too many downsampling blocks")
        return arch

    def stages(self, arch: Arch, input_shape: tuple[int, ...]) -> tuple[list[nn.Module], list[int]]:
        """The stem and each block of `arch` as modules, and the channels each one outputs."""
        channels, height, width = input_shape
        stages: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(channels, self.s.stem_width, 3, 1))]
        widths, size = [self.s.stem_width], min(height, width)
        for b in arch["blocks"]:
            stride = 2 if b["down"] and size >= 2 else 1
            stages.append(Block(b["op"], widths[-1], b["width"], stride))
            widths.append(b["width"])
            size = (size + stride - 1) // stride
        return stages, widths

    def build(self, arch: Arch, input_shape: tuple[int, ...], num_classes: int,
              vocab_size: Optional[int] = None) -> nn.Module:
        stages, widths = self.stages(arch, input_shape)
        stem, *blocks = stages
        # batch norm of the pooled features: chains of any depth and ops feed the classifier features of one scale
        return nn.Sequential(*stem, *blocks, GlobalAvgPool(), nn.Flatten(), nn.BatchNorm1d(widths[-1]),
                             nn.Linear(widths[-1], num_classes))

    def supernet(self, input_shape: tuple[int, ...], num_classes: int, vocab_size: Optional[int] = None) -> Supernet:
        return ChainSupernet(self, input_shape, num_classes)

    def draw(self, arch: Arch, ax: Any) -> None:
        """A block diagram, left to right: the stem, each block (op, width, /2 when it downsamples), the head."""
        boxes = [("stem\nconv3x3\n" + str(self.s.stem_width), "#d9d9d9")]
        for block in arch["blocks"]:
            label = f"{block['op']}\n{block['width']}" + ("\n/2" if block["down"] else "")
            boxes.append((label, DRAW_COLOURS[block["op"]]))
        boxes.append(("pool\nlinear", "#d9d9d9"))
        draw_boxes(ax, boxes)
