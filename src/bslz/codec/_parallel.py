"""Threads for chunk-parallel kernels.

Kernels release the GIL (`nogil=True`), so plain Python threads run them on every core. This
replaced numba's `prange` for decoding: inside a parallel region numba compiled the decode loop
2.7x slower than the same kernel called on its own (measured), so threads drive plain kernels.
"""

import concurrent.futures
import functools
import os
import threading

_local = threading.local()


def default_workers():
    """Threads to use: NUMBA_NUM_THREADS if set, else one per CPU this process may run on."""
    env = os.environ.get("NUMBA_NUM_THREADS")
    return max(1, int(env)) if env and env.isdigit() else _cores()


@functools.cache
def _cores():
    """The CPUs this process may run on (taskset, a container's cpuset), not every CPU of the machine;
    cached: glibc reads a /sys file each time, ~20 us, and this is asked for every tensor."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _mark_pool_thread():
    _local.in_pool = True


@functools.cache
def _pool(workers):
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="bslz", initializer=_mark_pool_thread
    )


def parallel_map(fn, items, workers=None):
    """`[fn(item) for item in items]`, run on up to `workers` threads; exceptions propagate.

    Called from inside another parallel_map it runs inline: the outer map already keeps every core
    busy (tensors side by side, each coded on one thread), and a pool thread waiting on the same
    pool could deadlock it."""
    items = list(items)
    workers = 1 if getattr(_local, "in_pool", False) else min(workers or default_workers(), len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    return list(_pool(workers).map(fn, items))


def split_range(n, parts, multiple=1):
    """Cut range(n) into at most `parts` contiguous (lo, hi) pieces whose bounds are multiples of `multiple`."""
    units = -(-n // multiple)
    parts = max(1, min(parts, units))
    bounds = [min(n, multiple * ((units * i) // parts)) for i in range(parts + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


# Tensors below this many elements are coded side by side, one thread each: alone, one splits into
# too few chunks and trellis blocks to keep every core busy.
SIDE_BY_SIDE_ELEMENTS = 1 << 20
SIDE_BY_SIDE_BATCH_ELEMENTS = 1 << 23  # at most this many elements in flight at once (memory)
# Below this many elements (norms, biases) a tensor's time is Python's, not the kernels': it is coded
# in the calling thread while the pool codes the batch's others (in the pool, threads contending for
# the GIL made 1000 such tensors 1.5-2x slower than on one thread, measured)
TINY_ELEMENTS = 1 << 13


def map_tensors_in_order(fn, items, numel):
    """Yield (item, fn(item)) in the order of `items`: runs of small items (numel(item) below
    SIDE_BY_SIDE_ELEMENTS) a batch at a time side by side, the others one at a time, each free to
    use every core."""
    batch, batch_elements = [], 0
    for item in items:
        n = numel(item)
        if n < SIDE_BY_SIDE_ELEMENTS:
            batch.append(item)
            batch_elements += n
            if batch_elements < SIDE_BY_SIDE_BATCH_ELEMENTS:
                continue
        yield from zip(batch, _map_batch(fn, batch, numel))
        batch, batch_elements = [], 0
        if n >= SIDE_BY_SIDE_ELEMENTS:
            yield item, fn(item)
    yield from zip(batch, _map_batch(fn, batch, numel))


def _map_batch(fn, batch, numel):
    """[fn(item) for item in batch]: the items of TINY_ELEMENTS or more on the pool, the others in
    this thread meanwhile."""
    if default_workers() <= 1 or getattr(_local, "in_pool", False):
        return [fn(item) for item in batch]
    pooled = [j for j, item in enumerate(batch) if numel(item) >= TINY_ELEMENTS]
    futures = {j: _pool(default_workers()).submit(fn, batch[j]) for j in pooled}
    try:
        results = [None if j in futures else fn(item) for j, item in enumerate(batch)]
        for j, future in futures.items():
            results[j] = future.result()
    finally:
        for future in futures.values():  # an error here: let the others finish before it propagates
            future.cancel()
        concurrent.futures.wait(list(futures.values()))
    return results
