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

    The calling thread is one of them: it takes items in turn with `workers - 1` pool threads. When
    it only waited beside a pool as large as the cores, three threads wanted two cores whenever it
    had Python to run (the tiny tensors `map_tensors_in_order` keeps for it), and the one left out
    could hold the GIL that the others waited for. `benchmarks/bench_gil_waits.py`, 2 cores, MiniLM
    bf16: the calling thread waited 6.4-6.7 ms a call for a core in `decompress_bytes` and 13-14 ms
    in `load_file` of the `--bits 7.978` file (the pool's threads 1.4-5.2 ms more); now each thread
    0.02-0.64 ms (two runs at 1301134, four after).

    Called from inside another parallel_map it runs inline: the outer map already keeps every core
    busy (tensors side by side, each coded on one thread), and a pool thread waiting on the same
    pool could deadlock it."""
    items = list(items)
    workers = threads_for(len(items), workers)
    if workers <= 1:
        return [fn(item) for item in items]
    results = [None] * len(items)
    indices = iter(range(len(items)))  # shared: next() on it is atomic (the GIL is held through it)
    errors = []  # the first one is raised
    stop = []  # once not empty (an error, or the caller done or interrupted), no thread takes an item

    def take():
        for i in indices:
            if stop:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as error:  # the others stop at their next item
                errors.append(error)
                stop.append(True)
                return

    helpers = [_pool(workers - 1).submit(take) for _ in range(workers - 1)]
    try:
        _as_pool_thread(take)
    finally:
        stop.append(True)
        for helper in helpers:  # one still queued (the pool busy elsewhere) has nothing left to take
            helper.cancel()
        concurrent.futures.wait(helpers)
    if errors:
        raise errors[0]
    return results


def _as_pool_thread(fn, *args):
    """fn(*args) with this thread counted as a pool thread: maps inside it run inline."""
    was_in_pool = getattr(_local, "in_pool", False)
    _local.in_pool = True
    try:
        return fn(*args)
    finally:
        _local.in_pool = was_in_pool


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


ONE_PASS_PIECE = 1 << 20  # elements a thread takes at least in a one-pass kernel


def pieces_per_core(n, least=ONE_PASS_PIECE, multiple=1):
    """`split_range` of range(n) into a piece a core, each of `least` elements or more (one piece at
    least): for a pass over one array that `parallel_map` spreads over the cores."""
    parts = n // least
    # a small array is one piece whatever the cores: not worth reading the environment for
    return split_range(n, 1 if parts <= 1 else min(default_workers(), parts), multiple)


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
    this thread; large ones one at a time once those before them are done, each free to use every
    core. The pool has a thread fewer than the cores: this thread, while it waits for a result,
    runs the items that no pool thread has started (`_take_in_turn`)."""
    if default_workers() <= 1 or getattr(_local, "in_pool", False):
        for item in items:
            yield item, fn(item)
        return
    pool = _pool(default_workers() - 1)  # this thread is the other one (see parallel_map)
    ahead = collections.deque()  # [item, its future (None: tiny, not run yet), pooled elements], in order
    in_flight = 0  # elements of the pooled items in `ahead`

    def next_result():
        nonlocal in_flight
        head = ahead[0]
        while head[1] is not None and not head[1].done() and _take_in_turn(fn, ahead):
            pass
        item, future, pooled = ahead.popleft()
        in_flight -= pooled
        return item, (fn(item) if future is None else future.result())

    try:
        for item in items:
            n = numel(item)
            if n >= SIDE_BY_SIDE_ELEMENTS:
                while ahead:
                    yield next_result()
                yield item, fn(item)
            elif n < TINY_ELEMENTS:
                ahead.append([item, None, 0])
            else:
                while ahead and in_flight + n > SIDE_BY_SIDE_BATCH_ELEMENTS:
                    yield next_result()
                ahead.append([item, pool.submit(fn, item), n])
                in_flight += n
        while ahead:
            yield next_result()
    finally:  # an error, or the caller stopped early: cancel the pooled ones, or let them finish
        futures = [future for _, future, _ in ahead if future is not None]
        for future in futures:
            future.cancel()
        concurrent.futures.wait(futures)


def map_tensors_side_by_side(fn, items, numel, fn_many=None, beside=None):
    """[fn(item) for item in items], run in whatever order keeps every core busy, for a caller that
    wants every result at once (a whole file decoded into memory), where `map_tensors_in_order`
    hands each over in its turn. `fn_many(items)` -> [fn(item) for item in items], if given, runs
    the tiny items (below TINY_ELEMENTS) together. `beside()`, if given, runs on a pool thread
    before them (work of the caller's that need not come first: `decompress_bytes` checks the
    stored safetensors header there); it fails the map as an item would.

    The tiny items go to a pool thread first, while this thread runs the large ones (from
    SIDE_BY_SIDE_ELEMENTS), each free to spread its chunks over the pool's threads as they come
    free; then the medium ones run side by side, largest first, one thread each, this thread among
    them. In file order (`map_tensors_in_order`), MiniLM bf16's 65 norms and biases ran one by one
    beside the encoder's matrices, two threads taking turns at the GIL. Running the matrices beside
    the word embeddings instead (this thread on the embeddings alone) was as fast on the lossless
    file, but on the `--bits 7.978` one the embeddings' chunks, each a few kernel calls with Python
    between them, took twice as long beside the matrices' (`decompress_bytes`: 67 against 48 ms a
    call, best of 15)."""
    items = list(items)
    sizes = [numel(item) for item in items]
    tiny = [i for i, n in enumerate(sizes) if n < TINY_ELEMENTS]
    medium = [i for i, n in enumerate(sizes) if TINY_ELEMENTS <= n < SIDE_BY_SIDE_ELEMENTS]
    large = [i for i, n in enumerate(sizes) if n >= SIDE_BY_SIDE_ELEMENTS]
    results = [None] * len(items)
    failed = []  # not empty once an item has raised: this thread then starts no more

    def run(indices, together=False, first=None):
        try:
            if first is not None:
                first()
            if together and fn_many is not None and indices:
                for i, result in zip(indices, fn_many([items[i] for i in indices])):
                    results[i] = result
            else:
                for i in indices:
                    results[i] = fn(items[i])
        except BaseException:
            failed.append(True)
            raise

    if default_workers() <= 1 or getattr(_local, "in_pool", False):
        run(medium + large, first=beside)
        run(tiny, together=True)
        return results
    pool = _pool(default_workers() - 1)
    futures = []
    try:
        if tiny or beside is not None:
            futures.append(((tiny, True, beside), pool.submit(run, tiny, True, beside)))
        run(large)
        for i in sorted(medium, key=lambda i: -sizes[i]) if not failed else ():
            futures.append((([i], False), pool.submit(run, [i])))
        for task, future in futures:  # those still queued, this thread runs (as a pool thread would)
            if not failed and future.cancel():
                _as_pool_thread(run, *task)
        for _, future in futures:
            if not future.cancelled():
                future.result()
    finally:  # an error, or an interrupt: cancel the queued ones, let the running ones finish
        for _, future in futures:
            future.cancel()
        concurrent.futures.wait([future for _, future in futures])
    return results


def _take_in_turn(fn, ahead):
    """While the head of `ahead` is not done, run here the first item that no thread has started
    (a tiny one, or a pooled one whose future can still be cancelled: the head itself when the pool
    has not reached it), its outcome kept in its entry; False if there is none. Waiting idle, this
    thread left a core to a pool one thread short; with a pool as large as the cores, it competed
    with the pool for them whenever it ran the tiny ones."""
    for entry in ahead:
        item, future, _ = entry
        if future is None or future.cancel():
            entry[1] = done = concurrent.futures.Future()
            try:
                done.set_result(_as_pool_thread(fn, item))
            except BaseException as error:  # raised in its turn; an interrupt, at once
                done.set_exception(error)  # (settled either way: the clean-up waits on every future)
                if not isinstance(error, Exception):
                    raise
            return True
    return False
