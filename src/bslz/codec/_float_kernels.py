"""Numba kernels that split float bit patterns into coded pieces and merge them back.

A float word is sign | exponent (E bits) | mantissa (M bits). The head piece is the exponent with
the top j mantissa bits (coded jointly they cost ~0.04 bits less than apart: the mantissa is not
uniform inside a binade). The tail, sign << (M - j) | the low M - j mantissa bits, is cut into a
top piece of (1 + M - j) % 8 bits (8 if that is 0) and whole bytes, most significant first.
"""

import math

import numpy as np

from bslz.codec import _six_bit_tails as SIX
from bslz.codec._bits import finish_bits, peek64, put_bits
from bslz.codec._expgolomb_kernels import order_costs_from_histogram
from bslz.codec._jit import bit_length, njit, njit_inline
from bslz.codec._six_bit_tails import merge_groups as merge_six_bit_tails

U64 = np.uint64
U32 = np.uint32


@njit
def head_piece(words, lo, hi, low_bits, mask, out):
    """out[i] = exponent and top mantissa bits of words[lo + i]: (word >> low_bits) & mask."""
    chunk = words[lo:hi]  # indexed from 0 (known >= 0): the loop vectorizes
    for i in range(chunk.size):
        out[i] = (U64(chunk[i]) >> low_bits) & mask


@njit
def tail_piece(words, lo, hi, sign_pos, low_bits, shift, mask, out):
    """Piece at `shift` of the tail value sign << low_bits | the low `low_bits` mantissa bits."""
    chunk = words[lo:hi]
    for i in range(chunk.size):
        out[i] = _tail_value(U64(chunk[i]), sign_pos, low_bits, shift, mask)


@njit_inline
def _tail_value(w, sign_pos, low_bits, shift, mask):
    """`tail_piece`'s value for the word w."""
    tail = ((w >> sign_pos) << low_bits) | (w & ((U64(1) << low_bits) - U64(1)))
    return (tail >> shift) & mask


