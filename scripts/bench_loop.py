"""How fast nascli's training loop trains candidates, against what the machine can do, measured in one run.

Usage: python scripts/bench_loop.py [--datasets fashion_mnist cifar10] [--cifar-root DIR] [--chains 16]
           [--cells 6] [--steps 30] [--device cpu|cuda] [--compile] [--overrides KEY=VALUE ...]

A fixed, seeded set of candidates (`--chains` chain architectures spread over the space's sizes, and
`--cells` NAS-Bench-201 cells in the benchmark's skeleton) is trained with nascli's own loop
(`nascli.evaluators.training.train`, the settings of `evaluator=train` plus `--overrides`) for
`--steps` steps on each dataset, after two untimed warm-up steps. Per candidate and as medians it
prints images per second and achieved GFLOP/s (forward FLOPs of convolutions and linear layers,
x3 for forward + backward). The machine's references are measured in the same run: an fp32 matrix
multiply and a dense 3x3 convolution (32 -> 32 channels, 28x28, fwd + bwd) at the loop's batch size, in fp32
and in the loop's precision (bf16 where `hardware.amp` turns autocast on); "% of conv" is against the latter.
With `--compile` each candidate also trains compiled (as `hardware.compile=true` does): its images/s after
compiling, the seconds its first steps took beyond the eager ones (compiling), and after how many steps the
compiled loop has paid them back — what decides whether compiling pays on the device.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from nascli.config import load_config
from nascli.evaluators.profile import count_flops
from nascli.evaluators.training import train
from nascli.factory import build_space, load_data
from nascli.hardware import Hardware, resolve_hardware


def candidates(chains: int, cells: int, seed: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """`chains` chain architectures evenly spread over 400 draws sorted by size, and `cells` NB201 cells."""
    rng = random.Random(seed)
    chain_space = build_space(load_config(["space=chain"]))
    cell_space = build_space(load_config(["space=nb201"]))
    drawn = sorted((chain_space.sample(rng) for _ in range(400)), key=chain_space.hash)
    by_size = sorted(drawn, key=lambda a: sum(b["width"] * (1 + (b["op"] != "identity")) for b in a["blocks"]))
    picked = [by_size[round(i * (len(by_size) - 1) / max(1, chains - 1))] for i in range(chains)]
    return [("chain", arch) for arch in picked] + [("nb201", cell_space.sample(rng)) for _ in range(cells)]


class WarmUpClock:
    """A limit for `train` that limits nothing: it notes when the untimed warm-up steps end, and the end."""

    def __init__(self, warm_up: int) -> None:
        self.warm_up = warm_up

    def begin(self, total_steps: int, hardware: Hardware) -> None:
        self.hardware, self.done, self.start = hardware, 0, time.perf_counter()

    def after_step(self) -> None:
        self.done += 1
        if self.done == self.warm_up:
            self.hardware.synchronize()
            self.warm = time.perf_counter()

    def after_epoch(self) -> None:
        self.hardware.synchronize()
        self.end = time.perf_counter()


WARM_UP = 2


def timed_training(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, compiled: bool,
                   **common: Any) -> tuple[float, float]:
    """Seconds of the warm-up steps and of the steps after them, in one epoch of `train` over `x`."""
    clock = WarmUpClock(WARM_UP)
    train(model, x, y, epochs=1, limits=(clock,), compiled=compiled, **common)
    return clock.warm - clock.start, clock.end - clock.warm


def timed(work: Any, device: torch.device, repeats: int = 5) -> float:
    """Median seconds of `work()` after one untimed call."""
    work()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def references(batch: int, hardware: Hardware) -> dict[str, float]:
    """GFLOP/s of an fp32 matrix multiply (2048^3) and of a dense 3x3 convolution's forward + backward (both
    input and weight gradients, as in a middle layer), in the faster of the two memory layouts: in fp32, and in
    the loop's precision (its autocast, when it has one), which is what the loop is compared with."""
    device = hardware.device
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    matmul = 2 * 2048**3 / timed(lambda: a @ b, device) / 1e9
    conv_flops = 3 * 2 * batch * 32 * 32 * 9 * 28 * 28
    conv = {"fp32": 0.0, "loop": 0.0}
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(batch, 32, 28, 28, device=device).contiguous(memory_format=layout).requires_grad_(True)
        weight = torch.randn(32, 32, 3, 3, device=device).contiguous(memory_format=layout).requires_grad_(True)
        for precision, context in (("fp32", contextlib.nullcontext), ("loop", hardware.autocast)):

            def conv_step() -> None:
                with context():
                    out = F.conv2d(x, weight, padding=1)
                out.float().sum().backward()

            conv[precision] = max(conv[precision], conv_flops / timed(conv_step, device) / 1e9)
    return {"matmul": matmul, "conv3x3_fp32": conv["fp32"], "conv3x3": conv["loop"]}


