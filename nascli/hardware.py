"""Where trials run: device choice, CPU threads, mixed precision, and what the machine is."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Optional

import torch

from nascli.config import HardwareSettings
from nascli.errors import UserError

PACKAGES = ("nascli", "torch", "hydra-core", "omegaconf", "typer", "rich", "pandas", "numpy", "scikit-learn")


@dataclass(frozen=True)
class Hardware:
    """A resolved device with its precision and memory-layout choices."""

    device: torch.device
    amp_dtype: Optional[torch.dtype]
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed-precision context for forward passes (a no-op when amp is off)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def synchronize(self) -> None:
        """Wait for queued device work, so that timings are real."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def resolve_hardware(settings: HardwareSettings) -> Hardware:
    """Pick the device and set CPU threads; hardware=gpu without a visible GPU is a user error."""
    cuda = torch.cuda.is_available()
    if settings.device == "cuda" and not cuda:
        raise UserError("hardware=gpu needs a CUDA GPU and none is visible; use hardware=cpu or hardware=auto")
    use_cuda = settings.device == "cuda" or (settings.device == "auto" and cuda)
    if not use_cuda:
        torch.set_num_threads(settings.threads or os.cpu_count() or 1)
    bf16 = settings.amp == "bf16" or (settings.amp == "auto" and use_cuda)
    return Hardware(
        device=torch.device("cuda" if use_cuda else "cpu"),
        amp_dtype=torch.bfloat16 if bf16 else None,
        channels_last=settings.channels_last == "on" or (settings.channels_last == "auto" and use_cuda),
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
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if hardware.device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(hardware.device)
        machine["cuda"] = torch.version.cuda
    return {"python": sys.version.split()[0], "packages": versions, "machine": machine}
