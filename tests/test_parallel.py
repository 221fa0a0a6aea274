import threading
import time

import pytest

from bslz.codec import _parallel as P


@pytest.mark.small
def test_split_range_tiles_the_range_on_multiples():
    for n in (0, 1, 7, 64, 1000):
        for parts in (1, 2, 3, 8):
            pieces = P.split_range(n, parts, multiple=4)
            bounds = [0] + [hi for _, hi in pieces]
            assert pieces == list(zip(bounds, bounds[1:])) and bounds[-1] == n
            assert all(lo % 4 == 0 for lo, _ in pieces) and len(pieces) <= parts


def test_map_tensors_in_order_keeps_the_order_and_pools_only_small_items(monkeypatch):
    """Small items run side by side on the pool (or on the calling thread, when it takes one in its
    turn), tiny ones and large ones on the calling thread, and every result comes back in the order
    of the items, whatever order the threads finish in."""
    monkeypatch.setattr(P, "default_workers", lambda: 2)
    small, large, tiny = P.SIDE_BY_SIDE_ELEMENTS - 1, P.SIDE_BY_SIDE_ELEMENTS, P.TINY_ELEMENTS - 1
    sizes = [small, 5, large, P.TINY_ELEMENTS, small, 1, large, large, 7, tiny, small]
    main = threading.get_ident()
    ran_on = {}

    def fn(i):
        ran_on[i] = threading.get_ident()
        return i * 10

    out = list(P.map_tensors_in_order(fn, range(len(sizes)), lambda i: sizes[i]))
    assert out == [(i, i * 10) for i in range(len(sizes))]
    on_main = {i for i in ran_on if ran_on[i] == main}
    assert on_main >= {i for i, n in enumerate(sizes) if n >= P.SIDE_BY_SIDE_ELEMENTS or n < P.TINY_ELEMENTS}


def test_the_caller_runs_the_items_waiting_for_the_busy_pool(monkeypatch):
    """With two cores the pool has one thread, and the caller is the second: items 0 and 1, where
    one waits for the other, run on the two at once, and the tiny item 2 on the caller (a pool of
    one thread alone would never finish item 0)."""
    monkeypatch.setattr(P, "default_workers", lambda: 2)
    gate = threading.Event()
    main = threading.get_ident()
    ran_on = {}

    def fn(i):
        ran_on[i] = threading.get_ident()
        if i == 0 and not gate.wait(5):
            raise TimeoutError("item 1 never ran")
        if i == 1:
            gate.set()
        return i

    sizes = [P.TINY_ELEMENTS, P.TINY_ELEMENTS, 1, P.TINY_ELEMENTS]
    out = list(P.map_tensors_in_order(fn, range(4), lambda i: sizes[i]))
    assert out == [(i, i) for i in range(4)]
    assert ran_on[0] != ran_on[1] and main in (ran_on[0], ran_on[1]) and ran_on[2] == main


def test_an_interrupt_in_an_item_the_caller_took_in_turn_stops_at_once(monkeypatch):
    """Ctrl-C while the caller runs an item ahead of its turn (here item 1, while the pool runs
    item 0) is not kept for that turn: item 2 does not run (an error is kept: see above)."""
    monkeypatch.setattr(P, "default_workers", lambda: 2)
    started = threading.Event()
    ran = []

    def fn(i):
        ran.append(i)
        if i == 0:
            started.set()
            time.sleep(0.3)
        if i == 1:
            raise KeyboardInterrupt
        return i

    def numel(i):
        if i == 1:  # the pool starts item 0 before the caller looks for items to take
            started.wait(5)
        return [P.TINY_ELEMENTS, 1, 1][i]

    with pytest.raises(KeyboardInterrupt):
        list(P.map_tensors_in_order(fn, range(3), numel))
    assert ran[:2] == [0, 1] and 2 not in ran


def test_an_error_raised_after_the_caller_ran_out_of_items_propagates():
    """Item 1 fails on one thread after item 0 has finished on the other (and its thread found no
    item left): the error still comes out of parallel_map."""
    both_started = threading.Barrier(2)

    def fn(i):
        both_started.wait(5)
        if i == 1:
            time.sleep(0.05)
            raise ValueError("item 1")
        return i

    for _ in range(3):
        with pytest.raises(ValueError, match="item 1"):
            P.parallel_map(fn, range(2), workers=2)


