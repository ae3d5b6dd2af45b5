"""The visual report: figures of many runs as PNG files and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from nascli import figures
from nascli.errors import writing
from nascli.goal import Goal
from nascli.report import collect_runs, display_table, summarize
from nascli.rundir import RunDir
from nascli.spaces.stored import space_of

# Marks figures that failed to load and counts the shown ones (body data-figures / data-figures-shown).
CHECK_FIGURES = """
window.addEventListener("load", () => {
  const images = [...document.querySelectorAll("figure img")];
  const broken = images.filter((img) => !(img.complete && img.naturalWidth > 0));
  broken.forEach((img) => img.closest("figure").classList.add("broken"));
  document.body.dataset.figures = images.length;
  document.body.dataset.figuresShown = images.length - broken.length;
});
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9rem; margin: 1rem 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.7rem; text-align: right; }
th { background: #f3f3f3; } td:nth-child(-n+4) { text-align: left; }
figure { margin: 1rem 0; } figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.85rem; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 0.5rem; }
.broken::after { content: "this figure failed to load"; color: #b00; }
"""


@dataclass
class Figures:
    """The report's figures as PNG bytes, by file name, with a caption each."""

    images: dict[str, bytes]
    captions: dict[str, str]
    sections: dict[str, list[str]]  # section title -> file names


def _file_part(text: str) -> str:
    """`text` made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[-120:]


def build_figures(paths: list[Path]) -> tuple[pd.DataFrame, Figures]:
    """The runs table and every figure of the runs at or below `paths`."""
    runs = collect_runs(paths)
    table = summarize(runs)
    # Figures are drawn per dataset and space, where strategy and settings name a group.
    labels = {row["_key"]: f"{row['strategy']} {row['settings']}".strip() for _, row in table.iterrows()}
    families: dict[tuple[str, str, str], dict[str, list[Any]]] = {}  # (dataset, space, objective) -> label -> runs
    images: dict[str, bytes] = {}
    captions: dict[str, str] = {}
    drawings, relaxations, learning = [], [], []
    multi: dict[tuple[str, str, str], dict[str, list[Any]]] = {}  # runs with several objectives, by their objectives
    goals: dict[tuple[str, str, str], Goal] = {}
    root = Path(os.path.commonpath(list(runs["run"])))
    for _, row in runs.iterrows():
        run = RunDir(Path(row["run"]))
        trials, best, summary = run.trials(), run.best(), run.summary()
        short = str(run.path.relative_to(root)) if run.path != root else run.path.name
        objective = summary.objective if summary else "val_acc"
        if trials:
            family = (str(row["dataset"]), str(row["space"]), objective)
            families.setdefault(family, {}).setdefault(labels[row["_key"]], []).append(trials)
            if summary is not None and summary.goal is not None and len(summary.goal.objectives) > 1:
                goal = Goal.described(summary.goal.to_dict())
                family = (str(row["dataset"]), str(row["space"]), ",".join(str(o) for o in goal.objectives))
                goals[family] = goal
                multi.setdefault(family, {}).setdefault(labels[row["_key"]], []).append(trials)
        if best is not None:
            space = space_of(run.config())
            name = f"arch-{_file_part(short)}.png"
            score = best.metrics.get(objective)
            subtitle = f"best {objective} {score:.2f}" if score is not None else "retrained architecture"
            images[name] = figures.png(figures.architecture_figure(space, best.arch, short, subtitle))
            captions[name] = f"{run.path}: best architecture ({space.name} space)"
            drawings.append(name)
        retrained = (run.retrain_metrics() or {}).get("curve")
        if retrained or any(trial.curve for trial in trials):
            name = f"learning-{_file_part(short)}.png"
            images[name] = figures.png(figures.learning_curves_figure(trials, retrained, short))
            captions[name] = f"{run.path}: training loss and accuracy per epoch of each trial and of the retraining"
            learning.append(name)
        weights = run.architecture_weights()
        if weights is not None and weights.epochs:
            name = f"weights-{_file_part(short)}.png"
            images[name] = figures.png(figures.architecture_weights_figure(weights, short))
            captions[name] = f"{run.path}: the relaxation's operation weights per position after each epoch"
            relaxations.append(name)
    curves, fronts = [], []
    for (dataset, space_name, objective), groups in families.items():
        suffix = "" if len(families) == 1 else "-" + _file_part(f"{dataset}-{space_name}-{objective}")
        where = f"{dataset}, {space_name} space: "
        images[f"curves{suffix}.png"] = figures.png(figures.curves_figure(groups, objective))
        captions[f"curves{suffix}.png"] = where + f"best {objective} so far against trials and search time, mean ± std over seeds."
        images[f"pareto{suffix}.png"] = figures.png(figures.pareto_figure(groups, objective))
        captions[f"pareto{suffix}.png"] = where + (f"{objective} against cost for every successful trial; "
                                                   "the Pareto front (no trial is cheaper and better) in black.")
        curves.append(f"curves{suffix}.png")
        fronts.append(f"pareto{suffix}.png")
    volumes = []
    for (dataset, space_name, objectives), groups in multi.items():
        name = "front-" + _file_part(f"{dataset}-{space_name}-{objectives}") + ".png"
        images[name] = figures.png(figures.front_figure(groups, goals[(dataset, space_name, objectives)]))
        captions[name] = (f"{dataset}, {space_name} space, objectives {objectives}: each setting's Pareto front over "
                          "its runs, and the hypervolume against trials (mean ± std over seeds; every objective "
                          "scaled between the best and worst feasible value of the runs shown, reference point at "
                          "the worst corner).")
        volumes.append(name)
    sections = {"Best so far": curves, "Accuracy and cost": fronts, "Several objectives": volumes,
                "Best architectures": drawings, "Learning curves": learning, "Architecture weights (DARTS)": relaxations}
    return table, Figures(images, captions, sections)


def write_plots(result: Figures, folder: Path) -> None:
    """Write every figure as a PNG file into `folder`."""
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in result.images.items():
            (folder / name).write_bytes(data)


def render_html(table: pd.DataFrame, result: Figures, paths: list[Path]) -> str:
    """One HTML page with the runs table and every figure embedded: it opens offline, without a server."""
    shown = display_table(table)
    parts = [
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', "<title>nascli report</title>",
        f"<style>{STYLE}</style>", "</head>", "<body>", "<h1>nascli report</h1>",
        f'<p class="meta">{int(table["runs"].sum())} runs under {html.escape(", ".join(map(str, paths)))}, '
        f"{datetime.now():%Y-%m-%d %H:%M}</p>",
        "<h2>Runs</h2>", "<p>One row per setting; accuracies are mean ± std over seeds.</p>",
        shown.to_html(index=False, border=0, classes="runs", na_rep="-"),
    ]
    for title, names in result.sections.items():
        if not names:
            continue
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append('<div class="gallery">' if title == "Best architectures" else "<div>")
        for name in names:
            data = base64.b64encode(result.images[name]).decode()
            caption = html.escape(result.captions[name])
            parts.append(f'<figure><img alt="{caption}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{caption}</figcaption></figure>")
        parts.append("</div>")
    parts += [f"<script>{CHECK_FIGURES}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def html_report(paths: list[Path], out: Optional[Path], plots: Optional[Path]) -> list[str]:
    """Write the HTML page to `out` and/or the PNG figures into `plots`; the figures' names."""
    table, result = build_figures(paths)
    if out is not None:
        with writing(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(render_html(table, result, paths))
    if plots is not None:
        write_plots(result, plots)
    return list(result.images)
