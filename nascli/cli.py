"""The `nas` command: a thin Typer layer over plain functions; overrides go to Hydra."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from hydra._internal.utils import get_args_parser
from pandas.api.types import is_numeric_dtype
from rich.console import Console
from rich.table import Table

from nascli.config import GROUPS, default_options, expand_sweep, group_options, load_config, merge_overrides
from nascli.errors import UserError, exit_with
from nascli.store import ensure_free

app = typer.Typer(
    help="Neural architecture search from the command line: search, retrain, report.\n\n"
    "Settings are Hydra overrides (key=value, group=option); `nas list` shows the options.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)  # paths stay whole, for copying
OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}


def search_cli(args: list[str]) -> None:
    """Validate every job of the command first, then hand the arguments to Hydra's own entry point."""
    from nascli.runner import check_job

    parsed = get_args_parser().parse_args(args)
    informational = parsed.help or parsed.hydra_help or parsed.cfg or parsed.info or parsed.shell_completion
    if not informational:
        jobs = expand_sweep(parsed.overrides) if parsed.multirun else [parsed.overrides]
        configs = [load_config(job) for job in jobs]
        for cfg in configs:
            check_job(cfg)
        if parsed.multirun:
            sweep_dir = Path(str(configs[0].raw.sweep_dir))
            if sweep_dir.exists() and any(sweep_dir.iterdir()):
                raise UserError(f"sweep_dir {sweep_dir} is not empty; pass another sweep_dir=... (nothing was overwritten)")
        else:
            ensure_free(Path(configs[0].run_dir))
    from nascli.hydra_app import search_task

    sys.argv = ["nas search", *args]
    search_task()


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
        search_cli(list(ctx.args))
        return
    if any(arg in ("-m", "--multirun") or arg.startswith("-") for arg in ctx.args):
        raise UserError("--resume takes a run directory and search.*/hardware.* overrides, nothing else")
    from nascli.runner import resume as resume_run

    resume_run(resume, list(ctx.args))


@app.command(context_settings=OVERRIDES)
def retrain(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="A search run directory, or an architecture JSON file."),
) -> None:
    """Retrain an architecture into a new run directory.

    SOURCE is a search run directory (its best architecture and settings are used) or a JSON file
    holding an architecture (as in best.json). Overrides change settings, e.g. `retrain.epochs=100`.
    """
    from nascli.runner import check_job, read_architecture, retrain as retrain_run

    arch, source_overrides = read_architecture(source)
    inherited = [
        o for o in source_overrides or [] if o.split("=", 1)[0].lstrip("+~") not in ("run_dir", "sweep_dir")
    ]
    overrides = merge_overrides(inherited, list(ctx.args))
    cfg = load_config(overrides)
    explicit_dir = any(o.split("=", 1)[0].lstrip("+") == "run_dir" for o in ctx.args)
    if explicit_dir:
        run_dir = Path(cfg.run_dir)
    else:
        now = datetime.now()
        run_dir = Path("outputs") / f"{now:%Y-%m-%d}" / f"{now:%H-%M-%S}-retrain-{cfg.dataset.name}-{cfg.space.name}"
    check_job(cfg)
    retrain_run(cfg, arch, source, run_dir, overrides)


@app.command()
def report(
    paths: list[Path] = typer.Argument(..., help="Run directories, sweep directories or any parent folder."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the table (numeric columns) as CSV."),
    md: Optional[Path] = typer.Option(None, "--md", help="Also write the table as Markdown."),
    html: Optional[Path] = typer.Option(
        None, "--html", help="Also write a self-contained HTML page: the table, curves, Pareto fronts, architectures."
    ),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Also write the HTML page's figures as PNG files here."),
) -> None:
    """Compare runs: one row per setting, with mean ± std over seeds; --html and --plots draw them."""
    from nascli.report import display_table, report as build_report

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
        table.to_csv(csv, index=False)
        console.print(f"wrote {csv}")
    if md:
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
) -> None:
    """Show one run in detail: outcome, config, best architecture, top trials, retraining, files."""
    from nascli.show import show as show_run

    show_run(run_dir, console, top)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory with a retrained model (retrain/model.pt)."),
    format: str = typer.Option("torchscript", "--format", help="torchscript or onnx (pip install 'nascli[onnx]')."),
    out: Optional[Path] = typer.Option(None, "--out", help="The file to write (default: RUN_DIR/export/model.ts|onnx)."),
) -> None:
    """Export the retrained model, checking that the file reproduces the checkpoint's outputs."""
    from nascli.export import SAMPLE_BATCH, export as export_model

    path, difference = export_model(run_dir, format, out)
    console.print(f"wrote {path} ({format}); on a batch of {SAMPLE_BATCH} its outputs match the checkpoint's "
                  f"within {difference:.1e}")


@app.command("list")
def list_options() -> None:
    """Show the options of every config group (the default is marked *)."""
    defaults = default_options()
    table = Table("group", "option", "description")
    for group in GROUPS:
        for option, description in group_options(group).items():
            mark = " *" if defaults.get(group) == option else ""
            table.add_row(group, option + mark, description)
    console.print(table)
    console.print("Pick one with group=option; see every key with `nas search --cfg job`.")


def main() -> None:
    """Entry point of the `nas` console script."""
    try:
        app()
    except UserError as exc:
        exit_with(exc)
