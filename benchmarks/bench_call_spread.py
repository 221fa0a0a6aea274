"""How the times of many `decompress_bytes` calls spread, and what fresh memory costs here.

    PYTHONPATH=src:benchmarks python benchmarks/bench_call_spread.py [--bf16-file minilm-bf16.safetensors]

`bench_container.py` keeps the best of 5 calls; on this machine a call is now and then several
times slower than the others, and once in a while every call of a process is. This script shows
the spread:

1. CALLS rounds of `compress_bytes` of MiniLM bf16 then `decompress_bytes` of the result, each
   result held while the next call runs (as `bench_container.py` holds it): the decompression
   times' least, median and largest, and how many took over SLOW_MS.
2. A 45 MB `np.empty` touched once a page (numpy asks for huge pages; then with its huge pages
   turned off, 4 KiB ones), six times back to back, then six times with PAUSE_S between calls.
   A virtual machine whose balloon device reports free pages to the host gets freed memory back
   from the host on its next touch: the pauses let it report them.

With `PYTHONPATH=<a worktree of another revision>/src:benchmarks`, part 1 times that revision.
"""

import statistics
import time

import numpy as np

import bslz
from bench_container import minilm_bf16_workdir

CALLS = 100
SLOW_MS = 40
TOUCH_BYTES = 45_000_000
PAUSE_S = 3


def decompress_spread(path):
    with open(path, "rb") as f:
        data = f.read()
    held = {"packed": bslz.compress_bytes(data)}
    bslz.decompress_bytes(held["packed"])  # warm-up (JIT)
    times = []
    for _ in range(CALLS):
        held["packed"] = bslz.compress_bytes(data)
        t0 = time.perf_counter()
        held["restored"] = bslz.decompress_bytes(held["packed"])
        times.append(1e3 * (time.perf_counter() - t0))
    assert bytes(held["restored"]) == data
    slow = sum(t > SLOW_MS for t in times)
    print(f"## decompress_bytes of MiniLM bf16, {CALLS} calls, each after a compress_bytes\n")
    print("| least ms | median ms | largest ms | calls over 40 ms |\n|---|---|---|---|")
    print(f"| {min(times):.1f} | {statistics.median(times):.1f} | {max(times):.1f} | {slow} |\n")


def touch_times(pause):
    out = []
    for _ in range(6):
        t0 = time.perf_counter()
        a = np.empty(TOUCH_BYTES, dtype=np.uint8)
        a[::4096] = 1
        out.append(1e3 * (time.perf_counter() - t0))
        del a
        time.sleep(pause)
    return out


def fresh_memory():
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _set_madvise_hugepage
    print(f"## A {TOUCH_BYTES / 1e6:.0f} MB np.empty touched once a page (ms, six calls)\n")
    print(f"| pages | back to back | {PAUSE_S} s between calls |\n|---|---|---|")
    for pages, huge in (("huge (numpy's default)", True), ("4 KiB", False)):
        previous = _set_madvise_hugepage(huge)
        try:
            rows = [" ".join(f"{t:.1f}" for t in touch_times(pause)) for pause in (0, PAUSE_S)]
        finally:
            _set_madvise_hugepage(previous)
        print(f"| {pages} | {rows[0]} | {rows[1]} |")
    print()


def main():
    with minilm_bf16_workdir(__doc__.split("\n\n")[0]) as (_, path):
        decompress_spread(path)
        fresh_memory()


if __name__ == "__main__":
    main()
