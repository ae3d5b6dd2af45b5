"""Measure the runner's cost per trial against a bare PyTorch loop, and on a GPU its trials per hour.

Usage: python scripts/bench_throughput.py [--trials 10] [--epochs 5] [--repeats 2] [--rounds 5]
           [--gpu-trials 40] [--trials-per-gpu 4] [--gpu-dataset fashion_mnist] [--out DIR]

(a) CPU: `nas search` (random strategy, retraining off, augmentation off) is timed in-process against a
    bare loop that trains the same architectures on the same data with the same optimiser, schedule, epochs,
    precision and memory layout and scores them on the validation split. Per repeat (seed), an untimed search
    finds the architectures and warms the kernel caches, then runner and bare loop alternate for --rounds rounds.
    Another tenant's work only adds time, so each loop's cost is its fastest: of whole rounds, and (less
    noisy) the sum over its parts of each part's fastest round, the parts being every trial (the runner's
    from its trial log) and the rest (the runner's run directory and data, the bare loop's data).
(b) GPU, when CUDA is available: `nas search hardware=gpu` with 1-epoch trials (data on the device, bf16,
    channels_last, several trials per GPU) against a naive loop over the same architectures (a CPU
    DataLoader, fp32, one trial at a time): trials per hour and mean GPU utilisation (nvidia-smi) of each.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional

import torch
import torch.nn.functional as F

from nascli.config import RunConfig, load_config
from nascli.data.base import network_inputs
from nascli.evaluators.metrics import predict
from nascli.evaluators.training import every_parameter, optimizer_and_schedule
from nascli.factory import build_space
from nascli.hardware import Hardware, resolve_hardware
from nascli.rundir import RunDir
from nascli.runner import search


class Timing(NamedTuple):
    """Seconds of one loop over the architectures: in all, per architecture, and of each in its training loop."""

    total: float
    each: list[float]
    training: list[float]


def run_search(overrides: list[str], run_dir: Path) -> tuple[Timing, list[dict[str, Any]]]:
    """`nas search` with these overrides timed in-process, after imports (each trial from the previous trial's
    logging to its own, the first from the start of the trial clock), and the architectures it tried."""
    cfg = load_config(overrides)
    start = time.perf_counter()
    search(cfg, run_dir, overrides)
    seconds = time.perf_counter() - start
    trials = RunDir(run_dir).trials()
    logged = [0.0, *(trial.elapsed for trial in trials)]
    each = [b - a for a, b in zip(logged, logged[1:])]
    return Timing(seconds, each, [trial.metrics["train_seconds"] for trial in trials]), [trial.arch for trial in trials]


def _built(cfg: RunConfig, arch: dict, batches: Any, hardware: Hardware) -> torch.nn.Module:
    torch.manual_seed(0)
    return hardware.place(build_space(cfg).build(arch, batches.input_shape, batches.num_classes))


def _fit(cfg: RunConfig, model: torch.nn.Module, batches: Any, steps_per_epoch: int, hardware: Hardware) -> None:
    """The textbook loop: SGD with Nesterov momentum and a one-cycle schedule, in the precision and layout nascli
    trains in on `hardware`."""
    settings = cfg.evaluator.settings
    optimizer, schedule = optimizer_and_schedule(every_parameter(model), settings, settings.epochs * steps_per_epoch)
    model.train()
    for _ in range(settings.epochs):
        for x, y in batches:
            with hardware.autocast():
                logits = model(*network_inputs(x.to(hardware.device), hardware.channels_last))
            loss = F.cross_entropy(logits.float(), y.to(hardware.device), label_smoothing=settings.label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()


def _val_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, hardware: Hardware) -> float:
    return (predict(model, x.to(hardware.device), hardware).argmax(1) == y).float().mean().item()


class TensorBatches:
    """Shuffled mini-batches of in-memory tensors, as a bare loop would slice them."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, num_classes: int) -> None:
        self.x, self.y, self.batch_size, self.num_classes = x, y, batch_size, num_classes
        self.input_shape = tuple(x.shape[1:])

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.x))
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield self.x[idx], self.y[idx]


