"""Pooling layers of the spaces that train fast on the CPU, with PyTorch's values.

3x3 average pooling (padding 1, padded cells not counted) is, while gradients are recorded, a depthwise
convolution with a fixed kernel: the values of `nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)`
up to float rounding, but forward + backward run 3-4x faster in channels_last on the CPU than PyTorch's
pooling kernel, which took a third of a search's training time (docs/benchmarks.md, "The training loop").
The global average pool gives a dense gradient in the input's layout. Without gradients (evaluation, FLOP
counts, latency, export) both are PyTorch's standard ops, so counted FLOPs and exported graphs do not change.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nascli.spaces.depthwise import depthwise_conv2d


def avg_pool3x3(x: Tensor, stride: int = 1) -> Tensor:
    """The mean of each 3x3 window of `x` (zero-padded by 1), over the cells inside the image."""
    if not torch.is_grad_enabled():
        return F.avg_pool2d(x, 3, stride, padding=1, count_include_pad=False)
    channels, (height, width) = x.shape[1], x.shape[2:]
    kernel = torch.ones(channels, 1, 3, 3, dtype=x.dtype, device=x.device)
    if x.is_contiguous(memory_format=torch.channels_last):
        kernel = kernel.contiguous(memory_format=torch.channels_last)
    sums = depthwise_conv2d(x, kernel, stride)
    counts = _window_counts.__wrapped__ if torch.compiler.is_compiling() else _window_counts  # compiled: a constant
    return sums / counts(height, width, stride, sums.dtype, x.device)


@functools.lru_cache(maxsize=64)
def _window_counts(height: int, width: int, stride: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """How many cells of each 3x3 window lie inside the image: computed once per shape, not every step."""
    ones = torch.ones(1, 1, height, width, dtype=dtype, device=device)
    return F.conv2d(ones, torch.ones(1, 1, 3, 3, dtype=dtype, device=device), stride=stride, padding=1)


class AvgPool3x3(nn.Module):
    """`avg_pool3x3` as a layer (no parameters, no buffers: checkpoints are as with nn.AvgPool2d)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return avg_pool3x3(x, self.stride)


class _MeanOverPixels(torch.autograd.Function):
    """The mean over height and width, whose gradient is a dense tensor in the input's memory layout.

    PyTorch's own gradient of a mean is a broadcast view; the layer before the head then copies it from that
    view into channels_last, which on the CPU cost that layer 2-3x its time (docs/benchmarks.md).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.shape = x.shape
        ctx.layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        return x.mean((2, 3), keepdim=True)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        height, width = ctx.shape[2:]
        dense = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.layout)
        return dense.copy_((grad / (height * width)).expand(ctx.shape))


def global_avg_pool(x: Tensor) -> Tensor:
    """The mean of each channel over the image, shaped (N, C, 1, 1) like nn.AdaptiveAvgPool2d(1), training faster."""
    return _MeanOverPixels.apply(x) if torch.is_grad_enabled() else x.mean((2, 3), keepdim=True)


class GlobalAvgPool(nn.Module):
    """`global_avg_pool` as a layer."""

    def forward(self, x: Tensor) -> Tensor:
        return global_avg_pool(x)
