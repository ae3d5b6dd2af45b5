"""Retraining: the found network (and the space's baselines) trained on train+validation and scored on test."""

from __future__ import annotations

from typing import Any, Optional

from nascli.console import progress
from nascli.data.base import DataSplits
from nascli.errors import TrialFailed
from nascli.evaluators.fitting import Fitted, Start, fit_and_score
from nascli.evaluators.profile import measure_latency
from nascli.evaluators.training import Epoch, TimeLimit, batches_per_epoch
from nascli.executors.base import failure_reason
from nascli.hardware import Hardware
from nascli.printout import log_progress, say
from nascli.records import ModelHeader, Summary
from nascli.rundir import RunDir
from nascli.seeding import derive_seed
from nascli.settings import RetrainSettings
from nascli.spaces.base import Arch, SearchSpace
from nascli.spaces.stored import weight_source
from nascli.transfer import initialise, input_channels

FAILURES = (TrialFailed, MemoryError, RuntimeError)  # torch's OutOfMemoryError is a RuntimeError


class Retraining:
    """Retrains architectures of `space` on `data` with the `retrain.*` settings, each on the same seed.

    `latency_batch` is the batch the trials measured latency at; `baselines` is `search.baselines` (None: the
    space's baselines where it has them); `start`, the weights to start from (None: those `retrain.init` names).
    """

    def __init__(self, settings: RetrainSettings, space: SearchSpace, space_name: str, data: DataSplits,
                 hardware: Hardware, seed: int, latency_batch: int, baselines: Optional[bool] = None,
                 start: Optional[Start] = None) -> None:
        self.settings, self.space, self.space_name = settings, space, space_name
        self.data, self.hardware = data, hardware
        self.seed = derive_seed(seed, "retrain")  # the same for every architecture: baselines on common random numbers
        self.latency_batch, self.baselines = latency_batch, baselines
        self._start = start

    def start(self) -> Optional[Start]:
        """The weights given, or those `retrain.init` names (read once), or None."""
        init = self.settings.init
        if init and self._start is None:
            self._start = Start(init, weight_source(init), self.settings.finetune, self.settings.copied_lr)
        return self._start

    def check_start(self, arch: Arch) -> None:
        """Raise UserError now if `retrain.init` holds nothing that fits `arch` (before any run directory exists)."""
        start = self.start()
        if start is not None:
            data = self.data
            initialise(self.space.build(arch, data.input_shape, data.num_classes, data.vocab_size),
                       start.weights(arch), start.source, input_channels(data))

    def fit(self, arch: Arch, label: str = "retrain") -> Fitted:
        """`arch` trained on train+validation and scored on test; raises one of FAILURES when training fails."""
        settings, data, hardware = self.settings, self.data, self.hardware
        epochs, limits = settings.epochs, ()
        if settings.max_seconds is not None:  # at least one epoch, however short the budget
            limits = (TimeLimit(settings.max_seconds, "retrain.max_seconds", shorten=True,
                                min_steps=batches_per_epoch(len(data.train_y) + len(data.val_y), settings.batch_size)),)

        def latency(model: Any) -> float:
            return measure_latency(model, data.input_shape, self.latency_batch, hardware, vocab_size=data.vocab_size)

        with progress() as bar:
            task = bar.add_task(label, total=epochs)

            def on_epoch(point: Epoch) -> None:
                bar.update(task, completed=point.epoch, description=f"{label}  loss {point.loss:.3f}")
                log_progress(f"{label} epoch {point.epoch}/{epochs} loss {point.loss:.4f} train_acc {point.acc:.2f} "
                             f"({point.seconds:.1f} s)")

            fitted = fit_and_score(self.space, arch, data, settings, hardware, self.seed, epochs, latency, final=True,
                                   limits=limits, start=self.start(), on_epoch=on_epoch)
        if fitted.metrics["epochs"] < epochs:
            say(f"retrain: {fitted.metrics['epochs']:.1f} of {epochs} epochs fit in retrain.max_seconds="
                f"{settings.max_seconds:g} ({fitted.metrics['train_seconds']:.0f} s of training)")
        if fitted.transfer is not None:
            fitted.metrics["init"] = {**fitted.transfer.summary(), "finetune": settings.finetune}
        return fitted

    def into(self, run: RunDir, summary: Summary, arch: Arch, noted: Optional[dict[str, Any]] = None,
             label: str = "retrain") -> None:
        """Retrain `arch`, save its metrics (with `noted` ones) and checkpoint in `run`, and update the summary; then
        the baselines.

        With baselines (search.baselines, by default where the space has them), each baseline architecture is
        retrained the same way and its metrics are saved beside the found one's.
        """
        try:
            fitted = self.fit(arch, label)
        except FAILURES as exc:
            summary.status, summary.error = "failed", f"retraining failed: {failure_reason(exc)}"
            return
        metrics, data = {**fitted.metrics, **(noted or {})}, self.data
        run.write_retrain_metrics(metrics)
        shape = ({name: list(part) for name, part in data.input_shape.items()} if isinstance(data.input_shape, dict)
                 else list(data.input_shape))
        run.save_model(ModelHeader(arch, shape, data.num_classes, self.space_name, data.vocab_size, data.preprocessing),
                       {k: v.detach().cpu().contiguous() for k, v in fitted.model.state_dict().items()})
        summary.status, summary.test_acc = "completed", metrics["test_acc"]
        self._baselines(run, summary, arch, metrics)

    def _baselines(self, run: RunDir, summary: Summary, arch: Arch, metrics: dict[str, Any]) -> None:
        """Retrain the space's baselines beside the found network, each saved as it ends."""
        baselines = self.space.baselines(arch) if self.baselines is not False else {}
        if not baselines:
            if self.baselines:
                say(f"baselines: space={self.space_name} has none to retrain beside the found network")
            return
        if self.settings.init:
            say("baselines: skipped, as retrain.init starts the found network from other weights")
            return
        results: dict[str, dict[str, Any]] = {}
        # on common random numbers an architecture retrains to the same scores: one met before is not retrained
        retrained = {self.space.hash(arch): ("found", metrics)}
        for name, baseline in baselines.items():
            key = self.space.hash(baseline)
            if key in retrained:
                same, scores = retrained[key]
                results[name] = {"arch": baseline, **_without_confusion(scores), "same_as": same}
                say(f"baseline {name}: the same network as {same}, not retrained")
            else:
                try:
                    scores = self.fit(baseline, label=f"baseline {name}").metrics
                    results[name], retrained[key] = {"arch": baseline, **_without_confusion(scores)}, (name, scores)
                except FAILURES as exc:
                    results[name] = {"arch": baseline, "error": failure_reason(exc)}
            run.write_retrain_metrics({**metrics, "baselines": results})  # each as it ends: an interruption keeps them
        summary.baselines = {name: result.get("test_acc") for name, result in results.items()}


def _without_confusion(metrics: dict[str, Any]) -> dict[str, Any]:
    """A retraining's metrics as a baseline records them: without the confusion matrix and learning curve."""
    return {k: v for k, v in metrics.items() if k not in ("confusion_matrix", "curve")}
