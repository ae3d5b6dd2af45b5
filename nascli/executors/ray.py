"""Run trials on a Ray cluster (`hardware=ray`): one actor per slot, each holding its own evaluator."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, Optional

from nascli.errors import UserError
from nascli.evaluators.base import Evaluator
from nascli.executors.base import EvaluatorMaker, Executor, Task, run_task, settle
from nascli.records import Trial
from nascli.settings import HardwareSettings

CONNECT_SECONDS = 5  # how long a cluster's address may take to accept a connection before it counts as unreachable
# how long a trial actor may wait for a node with room (its CPUs, its GPU share) before it and its slot are given up
PLACEMENT_SECONDS = 60.0
TOKEN_HINT = ("set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN (or in the file RAY_AUTH_TOKEN_PATH "
              "names, by default ~/.ray/auth_token), or start the cluster with RAY_AUTH_MODE=disabled")


class _Worker:
    """A Ray actor's body: builds its evaluator at its first task, so that it is ready as soon as a node starts it."""

    def __init__(self, make_evaluator: EvaluatorMaker, device: str, threads: int) -> None:
        self.make_evaluator, self.device, self.threads = make_evaluator, device, threads
        self.evaluator: Optional[Evaluator] = None

    def run(self, task: Task) -> Trial:
        if self.evaluator is None:
            self.evaluator = self.make_evaluator(self.device, self.threads)
        return run_task(self.evaluator, task)


def check_cluster(address: Optional[str]) -> None:
    """Raise a one-line UserError within seconds where no Ray cluster answers at `address`, or it refuses this process
    (token authentication); null (Ray starts on this machine) has nothing to check."""
    if address is None:
        return
    # how ray.init itself resolves `auto`, RAY_ADDRESS and localhost
    from ray._private.services import canonicalize_bootstrap_address

    client = address.startswith("ray://")
    try:
        target = address.removeprefix("ray://") if client else canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError):
        raise UserError(f"hardware.ray_address={address}: no running Ray cluster found; start one with "
                        "`ray start --head`, or give its address (host:port)") from None
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise UserError(f"no Ray cluster answers at hardware.ray_address={address} ({target}: {reason}); start one "
                        "with `ray start --head`, or give the address it printed") from None
    if not client:
        _check_token(address, target)


def _check_token(address: str, target: str) -> None:
    """Raise a UserError with Ray's token settings where the cluster's head refuses this process."""
    import ray

    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
        from ray._raylet import GcsClient
    except ImportError:  # a Ray without token authentication
        return
    if address == "auto":  # as ray.init does: a token on this machine turns token authentication on
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    try:
        with _native_stderr_muted():
            GcsClient(address=target)
    except ray.exceptions.AuthenticationError as exc:
        raise UserError(f"the Ray cluster at {address} refused this process ({exc.message}): it runs with token "
                        f"authentication; {TOKEN_HINT}") from None
    except Exception:  # not a refusal: ray.init reports it
        return


@contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """Ray's C++ client writes each failed attempt to file descriptor 2 itself; the one-line error says it instead."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _connect(ray: Any, address: Optional[str]) -> None:
    """ray.init, keeping this process's SIGTERM handler: Ray's own (sys.exit, and its core worker's, which aborts)
    would end a search as a crash instead of the clean stop SIGTERM gives."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except ConnectionError as exc:
        raise UserError(f"cannot join the Ray cluster at hardware.ray_address={address}: {exc}") from None
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


class RayExecutor(Executor):
    """`hardware.workers` actors on CPUs, or `trials_per_gpu` actors per GPU of the cluster.

    A lost actor (its node died) fails its trial and is replaced at the slot's next task; an actor that no node
    starts within PLACEMENT_SECONDS (the cluster has no room for it) is given up with its slot, failing the trial
    waiting for it, and the search goes on with the slots left.
    """

    def __init__(self, make_evaluator: EvaluatorMaker, settings: HardwareSettings) -> None:
        import ray  # optional: pip install 'nascli[ray]'

        self.ray = ray
        _connect(ray, settings.ray_address)
        cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
        if settings.device == "cuda" and cluster_gpus == 0:
            raise UserError("hardware.device=cuda, but the Ray cluster has no GPUs")
        use_gpus = settings.device != "cpu" and cluster_gpus > 0
        threads = settings.threads or 1
        self.slots = cluster_gpus * settings.trials_per_gpu if use_gpus else settings.workers
        self.needs = f"{1 / settings.trials_per_gpu:g} GPU" if use_gpus else f"{threads} CPU"
        self.actor_class = ray.remote(
            num_cpus=threads, num_gpus=1 / settings.trials_per_gpu if use_gpus else 0
        )(_Worker)
        # Ray makes the actor's GPU the only visible one, so it is cuda:0 inside the actor.
        self.worker_args = (make_evaluator, "cuda:0" if use_gpus else "cpu", threads)
        self.lock = threading.Lock()
        self.timers: list[threading.Timer] = []
        self.actors: list[Any] = [None] * self.slots
        self.lost: set[int] = set()  # slots whose actor died: a new one starts with their next task
        self.given_up: set[int] = set()  # slots whose actor no node started
        self.closed = False
        for slot in range(self.slots):
            self._start(slot)

    def usable_slots(self) -> list[int]:
        return [slot for slot in range(self.slots) if slot not in self.given_up]

    def submit(self, slot: int, task: Task) -> Future:
        if slot in self.lost:
            self.lost.discard(slot)
            self.ray.kill(self.actors[slot])  # an actor reported lost but still alive would hold its resources
            self._start(slot)
        inner = self.actors[slot].run.remote(task).future()
        return settle(inner, task, self.ray.exceptions.RayActorError, lambda: self._lost(slot))

    def _start(self, slot: int) -> None:
        """A new actor for `slot`, given up if no node has started it within PLACEMENT_SECONDS."""
        actor = self.actor_class.remote(*self.worker_args)
        ready = actor.__ray_ready__.remote().future()
        timer = threading.Timer(PLACEMENT_SECONDS, self._give_up, (slot, actor, ready))
        timer.daemon = True
        self.actors[slot] = actor
        self.timers.append(timer)
        timer.start()
        ready.add_done_callback(lambda _: timer.cancel())

    def _give_up(self, slot: int, actor: Any, ready: Future) -> None:
        with self.lock:
            if self.closed or ready.done() or self.actors[slot] is not actor:
                return
            self.given_up.add(slot)
        self.ray.kill(actor)  # a task sent to it fails, and _lost says why

    def _lost(self, slot: int) -> str:
        """Why the trial on `slot` failed: its actor was given up, or it died (then replaced at the next submit:
        this runs on Ray's callback thread, where a call into Ray deadlocks with ray.shutdown)."""
        with self.lock:
            if slot in self.given_up:
                return (f"no node of the Ray cluster had room to start its actor ({self.needs}) within "
                        f"{PLACEMENT_SECONDS:g} s; the search goes on with one slot less")
            self.lost.add(slot)
        return "the Ray actor running it died"

    def close(self) -> None:
        with self.lock:
            self.closed = True
        for timer in self.timers:
            timer.cancel()
        for actor in self.actors:
            self.ray.kill(actor)
        self.ray.shutdown()
