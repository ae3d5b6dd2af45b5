"""The `nas` command: a thin Typer layer over plain functions; overrides go to Hydra's own entry points."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from pandas.api.types import is_numeric_dtype
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nascli import __version__
from nascli.config import GROUPS, default_options, expand_home, group_options, hydra_errors, parse_overrides
from nascli.errors import UserError, exit_with, writing

app = typer.Typer(
    help="Neural architecture search from the command line: search, retrain, report.\n\n"
    "Settings are Hydra overrides (key=value, group=option); `nas list` shows the options.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)  # paths stay whole, for copying
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}
PREDICT_ROWS = 10  # rows of `nas predict` shown on the terminal
def run_hydra(task: Callable[[], Any], prog: str, args: list[str]) -> None:
    """Run a Hydra entry point with `args`; its composition errors become one line, failed sweep jobs exit 1."""
    from nascli import hydra_app

    if {"-sc", "--shell-completion"} & set(args):
        raise UserError("nas completes its commands and options itself: `nas --install-completion`")
    parse_overrides([arg for arg in args if "=" in arg and not arg.startswith("-")])
    hydra_app.check_plugins(args)
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them; hydra_errors words them
    sys.argv = [prog, *args]
    hydra_app.failed_jobs.clear()
    with hydra_errors(args):
        task()
    if hydra_app.failed_jobs:
        for message in hydra_app.failed_jobs:
            print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1)


@app.command(context_settings=OVERRIDES)
def search(
    ctx: typer.Context,
    resume: Optional[Path] = typer.Option(
        None, "--resume", metavar="RUN_DIR", help="Continue a stopped search; overrides may change search.*, hardware.*."
    ),
) -> None:
    """Search an architecture, then retrain the best one.

    Takes Hydra overrides, e.g. `nas search dataset=fashion_mnist strategy=random search.max_trials=50`,
    and `-m` to sweep: `nas search -m strategy=random,evolution seed=0,1` (one run per job under sweep_dir).
    `nas search --cfg job` prints the composed config without running. `nas search --resume RUN_DIR`
    continues a search stopped by Ctrl-C, a kill or a crash.
    """
    if resume is None:
        from nascli.hydra_app import search_task

        run_hydra(search_task, "nas search", expand_home(list(ctx.args)))
        return
    if any(arg.startswith("-") for arg in ctx.args):
        raise UserError("--resume takes a run directory and search.*/hardware.* overrides, nothing else")
    from nascli.runner import resume as resume_run

    resume_run(resume, expand_home(list(ctx.args)))


@app.command(context_settings=OVERRIDES)
def retrain(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="A search run directory, or an architecture JSON file."),
    pick: Optional[int] = typer.Option(
        None, "--pick", help="Retrain this trial of the search (e.g. a member of its front.json), not its best."
    ),
) -> None:
    """Retrain an architecture into a new run directory.

    SOURCE is a search run directory (its best architecture, or with --pick ID that trial's, and its settings
    are used) or a JSON file holding an architecture (as in best.json). Overrides change settings, e.g.
    `retrain.epochs=100`; `-m` sweeps them, e.g. `nas retrain RUN -m seed=0,1,2`.
    """
    from nascli.hydra_app import retrain_task
    from nascli.runner import retrain_overrides

    run_hydra(retrain_task, "nas retrain", retrain_overrides(source, expand_home(list(ctx.args)), pick))


@app.command()
def report(
    paths: list[Path] = typer.Argument(..., help="Run directories, sweep directories or any parent folder."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the table (numeric columns) as CSV."),
    md: Optional[Path] = typer.Option(None, "--md", help="Also write the table as Markdown."),
    html: Optional[Path] = typer.Option(
        None, "--html", help="Also write a self-contained HTML page: the table, curves, Pareto fronts, architectures."
    ),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Also write the HTML page's figures as PNG files here."),
    force: bool = typer.Option(False, "--force", help="Replace existing --csv, --md and --html files."),
) -> None:
    """Compare runs: one row per setting, with mean ± std over seeds; --html and --plots draw them."""
    from nascli.report import display_table, report as build_report
    from nascli.rundir import check_output

    for path in (csv, md, html):
        if path is not None:
            check_output(path, force)

    table = build_report(paths)
    shown = display_table(table)
    if console.is_terminal:
        rich_table = Table()
        for column in shown.columns:
            rich_table.add_column(column, justify="right" if is_numeric_dtype(shown[column]) else "left")
        for row in shown.itertuples(index=False):
            rich_table.add_row(*(str(v) for v in row))
        console.print(rich_table)
    else:
        print(shown.to_string(index=False))
    if csv:
        with writing(csv):
            table.to_csv(csv, index=False)
        console.print(f"wrote {csv}")
    if md:
        with writing(md):
            md.write_text(shown.to_markdown(index=False) + "\n")
        console.print(f"wrote {md}")
    if html or plots:
        from nascli.html_report import html_report

        figures = html_report(paths, html, plots)
        if html:
            console.print(f"wrote {html}")
        if plots:
            console.print(f"wrote {len(figures)} figures to {plots}")


@app.command()
def show(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    top: int = typer.Option(10, "--top", help="How many of the best trials to list."),
    watch: Optional[float] = typer.Option(
        None, "--watch", help="Redraw every this many seconds while the search runs (Ctrl-C stops watching)."
    ),
) -> None:
    """Show one run in detail: outcome, config, best architecture, top trials, retraining, files."""
    from nascli.show import show as show_run, watch as watch_run

    if top < 0:
        raise UserError(f"--top must be 0 or more, got {top}")
    if watch is None:
        show_run(run_dir, console, top)
    elif not watch > 0:
        raise UserError(f"--watch takes seconds between redraws, more than 0; got {watch}")
    else:
        watch_run(run_dir, console, top, watch)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory with a retrained model (retrain/model.pt)."),
    format: str = typer.Option("torchscript", "--format", help="torchscript or onnx (pip install 'nascli[onnx]')."),
    out: Optional[Path] = typer.Option(None, "--out", help="The file to write (default: RUN_DIR/export/model.ts|onnx)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file (and the card beside it)."),
    with_preprocessing: bool = typer.Option(
        False, "--with-preprocessing", help="ONNX of an image model: uint8 pixels (N, H, W, C) in, probabilities out."
    ),
    quantize: Optional[str] = typer.Option(
        None, "--quantize", help="int8: also write the int8 ONNX model, compared on the test split (loads the data)."
    ),
) -> None:
    """Export the retrained model with its classes and preprocessing inside and a model card beside it, checking
    that the file reproduces the checkpoint's outputs."""
    from nascli.export import SAMPLE_BATCH, export as export_model

    done = export_model(run_dir, format, out, force, with_preprocessing=with_preprocessing, quantisation=quantize)
    console.print(f"wrote {done.path} ({format}) and {done.card}; on a batch of {SAMPLE_BATCH} its outputs match "
                  f"the checkpoint's within {done.difference:.1e}")
    if done.compression is not None:
        c = done.compression
        console.print(f"wrote {done.compressed} ({c['quantisation']}, {c['method']}): test_acc {c['int8_test_acc']:.2f} "
                      f"against {c['float_test_acc']:.2f}, {c['int8_bytes'] / 1024:.0f} kB against "
                      f"{c['float_bytes'] / 1024:.0f} kB, {c['speedup_batch1']:.2f}x (batch 1) and "
                      f"{c['speedup_batch64']:.2f}x (batch 64) the speed in ONNX Runtime")


