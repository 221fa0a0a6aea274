"""The writer thread behind compress_file / decompress_file (`bslz.formats.background`)."""

import threading
import time

import pytest

from bslz.formats.background import Background


def test_tasks_run_in_order_without_waiting_while_under_the_budget():
    ran, gate = [], threading.Event()
    with Background(max_pending_bytes=100, group_bytes=0) as background:
        background.submit(gate.wait, nbytes=10)  # holds the thread
        for i in range(5):
            background.submit(ran.append, i, nbytes=10)  # 60 bytes queued: none of these waits
        assert ran == []
        gate.set()
    assert ran == list(range(5))


def test_submit_waits_while_the_queue_would_pass_the_budget():
    gate, order = threading.Event(), []
    threading.Timer(0.2, gate.set).start()
    with Background(max_pending_bytes=100, group_bytes=0) as background:
        background.submit(lambda: (gate.wait(), order.append("first")), nbytes=60)
        t0 = time.perf_counter()
        background.submit(order.append, "second", nbytes=60)  # 120 > 100: waits for the first
        assert time.perf_counter() - t0 > 0.1 and order == ["first"]
    assert order == ["first", "second"]


def test_a_large_task_is_queued_alone():
    """One task may always be queued, however large: the budget bounds what waits, not what runs."""
    done = []
    with Background(max_pending_bytes=10) as background:
        background.submit(done.append, 1, nbytes=1000)
        background.submit(done.append, 2, nbytes=1000)
    assert done == [1, 2]


def test_an_error_comes_out_of_a_later_call_and_stops_the_tasks_after_it():
    ran, gate = [], threading.Event()

    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with Background(max_pending_bytes=1000, group_bytes=0) as background:
            background.submit(gate.wait)
            background.submit(fail)
            background.submit(ran.append, "after")  # queued behind the failing task: must not run
            gate.set()
    assert ran == []
    with Background(group_bytes=0) as background:
        background.submit(fail)
        time.sleep(0.1)
        with pytest.raises(OSError, match="disk full"):
            background.submit(ran.append, "later")  # a finished task's error comes out of the next submit
    assert ran == []


def test_small_tasks_are_handed_over_together_in_order():
    """Tasks wait in a group until it holds group_bytes (the task that fills it goes with it), or
    until `wait`: each hand-off to the thread costs more than writing a small tensor."""
    ran, threads = [], set()

    def note(i):
        ran.append(i)
        threads.add(threading.get_ident())

    with Background(group_bytes=100) as background:
        background.submit(note, 0, nbytes=40)
        background.submit(note, 1, nbytes=40)
        time.sleep(0.05)
        assert ran == []  # 80 bytes: not handed over yet
        background.submit(note, 2, nbytes=500)  # fills the group: all three go
        background.submit(note, 3, nbytes=1)
        background.wait()  # hands over the last, unfilled group
        assert ran == [0, 1, 2, 3]
    assert threads and threading.get_ident() not in threads


def test_an_error_in_a_group_stops_the_tasks_after_it():
    ran = []

    def fail():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with Background(group_bytes=100) as background:
            background.submit(ran.append, "before", nbytes=10)
            background.submit(fail, nbytes=10)
            background.submit(ran.append, "after", nbytes=10)
    assert ran == ["before"]
