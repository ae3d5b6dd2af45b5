"""A hostile run directory: links out of it, bombs in it, tampered records, and writes over a run's own files."""

from __future__ import annotations

import errno
import json
import os
import resource
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from omegaconf import OmegaConf
from conftest import TINY
from test_errors import assert_one_line_error
from test_hardening import ZEN, Nas, edit_config, edit_json, no_this, run, snapshot, tabular_run, template  # noqa: F401

from nascli.errors import UserError, writing
from nascli.rundir import RunDir

COMMANDS = {
    "resume": lambda run: ["search", "--resume", str(run)],
    "show": lambda run: ["show", str(run)],
    "report": lambda run: ["report", str(run)],
    "export": lambda run: ["export", str(run)],
    "retrain": lambda run: ["retrain", str(run), "run_dir=rt"],
}


DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested deeper than Python's parser can recurse


# -- a stored override never reaches Hydra's own settings ---------------------------------------------------------


@pytest.mark.parametrize("override", ["hydra.searchpath=[pkg://this]", "hydra.searchpath=[file://conf]",
                                      "+hydra/launcher=basic"])
@pytest.mark.parametrize("command", ["resume", "retrain"])
def test_stored_hydra_override_is_refused_and_never_imported(
    nas: Nas, run: Path, no_this: None, override: str, command: str
) -> None:
    """run.json's overrides may not set Hydra's settings (its search path would import or compose from anywhere)."""
    edit_json(run / "run.json", lambda r: {**r, "overrides": [*r["overrides"], override]})
    before = snapshot(run)
    code, out, err = nas(*COMMANDS[command](run), "search.max_trials=4")
    assert_one_line_error(code, err, "hydra")
    assert ZEN not in out + err
    assert snapshot(run) == before


# -- links out of a run directory are refused ---------------------------------------------------------------------


@pytest.mark.parametrize("name, command", [
    ("trials.jsonl", "resume"), ("trials.jsonl", "show"), ("retrain", "resume"), ("export", "export"),
    (".lock", "resume"), ("config.yaml", "show"), ("summary.json", "report"),
])
def test_a_link_out_of_the_run_directory_is_refused(nas: Nas, run: Path, workdir: Path, name: str, command: str) -> None:
    """A file or folder of a run that is a symbolic link is a one-line error; nothing outside is written."""
    outside = workdir / "outside"
    outside.mkdir()
    target = outside / name
    if (run / name).exists():
        (run / name).rename(target)
    (run / name).symlink_to(target)
    before = snapshot(outside)
    code, _, err = nas(*COMMANDS[command](run))
    assert_one_line_error(code, err, "link")
    assert snapshot(outside) == before


def test_a_trial_log_linked_to_a_device_is_refused(nas: Nas, run: Path) -> None:
    (run / "trials.jsonl").unlink()
    (run / "trials.jsonl").symlink_to("/dev/zero")
    code, _, err = nas("show", str(run))
    assert_one_line_error(code, err, "trials.jsonl")


# -- bombs: sizes and depths are bounded when reading ------------------------------------------------------------

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(9)
)


def test_yaml_alias_bomb_in_config_is_refused_quickly(nas: Nas, run: Path) -> None:
    (run / "config.yaml").write_text(LAUGHS)
    code, _, err = nas("show", str(run))
    assert_one_line_error(code, err, "config.yaml")


@pytest.mark.parametrize("where, command", [
    ("best", "show"), ("trial", "report"), ("trial", "show"), ("summary", "report"), ("arch_file", "retrain"),
])
def test_deeply_nested_json_is_one_line(nas: Nas, run: Path, workdir: Path, where: str, command: str) -> None:
    args = COMMANDS[command](run)
    if where == "best":
        (run / "best.json").write_text('{"arch": {"x": ' + DEEP + '}}')
    elif where == "summary":
        (run / "summary.json").write_text('{"kind": "search", "status": "completed", "goal": ' + DEEP + '}')
    elif where == "trial":
        (run / "trials.jsonl").write_text('{"id": 0, "arch": ' + DEEP + '}\n')
    else:
        (workdir / "arch.json").write_text('{"arch": ' + DEEP + '}')
        args = ["retrain", str(workdir / "arch.json"), "run_dir=rt"]
    code, _, err = nas(*args)
    assert_one_line_error(code, err)


