"""The one timing rule of the benchmark scripts: the least wall time over repeated calls."""

import time


def best_time(fn, repeats, warm_up=False):
    """(least seconds of `repeats` calls of fn, the last call's result); with `warm_up`, one untimed
    call first (numba compiles a kernel on its first call)."""
    if warm_up:
        fn()
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def best_times_interleaved(fns, rounds):
    """[least seconds of each fn over `rounds` rounds], each round calling every fn once in turn, so
    that a ratio of two of them compares calls made under the same machine state (these machines'
    CPUs change speed by up to 40 % from one second to the next: timing one tool's calls, then the
    other's, could put each in a different state)."""
    best = [float("inf")] * len(fns)
    for _ in range(max(1, rounds)):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best
