"""rANS with escapes: one chunk of a "rans_escape" symbol stream (FORMAT.md), for symbols of any size.

Symbols below ESCAPE are rANS-coded as they are (`bslz.codec.rans`, whose alphabet stops at 4096);
every symbol at or above it is coded as ESCAPE, and its excess (symbol - ESCAPE) follows the rANS
stream as an order-k exp-Golomb codeword, in order. A chunk:

    u32 little-endian n: the rANS stream's byte length | the rANS stream |
    the EGk codewords of the excesses, MSB first, zero-padded to a byte

Without it a tensor whose largest quantization index passed rANS's alphabet had every symbol
exp-Golomb coded: on MiniLM f32 at 7.978 bits a parameter, 4 of its 39 quantized tensors, each for
one or two indices past 4095, at 0.33-0.41 bits a parameter (4-5 %) more than with the escapes.
"""

import numpy as np

from bslz.codec import expgolomb
from bslz.codec._bits import check_zero_padding
from bslz.codec.rans import MAX_ALPHABET, decode_rans, encode_rans
from bslz.errors import FormatError, TruncatedError

ESCAPE = MAX_ALPHABET - 1
LENGTH_BYTES = 4
MAX_SYMBOL = 1 << 62  # what a writer codes (`expgolomb.as_symbols`)


def clipped(symbols):
    """The symbols as the rANS stream codes them: those from ESCAPE up as ESCAPE (uint16)."""
    return np.minimum(symbols, ESCAPE).astype(np.uint16)


def excesses(symbols):
    """symbol - ESCAPE for every symbol the rANS stream codes as ESCAPE, in order (uint64)."""
    big = symbols[symbols >= ESCAPE]
    return big.astype(np.uint64) - np.uint64(ESCAPE)


def encode_escaped(symbols, k):
    """One chunk (bytes) of `symbols` (1-D unsigned, any size up to 2**62), escapes coded with order k."""
    head = encode_rans(clipped(symbols))
    tail, nbits = expgolomb.encode(excesses(symbols), k)
    return b"".join((len(head).to_bytes(LENGTH_BYTES, "little"), head, memoryview(tail[: (nbits + 7) // 8])))


def decode_escaped(buf, count, k, out):
    """Decode one chunk of `count` symbols into `out` (uint16, uint32 or uint64, `count` long).

    Raises TruncatedError if `buf` ends early and FormatError on anything else a writer cannot have
    made: bytes left over, non-zero padding bits, an escaped symbol `out` cannot hold."""
    data = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf.view(np.uint8)
    if data.size < LENGTH_BYTES:
        raise TruncatedError(f"rans_escape chunk of {data.size} bytes has no room for its length")
    n = int.from_bytes(data[:LENGTH_BYTES].tobytes(), "little")
    if n > data.size - LENGTH_BYTES:
        raise TruncatedError(f"rans_escape chunk claims a {n}-byte rANS stream in {data.size - LENGTH_BYTES} bytes")
    symbols = decode_rans(data[LENGTH_BYTES : LENGTH_BYTES + n], count)  # uint8 when it holds no escape
    out[:] = symbols
    tail = data[LENGTH_BYTES + n :]
    where = np.flatnonzero(symbols == ESCAPE) if symbols.dtype != np.uint8 else np.zeros(0, np.int64)
    if where.size == 0:
        if tail.size:
            raise FormatError(f"{tail.size} bytes after a rans_escape chunk without escapes")
        return out
    values = expgolomb.decode(tail, where.size, k)
    if int(values.max()) > min(int(np.iinfo(out.dtype).max), MAX_SYMBOL) - ESCAPE:
        raise FormatError(f"rans_escape chunk: an escaped symbol is larger than its output type {out.dtype}")
    nbits = expgolomb.code_length(values, k)
    if (nbits + 7) // 8 != tail.size:
        raise FormatError(f"rans_escape chunk: {tail.size} bytes of escapes, {nbits} bits used")
    check_zero_padding(tail, nbits, "rans_escape chunk")
    out[where] = values + np.uint64(ESCAPE)
    return out
