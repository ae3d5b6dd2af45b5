"""Check that `nas predict` on a test split's raw files labels them as the run's own test scoring did.

Usage: python scripts/bench_predict.py [--datasets fashion_mnist trec fsdd] [--fashion-root DIR]
       [--trec-root DIR|ARCHIVE] [--fsdd-root DIR|ARCHIVE] [--seed 0] [--overrides ...] [--out DIR]
For each dataset a short `nas search` retrains a model; the test split is written as the files a user has
(Fashion-MNIST: PNG images, TREC: a CSV of questions, FSDD: its own wav files) in the split's order, and
`nas predict RUN FILES --out preds.csv` labels them. Its labels and probabilities are compared with the run's model
scored on the dataset's own test split (as its retraining scored it). For Fashion-MNIST, `nas export RUN --format onnx
--with-preprocessing` is run in ONNX Runtime on the pixels the PNGs decode to and compared with predict.
A root may be a .tar.gz archive (text-classification.tar.gz, fsdd-wav.tar.gz): it is extracted into --out.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from nascli.config import load_config
from nascli.data.audio import FSDD_NAME, FSDD_TEST_INDICES
from nascli.data.folder import decode_images
from nascli.data.mnist import read_idx
from nascli.evaluators.metrics import predict as scored
from nascli.hardware import resolve_hardware
from nascli.settings import HardwareSettings
from nascli.spaces.stored import load_model

BUDGETS = {  # a short search that still retrains a real model, each a few minutes on 2 cores
    "fashion_mnist": ["search.max_trials=4", "evaluator.epochs=1", "retrain.epochs=3", "search.max_seconds=150",
                      "retrain.max_seconds=150"],
    "trec": ["search.max_trials=4", "evaluator.epochs=2", "retrain.epochs=8", "search.max_seconds=150",
             "retrain.max_seconds=120"],
    "fsdd": ["search.max_trials=4", "evaluator.epochs=3", "retrain.epochs=20", "search.max_seconds=120",
             "retrain.max_seconds=120"],
}
ONNX_BATCH = 1000


def nas(*args: str) -> float:
    """Run `nas ARGS` as a user would; the wall seconds it took."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nascli", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def extracted(root: Path, out: Path) -> Path:
    """`root` itself, or the folder an archive at `root` is extracted to (under `out`)."""
    if not root.name.endswith(".tar.gz"):
        return root
    folder = out / root.name.removesuffix(".tar.gz")
    if not folder.exists():
        with tarfile.open(root) as archive:
            archive.extractall(folder, filter="data")
    return folder


def own_scoring(overrides: list[str], run: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The class names, and the run's model's probabilities on its dataset's test split with the split's labels."""
    cfg = load_config(overrides)
    data = cfg.dataset.cls(cfg.dataset.settings).load()
    model, _ = load_model(run)
    probabilities = scored(model, data.test_x, resolve_hardware(HardwareSettings(device="cpu")))
    return data.preprocessing.classes, probabilities.numpy(), data.test_y.numpy()


def fashion_inputs(root: Path, folder: Path) -> list[Path]:
    """Fashion-MNIST's official test images (the IDX file's order) as PNG files named by their index."""
    name = "t10k-images-idx3-ubyte"
    pixels = read_idx(root / name if (root / name).exists() else root / f"{name}.gz")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:05d}.png" for i in range(len(pixels))]
    for path, image in zip(paths, pixels):
        Image.fromarray(image).save(path)
    decoded, errors = decode_images(paths, 28, 1)
    assert not any(errors) and np.array_equal(decoded[:, 0], pixels), "the PNGs do not hold the IDX pixels"
    return [folder]


def trec_inputs(root: Path, folder: Path) -> list[Path]:
    """TREC's test questions (trec/test.csv, in its order) as a CSV of one column, text."""
    test = next(p for p in (root / "trec" / "test.csv", root / "text-classification" / "trec" / "test.csv")
                if p.is_file())
    folder.mkdir(parents=True, exist_ok=True)
    questions = folder / "questions.csv"
    pd.read_csv(test, keep_default_na=False)[["text"]].to_csv(questions, index=False)
    return [questions]


def fsdd_inputs(root: Path, folder: Path) -> list[Path]:
    """FSDD's official test recordings (index 0-4), in the sorted order the dataset reads them."""
    recordings = next(p for p in (root / "recordings", root / "fsdd" / "recordings", root) if p.is_dir())
    return [p for p in sorted(recordings.iterdir())
            if (m := FSDD_NAME.match(p.name)) and int(m.group(3)) in FSDD_TEST_INDICES]


WRITERS = {"fashion_mnist": fashion_inputs, "trec": trec_inputs, "fsdd": fsdd_inputs}


