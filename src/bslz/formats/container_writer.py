"""The `.bslz` container's writer (the layout and the reader: `container`)."""

import json

import numpy as np

from bslz import __version__
from bslz.formats.checksums import crc32, crc32_of_pieces
from bslz.formats.container import (
    ALIGN,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    MAGIC,
    PREFIX,
    align,
    bounded_numel,
)
from bslz.formats.dtypes import lookup
from bslz.formats.piece_checksums import MIN_PIECE_BYTES

# A payload of PIECES_FROM_BYTES or more also gets the CRC-32s of its pieces (format 1.3), at most
# MAX_PIECES of them: a reader of part of a tensor (`get_slice`) then reads and checks only the
# pieces that hold its tables and chunks. Each costs about 11 header bytes, and the header holds room
# for them before the payloads are known: given to every payload above MIN_PIECE_BYTES, at most 32
# a payload, they made MiniLM f16's lossless file 0.05 % larger (its ratio fell below ZipNN's) and
# cost 0.01 dB at --bits 4.936 on f32. From 4 MiB only its word embeddings have them (64 pieces:
# a reader of an eighth of their rows reads about a sixth of their payload, bench_slices.py).
PIECES_FROM_BYTES = 1 << 22
MAX_PIECES = 64


def piece_bytes_for(length):
    """The piece size of a payload of `length` bytes: the smallest power of two from
    MIN_PIECE_BYTES up that cuts it into at most MAX_PIECES pieces; None (no pieces) below
    PIECES_FROM_BYTES."""
    if length < max(PIECES_FROM_BYTES, MIN_PIECE_BYTES + 1):
        return None
    size = MIN_PIECE_BYTES
    while size * MAX_PIECES < length:
        size *= 2
    return size


