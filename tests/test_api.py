"""The Python API: the README's example runs as written, and mistakes raise UserError with nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from nascli import api

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The first python code block of the README's Python API section."""
    section = README.read_text().split("\n## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(workdir: Path, capsys: pytest.CaptureFixture) -> None:
    namespace: dict = {}
    exec(compile(readme_example(), str(README), "exec"), namespace)
    run, again = namespace["run"], namespace["again"]
    assert run.summary.status == "completed" and again.summary.status == "completed"
    assert list(run.trials.index) == [t.id for t in run.records] and "val_acc" in run.trials.columns
    assert run.best.arch == again.best.arch and again.best.source == str(run.path)  # it took the search's best
    assert again.config.dataset.name == run.config.dataset.name  # and its settings
    model = run.model()
    assert not model.training and isinstance(model, torch.nn.Module)
    assert run.path == workdir / "runs" / "api" and again.path.is_absolute()
    assert [r.path for r in api.find(["."])] == sorted([run.path, again.path])
    capsys.readouterr()
    quiet = api.search(["search.max_trials=1", "evaluator.epochs=1", "retrain.enabled=false"], run_dir="q", quiet=True)
    assert quiet.summary.status == "completed" and capsys.readouterr().out == ""


def test_mistakes_raise_user_error_and_write_nothing(workdir: Path) -> None:
    with pytest.raises(api.UserError, match="unknown strategy 'nope'"):
        api.search(["strategy=nope"], run_dir="run")
    with pytest.raises(api.UserError, match="is not a run directory"):
        api.load_run(workdir)
    with pytest.raises(api.UserError, match="does not exist"):
        api.retrain(workdir / "missing", run_dir="again")
    assert not any(workdir.iterdir())


def test_a_tilde_in_an_override_is_the_home_folder_as_in_the_cli(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(workdir / "home"))
    with pytest.raises(api.UserError, match=re.escape(f"{workdir / 'home' / 'photos'}")):
        api.search(["dataset=folder", "dataset.root=~/photos"], run_dir="run")
