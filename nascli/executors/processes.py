"""Run trials in worker processes, one per slot, each pinned to its device (a GPU or a share of the CPU cores)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Optional

from nascli.evaluators.base import Evaluator
from nascli.executors.base import EvaluatorMaker, Executor, Task, run_task, settle
from nascli.records import Trial

PARENT_POLL_SECONDS = 0.5
_evaluator: Optional[Evaluator] = None  # the worker process's own evaluator, built once by _start_worker


def _exit_with_parent(parent: int) -> None:
    """Leave as soon as the coordinator is gone (killed, out of memory), so no worker outlives it holding memory."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def _start_worker(make_evaluator: EvaluatorMaker, device: str, threads: int, parent: int) -> None:
    global _evaluator
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the coordinator stops us
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _evaluator = make_evaluator(device, threads)


def _run(task: Task) -> Trial:
    return run_task(_evaluator, task)


class ProcessExecutor(Executor):
    """One single-process pool per slot; a worker that dies fails its trial (if it had one) and is replaced."""

    def __init__(self, make_evaluator: EvaluatorMaker, devices: list[str], threads: int) -> None:
        self.make_evaluator, self.devices, self.threads = make_evaluator, devices, threads
        self.slots = len(devices)
        self.context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
        self.pools = [self._pool(slot) for slot in range(self.slots)]

    def _pool(self, slot: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1, mp_context=self.context, initializer=_start_worker,
            initargs=(self.make_evaluator, self.devices[slot], self.threads, os.getpid()),
        )

    def submit(self, slot: int, task: Task) -> Future:
        try:
            inner = self.pools[slot].submit(_run, task)
        except BrokenProcessPool:  # the worker died while idle: the task never ran, so start it on a new one
            self._replace(slot)
            inner = self.pools[slot].submit(_run, task)
        return settle(inner, task, BrokenProcessPool, lambda: self._lost(slot))

    def _lost(self, slot: int) -> str:
        self._replace(slot)
        return f"the worker process on {self.devices[slot]} died"

    def _replace(self, slot: int) -> None:
        self.pools[slot].shutdown(wait=False)
        self.pools[slot] = self._pool(slot)

    def close(self) -> None:
        for pool in self.pools:
            processes = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:  # an abandoned trial would otherwise run on to its end
                process.terminate()
            for process in processes:
                process.join(timeout=5)
