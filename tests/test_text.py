"""Text: CSV/TSV sentences become token ids with a vocabulary built on the training split; space=text searches them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import TINY
from nascli.config import load_config
from nascli.data.base import Augmentation, trim_padding
from nascli.data.text import encode
from nascli.evaluators.training import augment
from nascli.errors import UserError
from nascli.factory import build_space, build_strategy
from nascli.spaces.text import KIM_CNN
from test_errors import assert_one_line_error

WORDS = {0: ["good", "great", "fine", "lovely"], 1: ["bad", "awful", "poor", "dull"]}
QUICK = [o for o in TINY if not o.startswith("dataset")] + ["space=text", "space.widths=[8]",
                                                             "space.embed_dims=[8]", "space.max_blocks=2"]


def sentences(n: int, seed: int) -> pd.DataFrame:
    """Short sentences whose label is told by their words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(WORDS[label]) for _ in range(rng.randint(2, 6))] + ["movie", "!"]
        rows.append({"text": " ".join(rng.sample(words, len(words))), "label": ["neg", "pos"][label], "fold": i % 5})
    return pd.DataFrame(rows)


def text_data(workdir: Path) -> list[str]:
    """Writes a small train.csv and test.csv of sentences; the overrides of a text dataset reading them."""
    sentences(80, 0).to_csv(workdir / "train.csv", index=False)
    sentences(20, 1).to_csv(workdir / "test.csv", index=False)
    return ["dataset=text", "dataset.train=train.csv", "dataset.test=test.csv"]


def test_vocabulary_comes_from_the_training_split_only(workdir: Path) -> None:
    train = sentences(60, 0)
    train.loc[0, "text"] = "zebra " * 3
    train.to_csv(workdir / "train.csv", index=False)
    test = sentences(20, 1)
    test.loc[0, "text"] = "unicorn unicorn good"
    test.to_csv(workdir / "test.tsv", sep="\t", index=False)
    cfg = load_config(["dataset=text", "dataset.train=train.csv", "dataset.test=test.tsv", "dataset.val_fraction=0.2"])
    splits = cfg.dataset.cls(cfg.dataset.settings).load()
    tokens = splits.vocabulary["tokens"]
    assert tokens[:2] == ["<pad>", "<unk>"] and "unicorn" not in tokens
    assert splits.vocabulary["classes"] == ["neg", "pos"] and splits.num_classes == 2
    assert splits.input_shape == (8,)  # the longest training sentence, under max_length
    assert splits.test_x[0].tolist()[:3] == [1, 1, tokens.index("good")]  # unknown, unknown, good, then padding
    assert splits.test_x[0].tolist()[3:] == [0] * 5
    assert len(splits.train_x) == 48 and len(splits.val_x) == 12 and len(splits.test_x) == 20
    assert encode(["Good MOVIE"], splits.vocabulary, 4).tolist() == [[tokens.index("good"), tokens.index("movie"), 0, 0]]


def test_a_validation_file_is_the_validation_split_and_shapes_no_vocabulary(nas, workdir: Path) -> None:
    sentences(60, 0).to_csv(workdir / "train.csv", index=False)
    dev = sentences(14, 2)
    dev.loc[0, "text"] = "zebra good"
    dev.to_csv(workdir / "dev.csv", index=False)
    sentences(20, 1).to_csv(workdir / "test.csv", index=False)
    cfg = load_config(["dataset=text", "dataset.train=train.csv", "dataset.val=dev.csv", "dataset.test=test.csv",
                       "dataset.train_per_class=20"])
    splits = cfg.dataset.cls(cfg.dataset.settings).load()
    assert len(splits.train_x) == 40 and len(splits.val_x) == 14 and len(splits.test_x) == 20
    tokens = splits.vocabulary["tokens"]
    assert "zebra" not in tokens and splits.val_x[0].tolist()[:2] == [1, tokens.index("good")]
    assert splits.val_y.tolist() == [0, 1] * 7
    assert splits.resampled(1) is splits  # search.confirm_folds keeps a validation file
    code, _, err = nas("search", "dataset=text", "dataset.train=train.csv", "dataset.val=nodev.csv", *QUICK)
    assert_one_line_error(code, err, "dataset.val nodev.csv not found")


def test_text_classes_subset_keeps_their_sentences_and_names(workdir: Path) -> None:
    data = sentences(60, 0)
    data.loc[data.index % 3 == 0, "label"] = "meh"
    data.to_csv(workdir / "data.csv", index=False)
    cfg = load_config(["dataset=text", "dataset.train=data.csv", "dataset.classes=[2,0]", "dataset.test_fraction=0.25"])
    splits = cfg.dataset.cls(cfg.dataset.settings).load()
    assert splits.vocabulary["classes"] == ["pos", "meh"] and splits.num_classes == 2
    assert len(splits.train_y) + len(splits.val_y) + len(splits.test_y) == int((data["label"] != "neg").sum())


