"""`count_flops` gives the totals of torch's FlopCounterMode, on networks of every space, without its module bookkeeping."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nascli.config import load_config
from nascli.evaluators.profile import count_flops, example_inputs
from nascli.factory import build_space
from nascli.spaces.fusion import FusionSettings, FusionSpace


def torch_count(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(*inputs)
    return counter.get_total_flops()


def test_a_convolution_and_a_linear_layer_count_two_flops_per_multiply_add() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    assert count_flops(model, (1, 8, 8), "cpu") == 2 * (4 * 8 * 8 * 9) + 2 * (4 * 8 * 8 * 10)


@pytest.mark.parametrize("space_name, shape, vocab", [
    ("chain", (1, 12, 12), None),
    ("nb201", (3, 8, 8), None),
    ("text", (12,), 50),  # convolutions, recurrent layers and attention among the samples
])
def test_every_space_counts_as_torch_counts(space_name: str, shape: tuple[int, ...], vocab: int | None) -> None:
    space = build_space(load_config([f"space={space_name}"]))
    rng = random.Random(0)
    for _ in range(8):
        torch.manual_seed(0)
        model = space.build(space.sample(rng), shape, 3, vocab_size=vocab)
        expected = torch_count(model, example_inputs(shape, 1, "cpu", vocab))
        assert count_flops(model, shape, "cpu", vocab) == expected > 0


def test_a_fusion_network_counts_as_torch_counts() -> None:
    space = FusionSpace(FusionSettings(inputs={"image": "image", "audio": "image", "caption": "tokens"}))
    shapes, vocab = {"image": (1, 8, 8), "audio": (1, 6, 10), "caption": (7,)}, {"caption": 30}
    rng = random.Random(1)
    for _ in range(4):
        model = space.build(space.sample(rng), shapes, 3, vocab)
        assert count_flops(model, shapes, "cpu", vocab) == torch_count(model, example_inputs(shapes, 1, "cpu", vocab)) > 0
