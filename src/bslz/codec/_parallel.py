"""Threads for chunk-parallel kernels.

Kernels release the GIL (`nogil=True`), so plain Python threads run them on every core. This
replaced numba's `prange` for decoding: inside a parallel region numba compiled the decode loop
2.7x slower than the same kernel called on its own (measured), so threads drive plain kernels.
"""

import concurrent.futures
import functools
import os


def default_workers():
    """Threads to use: NUMBA_NUM_THREADS if set, else one per core."""
    env = os.environ.get("NUMBA_NUM_THREADS")
    return max(1, int(env)) if env and env.isdigit() else max(1, os.cpu_count() or 1)


@functools.cache
def _pool(workers):
    return concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bslz")


def parallel_map(fn, items, workers=None):
    """`[fn(item) for item in items]`, run on up to `workers` threads; exceptions propagate."""
    items = list(items)
    workers = min(workers or default_workers(), len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    return list(_pool(workers).map(fn, items))


def split_range(n, parts, multiple=1):
    """Cut range(n) into at most `parts` contiguous (lo, hi) pieces whose bounds are multiples of `multiple`."""
    units = -(-n // multiple)
    parts = max(1, min(parts, units))
    bounds = [min(n, multiple * ((units * i) // parts)) for i in range(parts + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]
