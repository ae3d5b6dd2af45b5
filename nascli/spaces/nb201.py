"""The NAS-Bench-201 cell space: 6 edges of a 4-node cell, each one of 5 ops, in the NB201 skeleton."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from nascli.errors import require
from nascli.registry import register
from nascli.spaces.base import Arch, SearchSpace, Supernet
from nascli.spaces.pooling import AvgPool3x3, GlobalAvgPool

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Edge k joins node EDGES[k][0] to node EDGES[k][1], in the order of the official cell string.
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
DRAW_LABELS = {"none": "", "skip_connect": "skip", "nor_conv_1x1": "conv1x1", "nor_conv_3x3": "conv3x3",
               "avg_pool_3x3": "avgpool"}
DRAW_COLOURS = {"none": "#bbbbbb", "skip_connect": "#636363", "nor_conv_1x1": "#6baed6", "nor_conv_3x3": "#08519c",
                "avg_pool_3x3": "#e6550d"}


def cell_string(ops: list[str]) -> str:
    """The official string `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` of six edge ops."""
    nodes = []
    for target in (1, 2, 3):
        nodes.append("|" + "|".join(f"{ops[k]}~{src}" for k, (src, dst) in enumerate(EDGES) if dst == target) + "|")
    return "+".join(nodes)


def parse_cell(text: str) -> list[str]:
    """The six edge ops of an official cell string; ValueError if it is not one."""
    require(isinstance(text, str), "a cell is a string like |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    nodes = text.split("+")
    require(len(nodes) == 3, f"a cell string has 3 nodes joined by '+', got {text!r}")
    ops = []
    for target, node in enumerate(nodes, start=1):
        require(node.startswith("|") and node.endswith("|"), f"node {target} of {text!r} is not |...|")
        entries = node[1:-1].split("|")
        require(len(entries) == target, f"node {target} of {text!r} needs {target} inputs")
        for source, entry in enumerate(entries):
            op, _, index = entry.partition("~")
            require(op in OPS and index == str(source), f"bad edge {entry!r} in {text!r}; ops are {list(OPS)}")
            ops.append(op)
    return ops


@dataclass
class NB201Settings:
    """The skeleton's size: stem channels (doubled per stage) and cells per stage (5 in the benchmark)."""

    stem_channels: int = 16  # channels of the stem and the first stage's cells, doubled at each of the two reductions
    cells_per_stage: int = 5  # cells in each of the three stages

    def __post_init__(self) -> None:
        require(self.stem_channels >= 1, "stem_channels must be at least 1")
        require(self.cells_per_stage >= 1, "cells_per_stage must be at least 1")


