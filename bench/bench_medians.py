"""Medians over repeated `xtask bench --json` files of one batch size, and the ratios the GPU
targets are stated in (docs/cuda.md): ours / the PyTorch peer's backprop and Euler loop, and our
closed form (from the feedforward start, and from zero) / our backprop. Used by
scripts/gpu-check.sh; runs without torch.

Usage: python3 bench/bench_medians.py BENCH.json [BENCH.json ...]
"""

import json
import statistics
import sys
from collections import defaultdict


def main(paths):
    seconds = defaultdict(list)
    for path in paths:
        with open(path) as f:
            for row in json.load(f):
                who = "peer" if row["backend"].startswith("pytorch") else "ours"
                seconds[(row["model"], who, row["algorithm"])].append(row["seconds"])
    print(f"medians of {len(paths)} run(s), seconds (each run's figures in brackets)")
    models = sorted({model for model, _, _ in seconds})
    for model in models:
        med = {k[1:]: statistics.median(v) for k, v in seconds.items() if k[0] == model}
        cells = [
            f"{who} {alg} {med[(who, alg)]:.3f} [{', '.join(f'{s:.3f}' for s in seconds[(model, who, alg)])}]"
            for who, alg in sorted(med)
        ]
        print(f"  {model}: " + "; ".join(cells))
        ratios = [
            ("bp / peer bp", ("ours", "bp"), ("peer", "bp")),
            ("Euler / peer Euler", ("ours", "ar-euler"), ("peer", "ar-euler")),
            ("closed form / our bp", ("ours", "ar-closed-form"), ("ours", "bp")),
            ("closed form from zero / our bp", ("ours", "ar-closed-form-zero"), ("ours", "bp")),
        ]
        shown = [f"{name} {med[a] / med[b]:.2f}" for name, a, b in ratios if a in med and b in med]
        if shown:
            print(f"  {model}: " + ", ".join(shown))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
