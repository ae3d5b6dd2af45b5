"""Fusion search on audio-visual digits: the searched fusion against each input alone and late fusion.

Usage: python scripts/bench_fusion.py --root AV_DIR [--seeds 0 1 2] [--per-class 1000] [--search-seconds 900]
           [--trial-epochs 6] [--trial-seconds S] [--retrain-seconds 400] [--strategy bo] [--out DIR] [--only-summarise]

AV_DIR holds mnist.npz and FSDD's recordings/ (or fsdd/recordings/). For each seed it runs one
`nas search dataset=av_digits` end to end (search, retraining of the best, and the baselines the fusion
space retrains beside it with the same settings), then prints each network's test accuracy per seed, the
means, the gains the issue names (found - late fusion of the found encoders, found - the hand-made late fusion
of plain encoders, found - best single input) and each run's wall time.
A trial projected to train longer than `--trial-seconds` (default: a quarter of the search's time; not with
spos) stops after its first steps and counts as failed (`evaluator.max_seconds`), so one large candidate cannot
spend the search.
`--only-summarise` prints the table of runs already in --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NETWORKS = ("found", "late_fusion", "handmade_late_fusion", "image_only", "audio_only")


def search(run_dir: Path, args: argparse.Namespace, seed: int) -> None:
    """One end-to-end fusion search into `run_dir`."""
    epochs = "strategy.epochs" if args.strategy == "spos" else "evaluator.epochs"
    limit = [] if args.strategy == "spos" else [f"evaluator.max_seconds={args.trial_seconds or args.search_seconds / 4}"]
    subprocess.run([sys.executable, "-m", "nascli", "search", "dataset=av_digits", f"dataset.root={args.root}",
                    f"dataset.train_per_class={args.per_class}", f"strategy={args.strategy}",
                    f"search.max_seconds={args.search_seconds}", "search.max_trials=1000",
                    f"{epochs}={args.trial_epochs}", "retrain.epochs=15",
                    *limit,
                    f"retrain.max_seconds={args.retrain_seconds}", f"seed={seed}", f"run_dir={run_dir}"],
                   check=True, stdout=subprocess.DEVNULL)


def results(run_dir: Path) -> dict[str, float]:
    """Test accuracy of the found network and of each baseline, the trial count and the wall time of a run."""
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"found": summary["test_acc"], **summary["baselines"], "trials": summary["n_trials"],
            "wall_min": summary["wall_seconds"] / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=False)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--search-seconds", type=float, default=900)
    parser.add_argument("--trial-epochs", type=int, default=6, help="epochs per trial (spos: of the supernet)")
    parser.add_argument("--trial-seconds", type=float, default=None, help="default: a quarter of --search-seconds")
    parser.add_argument("--retrain-seconds", type=float, default=400)
    parser.add_argument("--strategy", default="bo")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only-summarise", action="store_true")
    args = parser.parse_args()
    if not args.only_summarise and not args.root:
        parser.error("--root is required unless --only-summarise")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-fusion-"))
    rows = {}
    for seed in args.seeds:
        run_dir = out / f"seed{seed}"
        if not args.only_summarise:
            start = time.perf_counter()
            search(run_dir, args, seed)
            print(f"seed {seed}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        rows[seed] = results(run_dir)
    print("| seed | " + " | ".join(NETWORKS) + " | found - late | found - hand-made | found - best single | trials "
          "| wall min |")
    print("|---" * (len(NETWORKS) + 6) + "|")
    gains = {"late": [], "handmade": [], "single": []}
    for seed, row in rows.items():
        gains["late"].append(row["found"] - row["late_fusion"])
        gains["handmade"].append(row["found"] - row["handmade_late_fusion"])
        gains["single"].append(row["found"] - max(row["image_only"], row["audio_only"]))
        cells = [f"{row[name]:.2f}" for name in NETWORKS]
        print(f"| {seed} | " + " | ".join(cells) + f" | {gains['late'][-1]:+.2f} | {gains['handmade'][-1]:+.2f} | "
              f"{gains['single'][-1]:+.2f} | {row['trials']} | {row['wall_min']:.1f} |")
    means = [f"{statistics.mean(r[name] for r in rows.values()):.2f}" for name in NETWORKS]
    print("| mean | " + " | ".join(means) + f" | {statistics.mean(gains['late']):+.2f} | "
          f"{statistics.mean(gains['handmade']):+.2f} | {statistics.mean(gains['single']):+.2f} | | "
          f"{max(r['wall_min'] for r in rows.values()):.1f} (max) |")


if __name__ == "__main__":
    main()
