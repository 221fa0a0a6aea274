"""How bslz's lossless coding scales with threads (MiniLM cast to bf16), for machines with many cores.

    PYTHONPATH=src:benchmarks python3 benchmarks/bench_scaling.py [--bf16-file PATH] [--threads 1,2,4,8,16]

For each thread count (bslz's worker threads; the process may use every CPU it is given), best of 5
(encode: 3) in one process, codec only (no file I/O, checksums included, as bench_container's "codec
only" rows):

- the whole file decoded (`ContainerReader.decode_raw` of every tensor, scheduled as
  `decompress_file` schedules them) and encoded (`encode_lossless` of every tensor);
- the largest tensor alone (the word embeddings, 45 chunks of 256 Ki values): decoded from its
  payload (`decode_floats`) and encoded (`encode_floats`).

Threads beyond the machine's CPUs only show the cost of oversubscription.
"""

import argparse
import math
import os
import tempfile
import time

import numpy as np

import bslz
import bslz.codec._parallel as parallel
from bench_container import minilm_bf16, work_base
from bslz.codec import floats
from bslz.codec._parallel import map_tensors_in_order
from bslz.formats.container import ContainerReader
from bslz.formats.safetensors_io import read_safetensors
from bslz.formats.tensor_codec import encode_lossless


def best_ms(fn, repeats):
    fn()  # warm-up: compiles, and sizes the thread pool
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def measure(path, workdir, thread_counts):
    packed = os.path.join(workdir, "minilm-bf16.bslz")
    bslz.compress_file(path, packed, overwrite=True)
    reader = ContainerReader(packed)
    source = read_safetensors(path)
    raws = [(np.array(source.tensor_bytes(t)), t.dtype, t.shape) for t in source.tensors]
    largest = max((raw.view(np.uint16) for raw, dtype, _ in raws if dtype == "BF16"), key=len)
    encoded = floats.encode_floats(largest, "bfloat16")
    out = np.empty(largest.size, dtype=np.uint16)
    size = os.path.getsize(path)

    def decode_all():
        return [x for _, x in map_tensors_in_order(lambda e: reader.decode_raw(e["name"]), reader.entries, _numel)]

    def encode_all():
        return list(map_tensors_in_order(lambda r: encode_lossless(*r), raws, lambda r: math.prod(r[2])))

    print(f"MiniLM bf16, {size / 1e6:.1f} MB; the process may run on {len(_cpus())} CPUs\n")
    print("| threads | decode file ms (MB/s) | encode file ms (MB/s) | decode largest ms | encode largest ms |")
    print("|---|---|---|---|---|")
    default_workers = parallel.default_workers
    try:
        for threads in thread_counts:
            parallel.default_workers = lambda threads=threads: threads
            d, e = best_ms(decode_all, 5), best_ms(encode_all, 3)
            dl = best_ms(lambda: floats.decode_floats(encoded, out), 5)
            el = best_ms(lambda: floats.encode_floats(largest, "bfloat16"), 3)
            print(
                f"| {threads} | {d:.1f} ({size / d / 1e3:.0f}) | {e:.1f} ({size / e / 1e3:.0f}) | {dl:.1f} | {el:.1f} |"
            )
    finally:
        parallel.default_workers = default_workers
        reader.close()


def _numel(entry):
    return entry["numel"]


def _cpus():
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bf16-file", metavar="PATH", help="MiniLM in bf16 (bench_container.py writes it)")
    parser.add_argument("--threads", default="1,2,4,8,16", help="comma-separated thread counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bslz-scaling-", dir=work_base()) as workdir:
        path = minilm_bf16(workdir, args.bf16_file)
        measure(path, workdir, [int(t) for t in args.threads.split(",") if t.strip()])


if __name__ == "__main__":
    main()
