"""Experiment 3: pruning robustness. Each final model of gpt_pydoc.py (float checkpoint, no retraining)
is magnitude-pruned (one global threshold over the weights BackSlash selects: Linear and Embedding
weights) at 0-90 %, and its held-out next-char accuracy measured.

    PYTHONPATH=src python3 benchmarks/backslash/pruning.py
"""

import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import HERE, OUT, evaluate, load_gpt_run, magnitude_prune_, set_threads  # noqa: E402
from equal_size import model_from  # noqa: E402

from bslz.train import BackSlash  # noqa: E402

RATES = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9]


def main():
    set_threads(1)
    t0 = time.perf_counter()
    g, args, data = load_gpt_run()
    runs = []
    for r in g["runs"]:
        lam = r["lam"]
        state = torch.load(os.path.join(OUT, f"gpt_{lam:g}.pt"))
        probe = model_from(args, data, state)
        names = BackSlash(probe, 0.0, step=1.0).names
        sel = torch.cat([p.detach().abs().flatten() for n, p in probe.named_parameters() if n in names])
        own = float((sel < args["delta"] / 2).float().mean())
        points = []
        for rate in RATES:
            m = model_from(args, data, state)
            thr = magnitude_prune_(m, names, rate)
            acc, ce = evaluate(m, data)
            points.append(dict(rate=rate, threshold=thr, acc=acc, ce=ce))
        runs.append(dict(lam=lam, own_sparsity=own, points=points))
    wall = time.perf_counter() - t0
    res = dict(rates=RATES, runs=runs, wall_s=wall, delta=args["delta"])
    with open(os.path.join(HERE, "results", "pruning.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(
        "Table 3: held-out next-char accuracy (float model, no retraining) after magnitude pruning of the "
        "selected weights"
    )
    print("| lambda | share |w| < Delta/2 | " + " | ".join(f"{int(round(100 * x))} %" for x in RATES) + " |")
    print("|---|---|" + "---|" * len(RATES))
    for r in runs:
        print(
            f"| {r['lam']:g} | {100 * r['own_sparsity']:.1f} % | "
            + " | ".join(f"{p['acc']:.4f}" for p in r["points"])
            + " |"
        )
    print("\nrelative to each model's own unpruned accuracy:")
    print("| lambda | " + " | ".join(f"{int(round(100 * x))} %" for x in RATES) + " |")
    print("|---|" + "---|" * len(RATES))
    for r in runs:
        a0 = r["points"][0]["acc"]
        print(f"| {r['lam']:g} | " + " | ".join(f"{100 * (p['acc'] / a0 - 1):+.1f} %" for p in r["points"]) + " |")
    print(f"\nwall time {wall:.0f} s")
    from plots import plot_pruning

    plot_pruning(res, os.path.join(HERE, "pruning.png"))


if __name__ == "__main__":
    main()
