"""The visual report: every figure drawn and non-empty, the HTML page self-contained, PNG files on request."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import matplotlib.image

from nascli.figures import best_so_far, pareto_front
from nascli.records import Trial

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_drawn_png(data: bytes) -> bool:
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    return data.startswith(PNG_MAGIC) and pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 0.01


def test_html_report_embeds_every_figure_and_needs_nothing_else(nas, workdir: Path, report_runs: Path) -> None:
    code, out, err = nas("report", str(report_runs), "--html", "report.html", "--plots", "plots")
    assert code == 0, err
    page = (workdir / "report.html").read_text()
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)">', page)
    # curves and Pareto per dataset/space, 5 architectures, the learning curves of the one run that trained
    assert len(images) == page.count("<img") == 2 * 2 + 5 + 1
    assert all(_is_drawn_png(base64.b64decode(data)) for data in images)
    assert not re.search(r'(src|href)="(?!data:)', page) and "<link" not in page and "http" not in page
    assert "table:table" in page and "± " in page  # the runs table, mean ± std over seeds
    plots = sorted(p.name for p in (workdir / "plots").iterdir())
    assert len(plots) == 10 and [name.split("-")[0] for name in plots].count("arch") == 5
    assert {"curves-synthetic-chain-val_acc.png", "pareto-table_table-nb201-val_acc.png",
            "learning-trained.png"} <= set(plots)
    assert all(_is_drawn_png((workdir / "plots" / name).read_bytes()) for name in plots)


def test_report_of_runs_without_trial_times_or_costs_still_draws(nas, workdir: Path, report_runs: Path) -> None:
    for log in report_runs.rglob("trials.jsonl"):  # as written by an older nascli: no elapsed times
        log.write_text(re.sub(r', "elapsed": [0-9.]+', "", log.read_text()))
    code, _, err = nas("report", str(report_runs / "sweep"), "--plots", "plots")
    assert code == 0, err
    assert _is_drawn_png((workdir / "plots" / "curves.png").read_bytes())
    assert _is_drawn_png((workdir / "plots" / "pareto.png").read_bytes())


def test_pareto_front_keeps_points_no_other_beats_on_cost_and_accuracy() -> None:
    points = [(10, 50), (20, 60), (15, 40), (30, 60), (5, 30), (40, 70), (20, 55)]
    assert pareto_front(points) == [(5, 30), (10, 50), (20, 60), (40, 70)]


def test_best_so_far_skips_failed_trials() -> None:
    trials = [Trial(i, {}, "h", status, {"val_acc": value} if value else {})
              for i, (status, value) in enumerate([("failed", None), ("ok", 3.0), ("ok", 2.0), ("ok", 5.0)])]
    curve = best_so_far(trials, "val_acc")
    assert curve[1:] == [3.0, 3.0, 5.0] and curve[0] != curve[0]
