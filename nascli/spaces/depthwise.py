"""Depthwise convolutions that stay in fp32 under the CPU's bf16 autocast.

With AMX, oneDNN trains dense convolutions in bf16 2.6-5.5x faster than in fp32, but its bf16 backward of a
depthwise convolution is slow: 11 ms for a strided 3x3 one on 64x16x28x28, where the fp32 backward of all
seven convolutions of its network took 1.6 ms (docs/benchmarks.md, "bf16 on CPUs with AMX"). Elsewhere
(CUDA, no autocast) they are plain convolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def depthwise_conv2d(x: Tensor, weight: Tensor, stride: int | tuple[int, int] = 1,
                     padding: int | tuple[int, int] = 1) -> Tensor:
    """A bias-free convolution with one group per channel of `x`, in fp32 under the CPU's autocast."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(x.float(), weight.float(), None, stride, padding, 1, x.shape[1])
    return F.conv2d(x, weight, None, stride, padding, 1, x.shape[1])


class DepthwiseConv2d(nn.Conv2d):
    """`depthwise_conv2d` as a layer, with nn.Conv2d's parameters (checkpoints are unchanged)."""

    def __init__(self, channels: int, kernel: int, stride: int = 1) -> None:
        super().__init__(channels, channels, kernel, stride, padding=kernel // 2, groups=channels, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return depthwise_conv2d(x, self.weight, self.stride, self.padding)