def test_parallel_map_runs_items_on_the_calling_thread_too():
    main = threading.get_ident()

    def fn(i):
        gate.wait(5)  # each thread holds its first item until the other has one: both take part
        return i, threading.get_ident()

    gate = threading.Barrier(2)
    out = P.parallel_map(fn, range(2), workers=2)
    assert [i for i, _ in out] == [0, 1]
    assert {t for _, t in out} > {main}


def test_parallel_map_raises_the_first_error_once_every_thread_has_stopped():
    started, lock = [], threading.Lock()

    def fn(i):
        with lock:
            started.append(i)
        if i == 2:
            raise ValueError("item 2")
        return i

    with pytest.raises(ValueError, match="item 2"):
        P.parallel_map(fn, range(50), workers=2)
    count = len(started)
    assert count < 50  # the threads stopped taking items after the error
    assert len(started) == count  # and none is still running


def test_an_error_propagates_after_the_pooled_items_finish(monkeypatch):
    monkeypatch.setattr(P, "default_workers", lambda: 2)
    finished = []

    def fn(i):
        if i == 1:
            raise ValueError("tensor 1")
        finished.append(i)
        return i

    sizes = [P.TINY_ELEMENTS, 5, P.TINY_ELEMENTS, 3]
    with pytest.raises(ValueError, match="tensor 1"):
        list(P.map_tensors_in_order(fn, range(4), lambda i: sizes[i]))
    assert 3 not in finished  # the tiny ones after the error are not run; the pooled ones ran or were cancelled
    assert set(finished) <= {0, 2}


def test_the_items_ahead_hold_a_bounded_number_of_elements():
    n = P.SIDE_BY_SIDE_ELEMENTS // 2
    count = 4 * P.SIDE_BY_SIDE_BATCH_ELEMENTS // n
    in_flight, peak, lock = [0], [0], threading.Lock()
    started = []

    def fn(i):
        with lock:
            started.append(i)
        return i

    produced = []
    for i, _ in P.map_tensors_in_order(fn, range(count), lambda i: n):
        produced.append(i)
        in_flight[0] = len(started) - len(produced)
        peak[0] = max(peak[0], in_flight[0])
    assert produced == list(range(count))
    assert peak[0] * n < P.SIDE_BY_SIDE_BATCH_ELEMENTS  # never more than that many elements ahead


def test_a_parallel_map_inside_another_runs_inline():
    """A pool thread that waited on the pool could deadlock it: nested maps run on the caller."""

    def inner(_):
        me = threading.get_ident()
        return all(t == me for t in P.parallel_map(lambda _: threading.get_ident(), range(8)))

    assert all(P.parallel_map(inner, range(8), workers=2))


def test_a_slow_item_does_not_hold_back_the_next_ones(monkeypatch):
    """A thread takes the next item as soon as it is free and the elements ahead allow it, not once
    a whole batch is done: with room for two items, item 2 starts while item 1 still runs (batches
    of two waited for item 1 before they started item 2, which item 1 waits for here)."""
    monkeypatch.setattr(P, "default_workers", lambda: 2)
    monkeypatch.setattr(P, "SIDE_BY_SIDE_BATCH_ELEMENTS", 2 * P.TINY_ELEMENTS)
    gate = threading.Event()

    def fn(i):
        if i == 1 and not gate.wait(5):
            raise TimeoutError("item 2 never started")
        if i == 2:
            gate.set()
        return i

    out = list(P.map_tensors_in_order(fn, range(4), lambda i: P.TINY_ELEMENTS))
    assert out == [(i, i) for i in range(4)]


