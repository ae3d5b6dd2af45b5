"""Evaluate with zero-cost proxies: score each untrained candidate on mini-batches of the training split.

The objective is one proxy (`proxy_<name>`) or `rank_mean`: the mean over `combine` of the candidate's percentile
among the scores of a fixed reference population of random architectures, so that a candidate's score depends on
no other candidate and parallel workers agree. No latency is measured; the best architecture is retrained as usual.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

from nascli.data.base import DataSplits, batch_parts
from nascli.errors import TrialFailed, UserError, require
from nascli.evaluators.base import Evaluator
from nascli.evaluators.profile import count_flops, count_params
from nascli.evaluators.proxies import DATA_FREE, PROXIES
from nascli.hardware import Hardware
from nascli.registry import register
from nascli.spaces.base import Arch, SearchSpace

RANK_MEAN = "rank_mean"
REFERENCE_SEED = 0  # fixed, so that every worker and every run ranks candidates among the same population


@dataclass
class ProxyEvaluatorSettings:
    """The proxy maximised, the proxies recorded, the mini-batches they see and rank_mean's reference population."""

    proxy: str = "synflow"  # one of `proxies`, or rank_mean: the mean percentile of `combine` among the reference's
    # proxies computed and recorded as proxy_<name> for every candidate: synflow, snip, grad_norm, jacov, params, flops
    proxies: list[str] = field(default_factory=lambda: list(PROXIES))
    # the proxies rank_mean averages: synflow and jacov beat every single proxy on NAS-Bench-201 (docs/benchmarks.md)
    combine: list[str] = field(default_factory=lambda: ["synflow", "jacov"])
    batch_size: int = 64  # training samples in each mini-batch the proxies see (>= 2)
    batches: int = 1  # scores are averaged over this many mini-batches of the training split
    reference: int = 32  # random architectures (drawn with a fixed seed) that rank_mean's percentiles are taken among

    def __post_init__(self) -> None:
        known = ", ".join(PROXIES)
        unknown = [name for name in self.proxies if name not in PROXIES]
        require(not unknown, f"unknown proxy in proxies: {', '.join(unknown)}; known: {known}")
        require(len(self.proxies) > 0 and len(set(self.proxies)) == len(self.proxies),
                f"proxies must name one or more of {known}, each once")
        require(self.proxy != RANK_MEAN or (len(self.combine) > 0 and set(self.combine) <= set(self.proxies)),
                f"combine must name one or more of proxies ({', '.join(self.proxies)})")
        require(self.proxy == RANK_MEAN or self.proxy in self.proxies,
                f"proxy must be one of proxies ({', '.join(self.proxies)}) or {RANK_MEAN}, got {self.proxy!r}")
        require(self.batch_size >= 2, "batch_size must be at least 2 (jacov correlates the samples of a batch)")
        require(self.batches >= 1, "batches must be at least 1")
        require(self.reference >= 1, "reference must be at least 1")


def percentile(value: float, reference: list[float]) -> float:
    """The percentage of `reference` below `value`, ties counting half (NaN when either has no number to rank)."""
    numbers = [r for r in reference if not math.isnan(r)]
    if math.isnan(value) or not numbers:
        return math.nan
    below = sum(r < value for r in numbers)
    ties = sum(r == value for r in numbers)
    return 100.0 * (below + 0.5 * ties) / len(numbers)


def rank_mean(scores: dict[str, float], reference: dict[str, list[float]]) -> float:
    """The mean over proxies of each score's percentile among the reference's; proxies without one are left out."""
    ranks = [percentile(value, reference[name]) for name, value in scores.items()]
    ranks = [r for r in ranks if not math.isnan(r)]
    return sum(ranks) / len(ranks) if ranks else math.nan


