"""Canonical Huffman coder with codewords of at most 12 bits: the fast decoder for float heads.

rANS lands nearer the order-0 entropy (about 1 % on MiniLM's bf16 heads), but decodes a symbol
through a multiply and two dependent loads; a Huffman table lookup gives ~1.9 symbols of those
heads at once. Stream layout (format 1.2, FORMAT.md):

    header (bits MSB first, zero-padded to a byte): EG0(max_symbol), then a 4-bit code length per
        symbol 0..max_symbol, a zero length followed by EG0(r): r more zero lengths
    3 x u32 little-endian: the word counts of streams 0, 1 and 2 (stream 3 takes the rest)
    the four streams' little-endian u32 words; stream j codes symbols [j q, (j + 1) q), q = ceil(count / 4)

Bits are read least significant first; a codeword enters most significant bit first. The code is
the canonical one of its lengths (shortest first, then by symbol), which MUST be complete (Kraft
sum 1) and have at least two symbols. The count of symbols is not stored: the caller keeps it.
"""

import dataclasses
import operator

import numpy as np

from bslz.codec import _huffman_kernels as K
from bslz.codec import _huffman_segment as S
from bslz.codec._bits import as_uint8
from bslz.codec.rans import check_symbols
from bslz.errors import FormatError, InvalidArgumentError, TruncatedError

MAX_LENGTH = K.MAX_LENGTH
MAX_ALPHABET = K.MAX_ALPHABET
NUM_STREAMS = K.NUM_STREAMS
STREAM_TABLE_BYTES = S.STREAM_TABLE_BYTES


@dataclasses.dataclass(frozen=True)
class HuffmanCode:
    """The code for symbols of a given histogram: its header and code lengths (uint8, one a symbol
    up to the largest present), and `bits`, what the symbols' codewords cost in all."""

    header: bytes
    lengths: np.ndarray
    bits: int

    def min_bytes(self):
        """A lower bound on the coded size: the codewords in whole 32-bit words."""
        return S.min_segment_bytes(len(self.header), self.bits)

    def max_bytes(self):
        """An upper bound on the coded size: each stream pads at most 31 bits to its last word."""
        return len(self.header) + STREAM_TABLE_BYTES + 4 * -(-(self.bits + 31 * NUM_STREAMS) // 32)


def huffman_code(hist):
    """The HuffmanCode of symbols with histogram `hist` (counts, index = symbol), or None when no
    code of MAX_LENGTH-bit codewords applies: fewer than two distinct symbols, or a symbol >= 4096."""
    hist = np.asarray(hist)
    present = np.flatnonzero(hist)
    if present.size < 2 or present[-1] >= MAX_ALPHABET:
        return None
    counts = np.ascontiguousarray(hist[: int(present[-1]) + 1], dtype=np.uint64)
    lengths, header, bits = S.code_for(counts)
    return HuffmanCode(header.tobytes(), lengths, int(bits))


def encode_huffman(symbols, code=None):
    """Code a 1-D uint8/16/32 array of symbols < 4096, of at least two distinct values, into bytes
    (count not included). `code`: the `huffman_code` of the symbols' histogram, if the caller has it."""
    arr = check_symbols(symbols)
    if code is None:
        code = huffman_code(np.bincount(arr) if arr.size else np.zeros(0, dtype=np.int64))
        if code is None:
            raise InvalidArgumentError("Huffman coding needs at least two distinct symbols, all below 4096")
    if arr.size and int(arr.max()) >= code.lengths.size:
        raise InvalidArgumentError("the code has no codeword for some of the symbols")
    coded = S.encode_segment(arr, code.lengths, np.frombuffer(code.header, dtype=np.uint8))
    if not coded.size:  # which of the two it was
        if K.reversed_codes(code.lengths, np.zeros(code.lengths.size, dtype=np.uint64)) != K.STATUS_OK:
            raise InvalidArgumentError("code lengths do not make a complete prefix code")
        raise InvalidArgumentError("the code has no codeword for some of the symbols")
    return coded.tobytes()


def decode_huffman(buf, count, out=None, *, shift=0, limit=None):
    """Decode `count` symbols from `buf` (bytes-like or uint8 array) made by `encode_huffman`.

    Returns `out` if given (1-D unsigned, `count` elements), else a new uint16 array. With `shift`,
    out receives each symbol shifted left by that many bits. Raises TruncatedError if `buf` is too
    short, FormatError on any inconsistency (code lengths that make no complete code, unused bits
    or bytes, a symbol above `limit` or one that does not fit out once shifted).
    """
    data = as_uint8(buf)
    count = operator.index(count)
    shift = operator.index(shift)
    if count < 0 or shift < 0:
        raise InvalidArgumentError(f"count and shift must be >= 0, got {count} and {shift}")
    if out is not None:
        if out.ndim != 1 or out.dtype.kind != "u" or out.size != count or not out.flags.c_contiguous:
            raise InvalidArgumentError(f"out must be a contiguous 1-D unsigned array of {count} elements")
        if not out.flags.writeable:
            raise InvalidArgumentError("out must be writeable")
    if shift >= 8 * (out.itemsize if out is not None else 2):
        raise InvalidArgumentError(f"shift {shift} leaves no bits of an output element")
    if count > 8 * data.size:  # every codeword takes a bit: bounds the allocation on hostile input
        raise TruncatedError(f"{data.size} bytes cannot hold {count} Huffman symbols")
    if out is None:
        out = np.empty(count, dtype=np.uint16)
    if count == 0:
        if data.size:
            raise FormatError(f"{data.size} bytes where an empty Huffman stream has none")
        return out
    top = min((1 << (8 * out.itemsize - shift)) - 1, MAX_ALPHABET - 1)
    if limit is not None:
        top = min(top, limit)
    # the kernel writes uint16 words; wider outputs get the symbols through a uint16 buffer
    direct = out.dtype == np.uint16
    target = out if direct else np.empty(count, dtype=np.uint16)
    info = np.zeros(2, dtype=np.int64)
    status = S.decode_segment(data, count, target, shift if direct else 0, top, info)
    if status != S.SEGMENT_OK:
        raise _segment_error(status, info, top)
    if not direct:
        out[:] = target
        out <<= out.dtype.type(shift)
    return out


def _segment_error(status, info, top):
    """The exception for a SEGMENT_* status of `S.decode_segment`."""
    truncated = {
        S.SEGMENT_HEADER_TRUNCATED: "Huffman header ends early",
        S.SEGMENT_TABLE_TRUNCATED: "Huffman stream ends inside its stream table",
        S.SEGMENT_STREAMS_TRUNCATED: f"Huffman streams claim {info[0]} words, {info[1]} present",
        S.SEGMENT_STREAM_TRUNCATED: "Huffman stream ends early",
    }
    if status in truncated:
        return TruncatedError(truncated[status])
    return FormatError(
        {
            S.SEGMENT_BAD_LENGTHS: "Huffman header: invalid code lengths",
            S.SEGMENT_BAD_PADDING: "Huffman header: non-zero padding bits",
            S.SEGMENT_SYMBOL_ABOVE_TOP: f"Huffman stream codes symbols up to {info[0]}, above {top}",
            S.SEGMENT_INCOMPLETE_CODE: "Huffman header: code lengths do not make a complete prefix code",
            S.SEGMENT_PARTIAL_WORD: f"Huffman stream: {info[0]} bytes after the last word",
            S.SEGMENT_TRAILING: "Huffman stream: bits left over after its last symbol",
        }.get(status, f"Huffman stream: status {status}")
    )
