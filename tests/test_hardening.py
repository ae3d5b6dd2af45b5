"""Hardening: a run directory is data, trial faults keep the search going, bad input is one line of error."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pytest
import torch
import yaml

from conftest import TINY, interrupt_on_call, read_trials
from nascli.cli import main
from nascli.errors import TrialFailed
from nascli.evaluators.train import TrainEvaluator
from nascli.spaces.chain import OPS as CHAIN_OPS, ChainSettings
from test_errors import assert_one_line_error

Nas = Callable[..., tuple[int, str, str]]
ZEN = "The Zen of Python"


def tiny(*overrides: str) -> list[str]:
    """TINY with the given overrides replacing any of TINY's for the same key."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [o for o in TINY if o.split("=", 1)[0] not in keys] + list(overrides)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def edit_json(path: Path, change: Callable[[Any], Any]) -> None:
    """Rewrite a JSON file with `change` applied to its content."""
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def set_status(run: Path, status: str) -> None:
    """Make summary.json say the run ended with `status`."""
    edit_json(run / "summary.json", lambda s: {**s, "status": status})


def edit_config(run: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit a run's config.yaml in place, as someone tampering with it would."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    change(config)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One TINY search with a 1-epoch retraining, made once and copied by the tests that only read or tamper."""
    base = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(base)
        mp.setattr(sys, "argv", ["nas", "search", *TINY, "run_dir=run"])
        with pytest.raises(SystemExit) as exit_info:
            main()
            raise SystemExit(0)
        assert exit_info.value.code in (0, None)
    assert (base / "run" / "retrain" / "model.pt").is_file()
    return base / "run"


@pytest.fixture
def run(template: Path, workdir: Path) -> Path:
    """A copy of the template run, marked interrupted so that it may be resumed."""
    path = workdir / "run"
    shutil.copytree(template, path)
    set_status(path, "interrupted")
    return path


@pytest.fixture
def no_this(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Forget the `this` module, so that importing it would print the Zen of Python again; check it was not."""
    monkeypatch.delitem(sys.modules, "this", raising=False)
    yield
    assert "this" not in sys.modules


@pytest.fixture
def tabular_run(nas: Nas, workdir: Path, table: Path) -> Path:
    """A finished 4-trial tabular NB201 search (instant)."""
    code, _, err = nas("search", "space=nb201", "evaluator=tabular", f"evaluator.table={table}",
                       "search.max_trials=4", "run_dir=tab")
    assert code == 0, err
    return workdir / "tab"


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `nas` in a fresh Python process."""
    return subprocess.run([sys.executable, "-m", "nascli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


# -- 1. security: names and _target_ in a stored config are never imported or instantiated -------------------

TAMPERED_NAMES = ["this", "os.system", "nascli.spaces.chain.ChainSpace"]


@pytest.mark.parametrize("group", ["space", "strategy", "dataset"])
@pytest.mark.parametrize("name", TAMPERED_NAMES)
@pytest.mark.parametrize("command", ["resume", "retrain"])
def test_tampered_component_name_is_refused_and_never_imported(
    nas: Nas, run: Path, no_this: None, group: str, name: str, command: str
) -> None:
    """A stored config naming a module or class as a component is a one-line error; nothing is imported."""
    edit_config(run, lambda c: c[group].update(name=name))
    args = ["search", "--resume", str(run)] if command == "resume" else ["retrain", str(run), "run_dir=rt"]
    code, out, err = nas(*args)
    assert_one_line_error(code, err, name)
    assert ZEN not in out + err
    assert not (run.parent / "rt").exists()


@pytest.mark.parametrize("target", ["this.Anything", "os.system"])
@pytest.mark.parametrize("command", ["resume", "retrain"])
def test_tampered_target_key_is_an_unknown_key_and_never_instantiated(
    nas: Nas, run: Path, workdir: Path, no_this: None, target: str, command: str
) -> None:
    """An added `_target_` in a stored config group is refused as an unknown key; it is never instantiated."""
    marker = workdir / "MARKER"
    edit_config(run, lambda c: c["space"].update({"_target_": target, "_args_": [f"touch {marker}"]}))
    args = ["search", "--resume", str(run)] if command == "resume" else ["retrain", str(run), "run_dir=rt"]
    code, out, err = nas(*args)
    assert_one_line_error(code, err, "unknown key", "_target_")
    assert ZEN not in out + err and not marker.exists()


@pytest.mark.parametrize("command", ["resume", "retrain"])
def test_tampered_config_in_a_fresh_process_imports_nothing(run: Path, workdir: Path, command: str) -> None:
    """In a fresh process (where `this` was surely never imported) a tampered run imports and runs nothing."""
    marker = workdir / "MARKER"

    def tamper(config: dict[str, Any]) -> None:
        config["space"]["name"] = "this"
        config["strategy"].update({"_target_": "os.system", "_args_": [f"touch {marker}"]})

    edit_config(run, tamper)
    args = ["search", "--resume", "run"] if command == "resume" else ["retrain", "run", "run_dir=rt"]
    result = cli(*args, cwd=workdir)
    assert_one_line_error(result.returncode, result.stderr)
    assert ZEN not in result.stdout + result.stderr and not marker.exists()


@pytest.mark.parametrize(
    "override, fragment",
    [("space=../../x", "unknown space"), ("dataset.num_samples=${oc.env:HOME}", "interpolation"),
     ("+space._target_=os.system", "_target_")],
)
def test_retrain_refuses_tampered_stored_overrides(nas: Nas, run: Path, override: str, fragment: str) -> None:
    """`nas retrain RUN` reuses run.json's overrides: a path-like option, an interpolation or a _target_ is refused."""
    edit_json(run / "run.json", lambda r: {**r, "overrides": [*r["overrides"], override]})
    code, _, err = nas("retrain", str(run), "run_dir=rt")
    assert_one_line_error(code, err, fragment)
    assert not (run.parent / "rt").exists()


# -- 2. security: interpolations in a stored config are refused, never resolved --------------------------------


@pytest.mark.parametrize("key", ["run_dir", "dataset.noise"])
@pytest.mark.parametrize("command", ["resume", "show", "report"])
def test_stored_env_interpolation_is_refused_and_the_secret_never_leaks(
    nas: Nas, run: Path, monkeypatch: pytest.MonkeyPatch, key: str, command: str
) -> None:
    """An `${oc.env:...}` in a stored config is a one-line error naming the interpolation; its value leaks nowhere."""
    secret = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("SECRET_NASCLI_TEST", secret)

    def plant(config: dict[str, Any]) -> None:
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = "${oc.env:SECRET_NASCLI_TEST}"

    edit_config(run, plant)
    args = {"resume": ["search", "--resume", str(run)], "show": ["show", str(run)], "report": ["report", str(run)]}
    code, out, err = nas(*args[command])
    assert_one_line_error(code, err, "interpolation")
    assert secret not in out + err
    for name, data in snapshot(run).items():
        assert secret.encode() not in data, name


# -- 4. security: a malicious checkpoint is never unpickled ----------------------------------------------------


class Malicious:
    """Unpickling this runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (self.command,)


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
@pytest.mark.parametrize("command", ["export", "show"])
def test_malicious_checkpoint_is_never_unpickled(
    nas: Nas, run: Path, workdir: Path, writer: str, command: str
) -> None:
    """A retrain/model.pt that would run code when unpickled is a one-line error; the code never runs."""
    marker = workdir / "MARKER"
    evil = {"arch": {"blocks": []}, "payload": Malicious(f"touch {marker}")}
    with open(run / "retrain" / "model.pt", "wb") as f:
        torch.save(evil, f) if writer == "torch.save" else pickle.dump(evil, f)
    code, _, err = nas(command, str(run))
    assert_one_line_error(code, err, "model.pt")
    assert not marker.exists()


# -- 5-9. trial faults and exit codes ----------------------------------------------------------------------


def test_table_with_a_non_number_is_refused_before_the_run_dir_exists(nas: Nas, workdir: Path, table: Path) -> None:
    """A val_acc cell holding `abc` is a one-line error naming the column, and no run directory is created."""
    frame = pd.read_csv(table)
    frame["val_acc"] = frame["val_acc"].astype(object)
    frame.loc[7, "val_acc"] = "abc"
    frame.to_csv(workdir / "bad.csv", index=False)
    assert not (workdir / "run").exists()
    code, _, err = nas("search", "space=nb201", "evaluator=tabular", "evaluator.table=bad.csv", "run_dir=run")
    assert_one_line_error(code, err, "val_acc", "abc")
    assert not (workdir / "run").exists()


def test_table_without_the_objective_column_is_refused_before_the_run_dir_exists(
    nas: Nas, workdir: Path, table: Path
) -> None:
    """A table without a val_acc column is a one-line error naming it, and no run directory is created."""
    pd.read_csv(table).drop(columns="val_acc").to_csv(workdir / "bad.csv", index=False)
    assert not (workdir / "run").exists()
    code, _, err = nas("search", "space=nb201", "evaluator=tabular", "evaluator.table=bad.csv", "run_dir=run")
    assert_one_line_error(code, err, "val_acc")
    assert not (workdir / "run").exists()


def test_search_where_no_trial_succeeds_exits_1_with_one_line(
    nas: Nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When every trial fails the search exits 1 with one stderr line saying none succeeded."""

    def fail(self: TrainEvaluator, arch: Any, seed: int, budget: Any = None, fold: int = 0) -> dict[str, Any]:
        raise TrialFailed("training diverged: loss is nan in epoch 1")

    monkeypatch.setattr(TrainEvaluator, "evaluate", fail)
    code, _, err = nas("search", *tiny("search.max_trials=2"), "run_dir=run")
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert "none of the 2 trials succeeded" in lines[0]
    assert [t["status"] for t in read_trials(workdir / "run")] == ["failed", "failed"]


def test_memory_error_fails_one_trial_and_the_search_completes(
    nas: Nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A MemoryError inside a trial is recorded as `out of memory` and the search goes on to exit 0."""
    original = TrainEvaluator.evaluate
    calls: list[Any] = []

    def low_memory(self: TrainEvaluator, arch: Any, seed: int, budget: Any = None, fold: int = 0) -> dict[str, Any]:
        calls.append(arch)
        if len(calls) == 2:
            raise MemoryError
        return original(self, arch, seed, budget, fold)

    monkeypatch.setattr(TrainEvaluator, "evaluate", low_memory)
    code, _, err = nas("search", *tiny("retrain.enabled=false"), "run_dir=run")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert [t["status"] for t in trials] == ["ok", "failed", "ok"]
    assert trials[1]["error"] == "out of memory"
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["n_failed"] == 1


def test_resume_after_a_crash_records_the_killing_trial_as_failed(
    nas: Nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pending trial that already killed the process once is recorded as failed on resume, not run again."""
    original = TrainEvaluator.evaluate
    interrupt_on_call(monkeypatch, 3)
    code, _, err = nas("search", *tiny("retrain.enabled=false"), "run_dir=run")
    assert code == 130, err
    run = workdir / "run"
    state = json.loads((run / "state.json").read_text())
    assert [p["id"] for p in state["pending"]] == [2]
    state["pending"][0]["attempts"] = 1  # the previous process already died once while running trial 2
    (run / "state.json").write_text(json.dumps(state))
    set_status(run, "running")  # as a hard crash leaves it
    calls: list[Any] = []

    def counted(self: TrainEvaluator, arch: Any, seed: int, budget: Any = None, fold: int = 0) -> dict[str, Any]:
        calls.append(arch)
        return original(self, arch, seed, budget, fold)

    monkeypatch.setattr(TrainEvaluator, "evaluate", counted)
    code, _, err = nas("search", "--resume", str(run))
    assert code == 0, err
    trials = read_trials(run)
    assert [t["id"] for t in trials] == [0, 1, 2]
    assert trials[2]["status"] == "failed" and "died" in trials[2]["error"]
    assert calls == []
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_resume_without_a_checkpoint_but_with_trials_is_refused(nas: Nas, tabular_run: Path, damage: str) -> None:
    """With trials logged but state.json missing or empty, resume is a one-line error and repeats no trial."""
    set_status(tabular_run, "interrupted")
    if damage == "deleted":
        (tabular_run / "state.json").unlink()
    else:
        (tabular_run / "state.json").write_text("")
    code, _, err = nas("search", "--resume", str(tabular_run))
    assert_one_line_error(code, err, "state.json")
    ids = [t["id"] for t in read_trials(tabular_run)]
    assert len(ids) == len(set(ids)) == 4


@pytest.mark.parametrize("log", ["absent", "empty"])
def test_resume_without_checkpoint_or_trials_starts_afresh(nas: Nas, tabular_run: Path, log: str) -> None:
    """With neither state.json nor logged trials, resume runs the whole search: each id exactly once."""
    (tabular_run / "state.json").unlink()
    (tabular_run / "summary.json").unlink()
    if log == "absent":
        (tabular_run / "trials.jsonl").unlink()
    else:
        (tabular_run / "trials.jsonl").write_text("")
    code, _, err = nas("search", "--resume", str(tabular_run))
    assert code == 0, err
    assert sorted(t["id"] for t in read_trials(tabular_run)) == [0, 1, 2, 3]


# -- 10-13. resume and read commands on damaged run directories ---------------------------------------------


@pytest.mark.parametrize("override", ["dataset=mnist", "search.max_trials=-1", "strategy=random", "search.nope=1"])
def test_refused_resume_leaves_every_file_byte_identical(nas: Nas, run: Path, override: str) -> None:
    """A resume that fails validation changes no byte of any file of the run directory, hidden ones included."""
    (run / ".lock").unlink(missing_ok=True)  # whether a refused resume may create the lock file is checked too
    before = snapshot(run)
    code, _, err = nas("search", "--resume", str(run), override)
    assert_one_line_error(code, err)
    assert snapshot(run) == before


@pytest.mark.parametrize("text", ["a: [\n", "seed: 0\nrun_dir: run\n"], ids=["unparsable", "no-space"])
def test_resume_with_a_broken_config_is_one_line(nas: Nas, run: Path, text: str) -> None:
    """A config.yaml that does not parse, or lacks `space:`, is a one-line error on resume."""
    (run / "config.yaml").write_text(text)
    code, _, err = nas("search", "--resume", str(run))
    assert_one_line_error(code, err)


@pytest.mark.parametrize("command", ["show", "report", "resume"])
def test_trial_log_line_that_is_not_an_object_is_one_line(nas: Nas, run: Path, command: str) -> None:
    """A trials.jsonl line `42` is a one-line error for show, report and resume."""
    lines = (run / "trials.jsonl").read_text().splitlines()
    (run / "trials.jsonl").write_text("\n".join([lines[0], "42", *lines[1:]]) + "\n")
    args = {"resume": ["search", "--resume", str(run)], "show": ["show", str(run)], "report": ["report", str(run)]}
    code, _, err = nas(*args[command])
    assert_one_line_error(code, err, "trials.jsonl")


def test_trial_without_metrics_is_one_line_in_show(nas: Nas, run: Path) -> None:
    """A logged trial without `metrics` makes `nas show` a one-line error naming the trial log."""
    trials = read_trials(run)
    del trials[1]["metrics"]
    (run / "trials.jsonl").write_text("".join(json.dumps(t) + "\n" for t in trials))
    code, _, err = nas("show", str(run))
    assert_one_line_error(code, err, "trials.jsonl", "metrics")


@pytest.mark.parametrize("command", ["show", "report"])
def test_summary_that_is_a_list_is_one_line(nas: Nas, run: Path, command: str) -> None:
    """A summary.json holding a JSON list is a one-line error for show and report."""
    (run / "summary.json").write_text("[1, 2]\n")
    code, _, err = nas(command, str(run))
    assert_one_line_error(code, err, "summary.json")


# -- 14-18. bad inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [(["=3"], "override"), (["run_dir="], "run_dir"), (["run_dir=afile"], "afile"),
     (["run_dir=afile/sub"], "afile"), (["run_dir=/proc/nascli-test/run"], "/proc/nascli-test"),
     (["evaluator.epoch_seconds=-1"], "epoch_seconds must be positive"), (["search.max_trials=0"], "max_trials")],
    ids=["no-key", "empty-run-dir", "run-dir-is-a-file", "run-dir-inside-a-file", "run-dir-uncreatable",
         "negative-epoch-seconds", "no-trials"],
)
def test_bad_search_arguments_are_one_line_and_create_nothing(
    nas: Nas, workdir: Path, args: list[str], fragment: str
) -> None:
    """Malformed overrides and unusable run_dir values are one-line errors; no outputs/ folder appears."""
    (workdir / "afile").write_text("mine")
    code, _, err = nas("search", *tiny("retrain.enabled=false"), *args)
    assert_one_line_error(code, err, fragment)
    assert not (workdir / "outputs").exists()
    assert (workdir / "afile").read_text() == "mine"
    assert sorted(p.name for p in workdir.iterdir()) == ["afile"]


@pytest.mark.parametrize("content", [{"hash": "x"}, {"hash": "x", "space": "chain"}, [1, 2]],
                         ids=["hash-only", "no-arch", "list"])
def test_retrain_of_a_file_without_an_architecture_is_one_line(
    nas: Nas, workdir: Path, content: Any
) -> None:
    """A best.json-like file without `arch`, or a JSON list, is a one-line error for `nas retrain`."""
    (workdir / "best.json").write_text(json.dumps(content))
    code, _, err = nas("retrain", "best.json", *TINY, "run_dir=rt")
    assert_one_line_error(code, err, "best.json")
    assert not (workdir / "rt").exists()


def test_report_to_an_unwritable_csv_is_one_line(nas: Nas, run: Path) -> None:
    """`nas report --csv` to a path that cannot be written is a one-line error naming it."""
    code, _, err = nas("report", str(run), "--csv", "/proc/nascli/x.csv")
    assert_one_line_error(code, err, "/proc/nascli/x.csv")


@pytest.mark.parametrize("out", ["adir", "/proc/nascli/x.ts"], ids=["directory", "unwritable"])
def test_export_to_a_bad_out_path_is_one_line(nas: Nas, run: Path, workdir: Path, out: str) -> None:
    """`nas export --out` naming a directory or an unwritable path is a one-line error; the directory is kept."""
    (workdir / "adir").mkdir()
    (workdir / "adir" / "keep.txt").write_text("mine")
    code, _, err = nas("export", str(run), "--out", out)
    assert_one_line_error(code, err, out)
    assert [p.name for p in (workdir / "adir").iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("damage", ["no-arch", "wrong-shape"])
def test_export_of_a_mismatched_checkpoint_is_one_line(nas: Nas, run: Path, damage: str) -> None:
    """A checkpoint without `arch`, or with a tensor of the wrong shape, is a one-line error for `nas export`."""
    path = run / "retrain" / "model.pt"
    checkpoint = torch.load(path, weights_only=True)
    if damage == "no-arch":
        del checkpoint["arch"]
    else:
        name = next(k for k, v in checkpoint["state_dict"].items() if v.dim() >= 2)
        checkpoint["state_dict"][name] = torch.zeros(3, 3)
    torch.save(checkpoint, path)
    code, _, err = nas("export", str(run))
    assert_one_line_error(code, err, "model.pt")
    assert not (run / "export" / "model.ts").exists()


def test_show_with_negative_top_is_one_line(nas: Nas, run: Path) -> None:
    """`nas show RUN --top -1` is a one-line error."""
    code, _, err = nas("show", str(run), "--top", "-1")
    assert_one_line_error(code, err, "--top")


# -- 19-20. retraining a search run ------------------------------------------------------------------------


def test_retrain_of_a_tabular_search_needs_a_dataset_then_works(nas: Nas, workdir: Path, tabular_run: Path) -> None:
    """Retraining a tabular search says to pass dataset=; with one (and a small nb201) it trains and writes metrics."""
    code, _, err = nas("retrain", str(tabular_run), "run_dir=rt0")
    assert_one_line_error(code, err, "dataset=")
    assert not (workdir / "rt0").exists()
    code, _, err = nas("retrain", str(tabular_run), "dataset=synthetic", "dataset.num_samples=200", "hardware=cpu",
                       "retrain.epochs=1", "run_dir=rt", "space.cells_per_stage=1")
    assert code == 0, err
    assert "test_acc" in json.loads((workdir / "rt" / "retrain" / "metrics.json").read_text())
    config = yaml.safe_load((workdir / "rt" / "config.yaml").read_text())
    assert config["space"]["name"] == "nb201" and config["space"]["cells_per_stage"] == 1


def test_retrain_sweep_runs_one_job_per_seed(nas: Nas, run: Path, workdir: Path) -> None:
    """`nas retrain RUN -m seed=0,1` goes through Hydra's multirun: two job folders, each a finished retraining."""
    code, _, err = nas("retrain", str(run), "-m", "seed=0,1", "retrain.epochs=1", "sweep_dir=rs")
    assert code == 0, err
    jobs = sorted(p for p in (workdir / "rs").iterdir() if p.is_dir())
    assert len(jobs) == 2, jobs
    seeds = set()
    for job in jobs:
        assert (job / "retrain" / "metrics.json").is_file()
        assert json.loads((job / "summary.json").read_text())["kind"] == "retrain"
        seeds.add(yaml.safe_load((job / "config.yaml").read_text())["seed"])
    assert seeds == {0, 1}


# -- 21-23. config ownership and sweeps -------------------------------------------------------------------


def test_cfg_job_shows_every_chain_key_and_hardware_trials_per_gpu(nas: Nas, workdir: Path) -> None:
    """`nas search --cfg job` prints every chain-space key, its ops in OPS order, and hardware.trials_per_gpu."""
    code, out, err = nas("search", "--cfg", "job")
    assert code == 0, err
    config = yaml.safe_load(out)
    fields = {f.name for f in dataclasses.fields(ChainSettings)}
    assert set(config["space"]) == fields | {"name"}
    assert config["space"]["ops"] == list(CHAIN_OPS)
    assert "trials_per_gpu" in config["hardware"]
    assert not (workdir / "outputs").exists()


def test_dataset_hflip_is_accepted_for_synthetic_data(nas: Nas, workdir: Path) -> None:
    """`dataset.hflip=true` is a valid key of the synthetic dataset and reaches the stored config."""
    code, _, err = nas("search", "dataset.hflip=true", *tiny("retrain.enabled=false", "search.max_trials=2"),
                       "run_dir=r")
    assert code == 0, err
    assert yaml.safe_load((workdir / "r" / "config.yaml").read_text())["dataset"]["hflip"] is True


def test_optuna_sweep_is_not_broken_by_nascli_checks(nas: Nas, workdir: Path) -> None:
    """A sweep whose jobs another sweeper (Optuna) expands runs: two jobs, each a run folder with summary.json."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    code, _, err = nas("search", "-m", "evaluator.lr=interval(0.01,0.1)", "hydra/sweeper=optuna",
                       "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
                       *tiny("retrain.enabled=false", "search.max_trials=2"), "sweep_dir=opt")
    assert code == 0, err
    runs = [p for p in (workdir / "opt").iterdir() if (p / "summary.json").is_file()]
    assert len(runs) == 2, list((workdir / "opt").iterdir())


def test_bad_value_in_a_later_sweep_job_fails_before_any_job(nas: Nas, workdir: Path) -> None:
    """A basic sweep whose second job has max_trials=-1 is a one-line error before any job; sweep_dir is not made."""
    code, _, err = nas("search", "-m", *tiny("search.max_trials=2,-1", "retrain.enabled=false"), "sweep_dir=sw")
    assert_one_line_error(code, err, "max_trials")
    assert not (workdir / "sw").exists()
