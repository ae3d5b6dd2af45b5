"""What a new user types works as written: `~` paths, README examples, extras, --version, completion, `nas list`."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from nascli import __version__
from nascli.config import expand_home, group_options, parse_overrides
from test_errors import assert_one_line_error

ROOT = Path(__file__).resolve().parent.parent


def tabular(table: Path, *overrides: str) -> list[str]:
    """A search that looks scores up in `table`: no training, done in a second."""
    return ["space=nb201", "evaluator=tabular", f"evaluator.table={table}", "strategy=random",
            "search.max_trials=2", *overrides]


def test_a_tilde_starts_a_path_as_in_the_shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    home = str(tmp_path)
    assert expand_home(["dataset.root=~/photos", "run_dir=~", "-m", "dataset.root=~/a,~/b", "x=[~/a,'~/b']"]) == [
        f"dataset.root={home}/photos", f"run_dir={home}", "-m", f"dataset.root={home}/a,{home}/b",
        f"x=[{home}/a,'{home}/b']"]
    # the shell's rules: only a leading ~ (or ~user) is a home folder; a key's ~ deletes it in Hydra
    assert expand_home(["x=a/~/b", "~dataset.root", "x=~nosuchuser4711/a"]) == [
        "x=a/~/b", "~dataset.root", "x=~nosuchuser4711/a"]


def test_a_home_run_dir_is_made_there_quoted_or_not(nas, workdir: Path, table: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`run_dir=~/runs/a` (which Hydra's grammar would refuse) and `run_dir='~/runs/b'` (which Hydra would take for
    a folder named ~ in the working directory) both write under $HOME."""
    monkeypatch.setenv("HOME", str(workdir / "home"))
    for override in ("run_dir=~/runs/a", "run_dir='~/runs/b'"):
        code, _, err = nas("search", *tabular(table, override))
        assert code == 0, err
    assert (workdir / "home" / "runs" / "a" / "summary.json").is_file()
    assert (workdir / "home" / "runs" / "b" / "summary.json").is_file()
    assert not (workdir / "~").exists()


def test_every_readme_command_parses_as_written() -> None:
    """Each `nas ...` line of README's bash blocks holds only overrides Hydra's grammar takes (after `~` expansion)."""
    text = (ROOT / "README.md").read_text()
    commands = [line for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL) for line in block.splitlines()
                if line.startswith("nas ")]
    assert len(commands) > 20 and any("=~/" in line for line in commands)
    for line in commands:
        words = shlex.split(line, comments=True)
        parse_overrides(expand_home([w for w in words[2:] if "=" in w and not w.startswith("-")]))


@pytest.mark.parametrize("objective, best_of", [([], max), (["search.objectives=[latency:min]"], min)],
                         ids=["val_acc", "latency-min"])
def test_optuna_reports_the_best_job_as_best(nas, workdir: Path, table: Path, objective: list[str],
                                             best_of: Callable[[list[float]], float]) -> None:
    """Optuna's best value is the best job's: the highest val_acc, or the lowest latency when that is minimised."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    scores = pd.read_csv(table)
    scores.assign(latency=(scores["val_acc"] * 7) % 13 + 1).to_csv(table, index=False)  # not in val_acc's order
    code, _, err = nas("search", "-m", "seed=range(0,10)", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3",
                       "hydra.sweeper.n_jobs=1", "hydra.sweeper.sampler.seed=0",
                       *tabular(table, "search.max_trials=1", "evaluator.costs=[latency]", *objective, "sweep_dir=opt"))
    assert code == 0, err
    summaries = [json.loads(p.read_text()) for p in (workdir / "opt").glob("*/summary.json")]
    values = [s["best"][s["objective"]] for s in summaries]
    assert len(values) == 3 and len(set(values)) > 1, values  # jobs that differ, so the wrong direction would show
    best = yaml.safe_load((workdir / "opt" / "optimization_results.yaml").read_text())["best_value"]
    assert best == best_of(values)


def test_a_sweeper_direction_against_the_objective_is_refused(nas, workdir: Path, table: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    code, _, err = nas("search", "-m", "seed=range(0,10)", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                       "hydra.sweeper.direction=minimize", *tabular(table, "sweep_dir=opt"))
    assert_one_line_error(code, err, "hydra.sweeper.direction=maximize")
    assert not any((workdir / "opt").glob("*/summary.json"))


@pytest.mark.parametrize("module, overrides, hint", [
    ("torchvision", ["space=head", "space.backbone=torchvision:resnet18"], "nascli[vision]"),
    ("librosa", ["dataset=audio_folder", "dataset.root=sounds"], "nascli[audio]"),
    ("librosa", ["dataset=multimodal", "dataset.inputs={clip: audio}", "dataset.train=t.csv"], "nascli[audio]"),
    ("onnxruntime", ["dataset=synthetic", "evaluator.latency=onnxruntime"], "nascli[onnx]"),
    ("hydra_plugins.hydra_optuna_sweeper", ["-m", "hydra/sweeper=optuna", "seed=range(0,2)"], "nascli[optuna]"),
    ("hydra_plugins.hydra_submitit_launcher", ["-m", "hydra/launcher=slurm", "seed=0,1"], "nascli[slurm]"),
], ids=["torchvision-backbone", "audio-folder", "audio-column", "onnxruntime-latency", "optuna", "slurm"])
def test_a_missing_extra_is_one_line_before_any_run_dir(nas, workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                        module: str, overrides: list[str], hint: str) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else find_spec(name, *a))
    code, _, err = nas("search", *overrides, "run_dir=run", "sweep_dir=sweep")
    assert_one_line_error(code, err, f"pip install '{hint}'")
    assert "not installed" in err and not (workdir / "run").exists() and not (workdir / "sweep").exists()


def test_the_torchvision_backbone_is_refused_here_without_patching(nas, workdir: Path) -> None:
    """On a machine without torchvision (this CPU box), the search stops before trials that would all fail."""
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed")
    code, _, err = nas("search", "space=head", "space.backbone=torchvision:resnet18", "run_dir=run")
    assert_one_line_error(code, err, "space.backbone=torchvision:resnet18 needs torchvision")
    assert not (workdir / "run").exists()


def test_version_names_nascli_torch_and_the_device(nas) -> None:
    code, out, _ = nas("--version")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert code == 0
    lines = out.splitlines()
    assert lines[:2] == [f"nascli {__version__}", f"torch {torch.__version__}"]
    assert lines[2].startswith(f"device {device}") and len(lines) == 3


def test_shell_completion_is_typers(nas, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")  # take the shell given, not the parent's
    code, out, _ = nas("--show-completion", "bash")
    assert code == 0 and "_NAS_COMPLETE=complete_bash" in out and "complete " in out
    code, _, err = nas("search", "-sc", "install=bash")
    assert_one_line_error(code, err, "nas --install-completion")


def test_list_shows_each_description_whole(nas) -> None:
    described = group_options("dataset")
    assert described["fashion_mnist"].endswith("dataset.crop_padding=2 brings it back.")
    assert described["av_digits"].endswith("paired with a spoken recording of its digit.")
    assert "@package" not in group_options("strategy")["darts"]
    code, out, _ = nas("list")
    flat = re.sub(r"[\s│]+", " ", out)
    assert code == 0 and "each paired with a spoken recording of its digit." in flat