@njit
def pack_six_bit_tail(words, lo, hi, sign_pos, low_bits, shift, out):
    """`pack_bytes` of the 6-bit tail piece at `shift` of words[lo:hi] straight from the words, four
    values to three bytes, into `out` ((6 (hi - lo) + 7) // 8 bytes, any content): no piece array
    (`tail_piece`) and no zeroing first (a MiniLM bf16 embedding chunk: 67 us against 98; scratch)."""
    chunk = words[lo:hi]
    mask = U64(63)
    groups = chunk.size // 4
    for g in range(groups):
        v = U64(0)
        for j in range(4):  # unrolled by LLVM
            v = (v << U64(6)) | _tail_value(U64(chunk[4 * g + j]), sign_pos, low_bits, shift, mask)
        out[3 * g] = v >> U64(16)
        out[3 * g + 1] = (v >> U64(8)) & U64(0xFF)
        out[3 * g + 2] = v & U64(0xFF)
    rest = chunk.size - 4 * groups
    if rest:  # the last one to three values, zero-padded to whole bytes
        v = U64(0)
        for j in range(rest):
            v |= _tail_value(U64(chunk[4 * groups + j]), sign_pos, low_bits, shift, mask) << U64(18 - 6 * j)
        for b in range((6 * rest + 7) // 8):
            out[3 * groups + b] = (v >> U64(16 - 8 * b)) & U64(0xFF)


@njit
def merge_head(words, lo, hi, low_bits, piece):
    """OR the head piece back into words[lo:hi] (zeroed first, or holding other pieces)."""
    chunk = words[lo:hi]
    for i in range(chunk.size):
        chunk[i] |= U64(piece[i]) << low_bits


@njit_inline
def _tail_bits(tail, sign_pos, low_bits):
    """A word's bits from its tail value (sign << low_bits | low mantissa bits)."""
    sign_bit = U64(1) << low_bits
    return ((tail & sign_bit) << (sign_pos - low_bits)) | (tail & (sign_bit - U64(1)))


@njit
def merge_tail(words, lo, hi, sign_pos, low_bits, shift, piece):
    """OR a tail piece back into words[lo:hi], its sign bit moved back to the word's top."""
    chunk = words[lo:hi]
    for i in range(chunk.size):
        chunk[i] |= _tail_bits(U64(piece[i]) << shift, sign_pos, low_bits)


@njit
def merge_packed_tail(words, lo, hi, sign_pos, low_bits, shift, width, packed):
    """`merge_tail` of a raw piece straight from its packed bytes (`width` < 8 bits a value, MSB
    first), without unpacking it into an array. The common widths have loops of their own that
    vectorize: 6 (the bf16 and f32 tails: four values in three bytes) and 1 (the f16 and e5m2
    sign: eight values in a byte). Other widths read eight values (exactly `width` bytes) as one
    8-byte big-endian window, each value's bits in the word from a table of the 2**width values
    (2.2x faster than moving the sign bit). The last values go bit position by bit position. The
    six-bit pieces of bfloat16 and float32 go sixteen values at a time through vector code
    (`_six_bit_tails`; `bench_heads.py --chunk-only` has a whole chunk's decoding)."""
    chunk = words[lo:hi]
    n = chunk.size
    bfloat16 = chunk.itemsize == 2 and sign_pos == U64(15) and low_bits == U64(5) and shift == U64(0)
    float32 = chunk.itemsize == 4 and sign_pos == U64(31) and low_bits == U64(21) and shift == U64(16)
    if width == U64(6) and (bfloat16 or float32):
        # sixteen at a time in vector code, the last few (and the last 4 bytes) below; the views
        # are the words themselves (numba types every branch for every word size)
        spare = SIX.LOAD_BYTES - SIX.GROUP_BYTES  # the last step's load reads past its bytes
        groups = min(n // SIX.GROUP, (packed.size - spare) // SIX.GROUP_BYTES) if packed.size >= spare else 0
        if bfloat16:
            merge_six_bit_tails(chunk.view(np.uint16), packed, groups)
        else:
            merge_six_bit_tails(chunk.view(np.uint32), packed, groups)
        rest = _merge_six_bit_groups(
            chunk[SIX.GROUP * groups :], sign_pos, low_bits, shift, packed[SIX.GROUP_BYTES * groups :]
        )
        done = SIX.GROUP * groups + rest
    elif width == U64(6) and chunk.itemsize <= 4:  # sign_pos < 32: 32-bit arithmetic holds it
        done = _merge_six_bit_groups(chunk, sign_pos, low_bits, shift, packed)
    elif width == U64(1):
        done = _merge_one_bit_groups(chunk, sign_pos, low_bits, shift, packed)
    else:
        done = _merge_eight_value_groups(chunk, sign_pos, low_bits, shift, width, packed)
    mask = (U64(1) << width) - U64(1)
    for i in range(done, n):
        bit = U64(i) * width
        first = np.int64(bit >> U64(3))
        v = U64(packed[first]) << U64(8)
        if first + 1 < packed.size:
            v |= U64(packed[first + 1])
        chunk[i] |= _tail_bits(((v >> (U64(16) - (bit & U64(7)) - width)) & mask) << shift, sign_pos, low_bits)


@njit_inline
def _merge_six_bit_groups(chunk, sign_pos, low_bits, shift, packed):
    """Four values from each three bytes, moved in 32-bit arithmetic with no table, so that the loop
    vectorizes (a bf16 tail: 0.87 -> 0.56 ns a value). Returns the values merged."""
    sign_bit = U32(1) << U32(low_bits)
    up = U32(sign_pos - low_bits)
    sh = U32(shift)
    groups = min(chunk.size // 4, packed.size // 3)
    for g in range(groups):
        x = (U32(packed[3 * g]) << U32(16)) | (U32(packed[3 * g + 1]) << U32(8)) | U32(packed[3 * g + 2])
        for j in range(4):
            t = ((x >> U32(18 - 6 * j)) & U32(63)) << sh
            chunk[4 * g + j] |= ((t & sign_bit) << up) | (t & (sign_bit - U32(1)))
    return 4 * groups


@njit_inline
def _merge_one_bit_groups(chunk, sign_pos, low_bits, shift, packed):
    """Eight values from each byte (a lone sign bit: its place in the word is sign_pos when the
    piece holds the tail's top bit, else bit shift). Returns the values merged."""
    place = U64(sign_pos) if shift == low_bits else U64(shift)
    groups = min(chunk.size // 8, packed.size)
    for g in range(groups):
        byte = U64(packed[g])
        for j in range(8):
            chunk[8 * g + j] |= ((byte >> U64(7 - j)) & U64(1)) << place
    return 8 * groups


@njit_inline
def _merge_eight_value_groups(chunk, sign_pos, low_bits, shift, width, packed):
    """Eight values from each `width` bytes, through a table of their bits in the word, while a
    whole 8-byte window lies inside `packed`. Returns the values merged."""
    table = np.empty(np.int64(1) << np.int64(width), dtype=chunk.dtype)
    for v in range(table.size):
        table[v] = _tail_bits(U64(v) << shift, sign_pos, low_bits)
    mask = (U64(1) << width) - U64(1)
    w = np.int64(width)
    groups = min(chunk.size // 8, max(0, (packed.size - 8) // w + 1))
    for g in range(groups):
        window = packed[g * w : g * w + 8]  # slices indexed from 0: the fixed-count loops unroll
        v = U64(0)
        for b in range(8):
            v = (v << U64(8)) | U64(window[b])
        out = chunk[8 * g : 8 * g + 8]
        for j in range(8):
            out[j] |= table[(v >> (U64(64) - width * U64(j + 1))) & mask]
    return 8 * groups


@njit
def pack_bits(values, width, words):
    """Write each value in `width` bits (1..16), MSB first; returns the bit count."""
    w = 0
    acc = U64(0)
    filled = U64(0)
    for i in range(values.size):
        w, acc, filled = put_bits(words, w, acc, filled, U64(values[i]), U64(width))
    return finish_bits(words, w, acc, filled, 0)[1]


@njit_inline
def _group_word(group, width):
    """Eight values of `width` bits back to back from the top of a word."""
    v = U64(0)
    for j in range(8):
        v |= U64(group[j]) << (U64(64) - width * U64(j + 1))
    return v


@njit
def pack_bytes(values, width, out):
    """`pack_bits` for `width` < 8 straight into bytes: out holds (values.size * width + 7) // 8
    zeroed bytes. Eight values make exactly `width` bytes."""
    w = np.int64(width)
    groups = values.size // 8
    # while 8 bytes fit, each group stores its word whole: a fixed-count loop of byte stores, which
    # LLVM merges into one 8-byte store (0.93 -> 0.3 ns a value); the bytes past its `width` are
    # zeros that the next group's store overwrites
    whole = min(groups, max(0, (out.size - 8) // w + 1))
    for g in range(whole):
        v = _group_word(values[8 * g : 8 * g + 8], width)
        dest = out[g * w : g * w + 8]
        for b in range(8):
            dest[b] = (v >> U64(56 - 8 * b)) & U64(0xFF)
    for g in range(whole, groups):
        v = _group_word(values[8 * g : 8 * g + 8], width)
        dest = out[g * w : g * w + w]
        for b in range(w):
            dest[b] = (v >> U64(56 - 8 * b)) & U64(0xFF)
    for i in range(8 * groups, values.size):  # the last values: at most two bytes each
        bit = U64(i) * width
        first = np.int64(bit >> U64(3))
        v = U64(values[i]) << (U64(16) - (bit & U64(7)) - width)
        out[first] |= (v >> U64(8)) & U64(0xFF)
        if first + 1 < out.size:
            out[first + 1] |= v & U64(0xFF)


@njit
def unpack_bits(words, count, width, out):
    """Inverse of `pack_bits`; `words` padded for peeks (the caller checks the length)."""
    pos = U64(0)
    shift = U64(64) - U64(width)
    for i in range(count):
        out[i] = peek64(words, pos) >> shift
        pos += U64(width)


@njit
def zigzag_around(values, center, out):
    """out = se(v) mapping of (value - center): 0, 1, 2, ... for center, center + 1, center - 1, ..."""
    c = np.int64(center)
    for i in range(values.size):
        d = np.int64(values[i]) - c
        out[i] = U64(2 * d - 1) if d > 0 else U64(-2 * d)


@njit
def unzigzag_around(values, center, limit, out):
    """Inverse of `zigzag_around`; returns False if a value falls outside 0..limit."""
    c = np.int64(center)
    for i in range(values.size):
        u = U64(values[i])
        half = np.int64(u >> U64(1))
        d = half + 1 if (u & U64(1)) == U64(1) else -half
        v = c + d
        if v < 0 or v > limit:
            return False
        out[i] = v
    return True


@njit
def segment_costs(hist, width, max_order):
    """(center, k, exp-Golomb bits, order-0 entropy in bits, distinct values) of a piece from the histogram of its
    values (all below 2**width): center is the most frequent value (the first of equals), k the
    order up to `max_order` whose code of se(v - center) is shortest (the first of equals), over
    the orders up to the bit length of the largest mapped value (no larger one can be shorter).
    One kernel for what a dozen numpy calls on small arrays did (~40 us a piece)."""
    size = 1 << width
    center = 0
    n = 0.0
    for v in range(size):
        n += np.float64(hist[v])
        if hist[v] > hist[center]:
            center = v
    mapped = np.zeros(2 << width, dtype=np.uint64)
    top = 0
    entropy = 0.0
    distinct = 0
    for v in range(size):
        if hist[v] > 0:
            distinct += 1
            d = v - center
            u = 2 * d - 1 if d > 0 else -2 * d
            mapped[u] = hist[v]
            top = max(top, u)
            c = np.float64(hist[v])
            entropy -= c * math.log2(c / n)
    costs = order_costs_from_histogram(mapped[: top + 1], min(max_order, np.int64(bit_length(top))))
    k = 0
    for j in range(1, costs.size):
        if costs[j] < costs[k]:
            k = j
    return center, k, costs[k], entropy, distinct


# A tail piece whose sample (one value in RAW_SAMPLE_STRIDE) has an order-0 entropy this far above what
# an entropy coder must reach (ENTROPY_MIN_GAIN) is left raw without its whole histogram: no coder
# gets below a piece's entropy, and the sample's plug-in entropy is on average below the piece's.
# Its spread sets the margin: on pieces of 2**17 values with entropies near that limit (6- and
# 8-bit pieces, 600 random ones each, `benchmarks/bench_raw_sample.py`), the sample's came at most
# 0.0053 bits above the whole's (sd 0.0028); the spread goes as 1 / sqrt(values), so smaller pieces
# are histogrammed whole. Weights' tails are raw: one of MiniLM bf16's embedding chunks (262144
# values, one thread) codes in 431-442 us so, 498-534 with the whole histogram
# (`benchmarks/bench_gil_waits.py`, against a worktree of b2804be). (Heads, exponents, are never near
# uniform: not sampled.)
RAW_SAMPLE_STRIDE = 8
RAW_SAMPLE_MIN_VALUES = 1 << 17
RAW_SAMPLE_MARGIN_BITS = 0.02


@njit
def raw_by_sample(values, width, min_gain):
    """Whether the piece `values` (all below 2**width) is to be left raw on the evidence of a sample
    (see RAW_SAMPLE_STRIDE): its entropy per value above width * (1 - 1 / min_gain) plus the margin."""
    n = values.size
    if n < RAW_SAMPLE_MIN_VALUES:
        return False
    hist = np.zeros(1 << width, dtype=np.int64)
    for i in range(0, n, RAW_SAMPLE_STRIDE):
        hist[values[i]] += 1
    return _sample_says_raw(hist, width, min_gain)


@njit
def tail_raw_by_sample(words, lo, hi, sign_pos, low_bits, shift, width, min_gain):
    """`raw_by_sample` of the tail piece at `shift` (`width` bits) of words[lo:hi], the sample read
    straight from the words (no piece array first)."""
    if hi - lo < RAW_SAMPLE_MIN_VALUES:
        return False
    hist = np.zeros(1 << width, dtype=np.int64)
    mask = (U64(1) << U64(width)) - U64(1)
    for i in range(lo, hi, RAW_SAMPLE_STRIDE):
        hist[_tail_value(U64(words[i]), sign_pos, low_bits, shift, mask)] += 1
    return _sample_says_raw(hist, width, min_gain)


@njit_inline
def _sample_says_raw(hist, width, min_gain):
    m = 0
    for v in range(hist.size):
        m += hist[v]
    entropy = 0.0
    for v in range(hist.size):
        if hist[v] > 0:
            c = np.float64(hist[v])
            entropy -= c * math.log2(c / m)
    return entropy / m >= width * (1.0 - 1.0 / min_gain) + RAW_SAMPLE_MARGIN_BITS
