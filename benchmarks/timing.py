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
