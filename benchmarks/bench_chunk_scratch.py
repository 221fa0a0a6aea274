"""One chunk of MiniLM bf16's word embeddings (262144 values) coded over and over on one thread by
`floats._encode_chunk` (one kernel call, `FC.encode_chunk`): microseconds a call and minor page
faults a call. Run it with `src` from a worktree of an older revision to compare (before stop 33
the kernel made its scratch arrays, and its Huffman segment apart, in every call):

    PYTHONPATH=src:benchmarks python benchmarks/bench_chunk_scratch.py [--bf16-file minilm-bf16.safetensors]
"""

import resource
import statistics
import time

import numpy as np

from bench_container import minilm_bf16_workdir
from bslz.codec import floats
from bslz.formats.safetensors_io import read_safetensors

CHUNK = 262144
CALLS = 300


def main():
    with minilm_bf16_workdir(__doc__) as (_, path):
        source = read_safetensors(path)
        largest = max(source.tensors, key=lambda t: t.numel)
        words = np.array(source.tensor_bytes(largest)).view(np.uint16)[10 * CHUNK : 11 * CHUNK].copy()
    layout = floats.get_layout("bfloat16")
    floats._encode_chunk(words, 0, CHUNK, layout)  # warm-up
    times, faults = [], []
    for _ in range(CALLS):
        f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        t0 = time.perf_counter()
        floats._encode_chunk(words, 0, CHUNK, layout)
        times.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0)
    print(f"{floats.__file__}: {CALLS} calls")
    print(
        f"best {1e6 * min(times):.0f} us, median {1e6 * statistics.median(times):.0f} us, "
        f"minor faults a call {statistics.mean(faults):.0f}"
    )


if __name__ == "__main__":
    main()
