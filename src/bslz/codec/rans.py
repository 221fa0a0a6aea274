"""Static rANS table coder: near order-0-entropy coding of peaked streams (float exponent bytes).

Exp-Golomb only suits geometric-looking histograms; this coder spends a small frequency table per
stream instead and lands within a fraction of a percent of the order-0 entropy on 128K-symbol
chunks. Stream layout (see `_rans_table` for the header bits):

    header (bytes, MSB-first bits, zero-padded) | payload: little-endian uint32 words

The payload holds the final rANS states (two words each, for min(count, 4) states) and then the
renormalisation words. The symbol count is not stored: the caller keeps it. An empty stream is
zero bytes; a stream of one repeated symbol is a header alone (2-3 bytes).
"""

import dataclasses
import operator

import numpy as np

from bslz.codec import _rans_kernels as K
from bslz.codec import _rans_table as T
from bslz.codec._bits import as_uint8, big_endian_words, padding_is_zero, words_to_bytes
from bslz.codec._jit import njit
from bslz.errors import FormatError, InvalidArgumentError, TruncatedError

MAX_ALPHABET = K.MAX_ALPHABET
SCALE_BITS = K.SCALE_BITS
HEADER_PREFIX_BYTES = 512  # a typical header fits: parse it without converting the whole buffer
# No valid payload codes more symbols a word: each costs >= 7.7e-5 bits (max freq SCALE - 1,
# state >= 2**31), so count <= 32 / 7.7e-5 < 2**19 per word. Bounds allocation on hostile input.
MAX_SYMBOLS_PER_WORD = 1 << 19
STATUS_PADDING = -1  # `parse_header`'s, besides the kernels': non-zero bits after the header's last


