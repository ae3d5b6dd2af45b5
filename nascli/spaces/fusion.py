"""Multimodal fusion: one searched encoder per input and a searched fusion of their layers (after MFAS).

An architecture is `{"encoders": {input: encoder architecture}, "fusion": [step, ...]}`: a chain
architecture for an image-like input (images, spectrograms, feature vectors), a text architecture for token
ids. Each fusion step takes one layer of every encoder (`taps`, counted from the encoder's end: 0 is its last
block, and the encoder's depth is its stem or embedding), combines them with its `op` and the previous step's
output into `width` features; the last step feeds the classifier. A text layer is pooled over its tokens as
its architecture's `pool` says (then its `dropout`); attention attends to its tokens, never to padding.
The `ensemble` op, a fusion's only step, makes each tapped layer an expert with its own classifier and loss
(a uni-modal ensemble, Du et al. 2023); the network's output is the sum of their log-probabilities.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from typing import Any, Optional

from torch import nn

from nascli.errors import UserError, require
from nascli.registry import register
from nascli.spaces.base import Arch, SearchSpace, Supernet, arch_hash
from nascli.spaces.chain import DRAW_COLOURS as CHAIN_COLOURS, ChainSettings, ChainSpace
from nascli.spaces.fusion_layers import ENSEMBLE, FUSION_OPS, FusionNet
from nascli.spaces.fusion_supernet import FusionSupernet
from nascli.spaces.text import DRAW_COLOURS as TEXT_COLOURS, TextSpace, TextSpaceSettings

INPUT_KINDS = ("image", "tokens")
# smaller than a lone network's: there is one per input
ENCODER_DEFAULTS = {"image": {"min_blocks": 1, "max_blocks": 4},
                    "tokens": {"min_blocks": 1, "max_blocks": 2, "widths": [64, 128], "embed_dims": [64, 128]}}
FUSION_COLOURS = {"concat": "#bcbddc", "sum": "#9e9ac8", "product": "#fc9272", "gated": "#c7e9c0",
                  "attention": "#fdd49e", "ensemble": "#fdae6b"}


@dataclass
class FusionSettings:
    """The inputs, their encoders' spaces, and the fusion steps the space holds."""

    inputs: Optional[dict[str, str]] = None  # input name -> kind ("image" or "tokens"); null: the dataset's inputs
    # typed Any, as a typed dict would refuse new keys in Hydra
    encoder: Any = None  # chain settings of every image-like input's encoder, e.g. {max_blocks: 3}
    text_encoder: Any = None  # text-space settings of every token input's encoder, e.g. {ops: [conv3, gru]}
    encoders: Any = None  # settings per input, e.g. {audio: {widths: [16, 32]}}
    min_steps: int = 1  # fewest fusion steps (>= 1)
    max_steps: int = 3  # most fusion steps (a fusion with the ensemble op has one)
    # how a step combines its tapped layers: concat, sum, product, gated, attention, ensemble (a fusion's only step)
    ops: list[str] = field(default_factory=lambda: list(FUSION_OPS))
    # output features a fusion step may have (ensemble: each expert's hidden width)
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    references: bool = True  # searches try late fusion of plain encoders first (when the space holds it)

    def __post_init__(self) -> None:
        self.encoder, self.text_encoder, self.encoders = self.encoder or {}, self.text_encoder or {}, self.encoders or {}
        require(all(isinstance(x, dict) for x in (self.encoder, self.text_encoder, self.encoders)),
                "encoder, text_encoder and encoders are mappings of settings")
        require(1 <= self.min_steps <= self.max_steps, "need 1 <= min_steps <= max_steps")
        require(len(self.ops) > 0 and set(self.ops) <= set(FUSION_OPS), f"ops must be a non-empty subset of {list(FUSION_OPS)}")
        require(len(self.widths) > 0 and min(self.widths) >= 1, "widths must be positive integers")
        if self.inputs is not None:
            require(len(self.inputs) >= 1, "inputs must name one or more inputs")
            for name, kind in self.inputs.items():
                require(name.isidentifier(), f"input name {name!r} must be an identifier")
                require(kind in INPUT_KINDS, f"input {name} is {kind!r}; the fusion space encodes image-like inputs "
                                             "(images, spectrograms, feature vectors) and token ids")
        unknown = set(self.encoders) - set(self.inputs or self.encoders)
        require(not unknown, f"encoders names {sorted(unknown)}, which are not inputs")
        for name in self.inputs or {}:
            self.encoder_settings(name)  # raises ValueError for a bad setting

    def encoder_settings(self, name: str) -> ChainSettings | TextSpaceSettings:
        """The settings of input `name`'s encoder: a chain space's for an image-like input, a text space's for tokens."""
        kind = self.inputs[name]
        shared, settings = (self.text_encoder, TextSpaceSettings) if kind == "tokens" else (self.encoder, ChainSettings)
        try:
            return settings(**{**ENCODER_DEFAULTS[kind], **shared, **self.encoders.get(name, {})})
        except TypeError as exc:
            raise ValueError(f"encoder settings of {name} ({kind}): {exc}") from None


