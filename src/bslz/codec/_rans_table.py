"""Numba kernels for the rANS coder's frequency table: histogram, quantization to the coder's
scale, and the header that carries the table. Callers validate input; see `rans.py`.

Header (bits, most significant first, zero-padded to a byte): EG0(max_symbol), one bit `multi`;
when multi: 4 bits k, then for s = 0 .. max_symbol - 1 the frequency EGk(f); a zero frequency is
followed by EG0(r), r more zero frequencies. The frequency of max_symbol is implicit (scale minus
the others) and must be in [1, scale). Readers return a status instead of raising (STATUS_*).
"""

import math

import numpy as np

from bslz.codec._bits import finish_bits, peek64, put_bits
from bslz.codec._jit import bit_length, njit, njit_inline
from bslz.codec._rans_kernels import (
    MAX_ALPHABET,
    SCALE,
    STATUS_BAD_TABLE,
    STATUS_OK,
    STATUS_SYMBOL_TOO_LARGE,
    STATUS_TRUNCATED,
)

U64 = np.uint64
U32 = np.uint32
# Pieces of up to 2**NARROW_WIDTH values are counted in pairs (`narrow_histogram`) when there are at
# least NARROW_MIN_VALUES symbols: below that its 4096 pair counters cost more than they save
NARROW_WIDTH = 6
NARROW_MIN_VALUES = 1 << 16
MAX_ORDER = 13  # largest k a header may use: EG13 already spends 14 bits on any frequency
MAX_EG_ZEROS = 14  # no header value needs more than 14 leading zeros (max_symbol < 2**12)


@njit
def histogram(symbols, hist):
    """Count symbols into `hist` (size MAX_ALPHABET, or less where the symbols are known to be
    smaller); returns a status (a symbol too large for `hist`)."""
    size = min(hist.size, MAX_ALPHABET)
    if 0 < size <= 1 << NARROW_WIDTH and size & (size - 1) == 0 and symbols.size >= NARROW_MIN_VALUES:
        return narrow_histogram(symbols, np.int64(bit_length(U64(size - 1))), hist)  # size = 2**width
    # four sub-histograms: runs of one symbol would otherwise serialise on one counter. Sized as
    # `hist`: a float chunk's 6-bit tail zeroed 128 KiB of them for 64 counters (a 384-value norm
    # vector's chunk spent more time on that than on its values)
    sub = np.zeros((4, size), dtype=np.uint64)
    top = U64(size)
    n = U64(symbols.size)
    n4 = n - n % U64(4)
    bad = False
    i = U64(0)
    while i < n4:
        a = U64(symbols[i])
        b = U64(symbols[i + U64(1)])
        c = U64(symbols[i + U64(2)])
        d = U64(symbols[i + U64(3)])
        bad |= max(max(a, b), max(c, d)) >= top
        if bad:
            return STATUS_SYMBOL_TOO_LARGE
        sub[0, a] += U64(1)
        sub[1, b] += U64(1)
        sub[2, c] += U64(1)
        sub[3, d] += U64(1)
        i += U64(4)
    while i < n:
        a = U64(symbols[i])
        if a >= top:
            return STATUS_SYMBOL_TOO_LARGE
        sub[0, a] += U64(1)
        i += U64(1)
    for s in range(size):
        hist[s] += sub[0, s] + sub[1, s] + sub[2, s] + sub[3, s]
    return STATUS_OK