def test_fold_column_names_the_test_set(workdir: Path) -> None:
    sentences(50, 0).to_csv(workdir / "data.csv", index=False)
    cfg = load_config(["dataset=mr", f"dataset.root={workdir}", "dataset.train=data.csv", "dataset.test_fold=3"])
    splits = cfg.dataset.cls(cfg.dataset.settings).load()
    assert len(splits.test_x) == 10 and len(splits.train_x) + len(splits.val_x) == 40


def test_text_search_retrain_and_export_keep_the_vocabulary(nas, workdir: Path) -> None:
    data = text_data(workdir)
    code, _, err = nas("search", *data, *QUICK, "run_dir=run")
    assert code == 0, err
    vocabulary = json.loads((workdir / "run" / "vocabulary.json").read_text())
    assert vocabulary["tokens"][:2] == ["<pad>", "<unk>"] and vocabulary["max_length"] == 8
    code, _, err = nas("retrain", "run", "retrain.epochs=1", "run_dir=again")
    assert code == 0, err
    assert json.loads((workdir / "again" / "vocabulary.json").read_text()) == vocabulary
    code, out, err = nas("export", "again", "--format", "torchscript")
    assert code == 0, err
    assert json.loads((workdir / "again" / "export" / "vocabulary.json").read_text()) == vocabulary
    model = torch.jit.load(str(workdir / "again" / "export" / "model.ts"))
    assert model(torch.from_numpy(encode(["good great movie"], vocabulary, 8))).shape == (1, 2)
    (workdir / "mine").mkdir()
    (workdir / "mine" / "vocabulary.json").write_text("my own")  # written beside --out: replaced only with --force
    code, _, err = nas("export", "again", "--out", "mine/model.ts")
    assert_one_line_error(code, err, "vocabulary.json", "--force")
    assert (workdir / "mine" / "vocabulary.json").read_text() == "my own" and not (workdir / "mine" / "model.ts").exists()
    code, _, err = nas("export", "again", "--out", "mine/model.ts", "--force")
    assert code == 0, err
    assert json.loads((workdir / "mine" / "vocabulary.json").read_text()) == vocabulary


def test_image_space_on_text_and_bad_text_files_are_one_line(nas, workdir: Path) -> None:
    sentences(40, 0).to_csv(workdir / "train.csv", index=False)
    image_space = [o for o in QUICK if not o.startswith("space")] + ["space=chain"]
    code, _, err = nas("search", "dataset=text", "dataset.train=train.csv", *image_space, "run_dir=run")
    assert_one_line_error(code, err, "use space=text")
    pd.DataFrame({"sentence": ["a b"] * 10, "label": [0, 1] * 5}).to_csv(workdir / "columns.csv", index=False)
    code, _, err = nas("search", "dataset=text", "dataset.train=columns.csv", *QUICK, "run_dir=run2")
    assert_one_line_error(code, err, "lacks the column(s) text", "dataset.text_column")
    code, _, err = nas("search", "dataset=text", "dataset.train=nowhere.csv", *QUICK, "run_dir=run3")
    assert_one_line_error(code, err, "dataset.train nowhere.csv not found")
    code, _, err = nas("search", "dataset=trec", f"dataset.root={workdir}", *QUICK, "run_dir=run4")
    assert_one_line_error(code, err, "dataset.test test.csv not found")


@pytest.mark.parametrize("pool", ["max", "mean", "attention"])
def test_every_text_op_builds_and_ignores_padding(pool: str) -> None:
    space = build_space(load_config(["space=text", "space.max_blocks=2"]))
    torch.manual_seed(0)
    for op in space.s.ops:
        arch = space.validate({"embed": 64, "blocks": [{"op": op, "width": 64}, {"op": "conv3", "width": 128}],
                               "pool": pool, "dropout": 0.0})
        model = space.build(arch, (12,), 3, vocab_size=50).eval()
        tokens = torch.randint(2, 50, (4, 12))
        padded = torch.cat([tokens[:, :6], torch.zeros(4, 6, dtype=torch.long)], dim=1)
        shorter = tokens[:, :6]
        with torch.no_grad():
            assert model(padded).shape == (4, 3)
            if op != "attention":  # dropout-free; attention's positions are the same too, padding is masked
                assert torch.allclose(model(padded), model(shorter), atol=1e-5), op