class _ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class _Zero(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


def _edge_op(op: str, channels: int) -> nn.Module:
    if op == "none":
        return _Zero()
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return AvgPool3x3()
    return _ReLUConvBN(channels, channels, 1 if op == "nor_conv_1x1" else 3, 1)


class Cell(nn.Module):
    """A NAS-Bench-201 cell: node j sums the ops on its incoming edges; node 3 is the output."""

    def __init__(self, ops: list[str], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(_edge_op(op, channels) for op in ops)

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            nodes.append(sum(self.edges[k](nodes[src]) for k, (src, dst) in enumerate(EDGES) if dst == target))
        return nodes[3]


class ResidualReduction(nn.Module):
    """The benchmark's reduction block: two 3x3 convs (the first strided) plus a pooled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_ReLUConvBN(c_in, c_out, 3, 2), _ReLUConvBN(c_out, c_out, 3, 1))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.shortcut(x)


def skeleton(settings: NB201Settings, input_shape: tuple[int, ...], num_classes: int,
             cell: Callable[[int], nn.Module]) -> list[nn.Module]:
    """The benchmark's layers around its cells: stem, three stages joined by reductions, pooled classifier."""
    c = settings.stem_channels
    layers: list[nn.Module] = [nn.Conv2d(input_shape[0], c, 3, padding=1, bias=False), nn.BatchNorm2d(c)]
    for stage in range(3):
        if stage:
            layers.append(ResidualReduction(c, 2 * c))
            c *= 2
        layers += [cell(c) for _ in range(settings.cells_per_stage)]
    return layers + [nn.BatchNorm2d(c), nn.ReLU(), GlobalAvgPool(), nn.Flatten(), nn.Linear(c, num_classes)]


class MixedCell(nn.Module):
    """Every op on every edge of a cell: a path picks one op per edge, or op weights (edges x ops) mix them all."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(nn.ModuleDict({op: _edge_op(op, channels) for op in OPS}) for _ in EDGES)

    def forward(self, x: Tensor, ops: Optional[list[str]], weights: Optional[Tensor] = None) -> Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            terms = []
            for k, (src, dst) in enumerate(EDGES):
                if dst != target:
                    continue
                if weights is not None:
                    terms += [w * self.edges[k][op](nodes[src]) for w, op in zip(weights[k], OPS) if op != "none"]
                elif ops[k] != "none":
                    terms.append(self.edges[k][ops[k]](nodes[src]))
            nodes.append(sum(terms) if terms else torch.zeros_like(x))
        return nodes[3]


class NB201Supernet(Supernet):
    """The NB201 skeleton with mixed cells: all cells share one path (or one set of op weights, for DARTS)."""

    def __init__(self, space: NB201Space, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(space)
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.layers = nn.ModuleList(skeleton(space.s, input_shape, num_classes, MixedCell))  # as the stand-alone's

    def forward(self, x: Tensor) -> Tensor:
        ops = parse_cell(self.path["cell"]) if self.mixture is None else None
        for layer in self.layers:
            x = layer(x, ops, self.mixture) if isinstance(layer, MixedCell) else layer(x)
        return x

    def relaxation(self) -> tuple[int, list[str]]:
        return len(EDGES), list(OPS)

    def derive(self, weights: Tensor) -> Arch:
        return {"cell": cell_string([OPS[i] for i in weights.argmax(dim=1).tolist()])}

    @torch.no_grad()
    def extract(self, arch: Arch) -> nn.Module:
        ops = parse_cell(arch["cell"])
        net = self.space.build(arch, self.input_shape, self.num_classes)
        shared = self.layers.state_dict()
        edge = re.compile(r"^(\d+)\.edges\.(\d+)\.(.*)$")

        def source(key: str) -> str:
            match = edge.match(key)
            return f"{match[1]}.edges.{match[2]}.{ops[int(match[2])]}.{match[3]}" if match else key

        net.load_state_dict({key: shared[source(key)] for key in net.state_dict()})
        return net


@register("space", "nb201")
class NB201Space(SearchSpace):
    """All 15,625 cells of NAS-Bench-201; architectures are {"cell": official string}."""

    Settings = NB201Settings

    def __init__(self, settings: NB201Settings) -> None:
        self.s = settings

    def sample(self, rng: random.Random) -> Arch:
        return {"cell": cell_string([rng.choice(OPS) for _ in EDGES])}

    def neighbours(self, arch: Arch) -> list[Arch]:
        ops = parse_cell(arch["cell"])
        return [
            {"cell": cell_string(ops[:k] + [op] + ops[k + 1 :])}
            for k in range(len(EDGES))
            for op in OPS
            if op != ops[k]
        ]

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        ops = parse_cell(arch["cell"])
        edge = rng.randrange(len(EDGES))
        ops[edge] = rng.choice([op for op in OPS if op != ops[edge]])
        return {"cell": cell_string(ops)}

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Each edge's operation from either parent (uniform crossover)."""
        return {"cell": cell_string([rng.choice(pair) for pair in zip(parse_cell(a["cell"]), parse_cell(b["cell"]))])}

    def encode(self, arch: Arch) -> list[float]:
        return [float(op == choice) for op in parse_cell(arch["cell"]) for choice in OPS]

    def key(self, arch: Arch) -> str:
        return arch["cell"]

    def from_key(self, text: str) -> Arch:
        return {"cell": cell_string(parse_cell(text))}

    def decisions(self) -> list[int]:
        return [len(OPS)] * len(EDGES)

    def from_decisions(self, choices: list[int]) -> Arch:
        return {"cell": cell_string([OPS[c] for c in choices])}

    def validate(self, arch: Arch) -> Arch:
        require(isinstance(arch, dict) and set(arch) == {"cell"}, 'an nb201 architecture is {"cell": "|op~0|+..."}')
        parse_cell(arch["cell"])
        return arch

    def build(self, arch: Arch, input_shape: tuple[int, ...], num_classes: int,
              vocab_size: Optional[int] = None) -> nn.Module:
        ops = parse_cell(arch["cell"])
        return nn.Sequential(*skeleton(self.s, input_shape, num_classes, lambda c: Cell(ops, c)))

    def supernet(self, input_shape: tuple[int, ...], num_classes: int, vocab_size: Optional[int] = None) -> Supernet:
        return NB201Supernet(self, input_shape, num_classes)

    def draw(self, arch: Arch, ax: Any) -> None:
        """The cell as a DAG: nodes 0-3 left to right, one labelled edge per op ('none' edges dotted, unlabelled)."""
        from matplotlib.patches import Circle

        ops = parse_cell(arch["cell"])
        for node in range(4):
            ax.add_patch(Circle((2 * node, 0), 0.3, fc="#d9d9d9", ec="#333333", zorder=3))
            ax.text(2 * node, 0, str(node), ha="center", va="center", fontsize=9, zorder=4)
        for (source, target), op in zip(EDGES, ops):
            bend = (0.0, 0.0, 0.35, 0.6)[target - source]
            bend = -bend if source == 1 else bend  # 1->3 arcs below, 0->2 and 0->3 above
            style = {"arrowstyle": "->", "color": DRAW_COLOURS[op], "linestyle": ":" if op == "none" else "-",
                     "lw": 1.8, "shrinkA": 11, "shrinkB": 11, "connectionstyle": f"arc3,rad={-bend}"}
            ax.annotate("", xy=(2 * target, 0), xytext=(2 * source, 0), arrowprops=style)
            if op != "none":
                height = bend * (target - source)
                ax.text(source + target, height + (0.12 if height >= 0 else -0.12), DRAW_LABELS[op], ha="center",
                        va="bottom" if height >= 0 else "top", fontsize=7, color=DRAW_COLOURS[op])
        ax.set_xlim(-0.5, 6.5)
        ax.set_ylim(-1.3, 2.2)
        ax.set_aspect("equal")
        ax.axis("off")
