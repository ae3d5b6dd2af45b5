"""A search space for token sequences: an embedding, a stack of sequence blocks, a pooling over time, a classifier.

Blocks are 1-D convolutions (kernel 3/5/7, a dilated 3), a depthwise-separable convolution, a Kim (2014)
block (parallel 3/4/5 convolutions, concatenated), a bidirectional GRU or LSTM, a transformer encoder
layer, identity and max pooling. A Kim CNN (KIM_CNN) is the reference a search tries first.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nascli.errors import require
from nascli.registry import register
from nascli.spaces.base import Arch, SearchSpace, arch_hash, draw_boxes

CONV_KERNELS = {"conv3": (3, 1), "conv5": (5, 1), "conv7": (7, 1), "dilconv3": (3, 2)}
OPS = (*CONV_KERNELS, "sepconv5", "kim", "gru", "lstm", "attention", "identity", "maxpool3")
POOLS = ("max", "mean", "attention")
HEADS = 4  # attention heads; widths are multiples of it
KIM_CNN = {"embed": 300, "blocks": [{"op": "kim", "width": 300}], "pool": "max", "dropout": 0.5}
DRAW_COLOURS = {**{op: "#9ecae1" for op in CONV_KERNELS}, "sepconv5": "#a1d99b", "kim": "#6baed6", "gru": "#fdae6b",
                "lstm": "#fd8d3c", "attention": "#bcbddc", "identity": "#f0f0f0", "maxpool3": "#fdd0a2"}


@dataclass
class TextSpaceSettings:
    """Which networks the space holds."""

    min_blocks: int = 1  # fewest blocks between the embedding and the pooling (>= 1)
    max_blocks: int = 3  # most blocks
    # the ops a block may use: conv3, conv5, conv7, dilconv3, sepconv5, kim, gru, lstm, attention, identity, maxpool3
    ops: list[str] = field(default_factory=lambda: list(OPS))
    # output channels a block may have (multiples of 4)
    widths: list[int] = field(default_factory=lambda: [64, 128, 300])
    embed_dims: list[int] = field(default_factory=lambda: [64, 128, 300])  # sizes the token embedding may have
    pools: list[str] = field(default_factory=lambda: list(POOLS))  # poolings over the tokens: max, mean, attention
    # dropout rates before the classifier, each in [0, 1)
    dropouts: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5])
    references: bool = True  # searches try Kim's CNN first (when the space holds it), then random networks

    def __post_init__(self) -> None:
        require(1 <= self.min_blocks <= self.max_blocks, "need 1 <= min_blocks <= max_blocks")
        require(len(self.ops) > 0 and set(self.ops) <= set(OPS), f"ops must be a non-empty subset of {list(OPS)}")
        require(len(self.widths) > 0 and all(w >= HEADS and w % HEADS == 0 for w in self.widths),
                f"widths must be positive multiples of {HEADS}")
        require(len(self.embed_dims) > 0 and min(self.embed_dims) >= 1, "embed_dims must be positive")
        require(len(self.pools) > 0 and set(self.pools) <= set(POOLS), f"pools must be a subset of {list(POOLS)}")
        require(len(self.dropouts) > 0 and all(0 <= d < 1 for d in self.dropouts), "dropouts must be in [0, 1)")


class Block(nn.Module):
    """One block on (N, C, L) features; padded positions are zeroed after it. Same-width blocks are residual."""

    def __init__(self, op: str, c_in: int, c_out: int) -> None:
        super().__init__()
        self.op = op
        self.project = nn.Conv1d(c_in, c_out, 1) if c_in != c_out and op in ("identity", "maxpool3", "attention") else None
        if op in CONV_KERNELS:
            kernel, dilation = CONV_KERNELS[op]
            self.body = nn.Conv1d(c_in, c_out, kernel, padding="same", dilation=dilation)
        elif op == "sepconv5":
            self.body = nn.Sequential(nn.Conv1d(c_in, c_in, 5, padding="same", groups=c_in), nn.Conv1d(c_in, c_out, 1))
        elif op == "kim":
            shares = [c_out // 3 + (i < c_out % 3) for i in range(3)]
            self.body = nn.ModuleList(  # explicit padding: torch warns about "same" with the even kernel
                nn.Sequential(nn.ConstantPad1d(((k - 1) // 2, k // 2), 0.0), nn.Conv1d(c_in, n, k))
                for n, k in zip(shares, (3, 4, 5))
            )
        elif op in ("gru", "lstm"):
            rnn = nn.GRU if op == "gru" else nn.LSTM
            self.body = rnn(c_in, c_out // 2, batch_first=True, bidirectional=True)
        elif op == "attention":
            self.body = nn.TransformerEncoderLayer(c_out, HEADS, 2 * c_out, dropout=0.1, batch_first=True)
        elif op == "maxpool3":
            self.body = nn.MaxPool1d(3, 1, padding=1)
        else:
            self.body = nn.Identity()
        self.residual = c_in == c_out and op not in ("identity", "maxpool3", "attention")

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        inputs = x
        if self.project is not None:
            x = self.project(x)
        if self.op in CONV_KERNELS or self.op == "sepconv5":
            x = F.relu(self.body(x))
        elif self.op == "kim":
            x = F.relu(torch.cat([conv(x) for conv in self.body], dim=1))
        elif self.op in ("gru", "lstm"):
            lengths = mask.sum(dim=1).clamp(min=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x.transpose(1, 2), lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.body(packed)
            x = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=mask.shape[1])[0].transpose(1, 2)
        elif self.op == "attention":
            x = self.body(x.transpose(1, 2), src_key_padding_mask=~mask).transpose(1, 2)
        elif self.op == "maxpool3":  # padding must never win a max
            x = self.body(x.masked_fill(~mask[:, None, :], float("-inf")))
        else:
            x = self.body(x)
        if self.residual:
            x = x + inputs
        return x.masked_fill(~mask[:, None, :], 0.0)


class TextLayers(nn.Module):
    """The embedding and the blocks of a text architecture: each one's output (N, C, L), and which positions
    hold tokens rather than padding."""

    def __init__(self, arch: Arch, vocab_size: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, arch["embed"], padding_idx=0)
        blocks, self.widths = [], [arch["embed"]]
        for block in arch["blocks"]:
            blocks.append(Block(block["op"], self.widths[-1], block["width"]))
            self.widths.append(block["width"])
        self.blocks = nn.ModuleList(blocks)

    def layers(self, tokens: Tensor) -> tuple[list[Tensor], Tensor]:
        """The embedding's and every block's output, and the mask of real tokens (N, L)."""
        mask = tokens != 0
        mask = mask | ~mask.any(dim=1, keepdim=True)  # an empty sentence keeps its first position
        outputs = [self.embed(tokens).transpose(1, 2) * mask[:, None, :]]
        for block in self.blocks:
            outputs.append(block(outputs[-1], mask))
        return outputs, mask


def pool_over_time(x: Tensor, mask: Tensor, pool: str, score: Optional[nn.Linear] = None) -> Tensor:
    """Features (N, C, L) pooled over the positions that are not padding: max, mean, or attention by `score`."""
    if pool == "max":
        return x.masked_fill(~mask[:, None, :], float("-inf")).amax(dim=2)
    if pool == "mean":
        return x.sum(dim=2) / mask.sum(dim=1, keepdim=True)
    weights = score(x.transpose(1, 2)).squeeze(2).masked_fill(~mask, float("-inf")).softmax(dim=1)
    return (x * weights[:, None, :]).sum(dim=2)


class TextNet(TextLayers):
    """Embedding, blocks, pooling over the tokens that are not padding, dropout and a linear classifier."""

    def __init__(self, arch: Arch, vocab_size: int, num_classes: int) -> None:
        super().__init__(arch, vocab_size)
        width = self.widths[-1]
        self.pool = arch["pool"]
        self.score = nn.Linear(width, 1) if self.pool == "attention" else None
        self.head = nn.Sequential(nn.Dropout(arch["dropout"]), nn.Linear(width, num_classes))

    def forward(self, tokens: Tensor) -> Tensor:
        outputs, mask = self.layers(tokens)
        return self.head(pool_over_time(outputs[-1], mask, self.pool, self.score))


@register("space", "text")
class TextSpace(SearchSpace):
    """Networks for token sequences: embedding size, 1..max_blocks blocks (op, width), pooling and dropout."""

    Settings = TextSpaceSettings
    modality = "tokens"

    def __init__(self, settings: TextSpaceSettings) -> None:
        self.s = settings

    def sample(self, rng: random.Random) -> Arch:
        depth = rng.randint(self.s.min_blocks, self.s.max_blocks)
        return {
            "embed": rng.choice(self.s.embed_dims),
            "blocks": [{"op": rng.choice(self.s.ops), "width": rng.choice(self.s.widths)} for _ in range(depth)],
            "pool": rng.choice(self.s.pools),
            "dropout": rng.choice(self.s.dropouts),
        }

    def references(self) -> list[Arch]:
        """Kim's (2014) CNN, the classic baseline, when these settings hold it."""
        if not self.s.references:
            return []
        try:
            return [self.validate(copy.deepcopy(KIM_CNN))]
        except ValueError:
            return []

    def _edits(self, arch: Arch) -> dict[str, list[Arch]]:
        """Every one-edit variant of `arch`, by kind of edit."""
        blocks = arch["blocks"]

        def replaced(i: int, **change: object) -> Arch:
            return {**arch, "blocks": [{**b, **change} if j == i else b for j, b in enumerate(blocks)]}

        edits: dict[str, list[Arch]] = {
            "op": [replaced(i, op=op) for i, b in enumerate(blocks) for op in self.s.ops if op != b["op"]],
            "width": [replaced(i, width=w) for i, b in enumerate(blocks) for w in self.s.widths if w != b["width"]],
            "embed": [{**arch, "embed": e} for e in self.s.embed_dims if e != arch["embed"]],
            "pool": [{**arch, "pool": p} for p in self.s.pools if p != arch["pool"]],
            "dropout": [{**arch, "dropout": d} for d in self.s.dropouts if d != arch["dropout"]],
            "insert": [],
            "remove": [],
        }
        if len(blocks) < self.s.max_blocks:
            inserts = ({**arch, "blocks": blocks[:i] + [{"op": op, "width": w}] + blocks[i:]}
                       for i in range(len(blocks) + 1) for op in self.s.ops for w in self.s.widths)
            edits["insert"] = list({arch_hash(a): a for a in inserts}.values())
        if len(blocks) > self.s.min_blocks:
            edits["remove"] = [{**arch, "blocks": blocks[:i] + blocks[i + 1 :]} for i in range(len(blocks))]
        return edits

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        edits = {kind: variants for kind, variants in self._edits(arch).items() if variants}
        return rng.choice(edits[rng.choice(sorted(edits))])

    def neighbours(self, arch: Arch) -> list[Arch]:
        return [variant for variants in self._edits(arch).values() for variant in variants]

    @staticmethod
    def _position(value: Any, choices: list) -> float:
        ordered = sorted(choices)
        return ordered.index(value) / max(1, len(ordered) - 1)

    def encode(self, arch: Arch) -> list[float]:
        vector = [self._position(arch["embed"], self.s.embed_dims), self._position(arch["dropout"], self.s.dropouts),
                  *(float(arch["pool"] == p) for p in self.s.pools)]
        for i in range(self.s.max_blocks):
            if i < len(arch["blocks"]):
                block = arch["blocks"][i]
                vector += [1.0, *(float(block["op"] == op) for op in self.s.ops), self._position(block["width"], self.s.widths)]
            else:
                vector += [0.0] * (len(self.s.ops) + 2)
        return vector

    def decisions(self) -> list[int]:
        head = [self.s.max_blocks - self.s.min_blocks + 1, len(self.s.embed_dims), len(self.s.pools), len(self.s.dropouts)]
        return head + [len(self.s.ops), len(self.s.widths)] * self.s.max_blocks

    def from_decisions(self, choices: list[int]) -> Arch:
        depth = self.s.min_blocks + choices[0]
        return {
            "embed": self.s.embed_dims[choices[1]],
            "blocks": [{"op": self.s.ops[choices[4 + 2 * i]], "width": self.s.widths[choices[5 + 2 * i]]}
                       for i in range(depth)],
            "pool": self.s.pools[choices[2]],
            "dropout": self.s.dropouts[choices[3]],
        }

    def validate(self, arch: Arch) -> Arch:
        require(isinstance(arch, dict) and set(arch) == {"embed", "blocks", "pool", "dropout"},
                "a text architecture is {'embed', 'blocks', 'pool', 'dropout'}")
        require(arch["embed"] in self.s.embed_dims, f"embed {arch['embed']!r} is not one of {self.s.embed_dims}")
        require(arch["pool"] in self.s.pools, f"pool {arch['pool']!r} is not one of {self.s.pools}")
        require(arch["dropout"] in self.s.dropouts, f"dropout {arch['dropout']!r} is not one of {self.s.dropouts}")
        blocks = arch["blocks"]
        require(isinstance(blocks, list) and self.s.min_blocks <= len(blocks) <= self.s.max_blocks,
                f"a text network has {self.s.min_blocks} to {self.s.max_blocks} blocks")
        for i, b in enumerate(blocks):
            require(isinstance(b, dict) and set(b) == {"op", "width"}, f"block {i} needs op and width")
            require(b["op"] in self.s.ops, f"block {i}: op {b['op']!r} is not one of {self.s.ops}")
            require(b["width"] in self.s.widths, f"block {i}: width {b['width']!r} is not one of {self.s.widths}")
        return arch

    def build(self, arch: Arch, input_shape: tuple[int, ...], num_classes: int,
              vocab_size: Optional[int] = None) -> nn.Module:
        require(vocab_size is not None and len(input_shape) == 1, "space=text builds networks for token sequences")
        return TextNet(arch, vocab_size, num_classes)

    def draw(self, arch: Arch, ax: Any) -> None:
        """A block diagram, left to right: the embedding, each block (op, width), the pooling and the classifier."""
        boxes = [(f"embed\n{arch['embed']}", "#d9d9d9")]
        boxes += [(f"{b['op']}\n{b['width']}", DRAW_COLOURS[b["op"]]) for b in arch["blocks"]]
        boxes.append((f"{arch['pool']} pool\ndrop {arch['dropout']:g}\nlinear", "#d9d9d9"))
        draw_boxes(ax, boxes)
