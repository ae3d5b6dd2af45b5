"""Layers that hold the widest weights of a choice and compute with their leading slices (weight sharing)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from nascli.spaces.depthwise import depthwise_conv2d


class SlicedConv2d(nn.Conv2d):
    """A bias-free convolution of the widest shape; a narrower one uses the first input and output channels."""

    def __init__(self, max_in: int, max_out: int, kernel: int, depthwise: bool = False) -> None:
        super().__init__(max_in, max_out, kernel, padding=kernel // 2, groups=max_in if depthwise else 1, bias=False)
        self.depthwise = depthwise

    def weight_for(self, c_in: int, c_out: int) -> Tensor:
        """The weights of a c_in -> c_out convolution (depthwise: c_out == c_in)."""
        return self.weight[:c_in] if self.depthwise else self.weight[:c_out, :c_in]

    def forward(self, x: Tensor, c_out: int, stride: int = 1) -> Tensor:
        weight = self.weight_for(x.shape[1], c_out)
        if self.depthwise:
            return depthwise_conv2d(x, weight, stride, self.padding)
        return F.conv2d(x, weight, None, stride, self.padding)


class SlicedBatchNorm2d(nn.BatchNorm2d):
    """Batch norm of the widest width (maps or pooled features); a narrower input uses (and updates) the first
    channels' statistics."""

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        factor = 0.0
        if self.training:
            self.num_batches_tracked += 1
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
                            self.training, factor, self.eps)

    def copy_into(self, target: nn.BatchNorm2d) -> None:
        """Copy the first channels' parameters and statistics into a stand-alone batch norm of that width."""
        c = target.num_features
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(target, name).data.copy_(getattr(self, name)[:c])
        target.num_batches_tracked.copy_(self.num_batches_tracked)