@register("evaluator", "proxy")
class ProxyEvaluator(Evaluator):
    """Scores each candidate at initialisation, without training, by a zero-cost proxy or the mean rank of several."""

    Settings = ProxyEvaluatorSettings

    def __init__(self, settings: ProxyEvaluatorSettings, **dependencies: Any) -> None:
        super().__init__(settings, **dependencies)
        self.objective = settings.proxy if settings.proxy == RANK_MEAN else f"proxy_{settings.proxy}"
        self._reference: Optional[dict[str, list[float]]] = None

    def _batches(self, seed: int) -> list[tuple[tuple[Tensor, ...], Tensor]]:
        """`batches` mini-batches of distinct training samples, drawn with a generator seeded by `seed`."""
        data = self.data
        generator = torch.Generator().manual_seed(seed)
        batches = []
        for _ in range(self.settings.batches):
            rows = torch.randperm(len(data.train_y), generator=generator)[: self.settings.batch_size]
            rows = rows.to(data.train_y.device)
            batches.append((batch_parts(data.train_x[rows]), data.train_y[rows]))
        return batches

    def _build(self, arch: Arch, seed: int) -> nn.Module:
        data = self.data
        torch.manual_seed(seed)
        return self.space.build(arch, data.input_shape, data.num_classes, data.vocab_size).to(self.hardware.device)

    def _scores(self, model: nn.Module, seed: int) -> dict[str, float]:
        """Each proxy of `proxies`, averaged over the mini-batches (those that read only shapes: on the first)."""
        batches = self._batches(seed)
        scores = {}
        for name in self.settings.proxies:
            used = batches[:1] if name in DATA_FREE else batches
            scores[name] = sum(PROXIES[name](model, x, y) for x, y in used) / len(used)
        return scores

    def reference(self) -> dict[str, list[float]]:
        """Each proxy's scores of `reference` random architectures, all built and scored with one fixed seed."""
        if self._reference is None:
            rng = random.Random(REFERENCE_SEED)
            archs = [self.space.sample(rng) for _ in range(self.settings.reference)]
            scored = [self._scores(self._build(arch, REFERENCE_SEED), REFERENCE_SEED) for arch in archs]
            self._reference = {name: [s[name] for s in scored] for name in self.settings.proxies}
        return self._reference

    def score(self, arch: Arch, seed: int) -> float:
        """The value of the objective proxy (not rank_mean) for `arch` built and scored with `seed`."""
        return self._scores(self._build(arch, seed), seed)[self.settings.proxy]

    def evaluate(self, arch: Arch, seed: int, budget: Optional[float] = None, fold: int = 0) -> dict[str, Any]:
        data = self.data
        try:
            model = self._build(arch, seed)
            scores = self._scores(model, seed)
            metrics = {f"proxy_{name}": value for name, value in scores.items()}
            if self.objective == RANK_MEAN:
                metrics[RANK_MEAN] = rank_mean({n: scores[n] for n in self.settings.combine}, self.reference())
            if "flops" in scores:  # counting again would take as long as the proxy did
                flops = int(scores["flops"])
            else:
                flops = count_flops(model, data.input_shape, self.hardware.device, vocab_size=data.vocab_size)
        except torch.OutOfMemoryError:
            raise TrialFailed("out of memory") from None
        if not math.isfinite(metrics[self.objective]):
            raise TrialFailed(f"{self.objective} is {metrics[self.objective]}, not a finite number")
        return {**{k: v if math.isfinite(v) else None for k, v in metrics.items()},
                "params": count_params(model), "flops": flops}


def proxy_scorer(
    name: str, space: SearchSpace, data: Optional[DataSplits], hardware: Hardware, seed: int
) -> Callable[[Arch], float]:
    """A function that scores an architecture by one proxy, every architecture built and scored with `seed` (common
    random numbers: the same value every time; -inf when it has none)."""
    if data is None:
        raise UserError("strategy.prescreen scores networks on the dataset's samples, and this search loads none")
    evaluator = ProxyEvaluator(ProxyEvaluatorSettings(proxy=name, proxies=[name]), space=space, data=data,
                               hardware=hardware)

    def score(arch: Arch) -> float:
        value = evaluator.score(arch, seed)
        return value if math.isfinite(value) else -math.inf

    return score
