"""Probe run on the 16-core device machine (December 4, 2026): encoding MiniLM bf16's largest tensor
by worker-thread count, the mean time inside one chunk's encoding (it grows when threads wait on
each other), minor page faults, with glibc's default allocator settings or freed memory kept:

    PYTHONPATH=src python3 benchmarks/device/encode_chunk_probe.py minilm-bf16.safetensors [default|reuse]
"""

import ctypes
import math
import resource
import sys
import time

if len(sys.argv) > 2 and sys.argv[2] == "reuse":
    libc = ctypes.CDLL("libc.so.6")
    assert libc.mallopt(-3, 1 << 30) == 1 and libc.mallopt(-1, (1 << 31) - 1) == 1
import numpy as np

import bslz.codec._parallel as P
from bslz.codec import floats as F
from bslz.formats.safetensors_io import read_safetensors
from bslz.formats.tensor_codec import encode_lossless

s = read_safetensors(sys.argv[1])
raws = [(np.array(s.tensor_bytes(t)), t.dtype, t.shape) for t in s.tensors]
big = max((x[0].view(np.uint16) for x in raws if x[1] == "BF16"), key=len)
log = []
orig = F._encode_chunk


def wrapped(*a):
    t = time.perf_counter()
    r = orig(*a)
    log.append((t, time.perf_counter()))
    return r


F._encode_chunk = wrapped
F.encode_floats(big, "bfloat16")


def encall():
    return list(P.map_tensors_in_order(lambda q: encode_lossless(*q)[1], raws, lambda q: math.prod(q[2])))


print(f"mode {sys.argv[2] if len(sys.argv) > 2 else 'default'}")
print(
    "| workers | big tensor ms | mean chunk ms | busy/wall | faults | whole file encode ms |\n|---|---|---|---|---|---|"
)
for w in (1, 2, 4, 8, 16):
    P.default_workers = lambda w=w: w
    F.encode_floats(big, "bfloat16")
    encall()
    best = None
    for _ in range(4):
        log.clear()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        F.encode_floats(big, "bfloat16")
        wall = time.perf_counter() - t
        f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        busy = sum(b - a for a, b in log)
        if best is None or wall < best[0]:
            best = (wall, busy / len(log), busy / wall, f1 - f0)
    ea = min((lambda t0: (encall(), time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(3))
    print(
        f"| {w} | {best[0] * 1e3:.1f} | {best[1] * 1e3:.3f} | {best[2]:.2f} | {best[3]} | {ea * 1e3:.1f} |", flush=True
    )
