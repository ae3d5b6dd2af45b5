"""Trials in parallel: devices per slot, worker processes, a dying worker, joblib sweeps, SLURM and Ray configs."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, read_trials
from hydra import compose, initialize_config_dir

from nascli.config import config_dir, load_config
from nascli.errors import UserError
from nascli.executors.base import Task
from nascli.executors.processes import ProcessExecutor
from nascli.factory import build_space, worker_evaluator_maker
from nascli.hardware import resolve_hardware, trial_devices
from nascli.settings import HardwareSettings

TABULAR = ["space=nb201", "evaluator=tabular", "search.max_trials=12"]


def test_trial_slots_spread_over_gpus_and_sweep_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpu = HardwareSettings(device="cuda", trials_per_gpu=2)
    assert trial_devices(gpu, gpu_count=2) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert trial_devices(gpu, job_index=3, gpu_count=2) == ["cuda:1", "cuda:1"]
    assert trial_devices(HardwareSettings(device="cuda", gpus=[1]), job_index=0, gpu_count=2) == ["cuda:1"]
    with pytest.raises(UserError, match="only 2 GPU"):
        trial_devices(HardwareSettings(device="cuda", gpus=[2]), gpu_count=2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert trial_devices(HardwareSettings(device="auto", workers=3)) == ["cpu"] * 3


def test_cpu_workers_train_in_parallel_processes(nas, workdir: Path) -> None:
    code, _, err = nas("search", *TINY, "search.max_trials=4", "hardware.workers=2", "run_dir=run")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert [t["id"] for t in trials] == [0, 1, 2, 3] and all(t["status"] == "ok" for t in trials)
    assert json.loads((workdir / "run" / "run.json").read_text())["trial_devices"] == ["cpu", "cpu"]
    assert json.loads((workdir / "run" / "summary.json").read_text())["status"] == "completed"


@pytest.mark.parametrize("ordered", [True, False])
def test_worker_processes_run_every_trial_once(nas, workdir: Path, table: Path, ordered: bool) -> None:
    args = [*TABULAR, f"evaluator.table={table}", "hardware.workers=3", f"search.ordered={ordered}"]
    assert nas("search", *args, "run_dir=run")[0] == 0
    ids = [t["id"] for t in read_trials(workdir / "run")]
    assert (ids if ordered else sorted(ids)) == list(range(12))


def test_a_dying_worker_fails_its_trial_and_is_replaced(workdir: Path) -> None:
    cfg = load_config([*TINY, "dataset.num_samples=2000", "evaluator.epochs=20"])
    executor = ProcessExecutor(worker_evaluator_maker(cfg), ["cpu"], threads=1)
    space = build_space(cfg)
    arch = space.sample(random.Random(0))
    task = Task(0, arch, space.hash(arch), None, seed=0)
    try:
        future = executor.submit(0, task)
        deadline = time.monotonic() + 60
        while not executor.pools[0]._processes and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(3)  # let the worker start the trial
        os.kill(next(iter(executor.pools[0]._processes)), signal.SIGKILL)
        trial = future.result(timeout=60)
        assert trial.status == "failed" and "died" in trial.error
        quick = Task(1, arch, task.hash, budget=1, seed=0)
        assert executor.submit(0, quick).result(timeout=120).status == "ok"
    finally:
        executor.close()


def test_joblib_sweep_runs_jobs_in_parallel(nas, workdir: Path, table: Path) -> None:
    code, _, err = nas("search", "-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TABULAR,
                       f"evaluator.table={table}", "sweep_dir=sweep")
    assert code == 0, err
    runs = sorted(p for p in (workdir / "sweep").iterdir() if p.is_dir())
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "summary.json").read_text())["status"] == "completed"
        assert len(read_trials(run)) == 12


@pytest.mark.parametrize("amx", [True, False])
@pytest.mark.parametrize("preset", ["auto", "cpu"])
def test_every_cpu_preset_trains_in_channels_last_and_in_bf16_with_amx(preset: str, amx: bool, monkeypatch) -> None:
    """hardware=cpu keeps the fast layout and precision that hardware=auto chooses on the CPU."""
    monkeypatch.setattr("nascli.hardware.cpu_has_amx", lambda: amx)
    hardware = resolve_hardware(load_config([f"hardware={preset}", "hardware.threads=1"]).hardware, device="cpu")
    assert hardware.channels_last and hardware.amp_dtype == (torch.bfloat16 if amx else None)
    off = resolve_hardware(load_config([f"hardware={preset}", "hardware.amp=off"]).hardware, device="cpu")
    assert off.amp_dtype is None


def test_slurm_launcher_config_composes() -> None:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.gpus_per_node == 1


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install 'nascli[ray]')")
def test_ray_executor_runs_trials_on_a_local_ray_instance(nas, workdir: Path, table: Path) -> None:
    code, _, err = nas("search", *TABULAR, f"evaluator.table={table}", "hardware=ray", "hardware.workers=2",
                       "run_dir=run")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert [t["id"] for t in trials] == list(range(12)) and all(t["status"] == "ok" for t in trials)


def test_hardware_ray_without_ray_installed_is_a_one_line_error(nas, monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    code, _, err = nas("search", *TINY, "hardware=ray")
    assert code == 2 and "pip install 'nascli[ray]'" in err and len(err.strip().splitlines()) == 1


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (read from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_search(workdir: Path) -> subprocess.Popen:
    """A `nas search` with two CPU worker processes in a session of its own, returned once a trial is logged."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nascli", "search", *TINY, "dataset.num_samples=1000", "evaluator.epochs=3",
         "search.max_trials=1000", "hardware.workers=2", "retrain.enabled=false", "run_dir=run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        # as a terminal's foreground job: a suite run in the background would pass its ignored SIGINT on
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    log = workdir / "run" / "trials.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    return process


def test_workers_exit_by_themselves_when_the_coordinator_is_killed(workdir: Path) -> None:
    process = start_search(workdir)
    workers = children(process.pid)
    assert len(workers) >= 2
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers), "worker processes outlived the killed coordinator"


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_sigterm_and_ctrl_c_stop_a_search_cleanly(workdir: Path, stop: str) -> None:
    process = start_search(workdir)
    workers = children(process.pid)
    if stop == "sigterm":
        process.send_signal(signal.SIGTERM)
    else:  # a terminal's Ctrl-C reaches every process of the foreground group, workers included
        os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert f"continue with: nas search --resume {workdir / 'run'}" in out
    assert json.loads((workdir / "run" / "summary.json").read_text())["status"] == "interrupted"
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def test_a_worker_that_dies_while_idle_costs_no_trial(workdir: Path) -> None:
    cfg = load_config([*TINY])
    executor = ProcessExecutor(worker_evaluator_maker(cfg), ["cpu"], threads=1)
    space = build_space(cfg)
    arch = space.sample(random.Random(0))
    try:
        assert executor.submit(0, Task(0, arch, space.hash(arch), 1, seed=0)).result(timeout=120).status == "ok"
        os.kill(next(iter(executor.pools[0]._processes)), signal.SIGKILL)
        time.sleep(1)  # the pool notices its worker is gone and breaks
        assert executor.submit(0, Task(1, arch, space.hash(arch), 1, seed=0)).result(timeout=120).status == "ok"
    finally:
        executor.close()
