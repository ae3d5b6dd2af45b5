"""Resuming a stopped search: from a checkpoint in the middle of a trial, after Ctrl-C, after kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import pytest
from conftest import TINY, interrupt_on_call, read_trials, untimed

from nascli.config import compose_config, load_config, resume_config
from nascli.executors.base import Executor, Task, run_task
from nascli.factory import build_evaluator, build_space, build_strategy
from nascli.goal import Goal
from nascli.records import State, Trial
from nascli.scheduler import Scheduler
from nascli.warmstart import Knowledge, load_earlier

STRATEGIES = ["local", "evolution", "bo", "reinforce", "hyperband"]


class JitteryExecutor(Executor):
    """Threads whose tasks finish in a random order, as trials on real workers do."""

    def __init__(self, evaluator, slots: int) -> None:
        self.evaluator, self.slots = evaluator, slots
        self.pool = ThreadPoolExecutor(slots)

    def submit(self, slot: int, task: Task) -> Future:
        delay = random.random() / 200

        def run() -> Trial:
            time.sleep(delay)
            return run_task(self.evaluator, task)

        return self.pool.submit(run)

    def close(self) -> None:
        self.pool.shutdown()


def prepared_scheduler(overrides: list[str], states: list, earlier: Optional[list[str]] = None) -> Scheduler:
    """A search as the runner builds it (goal, prepared strategy, optional warm start), on jittery threads."""
    cfg = load_config(overrides)
    space = build_space(cfg)
    evaluator = build_evaluator(cfg, space, hardware=None)
    goal = Goal.from_settings(cfg.search, evaluator.objective)
    chosen = build_strategy(cfg, space)
    chosen.prepare(evaluator, goal, Knowledge(load_earlier(earlier, space, cfg.space.name), space) if earlier else None)
    return Scheduler(chosen, space, JitteryExecutor(evaluator, slots=3), cfg.seed, cfg.search, goal, states.append)


def assert_resumes_exactly(make: Callable[[list], Scheduler], stop_after: int) -> None:
    """A search stopped after `stop_after` trials and resumed from its last checkpoint logs what a whole one does."""
    expected = list(make([]).run())
    states: list = []
    log = []
    for trial in make(states).run():
        log.append(trial)
        if len(log) == stop_after:
            break
    resumed = make([])
    resumed.restore(State.from_dict(json.loads(json.dumps(states[-1].to_dict())), "state"), {t.id: t for t in log},
                    crashed=True)
    log += list(resumed.run())
    assert untimed([t.to_dict() for t in log]) == untimed([t.to_dict() for t in expected])


def scheduler(table: Path, strategy: str, states: list) -> Scheduler:
    cfg = load_config(["space=nb201", "evaluator=tabular", f"evaluator.table={table}", f"strategy={strategy}",
                       "search.max_trials=30", "seed=3"])
    space = build_space(cfg)
    evaluator = build_evaluator(cfg, space, hardware=None)
    return Scheduler(build_strategy(cfg, space), space, JitteryExecutor(evaluator, slots=3),
                     cfg.seed, cfg.search, Goal.from_settings(cfg.search, evaluator.objective), states.append)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("logged_last", [True, False], ids=["killed-after-logging", "killed-mid-trial"])
def test_a_resumed_search_continues_as_if_never_stopped(table: Path, strategy: str, logged_last: bool) -> None:
    expected = list(scheduler(table, strategy, []).run())
    states: list = []
    log = []
    for trial in scheduler(table, strategy, states).run():
        log.append(trial)
        if len(log) == 11:
            break  # killed here: the trial is logged, the strategy not yet told
    if not logged_last:
        log.pop()  # killed while the trial ran: it never reached the log
    resumed = scheduler(table, strategy, [])
    resumed.restore(State.from_dict(json.loads(json.dumps(states[-1].to_dict())), "state"), {t.id: t for t in log},
                    crashed=True)
    log += list(resumed.run())
    assert [t.id for t in log] == list(range(30))
    assert untimed([t.to_dict() for t in log]) == untimed([t.to_dict() for t in expected])


def test_ctrl_c_then_resume_finishes_the_search_like_an_uninterrupted_one(
    nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [*TINY, "search.max_trials=4", "retrain.enabled=false"]
    assert nas("search", *args, "run_dir=whole")[0] == 0
    with monkeypatch.context() as patch:
        interrupt_on_call(patch, 3)
        assert nas("search", *args, "run_dir=run")[0] != 0
    assert json.loads((workdir / "run" / "summary.json").read_text())["status"] == "interrupted"
    code, _, err = nas("search", "--resume", "run")
    assert code == 0, err
    assert untimed(read_trials(workdir / "run")) == untimed(read_trials(workdir / "whole"))
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["n_trials"] == 4
    assert len(json.loads((workdir / "run" / "run.json").read_text())["resumed"]) == 1


def test_resume_drops_a_torn_last_line_reruns_that_trial_and_may_extend_the_budget(
    nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [*TINY, "search.max_trials=4", "retrain.enabled=false"]
    assert nas("search", *args, "run_dir=run")[0] == 0
    (workdir / "run" / "summary.json").unlink()  # as after kill -9 ...
    log = workdir / "run" / "trials.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])  # ... in the middle of writing trial 2
    state = json.loads((workdir / "run" / "state.json").read_text())
    state["pending"] = [{"id": t["id"], "arch": t["arch"], "budget": t["budget"]} for t in map(json.loads, lines[2:])]
    state["next_id"] = 4
    (workdir / "run" / "state.json").write_text(json.dumps(state))  # the checkpoint taken before trial 2 ended
    with pytest.warns(UserWarning, match="half-written"):
        code, _, err = nas("search", "--resume", "run", "search.max_trials=6")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert [t["id"] for t in trials] == list(range(6))
    assert untimed(trials[:4]) == untimed([json.loads(line) for line in lines])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dataset=digits"], "only search.*, hardware.* and logger may change"),
        (["-m"], "--resume takes a run directory"),
    ],
)
def test_resume_refuses_changes_to_the_searched_config(nas, workdir: Path, args: list[str], message: str) -> None:
    assert nas("search", *TINY, "search.max_trials=1", "retrain.enabled=false", "run_dir=run")[0] == 0
    (workdir / "run" / "summary.json").unlink()
    code, _, err = nas("search", "--resume", "run", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_resume_refuses_finished_and_missing_runs(nas, workdir: Path) -> None:
    assert nas("search", *TINY, "search.max_trials=1", "retrain.enabled=false", "run_dir=run")[0] == 0
    code, _, err = nas("search", "--resume", "run")
    assert code == 2 and "finished search" in err
    code, _, err = nas("search", "--resume", "nowhere")
    assert code == 2 and "not a run directory" in err


def test_kill_9_mid_search_then_resume_keeps_every_trial_once(nas, workdir: Path) -> None:
    args = [*TINY, "dataset.num_samples=400", "search.max_trials=10", "retrain.enabled=false"]
    process = subprocess.Popen([sys.executable, "-m", "nascli", "search", *args, "run_dir=run"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = workdir / "run" / "trials.jsonl"
    deadline = time.monotonic() + 120
    while not (log.exists() and len(log.read_text().splitlines()) >= 3) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = log.read_text().splitlines()
    assert 3 <= len(before) < 10, "the search should have been killed in the middle"
    code, _, err = nas("search", "--resume", "run")
    assert code == 0, err
    after = log.read_text().splitlines()
    assert after[: len(before)] == before
    assert [json.loads(line)["id"] for line in after] == list(range(10))
    assert nas("search", *args, "run_dir=whole")[0] == 0
    assert untimed(read_trials(workdir / "run")) == untimed(read_trials(workdir / "whole"))


def test_resume_config_takes_search_and_hardware_overrides_and_keeps_the_rest() -> None:
    original = ["dataset=synthetic", "strategy=random", "search.max_trials=3"]
    stored = compose_config(original)
    stored.strategy.name = "as-stored"  # what the run recorded wins over today's conf/
    resumed = resume_config(stored, original, ["hardware=cpu", "hardware.threads=2", "search.max_trials=9"])
    assert resumed.hardware.threads == 2 and resumed.hardware.device == "cpu" and resumed.search.max_trials == 9
    assert resumed.strategy.name == "as-stored" and resumed.dataset.name == "synthetic"


def test_a_search_stopped_by_a_bug_is_marked_crashed_and_resumes(
    nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nascli.strategies.bo import BayesianOptimisation

    def buggy_tell(self, proposal, outcome) -> None:
        raise RuntimeError("a bug")

    args = [*TINY, "search.max_trials=4", "retrain.enabled=false", "strategy=bo"]
    with monkeypatch.context() as patch:
        patch.setattr(BayesianOptimisation, "tell", buggy_tell)
        with pytest.raises(RuntimeError, match="a bug"):
            nas("search", *args, "run_dir=run")
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["status"] == "crashed" and "a bug" in summary["error"]
    code, _, err = nas("search", "--resume", "run")
    assert code == 0, err
    assert [t["id"] for t in read_trials(workdir / "run")] == [0, 1, 2, 3]