def test_deeply_nested_warm_start_run_is_one_line(nas: Nas, run: Path, tabular_run: Path) -> None:
    (tabular_run / "trials.jsonl").write_text('{"id": 0, "arch": {"x": ' + "[" * 500 + "]" * 500 + '}}\n')
    code, _, err = nas("search", "space=nb201", "evaluator=tabular", f"evaluator.table={tabular_run.parent / 'table.csv'}",
                       "search.max_trials=2", f"search.warm_start=[{tabular_run}]", "run_dir=w")
    assert_one_line_error(code, err)


# -- tampered records: every file is checked against its record, one line per problem -------------------------

TAMPERS: dict[str, tuple[str, Callable[[Any], Any], tuple[str, ...]]] = {
    "n_trials-string": ("summary.json", lambda s: {**s, "n_trials": "many"}, ("show", "report")),
    "goal-string": ("summary.json", lambda s: {**s, "goal": "fast"}, ("show", "report")),
    "baselines-list": ("summary.json", lambda s: {**s, "baselines": [1, 2]}, ("show", "report")),
    "best-metrics-list": ("best.json", lambda b: {**b, "metrics": [1, 2]}, ("show",)),
    "metric-string": ("trials.jsonl", lambda t: {**t, "metrics": {**t["metrics"], "val_acc": "high"}},
                      ("show", "report")),
    "confusion-int": ("retrain/metrics.json", lambda m: {**m, "confusion_matrix": 3}, ("show", "report")),
}


@pytest.mark.parametrize("case, command", [(case, command) for case, (_, _, commands) in TAMPERS.items()
                                            for command in commands])
def test_a_mistyped_record_is_one_line(nas: Nas, run: Path, case: str, command: str) -> None:
    name, change, _ = TAMPERS[case]
    if name == "trials.jsonl":
        lines = (run / name).read_text().splitlines()
        lines[0] = json.dumps(change(json.loads(lines[0])))
        (run / name).write_text("\n".join(lines) + "\n")
    else:
        edit_json(run / name, change)
    code, _, err = nas(*COMMANDS[command](run))
    assert_one_line_error(code, err, name)


@pytest.mark.parametrize("change, command", [
    (lambda c: c.update(space="chain"), "show"), (lambda c: c.update(space="chain"), "report"),
    (lambda c: c["space"].update(name="os.system"), "show"), (lambda c: c["space"].update(name="os.system"), "report"),
    (lambda c: c.update(_target_="os.system"), "export"),
], ids=["space-string-show", "space-string-report", "import-path-show", "import-path-report", "target-export"])
def test_a_tampered_config_is_one_line_in_every_command(nas: Nas, run: Path, change: Callable, command: str) -> None:
    edit_config(run, change)
    code, _, err = nas(*COMMANDS[command](run))
    assert_one_line_error(code, err, "config.yaml")


@pytest.mark.parametrize("damage", ["invalid-arch", "state-dict-ints"])
def test_a_tampered_checkpoint_is_one_line_in_show(nas: Nas, run: Path, damage: str) -> None:
    path = run / "retrain" / "model.pt"
    checkpoint = torch.load(path, weights_only=True)
    if damage == "invalid-arch":
        checkpoint["arch"] = {"nonsense": 1}
    else:
        checkpoint["state_dict"] = {k: 1 for k in checkpoint["state_dict"]}
    torch.save(checkpoint, path)
    code, _, err = nas("show", str(run))
    assert_one_line_error(code, err, "model.pt")


