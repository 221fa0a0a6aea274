"""Bit I/O on uint64 words, most significant bit first: the backend every bit coder shares.

A writer is three values threaded through calls, `(w, acc, filled)`: the next word index, the
word being filled from its top bit, and how many of its bits are used (0..63). A reader peeks 64
bits at any bit position of a word array padded with `READ_PADDING_WORDS` zero words.
"""

import numpy as np

from bslz.codec._jit import njit, njit_inline
from bslz.errors import FormatError

U64 = np.uint64
U32 = np.uint32
READ_PADDING_WORDS = 3


@njit_inline
def bfloat16_bits(float32_bits):
    """The bfloat16 bit pattern nearest (ties to even) the float32 one: its upper half, rounded
    (finite values and infinities; NaNs with the top payload bits set would wrap)."""
    b = U32(float32_bits)
    return U32((b + U32(0x7FFF) + ((b >> U32(16)) & U32(1))) >> U32(16))


@njit_inline
def put_bits(words, w, acc, filled, value, nbits):
    """Append the low `nbits` (1..64) of `value` (which must be < 2**nbits) to the writer."""
    room = U64(64) - filled
    if nbits < room:
        acc |= value << (room - nbits)
        filled += nbits
    else:
        spill = nbits - room  # 0..63 bits that do not fit in this word
        acc |= value >> spill
        words[w] = acc
        w += 1
        acc = (value << (U64(63) - spill)) << U64(1)  # two shifts: a shift by 64 is undefined
        filled = spill
    return w, acc, filled


@njit_inline
def finish_bits(words, w, acc, filled, w0):
    """Write the partly filled last word, if any, of a writer started at word w0.

    Returns (the word after the last one used, the number of bits written since w0).
    """
    nbits = U64(w - w0) * U64(64) + filled
    if filled > U64(0):
        words[w] = acc
        w += 1
    return w, nbits


@njit_inline
def peek64(words, pos):
    """The 64 bits starting at bit `pos`; needs one readable word after the one holding `pos`."""
    wi = pos >> U64(6)
    off = pos & U64(63)
    # `>> 1 >> (63 - off)` is `>> (64 - off)` without the undefined shift by 64 when off == 0
    return (words[wi] << off) | ((words[wi + U64(1)] >> U64(1)) >> (U64(63) - off))


def words_to_bytes(words, nbits):
    """Big-endian bytes of the first `nbits` bits of a word array (the standard MSB-first stream)."""
    nbytes = (int(nbits) + 7) // 8
    return words.astype(">u8").view(np.uint8)[:nbytes]


@njit
def big_endian_bytes(words, nbytes):
    """`words_to_bytes` inside a kernel: the first `nbytes` bytes of the words, most significant first."""
    out = np.empty(nbytes, dtype=np.uint8)
    for i in range(nbytes):
        out[i] = (words[i >> 3] >> U64(56 - 8 * (i & 7))) & U64(0xFF)
    return out


def bytes_to_words(buf, extra_words=READ_PADDING_WORDS):
    """Native uint64 words holding `buf` big-endian, zero-padded so any peek inside stays in bounds."""
    data = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
    if data.dtype != np.uint8 or data.ndim != 1:
        data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    nwords = (data.size + 7) // 8 + extra_words
    padded = np.zeros(nwords * 8, dtype=np.uint8)
    padded[: data.size] = data
    return padded.view(">u8").astype(np.uint64)


@njit
def big_endian_words(data, nbytes):
    """`bytes_to_words` of data[:nbytes] inside a kernel (uint8 `data`), with the same padding."""
    words = np.zeros((nbytes + 7) // 8 + READ_PADDING_WORDS, dtype=np.uint64)
    for i in range(nbytes):
        words[i >> 3] |= U64(data[i]) << U64(56 - 8 * (i & 7))
    return words


def as_uint8(buf):
    """A bytes-like object or array as a 1-D uint8 array (no copy when it is one already)."""
    if isinstance(buf, np.ndarray):
        return np.ascontiguousarray(buf).view(np.uint8).reshape(-1)
    return np.frombuffer(buf, dtype=np.uint8)


def check_zero_padding(data, nbits, what):
    """Raise FormatError unless the bits after the first `nbits` of `data`'s last used byte are zero."""
    if not padding_is_zero(data, nbits):
        raise FormatError(f"{what}: non-zero padding bits")


@njit_inline
def padding_is_zero(data, nbits):
    """Whether the bits after the first `nbits` of uint8 `data`'s last used byte are zero."""
    spare = (8 - np.int64(nbits) % 8) % 8
    return spare == 0 or (np.int64(data[(np.int64(nbits) + 7) // 8 - 1]) & ((np.int64(1) << spare) - 1)) == 0