def piece_room(dtype, shape):
    """How many piece CRC-32s the header makes room for in a tensor's entry: as many as a payload a
    table longer than its tensor could need. A payload that would need more (none is known to)
    goes without them: they are optional."""
    known = lookup(dtype)
    if known is None:
        return 0
    longest = bounded_numel(shape) * known.itemsize + MIN_PIECE_BYTES
    if piece_bytes_for(longest) is None:
        return 0
    return min(MAX_PIECES, -(-longest // MIN_PIECE_BYTES))


class ContainerWriter:
    """Writes a container to an open binary file: payloads first, then the header into space
    reserved for it at the front (header size bounded in advance from what the caller declares)."""

    def __init__(self, f, tensors, *, metadata=None, source_header=None, max_payload_bytes=2**64 - 1):
        """`tensors`: (name, dtype, shape[, kind]) in the order their payloads will be written (see
        `header_bound`); `max_payload_bytes` bounds the data section, for sizing the header."""
        self.f = f
        self.entries = []
        self.metadata = metadata
        self.source_header = source_header
        self.reserved = header_bound(tensors, metadata, source_header, max_payload_bytes)
        self.data_start = align(PREFIX.size + self.reserved)
        self.offset = 0

    def add(self, name, dtype, shape, fields, payload, decoded_crc32):
        """Append one tensor's payload (bytes-like) and header entry."""
        payload = memoryview(np.ascontiguousarray(payload)).cast("B") if isinstance(payload, np.ndarray) else payload
        self.f.seek(self.data_start + self.offset)
        self.f.write(payload)
        self.f.write(bytes(-len(payload) % ALIGN))  # the gap to the next payload is zeros, whatever f held there
        data = np.frombuffer(payload, dtype=np.uint8)
        piece_bytes = piece_bytes_for(data.size)
        if piece_bytes is not None and -(-data.size // piece_bytes) > piece_room(dtype, shape):  # (see piece_room)
            piece_bytes = None
        crcs, whole = (None, crc32(data)) if piece_bytes is None else crc32_of_pieces(data, piece_bytes)
        entry = {
            "name": name,
            "dtype": dtype,
            "shape": list(shape),
            "offset": self.offset,
            "length": len(payload),
            "crc32": whole,
            "decoded_crc32": decoded_crc32,
        }
        if crcs is not None:
            entry["piece_bytes"] = piece_bytes
            entry["piece_crc32"] = crcs
        entry.update(fields)
        self.entries.append(entry)
        end = self.offset + len(payload)
        self.offset = align(end)
        return entry

    def keep(self, count):
        """Drop the entries after the first `count`: the next payload is written where the last one
        kept ends (a writer closed and written again: the kept payloads stay where they are)."""
        del self.entries[count:]
        self.offset = align(self.entries[-1]["offset"] + self.entries[-1]["length"]) if self.entries else 0

    def close(self):
        """Pad the data section and write the prefix and header; returns the file's size in bytes
        (the file is cut there: it may have held a longer container before)."""
        if self.entries:
            last = self.entries[-1]
            end = self.data_start + last["offset"] + last["length"]
        else:
            end = self.data_start
        self.f.seek(end)
        self.f.truncate()
        header = {"creator": f"bslz {__version__}", "metadata": self.metadata, "tensors": self.entries}
        if self.source_header is not None:
            header["source"] = {"format": "safetensors", "header": self.source_header.decode("utf-8")}
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > self.reserved:  # the bound is an over-estimate by construction
            raise RuntimeError(f"header of {len(text)} bytes exceeds its reserved {self.reserved}")
        self.f.seek(0)
        self.f.write(PREFIX.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, 0, self.reserved))
        self.f.write(text + b" " * (self.reserved - len(text)))
        self.f.write(bytes(self.data_start - PREFIX.size - self.reserved))
        return end


_STREAM_FIELDS = ("mode", "chunk_size", "block_size", "num_orders")
# Fields each kind of entry may add to the common ones, for sizing the header.
_CODING_FIELDS = {
    "raw": (),
    "float": ("chunk_size",),
    "int": _STREAM_FIELDS,
    "dq": _STREAM_FIELDS + ("step", "reconstruction", "dq_block", "gg"),
    "uniform": _STREAM_FIELDS + ("step", "dead_zone", "reconstruction", "gg", "levels"),
}
_CODING_FIELDS["quantized"] = tuple(dict.fromkeys(_CODING_FIELDS["dq"] + _CODING_FIELDS["uniform"]))


def header_bound(tensors, metadata, source_header, max_payload_bytes=2**64 - 1):
    """Bytes the header can take at most: each entry sized with the widest values its kind may
    hold. `tensors`: (name, dtype, shape) or (name, dtype, shape, kind), kind one of
    _CODING_FIELDS (default: every field). Offsets and lengths are at most `max_payload_bytes`."""
    big, real = 2**64 - 1, -1.2345678901234567e-300
    widest = {
        "offset": max_payload_bytes, "length": max_payload_bytes, "crc32": 2**32 - 1, "decoded_crc32": 2**32 - 1,
        "coding": "quantized", "mode": "zero_run", "chunk_size": 2**30, "block_size": big, "num_orders": big,
        "step": real, "dead_zone": real, "reconstruction": "midpoint", "gg": [real, real], "levels": 2**16,
        "dq_block": 2**24,
    }  # fmt: skip
    every = tuple(dict.fromkeys(k for fields in _CODING_FIELDS.values() for k in fields))
    common = ("offset", "length", "crc32", "decoded_crc32", "coding")
    entries = []
    for name, dtype, shape, *kind in tensors:
        keys = common + (_CODING_FIELDS[kind[0]] if kind else every)
        numel = bounded_numel(shape)
        entry = {k: widest[k] for k in keys}
        for k in ("block_size", "num_orders"):  # both at most the element count, or a chunk
            if k in entry:
                entry[k] = max(numel, 2**30)
        room = piece_room(dtype, shape)
        if room:
            entry.update(piece_bytes=big, piece_crc32=[2**32 - 1] * room)
        entries.append(dict(entry, name=name, dtype=dtype, shape=list(shape)))
    header = {"creator": f"bslz {__version__}", "metadata": metadata, "tensors": entries}
    if source_header is not None:
        header["source"] = {"format": "safetensors", "header": source_header.decode("utf-8")}
    return len(json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")) + 16
