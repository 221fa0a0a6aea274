"""Reading and writing safetensors files ourselves: the header is validated as strictly as the
reference implementation does, and tensors are memory-mapped one at a time, so compressing a
model never holds more than one tensor's data in memory.

safetensors layout: u64 little-endian header length N, N bytes of UTF-8 JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
data; offsets are relative to the data start and must tile it with no gap or overlap.
"""

import dataclasses
import json
import math
import mmap
import os

import numpy as np

from bslz.errors import FormatError, TruncatedError
from bslz.formats.buffers import IN_MEMORY, contiguous_bytes, regular_file_size, sequential_reader
from bslz.formats.dtypes import lookup
from bslz.formats.json_object import parse_json_object

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's limit


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # safetensors name, possibly one bslz does not know
    shape: tuple
    begin: int  # byte offsets relative to the data start
    end: int

    @property
    def nbytes(self):
        return self.end - self.begin

    @property
    def numel(self):
        return math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class SafetensorsFile:
    path: str
    header_bytes: bytes  # exactly as in the file: a lossless round trip writes it back
    tensors: list  # TensorInfo in header order
    metadata: dict | None
    data_start: int
    file_size: int
    buffer: np.ndarray | None = None  # the whole image (uint8), when it is held in memory, not in a file

    def tensor_bytes(self, info):
        """The raw bytes of one tensor (uint8 array), read-only: memory-mapped from the file
        (unmapped once no array refers to it), or a view of the buffer."""
        if info.nbytes == 0:
            return np.zeros(0, dtype=np.uint8)
        if self.buffer is not None:
            view = self.buffer[self.data_start + info.begin :][: info.nbytes]
            view.flags.writeable = False  # as a file's mapping is: the same kernels' types, and no writes
            return view
        return map_read_only(self.path, self.data_start + info.begin, info.nbytes)


def map_read_only(path, offset, length):
    """`length` bytes of a file from `offset`, memory-mapped read-only, as a uint8 array (a plain
    mmap under np.frombuffer: np.memmap took ~40 us a tensor, mostly Python)."""
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        mapped = mmap.mmap(fd, offset + length - start, access=mmap.ACCESS_READ, offset=start)
    finally:
        os.close(fd)  # the mapping keeps the file
    return np.frombuffer(mapped, dtype=np.uint8, count=length, offset=offset - start)


def read_safetensors(path):
    """Parse and validate the header of a safetensors file; tensors are read later, one by one."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        return _read_head(path, regular_file_size(path, f), f.read)


def read_safetensors_buffer(data, name=IN_MEMORY):
    """`read_safetensors` of a safetensors image held in memory (any contiguous bytes-like object),
    called `name` in error messages; its tensors are views of it, not copies."""
    buffer = contiguous_bytes(data, "a safetensors image")
    return dataclasses.replace(_read_head(name, buffer.size, sequential_reader(buffer)), buffer=buffer)


def _read_head(path, size, read):
    """The SafetensorsFile of a file or buffer of `size` bytes; read(n): its next n bytes (fewer at
    its end)."""
    prefix = read(8)
    if len(prefix) < 8:
        raise TruncatedError(f"{path}: {len(prefix)} bytes is too short for a safetensors file")
    n = int.from_bytes(prefix, "little")
    if n > MAX_HEADER_BYTES:
        raise FormatError(f"{path}: safetensors header of {n} bytes is over the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > size:
        raise TruncatedError(f"{path}: safetensors header of {n} bytes runs past the end of the file")
    header_bytes = read(n)
    tensors, metadata = parse_header(path, header_bytes, size - 8 - n)
    return SafetensorsFile(path, header_bytes, tensors, metadata, 8 + n, size)


def parse_header(path, header_bytes, data_size):
    """(tensors, metadata) of safetensors header bytes, validated against a data section of
    `data_size` bytes. `path` only names the file in error messages."""
    header = parse_json_object(path, header_bytes, "safetensors header")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise FormatError(f"{path}: __metadata__ must map strings to strings")
    tensors = [_tensor_info(path, name, entry) for name, entry in header.items()]
    _check_tiling(path, tensors, data_size)
    return tensors, metadata


def _tensor_info(path, name, entry):
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(f"{path}: tensor {name!r} needs exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str):
        raise FormatError(f"{path}: tensor {name!r} has a non-string dtype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise FormatError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise FormatError(f"{path}: tensor {name!r} has invalid data_offsets {offsets!r}")
    info = TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])
    known = lookup(dtype)
    if known is not None and _numel_above(shape, info.nbytes):  # before math.prod: it is quadratic in len(shape)
        raise FormatError(f"{path}: tensor {name!r} of shape {shape[:8]}... {dtype} is larger than its offsets")
    if known is not None and info.numel * known.itemsize != info.nbytes:
        raise FormatError(
            f"{path}: tensor {name!r} of shape {shape} {dtype} needs {info.numel * known.itemsize} bytes,"
            f" its offsets give {info.nbytes}"
        )
    return info


def _numel_above(shape, limit):
    if 0 in shape:
        return False
    n = 1
    for d in shape:
        n *= d
        if n > limit:
            return True
    return False


def _check_tiling(path, tensors, data_size):
    expected = 0
    for info in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if info.begin != expected:
            raise FormatError(
                f"{path}: tensor {info.name!r} starts at {info.begin}, expected {expected} (gap or overlap)"
            )
        expected = info.end
    if expected != data_size:
        cls = TruncatedError if expected > data_size else FormatError
        raise cls(f"{path}: tensors cover {expected} data bytes, the file holds {data_size}")


def build_header(tensors, metadata=None):
    """Header bytes for `tensors` (TensorInfo, offsets already set), padded with spaces to 8 bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [t.begin, t.end]}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return text + b" " * (-len(text) % 8)


def layout_tensors(specs):
    """TensorInfo for (name, dtype, shape, nbytes) specs, packed back to back in order."""
    out, offset = [], 0
    for name, dtype, shape, nbytes in specs:
        out.append(TensorInfo(name, dtype, tuple(shape), offset, offset + nbytes))
        offset += nbytes
    return out
