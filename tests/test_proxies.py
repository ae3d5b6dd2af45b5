"""Zero-cost proxies: each against a value worked out by hand or computed independently, and evaluator=proxy."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conftest import TINY, read_trials
from nascli.config import load_config
from nascli.data.base import DataSplits
from nascli.errors import TrialFailed
from nascli.evaluators.proxies import JACOV_K, PROXIES, grad_norm, jacov, snip, synflow
from nascli.evaluators.proxy import ProxyEvaluator, ProxyEvaluatorSettings, percentile, proxy_scorer, rank_mean
from nascli.factory import build_space, build_strategy, load_data
from nascli.hardware import Hardware, resolve_hardware
from nascli.seeding import derive_seed
from nascli.spaces.chain import ChainSettings, ChainSpace
from nascli.spaces.text import TextSpace, TextSpaceSettings
from test_errors import assert_one_line_error

PROXY_TINY = [o for o in TINY if o not in ("evaluator.epochs=1", "evaluator.latency_batch=4")] + ["evaluator=proxy"]
CPU = Hardware(device=torch.device("cpu"), amp_dtype=None, channels_last=False)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Square(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * x


class MeanOfEmbeddings(nn.Module):
    """Token ids -> embedding -> mean over positions -> linear (no bias)."""

    def __init__(self, vocab: int, dims: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dims, padding_idx=0)
        self.head = nn.Linear(dims, classes, bias=False)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.head(self.embed(tokens).mean(dim=1))


def small_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 4))


def batch(n: int = 6, shape: tuple[int, ...] = (2, 5, 5), classes: int = 4) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def hand_jacov(jacobians: np.ndarray) -> float:
    """The papers' code: numpy's correlation matrix and general eigenvalues."""
    eig = np.linalg.eig(np.corrcoef(jacobians))[0].real
    return float(-np.sum(np.log(eig + JACOV_K) + 1.0 / (eig + JACOV_K)))


def identical_rows_jacov(n: int) -> float:
    """Every sample's Jacobian the same: the correlations are all 1, the eigenvalues n and n-1 zeros."""
    return -(math.log(n + JACOV_K) + 1 / (n + JACOV_K)) - (n - 1) * (math.log(JACOV_K) + 1 / JACOV_K)


def test_synflow_of_a_linear_chain_is_depth_times_the_path_sum_and_ignores_batchnorm() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        model[1].weight.fill_(-5.0)
        model[1].running_var.fill_(9.0)
    w1, w2 = model[0].weight.detach().double().abs(), model[3].weight.detach().double().abs()
    # R = 1ᵀ|W2||W1|1; each layer's Σ|θ ⊙ ∂R/∂θ| equals R, so two layers give 2R
    paths = float(torch.ones(3, dtype=torch.float64) @ w2 @ w1 @ torch.ones(5, dtype=torch.float64))
    assert synflow(model, *batch(7, (5,))) == pytest.approx(2 * paths, rel=1e-12)


def test_synflow_of_a_convolution_weighs_each_weight_by_its_output_positions() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 3, bias=False)
    model = nn.Sequential(conv, nn.Flatten())
    # a 4x4 input and a 3x3 kernel without padding: each weight meets the all-ones input at 2x2 positions
    expected = 4 * float(conv.weight.detach().double().abs().sum())
    assert synflow(model, *batch(3, (1, 4, 4))) == pytest.approx(expected, rel=1e-12)


def test_snip_and_grad_norm_of_a_linear_layer_match_the_closed_form() -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 3, bias=False)
    x, y = batch(8, (6,), 3)
    w = model.weight.detach().double()
    probabilities = torch.softmax(x.double() @ w.T, dim=1)
    gradient = (probabilities - F.one_hot(y, 3).double()).T @ x.double() / len(x)  # ∂(mean cross-entropy)/∂W
    assert snip(model, x, y) == pytest.approx(float((w * gradient).abs().sum()), rel=1e-5)
    assert grad_norm(model, x, y) == pytest.approx(float(gradient.norm()), rel=1e-5)


def test_snip_and_grad_norm_count_conv_and_linear_weights_in_training_mode() -> None:
    model = small_convnet()
    x, y = batch()
    reference = copy.deepcopy(model).train()
    weights = [reference[0].weight, reference[6].weight]
    torch.manual_seed(5)
    state = torch.get_rng_state()
    grads = torch.autograd.grad(F.cross_entropy(reference(x), y), weights)
    torch.set_rng_state(state)  # the proxies see the dropout draws the reference saw
    expected = sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads))
    assert snip(model, x, y) == pytest.approx(expected, rel=1e-5)
    assert grad_norm(model, x, y) == pytest.approx(sum(float(g.norm()) for g in grads), rel=1e-5)


