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


class Background:
    """Tasks run one at a time, in the order submitted. `submit` returns at once unless the tasks
    still queued hold more than `max_pending_bytes` (one task may always be queued), so memory stays
    bounded. A task's exception comes out of a later `submit` or `wait`; once one task has failed,
    the tasks queued after it do not run."""

    def __init__(self, max_pending_bytes=MAX_PENDING_BYTES):
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bslz-io")
        self._pending = collections.deque()  # (future, nbytes), oldest first
        self._pending_bytes = 0
        self._max_pending_bytes = max_pending_bytes
        self._failed = False

    def submit(self, fn, *args, nbytes=0):
        """Queue fn(*args), whose arguments hold `nbytes` bytes, after waiting for the oldest tasks
        while the queue would hold more than the budget; raises the error of a finished task."""
        while self._pending and (self._pending[0][0].done() or self._pending_bytes + nbytes > self._max_pending_bytes):
            self._finish_oldest()
        self._pending.append((self._pool.submit(self._run, fn, args), nbytes))
        self._pending_bytes += nbytes

    def _run(self, fn, args):
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
        """Wait for every queued task; re-raise the first error."""
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
