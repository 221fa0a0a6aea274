"""A second thread for a file's checksums and writes, so that they overlap the encoding or decoding
of the next tensors (the kernels and the CRC-32 release the GIL).

The coding itself spreads over every core: a large tensor by its chunks, small ones side by side
(`bslz.codec._parallel.map_tensors_in_order`).
"""

import collections
import concurrent.futures

# Queued tasks may hold this many bytes of tensors before `submit` waits for the oldest: small
# tensors go to the writer without a wait each (a thread hand-off per tensor cost ~30 us, most of
# a tiny tensor's time), while a large tensor still waits for the one before it, as before.
MAX_PENDING_BYTES = 1 << 24
# Tasks are handed to the thread in groups of at least this many bytes (a larger task alone, with
# the smaller ones before it): a hand-off a tensor was still a good part of the time a small one
# takes (benchmarks/bench_small_tensors.py, with stop 28's other changes for small tensors:
# compressing 384-value tensors 110-115 -> 91-93 us a tensor)
GROUP_BYTES = 1 << 16


class Background:
    """Tasks run one at a time, in the order submitted. `submit` returns at once unless the tasks
    still queued hold more than `max_pending_bytes` (one task may always be queued), so memory stays
    bounded. Tasks are handed over in groups of `group_bytes` or more (`wait` hands over the last
    one). A task's exception comes out of a later `submit` or `wait`; once one task has failed, the
    tasks queued after it do not run."""

    def __init__(self, max_pending_bytes=MAX_PENDING_BYTES, group_bytes=GROUP_BYTES):
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bslz-io")
        self._pending = collections.deque()  # (future, nbytes), oldest first
        self._pending_bytes = 0
        self._max_pending_bytes = max_pending_bytes
        self._group, self._group_bytes, self._min_group_bytes = [], 0, group_bytes  # not handed over yet
        self._failed = False

    def submit(self, fn, *args, nbytes=0):
        """Queue fn(*args), whose arguments hold `nbytes` bytes; once the group it joins holds
        `group_bytes`, hand the group over (`_hand_over`). Raises the error of a finished task."""
        self._group.append((fn, args))
        self._group_bytes += nbytes
        if self._group_bytes >= self._min_group_bytes:
            self._hand_over()

    def _hand_over(self):
        """Queue the group as one task, after waiting for the oldest tasks while the queue would
        hold more than the budget."""
        tasks, nbytes = self._group, self._group_bytes
        self._group, self._group_bytes = [], 0
        while self._pending and (self._pending[0][0].done() or self._pending_bytes + nbytes > self._max_pending_bytes):
            self._finish_oldest()
        if tasks:
            self._pending.append((self._pool.submit(self._run, tasks), nbytes))
            self._pending_bytes += nbytes

    def _run(self, tasks):
        for fn, args in tasks:
            if self._failed:  # an earlier task failed: its error is the one the caller sees
                return
            try:
                fn(*args)
            except BaseException:
                self._failed = True
                raise

    def _finish_oldest(self):
        future, nbytes = self._pending.popleft()
        self._pending_bytes -= nbytes
        future.result()

    def wait(self):
        """Wait for every task submitted; re-raise the first error."""
        self._hand_over()
        while self._pending:
            self._finish_oldest()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.wait()
            else:  # let them finish (or skip) before the file goes; the first error wins
                self._failed = True
                concurrent.futures.wait([future for future, _ in self._pending])
        finally:
            self._pool.shutdown(wait=True)
        return False