def test_jacov_matches_the_papers_computation() -> None:
    torch.manual_seed(0)
    head = nn.Linear(10, 3, bias=False)
    model = nn.Sequential(Square(), head)
    x, y = batch(6, (10,), 3)
    # d(Σ outputs)/dx of W(x ⊙ x) is 2 x ⊙ (Wᵀ1): different per sample
    jacobians = 2 * x.double() * head.weight.detach().double().sum(dim=0)
    assert jacov(model, x, y) == pytest.approx(hand_jacov(jacobians.numpy()), rel=1e-6)
    linear = nn.Linear(10, 3, bias=False)  # a linear model's Jacobians are all Wᵀ1
    assert jacov(linear, x, y) == pytest.approx(identical_rows_jacov(6), rel=1e-6)


class Zero(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


def test_jacov_of_a_network_blind_to_its_input_is_nan() -> None:
    zero_weights = nn.Linear(10, 3)
    with torch.no_grad():
        zero_weights.weight.zero_()
    assert math.isnan(jacov(zero_weights, *batch(4, (10,), 3)))
    assert math.isnan(jacov(nn.Sequential(Zero(), nn.Linear(10, 3)), *batch(4, (10,), 3)))  # an NB201 all-none cell


def test_token_networks_are_scored_through_their_embedding() -> None:
    torch.manual_seed(0)
    model = MeanOfEmbeddings(vocab=20, dims=5, classes=3)
    tokens = torch.randint(1, 20, (6, 7))
    labels = torch.randint(0, 3, (6,))
    # the embedding emits ones: R = Σ|W| through one linear layer
    expected = float(model.head.weight.detach().double().abs().sum())
    assert synflow(model, tokens, labels) == pytest.approx(expected, rel=1e-12)
    # d(Σ outputs)/d(embedding output) is Wᵀ1 / L at every position of every sample
    assert jacov(model, tokens, labels) == pytest.approx(identical_rows_jacov(6), rel=1e-6)


def test_every_proxy_scores_a_text_network() -> None:
    torch.manual_seed(0)
    arch = {"embed": 8, "blocks": [{"op": "gru", "width": 8}, {"op": "attention", "width": 8}], "pool": "max",
            "dropout": 0.5}
    model = TextSpace(TextSpaceSettings(widths=[8], embed_dims=[8])).build(arch, (9,), 3, 30)
    tokens = torch.randint(1, 30, (5, 9))
    tokens[:, 6:] = 0
    scores = {name: proxy(model, tokens, torch.randint(0, 3, (5,))) for name, proxy in PROXIES.items()}
    assert all(math.isfinite(v) for v in scores.values()), scores


def test_proxies_leave_the_model_and_torch_state_alone() -> None:
    model = small_convnet().train()
    before = copy.deepcopy(model.state_dict())
    x, y = batch()
    rng = torch.get_rng_state()
    for name, proxy in PROXIES.items():
        with torch.no_grad():
            assert math.isfinite(proxy(model, x, y)), name
            assert not torch.is_grad_enabled()
        assert torch.get_default_dtype() == torch.float32
        assert torch.equal(torch.get_rng_state(), rng), name
        assert model.training and all(m.training for m in model.modules()), name
        assert all(p.grad is None and p.dtype == torch.float32 for p in model.parameters()), name
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), name


def data_splits(n: int = 40) -> DataSplits:
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 4
    return DataSplits(x, y, x[:8], y[:8], x[:8], y[:8], num_classes=4)


def evaluator(**settings: object) -> ProxyEvaluator:
    space = ChainSpace(ChainSettings(max_blocks=3, widths=[8, 16]))
    full = {"batch_size": 8, "reference": 3, **settings}
    return ProxyEvaluator(ProxyEvaluatorSettings(**full), space=space, data=data_splits(), hardware=CPU)


ARCHS = [{"blocks": [{"op": "conv3x3", "width": 8, "down": True}, {"op": "identity", "width": 16, "down": False}]},
         {"blocks": [{"op": "sepconv3x3", "width": 16, "down": False}, {"op": "maxpool3x3", "width": 8, "down": True}]}]


def test_the_same_seed_gives_the_same_scores() -> None:
    first = evaluator(batches=2).evaluate(ARCHS[0], seed=3)
    assert evaluator(batches=2).evaluate(ARCHS[0], seed=3) == first
    other = evaluator(batches=2).evaluate(ARCHS[0], seed=4)
    assert other["proxy_snip"] != first["proxy_snip"] and other["params"] == first["params"]
    assert set(first) == {f"proxy_{name}" for name in PROXIES} | {"params", "flops"}


def test_percentiles_and_rank_mean() -> None:
    reference = [1.0, 2.0, 3.0, 4.0, math.nan]
    assert percentile(2.5, reference) == 50.0
    assert percentile(2.0, reference) == 37.5  # a tie counts half
    assert (percentile(0.0, reference), percentile(math.inf, reference)) == (0.0, 100.0)
    assert math.isnan(percentile(math.nan, reference)) and math.isnan(percentile(1.0, [math.nan]))
    references = {"a": [1.0, 2.0, 3.0, 4.0], "b": [10.0, 20.0], "c": [1.0]}
    assert rank_mean({"a": 2.5, "b": 30.0, "c": math.nan}, references) == 75.0  # c has no rank: left out


