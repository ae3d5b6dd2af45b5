"""Experiment trackers (`logger=`): what each records, read back with the tracker's own reader."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY, read_trials
from test_errors import assert_one_line_error

SEARCH = [*TINY, "search.max_trials=2", "run_dir=run"]


def retrained_curve(run: Path) -> list[dict]:
    return json.loads((run / "retrain" / "metrics.json").read_text())["curve"]


def test_every_training_keeps_its_learning_curve_for_the_report(nas, workdir: Path) -> None:
    code, _, err = nas("search", *SEARCH, "retrain.epochs=2")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert all(len(t["curve"]) == 1 and t["curve"][0]["epoch"] == 1 for t in trials)
    assert all("curve" not in t["metrics"] for t in trials)
    curve = retrained_curve(workdir / "run")
    assert [point["epoch"] for point in curve] == [1, 2]
    assert all(set(point) == {"epoch", "loss", "acc", "lr", "seconds"} for point in curve)
    assert all(0 <= point["acc"] <= 100 and point["loss"] > 0 for point in curve)
    code, out, err = nas("show", "run")
    assert code == 0, err
    assert "curve  2 epochs, training loss" in out and "'epoch'" not in out
    code, out, err = nas("report", "run", "--plots", "plots")
    assert code == 0, err
    assert (workdir / "plots" / "learning-run.png").stat().st_size > 1000


def test_tensorboard_holds_trials_curves_retraining_and_figures(nas, workdir: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code, out, err = nas("search", *SEARCH, "logger=tensorboard")
    assert code == 0, err
    folder = workdir / "run" / "trackers" / "tensorboard"
    assert f"tensorboard --logdir {folder}" in out

    def read(name: str) -> EventAccumulator:
        events = EventAccumulator(str(folder / name), size_guidance={"images": 0, "scalars": 0})
        events.Reload()
        return events

    trials = read_trials(workdir / "run")
    search = read("search")
    scalars = search.Scalars("trial/val_acc")
    assert [e.step for e in scalars] == [t["id"] for t in trials]
    assert [e.value for e in scalars] == pytest.approx([t["metrics"]["val_acc"] for t in trials])
    assert {"figures/curves", "figures/learning-run"} <= set(search.Tags()["images"])
    first = read("trial-0000")
    assert [e.value for e in first.Scalars("train/loss")] == pytest.approx([p["loss"] for p in trials[0]["curve"]])
    retrain = read("retrain")
    assert [e.value for e in retrain.Scalars("train/acc")] == pytest.approx(
        [p["acc"] for p in retrained_curve(workdir / "run")])
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert retrain.Scalars("retrain/test_acc")[0].value == pytest.approx(summary["test_acc"])


def test_mlflow_holds_a_run_per_search_with_a_nested_run_per_trial(nas, workdir: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    code, out, err = nas("search", *SEARCH, "logger=mlflow", "logger.figures=false")
    assert code == 0, err
    store = workdir / "run" / "trackers" / "mlflow" / "mlflow.db"
    assert f"sqlite:///{store}" in out
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    runs = mlflow.search_runs(experiment_names=["nascli"])
    by_name = runs.set_index("tags.mlflow.runName")
    assert set(by_name.index) == {"run", "trial 0", "trial 1", "retrain"}
    parent = by_name.loc["run", "run_id"]
    assert set(by_name.loc[["trial 0", "trial 1", "retrain"], "tags.mlflow.parentRunId"]) == {parent}
    trials = read_trials(workdir / "run")
    assert by_name.loc["trial 1", "metrics.val_acc"] == pytest.approx(trials[1]["metrics"]["val_acc"])
    assert by_name.loc["run", "params.seed"] == "0"
    assert (by_name.loc[["run", "trial 0", "trial 1", "retrain"], "status"] == "FINISHED").all()
    history = mlflow.tracking.MlflowClient().get_metric_history(by_name.loc["retrain", "run_id"], "train/loss")
    curve = retrained_curve(workdir / "run")
    assert [m.step for m in history] == [p["epoch"] for p in curve]
    assert [m.value for m in history] == pytest.approx([p["loss"] for p in curve])


def test_mlflow_writes_to_the_tracking_uri_given(nas, workdir: Path) -> None:
    mlflow = pytest.importorskip("mlflow")
    store = f"sqlite:///{workdir / 'shared.db'}"
    code, out, err = nas("search", *SEARCH, "logger=mlflow", f"logger.tracking_uri={store}", "logger.experiment=mine",
                         "logger.figures=false")
    assert code == 0, err
    assert f"experiment mine at {store}" in out and not (workdir / "run" / "trackers" / "mlflow").exists()
    mlflow.set_tracking_uri(store)
    assert len(mlflow.search_runs(experiment_names=["mine"])) == 4  # the search, its 2 trials, the retraining


def test_a_tracker_setting_out_of_range_is_one_line(nas, workdir: Path) -> None:
    assert_one_line_error(*nas("search", *SEARCH, "logger=wandb", "logger.mode=cloud")[::2],
                          "mode must be one of offline, online, disabled")
    assert not (workdir / "run").exists()


def test_csv_files_hold_trials_curves_and_outcome(nas, workdir: Path) -> None:
    code, _, err = nas("search", *SEARCH, "logger=csv", "logger.figures=false")
    assert code == 0, err
    folder = workdir / "run" / "trackers" / "csv"
    trials = pd.read_csv(folder / "trials.csv")
    assert list(trials["id"]) == [0, 1]
    assert [json.loads(text)["val_acc"] for text in trials["metrics"]] == pytest.approx(
        [t["metrics"]["val_acc"] for t in read_trials(workdir / "run")])
    curves = pd.read_csv(folder / "curves.csv", dtype={"source": str})
    assert list(curves["source"]) == ["0", "1", "retrain"]
    outcome = dict(pd.read_csv(folder / "outcome.csv").values)
    assert outcome["status"] == "completed" and float(outcome["retrain.test_acc"]) > 0


class FakeWandb(types.ModuleType):
    """The calls nascli makes to wandb, recorded."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.__spec__ = importlib.machinery.ModuleSpec("wandb", None)
        self.logged, self.inits, self.finished, self.summary = [], [], [], {}

    def init(self, **kwargs):  # noqa: ANN003, ANN201
        self.inits.append(kwargs)
        self.dir = str(Path(kwargs["dir"]) / "wandb" / "offline-run-x" / "files")
        return self

    def Settings(self, **kwargs):  # noqa: ANN003, ANN201, N802
        return kwargs

    def Table(self, columns, data):  # noqa: ANN001, ANN201, N802
        return {"columns": columns, "data": data}

    def Image(self, image):  # noqa: ANN001, ANN201, N802
        return image.size

    def define_metric(self, name, step_metric):  # noqa: ANN001, ANN201
        pass

    def log(self, values):  # noqa: ANN001, ANN201
        self.logged.append(values)

    def finish(self, exit_code):  # noqa: ANN001, ANN201
        self.finished.append(exit_code)


