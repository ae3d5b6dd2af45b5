"""Where trials run: device choice, CPU threads, mixed precision, and what the machine is."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Optional

import torch

from nascli.errors import UserError
from nascli.settings import HardwareSettings

PACKAGES = ("nascli", "torch", "hydra-core", "omegaconf", "typer", "rich", "pandas", "numpy", "scikit-learn")


@dataclass(frozen=True)
class Hardware:
    """A resolved device with its precision and memory-layout choices."""

    device: torch.device
    amp_dtype: Optional[torch.dtype]
    channels_last: bool
    compile: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op when amp is off)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` on this device, in the memory layout its training and scoring use."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def synchronize(self) -> None:
        """Wait for queued device work, so that timings are real."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _uses_cuda(settings: HardwareSettings) -> bool:
    cuda = torch.cuda.is_available()
    if settings.device == "cuda" and not cuda:
        raise UserError("hardware=gpu needs a CUDA GPU and none is visible; use hardware=cpu or hardware=auto")
    return settings.device == "cuda" or (settings.device == "auto" and cuda)


def trial_devices(
    settings: HardwareSettings, job_index: Optional[int] = None, gpu_count: Optional[int] = None
) -> list[str]:
    """One device per trial slot: `trials_per_gpu` slots on each GPU used, else `workers` CPU slots.

    Without `gpus`, a search uses every visible GPU, and job k of a sweep uses GPU k mod count, so that
    parallel sweep jobs spread over the GPUs instead of all landing on GPU 0.
    """
    if not _uses_cuda(settings):
        if settings.gpus:
            why = "hardware.device=cpu" if settings.device == "cpu" else "no CUDA GPU is visible"
            raise UserError(f"hardware.gpus={list(settings.gpus)} names GPUs, but {why}; drop hardware.gpus to run on the CPU")
        return ["cpu"] * settings.workers
    count = torch.cuda.device_count() if gpu_count is None else gpu_count
    gpus = settings.gpus
    if gpus is None:
        gpus = [job_index % count] if job_index is not None else list(range(count))
    missing = [g for g in gpus if g >= count]
    if missing:
        raise UserError(f"hardware.gpus names GPU {missing[0]}, but only {count} GPU(s) are visible")
    return [f"cuda:{gpu}" for gpu in gpus for _ in range(settings.trials_per_gpu)]


def cpu_threads(settings: HardwareSettings, share: int = 1) -> int:
    """Threads for one of `share` CPU workers: hardware.threads, else an equal share of the cores."""
    return settings.threads or max(1, (os.cpu_count() or 1) // share)


M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters (malloc.h)


@functools.cache
def keep_freed_memory() -> None:
    """On glibc, serve every tensor up to 32 MB from the heap and keep freed memory for the next step.

    By default glibc maps each large block (a training step's activations: often 4-30 MB on the CPU) from the
    OS afresh and returns it when freed, so every step pays page faults on all of its activations; that
    halved the speed of batch norm, ReLU and convolution layers (docs/benchmarks.md, "The training loop").
    The cost: the process keeps its peak memory (up to 2 GB of it free) instead of returning it.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): their allocators do not have this problem, or not this fix
        return
    libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    libc.mallopt(M_TOP_PAD, 64 * 2**20)


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX tiles: there oneDNN trains convolutions 2.6-5.5x faster in bf16.

    Without AMX (AVX512-BF16 alone, as on AMD EPYC) bf16 autocast gained nothing (docs/benchmarks.md).
    """
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_hardware(settings: HardwareSettings, device: Optional[str] = None, threads: Optional[int] = None) -> Hardware:
    """Set up `device` (default: the first trial device) and its threads; hardware=gpu without a GPU is a user error."""
    target = torch.device(device or trial_devices(settings)[0])
    keep_freed_memory()
    if target.type == "cuda":
        torch.cuda.set_device(target)
    else:
        torch.set_num_threads(threads or cpu_threads(settings))
    on_cuda = target.type == "cuda"
    bf16 = settings.amp == "bf16" or (settings.amp == "auto" and (on_cuda or cpu_has_amx()))
    return Hardware(
        device=target,
        amp_dtype=torch.bfloat16 if bf16 else None,
        channels_last=settings.channels_last != "off",  # auto: on; on the CPU too (2x faster: docs/benchmarks.md)
        compile=settings.compile,
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_environment(hardware: Hardware) -> dict[str, Any]:
    """Package versions and the machine a run used, for its record."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    machine: dict[str, Any] = {
        "device": str(hardware.device),
        "amp": str(hardware.amp_dtype).replace("torch.", "") if hardware.amp_dtype else None,
        "channels_last": hardware.channels_last,
        "compile": hardware.compile,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if hardware.device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(hardware.device)
        machine["cuda"] = torch.version.cuda
    return {"python": sys.version.split()[0], "packages": versions, "machine": machine}