def describe(kind: str, arch: dict[str, Any]) -> str:
    if kind == "nb201":
        return "nb201 " + arch["cell"]
    return "chain " + " ".join(f"{b['op']}/{b['width']}{'v' if b['down'] else ''}" for b in arch["blocks"])


def bench_dataset(name: str, args: argparse.Namespace, picked: list[tuple[str, dict[str, Any]]]) -> dict[str, float]:
    """Train every candidate on `name` for `--steps` steps; print a row each, return the medians."""
    root = [f"dataset.root={args.cifar_root}"] if name == "cifar10" and args.cifar_root else []
    cfg = load_config([f"dataset={name}", f"hardware.device={args.device}", *root, *args.overrides])
    hardware = resolve_hardware(cfg.hardware)
    data = load_data(cfg, hardware)
    settings = cfg.evaluator.settings
    images = args.steps * settings.batch_size
    used = images + WARM_UP * settings.batch_size
    x, y = data.train_x[:used], data.train_y[:used]
    reference = references(settings.batch_size, hardware)
    print(f"\n## {name}: {len(picked)} candidates, {args.steps} steps of {settings.batch_size} images, "
          f"{data.input_shape}, device {hardware.device}, {torch.get_num_threads()} threads")
    precision = str(hardware.amp_dtype).replace("torch.", "") if hardware.amp_dtype else "fp32"
    print(f"references: fp32 matmul {reference['matmul']:.1f} GFLOP/s, dense 3x3 conv fwd+bwd "
          f"{reference['conv3x3_fp32']:.1f} GFLOP/s in fp32, {reference['conv3x3']:.1f} GFLOP/s in the loop's "
          f"precision ({precision}; batch {settings.batch_size})\n")
    extra = " compiled images/s | ratio | compiling s | paid back after (steps) |" if args.compile else ""
    print("| candidate | MFLOPs/image | images/s | GFLOP/s | % of conv |" + extra)
    print("|---|---|---|---|---|" + "---|" * 4 * args.compile)
    rates, gflops, ratios = [], [], []
    for kind, arch in picked:
        space = build_space(load_config([f"space={kind}"]))

        def build() -> torch.nn.Module:
            torch.manual_seed(0)
            return hardware.place(space.build(arch, data.input_shape, data.num_classes))

        model = build()
        flops = count_flops(model, data.input_shape, hardware.device)
        common = dict(settings=settings, hardware=hardware, seed=0, augmentation=data.augmentation)
        warm_up, seconds = timed_training(model, x, y, compiled=False, **common)
        rates.append(images / seconds)
        gflops.append(3 * flops * rates[-1] / 1e9)
        row = (f"| {describe(kind, arch)} | {flops / 1e6:.1f} | {rates[-1]:.0f} | {gflops[-1]:.1f} | "
               f"{100 * gflops[-1] / reference['conv3x3']:.0f}% |")
        if args.compile:
            compiling, compiled_seconds = timed_training(build(), x, y, compiled=True, **common)
            ratios.append(seconds / compiled_seconds)
            saved = (seconds - compiled_seconds) / args.steps
            payback = f"{(compiling - warm_up) / saved:.0f}" if saved > 0 else "never"
            row += f" {images / compiled_seconds:.0f} | {ratios[-1]:.2f} | {compiling - warm_up:.1f} | {payback} |"
        print(row, flush=True)
    medians = {"images_per_s": statistics.median(rates), "gflops": statistics.median(gflops), **reference}
    print(f"\nmedian: {medians['images_per_s']:.0f} images/s, {medians['gflops']:.1f} GFLOP/s "
          f"({100 * medians['gflops'] / reference['conv3x3']:.0f}% of the dense conv reference)")
    if ratios:
        medians["compiled_ratio"] = statistics.median(ratios)
        print(f"compiled: median {medians['compiled_ratio']:.2f}x the eager images/s, "
              f"{sum(r < 1 for r in ratios)} of {len(ratios)} candidates slower")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["fashion_mnist", "cifar10"])
    parser.add_argument("--cifar-root", default=None, help="CIFAR-10 image folder (e.g. the shared JPGs, extracted)")
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--cells", type=int, default=6)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also train each candidate compiled")
    parser.add_argument("--overrides", nargs="*", default=[], help="config overrides, e.g. evaluator.batch_size=256")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"overrides: {' '.join(args.overrides) or 'none'}")
    picked = candidates(args.chains, args.cells)
    for name in args.datasets:
        bench_dataset(name, args, picked)


if __name__ == "__main__":
    main()
