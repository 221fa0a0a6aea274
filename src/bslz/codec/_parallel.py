"""Threads for chunk-parallel kernels.

Kernels release the GIL (`nogil=True`), so plain Python threads run them on every core. This
replaced numba's `prange` for decoding: inside a parallel region numba compiled the decode loop
2.7x slower than the same kernel called on its own (measured), so threads drive plain kernels.
"""

import collections
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
    workers = threads_for(len(items), workers)
    if workers <= 1:
        return [fn(item) for item in items]
    return list(_pool(workers).map(fn, items))


def threads_for(count, workers=None):
    """How many threads `parallel_map` runs `count` items on."""
    # most tensors of a model are one chunk: nothing to spread, nothing to ask (reading the
    # environment costs more than a small tensor's chunk)
    if count <= 1 or getattr(_local, "in_pool", False):
        return 1
    return max(1, min(workers or default_workers(), count))


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
# in the calling thread, in its turn, while the pool codes the others after it (in the pool, threads
# contending for the GIL made 1000 such tensors 1.5-2x slower than on one thread, measured)
TINY_ELEMENTS = 1 << 13


def map_tensors_in_order(fn, items, numel):
    """Yield (item, fn(item)) in the order of `items`. Small items (numel(item) below
    SIDE_BY_SIDE_ELEMENTS) run side by side on the pool, one thread each, as many ahead of the one
    yielded next as hold SIDE_BY_SIDE_BATCH_ELEMENTS elements: a thread that finishes takes the
    next, where batches of them waited for their slowest. Tiny ones (below TINY_ELEMENTS) run in
    this thread when their turn comes; large ones one at a time once those before them are done,
    each free to use every core."""
    if default_workers() <= 1 or getattr(_local, "in_pool", False):
        for item in items:
            yield item, fn(item)
        return
    pool = _pool(default_workers())
    ahead = collections.deque()  # (item, its future; None: tiny, not run yet), in order
    in_flight = 0  # elements of the pooled items in `ahead`

    def next_result():
        nonlocal in_flight
        item, future = ahead.popleft()
        if future is None:
            return item, fn(item)
        in_flight -= numel(item)
        return item, future.result()

    try:
        for item in items:
            n = numel(item)
            if n >= SIDE_BY_SIDE_ELEMENTS:
                while ahead:
                    yield next_result()
                yield item, fn(item)
            elif n < TINY_ELEMENTS:
                ahead.append((item, None))
            else:
                while ahead and in_flight + n > SIDE_BY_SIDE_BATCH_ELEMENTS:
                    yield next_result()
                ahead.append((item, pool.submit(fn, item)))
                in_flight += n
        while ahead:
            yield next_result()
    finally:  # an error, or the caller stopped early: cancel the pooled ones, or let them finish
        futures = [future for _, future in ahead if future is not None]
        for future in futures:
            future.cancel()
        concurrent.futures.wait(futures)
