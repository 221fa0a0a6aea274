"""Probe run on the 16-core device machine (December 4, 2026): decoding MiniLM bf16's largest tensor by
worker-thread count through the long way (`float_decode._decode_chunk`: since the one-call chunk decoder
it runs only for chunks that one declines), and the Huffman decoder side by side on 1-16 threads:

    PYTHONPATH=src python3 benchmarks/device/decode_chunk_probe.py minilm-bf16.safetensors
"""

import resource
import sys
import threading
import time

import numpy as np

import bslz.codec._parallel as P
from bslz.codec import float_decode as D
from bslz.codec import floats as F
from bslz.codec.huffman import decode_huffman, encode_huffman, huffman_code
from bslz.codec.rans import histogram
from bslz.formats.safetensors_io import read_safetensors

s = read_safetensors(sys.argv[1])
big = max((np.array(s.tensor_bytes(t)).view(np.uint16) for t in s.tensors if t.dtype == "BF16"), key=len)
enc = F.encode_floats(big, "bfloat16")
out = np.empty(big.size, np.uint16)
log = []
orig = D._decode_chunk


def wrapped(d, o, lo, hi, lay):
    t = time.perf_counter()
    orig(d, o, lo, hi, lay)
    log.append((threading.get_ident(), t, time.perf_counter()))


D._decode_chunk = wrapped
F.decode_floats(enc, out)
print("| workers | wall ms | chunks | mean chunk ms | busy/wall | minor faults |\n|---|---|---|---|---|---|")
for w in (1, 2, 4, 8, 16):
    P.default_workers = lambda w=w: w
    F.decode_floats(enc, out)
    best = None
    for _ in range(5):
        log.clear()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = time.perf_counter()
        F.decode_floats(enc, out)
        wall = time.perf_counter() - t
        f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        busy = sum(b - a for _, a, b in log)
        if best is None or wall < best[0]:
            best = (wall, len(log), busy / len(log), busy / wall, f1 - f0)
    print(f"| {w} | {best[0] * 1e3:.1f} | {best[1]} | {best[2] * 1e3:.3f} | {best[3]:.2f} | {best[4]} |", flush=True)
# the kernel alone, side by side, own buffers
n = 1 << 18
head = (big[:n] >> 5) & 1023
coded = np.frombuffer(bytes(encode_huffman(head, huffman_code(histogram(head)[:1024]))), np.uint8)


def job(reps):
    o = np.empty(n, np.uint16)
    for _ in range(reps):
        decode_huffman(coded, n, out=o, shift=5, limit=1023)


job(1)
print("\n| threads side by side | ns/symbol per thread | speed-up over one |\n|---|---|---|")
base = None
for k in (1, 2, 4, 8, 16):
    ts = [threading.Thread(target=job, args=(40,)) for _ in range(k)]
    t = time.perf_counter()
    [x.start() for x in ts]
    [x.join() for x in ts]
    dt = time.perf_counter() - t
    per = dt * 1e9 / (40 * n)
    base = base or per
    print(f"| {k} | {per:.2f} | {k * base / per:.2f} |", flush=True)
