"""The HTML report in a real headless browser (Debian: apt-get install chromium): it loads cleanly, every figure shows."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")]


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", *args],
                          capture_output=True, text=True, timeout=120)


def test_report_opens_in_a_browser_without_errors_and_shows_every_figure(nas, workdir: Path, report_runs: Path) -> None:
    assert nas("report", str(report_runs), "--html", "report.html")[0] == 0
    url = (workdir / "report.html").as_uri()
    loaded = _chromium("--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", "--dump-dom", url)
    assert loaded.returncode == 0, loaded.stderr
    body = re.search(r'<body data-figures="(\d+)" data-figures-shown="(\d+)"', loaded.stdout)
    assert body is not None, "the page's load handler did not run"
    assert int(body.group(1)) == int(body.group(2)) == 9
    assert "Uncaught" not in loaded.stderr and 'class="broken"' not in loaded.stdout
    shot = workdir / "report.png"
    assert _chromium("--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}", url).returncode == 0
    assert shot.stat().st_size > 50_000  # a page of figures, not a blank one
