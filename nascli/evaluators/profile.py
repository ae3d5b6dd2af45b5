"""Cost metrics of a network: parameters, FLOPs and measured latency."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nascli.hardware import Hardware


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def example_input(input_shape: tuple[int, ...], batch: int, device: torch.device, tokens: bool = False) -> torch.Tensor:
    """A batch of zeros the model accepts: images as floats, token sequences as ids."""
    return torch.zeros(batch, *input_shape, device=device, dtype=torch.long if tokens else torch.float32)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...], device: torch.device, tokens: bool = False) -> int:
    """FLOPs of one forward pass of one sample, as torch counts them (2 per multiply-add; MACs = FLOPs / 2)."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(example_input(input_shape, 1, device, tokens))
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_latency(
    model: nn.Module, input_shape: tuple[int, ...], batch: int, hardware: Hardware, repeats: int = 5,
    tokens: bool = False,
) -> float:
    """Median milliseconds of a forward pass of `batch` samples on the run's device."""
    model.eval()
    x = example_input(input_shape, batch, hardware.device, tokens)
    if hardware.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(repeats + 2):
        hardware.synchronize()
        start = time.perf_counter()
        with hardware.autocast():
            model(x)
        hardware.synchronize()
        if i >= 2:  # the first passes warm up kernels and caches
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def measure_latency_onnxruntime(
    model: nn.Module, input_shape: tuple[int, ...], batch: int, repeats: int = 5, tokens: bool = False,
) -> float:
    """Median milliseconds of `batch` samples through the model exported to ONNX and run by ONNX Runtime on the CPU."""
    import copy
    import tempfile
    from pathlib import Path

    import onnxruntime

    from nascli.export import write_onnx  # lazily: export builds on the factory, which imports the evaluators

    cpu_model = copy.deepcopy(model).cpu().eval()
    x = example_input(input_shape, batch, torch.device("cpu"), tokens)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the trial's share of the cores, as torch has
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        with torch.no_grad():
            write_onnx(cpu_model, x, path)
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        session.run(None, feed)
        if i >= 2:
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)
