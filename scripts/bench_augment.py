"""Time `augment`'s random crop against the previous implementation on a CIFAR-sized batch.

Usage: python scripts/bench_augment.py [--batch 512] [--padding 4] [--iters 300] [--device cpu] [--hflip]

The previous implementation made one masked copy per (dy, dx) shift, (2p+1)^2 in all; the current one gathers
every sample's window from one unfolded view of the padded batch. Both draw the same shifts from identically seeded generators, so their
outputs are checked to be equal. Calls alternate old, new, old, new...; the medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from nascli.data.base import Augmentation
from nascli.evaluators.training import augment


def old_augment(x: Tensor, crop_padding: int, hflip: bool, generator: torch.Generator) -> Tensor:
    """The baseline: `augment` with one masked copy per shift."""
    n, _, h, w = x.shape
    if crop_padding:
        p = crop_padding
        padded = F.pad(x, (p, p, p, p))
        shifts = torch.randint(0, 2 * p + 1, (n, 2), generator=generator, device=x.device)
        out = torch.empty_like(x)
        for dy in range(2 * p + 1):
            for dx in range(2 * p + 1):
                mask = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                out[mask] = padded[mask, :, dy : dy + h, dx : dx + w]
        x = out
    if hflip:
        flip = torch.rand(n, generator=generator, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def timed(fn: Callable[[], Tensor], device: torch.device) -> float:
    """Milliseconds of one call, device work included."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 1000 * (time.perf_counter() - start)


def main() -> None:
    """Parse the arguments, check old and new agree, time them interleaved and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--padding", type=int, default=4)
    parser.add_argument("--iters", type=int, default=300, help="timed calls of each implementation")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hflip", action="store_true", help="also flip (the same code in both)")
    args = parser.parse_args()

    device = torch.device(args.device)
    x = torch.rand(args.batch, 3, 32, 32, device=device)
    generators = {name: torch.Generator(device=device).manual_seed(0) for name in ("old", "new")}
    calls = {
        "old": lambda: old_augment(x, args.padding, args.hflip, generators["old"]),
        "new": lambda: augment(x, Augmentation(args.padding, args.hflip), generators["new"]),
    }
    for _ in range(args.warmup):
        if not torch.equal(calls["old"](), calls["new"]()):
            raise SystemExit("old and new augment disagree")
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(args.iters):
        for name in ("old", "new"):
            times[name].append(timed(calls[name], device))

    old, new = statistics.median(times["old"]), statistics.median(times["new"])
    where = f"{device}, {torch.get_num_threads()} threads, {os.cpu_count()} cores" if device.type == "cpu" else device
    print(f"torch {torch.__version__}, {platform.machine()}, {where}")
    print(f"batch {args.batch}x3x32x32 float32, padding {args.padding}, hflip {args.hflip}, {args.iters} calls each")
    print(f"old: median {old:.3f} ms  ({(2 * args.padding + 1) ** 2} masked copies)")
    print(f"new: median {new:.3f} ms  (one gather)")
    print(f"old / new: {old / new:.2f}x")


if __name__ == "__main__":
    main()