def test_warm_start_and_front_records_are_checked(nas: Nas, run: Path) -> None:
    (run / "warm_start.json").write_text(json.dumps({"models": ["a"], "weights": [[1.0]], "tasks": "many"}))
    code, _, err = nas("show", str(run))
    assert_one_line_error(code, err, "warm_start.json")
    (run / "warm_start.json").unlink()
    (run / "front.json").write_text(json.dumps({"objectives": [1, 2], "trials": []}))
    code, _, err = nas("show", str(run))
    assert_one_line_error(code, err, "front.json")


def test_a_goal_or_front_that_does_not_parse_is_one_line(nas: Nas, run: Path, workdir: Path) -> None:
    edit_json(run / "summary.json", lambda s: {**s, "goal": {"objectives": ["x:sideways", "y:max"]}})
    code, _, err = nas("report", str(run), "--html", str(workdir / "r.html"))
    assert_one_line_error(code, err, "summary.json", "x:sideways")
    edit_json(run / "summary.json", lambda s: {k: v for k, v in s.items() if k != "goal"})
    trial = json.loads((run / "trials.jsonl").read_text().splitlines()[0])
    (run / "front.json").write_text(json.dumps({"objectives": ["val_acc:max", "missing:min"], "trials": [trial]}))
    code, _, err = nas("show", str(run))
    assert_one_line_error(code, err, "front.json")


def test_refused_resume_with_an_invalid_pending_architecture_changes_nothing(nas: Nas, run: Path) -> None:
    state = json.loads((run / "state.json").read_text())
    state["pending"] = [{"id": 99, "arch": {"nonsense": 1}}]
    (run / "state.json").write_text(json.dumps(state))
    before = snapshot(run)
    code, _, err = nas("search", "--resume", str(run))
    assert_one_line_error(code, err, "state.json")
    assert snapshot(run) == before


# -- writes over a run's own files, or any file, are refused -----------------------------------------------------


@pytest.mark.parametrize("option, target", [("--csv", "trials.jsonl"), ("--md", "summary.json"),
                                            ("--html", "best.json")])
def test_report_never_writes_over_a_runs_files(nas: Nas, run: Path, option: str, target: str) -> None:
    before = snapshot(run)
    code, _, err = nas("report", str(run), option, str(run / target))
    assert_one_line_error(code, err, target)
    code, _, err = nas("report", str(run), option, str(run / target), "--force")
    assert_one_line_error(code, err, target)
    assert snapshot(run) == before


def test_export_never_writes_over_the_checkpoint(nas: Nas, run: Path) -> None:
    before = snapshot(run)
    code, _, err = nas("export", str(run), "--out", str(run / "retrain" / "model.pt"), "--force")
    assert_one_line_error(code, err, "model.pt")
    assert snapshot(run) == before


@pytest.mark.parametrize("command", ["report", "export"])
def test_an_existing_file_is_replaced_only_with_force(nas: Nas, run: Path, workdir: Path, command: str) -> None:
    mine = workdir / ("mine.csv" if command == "report" else "mine.ts")
    mine.write_bytes(b"my own data")
    args = ["report", str(run), "--csv", str(mine)] if command == "report" else ["export", str(run), "--out", str(mine)]
    code, _, err = nas(*args)
    assert_one_line_error(code, err, str(mine), "--force")
    assert mine.read_bytes() == b"my own data"
    code, _, err = nas(*args, "--force")
    assert code == 0, err
    assert mine.read_bytes() != b"my own data"


# -- a stored Ray address is never used on its own ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["resume", "retrain"])
def test_a_stored_ray_address_is_never_used(nas: Nas, run: Path, command: str) -> None:
    edit_config(run, lambda c: c["hardware"].update(executor="ray", ray_address="ray://198.51.100.7:10001"))
    code, _, err = nas(*COMMANDS[command](run))
    if command == "resume":
        assert_one_line_error(code, err, "hardware.ray_address=ray://198.51.100.7:10001")
    else:
        assert code == 0, err