def table_probabilities(table: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The (N, classes) probabilities of a predict table holding every class (--top = number of classes)."""
    index = {name: i for i, name in enumerate(classes)}
    out = np.zeros((len(table), len(classes)))
    for k in range(len(classes)):
        suffix = "" if k == 0 else f"_{k + 1}"
        out[np.arange(len(table)), table[f"label{suffix}"].astype(str).map(index)] = table[f"probability{suffix}"]
    return out


def onnx_check(run: Path, pixels_folder: Path, work: Path, predicted: np.ndarray) -> tuple[float, float, int]:
    """Agreement (percent) of the raw-pixel ONNX export's labels with predict's, the largest |Δ probability|, and
    how many differ."""
    import onnxruntime

    onnx = work / "raw.onnx"
    nas("export", str(run), "--format", "onnx", "--out", str(onnx), "--with-preprocessing", "--force")
    pixels, _ = decode_images(sorted(pixels_folder.glob("*.png")), 28, 1)
    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    nhwc = np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))
    got = np.concatenate([session.run(None, {"pixels": nhwc[i : i + ONNX_BATCH]})[0]
                          for i in range(0, len(nhwc), ONNX_BATCH)])
    differ = int((got.argmax(1) != predicted.argmax(1)).sum())
    return 100.0 * (1 - differ / len(got)), float(np.abs(got - predicted).max()), differ


def bench(name: str, root: Path, args: argparse.Namespace) -> dict:
    """Search, write the test split's files, label them with predict, and compare with the run's own scoring."""
    work = args.out / name
    run = work / "run"
    overrides = [f"dataset={name}", f"dataset.root={root}"]
    search_s = nas("search", *overrides, *BUDGETS[name], *args.overrides, f"seed={args.seed}", f"run_dir={run}")
    inputs = WRITERS[name](root, work / "inputs")
    classes, own, labels = own_scoring([*overrides, *BUDGETS[name], *args.overrides], run)
    preds = work / "preds.csv"
    predict_s = nas("predict", str(run), *map(str, inputs), "--out", str(preds), "--top", str(len(classes)),
                    "--device", "cpu", "--force")
    table = pd.read_csv(preds, keep_default_na=False)
    if name == "fsdd":
        assert table["input"].tolist() == list(map(str, inputs)), "predict read the recordings in another order"
    assert len(table) == len(own), f"predict labelled {len(table)} inputs; the test split has {len(own)}"
    predicted = table_probabilities(table, classes)
    differ = int((predicted.argmax(1) != own.argmax(1)).sum())
    summary = json.loads((run / "summary.json").read_text())
    row = {"dataset": name, "inputs": len(table), "test_acc": summary["test_acc"],
           "own_acc": 100.0 * float((own.argmax(1) == labels).mean()), "agree": 100.0 * (1 - differ / len(own)),
           "differ": differ, "max_dp": float(np.abs(predicted - own).max()), "search_s": search_s,
           "predict_s": predict_s}
    if name == "fashion_mnist":
        row["onnx"] = onnx_check(run, inputs[0], work, predicted)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(WRITERS), default=list(WRITERS))
    parser.add_argument("--fashion-root", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="the folder of Fashion-MNIST's four IDX files")
    parser.add_argument("--trec-root", type=Path, default=Path("../shared/datasets/text/text-classification.tar.gz"),
                        help="the folder holding trec/, or the text archive")
    parser.add_argument("--fsdd-root", type=Path, default=Path("../shared/datasets/fsdd/fsdd-wav.tar.gz"),
                        help="the folder holding recordings/, or the FSDD archive")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overrides", nargs="*", default=[], help="overrides of every search (after the budgets)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the runs and files go (default: a temporary folder)")
    args = parser.parse_args()
    args.out = (args.out or Path(tempfile.mkdtemp(prefix="bench-predict-"))).resolve()
    roots = {"fashion_mnist": args.fashion_root, "trec": args.trec_root, "fsdd": args.fsdd_root}
    rows = [bench(name, extracted(roots[name].resolve(), args.out), args) for name in args.datasets]

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}; seed {args.seed}; overrides {args.overrides}; runs in {args.out}\n")
    print("| dataset | inputs (raw files) | run's test_acc | own scoring acc | predict = own scoring (labels) "
          "| differing | max \\|Δp\\| | search s | predict s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['inputs']} | {r['test_acc']:.2f} | {r['own_acc']:.2f} | {r['agree']:.2f}% "
              f"| {r['differ']} | {r['max_dp']:.1e} | {r['search_s']:.0f} | {r['predict_s']:.1f} |")
    for r in rows:
        if "onnx" in r:
            agree, max_dp, differ = r["onnx"]
            print(f"\n{r['dataset']}: ONNX with preprocessing (ONNX Runtime, uint8 pixels N,H,W,C) = predict on the "
                  f"PNGs: {agree:.2f}% of labels ({differ} differ), max |Δp| {max_dp:.1e}")


if __name__ == "__main__":
    main()