@register("space", "fusion")
class FusionSpace(SearchSpace):
    """A chain encoder per input and 1..max_steps fusion steps, each tapping a layer of every encoder."""

    Settings = FusionSettings

    def __init__(self, settings: FusionSettings) -> None:
        if settings.inputs is None:
            raise UserError("space=fusion needs a dataset with several inputs per sample (e.g. dataset=av_digits), "
                            "or space.inputs={name: image, ...}")
        self.s = settings
        self.inputs = list(settings.inputs)
        self._encoders = {name: (TextSpace if kind == "tokens" else ChainSpace)(settings.encoder_settings(name))
                          for name, kind in settings.inputs.items()}

    @property
    def modality(self) -> dict[str, str]:  # type: ignore[override]
        return dict(self.s.inputs)

    def encoder_space(self, name: str) -> ChainSpace | TextSpace:
        """The space of input `name`'s encoder: a chain space, or a text space for token ids."""
        return self._encoders[name]

    def _step(self, rng: random.Random, encoders: dict[str, Arch], ops: list[str]) -> dict[str, Any]:
        return {"taps": {name: rng.randint(0, len(enc["blocks"])) for name, enc in encoders.items()},
                "op": rng.choice(ops), "width": rng.choice(self.s.widths)}

    def _chained_ops(self) -> list[str]:
        """The ops a fusion of several steps may use: all but the ensemble."""
        return [op for op in self.s.ops if op != ENSEMBLE]

    def sample(self, rng: random.Random) -> Arch:
        encoders = {name: self._encoders[name].sample(rng) for name in self.inputs}
        count = rng.randint(self.s.min_steps, self.s.max_steps if self._chained_ops() else 1)
        ops = self.s.ops if count == 1 else self._chained_ops()
        return {"encoders": encoders, "fusion": [self._step(rng, encoders, ops) for _ in range(count)]}

    def _fits(self, steps: list[dict[str, Any]]) -> bool:
        """Whether fusion steps keep the ensemble to a fusion's only step."""
        return len(steps) == 1 or all(step["op"] != ENSEMBLE for step in steps)

    def references(self) -> list[Arch]:
        """The hand-made designs multimodal work starts from, tried first: late fusion of plain encoders and,
        with several inputs, the uni-modal ensemble of the same encoders (see `_handmade`)."""
        if not self.s.references:
            return []
        designs = [self._handmade("concat")] + ([self._handmade(ENSEMBLE)] if len(self.inputs) > 1 else [])
        return [design for design in designs if design is not None]

    def _handmade(self, op: str) -> Optional[Arch]:
        """One step of `op` on the last layers, at the widest width, of plain encoders — each image-like input a
        chain of up to three 3x3 convolutions that halve the map and widen, each text Kim's convolution layer
        with max pooling — or None where the settings leave it out (no 3x3 convolution, not this op, ...)."""
        encoders = {}
        for name in self.inputs:
            s = self._encoders[name].s
            if self.s.inputs[name] == "tokens":
                encoders[name] = {"embed": max(s.embed_dims), "blocks": [{"op": "kim", "width": max(s.widths)}],
                                  "pool": "max", "dropout": max(s.dropouts)}
            else:
                depth, widths = min(s.max_blocks, max(s.min_blocks, 3)), sorted(s.widths)
                encoders[name] = {"blocks": [{"op": "conv3x3", "width": widths[max(0, len(widths) - depth + i)],
                                              "down": i < s.max_downsamples} for i in range(depth)]}
        design = {"encoders": encoders,
                  "fusion": [{"taps": {name: 0 for name in self.inputs}, "op": op, "width": max(self.s.widths)}]}
        try:
            return self.validate(design)
        except ValueError:
            return None

    def baselines(self, arch: Arch) -> dict[str, Arch]:
        """Each input's encoder alone and plain late fusion (one concatenation of the last layers), with
        `arch`'s encoders and its first step's width, and with several inputs the hand-made late fusion of plain
        encoders: what the searched fusion, and the search as a whole, are compared with."""
        width = arch["fusion"][0]["width"]

        def last_layers(names: list[str]) -> Arch:
            return {"encoders": {name: arch["encoders"][name] for name in names},
                    "fusion": [{"taps": {name: 0 for name in names}, "op": "concat", "width": width}]}

        found = {f"{name}_only": last_layers([name]) for name in arch["encoders"]}
        if len(arch["encoders"]) == 1:
            return found
        handmade = self._handmade("concat")
        return {**found, "late_fusion": last_layers(list(arch["encoders"])),
                **({"handmade_late_fusion": handmade} if handmade is not None else {})}

    @staticmethod
    def _repaired(arch: Arch) -> Arch:
        """`arch` with every tap moved into its encoder's current depth (after an encoder lost blocks)."""
        for step in arch["fusion"]:
            step["taps"] = {name: min(depth, len(arch["encoders"][name]["blocks"]))
                            for name, depth in step["taps"].items()}
        return arch

    def _edits(self, arch: Arch) -> dict[str, list[Arch]]:
        """Every one-edit variant of `arch`, by kind of edit."""
        steps = arch["fusion"]

        def with_steps(new: list[dict[str, Any]]) -> Arch:
            return {"encoders": copy.deepcopy(arch["encoders"]), "fusion": copy.deepcopy(new)}

        def replaced(i: int, **change: Any) -> Arch:
            return with_steps([{**s, **change} if j == i else s for j, s in enumerate(steps)])

        edits: dict[str, list[Arch]] = {
            "encoder": [self._repaired({"encoders": {**copy.deepcopy(arch["encoders"]), name: variant},
                                        "fusion": copy.deepcopy(steps)})
                        for name, encoder in arch["encoders"].items()
                        for variant in self._encoders[name].neighbours(encoder)],
            "op": [replaced(i, op=op) for i, s in enumerate(steps) for op in self.s.ops if op != s["op"]],
            "width": [replaced(i, width=w) for i, s in enumerate(steps) for w in self.s.widths if w != s["width"]],
            "tap": [replaced(i, taps={**s["taps"], name: depth})
                    for i, s in enumerate(steps) for name in s["taps"]
                    for depth in range(len(arch["encoders"][name]["blocks"]) + 1) if depth != s["taps"][name]],
            "insert": [],
            "remove": [],
        }
        if len(steps) < self.s.max_steps:
            taps = {name: 0 for name in arch["encoders"]}
            edits["insert"] = [with_steps(steps[:i] + [{"taps": taps, "op": op, "width": w}] + steps[i:])
                               for i in range(len(steps) + 1) for op in self.s.ops for w in self.s.widths]
        if len(steps) > self.s.min_steps:
            edits["remove"] = [with_steps(steps[:i] + steps[i + 1:]) for i in range(len(steps))]
        return {kind: [v for v in variants if self._fits(v["fusion"])] for kind, variants in edits.items()}

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        kind = rng.choice(["encoder", "fusion"])
        if kind == "encoder":
            name = rng.choice(sorted(arch["encoders"]))
            variant = self._encoders[name].mutate(arch["encoders"][name], rng)
            return self._repaired({"encoders": {**copy.deepcopy(arch["encoders"]), name: variant},
                                   "fusion": copy.deepcopy(arch["fusion"])})
        edits = {k: v for k, v in self._edits(arch).items() if v and k != "encoder"}
        return rng.choice(edits[rng.choice(sorted(edits))])

    def neighbours(self, arch: Arch) -> list[Arch]:
        unique = {arch_hash(v): v for variants in self._edits(arch).values() for v in variants}
        unique.pop(arch_hash(arch), None)  # a repaired encoder edit may give the architecture back
        return list(unique.values())

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Each input's encoder from either parent, the fusion steps cut and joined at one point each."""
        encoders = {name: copy.deepcopy(rng.choice([a, b])["encoders"][name]) for name in a["encoders"]}
        steps = a["fusion"][: rng.randint(0, len(a["fusion"]))] + b["fusion"][rng.randint(0, len(b["fusion"])):]
        if not (self.s.min_steps <= len(steps) <= self.s.max_steps and self._fits(steps)):
            steps = a["fusion"]
        return self._repaired({"encoders": encoders, "fusion": copy.deepcopy(steps)})

    def encode(self, arch: Arch) -> list[float]:
        vector: list[float] = []
        for name in self.inputs:
            vector += self._encoders[name].encode(arch["encoders"][name])
        widths = sorted(self.s.widths)
        for i in range(self.s.max_steps):
            if i < len(arch["fusion"]):
                step = arch["fusion"][i]
                vector += [1.0, *(float(step["op"] == op) for op in self.s.ops),
                           widths.index(step["width"]) / max(1, len(widths) - 1),
                           *(step["taps"][name] / self._encoders[name].s.max_blocks for name in self.inputs)]
            else:
                vector += [0.0] * (len(self.s.ops) + 2 + len(self.inputs))
        return vector

    def _step_decisions(self) -> list[int]:
        return [len(self.s.ops), len(self.s.widths), *(self._encoders[n].s.max_blocks + 1 for n in self.inputs)]

    def decisions(self) -> list[int]:
        encoders = [d for name in self.inputs for d in self._encoders[name].decisions()]
        return encoders + [self.s.max_steps - self.s.min_steps + 1] + self._step_decisions() * self.s.max_steps

    def from_decisions(self, choices: list[int]) -> Arch:
        encoders, at = {}, 0
        for name in self.inputs:
            count = len(self._encoders[name].decisions())
            encoders[name] = self._encoders[name].from_decisions(choices[at : at + count])
            at += count
        per_step = len(self._step_decisions())
        steps = []
        for i in range(self.s.min_steps + choices[at]):
            op, width, *taps = choices[at + 1 + i * per_step : at + 1 + (i + 1) * per_step]
            steps.append({"taps": dict(zip(self.inputs, taps)), "op": self.s.ops[op], "width": self.s.widths[width]})
        if not self._fits(steps):  # an ensemble among several steps: the first of the other ops in its place
            steps = [{**step, "op": self._chained_ops()[0]} if step["op"] == ENSEMBLE else step for step in steps]
        return self._repaired({"encoders": encoders, "fusion": steps})

    def validate(self, arch: Arch) -> Arch:
        require(isinstance(arch, dict) and set(arch) == {"encoders", "fusion"},
                "a fusion architecture is {'encoders': {...}, 'fusion': [...]}")
        encoders, steps = arch["encoders"], arch["fusion"]
        require(isinstance(encoders, dict) and encoders and set(encoders) <= set(self.inputs),
                f"'encoders' maps one or more of the inputs {self.inputs} to their encoders' architectures")
        for name, encoder in encoders.items():
            try:
                self._encoders[name].validate(encoder)
            except ValueError as exc:
                raise ValueError(f"encoder {name}: {exc}") from None
        require(isinstance(steps, list) and self.s.min_steps <= len(steps) <= self.s.max_steps,
                f"'fusion' is a list of {self.s.min_steps} to {self.s.max_steps} steps")
        for i, step in enumerate(steps):
            require(isinstance(step, dict) and set(step) == {"taps", "op", "width"}, f"step {i} needs taps, op, width")
            require(step["op"] in self.s.ops, f"step {i}: op {step['op']!r} is not one of {self.s.ops}")
            require(step["width"] in self.s.widths, f"step {i}: width {step['width']!r} is not one of {self.s.widths}")
            taps = step["taps"]
            require(isinstance(taps, dict) and set(taps) == set(encoders), f"step {i}: taps name each encoder once")
            for name, depth in taps.items():
                depth_max = len(encoders[name]["blocks"])
                require(isinstance(depth, int) and not isinstance(depth, bool) and 0 <= depth <= depth_max,
                        f"step {i}: tap {name}={depth!r} is not a layer of its encoder (0..{depth_max})")
        require(self._fits(steps), f"the {ENSEMBLE} op is a fusion's only step")
        return arch

    def supernet(self, input_shape: Any, num_classes: int, vocab_size: Any = None) -> Supernet:
        tokens = [name for name, kind in self.s.inputs.items() if kind == "tokens"]
        if tokens:
            raise UserError(f"weight sharing over space=fusion needs image-like inputs; {', '.join(tokens)} "
                            "holds token ids, and the text space has no supernet")
        return FusionSupernet(self, input_shape, num_classes)

    def build(self, arch: Arch, input_shape: Any, num_classes: int, vocab_size: Any = None) -> nn.Module:
        if not isinstance(input_shape, dict) or list(input_shape) != self.inputs:
            raise UserError(f"space=fusion takes the inputs {self.inputs}; the data gives {input_shape}")
        missing = [name for name, kind in self.s.inputs.items()
                   if kind == "tokens" and not (isinstance(vocab_size, dict) and name in vocab_size)]
        if missing:
            raise UserError(f"the token input(s) {', '.join(missing)} need the dataset's vocabulary size")
        return FusionNet(self, arch, input_shape, num_classes, vocab_size)

    def draw(self, arch: Arch, ax: Any) -> None:
        """Each encoder as a row of layers; the fusion steps on the right, each fed by the layers it taps."""
        from matplotlib.patches import FancyBboxPatch

        def box(x: float, y: float, label: str, colour: str) -> None:
            ax.add_patch(FancyBboxPatch((x, y), 1.1, 0.8, boxstyle="round,pad=0.04", fc=colour, ec="#333333"))
            ax.text(x + 0.55, y + 0.4, label, ha="center", va="center", fontsize=7)

        def arrow(start: tuple[float, float], end: tuple[float, float], bend: float = 0.0,
                  colour: str = "#333333") -> None:
            ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": colour, "lw": 0.8,
                                                              "connectionstyle": f"arc3,rad={bend}"})

        rows = len(arch["encoders"])
        fusion_x = 1.5 * (1 + max(len(e["blocks"]) for e in arch["encoders"].values())) + 0.6
        middle = 0.7 * (rows - 1)
        outlets: dict[str, list[tuple[float, float]]] = {}  # where each layer's taps leave it
        bends: dict[str, float] = {}
        for row, (name, encoder) in enumerate(arch["encoders"].items()):
            y = 1.4 * (rows - 1 - row)  # the first input on top
            above = y >= middle
            edge, bends[name] = (y + 0.84, -0.25) if above else (y - 0.04, 0.25)
            ax.text(-0.2, y + 0.4, name, ha="right", va="center", fontsize=8, weight="bold")
            tokens = self.s.inputs[name] == "tokens"
            first = (f"embed {encoder['embed']}\n{encoder['pool']} pool\ndrop {encoder['dropout']:g}" if tokens
                     else f"stem\n{self._encoders[name].s.stem_width}")
            box(0, y, first, "#d9d9d9")
            outlets[name] = [(0.55, edge)]
            colours = TEXT_COLOURS if tokens else CHAIN_COLOURS
            for i, block in enumerate(encoder["blocks"]):
                x = 1.5 * (i + 1)
                arrow((x - 0.36, y + 0.4), (x - 0.04, y + 0.4))
                box(x, y, f"{block['op']}\n{block['width']}" + (" /2" if block.get("down") else ""),
                    colours[block["op"]])
                outlets[name].append((x + 0.55, edge))
        for i, step in enumerate(arch["fusion"]):
            x = fusion_x + 1.5 * i
            box(x, middle, f"{step['op']}\n{step['width']}", FUSION_COLOURS[step["op"]])
            for name, depth in step["taps"].items():
                arrow(outlets[name][-1 - depth], (x + 0.55, middle + (0.84 if bends[name] < 0 else -0.04)),
                      bends[name], "#6a51a3")
            if i:
                arrow((x - 0.36, middle + 0.4), (x - 0.04, middle + 0.4))
        head_x = fusion_x + 1.5 * len(arch["fusion"])
        box(head_x, middle, "sum of\nlog-probs" if arch["fusion"][-1]["op"] == ENSEMBLE else "linear", "#d9d9d9")
        arrow((head_x - 0.36, middle + 0.4), (head_x - 0.04, middle + 0.4))
        ax.set_xlim(-1.2, head_x + 1.4)
        ax.set_ylim(-1.0, 1.4 * (rows - 1) + 1.8)
        ax.set_aspect("equal")
        ax.axis("off")
