"""A symbol stream (`bslz.codec.streams`) as a tensor's payload and header fields: the stream's
`chunk_bits` (u64 LE, one a chunk), its orders (u8 each), zero bytes to an 8-byte boundary, then
the stream's bytes (exp-Golomb: big-endian words; rANS: its chunks, each padded to whole words).
The fields carry the mode, the chunk and block sizes and the number of orders.
"""

import numpy as np

from bslz.codec import streams
from bslz.codec.stream_plan import EncodedStream, StreamPlan
from bslz.errors import FormatError, TruncatedError


def pack_stream(encoded, prefix=b""):
    """(header fields, payload bytes) of an `EncodedStream`, after `prefix` (copied once, together)."""
    return _pack(encoded.plan, [memoryview(encoded.payload)], prefix)


def encode_and_pack(symbols, plan=None, prefix=b""):
    """`pack_stream(streams.encode_stream(symbols, plan), prefix)`, with each part of the stream
    copied once, into the payload (a stream's payload of its own was one more copy of it)."""
    return _pack(*streams.encode_stream_parts(symbols, plan), prefix)


def _pack(plan, parts, prefix):
    side = plan.chunk_bits.astype("<u8").tobytes() + plan.orders.astype(np.uint8).tobytes()
    side += bytes(-len(side) % 8)
    fields = {
        "mode": plan.mode,
        "chunk_size": plan.chunk_size,
        "block_size": plan.block_size,
        "num_orders": len(plan.orders),
    }
    return fields, b"".join((prefix, side, *parts))


def _stream_fields(fields):
    """(mode, chunk_size, block_size, num_orders) from the header fields, checked."""
    try:
        mode, chunk_size, block_size, num_orders = (
            fields[k] for k in ("mode", "chunk_size", "block_size", "num_orders")
        )
    except KeyError as exc:
        raise FormatError(f"stream field {exc} missing") from None
    for name, value in (("chunk_size", chunk_size), ("block_size", block_size), ("num_orders", num_orders)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 62:
            raise FormatError(f"stream field {name} must be a non-negative integer, got {value!r}")
    if not 1 <= chunk_size <= 1 << 30:
        raise FormatError(f"stream chunk_size {chunk_size} out of range")
    return mode, chunk_size, block_size, num_orders


def stream_head_bytes(fields, count):
    """Bytes a stream's payload of `count` symbols starts with before its chunks: chunk table,
    orders and padding (the fields checked)."""
    _, chunk_size, _, num_orders = _stream_fields(fields)
    side = 8 * -(-count // chunk_size) + num_orders
    return side + -side % 8


def unpack_stream(fields, payload, count):
    """The `EncodedStream` a payload holds, validated against the header fields."""
    mode, chunk_size, block_size, num_orders = _stream_fields(fields)
    nchunks = -(-count // chunk_size)
    side = stream_head_bytes(fields, count)
    if side > payload.size:
        raise TruncatedError(f"stream payload of {payload.size} bytes is shorter than its {side}-byte chunk table")
    chunk_bits = payload[: 8 * nchunks].view("<u8").astype(np.uint64)
    orders = payload[8 * nchunks : 8 * nchunks + num_orders].copy()
    plan = StreamPlan(mode, count, chunk_size, block_size, orders, chunk_bits)
    return EncodedStream(plan, payload[side:])
