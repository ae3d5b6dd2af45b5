"""The interface every search space implements; architectures are plain JSON-able dicts."""

from __future__ import annotations

import copy
import hashlib
import json
import random
from abc import ABC, ABCMeta, abstractmethod
from typing import Any, Optional

from torch import Tensor, nn

from nascli.errors import UserError

Arch = dict[str, Any]


def arch_hash(arch: Arch) -> str:
    """A stable short hash of an architecture's canonical JSON."""
    canonical = json.dumps(arch, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class Supernet(nn.Module, metaclass=ABCMeta):
    """Shared weights holding every candidate operation; `path` (an architecture) selects a sub-network."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.path: Optional[Arch] = None
        self.mixture: Optional[Tensor] = None  # (positions, choices) operation weights of a continuous relaxation

    def use(self, arch: Arch) -> Supernet:
        """Route the next forward passes through `arch`'s operations."""
        self.path, self.mixture = arch, None
        return self

    def mix(self, weights: Tensor) -> Supernet:
        """Let the next forward passes sum every operation of each position, weighted (DARTS's relaxation)."""
        self.path, self.mixture = None, weights
        return self

    @abstractmethod
    def relaxation(self) -> tuple[int, list[str]]:
        """The positions of the relaxation and the operations to choose from at each (weights: positions x ops)."""

    @abstractmethod
    def derive(self, weights: Tensor) -> Arch:
        """The architecture that keeps the strongest operation at each position of the relaxation."""

    @abstractmethod
    def extract(self, arch: Arch) -> nn.Module:
        """The stand-alone network of `arch` (as `space.build` makes it) holding the path's weights."""


class SearchSpace(ABC):
    """A set of architectures with the operations strategies need and a builder for networks."""

    name: str = ""
    modality: str = "image"  # the inputs its networks take: "image" (C, H, W) or "tokens" (L,) ids

    @classmethod
    def check(cls, settings: Any) -> None:
        """Raise UserError now if the settings name something unusable (cheap; called before any work starts)."""

    @abstractmethod
    def sample(self, rng: random.Random) -> Arch:
        """A uniformly drawn architecture."""

    def references(self) -> list[Arch]:
        """Well-known architectures of the space that a search tries first, before random ones (none by default)."""
        return []

    @abstractmethod
    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        """A random one-edit variant of `arch` that differs from it."""

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """A child of two parents: each setting from either parent, a list of blocks cut and joined at one point each.

        A mix that is not in the space is drawn again; after a few tries the child is a copy of a parent.
        """
        for _ in range(10):
            child = {}
            for key, x in a.items():
                y = b.get(key, x)
                if isinstance(x, list) and isinstance(y, list):
                    child[key] = x[: rng.randint(0, len(x))] + y[rng.randint(0, len(y)):]
                else:
                    child[key] = rng.choice([x, y])
            try:
                return copy.deepcopy(self.validate(child))
            except ValueError:
                continue
        return copy.deepcopy(rng.choice([a, b]))

    @abstractmethod
    def neighbours(self, arch: Arch) -> list[Arch]:
        """Every one-edit variant of `arch`."""

    @abstractmethod
    def encode(self, arch: Arch) -> list[float]:
        """A fixed-length numeric vector for surrogate models."""

    @abstractmethod
    def decisions(self) -> list[int]:
        """The number of choices of each decision that, taken in order, pick an architecture."""

    @abstractmethod
    def from_decisions(self, choices: list[int]) -> Arch:
        """The architecture picked by one choice per decision (indices into `decisions()`)."""

    @abstractmethod
    def validate(self, arch: Arch) -> Arch:
        """Return `arch` if it belongs to this space, else raise ValueError saying why."""

    @abstractmethod
    def build(self, arch: Arch, input_shape: tuple[int, ...], num_classes: int,
              vocab_size: Optional[int] = None) -> nn.Module:
        """A network for inputs of `input_shape` ((C, H, W), or (L,) token ids of a `vocab_size` vocabulary)."""

    def supernet(self, input_shape: tuple[int, ...], num_classes: int, vocab_size: Optional[int] = None) -> Supernet:
        """Every architecture of the space as a path through one network's shared weights."""
        raise UserError(f"space={self.name or type(self).__name__} has no supernet; weight sharing needs space=chain "
                        "or space=nb201")

    def baselines(self, arch: Arch) -> dict[str, Arch]:
        """Architectures, by name, that show what `arch` gains when retrained beside it (none by default)."""
        return {}

    def hash(self, arch: Arch) -> str:
        """A stable identifier: equal architectures hash equal."""
        return arch_hash(arch)

    def draw(self, arch: Arch, ax: Any) -> None:
        """Draw `arch` on a matplotlib Axes (spaces with a structure override this; here: its JSON)."""
        ax.text(0.5, 0.5, json.dumps(arch, indent=1), ha="center", va="center", family="monospace", fontsize=7,
                wrap=True)
        ax.axis("off")

    def key(self, arch: Arch) -> str:
        """The architecture as tables of results name it (canonical JSON unless the space has a format)."""
        return json.dumps(arch, sort_keys=True, separators=(",", ":"))

    def from_key(self, text: str) -> Arch:
        """The architecture a `key` string names (the inverse of `key`); ValueError if it names none."""
        return json.loads(text)


def draw_boxes(ax: Any, boxes: list[tuple[str, str]]) -> None:
    """Draw labelled, coloured boxes left to right, joined by arrows (a chain of layers)."""
    from matplotlib.patches import FancyBboxPatch

    step = 1.5
    for i, (label, colour) in enumerate(boxes):
        ax.add_patch(FancyBboxPatch((i * step, 0), 1.1, 1.0, boxstyle="round,pad=0.04", fc=colour, ec="#333333"))
        ax.text(i * step + 0.55, 0.5, label, ha="center", va="center", fontsize=8)
        if i:
            ax.annotate("", xy=(i * step - 0.04, 0.5), xytext=(i * step - step + 1.14, 0.5),
                        arrowprops={"arrowstyle": "->", "color": "#333333"})
    ax.set_xlim(-0.2, len(boxes) * step - 0.2)
    ax.set_ylim(-0.2, 1.2)
    ax.set_aspect("equal")
    ax.axis("off")