def _side_by_side_sizes():
    small, large, tiny = P.SIDE_BY_SIDE_ELEMENTS - 1, P.SIDE_BY_SIDE_ELEMENTS, P.TINY_ELEMENTS - 1
    return [small, 5, large, P.TINY_ELEMENTS, small, 1, large, 7, tiny, P.TINY_ELEMENTS + 1]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_map_tensors_side_by_side_returns_every_result_in_the_items_order(monkeypatch, workers):
    """Whatever order the threads run them in, result i is fn(item i); the tiny items go through
    fn_many, all in one call, and the others through fn, each once."""
    monkeypatch.setattr(P, "default_workers", lambda: workers)
    sizes = _side_by_side_sizes()
    calls, many_calls, lock = [], [], threading.Lock()

    def fn(i):
        with lock:
            calls.append(i)
        return i * 10

    def fn_many(items):
        many_calls.append(list(items))
        return [-i for i in items]

    out = P.map_tensors_side_by_side(fn, range(len(sizes)), lambda i: sizes[i], fn_many)
    tiny = [i for i, n in enumerate(sizes) if n < P.TINY_ELEMENTS]
    assert out == [-i if i in tiny else i * 10 for i in range(len(sizes))]
    assert many_calls == [tiny]
    assert sorted(calls) == [i for i in range(len(sizes)) if i not in tiny]
    # without fn_many the tiny ones go through fn too
    assert P.map_tensors_side_by_side(fn, range(len(sizes)), lambda i: sizes[i]) == [i * 10 for i in range(len(sizes))]


def test_map_tensors_side_by_side_runs_the_tiny_items_on_the_pool_beside_the_large_ones(monkeypatch):
    """With two cores the pool has one thread: it takes the tiny items together while the caller
    runs the large item (which waits for them here: one thread alone would never finish), then
    both threads take the medium ones."""
    monkeypatch.setattr(P, "default_workers", lambda: 2)
    main = threading.get_ident()
    sizes = [P.TINY_ELEMENTS, P.SIDE_BY_SIDE_ELEMENTS, P.TINY_ELEMENTS + 5, 1, 2]
    tiny_done, ran_on = threading.Event(), {}

    def fn(i):
        ran_on[i] = threading.get_ident()
        if i == 1 and not tiny_done.wait(5):
            raise TimeoutError("the tiny items never ran beside the large one")
        return i

    def fn_many(items):
        for i in items:
            ran_on[i] = threading.get_ident()
        tiny_done.set()
        return list(items)

    assert P.map_tensors_side_by_side(fn, range(5), lambda i: sizes[i], fn_many) == [0, 1, 2, 3, 4]
    assert ran_on[1] == main and ran_on[3] == ran_on[4] != main
    assert set(ran_on) == set(range(5))


def test_map_tensors_side_by_side_raises_an_error_once_the_threads_are_done(monkeypatch):
    """An error in a pooled item comes out of the call once no thread is still running one; the
    items still queued are cancelled, and the caller stops taking them."""
    monkeypatch.setattr(P, "default_workers", lambda: 2)
    running, ran, lock = [0], [], threading.Lock()
    sizes = [P.TINY_ELEMENTS + 9] + [P.TINY_ELEMENTS] * 20

    def fn(i):
        with lock:
            running[0] += 1
            ran.append(i)
        try:
            time.sleep(0.01)
            if i == 0:
                raise ValueError("tensor 0")
            return i
        finally:
            with lock:
                running[0] -= 1

    with pytest.raises(ValueError, match="tensor 0"):
        P.map_tensors_side_by_side(fn, range(len(sizes)), lambda i: sizes[i])
    assert running[0] == 0
    assert len(ran) < len(sizes) // 2  # the caller stopped taking the queued ones


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("sizes", [[P.TINY_ELEMENTS - 1, P.SIDE_BY_SIDE_ELEMENTS], [P.SIDE_BY_SIDE_ELEMENTS]])
def test_map_tensors_side_by_side_runs_beside_on_the_pool_and_fails_with_it(monkeypatch, workers, sizes):
    """`beside` runs once, before the map returns: with a pool, on a pool thread while the caller
    runs the large item (which waits for it here), with or without tiny items; its error fails the map."""
    monkeypatch.setattr(P, "default_workers", lambda: workers)
    beside_done, ran_on = threading.Event(), []

    def fn(i):
        if sizes[i] >= P.SIDE_BY_SIDE_ELEMENTS and workers > 1 and not beside_done.wait(5):
            raise TimeoutError("beside never ran beside the large item")
        return i

    def beside():
        ran_on.append(threading.get_ident())
        beside_done.set()

    out = P.map_tensors_side_by_side(fn, range(len(sizes)), lambda i: sizes[i], beside=beside)
    assert out == list(range(len(sizes)))
    assert len(ran_on) == 1 and (ran_on[0] != threading.get_ident()) == (workers > 1)

    def fail():
        raise ValueError("beside")

    with pytest.raises(ValueError, match="beside"):
        P.map_tensors_side_by_side(lambda i: i, range(len(sizes)), lambda i: sizes[i], beside=fail)