def test_rank_mean_of_a_candidate_does_not_depend_on_the_others() -> None:
    forwards = evaluator(proxy="rank_mean", proxies=["synflow", "snip", "params"], combine=["synflow", "snip"])
    backwards = evaluator(proxy="rank_mean", proxies=["synflow", "snip", "params"], combine=["synflow", "snip"])
    a = [forwards.evaluate(arch, seed=1) for arch in ARCHS]
    b = [backwards.evaluate(arch, seed=1) for arch in reversed(ARCHS)][::-1]
    assert a == b and forwards.objective == "rank_mean"
    reference = forwards.reference()
    for metrics in a:
        expected = (percentile(metrics["proxy_synflow"], reference["synflow"])
                    + percentile(metrics["proxy_snip"], reference["snip"])) / 2
        assert metrics["rank_mean"] == pytest.approx(expected)  # params is recorded, not combined
    with pytest.raises(ValueError, match="combine must name one or more of proxies"):
        ProxyEvaluatorSettings(proxy="rank_mean", proxies=["synflow"], combine=["synflow", "jacov"])


def test_a_non_finite_objective_fails_the_trial_and_other_values_become_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PROXIES, "jacov", lambda model, inputs, labels: math.nan)
    metrics = evaluator(proxies=["synflow", "jacov"]).evaluate(ARCHS[0], seed=0)
    assert metrics["proxy_jacov"] is None and math.isfinite(metrics["proxy_synflow"])
    with pytest.raises(TrialFailed, match="proxy_jacov"):
        evaluator(proxy="jacov").evaluate(ARCHS[0], seed=0)


@pytest.mark.parametrize("settings, fragment", [
    ({"proxy": "nope"}, "proxy must be one of"),
    ({"proxies": ["synflow", "bogus"]}, "unknown proxy in proxies: bogus"),
    ({"proxy": "snip", "proxies": ["synflow"]}, "proxy must be one of proxies (synflow)"),
    ({"proxies": []}, "one or more"),
    ({"batch_size": 1}, "batch_size"),
])
def test_settings_are_checked(settings: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        ProxyEvaluatorSettings(**settings)


@pytest.mark.parametrize("space", [["space=chain", "space.max_blocks=3"],
                                   ["space=nb201", "space.cells_per_stage=1", "evaluator.proxy=rank_mean",
                                    "evaluator.reference=3", "evaluator.proxies=[synflow,jacov,params]"]])
def test_search_with_proxies_through_the_cli(nas, workdir: Path, space: list[str]) -> None:
    code, out, err = nas("search", *PROXY_TINY, *space, "run_dir=run")
    assert code == 0, err
    trials = read_trials(workdir / "run")
    assert len(trials) == 3 and all(t["status"] == "ok" for t in trials)
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    objective = "rank_mean" if "evaluator.proxy=rank_mean" in space else "proxy_synflow"
    assert summary["objective"] == objective
    assert summary["best"][objective] == max(t["metrics"][objective] for t in trials)
    assert all({objective, "proxy_synflow", "params", "flops"} <= set(t["metrics"]) for t in trials)
    assert (workdir / "run" / "retrain" / "model.pt").exists()


def test_an_unknown_proxy_is_a_one_line_error(nas) -> None:
    code, _, err = nas("search", *PROXY_TINY, "evaluator.proxy=nope", "run_dir=run")
    assert_one_line_error(code, err, "evaluator", "nope", "rank_mean")


def test_prescreening_keeps_the_best_of_each_pool_by_the_proxy(nas, workdir: Path, table: Path) -> None:
    overrides = ["dataset=synthetic", "dataset.num_samples=200", "hardware=cpu", "space=nb201",
                 "space.stem_channels=4", "space.cells_per_stage=1", "strategy=random", "seed=1"]
    cfg = load_config([*overrides, "strategy.prescreen=synflow", "strategy.prescreen_pool=4"])
    hardware = resolve_hardware(cfg.hardware, "cpu")
    data = load_data(cfg, hardware)
    space = build_space(cfg)
    screened = build_strategy(cfg, space)
    screened.prepare(SimpleNamespace(data=data, hardware=hardware))
    plain = build_strategy(load_config(overrides), space)
    score = proxy_scorer("synflow", space, data, hardware, derive_seed(1, "prescreen"))  # every draw on one seed
    draws = [plain.ask().arch for _ in range(4)]
    assert screened.ask().arch == max(draws, key=score)
    code, _, err = nas("search", *overrides, "strategy.prescreen=synflow", "evaluator=tabular",
                       f"evaluator.table={table}", "search.max_trials=3", "run_dir=run")
    assert code == 0, err
    code, _, err = nas("search", *overrides, "strategy.prescreen=nope", "run_dir=bad")
    assert code == 2 and "prescreen must be one of" in err
