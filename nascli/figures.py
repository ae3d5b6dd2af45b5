"""The report's figures, drawn headless with matplotlib: best-so-far curves, Pareto fronts, architectures."""

from __future__ import annotations

import io
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")  # no display: reports are written by servers and CI too

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullFormatter  # noqa: E402

from nascli.goal import Goal  # noqa: E402
from nascli.records import ArchitectureWeights, Curve, Trial  # noqa: E402
from nascli.spaces.base import Arch, SearchSpace  # noqa: E402

Trials = list[Trial]
COSTS = (("params", "parameters"), ("flops", "FLOPs per sample"), ("latency_ms", "latency (ms)"))


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def best_so_far(trials: Trials, objective: str) -> list[float]:
    """After each trial, the best objective so far (NaN until a trial succeeds); confirming runs of an architecture
    already tried (search.confirm_top) find nothing new, so they leave the curve flat."""
    best, curve = -np.inf, []
    for trial in trials:
        value = trial.value(objective)
        if value is not None and trial.repeat is None:
            best = max(best, value)
        curve.append(best if np.isfinite(best) else np.nan)
    return curve


def _band(ax: Any, x: np.ndarray, curves: np.ndarray, label: str, colour: Any) -> None:
    """Mean ± std over runs, drawn where every run has a value (a mean over fewer runs would jump)."""
    mean, std = curves.mean(axis=0), curves.std(axis=0)
    ax.plot(x, mean, label=f"{label} (n={len(curves)})", color=colour)
    if len(curves) > 1:
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)