@app.command()
def prune(
    run_dir: Path = typer.Argument(..., help="A run directory with a retrained chain-space model (retrain/model.pt)."),
    flops: float = typer.Option(0.5, "--flops", help="The share of the network's FLOPs to keep (0 to 1)."),
    epochs: int = typer.Option(10, "--epochs", help="Epochs of fine-tuning of the pruned network."),
    lr_share: float = typer.Option(1.0, "--lr-share", help="Fine-tuning's peak learning rate, as a share of retrain.lr."),
    out: Optional[Path] = typer.Option(None, "--out", help="The new run directory (default: RUN_DIR-pruned-PERCENT)."),
) -> None:
    """Prune the retrained network's channels to a share of its FLOPs and fine-tune it, into a new run directory."""
    from nascli.pruning import prune as prune_run
    from nascli.records import kept_flops_share
    from nascli.rundir import RunDir

    out = out or run_dir.with_name(f"{run_dir.name}-pruned-{round(100 * flops)}")
    if prune_run(run_dir, flops, epochs, out, lr_share).status != "completed":
        raise typer.Exit(1)  # the closing lines said why
    share = kept_flops_share(RunDir(out).retrain_metrics() or {})
    console.print(f"pruned: {share:.3g} of the FLOPs of {run_dir}'s network")


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory with a retrained model (retrain/model.pt)."),
    inputs: list[Path] = typer.Argument(
        ..., help="Image or audio files, folders of them, .npy/.npz arrays, or (text models) CSV/TSV files."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Write every row as CSV to this file."),
    top: int = typer.Option(3, "--top", help="How many of the likeliest labels each row gives."),
    column: Optional[str] = typer.Option(
        None, "--column", help="The CSV column of sentences (default: the run's dataset.text_column, or the only one)."
    ),
    device: str = typer.Option("auto", "--device", help="auto (a GPU when one is visible), cpu or cuda."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
) -> None:
    """Label new inputs with a run's retrained model, preprocessed as its training data was."""
    from nascli.predict import predict as label

    labelled = label(run_dir, inputs, column, top, device, out, force)
    table = labelled.table
    shown = table.head(PREDICT_ROWS).round(4)
    if console.is_terminal:
        rich_table = Table(*shown.columns)
        for row in shown.itertuples(index=False):
            rich_table.add_row(*(escape(str(v)) for v in row))
        console.print(rich_table)
    else:
        print(shown.to_string(index=False))
    skipped = f", skipped {len(labelled.skipped)}" if labelled.skipped else ""
    console.print(f"labelled {len(table)} input(s){skipped}")
    if out is not None:
        console.print(f"wrote {out}")
    elif len(table) > len(shown):
        console.print(f"showing the first {len(shown)}; --out FILE.csv writes every row")


@app.command("list")
def list_options(
    markdown: bool = typer.Option(False, "--markdown", help="Print the full reference of every key (docs/options.md)."),
) -> None:
    """Show the options of every config group (the default is marked *)."""
    if markdown:
        from nascli.options import options_markdown

        print(options_markdown(), end="")
        return
    defaults = default_options()
    table = Table("group", "option", "description")
    for group in GROUPS:
        for option, description in group_options(group).items():
            mark = " *" if defaults.get(group) == option else ""
            table.add_row(group, option + mark, escape(description))  # a description's [extra] is no markup
    console.print(table)
    console.print("Pick one with group=option; see every key with `nas search --cfg job`.")


def _print_version(given: bool) -> None:
    if not given:
        return
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        device = f"cuda ({torch.cuda.get_device_name(0)}{f', {count} GPUs' if count > 1 else ''})"
    else:
        device = "cpu (no CUDA GPU visible)" if torch.version.cuda else "cpu"
    print(f"nascli {__version__}\ntorch {torch.__version__}\ndevice {device}")
    raise typer.Exit()


@app.callback()
def global_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print nascli's version, torch's and the device torch sees, then exit."),
) -> None:
    """Neural architecture search from the command line: search, retrain, report."""


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops a search the way Ctrl-C does: summary written, resumable


def main() -> None:
    """Entry point of the `nas` console script."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app(prog_name="nas")  # also under `python -m nascli`: shell completion and usage lines name the command
    except UserError as exc:
        exit_with(exc)
