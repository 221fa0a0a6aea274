"""Probe run on the 16-core device machine (December 4, 2026): codec-only decode and encode of MiniLM
bf16 by worker-thread count, with the GIL switch interval at 5 ms and 0.1 ms (bench_scaling.py is its
tidied successor). From the repository root, with zipnn/zstandard importable:

    PYTHONPATH=src python3 benchmarks/device/scaling_probe.py minilm-bf16.safetensors
"""

import math
import os
import sys
import time

import numpy as np

import bslz
import bslz.codec._parallel as P
from bslz.codec import floats as F
from bslz.codec._parallel import map_tensors_in_order
from bslz.formats.container import ContainerReader
from bslz.formats.safetensors_io import read_safetensors
from bslz.formats.tensor_codec import encode_lossless

src = sys.argv[1]
dst = "/dev/shm/diag.bslz"
bslz.compress_file(src, dst, overwrite=True)
r = ContainerReader(dst)
ents = r.entries
big = [e for e in ents if e["numel"] >= 1 << 20]
small = [e for e in ents if e["numel"] < 1 << 20]
s = read_safetensors(src)
raws = [(np.array(s.tensor_bytes(t)), t.dtype, t.shape) for t in s.tensors]
bigw = max((x[0].view(np.uint16) for x in raws if x[1] == "BF16"), key=len)
enc = F.encode_floats(bigw, "bfloat16")
out = np.empty(bigw.size, np.uint16)


def dec(es):
    return [x for _, x in map_tensors_in_order(lambda e: r.decode_raw(e["name"]), es, lambda e: e["numel"])]


def encall():
    return list(map_tensors_in_order(lambda q: encode_lossless(*q)[1], raws, lambda q: math.prod(q[2])))


def best(f, k=5):
    f()
    b = 1e9
    for _ in range(k):
        t = time.perf_counter()
        f()
        b = min(b, time.perf_counter() - t)
    return b * 1e3


size = os.path.getsize(src)
print("| threads | decode all ms (MB/s) | big ms | small ms | decode_floats big ms | encode all ms (MB/s) | switch |")
print("|---|---|---|---|---|---|---|")
for si in (0.005, 0.0001):
    sys.setswitchinterval(si)
    for w in (1, 2, 4, 8, 16):
        P.default_workers = lambda w=w: w
        da = best(lambda: dec(ents))
        db = best(lambda: dec(big))
        ds = best(lambda: dec(small))
        df = best(lambda: F.decode_floats(enc, out))
        ea = best(encall, 3)
        print(
            f"| {w} | {da:.1f} ({size / da / 1e3:.0f}) | {db:.1f} | {ds:.1f} | {df:.1f}"
            f" | {ea:.1f} ({size / ea / 1e3:.0f}) | {si} |",
            flush=True,
        )
