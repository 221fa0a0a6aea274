"""A second thread for a file's checksums and writes, so that they overlap the encoding or decoding
of the next tensor (the kernels and the CRC-32 release the GIL).

The coding itself spreads over every core: a large tensor by its chunks, small ones side by side
(`bslz.codec._parallel.map_tensors_in_order`).
"""

import concurrent.futures


class Background:
    """One task at a time: `submit` first waits for the previous one, so tasks run in order and hold
    at most one tensor's bytes beyond what the caller works on."""

    def __init__(self):
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bslz-io")
        self._pending = None

    def submit(self, fn, *args):
        """Run fn(*args) after the previous task; an exception it raises comes out of the next
        `submit` or `wait`."""
        self.wait()
        self._pending = self._pool.submit(fn, *args)

    def wait(self):
        """Wait for the last task; re-raise its exception."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.wait()
            elif self._pending is not None:  # let it finish before the file goes; the first error wins
                self._pending.exception()
        finally:
            self._pool.shutdown(wait=True)
        return False
