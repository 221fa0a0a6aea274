"""Plots of the BackSlash reproduction, from the results/*.json files alone (no retraining):

PYTHONPATH=src python3 benchmarks/backslash/plots.py
"""

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def plot_gpt(result, path):
    runs = result["runs"]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for ph, mk in (("rate", "s"), ("final", "o")):
        xs = [r[ph]["exports"]["1"]["bits_per_param"] for r in runs]
        ys = [r[ph]["exports"]["1"]["acc"] for r in runs]
        ax[0].plot(xs, ys, mk + "-", label=f"after {'rate phase' if ph == 'rate' else 'fine-tuning'}")
        for r, x, y in zip(runs, xs, ys):
            ax[0].annotate(f"λ={r['lam']:g}", (x, y), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax[0].set_xlabel(f"bits per parameter (.bslz, Δ={result['args']['delta']:g})")
    ax[0].set_ylabel("held-out next-char accuracy (loaded file)")
    ax[0].set_title("char GPT on pydoc topics: λ sweep")
    ax[0].legend()
    for r in runs:
        if r["reports"]:
            ax[1].plot(
                [p["steps"] for p in r["reports"]], [p["bits_per_param"] for p in r["reports"]], label=f"λ={r['lam']:g}"
            )
    ax[1].set_xlabel("rate-phase step")
    ax[1].set_ylabel("predicted bits / selected param at Δ")
    ax[1].set_title("rate during training (BackSlash.report)")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_equal_size(res, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = res["rows"]
    ax.plot([r["bits_per_param"] for r in rows], [r["bs_acc"] for r in rows], "o-", label="BackSlash λ>0 (uniform Δ)")
    ax.plot([r["dq_bits"] for r in rows], [r["dq_acc"] for r in rows], "s--", label="λ=0 + compress_file(bits=B) (DQ)")
    ax.plot([r["uni_bits"] for r in rows], [r["uni_acc"] for r in rows], "^:", label="λ=0 + uniform step, same size")
    for r in rows:
        ax.annotate(f"λ={r['lam']:g}", (r["bits_per_param"], r["bs_acc"]), fontsize=7)
    ax.axhline(res["lam0_float_acc"], color="gray", lw=0.8, label="λ=0 float")
    ax.set_xlabel("bits per parameter (whole file)")
    ax.set_ylabel("held-out next-char accuracy")
    ax.set_title("equal file size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_pruning(res, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in res["runs"]:
        ax.plot(
            [100 * p["rate"] for p in r["points"]],
            [p["acc"] for p in r["points"]],
            "o-",
            ms=3,
            label=f"λ={r['lam']:g} (own sparsity {100 * r['own_sparsity']:.0f} %)",
        )
    ax.set_xlabel("magnitude-pruning rate of selected weights (%)")
    ax.set_ylabel("held-out next-char accuracy (float, no retraining)")
    ax.set_title("pruning robustness")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_minilm(res, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = res["rows"]
    ax.plot(
        [r["bits_per_param"] for r in rows], [r["cos"] for r in rows], "o-", label="BackSlash fine-tune (uniform Δ)"
    )
    for r in rows:
        ax.annotate(f"λ={r['lam']:g}", (r["bits_per_param"], r["cos"]), fontsize=7)
    b = res["baseline"]
    ax.plot([b["bits_per_param"]], [b["cos"]], "k^", label="original, uniform Δ")
    pt = res["post_training"]
    ax.plot([p["bits_per_param"] for p in pt], [p["cos"] for p in pt], "s--", label="original + compress_file(bits=B)")
    ax.set_xlabel("bits per parameter (whole file)")
    ax.set_ylabel("mean cosine to original embeddings (held-out)")
    ax.set_title("MiniLM self-distillation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    res = os.path.join(HERE, "results")
    table = {
        "gpt_pydoc.json": (plot_gpt, "gpt_pydoc.png"),
        "equal_size.json": (plot_equal_size, "equal_size.png"),
        "pruning.json": (plot_pruning, "pruning.png"),
        "minilm_selfdistill.json": (plot_minilm, "minilm_selfdistill.png"),
        "minilm_long.json": (plot_minilm, "minilm_long.png"),
    }
    for name, (fn, png) in table.items():
        p = os.path.join(res, name)
        if os.path.exists(p):
            with open(p) as f:
                fn(json.load(f), os.path.join(HERE, png))
            print("wrote", png)


if __name__ == "__main__":
    main()
