"""Experiment 2: at equal file size, BackSlash-trained (lambda > 0) versus the lambda = 0 model
compressed lossily after training. Uses the checkpoints and files of gpt_pydoc.py (no retraining).

For each lambda > 0 with final file of B bits/param (whole file, Delta of exp. 1), the lambda = 0 model is
compressed to the same size two ways:
  * `bslz.torch.save_file(..., bits=B)` (= `compress_file(bits=B)`: dependent quantization, one step for
    all quantized tensors found by bisection on the exact file size);
  * the same uniform quantizer BackSlash's export uses (BackSlash(model, 0, step=D').export), with D'
    bisected until the file is as large as the BackSlash file (the nearest step not above its size).

    PYTHONPATH=src python3 benchmarks/backslash/equal_size.py
"""

import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import HERE, OUT, CharGPT, evaluate, load_gpt_run, set_threads  # noqa: E402

import bslz.torch  # noqa: E402
from bslz.train import BackSlash  # noqa: E402
from bslz.train.marks import exportable_tensors  # noqa: E402


def model_from(args, data, state=None):
    torch.manual_seed(args["seed"])
    m = CharGPT(data.vocab, ctx=args["ctx"], d=args["d"], layers=args["layers"], heads=args["heads"])
    if state is not None:
        m.load_state_dict(state)
    return m


def uniform_at_size(model, target_bytes, lo, hi, path, iters=14):
    """Largest-accuracy uniform step whose exported file is <= target_bytes (bisection on log step
    with the hook's predicted payload, then one real export)."""

    def size(step):
        return BackSlash(model, 0.0, step=step).report().predicted_bytes

    extra = None
    for _ in range(iters):
        mid = math.sqrt(lo * hi)
        if extra is None:  # calibrate the non-predicted part of the file (header, lossless tensors) once
            rep = BackSlash(model, 0.0, step=mid).export(path)
            extra = rep.compressed_bytes - size(mid)
        if size(mid) + extra > target_bytes:
            lo = mid
        else:
            hi = mid
    return hi, BackSlash(model, 0.0, step=hi).export(path)


def main():
    set_threads(1)
    t0 = time.perf_counter()
    g, args, data = load_gpt_run()
    runs = {r["lam"]: r for r in g["runs"]}
    m0 = model_from(args, data, torch.load(os.path.join(OUT, "gpt_0.pt"), weights_only=True))
    float0 = evaluate(m0, data)[0]
    tensors0 = exportable_tensors(m0.state_dict())
    rows = []
    for lam, r in sorted(runs.items()):
        if lam == 0:
            continue
        e = r["final"]["exports"]["1"]
        B, target = e["bits_per_param"], e["file_bytes"]
        dq_path = os.path.join(OUT, f"eq_dq_lam{lam:g}.bslz")
        rep = bslz.torch.save_file(tensors0, dq_path, bits=B)
        dq_acc = evaluate(model_from(args, data, bslz.torch.load_file(dq_path)), data)[0]
        uni_path = os.path.join(OUT, f"eq_uni_lam{lam:g}.bslz")
        step, urep = uniform_at_size(m0, target, 1e-4, 1.0, uni_path)
        uni_acc = evaluate(model_from(args, data, bslz.torch.load_file(uni_path)), data)[0]
        rows.append(
            dict(
                lam=lam,
                bits_per_param=B,
                file_bytes=target,
                bs_acc=e["acc"],
                bs_float_acc=r["final"]["float_acc"],
                dq_bits=rep.bits_per_float_param,
                dq_bytes=rep.compressed_bytes,
                dq_snr_db=rep.aggregate_snr_db,
                dq_acc=dq_acc,
                uni_step=step,
                uni_bits=urep.bits_per_float_param,
                uni_bytes=urep.compressed_bytes,
                uni_acc=uni_acc,
            )
        )
    wall = time.perf_counter() - t0
    res = dict(
        rows=rows,
        lam0_float_acc=float0,
        lam0_file_acc=runs[0.0]["final"]["exports"]["1"]["acc"],
        delta=args["delta"],
        wall_s=wall,
    )
    with open(os.path.join(HERE, "results", "equal_size.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(
        f"Table 2: equal file size (lambda=0 float acc {float0:.4f}; lambda=0 file at Delta={args['delta']:g}: "
        f"{res['lam0_file_acc']:.4f})"
    )
    print(
        "| lambda | BackSlash b/p | BackSlash file acc | lam=0 + bits=B (DQ) b/p | acc | SNR dB "
        "| lam=0 + uniform step, same size: step | b/p | acc |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['lam']:g} | {r['bits_per_param']:.3f} | {r['bs_acc']:.4f} | "
            f"{r['dq_bits']:.3f} | {r['dq_acc']:.4f} | "
            f"{r['dq_snr_db']:.1f} | {r['uni_step']:.4f} | {r['uni_bits']:.3f} | {r['uni_acc']:.4f} |"
        )
    print(f"\nwall time {wall:.0f} s")
    from plots import plot_equal_size

    plot_equal_size(res, os.path.join(HERE, "equal_size.png"))


if __name__ == "__main__":
    main()
