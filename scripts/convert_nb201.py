"""Convert official NAS-Bench-201 or NATS-Bench (topology) files into the CSV that evaluator=tabular reads.

Usage:
  pip install nats_bench          # or nas-bench-201 for the NAS-Bench-201 v1.x .pth files
  python scripts/convert_nb201.py NATS-tss-v1_0-3ffb9-simple --out cifar10.csv [--dataset cifar10] [--hp 12]
  python scripts/convert_nb201.py NAS-Bench-201-v1_1-096897.pth --api nb201 --out cifar10.csv

Writes `arch,val_acc,test_acc,train_seconds`: for cifar10, val_acc is the validation accuracy after
training on the train split (cifar10-valid) and test_acc the test accuracy after training on
train+valid (cifar10), as in ../shared/benchmarks/nb201/; for cifar100 and ImageNet16-120, the
benchmark's own valid and test splits. Metrics are averaged over the benchmark's seeds.
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd


def convert(api: Any, dataset: str, hp: str) -> pd.DataFrame:
    """One row per architecture of `api` (an official NAS-Bench-201 / NATS-Bench topology API object)."""
    rows = []
    for index in range(len(api)):
        if dataset == "cifar10":
            valid = api.get_more_info(index, "cifar10-valid", hp=hp, is_random=False)
            test = api.get_more_info(index, "cifar10", hp=hp, is_random=False)
        else:
            valid = test = api.get_more_info(index, dataset, hp=hp, is_random=False)
        rows.append({
            "arch": api.arch(index),
            "val_acc": valid["valid-accuracy"],
            "test_acc": test["test-accuracy"],
            "train_seconds": valid["train-all-time"],
        })
    return pd.DataFrame(rows)


def load_api(path: str, kind: str) -> Any:
    """The official API over the benchmark file(s) at `path`."""
    if kind == "nb201":
        from nas_201_api import NASBench201API

        return NASBench201API(path, verbose=False)
    import nats_bench

    return nats_bench.create(path, "tss", fast_mode=True, verbose=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the benchmark file or folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--api", choices=["nats", "nb201"], default="nats")
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100", "ImageNet16-120"])
    parser.add_argument("--hp", default="12", help="training schedule in epochs: 12 or 200")
    args = parser.parse_args()
    table = convert(load_api(args.path, args.api), args.dataset, args.hp)
    table.to_csv(args.out, index=False)
    print(f"wrote {len(table)} architectures to {args.out}")


if __name__ == "__main__":
    main()
