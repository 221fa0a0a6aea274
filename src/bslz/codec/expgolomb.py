"""Order-k exp-Golomb codes: standard EGk codewords, most significant bit first.

The codeword of an unsigned n under order k is m zeros followed by n + 2**k written in m + k + 1
bits, where m = floor(log2(n / 2**k + 1)); for k = 0 these are the ue(v) codes of H.264.

    >>> buf, nbits = encode(np.array([0, 1, 2, 3], dtype=np.uint8), 0)
    >>> nbits, format(int.from_bytes(bytes(buf), "big"), "016b")  # 1 010 011 00100, then padding
    (12, '1010011001000000')
"""

import functools

import numpy as np

from bslz.codec import _expgolomb_decode as D
from bslz.codec import _expgolomb_kernels as K
from bslz.codec._bits import bytes_to_words, words_to_bytes
from bslz.codec._parallel import parallel_map, pieces_per_core
from bslz.errors import FormatError, InvalidArgumentError, TruncatedError

MAX_ORDER = 32
MAX_VALUE = 1 << 62
# Histograms are exact and cheap up to this alphabet; wider streams are costed symbol by symbol.
_HISTOGRAM_LIMIT = 1 << 16

__all__ = [
    "MAX_ORDER",
    "MAX_VALUE",
    "best_order",
    "code_length",
    "decode",
    "encode",
    "order_costs",
    "signed_to_unsigned",
    "unsigned_to_signed",
]


@functools.cache
def decode_tables():
    """The per-order multi-symbol lookup tables shared by every decoder (built once per process)."""
    return D.build_tables()


