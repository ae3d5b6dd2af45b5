"""`augment` crops a random shift of the zero-padded batch per sample; `measure_latency` times forward passes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nascli.evaluators.profile import measure_latency
from nascli.data.base import Augmentation
from nascli.evaluators.training import augment
from nascli.hardware import Hardware


def shifts_of(out: Tensor, x: Tensor, p: int, flips: bool = False) -> list[list[tuple[int, int, bool]]]:
    """For each sample, every (dy, dx, flipped) whose crop of the zero-padded input equals the output."""
    _, _, h, w = x.shape
    padded = F.pad(x, (p, p, p, p))
    found = []
    for i in range(len(x)):
        matches = []
        for dy in range(2 * p + 1):
            for dx in range(2 * p + 1):
                crop = padded[i, :, dy : dy + h, dx : dx + w]
                for flipped in (False, True) if flips else (False,):
                    if torch.equal(out[i], crop.flip(-1) if flipped else crop):
                        matches.append((dy, dx, flipped))
        found.append(matches)
    return found


@pytest.mark.parametrize("p", [1, 2, 4])
@pytest.mark.parametrize("channels_last", [False, True])
def test_each_sample_is_a_crop_at_the_drawn_shift(p: int, channels_last: bool) -> None:
    x = torch.rand(24, 3, 6, 9) + 1  # no zeros, so that a crop matches at exactly one shift
    x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    out = augment(x, Augmentation(p, False), generator=torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    # The shifts are the generator's first draw, as in the masked-copy crop before it, so seeded runs reproduce.
    drawn = torch.randint(0, 2 * p + 1, (len(x), 2), generator=torch.Generator().manual_seed(3))
    assert shifts_of(out, x, p) == [[(dy, dx, False)] for dy, dx in drawn.tolist()]


def test_shifts_cover_the_whole_range() -> None:
    p = 2
    x = torch.rand(300, 1, 4, 4) + 1
    out = augment(x, Augmentation(p, False), generator=torch.Generator().manual_seed(0))
    seen = {matches[0][:2] for matches in shifts_of(out, x, p)}
    assert seen == {(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)}


def test_crop_and_flip() -> None:
    p = 1
    x = torch.rand(64, 2, 5, 5) + 1
    out = augment(x, Augmentation(p, True), generator=torch.Generator().manual_seed(1))
    found = shifts_of(out, x, p, flips=True)
    assert all(len(matches) == 1 for matches in found)
    assert {matches[0][2] for matches in found} == {False, True}


def test_same_seed_same_batch_other_seed_other_batch() -> None:
    x = torch.rand(32, 3, 8, 8)

    def run(seed: int) -> Tensor:
        return augment(x, Augmentation(2, True), generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_without_padding() -> None:
    x = torch.rand(40, 3, 4, 4)
    assert torch.equal(augment(x, Augmentation(0, False), generator=torch.Generator().manual_seed(0)), x)
    out = augment(x, Augmentation(0, True), generator=torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, s.flip(-1)) for o, s in zip(out, x)]
    assert all(f or torch.equal(o, s) for f, o, s in zip(flipped, out, x))
    assert any(flipped) and not all(flipped)


class Recorder(nn.Module):
    """A tiny convolution that records, per forward pass, whether autograd was on and the thread count."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.calls: list[tuple[bool, int]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append((torch.is_grad_enabled(), torch.get_num_threads()))
        return self.conv(x)


def test_measure_latency_on_cpu() -> None:
    model = Recorder()
    hardware = Hardware(device=torch.device("cpu"), amp_dtype=None, channels_last=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        latency = measure_latency(model, (3, 8, 8), batch=2, hardware=hardware)
    finally:
        torch.set_num_threads(threads)
    assert isinstance(latency, float) and latency > 0 and math.isfinite(latency)
    # 2 warm-up and 5 timed passes, without autograd, on the caller's threads.
    assert model.calls == [(False, 2)] * 7
    assert not model.training