def test_kim_cnn_is_representable_and_the_space_operations_hold() -> None:
    space = build_space(load_config(["space=text"]))
    kim = space.validate({"embed": 300, "blocks": [{"op": "kim", "width": 300}], "pool": "max", "dropout": 0.5})
    convs = [m for m in space.build(kim, (40,), 2, vocab_size=100).modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(c.kernel_size[0], c.out_channels) for c in convs] == [(3, 100), (4, 100), (5, 100)]
    rng = random.Random(0)
    for _ in range(20):
        arch = space.sample(rng)
        space.validate(space.mutate(arch, rng))
        assert all(space.validate(n) for n in space.neighbours(arch))
        assert len(space.encode(arch)) == len(space.encode(kim))
        choices = [rng.randrange(n) for n in space.decisions()]
        space.validate(space.from_decisions(choices))


def test_text_architectures_are_drawn_for_reports() -> None:
    from nascli import figures

    space = build_space(load_config(["space=text"]))
    arch = space.sample(random.Random(1))
    image = figures.png(figures.architecture_figure(space, arch, "run", "best val_acc 90.00"))
    assert image.startswith(b"\x89PNG") and len(image) > 2000


def test_text_datasets_bring_the_text_space_and_adamw_unless_told_otherwise() -> None:
    cfg = load_config(["dataset=trec"])
    assert cfg.space.name == "text" and cfg.evaluator.settings.optimizer == "adamw"
    assert cfg.retrain.optimizer == "adamw" and cfg.retrain.weight_decay == 0
    cfg = load_config(["dataset=trec", "space=chain", "evaluator.lr=0.01", "evaluator=train"])
    assert cfg.space.name == "chain" and cfg.evaluator.settings.optimizer == "sgd"
    assert load_config([]).evaluator.settings.optimizer == "sgd"


def test_batches_of_tokens_lose_only_trailing_padding() -> None:
    tokens = torch.tensor([[5, 6, 0, 0, 0], [7, 0, 8, 0, 0]])
    assert trim_padding(tokens).tolist() == [[5, 6, 0], [7, 0, 8]]
    assert trim_padding(torch.zeros(2, 4, dtype=torch.long)).shape == (2, 1)
    images = torch.zeros(2, 1, 3, 3)
    assert trim_padding(images) is images


def test_word_dropout_makes_only_words_unknown_at_its_rate_and_is_on_by_default(workdir: Path) -> None:
    ids = torch.randint(2, 50, (400, 30))
    ids[:, 20:] = 0  # padding
    ids[:, 0] = 1  # words already unknown
    dropped = augment(ids, Augmentation(word_dropout=0.25), torch.Generator().manual_seed(0))
    changed = dropped != ids
    assert (dropped[changed] == 1).all() and not changed[:, 20:].any() and not changed[:, 0].any()
    assert 0.23 < changed[:, 1:20].float().mean().item() < 0.27
    again = augment(ids, Augmentation(word_dropout=0.25), torch.Generator().manual_seed(0))
    assert torch.equal(dropped, again)  # reproducible for a seed
    assert torch.equal(augment(ids, Augmentation(), torch.Generator()), ids)
    sentences(40, 0).to_csv(workdir / "train.csv", index=False)
    cfg = load_config(["dataset=text", "dataset.train=train.csv", "dataset.test_fraction=0.2"])
    assert cfg.dataset.cls(cfg.dataset.settings).load().augmentation == Augmentation(word_dropout=0.1)  # the default
    cfg = load_config(["dataset=text", "dataset.train=train.csv", "dataset.test_fraction=0.2", "dataset.word_dropout=0"])
    assert cfg.dataset.cls(cfg.dataset.settings).load().augmentation == Augmentation()
    with pytest.raises(UserError, match="word_dropout must be in"):
        load_config(["dataset=text", "dataset.train=train.csv", "dataset.word_dropout=1"])


@pytest.mark.parametrize("strategy", ["random", "bo", "evolution", "local", "hyperband"])
def test_searches_try_kims_cnn_first_unless_told_not_to(strategy: str) -> None:
    cfg = load_config(["space=text", f"strategy={strategy}"])
    first = build_strategy(cfg, build_space(cfg)).ask().arch
    assert first == KIM_CNN
    cfg = load_config(["space=text", f"strategy={strategy}", "space.references=false"])
    assert build_strategy(cfg, build_space(cfg)).ask().arch != KIM_CNN
    assert build_space(load_config(["space=text", "space.widths=[64]"])).references() == []
