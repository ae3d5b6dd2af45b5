"""Transfer of trained weights on CIFAR-10: classes 0-4 as the source task, 5-9 with few images as the target.

Usage: python scripts/bench_transfer.py --root CIFAR_DIR [--source-per-class 2000] [--source-epochs 8]
           [--target-per-class 500] [--target-epochs 15] [--out DIR]

It trains one fixed chain architecture (`nas retrain ARCH.json`) on the source task, then on the target task
three ways with the same epochs: from scratch, fine-tuned from the source run (`retrain.init=SOURCE`), and with
the source's features frozen (`retrain.finetune=head`), and prints each one's test accuracy on the target's
1,000 test images per class and its wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARCH = {"blocks": [{"op": "conv3x3", "width": 32, "down": False}, {"op": "conv3x3", "width": 64, "down": True},
                   {"op": "conv3x3", "width": 64, "down": False}, {"op": "conv3x3", "width": 64, "down": True},
                   {"op": "conv3x3", "width": 64, "down": False}]}


def retrain(arch: Path, run_dir: Path, root: str, *overrides: str) -> tuple[float, float]:
    """Test accuracy and wall seconds of `nas retrain ARCH` with the overrides."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nascli", "retrain", str(arch), "dataset=cifar10", f"dataset.root={root}",
                    f"run_dir={run_dir}", *overrides], check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((run_dir / "summary.json").read_text())
    return summary["test_acc"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--source-per-class", type=int, default=2000)
    parser.add_argument("--source-epochs", type=int, default=8)
    parser.add_argument("--target-per-class", type=int, default=500)
    parser.add_argument("--target-epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    out.mkdir(parents=True, exist_ok=True)
    arch = out / "arch.json"
    arch.write_text(json.dumps(ARCH))
    source = out / "source"
    acc, seconds = retrain(arch, source, args.root, "dataset.classes=[0,1,2,3,4]",
                           f"dataset.train_per_class={args.source_per_class}", f"retrain.epochs={args.source_epochs}")
    print(f"source: classes 0-4, {args.source_per_class} images per class, {args.source_epochs} epochs: "
          f"test_acc {acc:.2f} in {seconds:.0f} s\n")
    target = ["dataset.classes=[5,6,7,8,9]", f"dataset.train_per_class={args.target_per_class}",
              f"retrain.epochs={args.target_epochs}"]
    print(f"| target: classes 5-9, {args.target_per_class} images per class, {args.target_epochs} epochs | test_acc | wall s |")
    print("|---|---|---|")
    rows = [("from scratch", "scratch", []),
            ("fine-tuned from the source (`retrain.init=SOURCE`)", "finetuned", [f"retrain.init={source}"]),
            ("source features frozen (`retrain.finetune=head`)", "frozen", [f"retrain.init={source}", "retrain.finetune=head"])]
    for name, folder, extra in rows:
        acc, seconds = retrain(arch, out / folder, args.root, *target, *extra)
        print(f"| {name} | {acc:.2f} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
