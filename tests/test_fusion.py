"""Multimodal fusion: data with several inputs per sample, the fusion space, baselines, and the CLI around them."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY
from test_errors import assert_one_line_error

import nascli.retraining
from nascli.config import load_config
from nascli.data.av_digits import paired, weakened
from nascli.data.base import Modalities
from nascli.seeding import derive_seed
from nascli.spaces.fusion import FUSION_OPS, FusionSettings, FusionSpace

THREE = "dataset.shapes={image: [1, 8, 8], audio: [1, 6, 10], depth: [2, 4, 4]}"
QUICK = ["dataset=multimodal_synthetic", "dataset.num_samples=160", *TINY[2:]]


WITH_TEXT = {"image": "image", "audio": "image", "caption": "tokens"}
TEXT_DATA = ["dataset=multimodal_synthetic", "dataset.num_samples=160", "dataset.shapes={image: [1, 8, 8], words: [10]}"]


def fusion_space(inputs: dict[str, str] | None = None, **settings) -> FusionSpace:
    return FusionSpace(FusionSettings(inputs=inputs or {"image": "image", "audio": "image"}, **settings))


def splits(*overrides: str):
    cfg = load_config(["dataset=multimodal_synthetic", *overrides])
    return cfg, cfg.dataset.cls(cfg.dataset.settings).load()


def test_multimodal_samples_stay_aligned_through_indexing_joining_and_moving() -> None:
    parts = {"a": torch.arange(6.0)[:, None], "b": 10 * torch.arange(6.0)[:, None]}
    inputs = Modalities(parts, {"a": "image", "b": "image"})
    picked = inputs[torch.tensor([4, 1])]
    assert picked.parts["a"].flatten().tolist() == [4.0, 1.0] and picked.parts["b"].flatten().tolist() == [40.0, 10.0]
    both = inputs[:2].joined(inputs[5:]).to(torch.device("cpu"))
    assert len(both) == 3 and both.parts["b"].flatten().tolist() == [0.0, 10.0, 50.0]
    assert inputs.selected(torch.tensor([3])).parts["b"].flatten().tolist() == [30.0]
    with pytest.raises(ValueError, match="align"):
        Modalities({"a": torch.zeros(3), "b": torch.zeros(4)}, {"a": "image", "b": "image"})


def test_generated_two_and_three_input_data_and_the_space_follows_the_dataset() -> None:
    cfg, data = splits(THREE, "dataset.classes=[3,1,2,0]")
    assert data.input_shape == {"image": (1, 8, 8), "audio": (1, 6, 10), "depth": (2, 4, 4)}
    assert data.modality == {"image": "image", "audio": "image", "depth": "image"}
    assert cfg.space.name == "fusion" and cfg.space.settings.inputs == data.modality  # from the dataset
    assert data.num_classes == 4 and len(data.train_x) == len(data.train_y)
    for part in data.train_x.parts.values():  # each input normalised on its own training statistics
        assert abs(float(part.mean())) < 0.2 and abs(float(part.std()) - 1) < 0.2
    _, two = splits()
    assert list(two.input_shape) == ["image", "audio"]


def test_pairing_is_label_consistent_even_and_deterministic() -> None:
    labels = np.random.default_rng(0).permutation(np.arange(40) % 3)
    recordings = np.arange(12)[::-1] % 3
    first = paired(labels, recordings, np.random.default_rng(3))
    assert (recordings[first] == labels).all()
    assert (first == paired(labels, recordings, np.random.default_rng(3))).all()
    for digit in range(3):  # 13-14 images of a digit over its 4 recordings: each used 3 or 4 times
        uses = np.bincount(first[labels == digit], minlength=12)[recordings == digit]
        assert uses.max() - uses.min() <= 1
    assert not (first == paired(labels, recordings, np.random.default_rng(4))).all()


def test_the_image_weakening_is_fitted_on_training_rows_only() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(80, 1, 4, 4)).astype(np.float32)
    train = np.arange(60)
    kept = weakened(images, train, 0.25)
    changed = images.copy()
    changed[60:] *= 100  # other test images: the training rows' reconstruction must not move
    assert np.allclose(weakened(changed, train, 0.25)[:60], kept[:60], atol=1e-5)
    assert not np.allclose(kept, images, atol=1e-2)  # a quarter of the variance: the images lose detail


def test_av_digits_pairs_mnist_with_recordings_of_the_same_digit(workdir: Path) -> None:
    pytest.importorskip("librosa")
    from test_audio import tone

    rng = np.random.default_rng(0)
    digits = np.arange(60) % 3
    np.savez(workdir / "mnist.npz", x_train=(rng.random((60, 28, 28)) * 255).astype(np.uint8), y_train=digits,
             x_test=(rng.random((30, 28, 28)) * 255).astype(np.uint8), y_test=digits[:30])
    for digit in range(3):
        for index in range(8):
            tone(workdir / "fsdd" / "recordings" / f"{digit}_ann_{index}.wav", 300 * (digit + 1), 0.3, seed=index)
    # clean tones: their loudest band names the digit
    overrides = ["dataset=av_digits", f"dataset.root={workdir}", "dataset.workers=1", "dataset.n_mels=16",
                 "dataset.noise_snr_db=null", "dataset.cache_dir=cache"]
    cfg = load_config(overrides)
    dataset = cfg.dataset.cls(cfg.dataset.settings)
    pool, y, test, test_y = dataset.arrays()
    assert len(pool["audio"]) == len(pool["image"]) == 60 and len(test["audio"]) == 30
    loudest_band = pool["audio"][:, 0].mean(axis=2).argmax(axis=1)  # the tone's mel band names the digit
    for digit in range(3):
        assert len(set(loudest_band[y == digit].tolist())) == 1
    assert len(set(loudest_band.tolist())) == 3
    data = dataset.load()
    assert data.input_shape == {"image": (1, 28, 28), "audio": (1, 16, 32)} and len(data.test_x) == 30

    def recordings(split) -> set[bytes]:
        return {row.numpy().tobytes() for row in split.parts["audio"]}

    assert not recordings(data.train_x) & recordings(data.val_x)  # validation hears no training recording
    assert data.resampled(1) is data  # search.confirm_folds keeps that validation
    cfg = load_config([*overrides, "dataset.train_per_class=12"])  # only the images drawn are paired, as before
    fewer = cfg.dataset.cls(cfg.dataset.settings).load()
    assert len(fewer.train_x) + len(fewer.val_x) == 36 and not recordings(fewer.train_x) & recordings(fewer.val_x)


@pytest.mark.parametrize("inputs", [None, WITH_TEXT])
def test_fusion_space_operations_stay_in_the_space(inputs) -> None:
    space, rng = fusion_space(inputs), random.Random(0)
    for _ in range(60):
        arch = space.validate(space.sample(rng))
        child = space.validate(space.mutate(arch, rng))
        assert space.hash(child) != space.hash(arch)
        space.validate(space.crossover(arch, child, rng))
        neighbours = space.neighbours(arch)
        assert neighbours and all(space.hash(n) != space.hash(arch) for n in neighbours)
        for n in rng.sample(neighbours, 5):
            space.validate(n)
        picked = space.validate(space.from_decisions([rng.randrange(k) for k in space.decisions()]))
        assert len(space.encode(picked)) == len(space.encode(arch))
        for baseline in space.baselines(arch).values():
            space.validate(baseline)


def test_searches_try_late_fusion_and_the_ensemble_of_plain_encoders_first() -> None:
    from nascli.strategies.bo import BayesianOptimisation, BOSettings

    space = fusion_space(WITH_TEXT)
    late, ensemble = space.references()
    taps = {"image": 0, "audio": 0, "caption": 0}
    assert late["fusion"] == [{"taps": taps, "op": "concat", "width": 128}]
    assert [b["op"] for b in late["encoders"]["image"]["blocks"]] == ["conv3x3"] * 3
    assert late["encoders"]["caption"]["blocks"] == [{"op": "kim", "width": 128}]
    assert ensemble == {"encoders": late["encoders"], "fusion": [{"taps": taps, "op": "ensemble", "width": 128}]}
    strategy = BayesianOptimisation(BOSettings(), space, seed=0)
    assert [strategy.ask().arch for _ in range(2)] == [late, ensemble]
    assert fusion_space(references=False).references() == [] and fusion_space(ops=["sum"]).references() == []
    assert [d["fusion"][0]["op"] for d in fusion_space(ops=["concat"]).references()] == ["concat"]
    assert [d["fusion"][0]["op"] for d in fusion_space({"image": "image"}).references()] == ["concat"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a["fusion"][0]["taps"].update(image=9), "not a layer of its encoder"),
        (lambda a: a["fusion"][0].update(op="bilinear"), "op 'bilinear'"),
        (lambda a: a["encoders"].update(radar=a["encoders"]["image"]), "one or more of the inputs"),
        (lambda a: a["fusion"][0]["taps"].pop("audio"), "taps name each encoder once"),
        (lambda a: a["fusion"].clear(), "'fusion' is a list of 1 to 3 steps"),
    ],
)
def test_invalid_fusion_architectures_say_why(change, message: str) -> None:
    space = fusion_space()
    arch = space.sample(random.Random(1))
    change(arch)
    with pytest.raises(ValueError, match=message):
        space.validate(arch)


@pytest.mark.parametrize("op", FUSION_OPS)
def test_each_fusion_op_trains_round_trips_and_exports(op: str, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    from nascli.onnx_writer import write_onnx

    space = fusion_space(WITH_TEXT)
    encoders = {"image": {"blocks": [{"op": "conv3x3", "width": 16, "down": True}]},
                "audio": {"blocks": [{"op": "sepconv3x3", "width": 32, "down": False},
                                     {"op": "maxpool3x3", "width": 16, "down": True}]},
                "caption": {"embed": 64, "blocks": [{"op": "conv3", "width": 64}], "pool": "attention", "dropout": 0.0}}
    first = [{"taps": {"image": 1, "audio": 2, "caption": 1}, "op": "sum", "width": 32}] if op != "ensemble" else []
    arch = {"encoders": encoders, "fusion": first + [{"taps": {"image": 0, "audio": 0, "caption": 0}, "op": op,
                                                      "width": 64}]}
    arch = space.validate(json.loads(json.dumps(arch)))
    shapes, vocab_size = {"image": (1, 8, 8), "audio": (1, 6, 10), "caption": (7,)}, {"caption": 30}
    torch.manual_seed(0)
    net = space.build(arch, shapes, 3, vocab_size)
    tokens = torch.randint(2, 30, (5, 7))
    tokens[1:, 4:] = 0  # padded sentences
    inputs = (torch.randn(5, 1, 8, 8), torch.randn(5, 1, 6, 10), tokens)
    net.criterion(net(*inputs), torch.tensor([0, 1, 2, 0, 1])).backward()
    assert all(p.grad is not None for p in net.steps[-1].parameters())  # every part of the step is used
    rebuilt = space.build(space.validate(json.loads(json.dumps(arch))), shapes, 3, vocab_size)
    rebuilt.load_state_dict(net.state_dict())
    net.eval(), rebuilt.eval()
    with torch.no_grad():
        expected = net(*inputs)
        assert torch.equal(rebuilt(*inputs), expected)
        more_padding = torch.cat([tokens, torch.zeros(5, 3, dtype=tokens.dtype)], 1)  # padding is never attended
        assert torch.allclose(net(*inputs[:2], more_padding), expected, atol=1e-5)
        write_onnx(net, inputs, tmp_path / "m.onnx", list(shapes))
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: part.numpy() for name, part in zip(shapes, inputs)})[0]
    assert np.abs(got - expected.numpy()).max() < 1e-4


def test_fusion_search_retrains_baselines_and_works_with_show_report_export_retrain(nas, workdir: Path, monkeypatch) -> None:
    seeds = []
    real_fit = nascli.retraining.fit_and_score
    monkeypatch.setattr(nascli.retraining, "fit_and_score",
                        lambda *args, **kw: seeds.append(args[5]) or real_fit(*args, **kw))
    code, out, err = nas("search", *QUICK, THREE, "run_dir=run")
    assert code == 0, err
    metrics = json.loads((workdir / "run" / "retrain" / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"image_only", "audio_only", "depth_only", "late_fusion",
                                         "handmade_late_fusion"}
    best = json.loads((workdir / "run" / "best.json").read_text())["arch"]
    late = metrics["baselines"]["late_fusion"]
    assert late["arch"]["encoders"] == best["encoders"] and late["arch"]["fusion"][0]["op"] == "concat"
    space = fusion_space({"image": "image", "audio": "image", "depth": "image"})
    assert metrics["baselines"]["handmade_late_fusion"]["arch"] == space.references()[0]
    # found and baselines on common random numbers, each architecture retrained once
    archs = [best] + [result["arch"] for result in metrics["baselines"].values()]
    assert seeds == [derive_seed(0, "retrain")] * len({space.hash(arch) for arch in archs})
    same = [result for result in metrics["baselines"].values() if space.hash(result["arch"]) == space.hash(best)]
    assert same and all(r["same_as"] == "found" and r["test_acc"] == metrics["test_acc"] for r in same)
    assert all(result["test_acc"] is not None for result in metrics["baselines"].values())
    summary = json.loads((workdir / "run" / "summary.json").read_text())
    assert set(summary["baselines"]) == set(metrics["baselines"]) and "baselines (test_acc" in out
    code, out, _ = nas("show", "run")
    assert code == 0 and "baselines, retrained the same way" in out and "late_fusion" in out and "(= found)" in out
    code, out, _ = nas("report", "run")
    assert code == 0 and "test_acc:late_fusion" in out
    code, out, err = nas("export", "run", "--format", "onnx")
    assert code == 0, err
    import onnx

    model = onnx.load(str(workdir / "run" / "export" / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["image", "audio", "depth"]
    code, _, err = nas("retrain", "run", *QUICK, THREE, "search.baselines=false", "run_dir=again")
    assert code == 0, err
    assert "baselines" not in json.loads((workdir / "again" / "retrain" / "metrics.json").read_text())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset=multimodal_synthetic", "space=chain"], "space=chain builds networks for image inputs"),
        (["dataset=synthetic", "space=fusion"], "space=fusion needs a dataset with several inputs"),
        (["dataset=multimodal_synthetic", "space.encoders={radar: {max_blocks: 2}}"], "not inputs"),
    ],
)
def test_mismatched_space_and_data_are_one_line_errors(nas, overrides: list[str], message: str) -> None:
    code, _, err = nas("search", *overrides, *TINY[2:], "run_dir=run")
    assert_one_line_error(code, err, message)


def test_a_table_of_image_and_recording_paths_is_multimodal_data(nas, workdir: Path) -> None:
    pytest.importorskip("librosa")
    from PIL import Image
    from test_audio import tone

    rows = ["photo,clip,label"]
    for i in range(36):
        label = ("cat", "dog", "owl")[i % 3]
        Image.fromarray(np.full((12, 10, 3), 80 * (i % 3), dtype=np.uint8)).save(workdir / f"p{i}.png")
        tone(workdir / "sounds" / f"c{i}.wav", 300 * (1 + i % 3), 0.3, seed=i)
        rows.append(f"p{i}.png,sounds/c{i}.wav,{label}")
    (workdir / "p5.png").write_bytes(b"not an image")
    (workdir / "data.csv").write_text("\n".join(rows) + "\n")
    table = ["dataset=multimodal", "dataset.train=data.csv", "dataset.inputs={photo: image, clip: audio}",
             "dataset.image_size=8", "dataset.n_mels=8", "dataset.seconds=0.5", "dataset.workers=1",
             "dataset.test_fraction=0.25", "dataset.val_fraction=0.2"]
    cfg = load_config(table)
    data = cfg.dataset.cls(cfg.dataset.settings).load()
    assert data.input_shape == {"photo": (3, 8, 8), "clip": (1, 8, 32)} and data.num_classes == 3
    assert len(data.train_x) + len(data.val_x) + len(data.test_x) == 35  # the unreadable photo's row is left out
    code, _, err = nas("search", *table, *TINY[2:], "run_dir=run")
    assert code == 0, err
    assert "skipped 1 sample(s) with an input that cannot be read" in err
    code, _, err = nas("search", *table[:2], "dataset.inputs={photo: image, voice: audio}", "run_dir=bad")
    assert_one_line_error(code, err, "lacks the column(s) voice")
    code, _, err = nas("search", *table[:2], "run_dir=bad")
    assert_one_line_error(code, err, "dataset.inputs is required")


def test_texts_fuse_with_images_from_search_to_export(nas, workdir: Path) -> None:
    onnx = pytest.importorskip("onnx")
    code, out, err = nas("search", *TEXT_DATA, *TINY[2:], "run_dir=run")
    assert code == 0, err
    assert "words_only" in out and "late_fusion" in out
    vocabulary = json.loads((workdir / "run" / "vocabulary.json").read_text())
    assert list(vocabulary) == ["words"] and {"words0", "words1"} <= set(vocabulary["words"]["tokens"])
    best = json.loads((workdir / "run" / "best.json").read_text())["arch"]
    assert set(best["encoders"]["words"]) == {"embed", "blocks", "pool", "dropout"}  # a text-space encoder
    code, _, err = nas("export", "run", "--format", "onnx")
    assert code == 0, err
    graph = onnx.load(str(workdir / "run" / "export" / "model.onnx")).graph
    assert [(i.name, i.type.tensor_type.elem_type) for i in graph.input] == [("image", onnx.TensorProto.FLOAT),
                                                                               ("words", onnx.TensorProto.INT64)]
    assert (workdir / "run" / "export" / "vocabulary.json").exists()
    code, _, err = nas("report", "run", "--plots", "plots")  # the drawing of a text encoder beside a chain
    assert code == 0, err
    assert (workdir / "plots" / "arch-run.png").stat().st_size > 0
    code, _, err = nas("retrain", "run", *TEXT_DATA, *TINY[2:], "search.baselines=false", "run_dir=again")
    assert code == 0, err
    without_training = [o for o in TINY[2:] if not o.startswith("evaluator.")]
    code, _, err = nas("search", *TEXT_DATA, *without_training, "evaluator=proxy", "evaluator.proxies=[synflow,jacov]",
                       "retrain.enabled=false", "run_dir=proxies")
    assert code == 0, err
    trials = [json.loads(line) for line in (workdir / "proxies" / "trials.jsonl").read_text().splitlines()]
    assert all(t["status"] == "ok" and np.isfinite(t["metrics"]["proxy_jacov"]) for t in trials)
    code, _, err = nas("search", *TEXT_DATA, "strategy=spos", "run_dir=oneshot")
    assert_one_line_error(code, err, "words holds token ids, and the text space has no supernet")


def test_a_table_with_a_text_column_builds_its_vocabulary_on_training_rows_only(workdir: Path) -> None:
    from PIL import Image

    rows = ["photo,caption,label"]
    for i in range(40):
        label = ("cat", "dog")[i % 2]
        Image.fromarray(np.full((6, 6), 120 * (i % 2), dtype=np.uint8)).save(workdir / f"p{i}.png")
        rows.append(f"p{i}.png,a photo of a {label} number{i},{label}")
    (workdir / "data.csv").write_text("\n".join(rows) + "\n")
    cfg = load_config(["dataset=multimodal", "dataset.train=data.csv", "dataset.inputs={photo: image, caption: text}",
                       "dataset.image_size=6", "dataset.workers=1", "dataset.test_fraction=0.25"])
    assert cfg.space.settings.inputs == {"photo": "image", "caption": "tokens"}
    data = cfg.dataset.cls(cfg.dataset.settings).load()
    assert data.input_shape == {"photo": (1, 6, 6), "caption": (6,)} and data.vocab_size["caption"] > 4
    tokens = data.vocabulary["caption"]["tokens"]
    seen = {int(t) for t in data.train_x.parts["caption"].flatten()}
    held_out = {int(t) for part in (data.val_x, data.test_x) for t in part.parts["caption"].flatten()}
    assert 1 in held_out and 1 not in seen  # the other rows' numbers are unknown: the vocabulary is the training rows'
    assert len(tokens) == len(seen | {0, 1})


def test_proxies_prescreening_and_weight_transfer_work_on_several_inputs(nas, workdir: Path) -> None:
    without_training = [o for o in QUICK if not o.startswith("evaluator.")]
    code, _, err = nas("search", *without_training, "evaluator=proxy",
                       "evaluator.proxies=[synflow,jacov,snip,grad_norm,flops]", "retrain.enabled=false", "run_dir=proxies")
    assert code == 0, err
    trials = [json.loads(line) for line in (workdir / "proxies" / "trials.jsonl").read_text().splitlines()]
    assert all(t["status"] == "ok" and t["metrics"]["proxy_jacov"] is not None and t["metrics"]["proxy_flops"] > 0
               for t in trials)
    code, _, err = nas("search", *QUICK, "strategy=random", "strategy.prescreen=synflow", "run_dir=run")
    assert code == 0, err
    code, _, err = nas("retrain", "run", *QUICK, "retrain.init=run", "search.baselines=false", "run_dir=tuned")
    assert code == 0, err
    init = json.loads((workdir / "tuned" / "retrain" / "metrics.json").read_text())["init"]
    assert init["copied"] > 0


def test_multimodal_data_larger_than_the_memory_budget_streams_with_the_same_results(nas, workdir: Path) -> None:
    from nascli.data.base import StreamedSamples

    mixed = "dataset.shapes={image: [1, 8, 8], audio: [1, 6, 10], words: [6]}"
    _, in_memory = splits(mixed)
    _, streamed = splits(mixed, "dataset.max_memory_gb=1e-9")
    parts = streamed.train_x.parts
    assert isinstance(parts["image"], StreamedSamples) and isinstance(parts["audio"], StreamedSamples)
    assert isinstance(parts["words"], torch.Tensor)  # token ids stay in memory
    rows = torch.tensor([5, 0, 17])
    for name, part in in_memory.val_x.parts.items():
        assert torch.equal(streamed.val_x[rows].parts[name], part[rows])
    runs = {}
    for run, extra in (("memory", []), ("streamed", ["dataset.max_memory_gb=1e-9"])):
        code, _, err = nas("search", *QUICK, mixed, *extra, "search.baselines=false", f"run_dir={run}")
        assert code == 0, err
        trials = [json.loads(line) for line in (workdir / run / "trials.jsonl").read_text().splitlines()]
        runs[run] = ([t["metrics"]["val_acc"] for t in trials],
                     json.loads((workdir / run / "summary.json").read_text())["test_acc"])
    assert runs["memory"] == runs["streamed"]


def test_an_ensemble_trains_each_input_on_its_own_loss_and_multiplies_their_probabilities() -> None:
    space = fusion_space()
    late, ensemble = space.references()
    shapes = {"image": (1, 8, 8), "audio": (1, 6, 10)}
    torch.manual_seed(0)
    net = space.build(ensemble, shapes, 3)
    inputs, labels = (torch.randn(6, 1, 8, 8), torch.randn(6, 1, 6, 10)), torch.tensor([0, 1, 2, 0, 1, 2])
    pooled = {name: net.encoders[name].pooled(0, net.encoders[name].layers(x)[0][-1], None)
              for name, x in zip(("image", "audio"), inputs)}
    experts = {name: net.steps[0].experts[name](f) for name, f in pooled.items()}
    output = net(*inputs)
    assert torch.allclose(output, sum(z.log_softmax(1) for z in experts.values()), atol=1e-6)
    own = sum(F.cross_entropy(z, labels, label_smoothing=0.1) for z in experts.values())
    assert torch.allclose(net.criterion(output, labels, 0.1), own, atol=1e-6)
    net.criterion(output, labels).backward()
    image_grads = [p.grad.clone() for p in net.encoders["image"].parameters()]
    net.zero_grad()
    net.criterion(net(inputs[0], 5 * torch.randn(6, 1, 6, 10)), labels).backward()  # other recordings
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(image_grads, net.encoders["image"].parameters()))
    late_net = space.build(late, shapes, 3)
    logits = late_net(*inputs)
    assert torch.equal(late_net.criterion(logits, labels, 0.1), F.cross_entropy(logits, labels, label_smoothing=0.1))
    with pytest.raises(ValueError, match="the ensemble op is a fusion's only step"):
        space.validate({**ensemble, "fusion": ensemble["fusion"] + late["fusion"]})


def test_an_encoder_starts_alike_in_every_fusion_and_an_expert_as_its_input_s_network_alone() -> None:
    space = fusion_space()
    late, ensemble = space.references()
    shapes = {"image": (1, 8, 8), "audio": (1, 6, 10)}

    def built(arch: dict) -> torch.nn.Module:
        torch.manual_seed(3)
        return space.build(arch, shapes, 3)

    nets = {"late": built(late), "ensemble": built(ensemble), **{k: built(a) for k, a in space.baselines(late).items()}}
    deeper = copy.deepcopy(late)
    deeper["encoders"]["image"]["blocks"].append({"op": "conv3x3", "width": 16, "down": False})
    nets["deeper image"] = built(deeper)
    for name, count in (("image", 5), ("audio", 6)):  # the deeper image encoder leaves the audio encoder as it was
        alike = [net.encoders[name].state_dict() for key, net in nets.items()
                 if name in net.encoders and not (name == "image" and key == "deeper image")]
        assert len(alike) == count and all(torch.equal(a[k], alike[0][k]) for a in alike[1:] for k in alike[0])
        alone = nets[f"{name}_only"]
        expert = nets["ensemble"].steps[0].experts[name]
        assert torch.equal(expert[0].weight, alone.steps[0].mix.weight) and torch.equal(expert[3].weight, alone.head.weight)
    torch.manual_seed(4)  # another trial seed, other initial weights
    other = space.build(late, shapes, 3)
    assert not torch.equal(next(other.encoders["image"].parameters()), next(nets["late"].encoders["image"].parameters()))


def test_the_ensemble_stays_a_fusion_s_only_step_through_every_search_operation() -> None:
    space, rng = fusion_space(), random.Random(0)
    archs = [space.sample(rng) for _ in range(200)]
    assert any(a["fusion"][0]["op"] == "ensemble" for a in archs) and any(len(a["fusion"]) > 1 for a in archs)
    archs += [space.mutate(a, rng) for a in archs] + [space.crossover(a, b, rng) for a, b in zip(archs, archs[1:])]
    archs += [space.from_decisions([rng.randrange(k) for k in space.decisions()]) for _ in range(200)]
    archs += [n for a in space.references() for n in space.neighbours(a)]
    for arch in archs:
        space.validate(arch)


def test_a_fusion_supernet_path_computes_what_its_extracted_network_computes() -> None:
    space, rng = fusion_space(max_steps=3), random.Random(2)
    shapes = {"image": (1, 8, 8), "audio": (1, 6, 10)}
    torch.manual_seed(0)
    supernet = space.supernet(shapes, 3)
    with torch.no_grad():  # away from the initial values, so that a wrongly sliced weight shows
        for weight in supernet.parameters():
            weight.add_(0.1 * torch.randn_like(weight))
    inputs = (torch.randn(4, 1, 8, 8), torch.randn(4, 1, 6, 10))
    supernet.eval()
    archs = [space.sample(rng) for _ in range(25)]
    archs += [baseline for arch in archs[:5] for baseline in space.baselines(arch).values()]
    archs += [{**archs[0], "fusion": [{**step, "op": op} for step in archs[0]["fusion"]][: 1 if op == "ensemble" else 3]}
              for op in FUSION_OPS]
    assert any(arch["fusion"][0]["op"] == "ensemble" for arch in archs[:25])
    with torch.no_grad():
        for arch in archs:
            expected = supernet.use(arch)(*inputs)
            assert torch.allclose(supernet.extract(arch).eval()(*inputs), expected, atol=1e-5), arch
    supernet.train()
    supernet.use(archs[0])(*inputs).sum().backward()
    assert any(p.grad is not None for p in supernet.steps[0].parameters())


def test_one_shot_search_on_several_inputs_and_its_supernet_reused(nas, workdir: Path) -> None:
    one_shot = [o for o in QUICK if not o.startswith("evaluator.latency")]
    code, _, err = nas("search", *one_shot, "strategy=spos", "strategy.epochs=2", "search.max_trials=4",
                       "search.baselines=false", "run_dir=oneshot")
    assert code == 0, err
    checkpoint = torch.load(workdir / "oneshot" / "supernet.pt", weights_only=True)
    assert checkpoint["input_shape"] == {"image": (1, 8, 8), "audio": (1, 6, 10)}
    code, _, err = nas("search", *one_shot, "strategy=random", "evaluator=supernet", "evaluator.supernet=oneshot",
                       "retrain.enabled=false", "run_dir=reused")
    assert code == 0, err
    code, _, err = nas("retrain", "oneshot", *QUICK, "retrain.init=oneshot", "search.baselines=false", "run_dir=tuned")
    assert code == 0, err
    code, _, err = nas("search", *one_shot, "strategy=darts", "run_dir=relaxed")
    assert_one_line_error(code, err, "no continuous relaxation; use strategy=spos")


def test_noise_is_mixed_in_at_the_asked_ratio_and_the_same_for_a_file_every_time() -> None:
    from nascli.data.audio import with_noise

    wave = np.sin(np.linspace(0, 200, 8000)).astype(np.float32)
    noisy = with_noise(wave, 3.0, "1_ann_7.wav")
    ratio = 10 * np.log10(np.mean(wave**2) / np.mean((noisy - wave) ** 2))
    assert abs(ratio - 3.0) < 0.2
    assert np.array_equal(noisy, with_noise(wave, 3.0, "1_ann_7.wav"))
    assert not np.array_equal(noisy, with_noise(wave, 3.0, "1_ann_8.wav"))
