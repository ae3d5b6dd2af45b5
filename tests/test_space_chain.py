"""The chain space: sampling, edits, encoding, hashing, validation and building networks."""

from __future__ import annotations

import json
import random

import pytest
import torch

from nascli.spaces.base import arch_hash
from nascli.spaces.chain import ChainSettings, ChainSpace


@pytest.fixture
def space() -> ChainSpace:
    return ChainSpace(ChainSettings())


def test_samples_are_valid_and_varied(space: ChainSpace) -> None:
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(200)]
    for arch in archs:
        assert space.validate(arch) is arch
    assert len({space.hash(a) for a in archs}) > 150
    assert {len(a["blocks"]) for a in archs} == set(range(2, 7))


def test_mutations_are_valid_one_edit_changes(space: ChainSpace) -> None:
    rng = random.Random(1)
    for _ in range(100):
        arch = space.sample(rng)
        child = space.mutate(arch, rng)
        space.validate(child)
        assert space.hash(child) != space.hash(arch)
        assert space.hash(child) in {space.hash(n) for n in space.neighbours(arch)}


def test_neighbours_are_distinct_and_valid(space: ChainSpace) -> None:
    arch = {"blocks": [{"op": "conv3x3", "width": 16, "down": True}, {"op": "identity", "width": 32, "down": False}]}
    neighbours = space.neighbours(arch)
    hashes = [space.hash(n) for n in neighbours]
    assert len(hashes) == len(set(hashes)) and space.hash(arch) not in hashes
    for n in neighbours:
        space.validate(n)
    # 2 blocks x 6 other ops + 2 x 2 other widths + 2 down toggles + 3 positions x 7 ops x 3 widths (no removal at 2 blocks)
    assert len(neighbours) == 12 + 4 + 2 + 63 - 1  # one insert duplicates another: conv3x3/16 before or after block 0


def test_encoding_has_fixed_length(space: ChainSpace) -> None:
    rng = random.Random(2)
    lengths = {len(space.encode(space.sample(rng))) for _ in range(50)}
    assert lengths == {6 * (7 + 3)}


def test_hash_is_stable_and_order_independent() -> None:
    a = {"blocks": [{"op": "conv3x3", "width": 16, "down": False}]}
    b = json.loads('{"blocks": [{"down": false, "width": 16, "op": "conv3x3"}]}')
    assert arch_hash(a) == arch_hash(b) == "c6e2064b8c45bc8a"


@pytest.mark.parametrize(
    "bad",
    [
        {"blocks": []},
        {"blocks": [{"op": "conv3x3", "width": 16, "down": False}] * 7},
        {"blocks": [{"op": "conv3x3", "width": 17, "down": False}] * 2},
        {"blocks": [{"op": "conv3x3", "width": 16}] * 2},
        {"blocks": [{"op": "conv3x3", "width": 16, "down": True}] * 4},
        {"layers": []},
        [1, 2],
    ],
)
def test_validate_rejects_foreign_architectures(space: ChainSpace, bad: object) -> None:
    with pytest.raises(ValueError):
        space.validate(bad)


@pytest.mark.parametrize("shape, classes", [((1, 8, 8), 10), ((3, 32, 32), 100), ((1, 28, 28), 2), ((3, 5, 7), 3)])
def test_build_adapts_to_input_shape_and_classes(space: ChainSpace, shape: tuple, classes: int) -> None:
    rng = random.Random(3)
    for _ in range(10):
        model = space.build(space.sample(rng), shape, classes)
        assert model(torch.randn(2, *shape)).shape == (2, classes)
