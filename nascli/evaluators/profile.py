"""Cost metrics of a network: parameters, FLOPs and measured latency."""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from nascli.data.base import InputShape
from nascli.hardware import Hardware
from nascli.onnx_writer import write_onnx

# Samples per timed forward pass: one request, as deployed (the latency FBNet, ProxylessNAS and HW-NAS-Bench use)
LATENCY_BATCH = 1


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def example_inputs(input_shape: InputShape, batch: int, device: torch.device | str,
                   vocab_size: Optional[int | dict[str, int]] = None) -> tuple[torch.Tensor, ...]:
    """A batch of zeros the model accepts, as its positional inputs: images as floats, token sequences as ids
    (a vocabulary size says the inputs are tokens); each named input of multimodal data (the token inputs
    are those `vocab_size` names)."""
    if isinstance(input_shape, dict):
        sizes = vocab_size if isinstance(vocab_size, dict) else {}
        return tuple(example_inputs(shape, batch, device, sizes.get(name))[0] for name, shape in input_shape.items())
    dtype = torch.float32 if vocab_size is None else torch.long
    return (torch.zeros(batch, *input_shape, device=device, dtype=dtype),)


class _FlopTally(TorchDispatchMode):
    """Adds up torch's FLOP formulas (those FlopCounterMode uses) over the operators a forward pass runs.

    FlopCounterMode also attributes each count to the modules it happens in, which takes as long as the rest
    of its work; a trial needs only the total.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch's protocol)
        kwargs = kwargs or {}
        formula = flop_registry.get(func._overloadpacket)
        if formula is None and func is not torch.ops.prim.device.default:
            with self:  # an operator without a formula may be made of ones that have one (as FlopCounterMode does)
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


@torch.no_grad()
def forward_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of `model`'s forward pass on `inputs`, as torch counts them (2 per multiply-add; MACs = FLOPs / 2)."""
    with _FlopTally() as tally:
        model(*inputs)
    return int(tally.flops)


def count_flops(model: nn.Module, input_shape: InputShape, device: torch.device | str,
                vocab_size: Optional[int | dict[str, int]] = None) -> int:
    """FLOPs of one forward pass of one sample in eval mode."""
    model.eval()
    return forward_flops(model, example_inputs(input_shape, 1, device, vocab_size))


@torch.no_grad()
def measure_latency(
    model: nn.Module, input_shape: InputShape, batch: int, hardware: Hardware, repeats: int = 5,
    vocab_size: Optional[int | dict[str, int]] = None,
) -> float:
    """Median milliseconds of a forward pass of `batch` samples on the run's device."""
    model.eval()
    layout = torch.channels_last if hardware.channels_last else torch.contiguous_format
    x = tuple(part.contiguous(memory_format=layout if part.dim() == 4 else torch.contiguous_format)
              for part in example_inputs(input_shape, batch, hardware.device, vocab_size))
    times = []
    for i in range(repeats + 2):
        hardware.synchronize()
        start = time.perf_counter()
        with hardware.autocast():
            model(*x)
        hardware.synchronize()
        if i >= 2:  # the first passes warm up kernels and caches
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def measure_latency_onnxruntime(
    model: nn.Module, input_shape: InputShape, batch: int, repeats: int = 5, vocab_size: Optional[int | dict[str, int]] = None,
) -> float:
    """Median milliseconds of `batch` samples through the model exported to ONNX and run by ONNX Runtime on the CPU."""
    import onnxruntime  # optional: pip install 'nascli[onnx]'

    cpu_model = copy.deepcopy(model).cpu().eval()
    x = example_inputs(input_shape, batch, torch.device("cpu"), vocab_size)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the trial's share of the cores, as torch has
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        with torch.no_grad():
            write_onnx(cpu_model, x, path, free_batch=False)  # measured at this batch only
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session_milliseconds(session, {given.name: part.numpy() for given, part in zip(session.get_inputs(), x)},
                                repeats)


def session_milliseconds(session: Any, feed: dict[str, Any], repeats: int = 5) -> float:
    """Median milliseconds of an ONNX Runtime session's run on `feed`, after 2 warm-up runs."""
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        session.run(None, feed)
        if i >= 2:
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)
