"""Where a `--bits` compression spends its time: `bslz.compress_file(src, dst, bits=B)` with the
functions that do each phase wrapped, their calls' wall time summed.

    NUMBA_NUM_THREADS=1 PYTHONPATH=src:benchmarks python benchmarks/bench_bits_phases.py    # MiniLM bf16
    PYTHONPATH=src:benchmarks python benchmarks/bench_bits_phases.py --file model.safetensors --bits 6.38

On one thread (NUMBA_NUM_THREADS=1) the phases add up to about the whole; on more, calls made side by
side are each counted. Prints the run of least total time out of --rounds (after a warm-up run that
compiles nothing new once numba's cache holds the kernels), in ms, and the phases' share of it.
"""

import argparse
import collections
import os
import tempfile
import time

import bslz
import bslz.api
import bslz.bits_target
import bslz.formats.tensor_codec
from compare_revisions import minilm_bf16

# (label, module, function): the phases, in the order they run. The estimate's is bits_target's
# predicted_size_bits (quantize_dq_symbols for tensors it does not take); the file's search is
# tensor_codec.quantize_dq.
PHASES = (
    ("max abs and sum of squares of the candidates", bslz.bits_target, "lossy_candidates"),
    ("estimate: sizes predicted (the trellis on a sample)", bslz.bits_target, "predicted_size_bits"),
    ("estimate: trellis search (tensors too short to predict)", bslz.bits_target, "quantize_dq_symbols"),
    ("estimate: sizes from histograms (the same)", bslz.bits_target, "estimate_size_bits"),
    ("file: trellis search, reconstruction measured", bslz.formats.tensor_codec, "quantize_dq"),
    ("file: stream coded (rANS) and packed", bslz.formats.tensor_codec, "encode_and_pack"),
    ("file: lossless tensors", bslz.api, "encode_lossless"),
    ("file: checksums and writes (writing thread)", bslz.api, "_add_tensor"),
)


def timed(spent, label, fn):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - t0

    return wrapper


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", help="a safetensors file (default: MiniLM cast to bf16)")
    parser.add_argument("--bits", type=float, default=4.936)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spent = collections.defaultdict(float)
    for label, module, name in PHASES:
        setattr(module, name, timed(spent, label, getattr(module, name)))
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        src = args.file or os.path.join(tmp, "minilm-bf16.safetensors")
        if not args.file:
            minilm_bf16(src)
        dst = os.path.join(tmp, "out.bslz")
        bslz.compress_file(src, dst, bits=args.bits, overwrite=True)  # warm-up
        best = None
        for _ in range(max(1, args.rounds)):
            spent.clear()
            t0 = time.perf_counter()
            bslz.compress_file(src, dst, bits=args.bits, overwrite=True)
            total = time.perf_counter() - t0
            if best is None or total < best[0]:
                best = (total, dict(spent))
    total, phases = best
    threads = os.environ.get("NUMBA_NUM_THREADS", "all cores")
    print(f"--bits {args.bits:g} compression of {args.file or 'MiniLM bf16'}, threads: {threads}\n")
    print("| phase | ms | share |\n|---|---|---|")
    for label, _, _ in PHASES:
        print(f"| {label} | {1e3 * phases.get(label, 0.0):.0f} | {phases.get(label, 0.0) / total:.0%} |")
    print(f"| whole compression | {1e3 * total:.0f} | 100% |")


if __name__ == "__main__":
    main()