# -- bad arguments and faults ------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpus_on_a_machine_without_one_is_one_line(nas: Nas, workdir: Path) -> None:
    code, _, err = nas("search", "dataset=synthetic", "hardware.gpus=[0]", "run_dir=g")
    assert_one_line_error(code, err, "GPU")
    assert not (workdir / "g").exists()


def test_weights_from_a_run_of_another_space_are_one_line(nas: Nas, run: Path, tabular_run: Path) -> None:
    code, _, err = nas("retrain", str(run), f"retrain.init={tabular_run}", "run_dir=rt")
    assert_one_line_error(code, err, "retrain.init", "space=nb201")
    code, _, err = nas("search", "dataset=synthetic", f"evaluator.init={tabular_run}", "run_dir=ev")
    assert_one_line_error(code, err, "evaluator.init", "space=nb201")


def test_create_losing_a_race_is_already_holds_a_run(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two searches creating the same run directory: the one that loses is told it already holds a run."""
    target = workdir / "race"
    real_replace = os.replace

    def rival_first(source: Any, destination: Any) -> None:
        if Path(destination) == target:
            target.mkdir(exist_ok=True)
            (target / "config.yaml").write_text("seed: 0\n")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", rival_first)
    with pytest.raises(UserError, match="already holds a run"):
        RunDir.create(target, OmegaConf.create({"seed": 0}), {})
    assert not any(p.name.startswith(".race") for p in workdir.iterdir())


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_a_write_that_fails_mid_search_is_one_line_and_resumable(
    nas: Nas, run: Path, monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    """A full disk or a read-only run directory while a search runs: one line, the trials kept, resumable."""
    logged = (run / "trials.jsonl").read_text()
    real_write_state = RunDir.write_state

    def full(self: RunDir, state: Any) -> None:
        with writing(self.file("state.json")):
            raise OSError(error, os.strerror(error))

    monkeypatch.setattr(RunDir, "write_state", full)
    code, _, err = nas("search", "--resume", str(run), "search.max_trials=5")
    assert_one_line_error(code, err, os.strerror(error), "--resume")
    assert (run / "trials.jsonl").read_text().startswith(logged)
    monkeypatch.setattr(RunDir, "write_state", real_write_state)
    code, _, err = nas("search", "--resume", str(run), "search.max_trials=5")
    assert code == 0, err


def test_a_file_size_limit_is_one_line_and_the_search_resumes(nas: Nas, workdir: Path) -> None:
    """A file-size limit (a stand-in for a full disk) stops the retraining's checkpoint with one line; the trials
    are kept and `--resume` finishes the run."""
    limit = 64 << 10  # above every record of TINY, below its checkpoint
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))  # Python ignores SIGXFSZ: a write past it fails
    try:
        code, _, err = nas("search", *TINY, "run_dir=r")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert_one_line_error(code, err, "model.pt", "--resume")
    assert len((workdir / "r" / "trials.jsonl").read_text().splitlines()) == 3
    assert json.loads((workdir / "r" / "summary.json").read_text())["status"] == "crashed"
    assert not list((workdir / "r" / "retrain").glob(".*"))
    code, _, err = nas("search", "--resume", "r")
    assert code == 0, err
    assert (workdir / "r" / "retrain" / "model.pt").is_file()


def test_an_empty_supernet_for_retrain_init_is_one_line(nas: Nas, run: Path, workdir: Path) -> None:
    donor = workdir / "donor"
    donor.mkdir()
    (donor / "config.yaml").write_text((run / "config.yaml").read_text())
    checkpoint = {"space": {"name": "chain"}, "input_shape": [1, 8, 8], "num_classes": 3, "epochs": 1, "epoch": 1,
                  "state_dict": {}}
    torch.save(checkpoint, donor / "supernet.pt")
    code, _, err = nas("retrain", str(run), f"retrain.init={donor}", "run_dir=rt")
    assert_one_line_error(code, err, "supernet.pt")
