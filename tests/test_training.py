"""The training loop and the runner's handling of failing trials."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, interrupt_on_call, read_trials
from torch import nn

from nascli.data.base import Augmentation
from nascli.errors import TrialFailed
from nascli.evaluators.train import TrainEvaluator
from nascli.evaluators.training import TimeLimit, augment, batches_per_epoch, one_cycle, train
from nascli.hardware import Hardware
from nascli.settings import TrainSettings

CPU = Hardware(device=torch.device("cpu"), amp_dtype=None, channels_last=False)


class Diverging(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) * float("nan")


def test_nan_loss_raises_trial_failed() -> None:
    x, y = torch.randn(16, 1, 2, 2), torch.randint(0, 2, (16,))
    with pytest.raises(TrialFailed, match="diverged"):
        train(Diverging(), x, y, TrainSettings(epochs=2, augment=False), CPU, seed=0)


class Slow(nn.Module):
    """A network whose every forward pass takes 10 ms, and that counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.calls = nn.Linear(4, 2), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        time.sleep(0.01)
        return self.linear(x.flatten(1))


def test_a_training_projected_over_its_time_limit_stops_after_its_first_steps() -> None:
    x, y = torch.randn(400, 1, 2, 2), torch.randint(0, 2, (400,))
    settings = TrainSettings(epochs=5, batch_size=4, augment=False)  # 500 steps: about 5 s
    model = Slow()
    with pytest.raises(TrialFailed, match=r"training would take about \d+ s, over evaluator.max_seconds=1$"):
        train(model, x, y, settings, CPU, seed=0, limits=(TimeLimit(1.0, "evaluator.max_seconds"),))
    assert model.calls == TimeLimit.WARM_UP + TimeLimit.TIMED
    model = Slow()
    train(model, x[:40], y[:40], settings, CPU, seed=0, limits=(TimeLimit(10.0, "evaluator.max_seconds"),))
    assert model.calls == 50


def test_a_training_projected_over_its_time_budget_is_shortened_and_its_schedule_compressed() -> None:
    x, y = torch.randn(400, 1, 2, 2), torch.randint(0, 2, (400,))
    settings = TrainSettings(epochs=5, batch_size=4, augment=False)  # 500 steps of 10 ms: about 5 s
    model, fit = Slow(), TimeLimit(0.5, "evaluator.epoch_seconds", shorten=True)
    lrs: list[float] = []
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):  # the learning rate of every step taken
        lrs.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.SGD, "step", recording_step)
        train(model, x, y, settings, CPU, seed=0, limits=(fit, TimeLimit(1.0, "evaluator.max_seconds")))
    assert fit.planned == 500 and TimeLimit.WARM_UP + TimeLimit.TIMED <= fit.total_steps < 60
    assert model.calls == len(lrs) == fit.total_steps  # stopped inside the first epoch; the guard did not fire
    # a whole, shorter cycle: its peak reached (the 500-step one warms up over 100 steps) and its end annealed
    assert max(lrs) > settings.lr / 2 and lrs[-1] < settings.lr / 100
    within = Slow()
    train(within, x[:40], y[:40], settings, CPU, seed=0, limits=(TimeLimit(10.0, "evaluator.epoch_seconds", shorten=True),))
    assert within.calls == 50  # a training that fits runs in full


def test_a_schedule_placed_partway_equals_one_stepped_there() -> None:
    stepped_optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    stepped = one_cycle(stepped_optimizer, [0.1], 50)
    for _ in range(17):
        stepped.step()
    placed_optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    one_cycle(placed_optimizer, [0.1], 50, done=17)
    for key in ("lr", "momentum"):
        assert placed_optimizer.param_groups[0][key] == stepped_optimizer.param_groups[0][key]


