"""The docs stay true to the code: the options reference is generated from the settings and is current."""

from __future__ import annotations

from pathlib import Path

from nascli.options import options_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_the_options_reference_is_current() -> None:
    current = (ROOT / "docs" / "options.md").read_text()
    assert current == options_markdown(), "regenerate it: nas list --markdown > docs/options.md"


def test_every_key_of_every_option_is_described(nas) -> None:
    code, out, _ = nas("list", "--markdown")
    assert code == 0 and out.startswith("# Options reference")
    undescribed = [line for line in out.splitlines() if line.startswith("| `") and line.endswith("|  |")]
    assert not undescribed, "\n".join(undescribed)
