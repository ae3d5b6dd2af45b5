"""Run trials on a Ray cluster (`hardware=ray`): one actor per slot, each holding its own evaluator."""

from __future__ import annotations

from concurrent.futures import Future

from nascli.errors import UserError
from nascli.executors.base import EvaluatorMaker, Executor, Task, run_task, settle
from nascli.records import Trial
from nascli.settings import HardwareSettings


class _Worker:
    """A Ray actor's body: builds the evaluator once, then runs tasks."""

    def __init__(self, make_evaluator: EvaluatorMaker, device: str, threads: int) -> None:
        self.evaluator = make_evaluator(device, threads)

    def run(self, task: Task) -> Trial:
        return run_task(self.evaluator, task)


class RayExecutor(Executor):
    """`hardware.workers` actors on CPUs, or `trials_per_gpu` actors per GPU of the cluster; a lost actor is replaced."""

    def __init__(self, make_evaluator: EvaluatorMaker, settings: HardwareSettings) -> None:
        import ray  # optional: pip install 'nascli[ray]'

        self.ray = ray
        ray.init(address=settings.ray_address, ignore_reinit_error=True, log_to_driver=False)
        cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
        if settings.device == "cuda" and cluster_gpus == 0:
            raise UserError("hardware.device=cuda, but the Ray cluster has no GPUs")
        use_gpus = settings.device != "cpu" and cluster_gpus > 0
        threads = settings.threads or 1
        self.slots = cluster_gpus * settings.trials_per_gpu if use_gpus else settings.workers
        self.actor_class = ray.remote(
            num_cpus=threads, num_gpus=1 / settings.trials_per_gpu if use_gpus else 0
        )(_Worker)
        # Ray makes the actor's GPU the only visible one, so it is cuda:0 inside the actor.
        self.worker_args = (make_evaluator, "cuda:0" if use_gpus else "cpu", threads)
        self.actors = [self.actor_class.remote(*self.worker_args) for _ in range(self.slots)]

    def submit(self, slot: int, task: Task) -> Future:
        return settle(
            self.actors[slot].run.remote(task).future(), task, self.ray.exceptions.RayActorError,
            "the Ray actor running it died", lambda: self._replace(slot),
        )

    def _replace(self, slot: int) -> None:
        self.actors[slot] = self.actor_class.remote(*self.worker_args)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.ray.shutdown()
