"""How far a sample's entropy strays above its piece's, near the limit where a float tail is left raw.

    PYTHONPATH=src python benchmarks/bench_raw_sample.py [--pieces 600]

`bslz.codec._float_kernels.raw_by_sample` leaves a tail piece raw when the plug-in entropy of one
value in RAW_SAMPLE_STRIDE is RAW_SAMPLE_MARGIN_BITS above what an entropy coder must reach
(width * (1 - 1/128) bits a value). The margin must cover the sample's error above the whole
piece's: this draws pieces whose entropy is near that limit (a falling exponential over the 2**width
values, its slope set for width - 0.05 bits, times 0.8-1.2) and prints, per width and piece size,
the mean, spread and largest of (sample entropy - piece entropy).
"""

import argparse

import numpy as np

from bslz.codec._float_kernels import RAW_SAMPLE_MARGIN_BITS, RAW_SAMPLE_STRIDE


def entropy(values, size):
    counts = np.bincount(values, minlength=size).astype(np.float64)
    counts = counts[counts > 0]
    total = counts.sum()
    return -(counts * np.log2(counts / total)).sum() / total


def slope_for(width, bits):
    """The slope s of weights exp(-s v) over 2**width values whose entropy is `bits`."""
    lo, hi, values = 0.0, 1.0, np.arange(1 << width)
    for _ in range(60):
        s = (lo + hi) / 2
        p = np.exp(-s * values)
        p /= p.sum()
        lo, hi = (s, hi) if -(p * np.log2(p)).sum() > bits else (lo, s)
    return (lo + hi) / 2


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pieces", type=int, default=600)
    args = parser.parse_args()
    print(f"margin {RAW_SAMPLE_MARGIN_BITS} bits, one value in {RAW_SAMPLE_STRIDE}\n")
    print("| width | values | mean | sd | largest |\n|---|---|---|---|---|")
    for width in (6, 8):
        size, slope = 1 << width, slope_for(width, width - 0.05)
        for n in (1 << 15, 1 << 17, 1 << 18):
            errors = []
            for seed in range(args.pieces):
                rng = np.random.default_rng(seed)
                p = np.exp(-slope * rng.uniform(0.8, 1.2) * np.arange(size))
                values = rng.choice(size, n, p=p / p.sum())
                errors.append(entropy(values[::RAW_SAMPLE_STRIDE], size) - entropy(values, size))
            e = np.array(errors)
            print(f"| {width} | {n} | {e.mean():+.4f} | {e.std():.4f} | {e.max():+.4f} |")


if __name__ == "__main__":
    main()