def _legend_below(figure: Figure, ax: Any) -> None:
    """One legend under the panels, so that long setting names cover no data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(2, len(handles)),
                      fontsize=8, frameon=False)


def curves_figure(groups: dict[str, list[Trials]], objective: str) -> Figure:
    """Best-so-far objective against trials and against search time: mean ± std over each group's runs."""
    figure, (by_trial, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.get_cmap("tab10")
    timed_any = False
    for i, (label, runs) in enumerate(groups.items()):
        colour = colours(i % 10)
        length = max(len(trials) for trials in runs)
        curves = np.array([_pad(best_so_far(trials, objective), length) for trials in runs])
        _band(by_trial, np.arange(1, length + 1), curves, label, colour)
        timed = [trials for trials in runs if trials and all(t.elapsed is not None for t in trials)]
        if timed:
            timed_any = True
            end = max(trials[-1].elapsed for trials in timed)
            grid = np.linspace(0, end, 200)
            steps = np.array([_at_times([t.elapsed for t in trials], best_so_far(trials, objective), grid)
                              for trials in timed])
            _band(by_time, grid, steps, label, colour)
    by_trial.set(xlabel="trials", ylabel=f"best {objective} so far", title="best so far, by trials")
    by_time.set(xlabel="search time (s)", ylabel=f"best {objective} so far", title="best so far, by time")
    if not timed_any:
        _note(by_time, "these runs recorded no trial times")
    for ax in (by_trial, by_time):
        ax.grid(alpha=0.3)
    figure.tight_layout()
    _legend_below(figure, by_trial)
    return figure


def _pad(curve: list[float], length: int) -> list[float]:
    """A run that stopped early keeps its last best."""
    return curve + [curve[-1] if curve else np.nan] * (length - len(curve))


def _at_times(times: list[float], values: list[float], grid: np.ndarray) -> np.ndarray:
    """The step function `values` (changing at `times`) sampled on `grid`; NaN before the first trial."""
    index = np.searchsorted(np.asarray(times), grid, side="right") - 1
    out = np.asarray(values, dtype=float)[np.clip(index, 0, None)]
    out[index < 0] = np.nan
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both lower cost (first) and higher accuracy (second), by cost."""
    front: list[tuple[float, float]] = []
    for cost, accuracy in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or accuracy > front[-1][1]:
            front.append((cost, accuracy))
    return front


def pareto_figure(groups: dict[str, list[Trials]], objective: str) -> Figure:
    """The objective against params, FLOPs and latency of every successful trial; the front is drawn over them."""
    figure, axes = plt.subplots(1, len(COSTS), figsize=(13, 4))
    colours = plt.get_cmap("tab10")
    for ax, (cost, name) in zip(axes, COSTS):
        every: list[tuple[float, float]] = []
        for i, (label, runs) in enumerate(groups.items()):
            points = [(t.metrics[cost], t.metrics[objective]) for trials in runs for t in trials
                      if t.value(cost) is not None and t.value(objective) is not None]
            if points:
                x, y = zip(*points)
                ax.scatter(x, y, s=14, alpha=0.6, color=colours(i % 10), label=label)
                every += points
        if every:
            front = pareto_front(every)
            ax.step(*zip(*front), where="post", color="black", linewidth=1.2)
            ax.scatter(*zip(*front), s=40, facecolors="none", edgecolors="black", label="Pareto front")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            _note(ax, f"no trial recorded {cost}\n(e.g. a table without cost columns)")
        ax.set(xlabel=name, ylabel=objective, title=f"{objective} vs {name}")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    _legend_below(figure, max(axes, key=lambda ax: len(ax.get_legend_handles_labels()[0])))
    return figure


def hypervolume_curve(trials: Trials, goal: Goal, bounds: dict[str, tuple[float, float]], length: int) -> list[float]:
    """The hypervolume of the front after each of the first `length` trials (a run that stopped early keeps its last)."""
    metrics = [t.metrics if t.ok else {} for t in trials]
    curve = [goal.hypervolume(metrics[:n], bounds) for n in range(1, len(metrics) + 1)]
    return _pad(curve, length)


def front_figure(groups: dict[str, list[Trials]], goal: Goal) -> Figure:
    """Each group's Pareto front over its runs (first two objectives), and hypervolume against trials (mean ± std).

    Hypervolumes share one scale: each objective between the best and worst feasible value over every run drawn.
    """
    figure, (fronts, volumes) = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.get_cmap("tab10")
    first, second = goal.objectives[:2]
    bounds = goal.observed_bounds([t.metrics for runs in groups.values() for trials in runs for t in trials if t.ok])
    for i, (label, runs) in enumerate(groups.items()):
        colour = colours(i % 10)
        ok = [t.metrics for trials in runs for t in trials if t.ok]
        members = sorted((ok[k] for k in goal.front(ok)), key=lambda m: m[first.metric])
        if members:
            x, y = [m[first.metric] for m in members], [m[second.metric] for m in members]
            fronts.step(x, y, where="post", color=colour, alpha=0.8)
            fronts.scatter(x, y, s=18, color=colour, label=label)
        length = max(len(trials) for trials in runs)
        curves = np.array([hypervolume_curve(trials, goal, bounds, length) for trials in runs])
        _band(volumes, np.arange(1, length + 1), curves, label, colour)
    fronts.set(xlabel=str(first), ylabel=str(second), title="Pareto front of each setting (all its runs)")
    volumes.set(xlabel="trials", ylabel="hypervolume (shared scale)", title="hypervolume against trials")
    for ax in (fronts, volumes):
        ax.grid(alpha=0.3)
    figure.tight_layout()
    _legend_below(figure, volumes)
    return figure


def architecture_figure(space: SearchSpace, arch: Arch, title: str, subtitle: Optional[str] = None) -> Figure:
    """A drawing of one architecture in its space's own terms."""
    figure, ax = plt.subplots()
    space.draw(arch, ax)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    figure.set_size_inches(min(12.0, max(5.0, 0.8 * (x1 - x0))), 0.8 * (y1 - y0) + 0.6)  # text keeps its size
    ax.set_title(title + (f"\n{subtitle}" if subtitle else ""), fontsize=9)
    return figure


def architecture_weights_figure(weights: ArchitectureWeights, title: str) -> Figure:
    """How a relaxation's operation weights evolved: one panel per position, one line per operation."""
    history = np.asarray(weights.epochs, dtype=float)  # (epochs, positions, operations)
    positions = history.shape[1]
    columns = min(3, positions)
    rows = -(-positions // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), squeeze=False, sharey=True)
    epochs = np.arange(1, len(history) + 1)
    for position, ax in enumerate(axes.flat):
        if position >= positions:
            ax.axis("off")
            continue
        for op, name in enumerate(weights.operations):
            ax.plot(epochs, history[:, position, op], label=name, marker="." if len(epochs) < 20 else None)
        ax.set(title=f"position {position}", xlabel="epoch", ylabel="weight" if position % columns == 0 else None)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    _legend_below(figure, axes.flat[0])
    return figure


def learning_curves_figure(trials: Trials, retrained: Optional[Curve], title: str) -> Figure:
    """Training loss and accuracy against epochs: each trial's training (thin, coloured by trial order) and the
    retraining's (black)."""
    figure, (loss, accuracy) = plt.subplots(1, 2, figsize=(11, 3.6))
    trained = [trial for trial in trials if trial.curve]
    shades = plt.get_cmap("viridis")
    for order, trial in enumerate(trained):
        epochs = [point["epoch"] for point in trial.curve]
        style = {"color": shades(order / max(1, len(trained) - 1)), "alpha": 0.6, "linewidth": 0.8,
                 "marker": "." if len(epochs) < 3 else None}  # a one-epoch trial is a point
        loss.plot(epochs, [point["loss"] for point in trial.curve], **style)
        accuracy.plot(epochs, [point["acc"] for point in trial.curve], **style)
    if retrained:
        epochs = [point["epoch"] for point in retrained]
        loss.plot(epochs, [point["loss"] for point in retrained], color="black", linewidth=1.8, label="retraining")
        accuracy.plot(epochs, [point["acc"] for point in retrained], color="black", linewidth=1.8)
    loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    accuracy.set(xlabel="epoch", ylabel="training accuracy (%)", title="accuracy on the training batches")
    for ax in (loss, accuracy):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    figure.suptitle(f"{title}: {len(trained)} trials (early: purple, late: yellow)", fontsize=9)
    figure.tight_layout()
    _legend_below(figure, loss)
    return figure


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666666")