def test_wandb_gets_the_config_each_trial_the_retraining_and_the_outcome(nas, workdir: Path, monkeypatch) -> None:
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    code, out, err = nas("search", *SEARCH, "logger=wandb")
    assert code == 0, err
    (init,) = fake.inits
    assert init["mode"] == "offline" and init["project"] == "nascli" and init["config"]["seed"] == 0
    assert init["dir"] == str(workdir / "run" / "trackers" / "wandb")
    trials = [entry for entry in fake.logged if "trial/id" in entry]
    assert [entry["trial/id"] for entry in trials] == [0, 1]
    assert trials[0]["trial/curve"]["columns"][:3] == ["epoch", "train/loss", "train/acc"]
    assert any("retrain/epoch" in entry for entry in fake.logged)
    assert any("figures/learning-run" in entry for entry in fake.logged)
    assert fake.summary["status"] == "completed" and "retrain/test_acc" in fake.summary
    assert fake.finished == [0]
    assert "wandb sync" in out


def test_a_missing_tracker_package_is_one_line_before_any_work(nas, workdir: Path, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    code, _, err = nas("search", *SEARCH, "logger=mlflow")
    assert code == 2
    assert "logger=mlflow needs mlflow, which is not installed: pip install 'nascli[mlflow]'" in err
    assert len(err.strip().splitlines()) == 1
    assert not (workdir / "run").exists()


def test_a_failing_tracker_is_stopped_with_a_warning_and_the_search_goes_on(nas, workdir: Path, monkeypatch) -> None:
    from nascli.trackers.csv_files import CsvTracker

    def broken(self, trial) -> None:  # noqa: ANN001
        raise ConnectionError("the tracking server went away")

    monkeypatch.setattr(CsvTracker, "trial", broken)
    code, _, err = nas("search", *SEARCH, "logger=csv", "logger.figures=false")
    assert code == 0, err
    assert "logger=csv stopped: the tracking server went away; the run directory keeps every result" in err
    assert err.count("logger=csv stopped") == 1
    assert len(read_trials(workdir / "run")) == 2
    assert not (workdir / "run" / "trackers" / "csv" / "outcome.csv").exists()


def test_a_resumed_search_may_turn_a_tracker_on(nas, workdir: Path) -> None:
    from conftest import interrupt_on_call

    with pytest.MonkeyPatch.context() as patch:
        interrupt_on_call(patch, 2)
        code, _, _ = nas("search", *SEARCH)
    assert code == 130
    code, _, err = nas("search", "--resume", "run", "logger=csv", "logger.figures=false")
    assert code == 0, err
    assert list(pd.read_csv(workdir / "run" / "trackers" / "csv" / "trials.csv")["id"]) == [1]
    assert "name: csv" in (workdir / "run" / "config.yaml").read_text()