def as_symbols(values, name="values"):
    """Validate a 1-D array of unsigned symbols (any uint dtype) and return it contiguous."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidArgumentError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros(0, dtype=arr.dtype if arr.dtype.kind == "u" else np.uint8)
    if arr.dtype.kind != "u":
        if arr.dtype.kind == "i" and arr.min() >= 0:
            arr = arr.astype(np.dtype(f"u{arr.dtype.itemsize}"))
        else:
            raise InvalidArgumentError(
                f"{name} must hold unsigned integers, got {arr.dtype} (map signed values with signed_to_unsigned first)"
            )
    arr = np.ascontiguousarray(arr)
    if arr.dtype.itemsize == 8 and int(K.max_value(arr)) > MAX_VALUE:
        raise InvalidArgumentError(f"{name} must not exceed 2**62")
    return arr


def check_order(k):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= MAX_ORDER:
        raise InvalidArgumentError(f"order k must be an integer in 0..{MAX_ORDER}, got {k!r}")
    return int(k)


def encode(values, k):
    """Order-k codewords of `values`, back to back.

    Returns `(buf, nbits)`: `buf` a uint8 array of ceil(nbits / 8) bytes (the last one zero-padded),
    `nbits` the exact number of bits written.
    """
    words, nbits = K.encode_one_order(as_symbols(values), check_order(k))
    return words_to_bytes(words, nbits), int(nbits)


def decode(buf, count, k, bit_offset=0):
    """Read `count` order-k codewords from `buf` (bytes-like or uint8 array) at `bit_offset`.

    Returns a uint64 array. Raises `TruncatedError` if the buffer ends first and `FormatError` for a
    codeword whose value field is longer than 64 bits.
    """
    k = check_order(k)
    count = _check_count(count)
    data = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf.view(np.uint8)
    limit = data.size * 8
    if not isinstance(bit_offset, (int, np.integer)) or not 0 <= bit_offset <= limit:
        raise InvalidArgumentError(f"bit_offset must be in 0..{limit}, got {bit_offset!r}")
    if count > limit - bit_offset:  # every codeword has at least one bit
        raise TruncatedError(f"{count} codewords cannot fit in {limit - bit_offset} bits")
    out = np.empty(count, dtype=np.uint64)
    words = bytes_to_words(data)
    orders = np.array([k], dtype=np.uint8)
    status, _ = D.decode_range(
        words,
        np.uint64(bit_offset),
        np.uint64(limit),
        orders,
        max(count, 1),
        out,
        0,
        count,
        decode_tables(),
        ~np.uint64(0),
    )
    raise_for_status(status, "exp-Golomb stream")
    return out


def raise_for_status(status, what):
    """Turn a kernel status into the matching exception."""
    if status == D.STATUS_OK:
        return
    if status == D.STATUS_TRUNCATED:
        raise TruncatedError(f"{what} ends before the announced symbols")
    if status == D.STATUS_CODEWORD_TOO_LONG:
        raise FormatError(f"{what} holds an exp-Golomb codeword longer than 64 value bits")
    if status == D.STATUS_TOO_LARGE:
        raise FormatError(f"{what} holds a symbol larger than its output type")
    raise FormatError(f"{what} is corrupt (status {int(status)})")


def _check_count(count):
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise InvalidArgumentError(f"count must be a non-negative integer, got {count!r}")
    return int(count)


def code_length(values, k):
    """Exact number of bits `encode(values, k)` writes."""
    arr = as_symbols(values)
    k = check_order(k)
    return int(K.stream_length(arr, 0, arr.size, np.array([k], dtype=np.uint8), max(arr.size, 1)))


def order_costs(values=None, *, histogram=None, max_order=None):
    """Exact bits for every order k in 0..max_order (default: up to the bit length of the largest symbol).

    Orders above the bit length of the largest symbol only add a bit per symbol each, so the default
    range always contains the best order.
    """
    if (values is None) == (histogram is None):
        raise InvalidArgumentError("give exactly one of values or histogram")
    if histogram is not None:
        hist = np.asarray(histogram)
        if hist.ndim != 1 or hist.dtype.kind not in "ui" or (hist.size and hist.min() < 0):
            raise InvalidArgumentError("histogram must be a 1-D array of non-negative counts")
        hist = hist.astype(np.uint64)
        nz = np.flatnonzero(hist)
        top = int(nz[-1]) if nz.size else 0
        hist = hist[: top + 1]
    else:
        arr = as_symbols(values)
        top = int(K.max_value(arr)) if arr.size else 0
    if max_order is None:
        max_order = min(MAX_ORDER, top.bit_length())
    max_order = check_order(max_order)
    if histogram is not None:
        return K.order_costs_from_histogram(hist, max_order)
    if top < _HISTOGRAM_LIMIT:
        return K.order_costs_from_histogram(K.histogram(arr, top + 1), max_order)
    return K.order_costs_direct(arr, max_order)


def best_order(values=None, *, histogram=None):
    """The order k with the fewest bits (the smallest such k on a tie), found exactly."""
    return int(np.argmin(order_costs(values, histogram=histogram)))


def signed_to_unsigned(values, narrow=False, in_place=False):
    """The se(v) mapping of H.264: v > 0 -> 2v - 1, v <= 0 -> -2v.

    Output is the unsigned dtype twice as wide (uint64 for int32 and int64 input); with `narrow`,
    int32 input whose mapped values fit gives uint32 (quantizer indices: half the memory), and
    with `in_place` too it is written over the input (a contiguous int32 array) and returned as a
    uint32 view of it: no second array of a tensor's size.
    """
    arr = np.asarray(values)
    if arr.dtype.kind == "u":
        arr = arr.astype(np.int64)
    if arr.dtype.kind != "i":
        raise InvalidArgumentError(f"signed_to_unsigned needs integers, got {arr.dtype}")
    out_dtype = {1: np.uint16, 2: np.uint32}.get(arr.dtype.itemsize, np.uint64)
    if narrow and arr.dtype.itemsize == 4 and (arr.size == 0 or int(arr.min()) > -(2**31)):
        out_dtype = np.uint32  # 2v - 1 <= 2**32 - 3 and -2v <= 2**32 - 2
    if arr.dtype.itemsize == 8 and arr.size and (arr.max() > MAX_VALUE // 2 or arr.min() < -(MAX_VALUE // 2)):
        raise InvalidArgumentError("signed values must lie within ±2**61")
    if in_place and out_dtype == np.uint32 and arr.dtype == np.int32 and arr.flags.c_contiguous and arr.flags.writeable:
        out = arr.view(np.uint32)  # each value is read before its place is written
    else:
        out = np.empty(arr.shape, dtype=out_dtype)
    flat_in, flat_out = np.ascontiguousarray(arr).reshape(-1), out.reshape(-1)
    parallel_map(lambda b: K.zigzag(flat_in[b[0] : b[1]], flat_out[b[0] : b[1]]), pieces_per_core(flat_in.size))
    return out


def unsigned_to_signed(values, dtype=np.int64):
    """Inverse of `signed_to_unsigned`: odd u -> (u + 1) / 2, even u -> -u / 2, as `dtype`.

    A value whose signed counterpart does not fit `dtype` raises FormatError (never wraps).
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "ui":
        raise InvalidArgumentError(f"unsigned_to_signed needs integers, got {arr.dtype}")
    out = np.empty(arr.shape, dtype=dtype)
    info = np.iinfo(out.dtype)
    if not K.unzigzag(np.ascontiguousarray(arr).reshape(-1), out.reshape(-1), info.min, info.max):
        raise FormatError(f"a value does not fit {out.dtype} once mapped back to signed")
    return out