def check_symbols(symbols):
    """`symbols` as a contiguous native-order 1-D uint8/16/32 array (what the table coders take)."""
    arr = np.asarray(symbols)
    if arr.ndim != 1 or arr.dtype.kind != "u" or arr.dtype.itemsize > 4:
        raise InvalidArgumentError(f"symbols must be a 1-D uint8/16/32 array, got {arr.ndim}-D {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))


def quantize_frequencies(hist, scale=K.SCALE):
    """Integer frequencies summing to `scale`, >= 1 exactly where `hist` > 0, that minimise the
    coded size sum(hist * log2(scale / freq)) in bits. Returns uint32, same length as `hist`.

    The cost is separable and convex in each frequency, so a table where no single +1/-1 exchange
    helps is optimal: round proportionally, then move units greedily until no move pays.
    """
    hist = np.asarray(hist)
    present = np.count_nonzero(hist)
    if present > scale:
        raise InvalidArgumentError(f"{present} distinct symbols do not fit a scale of {scale}")
    freqs = np.zeros(hist.size, dtype=np.uint32)
    T.quantize_counts(hist, scale, freqs)
    return freqs


def histogram(symbols):
    """Counts of each symbol of a 1-D uint8/16/32 array, as uint64 of size MAX_ALPHABET."""
    arr = check_symbols(symbols)
    hist = np.zeros(MAX_ALPHABET, dtype=np.uint64)
    if T.histogram(arr, hist) != K.STATUS_OK:
        raise InvalidArgumentError(f"symbols must be < {MAX_ALPHABET}")
    return hist


@dataclasses.dataclass(frozen=True)
class RansTable:
    """What a stream of symbols with a given histogram is coded with: the header bytes, and for
    more than one distinct symbol the quantized frequencies."""

    header: bytes
    freqs: np.ndarray | None  # uint32 of max_symbol + 1, or None: a single-symbol stream
    ideal_bits: float  # sum over the symbols of log2(SCALE / freq): what the states must carry

    def min_bytes(self):
        """A lower bound on the coded size: the states end up holding at least `ideal_bits` (each
        step multiplies a state by SCALE / freq, less a rounding below 2**-17 of it, and the four
        states start at 2**31 and are written out in full)."""
        return len(self.header) + (self.ideal_bits / 8 if self.freqs is not None else 0)


def rans_table(hist):
    """The RansTable for symbols with histogram `hist` (counts, index = symbol, not all zero)."""
    hist = np.asarray(hist)
    present = np.flatnonzero(hist)
    max_symbol = int(present[-1])
    if present.size == 1:
        words = np.zeros(2, dtype=np.uint64)
        nbits = T.write_header(hist, max_symbol, False, 0, words)
        return RansTable(words_to_bytes(words, nbits).tobytes(), None, 0.0)
    freqs, ideal, words, nbits = T.multi_symbol_table(hist, max_symbol)
    return RansTable(words_to_bytes(words, nbits).tobytes(), freqs, float(ideal))


def encode_rans(symbols, table=None):
    """Code a 1-D uint8/16/32 array of symbols < 4096 into bytes (count not included).

    `table`: the `rans_table` of the symbols' histogram, if the caller already has it."""
    arr = check_symbols(symbols)
    if arr.size == 0:
        return b""
    if table is None:
        table = rans_table(histogram(arr))
    freqs = table.freqs
    if freqs is None:
        return table.header
    words = K.encode_with_table(arr, freqs)
    # one copy: the words are little-endian already on such machines (no astype copy), joined once
    return b"".join((table.header, memoryview(words.astype("<u4", copy=False))))


def rans_size_bits(symbols):
    """Exact size in bits of `encode_rans(symbols)` (a multiple of 8)."""
    return 8 * len(encode_rans(symbols))


def order0_entropy_bits(symbols):
    """sum over the histogram of -c * log2(c / n), in bits: the order-0 bound for `symbols`."""
    arr = np.asarray(symbols).reshape(-1)
    if arr.size == 0:
        return 0.0
    c = np.bincount(arr)
    c = c[c > 0].astype(np.float64)
    return float(-(c * np.log2(c / arr.size)).sum())


def _check_out(out, count, shift):
    kinds = (np.uint8, np.uint16) if shift == 0 else (np.uint8, np.uint16, np.uint32, np.uint64)
    if out.ndim != 1 or out.dtype not in kinds or out.size != count:
        names = "/".join(np.dtype(k).name for k in kinds)
        raise InvalidArgumentError(f"out must be a 1-D {names} array of {count} elements")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise InvalidArgumentError("out must be contiguous and writeable")


_STATUS_MESSAGES = {
    K.STATUS_BAD_TABLE: "invalid frequency table",
    K.STATUS_BAD_STATE: "rANS state out of range or not back at its initial value",
    K.STATUS_TRAILING: "unused words after the last symbol",
}


def _raise_for(status, what):
    if status == K.STATUS_TRUNCATED:
        raise TruncatedError(f"rANS {what} ends early")
    raise FormatError(f"rANS {what}: {_STATUS_MESSAGES.get(status, f'status {status}')}")


def _read_header(data):
    """(max_symbol, multi, header bytes, frequencies) of the stream in `data`."""
    freqs = np.zeros(MAX_ALPHABET, dtype=np.uint32)
    status, max_symbol, multi, hbytes = parse_header(data, freqs)
    if status == STATUS_PADDING:
        raise FormatError("rANS header: non-zero padding bits")
    if status != K.STATUS_OK:
        _raise_for(status, "header")
    return int(max_symbol), bool(multi), int(hbytes), freqs[: int(max_symbol) + 1]


@njit
def parse_header(data, freqs):
    """(status, max_symbol, multi, header bytes) of the stream in `data` (uint8), its frequencies
    written into `freqs` (MAX_ALPHABET, zeroed), padding checked: in one kernel call, where numpy
    steps around the header kernel took 6 us for a short header and 30 for one of 1234 bytes (4-5
    and 17 now; `benchmarks/bench_gil_waits.py`, against a worktree of b2804be)."""
    n = min(data.size, HEADER_PREFIX_BYTES)  # a typical header: parsed without the whole buffer
    status, max_symbol, multi, nbits = T.read_header(big_endian_words(data, n), 8 * n, freqs)
    while status == K.STATUS_TRUNCATED and n < data.size:  # a longer one: 16x the bytes, up to all
        n = min(data.size, 16 * n)
        freqs[:] = 0
        status, max_symbol, multi, nbits = T.read_header(big_endian_words(data, n), 8 * n, freqs)
    if status != K.STATUS_OK:
        return status, np.int64(0), False, np.int64(0)
    if not padding_is_zero(data, np.int64(nbits)):
        return STATUS_PADDING, np.int64(0), False, np.int64(0)
    return K.STATUS_OK, np.int64(max_symbol), multi, (np.int64(nbits) + 7) // 8


def decode_rans(buf, count, out=None, *, shift=0, limit=None):
    """Decode `count` symbols from `buf` (bytes-like or uint8 array) made by `encode_rans`.

    Returns `out` if given (1-D uint8/uint16 of size `count`), else a new array: uint16 when the
    stream's alphabet exceeds 256 symbols, uint8 otherwise. With `shift`, out (given, of any
    unsigned dtype) receives each symbol shifted left by that many bits. Raises TruncatedError if
    `buf` is too short, FormatError on any inconsistency, including unused trailing bytes, and
    where the stream's table gives a symbol above `limit` a non-zero frequency (or, shifted, one
    that does not fit out).
    """
    data = as_uint8(buf)
    count = operator.index(count)
    shift = operator.index(shift)
    if count < 0:
        raise InvalidArgumentError(f"count must be >= 0, got {count}")
    if shift and out is None:
        raise InvalidArgumentError("decoding with a shift needs out")
    if out is not None:
        _check_out(out, count, shift)
    if shift:
        limit = min(limit if limit is not None else MAX_ALPHABET, (1 << (8 * out.itemsize - shift)) - 1)
    if count == 0:
        if data.size:
            raise FormatError(f"{data.size} bytes where an empty rANS stream has none")
        return out if out is not None else np.empty(0, dtype=np.uint8)
    if data.size == 0:
        raise TruncatedError(f"empty buffer for {count} rANS symbols")
    max_symbol, multi, hbytes, freqs = _read_header(data)
    nsym = max_symbol + 1
    if limit is not None and max_symbol > limit and (not multi or np.any(freqs[limit + 1 :])):
        raise FormatError(f"rANS stream codes symbols up to {max_symbol}, above {limit}")
    if out is None:
        out = np.empty(count, dtype=np.uint16 if nsym > 256 else np.uint8)
    elif nsym > 256 and out.dtype == np.uint8:
        raise FormatError(f"stream holds symbols up to {max_symbol}, out is uint8")
    if not multi:
        if data.size != hbytes:
            raise FormatError("rANS stream: bytes after a single-symbol header")
        out[:] = max_symbol << shift
        return out
    decode_payload(K.decode_states, data[hbytes:], freqs, out, np.uint64(shift))
    return out


def decode_payload(decoder, payload, freqs, out, context):
    """Run a `_rans_kernels.make_state_decoder` kernel over the payload (the bytes after the header
    of a stream of several symbols, whose frequencies are `freqs`) into `out`; raises as
    `decode_rans` does."""
    nwords = payload.size // 4
    if out.size > nwords * MAX_SYMBOLS_PER_WORD:
        raise TruncatedError(f"{payload.size} payload bytes cannot hold {out.size} rANS symbols")
    words = payload[: 4 * nwords].view("<u4").astype(np.uint32)  # aligned, native copy
    nsym = freqs.size
    starts = np.zeros(nsym, dtype=np.uint32)
    np.cumsum(freqs[:-1], out=starts[1:])
    slot_sym = np.empty(K.SCALE, dtype=np.uint16 if nsym > 256 else np.uint8)
    K.build_slot_table(freqs, starts, nsym, slot_sym)
    status = decoder(words, slot_sym, freqs, starts, out, context)
    if status != K.STATUS_OK:
        _raise_for(status, "payload")
    if payload.size % 4:
        raise FormatError(f"rANS payload: {payload.size % 4} bytes after the last word")


def read_header(buf):
    """(max_symbol, frequencies or None for a stream of one symbol, header bytes) of a stream made
    by `encode_rans`; raises as `decode_rans` does on a bad header."""
    data = as_uint8(buf)
    if data.size == 0:
        raise TruncatedError("empty buffer for rANS symbols")
    max_symbol, multi, hbytes, freqs = _read_header(data)
    return max_symbol, (freqs if multi else None), hbytes