class SlowFirst(Slow):
    """A network whose first 12 forward passes take 50 ms each, and the later ones no extra time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calls < TimeLimit.WARM_UP + TimeLimit.TIMED:
            time.sleep(0.05)
        self.calls += 1
        return self.linear(x.flatten(1))


def test_a_fitted_training_is_stretched_again_when_its_steps_get_faster() -> None:
    """Cut to about 60 steps after the first slow ones, the training grows back to all 200 as the pace is re-judged."""
    x, y = torch.randn(400, 1, 2, 2), torch.randint(0, 2, (400,))
    model, fit = SlowFirst(), TimeLimit(3.0, "retrain.max_seconds", shorten=True)
    train(model, x, y, TrainSettings(epochs=2, batch_size=4, augment=False), CPU, seed=0, limits=(fit,))
    assert model.calls == fit.total_steps == fit.planned == 200


def test_a_fitted_training_keeps_its_minimum_steps() -> None:
    x, y = torch.randn(400, 1, 2, 2), torch.randint(0, 2, (400,))
    model, fit = Slow(), TimeLimit(1e-6, "retrain.max_seconds", shorten=True, min_steps=100)
    train(model, x, y, TrainSettings(epochs=3, batch_size=4, augment=False), CPU, seed=0, limits=(fit,))
    assert model.calls == fit.total_steps == 100 and fit.planned == 300


def test_trials_train_no_longer_per_epoch_than_the_time_limited_retraining_and_say_so(nas, workdir: Path) -> None:
    budget = ["evaluator.batch_size=4", "search.max_trials=1", "retrain.epochs=2", "retrain.max_seconds=2e-4"]
    code, out, err = nas("search", *TINY, *budget, "run_dir=run")
    assert code == 0, err
    assert "trials: at most 0.0001 s of training per epoch, as in the retraining (retrain.max_seconds=0.0002 over 2" \
           in " ".join(out.split())
    trial, = read_trials(workdir / "run")
    assert 0 < trial["metrics"]["epochs"] < 1, trial  # the warm-up and timed steps only, of an epoch of 30+
    code, out, err = nas("search", *TINY, *budget, "evaluator.epoch_seconds=inf", "run_dir=full")
    assert code == 0 and "trials: at most" not in out, err
    assert read_trials(workdir / "full")[0]["metrics"]["epochs"] == 1
    code, out, err = nas("search", *TINY, "evaluator.batch_size=4", "search.max_trials=1", "run_dir=free")
    assert code == 0 and "trials: at most" not in out, err  # no retrain.max_seconds: no limit
    assert read_trials(workdir / "free")[0]["metrics"]["epochs"] == 1
    code, out, err = nas("search", *TINY, "evaluator.batch_size=4", "search.max_trials=1", "evaluator.epoch_seconds=1e-6",
                         "run_dir=set")
    assert code == 0 and "trials: at most" not in out, err  # set by the user: applied without retrain.max_seconds
    assert 0 < read_trials(workdir / "set")[0]["metrics"]["epochs"] < 1


def test_a_time_budget_without_a_trial_limit_runs_trials_until_it_is_spent(nas, workdir: Path) -> None:
    code, out, err = nas("search", *TINY, "search.max_trials=null", "search.max_seconds=4", "retrain.enabled=false",
                         "run_dir=run")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert len(trials) >= 2 and trials[-1]["elapsed"] >= 4.0  # stopped by the budget, not by a count


def test_trials_over_the_evaluators_time_limit_are_recorded_failed(nas, workdir: Path) -> None:
    code, out, err = nas("search", *TINY, "evaluator.epochs=2", "evaluator.max_seconds=1e-6", "run_dir=run")
    assert code == 1 and "none of the 3 trials succeeded" in err, err
    assert all(t["error"].startswith("training would take about") and t["error"].endswith("evaluator.max_seconds=1e-06")
               for t in read_trials(workdir / "run"))


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.5), ("adamw", 0.05)])
def test_training_learns_and_is_deterministic(optimizer: str, lr: float) -> None:
    x = torch.randn(64, 1, 2, 2)
    y = (x.flatten(1).sum(1) > 0).long()

    def fit() -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        settings = TrainSettings(epochs=20, batch_size=16, lr=lr, augment=False, optimizer=optimizer)
        train(model, x, y, settings, CPU, seed=0)
        return model

    a, b = fit(), fit()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert (a(x).argmax(1) == y).float().mean() > 0.9


@pytest.mark.parametrize("steps", range(1, 12))
def test_the_schedule_takes_any_number_of_steps(steps: int) -> None:
    """A run of 5 steps once divided by zero in OneCycleLR (its warm-up ended on step 0)."""
    x, y = torch.randn(4 * steps, 1, 2, 2), torch.randint(0, 2, (4 * steps,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    train(model, x, y, TrainSettings(epochs=1, batch_size=4, augment=False), CPU, seed=0)


def test_augment_shifts_and_flips_within_bounds() -> None:
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    out = augment(x, Augmentation(crop_padding=1, hflip=True), generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert augment(x, Augmentation(), torch.Generator()).equal(x)


def test_failed_trials_are_recorded_and_the_search_goes_on(nas, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = TrainEvaluator.evaluate
    calls = []

    def flaky(self, arch, seed, budget=None, fold=0):
        calls.append(arch)
        if len(calls) == 2:
            raise TrialFailed("out of memory")
        if len(calls) == 3:
            raise TrialFailed("training diverged: loss is nan in epoch 1")
        return original(self, arch, seed, budget, fold)

    monkeypatch.setattr(TrainEvaluator, "evaluate", flaky)
    code, out, err = nas("search", *TINY, "search.max_trials=5", "run_dir=run")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert [t["status"] for t in trials] == ["ok", "failed", "failed", "ok", "ok"]
    assert trials[1]["error"] == "out of memory" and "diverged" in trials[2]["error"]
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["n_trials"] == 5 and summary["n_failed"] == 2 and summary["status"] == "completed"


def test_search_where_every_trial_fails_records_why_and_exits_1(
    nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors = iter([MemoryError(), RuntimeError("CUDA error: an illegal memory access\nmore"), ValueError("abc")])

    def always_fail(self, arch, seed, budget=None, fold=0):
        raise next(errors)

    monkeypatch.setattr(TrainEvaluator, "evaluate", always_fail)
    code, out, err = nas("search", *TINY, "run_dir=run")
    assert code == 1 and err.count("\n") == 1 and "none of the 3 trials succeeded" in err, err
    assert [t["error"] for t in read_trials(workdir / "run")] == [
        "out of memory", "RuntimeError: CUDA error: an illegal memory access", "ValueError: abc"]
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "none of the 3 trials succeeded"
    assert not (workdir / "run" / "best.json").exists()


def test_ctrl_c_keeps_finished_trials_and_marks_the_run_interrupted(
    nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    interrupt_on_call(monkeypatch, 2)
    code, out, err = nas("search", *TINY, "run_dir=run")
    assert code == 130 and "Traceback" not in err
    assert f"continue with: nas search --resume {workdir / 'run'}" in out
    assert len(read_trials(workdir / "run")) == 1
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["n_trials"] == 1


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_pooling_matches_pytorchs_values_and_gradients(stride: int, channels_last: bool) -> None:
    """The training forms of 3x3 average pooling and the global mean give PyTorch's values and gradients."""
    from nascli.spaces.pooling import avg_pool3x3, global_avg_pool

    x = torch.randn(3, 5, 7, 9)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    for ours, theirs in [(avg_pool3x3(x, stride), nn.AvgPool2d(3, stride, 1, count_include_pad=False)(x)),
                         (global_avg_pool(x), nn.AdaptiveAvgPool2d(1)(x))]:
        assert torch.allclose(ours, theirs, atol=1e-6)
        weights = torch.randn_like(ours)
        mine, = torch.autograd.grad((ours * weights).sum(), x)
        reference, = torch.autograd.grad((theirs * weights).sum(), x)
        assert torch.allclose(mine, reference, atol=1e-6)
        assert mine.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_depthwise_convolutions_run_in_fp32_under_the_cpus_bf16_autocast() -> None:
    """oneDNN's bf16 depthwise backward is slow, so these layers leave autocast; elsewhere they are F.conv2d."""
    import torch.nn.functional as F

    from nascli.spaces.depthwise import DepthwiseConv2d
    from nascli.spaces.pooling import avg_pool3x3

    layer = DepthwiseConv2d(6, 3, stride=2)
    assert layer.state_dict().keys() == nn.Conv2d(6, 6, 3, bias=False).state_dict().keys()
    x = torch.randn(2, 6, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    expected = F.conv2d(x, layer.weight, None, 2, 1, 1, 6)
    assert torch.equal(layer(x), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, pooled = layer(x.bfloat16()), avg_pool3x3(x.bfloat16())
        assert F.conv2d(x, torch.randn(4, 6, 1, 1)).dtype == torch.bfloat16  # autocast is on for the others
    assert mixed.dtype == pooled.dtype == torch.float32
    assert torch.equal(mixed, F.conv2d(x.bfloat16().float(), layer.weight, None, 2, 1, 1, 6))
    mixed.sum().backward()
    assert layer.weight.grad.dtype == torch.float32 and x.grad is not None


def test_bf16_training_is_deterministic_and_learns_as_fp32_does() -> None:
    """bf16 autocast (the CPU's default with AMX) repeats exactly for a seed, and predicts as fp32 training does."""
    from nascli.spaces.chain import ChainSettings, ChainSpace

    space = ChainSpace(ChainSettings())
    arch = {"blocks": [{"op": "conv3x3", "width": 16, "down": False}, {"op": "sepconv3x3", "width": 32, "down": True},
                       {"op": "avgpool3x3", "width": 32, "down": False}]}
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 1, 8, 8, generator=generator)
    y = (x.mean((1, 2, 3)) > 0).long()

    def fit(amp: torch.dtype | None) -> nn.Module:
        torch.manual_seed(0)
        model = space.build(arch, (1, 8, 8), 2).to(memory_format=torch.channels_last)
        hardware = Hardware(device=torch.device("cpu"), amp_dtype=amp, channels_last=True)
        train(model, x[:1536], y[:1536], TrainSettings(epochs=4, batch_size=64, lr=0.1), hardware, seed=0)
        return model.eval()

    mixed, full = fit(torch.bfloat16), fit(None)
    assert all(torch.equal(p, q) for p, q in zip(mixed.parameters(), fit(torch.bfloat16).parameters()))
    with torch.no_grad():
        bf16, fp32 = mixed(x[1536:]).argmax(1), full(x[1536:]).argmax(1)
    assert (bf16 == y[1536:]).float().mean() > 0.88 and (fp32 == y[1536:]).float().mean() > 0.88  # 0.92 and 0.92
    assert (bf16 == fp32).float().mean() > 0.94  # 0.98


def test_channels_last_training_stays_within_rounding_of_the_standard_layout() -> None:
    """Training in channels_last (the default on every device) gives the same weights as NCHW, up to rounding."""
    from nascli.spaces.chain import ChainSettings, ChainSpace

    # float64: the two layouts run different kernels (which differ by CPU), and in float32 their rounding grows
    # over training to 3e-4 on some machines; in float64 any real difference still shows, rounding does not
    torch.set_default_dtype(torch.float64)
    space = ChainSpace(ChainSettings())
    arch = {"blocks": [{"op": "conv3x3", "width": 16, "down": False}, {"op": "avgpool3x3", "width": 32, "down": True},
                       {"op": "maxpool3x3", "width": 32, "down": False}]}
    x, y = torch.randn(128, 1, 12, 12), torch.randint(0, 10, (128,))

    def fit(channels_last: bool) -> nn.Module:
        torch.manual_seed(0)
        model = space.build(arch, (1, 12, 12), 10)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        hardware = Hardware(device=torch.device("cpu"), amp_dtype=None, channels_last=channels_last)
        train(model, x, y, TrainSettings(epochs=2, batch_size=32), hardware, seed=0, augmentation=Augmentation(crop_padding=1, hflip=True))
        return model

    try:
        standard, fast = fit(False), fit(True)
        for p, q in zip(standard.parameters(), fast.parameters()):
            assert torch.allclose(p, q, atol=1e-9), (p - q).abs().max()
        assert all(torch.equal(p, q) for p, q in zip(fast.parameters(), fit(True).parameters()))
    finally:
        torch.set_default_dtype(torch.float32)


def test_hardware_compile_compiles_the_training_of_each_trial_and_of_the_retraining(
    nas, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hardware.compile=true` reaches the loop for every trial and the retraining, and the run records it."""
    import nascli.evaluators.training as training

    compiled = []
    monkeypatch.setattr(training, "compiled_forward", lambda model: compiled.append(model) or model)
    code, _, err = nas("search", *TINY, "search.max_trials=2", "hardware.compile=true", "run_dir=run")
    assert code == 0, err
    assert len(compiled) == 3 and len({id(model) for model in compiled}) == 3
    assert json.loads((workdir / "run" / "run.json").read_text())["environment"]["machine"]["compile"] is True
    code, _, err = nas("search", *TINY, "search.max_trials=2", "run_dir=eager")
    assert code == 0 and len(compiled) == 3, err
    tokens = torch.randint(1, 10, (32, 5))  # batches of token ids change length: never compiled
    text = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(20, 2))
    train(text, tokens, torch.randint(0, 2, (32,)), TrainSettings(epochs=1, batch_size=8), CPU, seed=0, compiled=True)
    assert len(compiled) == 3


@pytest.mark.slow
def test_compiled_training_repeats_and_matches_eager_training_and_compiles_every_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """hardware.compile: the compiled loop gives eager training's weights up to rounding, repeats exactly for a
    seed, and compiles each new network even where dynamo's limit of recompilations would run it eagerly."""
    from torch._dynamo.utils import counters

    from nascli.spaces.chain import ChainSettings, ChainSpace

    torch.set_default_dtype(torch.float64)  # as in the layout test above: rounding stays far below any real change
    space = ChainSpace(ChainSettings())
    x, y = torch.randn(80, 1, 8, 8), torch.randint(0, 10, (80,))  # 32 + 32 + a last batch of 16, run eagerly
    hardware = Hardware(device=torch.device("cpu"), amp_dtype=None, channels_last=True, compile=True)

    def fit(blocks: int, compiled: bool) -> nn.Module:
        arch = {"blocks": [{"op": "conv3x3", "width": 16, "down": False},
                           {"op": "sepconv3x3", "width": 32, "down": True},
                           {"op": "avgpool3x3", "width": 32, "down": False}][:blocks]}
        torch.manual_seed(0)
        model = space.build(arch, (1, 8, 8), 10).to(memory_format=torch.channels_last)
        train(model, x, y, TrainSettings(epochs=2, batch_size=32), hardware, seed=0,
              augmentation=Augmentation(crop_padding=1, hflip=True), compiled=compiled)
        return model

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)
    try:
        eager, fast = fit(3, False), fit(3, True)
        for p, q in zip(eager.parameters(), fast.parameters()):
            assert torch.allclose(p, q, atol=1e-9), (p - q).abs().max()
        assert all(torch.equal(p, q) for p, q in zip(fast.parameters(), fit(3, True).parameters()))
        graphs = counters["stats"]["unique_graphs"]
        fit(2, True)  # another network: past the limit of 1, dynamo would have run it eagerly
        assert counters["stats"]["unique_graphs"] == graphs + 1
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="page faults are counted on Linux")
def test_a_freed_activation_is_reused_without_page_faults() -> None:
    """After nascli sets up the CPU, a 16 MB tensor freed and allocated again costs no new page faults."""
    import resource

    from nascli.hardware import keep_freed_memory

    keep_freed_memory()
    for _ in range(3):  # the first ones map fresh memory
        torch.empty(4 * 2**20).fill_(1.0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.empty(4 * 2**20).fill_(1.0)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 1000  # without: 4,096 per tensor


def test_an_epoch_leaves_out_a_last_batch_of_one_example_that_batch_norm_cannot_train_on() -> None:
    assert [batches_per_epoch(n, 64) for n in (1, 2, 64, 65, 66, 128, 129)] == [1, 1, 1, 1, 2, 2, 2]
    settings = TrainSettings(epochs=1, batch_size=4)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 2), nn.BatchNorm1d(2))
    train(net, torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 0]), settings, CPU, seed=0)


def test_the_loop_benchmark_times_each_candidate_eager_and_compiled(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`scripts/bench_loop.py --compile` prints, per candidate, the compiled images/s, ratio, compiling seconds and
    the steps that pay them back, trained through `compiled_forward` (here the network itself: compiling is the
    slow test's)."""
    import importlib.util
    import sys

    import nascli.evaluators.training as training

    script = Path(__file__).parents[1] / "scripts" / "bench_loop.py"
    spec = importlib.util.spec_from_file_location("bench_loop", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    compiled = []
    monkeypatch.setattr(training, "compiled_forward", lambda model: compiled.append(model) or model)
    monkeypatch.setattr(sys, "argv", ["bench_loop.py", "--datasets", "digits", "--chains", "2", "--cells", "1",
                                      "--steps", "3", "--device", "cpu", "--compile"])
    bench.main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| chain", "| nb201"))]
    assert len(rows) == 3 and len(compiled) == 3
    assert all(len(row.split(" | ")) == 9 for row in rows)  # candidate, 4 eager and 4 compiled columns
    assert "compiled: median" in out and "of 3 candidates slower" in out
