"""Searches on a Ray cluster started here with `ray start`: a lost node, SIGTERM, kill -9 and resume, bad addresses;
and a search whose trial slots are given up one by one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from conftest import TINY, read_trials
from test_errors import assert_one_line_error

from nascli import runner
from nascli.config import load_config
from nascli.errors import Stopped
from nascli.executors import ray as ray_executor
from nascli.executors.base import Executor, Task
from nascli.factory import build_evaluator, build_space, build_strategy
from nascli.goal import Goal
from nascli.records import State
from nascli.scheduler import Scheduler

RAY = Path(sys.executable).with_name("ray")
SETTINGS = [arg for arg in TINY if not arg.startswith(("hardware", "evaluator.epochs"))] + [
    "hardware=ray", "hardware.threads=1", "dataset.num_samples=400", "retrain.enabled=false",
]
ARGS = [*SETTINGS, "evaluator.epochs=3"]
NO_AUTH = {"RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """Ray nodes on this machine, each `ray start --block` in a session of its own (killed as a process group)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self.temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []

    def start(self, head: bool) -> subprocess.Popen:
        """Start a node with one CPU (the head, or one joining it); returned once it is up."""
        where = ["--head", f"--port={self.port}", f"--ray-client-server-port={free_port()}",
                 "--include-dashboard=false"] if head else [f"--address={self.address}"]
        log = Path(self.temp_dir) / f"node{len(self.nodes)}.log"
        node = subprocess.Popen(
            [str(RAY), "start", "--block", *where, "--node-ip-address=127.0.0.1", "--num-cpus=1",
             f"--temp-dir={self.temp_dir}", f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"],
            stdout=log.open("w"), stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )
        self.nodes.append(node)
        deadline = time.monotonic() + 120
        while "block forever" not in log.read_text():
            assert node.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        return node

    def kill(self, node: subprocess.Popen) -> None:
        """Kill a node's processes at once (its raylet, its object store and the workers of its actors)."""
        try:
            os.killpg(node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.wait()

    def stop(self) -> None:
        for node in reversed(self.nodes):
            self.kill(node)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A one-CPU head node without token authentication (tests add nodes); torn down whatever the test does."""
    pytest.importorskip("ray")
    started = Cluster(NO_AUTH)
    try:
        started.start(head=True)
        yield started
    finally:
        started.stop()


def start_search(workdir: Path, address: str, trials: int, max_trials: int) -> subprocess.Popen:
    """`nas search` on one slot of the cluster in a process of its own, returned once `trials` trials are logged."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nascli", "search", *ARGS, f"hardware.ray_address={address}", "hardware.workers=1",
         f"search.max_trials={max_trials}", "run_dir=run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, **NO_AUTH},
    )
    log = workdir / "run" / "trials.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and len(log.read_text().splitlines()) >= trials):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    return process


def test_an_unreachable_ray_address_is_one_line_at_once_and_creates_no_run(nas, workdir: Path) -> None:
    pytest.importorskip("ray")
    start = time.monotonic()
    code, _, err = nas("search", *ARGS, f"hardware.ray_address=127.0.0.1:{free_port()}", "run_dir=run")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "no Ray cluster answers at hardware.ray_address=127.0.0.1:" in err and "ray start --head" in err
    assert not (workdir / "run").exists()
    assert time.monotonic() - start < 30, "the address should be refused at once, not after Ray's retries"


@pytest.mark.slow
def test_a_lost_node_fails_its_trial_and_its_slot_is_replaced_where_there_is_room_else_given_up(
    nas, workdir: Path, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = cluster.start(head=False)  # two one-CPU nodes: an actor on each
    monkeypatch.setattr(ray_executor, "PLACEMENT_SECONDS", 20.0)
    for name, value in NO_AUTH.items():
        monkeypatch.setenv(name, value)
    log = workdir / "run" / "trials.jsonl"
    noticed: list[float] = []

    def lines() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    def wait_for(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 300
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)

    def lose_nodes() -> None:
        wait_for(lambda: len(lines()) >= 2)
        spare = cluster.start(head=False)  # room for the actor the first lost node held
        cluster.kill(first)
        killed = time.monotonic()
        wait_for(lambda: "died" in log.read_text())
        noticed.append(time.monotonic() - killed)
        died_at = len(lines())
        wait_for(lambda: len(lines()) >= died_at + 2)  # the replacement, on the spare node, ran a trial
        cluster.kill(spare)  # then no node has room for its actor

    killer = threading.Thread(target=lose_nodes, daemon=True)
    killer.start()
    code, _, err = nas("search", *SETTINGS, "evaluator.epochs=30", f"hardware.ray_address={cluster.address}",
                       "hardware.workers=2", "search.max_trials=40", "run_dir=run")
    killer.join(timeout=10)
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert [t["id"] for t in trials] == list(range(40))
    died, no_room = "the Ray actor running it died", "no node of the Ray cluster had room to start its actor (1 CPU)"
    errors = [t["error"] for t in trials if t["status"] == "failed"]
    assert errors[:2] == [died, died] and len(errors) == 3 and errors[2].startswith(no_room), errors
    assert json.loads((workdir / "run" / "summary.json").read_text())["status"] == "completed"
    print(f"a lost node's trial was recorded failed {noticed[0]:.1f} s after the kill")


@pytest.mark.slow
def test_sigterm_stops_a_ray_search_cleanly(workdir: Path, cluster: Cluster) -> None:
    process = start_search(workdir, cluster.address, 2, max_trials=200)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err and "SIGTERM received" not in err, err
    assert f"continue with: nas search --resume {workdir / 'run'}" in out
    assert json.loads((workdir / "run" / "summary.json").read_text())["status"] == "interrupted"


@pytest.mark.slow
def test_a_ray_search_killed_with_sigkill_resumes_every_trial_once(nas, workdir: Path, cluster: Cluster,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    process = start_search(workdir, cluster.address, 3, max_trials=8)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    before = (workdir / "run" / "trials.jsonl").read_text().splitlines()
    assert 3 <= len(before) < 8, "the search should have been killed in the middle"
    for name, value in NO_AUTH.items():
        monkeypatch.setenv(name, value)
    code, _, err = nas("search", "--resume", "run", f"hardware.ray_address={cluster.address}")
    assert code == 0, err
    after = (workdir / "run" / "trials.jsonl").read_text().splitlines()
    assert after[: len(before)] == before
    assert [json.loads(line)["id"] for line in after] == list(range(8))
    assert json.loads((workdir / "run" / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_a_cluster_that_wants_a_token_is_one_line_naming_rays_token_settings(workdir: Path) -> None:
    pytest.importorskip("ray")
    token = Cluster({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0123456789abcdef0123456789abcdef"})
    try:
        token.start(head=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(workdir)}
        start = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "nascli", "search", *ARGS, f"hardware.ray_address={token.address}", "run_dir=run"],
            capture_output=True, text=True, env=env, timeout=120, check=False,
        )
        seconds = time.monotonic() - start
    finally:
        token.stop()
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "refused this process" in result.stderr and "RAY_AUTH_MODE=token" in result.stderr
    assert "RAY_AUTH_TOKEN" in result.stderr and not (workdir / "run").exists()
    assert seconds < 60


class GivingUpExecutor(Executor):
    """Two slots whose workers no machine can start again (as Ray actors without room): slot 1 after its first task,
    slot 0 after its fourth; each such task fails."""

    slots = 2

    def __init__(self) -> None:
        self.tasks = {0: 0, 1: 0}
        self.given_up: set[int] = set()

    def usable_slots(self) -> list[int]:
        return [slot for slot in range(self.slots) if slot not in self.given_up]

    def submit(self, slot: int, task: Task) -> Future:
        assert slot not in self.given_up, "a task was sent to a slot given up"
        self.tasks[slot] += 1
        future: Future = Future()
        if self.tasks[slot] == (4 if slot == 0 else 1):
            self.given_up.add(slot)
            future.set_result(task.failed("no room"))
        else:
            future.set_result(task.trial("ok", {"val_acc": 50.0 + task.id}))
        return future


def test_a_search_goes_on_with_the_slots_left_and_stops_resumably_when_none_is(table: Path) -> None:
    cfg = load_config(["space=nb201", "evaluator=tabular", f"evaluator.table={table}", "strategy=random",
                       "search.max_trials=20"])
    space = build_space(cfg)
    evaluator = build_evaluator(cfg, space, hardware=None)
    goal = Goal.from_settings(cfg.search, evaluator.objective)
    strategy = build_strategy(cfg, space)
    strategy.prepare(evaluator, goal, None)
    states: list[State] = []
    scheduler = Scheduler(strategy, space, GivingUpExecutor(), cfg.seed, cfg.search, goal, states.append)
    trials: list = []
    with pytest.raises(Stopped, match="every trial slot was given up .*make room for its workers"):
        trials.extend(scheduler.run())
    assert [(t.id, t.status) for t in trials] == [(0, "ok"), (1, "failed"), (2, "ok"), (3, "ok"), (4, "failed")]
    assert [p.id for p in states[-1].pending] == [5]  # the checkpoint holds the trial no slot could take


def test_a_search_with_no_slot_left_is_one_line_naming_its_resume(
    nas, workdir: Path, table: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CLI: the trials done are kept, summary.json says crashed, and the line names the real --resume."""
    monkeypatch.setattr(runner, "build_executor", lambda *args: GivingUpExecutor())
    code, _, err = nas("search", "space=nb201", "evaluator=tabular", f"evaluator.table={table}", "strategy=random",
                       "search.max_trials=20", "run_dir=run")
    assert_one_line_error(code, err, "every trial slot was given up", f"nas search --resume {workdir / 'run'}")
    assert len(read_trials(workdir / "run")) == 5
    assert json.loads((workdir / "run" / "summary.json").read_text())["status"] == "crashed"