@njit
def narrow_histogram(symbols, width, hist):
    """`histogram` of symbols below 2**width, width <= NARROW_WIDTH (a float's 6-bit tail piece):
    counted two at a time, a pair's 2 * width bits indexing one of 4096 counters, then summed into
    `hist` (half the increments of one a symbol). A symbol of 2**width or more: the status, and
    `hist` left as it was."""
    mask = U64((1 << width) - 1)
    shift = U64(width)
    pairs = np.zeros(1 << (2 * width), dtype=np.uint32)  # a chunk holds under 2**32 pairs
    seen = U64(0)  # every symbol OR-ed in: its bits above `width` tell a symbol too large
    for i in range(symbols.size // 2):
        a, b = U64(symbols[2 * i]), U64(symbols[2 * i + 1])
        seen |= a | b
        pairs[(a & mask) | ((b & mask) << shift)] += U32(1)
    last = U64(symbols[symbols.size - 1]) if symbols.size % 2 else U64(0)
    if (seen | last) > mask:
        return STATUS_SYMBOL_TOO_LARGE
    for x in range(pairs.size):
        c = U64(pairs[x])
        hist[U64(x) & mask] += c
        hist[U64(x) >> shift] += c
    if symbols.size % 2:
        hist[last] += U64(1)
    return STATUS_OK


@njit
def _gain(c, f):
    """Bits saved by raising a frequency f (count c) by one."""
    return c * math.log2((f + 1) / f)


@njit
def _loss(c, f):
    """Bits lost by lowering a frequency f by one; infinite at 1 (a present symbol keeps 1)."""
    return c * math.log2(f / (f - 1)) if f > 1 else math.inf


@njit_inline
def _better(key, a, b, larger):
    """Of entries a and b (a < b; -1: none), the one of larger key (`larger`) or smaller, a if equal."""
    if b < 0:
        return a
    if a < 0:
        return b
    if larger:
        return a if key[a] >= key[b] else b
    return a if key[a] <= key[b] else b


@njit
def _tournament(key, size, larger):
    """A tree over key[0 : n] (n <= size, a power of two): leaf size + t holds t (-1 past n), each
    node the `_better` of its two children, so that tree[1] is np.argmax(key) (np.argmin if not
    `larger`), the first of equal keys."""
    tree = np.empty(2 * size, dtype=np.int64)
    for t in range(size):
        tree[size + t] = t if t < key.size else -1
    for p in range(size - 1, 0, -1):
        tree[p] = _better(key, tree[2 * p], tree[2 * p + 1], larger)
    return tree


@njit
def _replay(key, tree, size, t, larger):
    """The tree's nodes above entry t again, after key[t] changed."""
    p = (size + t) >> 1
    while p >= 1:
        tree[p] = _better(key, tree[2 * p], tree[2 * p + 1], larger)
        p >>= 1


@njit
def improve_frequencies(counts, freqs, scale):
    """Greedy exchanges on `freqs` (int64, in place; the counts' proportional rounding) until they sum
    to `scale` and no single +1 / -1 exchange lowers sum(counts * log2(scale / freqs)).

    The largest gain and the smallest loss are kept in two tournament trees (`_tournament`): a move
    costs log n, not a scan of every symbol (a chunk's table of ~2000 symbols 90 -> 10 us), and picks
    what np.argmax / np.argmin would, the same frequencies."""
    n = counts.size
    gain = np.empty(n)
    loss = np.empty(n)
    total = 0
    for t in range(n):
        gain[t] = _gain(counts[t], freqs[t])
        loss[t] = _loss(counts[t], freqs[t])
        total += freqs[t]
    size = 1
    while size < n:
        size *= 2
    most_gain, least_loss = _tournament(gain, size, True), _tournament(loss, size, False)
    for _ in range(4 * scale + n):  # bound only: each move strictly lowers the cost
        i = j = -1
        if total <= scale:
            i = most_gain[1]
        if total >= scale:
            j = least_loss[1]
        if total == scale and gain[i] <= loss[j] + 1e-9:
            break
        for t, step in ((i, 1), (j, -1)):
            if t >= 0:
                freqs[t] += step
                total += step
                gain[t], loss[t] = _gain(counts[t], freqs[t]), _loss(counts[t], freqs[t])
                _replay(gain, most_gain, size, t, True)
                _replay(loss, least_loss, size, t, False)


@njit
def quantize_counts(hist, scale, freqs):
    """Fill `freqs` (uint32, zeroed, as long as `hist`) with the frequencies `rans.quantize_frequencies`
    describes; returns the bits the symbols cost under them, sum(count * log2(scale / freq)).
    One kernel for what a dozen numpy calls did: a chunk's table took 37 us, mostly call overhead."""
    present = 0
    total = 0.0  # counts are integers below 2**53: their float64 sum is exact in any order
    for s in range(hist.size):
        if hist[s] > 0:
            present += 1
            total += np.float64(hist[s])
    idx = np.empty(present, dtype=np.int64)
    counts = np.empty(present)
    f = np.empty(present, dtype=np.int64)
    t = 0
    for s in range(hist.size):
        if hist[s] > 0:
            idx[t] = s
            counts[t] = np.float64(hist[s])
            f[t] = np.int64(max(1.0, math.floor(counts[t] * scale / total + 0.5)))
            t += 1
    improve_frequencies(counts, f, scale)
    ideal = 0.0
    for t in range(present):
        freqs[idx[t]] = f[t]
        ideal += counts[t] * math.log2(scale / np.float64(f[t]))
    return ideal


@njit
def eg_length(n, k):
    """Bits of the order-k exp-Golomb codeword of n (both uint64)."""
    return U64(2) * bit_length((n >> k) + U64(1)) - U64(1) + k


@njit
def put_eg(words, w, acc, filled, n, k):
    v = n + (U64(1) << k)
    return put_bits(words, w, acc, filled, v, U64(2) * bit_length(v) - U64(1) - k)


@njit
def zero_run_end(freqs, s, max_symbol):
    """First index >= s with a non-zero frequency (max_symbol's frequency is never zero)."""
    e = s
    while e < max_symbol and freqs[e] == 0:
        e += 1
    return e


@njit
def put_zero_run(words, w, acc, filled, values, s, max_symbol):
    """After a zero at values[s]: EG0 of how many zeros follow it (the run ends before max_symbol,
    whose value is not zero). Returns the writer and the index after the run."""
    e = zero_run_end(values, s, max_symbol)
    w, acc, filled = put_eg(words, w, acc, filled, U64(e - s - 1), U64(0))
    return w, acc, filled, e


@njit
def table_bits(freqs, max_symbol, k):
    """Bits the frequency list (after the 4-bit k) costs under order k."""
    k = U64(k)
    total = U64(0)
    s = 0
    while s < max_symbol:
        f = U64(freqs[s])
        total += eg_length(f, k)
        if f == U64(0):
            e = zero_run_end(freqs, s, max_symbol)
            total += eg_length(U64(e - s - 1), U64(0))
            s = e
        else:
            s += 1
    return total


@njit
def best_table_order(freqs, max_symbol):
    """(k, bits): the order 0..MAX_ORDER whose frequency list is shortest (the first of equals)."""
    best_k, best = 0, table_bits(freqs, max_symbol, 0)
    for k in range(1, MAX_ORDER + 1):
        bits = table_bits(freqs, max_symbol, k)
        if bits < best:
            best_k, best = k, bits
    return best_k, best


@njit
def write_header(freqs, max_symbol, multi, k, words):
    """Write the header into zeroed `words`; returns its length in bits."""
    w, acc, filled = put_eg(words, 0, U64(0), U64(0), U64(max_symbol), U64(0))
    w, acc, filled = put_bits(words, w, acc, filled, U64(1 if multi else 0), U64(1))
    if multi:
        kk = U64(k)
        w, acc, filled = put_bits(words, w, acc, filled, kk, U64(4))
        s = 0
        while s < max_symbol:
            f = U64(freqs[s])
            w, acc, filled = put_eg(words, w, acc, filled, f, kk)
            if f == U64(0):
                w, acc, filled, s = put_zero_run(words, w, acc, filled, freqs, s, max_symbol)
            else:
                s += 1
    return finish_bits(words, w, acc, filled, 0)[1]


@njit
def read_eg(words, pos, nbits, k):
    """One order-k codeword at bit `pos` of a padded word array: (status, value, new pos)."""
    window = peek64(words, pos)
    zeros = U64(64) - bit_length(window)
    if zeros > U64(MAX_EG_ZEROS):
        # all zeros up to the end means the codeword was cut, not that it is too long
        if pos + zeros >= nbits:
            return STATUS_TRUNCATED, U64(0), pos
        return STATUS_BAD_TABLE, U64(0), pos
    length = U64(2) * zeros + U64(1) + k
    if pos + length > nbits:
        return STATUS_TRUNCATED, U64(0), pos
    v = window >> (U64(64) - length)
    return STATUS_OK, v - (U64(1) << k), pos + length


@njit
def read_header(words, nbits, freqs):
    """Parse a header into `freqs` (size MAX_ALPHABET, zeroed).

    Returns (status, max_symbol, multi, header bits). With multi the frequencies sum to SCALE,
    every one is < SCALE and at least two are non-zero.
    """
    nbits = U64(nbits)
    status, max_symbol, pos = read_eg(words, U64(0), nbits, U64(0))
    if status != STATUS_OK:
        return status, 0, False, pos
    if max_symbol >= U64(MAX_ALPHABET):
        return STATUS_BAD_TABLE, 0, False, pos
    if pos + U64(1) > nbits:
        return STATUS_TRUNCATED, 0, False, pos
    multi = (peek64(words, pos) >> U64(63)) != U64(0)
    pos += U64(1)
    top = np.int64(max_symbol)
    if not multi:
        return STATUS_OK, top, False, pos
    if top == 0 or pos + U64(4) > nbits:  # a lone symbol 0 cannot be multi
        return (STATUS_BAD_TABLE if top == 0 else STATUS_TRUNCATED), 0, False, pos
    k = peek64(words, pos) >> U64(60)
    pos += U64(4)
    if k > U64(MAX_ORDER):
        return STATUS_BAD_TABLE, 0, False, pos
    total = U64(0)
    s = 0
    while s < top:
        status, f, pos = read_eg(words, pos, nbits, k)
        if status != STATUS_OK:
            return status, 0, False, pos
        if f == U64(0):
            status, r, pos = read_eg(words, pos, nbits, U64(0))
            if status != STATUS_OK:
                return status, 0, False, pos
            if r >= U64(top - s):  # the run may not reach max_symbol
                return STATUS_BAD_TABLE, 0, False, pos
            s += 1 + np.int64(r)
        else:
            total += f
            if total >= U64(SCALE):
                return STATUS_BAD_TABLE, 0, False, pos
            freqs[s] = f
            s += 1
    if total == U64(0):  # max_symbol alone would be a single-symbol stream
        return STATUS_BAD_TABLE, 0, False, pos
    freqs[top] = U64(SCALE) - total
    return STATUS_OK, top, True, pos


@njit
def multi_symbol_table(hist, max_symbol):
    """(freqs, ideal bits, header words, header bits) of the table for a histogram of two distinct
    symbols or more, the largest `max_symbol`: what `rans.rans_table` and the one-call float chunk
    encoder both build."""
    freqs = np.zeros(max_symbol + 1, dtype=np.uint32)
    ideal = quantize_counts(hist[: max_symbol + 1], SCALE, freqs)  # present symbols <= MAX_ALPHABET = SCALE / 4
    k, bits = best_table_order(freqs, max_symbol)
    words = np.zeros((np.int64(bits) + 30) // 64 + 2, dtype=np.uint64)  # + EG0(max) + bit + 4 bits
    nbits = write_header(freqs, max_symbol, True, k, words)
    return freqs, ideal, words, nbits
