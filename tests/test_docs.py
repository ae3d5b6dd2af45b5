"""The docs stay true to the code: the options reference is generated from the settings and is current."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_options_reference_is_current_and_describes_every_key(nas) -> None:
    code, out, _ = nas("list", "--markdown")
    assert code == 0 and out.startswith("# Options reference")
    assert (ROOT / "docs" / "options.md").read_text() == out, "regenerate it: nas list --markdown > docs/options.md"
    undescribed = [line for line in out.splitlines() if line.startswith("| `") and line.endswith("|  |")]
    assert not undescribed, "\n".join(undescribed)
