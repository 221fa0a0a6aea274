"""Containers and safetensors images held in memory rather than in files: the checks on such a
buffer, and the name it goes by in error messages; and the check that an input file can be read
at random, as those are."""

import os
import stat

import numpy as np

from bslz.errors import InvalidArgumentError

IN_MEMORY = "<memory>"  # stands for a path in the messages about a buffer


def contiguous_bytes(data, what):
    """`data` (bytes, bytearray, memoryview, a contiguous numpy array...) as a flat uint8 array over
    the same memory, without a copy; read-only where `data` is."""
    try:
        view = memoryview(data)
    except TypeError:
        raise InvalidArgumentError(f"{what} must be bytes-like, got {type(data).__name__}") from None
    if not view.c_contiguous:
        raise InvalidArgumentError(f"{what} must be a contiguous buffer")
    return np.frombuffer(view.cast("B"), dtype=np.uint8)


def regular_file_size(path, f):
    """The size of the opened input file `f`, refusing anything but a regular file: a pipe (a
    process substitution, /dev/stdin) cannot be read at random, and its size says 0."""
    info = os.fstat(f.fileno())
    if not stat.S_ISREG(info.st_mode):
        raise InvalidArgumentError(f"{path}: not a regular file (a pipe? the command line takes - for standard input)")
    return info.st_size


def sequential_reader(buffer):
    """read(n) -> the next n bytes of `buffer` (fewer at its end), like a file's read."""
    position = 0

    def read(n):
        nonlocal position
        piece = buffer[position : position + n].tobytes()
        position += len(piece)
        return piece

    return read


class MemoryFile:
    """A binary file in memory for the container writer (seek, write, truncate), over numpy memory:
    numpy asks Linux for huge pages, where the 4 KiB pages of a bytes object or a BytesIO each cost
    a fault on first touch (compress_bytes into a BytesIO on MiniLM bf16: 7-20 thousand faults).
    It grows as it is written past its capacity; bytes skipped by a seek read as zeros."""

    def __init__(self, capacity):
        self._memory = np.empty(max(0, capacity), dtype=np.uint8)
        self._size = 0
        self._position = 0

    def seek(self, position):
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def tell(self):
        return self._position

    def write(self, data):
        piece = contiguous_bytes(data, "data written")
        end = self._position + piece.size
        self._reserve(end)
        self._zero_gap(self._position)
        self._memory[self._position : end] = piece
        self._position = end
        self._size = max(self._size, end)
        return piece.size

    def truncate(self, size=None):
        size = self._position if size is None else size
        self._reserve(size)
        self._zero_gap(size)
        self._size = size
        return size

    def getbuffer(self):
        """The file's bytes, a view: no copy."""
        return memoryview(self._memory[: self._size])

    def _reserve(self, end):
        if end > self._memory.size:
            grown = np.empty(max(end, 2 * self._memory.size), dtype=np.uint8)
            grown[: self._size] = self._memory[: self._size]
            self._memory = grown

    def _zero_gap(self, end):
        if end > self._size:
            self._memory[self._size : end] = 0