class LoaderBatches(torch.utils.data.DataLoader):
    """A CPU DataLoader, the usual first loop on a GPU."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, num_classes: int) -> None:
        super().__init__(torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=True)
        self.num_classes, self.input_shape = num_classes, tuple(x.shape[1:])


def bare_loop(overrides: list[str], archs: list[dict], batches_class: type, device: torch.device) -> Timing:
    """Load the data, then train and score every architecture one after another, timed."""
    cfg = load_config(overrides)
    hardware = resolve_hardware(cfg.hardware, str(device))
    start = time.perf_counter()
    data = cfg.dataset.cls(cfg.dataset.settings).load()
    batches = batches_class(data.train_x, data.train_y, cfg.evaluator.settings.batch_size, data.num_classes)
    each, training = [], []
    for arch in archs:
        began = time.perf_counter()
        model = _built(cfg, arch, batches, hardware)
        fit_from = time.perf_counter()
        _fit(cfg, model, batches, len(batches), hardware)
        if device.type == "cuda":
            torch.cuda.synchronize()
        training.append(time.perf_counter() - fit_from)
        _val_accuracy(model, data.val_x, data.val_y, hardware)
        each.append(time.perf_counter() - began)
    return Timing(time.perf_counter() - start, each, training)


class GpuUtilisation:
    """Samples GPU 0's utilisation with nvidia-smi every 200 ms while in the `with` block."""

    def __enter__(self) -> GpuUtilisation:
        self.samples: list[float] = []
        self.process: Optional[subprocess.Popen] = None
        if shutil.which("nvidia-smi"):
            self.process = subprocess.Popen(
                ["nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, text=True,
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None:
            self.process.terminate()
            out, _ = self.process.communicate()
            self.samples = [float(line) for line in out.split() if line.strip().replace(".", "").isdigit()]

    @property
    def mean(self) -> Optional[float]:
        return statistics.mean(self.samples) if self.samples else None


def cpu_overhead(args: argparse.Namespace, out: Path) -> None:
    threads = os.cpu_count() or 1
    overrides = [f"dataset={args.dataset}", "hardware=cpu", f"hardware.threads={threads}", "strategy=random",
                 f"search.max_trials={args.trials}", f"evaluator.epochs={args.epochs}", "evaluator.augment=false",
                 "retrain.enabled=false"]
    timings: list[dict[str, list[Timing]]] = []  # per seed and loop, each round's
    for repeat in range(args.repeats):
        seed = [*overrides, f"seed={repeat}"]
        archs = run_search(seed, out / f"cpu-{repeat}-warm-up")[1]  # finds the architectures; warms kernel caches
        rounds: dict[str, list[Timing]] = {"runner": [], "bare": []}
        for round_ in range(args.rounds):  # alternating, so that drift hits both alike
            for loop in ("runner", "bare") if round_ % 2 == 0 else ("bare", "runner"):
                if loop == "runner":
                    rounds[loop].append(run_search(seed, out / f"cpu-{repeat}-{round_}")[0])
                else:
                    rounds[loop].append(bare_loop(overrides, archs, TensorBatches, torch.device("cpu")))
        timings.append(rounds)

    def fastest_round(rounds: list[Timing]) -> float:
        return min(timing.total for timing in rounds)

    def fastest_parts(rounds: list[Timing]) -> float:  # the rest (run directory, data) and each trial
        return sum(min(part) for part in zip(*([t.total - sum(t.each), *t.each] for t in rounds)))

    def fastest_training(rounds: list[Timing]) -> float:  # each trial's training loop in its fastest round
        return sum(min(trial) for trial in zip(*(timing.training for timing in rounds)))

    def beyond_training(rounds: list[Timing]) -> float:  # median seconds of a trial outside its training loop
        return statistics.median(e - t for timing in rounds for e, t in zip(timing.each, timing.training))

    print(f"\n(a) CPU, {threads} threads: {args.trials} trials of {args.epochs} epochs on {args.dataset}, "
          f"seeds 0-{args.repeats - 1}, {args.rounds} alternating rounds per loop and seed\n")
    print("| seed | bare loop: s per trial (fastest round; all rounds) | runner: s per trial (fastest round; all rounds) "
          "| ratio of the fastest rounds | ratio of the sums of the fastest parts | ratio of the training loops (each "
          "trial's fastest) | ms per trial outside the training loop: bare, runner |")
    print("|---|---|---|---|---|---|---|")
    for repeat, seed in enumerate(timings):
        each = {loop: ", ".join(f"{t.total / args.trials:.3f}" for t in seed[loop]) for loop in seed}
        bare, runner = seed["bare"], seed["runner"]
        print(f"| {repeat} | {fastest_round(bare) / args.trials:.3f} ({each['bare']}) | "
              f"{fastest_round(runner) / args.trials:.3f} ({each['runner']}) | "
              f"{fastest_round(runner) / fastest_round(bare):.3f} | {fastest_parts(runner) / fastest_parts(bare):.3f} | "
              f"{fastest_training(runner) / fastest_training(bare):.3f} | "
              f"{1000 * beyond_training(bare):.1f}, {1000 * beyond_training(runner):.1f} |")
    for name, cost in (("fastest rounds", fastest_round), ("fastest parts", fastest_parts),
                       ("training loops alone", fastest_training)):
        pooled = sum(cost(seed["runner"]) for seed in timings) / sum(cost(seed["bare"]) for seed in timings)
        print(f"runner against bare loop, {name}: {100 * (pooled - 1):+.1f}% (pooled over the seeds)")
    extra = statistics.median(beyond_training(seed["runner"]) - beyond_training(seed["bare"]) for seed in timings)
    trial = statistics.median(fastest_parts(seed["bare"]) / args.trials for seed in timings)
    print(f"the runner's work per trial beyond the bare loop's, outside the training loop: {1000 * extra:.1f} ms, "
          f"{100 * extra / trial:.1f}% of the bare loop's trial (medians over the seeds)")


def gpu_throughput(args: argparse.Namespace, out: Path) -> None:
    if not torch.cuda.is_available():
        print("\n(b) GPU: skipped, no CUDA GPU is visible")
        return
    overrides = [f"dataset={args.gpu_dataset}", "hardware=gpu", "hardware.gpus=[0]",
                 f"hardware.trials_per_gpu={args.trials_per_gpu}", "strategy=random",
                 f"search.max_trials={args.gpu_trials}", "evaluator.epochs=1", "retrain.enabled=false"]
    with GpuUtilisation() as nascli_util:
        nascli, archs = run_search(overrides, out / "gpu")
    naive_overrides = [*overrides, "hardware.amp=off", "hardware.channels_last=off"]
    with GpuUtilisation() as naive_util:
        naive = bare_loop(naive_overrides, archs, LoaderBatches, torch.device("cuda:0"))
    per_hour = {"naive": 3600 * len(archs) / naive.total, "nascli": 3600 * len(archs) / nascli.total}

    def util(sampler: GpuUtilisation) -> str:
        return f"{sampler.mean:.0f}%" if sampler.mean is not None else "n/a"

    print(f"\n(b) GPU {torch.cuda.get_device_name(0)}: {len(archs)} trials of 1 epoch on {args.gpu_dataset}\n")
    print("| loop | trials per hour | GPU utilisation | ratio |")
    print("|---|---|---|---|")
    print(f"| naive (CPU DataLoader, fp32, one trial at a time) | {per_hour['naive']:.0f} | {util(naive_util)} | 1.0 |")
    print(f"| nas search, {args.trials_per_gpu} trials per GPU | {per_hour['nascli']:.0f} | {util(nascli_util)} "
          f"| {per_hour['nascli'] / per_hour['naive']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="seeds, each its own set of architectures")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timings of each loop per seed")
    parser.add_argument("--gpu-dataset", default="fashion_mnist")
    parser.add_argument("--gpu-trials", type=int, default=40)
    parser.add_argument("--trials-per-gpu", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # the first optimiser imports torch._dynamo (~3 s)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"runs in {out}")
    cpu_overhead(args, out)
    gpu_throughput(args, out)


if __name__ == "__main__":
    main()
