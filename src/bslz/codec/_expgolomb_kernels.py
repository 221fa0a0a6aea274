"""Numba kernels for order-k exp-Golomb codes. Callers validate input; see `expgolomb.py`.

Codeword of n under order k: v = n + 2**k has b bits; the codeword is v written in
2*b - 1 - k bits, i.e. (b - 1 - k) zeros then v, most significant bit first.

Orders come per block: `orders[j]` is the k of symbols [j*block, (j+1)*block). One order for a
whole stream is one block. Decoders return a status instead of raising (see STATUS_*).
"""

import numpy as np

from bslz.codec._bits import peek64, put_bits
from bslz.codec._jit import bit_length, njit

U64 = np.uint64
STATUS_OK = 0
STATUS_TRUNCATED = 1
STATUS_CODEWORD_TOO_LONG = 2
STATUS_OVERRUN = 3  # a zero run or chunk that goes past the symbols it belongs to

TABLE_BITS = 12  # decode lookup indexed by the top 12 bits of the window
TABLE_MAX_ORDER = TABLE_BITS - 1  # above this no codeword fits in the table


@njit
def codeword_length(n, k):
    """Bits of the order-k codeword of n (both uint64)."""
    return U64(2) * bit_length((n >> k) + U64(1)) - U64(1) + k


@njit
def stream_length(values, lo, hi, orders, block):
    """Total codeword bits of values[lo:hi]."""
    total = U64(0)
    i = lo
    while i < hi:
        k = U64(orders[i // block])
        end = min(hi, (i // block + 1) * block)
        for j in range(i, end):
            total += codeword_length(U64(values[j]), k)
        i = end
    return total


@njit
def put_codeword(words, w, acc, filled, n, k):
    """Append the order-k codeword of n to the writer (see `_bits.put_bits`)."""
    v = n + (U64(1) << k)
    b = bit_length(v)
    length = U64(2) * b - U64(1) - k
    if length <= U64(64):
        return put_bits(words, w, acc, filled, v, length)
    w, acc, filled = put_bits(words, w, acc, filled, U64(0), b - U64(1) - k)
    return put_bits(words, w, acc, filled, v, b)


@njit
def encode_range(values, lo, hi, orders, block, words, w):
    """Write codewords of values[lo:hi] from word `w`; returns (words used end, bits written)."""
    acc = U64(0)
    filled = U64(0)
    w0 = w
    i = lo
    while i < hi:
        k = U64(orders[i // block])
        end = min(hi, (i // block + 1) * block)
        for j in range(i, end):
            w, acc, filled = put_codeword(words, w, acc, filled, U64(values[j]), k)
        i = end
    nbits = U64(w - w0) * U64(64) + filled
    if filled > U64(0):
        words[w] = acc
        w += 1
    return w, nbits


def build_decode_tables():
    """Per order k <= TABLE_MAX_ORDER and per 12-bit prefix: the symbol and codeword length, 0 if none fits."""
    lengths = np.zeros((TABLE_MAX_ORDER + 1, 1 << TABLE_BITS), dtype=np.uint8)
    symbols = np.zeros((TABLE_MAX_ORDER + 1, 1 << TABLE_BITS), dtype=np.uint32)
    prefixes = np.arange(1 << TABLE_BITS, dtype=np.int64)
    bitlens = np.zeros(prefixes.size, dtype=np.int64)
    nz = prefixes > 0
    bitlens[nz] = np.floor(np.log2(prefixes[nz])).astype(np.int64) + 1
    zeros = TABLE_BITS - bitlens  # leading zeros inside the 12-bit prefix
    for k in range(TABLE_MAX_ORDER + 1):
        length = 2 * zeros + k + 1
        fits = (length <= TABLE_BITS) & nz
        v = prefixes[fits] >> (TABLE_BITS - length[fits])
        lengths[k, fits] = length[fits]
        symbols[k, fits] = v - (1 << k)
    return lengths, symbols


@njit
def decode_one_slow(words, pos, limit, k):
    """One codeword at bit `pos` by leading-zero count: (status, symbol, new pos)."""
    window = peek64(words, pos)
    zeros = U64(64) - bit_length(window)
    if pos + zeros > limit:
        return STATUS_TRUNCATED, U64(0), pos
    if zeros + k >= U64(64):
        return STATUS_CODEWORD_TOO_LONG, U64(0), pos
    nb = zeros + k + U64(1)
    v = peek64(words, pos + zeros) >> (U64(64) - nb)
    return STATUS_OK, v - (U64(1) << k), pos + zeros + nb


@njit
def decode_range(words, pos, limit, orders, block, out, lo, hi, tab_len, tab_sym):
    """Decode out[lo:hi] from bit `pos`, never reading codewords past bit `limit`.

    `words` must be padded (see `_bits.READ_PADDING_WORDS`). Returns (status, end pos).
    """
    shift = U64(64 - TABLE_BITS)
    i = lo
    while i < hi:
        k = U64(orders[i // block])
        end = min(hi, (i // block + 1) * block)
        if k <= U64(TABLE_MAX_ORDER):
            lens = tab_len[k]
            syms = tab_sym[k]
            for j in range(i, end):
                window = peek64(words, pos)
                idx = window >> shift
                length = U64(lens[idx])
                if length > U64(0):
                    out[j] = U64(syms[idx])
                    pos += length
                else:
                    status, sym, pos = decode_one_slow(words, pos, limit, k)
                    if status != STATUS_OK:
                        return status, pos
                    out[j] = sym
                if pos > limit:
                    return STATUS_TRUNCATED, pos
        else:
            for j in range(i, end):
                status, sym, pos = decode_one_slow(words, pos, limit, k)
                if status != STATUS_OK:
                    return status, pos
                if pos > limit:
                    return STATUS_TRUNCATED, pos
                out[j] = sym
        i = end
    return STATUS_OK, pos


@njit
def order_costs_from_histogram(hist, max_order):
    """Exact bits of the stream whose symbol histogram is `hist`, for each k in 0..max_order."""
    costs = np.zeros(max_order + 1, dtype=np.uint64)
    for n in range(hist.size):
        c = U64(hist[n])
        if c == U64(0):
            continue
        for k in range(max_order + 1):
            costs[k] += c * codeword_length(U64(n), U64(k))
    return costs


@njit
def order_costs_direct(values, max_order):
    """Exact bits of `values` for each k in 0..max_order, without a histogram (wide alphabets)."""
    costs = np.zeros(max_order + 1, dtype=np.uint64)
    for i in range(values.size):
        n = U64(values[i])
        for k in range(max_order + 1):
            costs[k] += codeword_length(n, U64(k))
    return costs


@njit
def max_value(values):
    m = U64(0)
    for i in range(values.size):
        v = U64(values[i])
        if v > m:
            m = v
    return m


@njit
def histogram(values, size):
    hist = np.zeros(size, dtype=np.uint64)
    for i in range(values.size):
        hist[values[i]] += U64(1)
    return hist


@njit
def decode_one(words, pos, limit, k, tab_len, tab_sym):
    """One codeword, through the table when it fits: (status, symbol, new pos)."""
    if k <= U64(TABLE_MAX_ORDER):
        idx = peek64(words, pos) >> U64(64 - TABLE_BITS)
        length = U64(tab_len[k, idx])
        if length > U64(0):
            if pos + length > limit:
                return STATUS_TRUNCATED, U64(0), pos
            return STATUS_OK, U64(tab_sym[k, idx]), pos + length
    status, sym, new_pos = decode_one_slow(words, pos, limit, k)
    if status == STATUS_OK and new_pos > limit:
        return STATUS_TRUNCATED, U64(0), pos
    return status, sym, new_pos


# Zero-run mode: for each non-zero symbol, EG(k_run) of the zeros before it, then EG(k_val) of
# (symbol - 1); zeros at the end of a range are one last run with no symbol after it.


@njit
def zero_run_encode_range(values, lo, hi, k_run, k_val, words, w):
    """Zero-run codewords of values[lo:hi] from word `w`; returns (words used end, bits written)."""
    acc = U64(0)
    filled = U64(0)
    w0 = w
    run = U64(0)
    for j in range(lo, hi):
        v = U64(values[j])
        if v == U64(0):
            run += U64(1)
        else:
            w, acc, filled = put_codeword(words, w, acc, filled, run, k_run)
            w, acc, filled = put_codeword(words, w, acc, filled, v - U64(1), k_val)
            run = U64(0)
    if run > U64(0):
        w, acc, filled = put_codeword(words, w, acc, filled, run, k_run)
    nbits = U64(w - w0) * U64(64) + filled
    if filled > U64(0):
        words[w] = acc
        w += 1
    return w, nbits


@njit
def zero_run_decode_range(words, pos, limit, k_run, k_val, out, lo, hi, tab_len, tab_sym):
    """Inverse of `zero_run_encode_range`; returns (status, end pos)."""
    j = lo
    while j < hi:
        status, run, pos = decode_one(words, pos, limit, k_run, tab_len, tab_sym)
        if status != STATUS_OK:
            return status, pos
        if run > U64(hi - j):
            return STATUS_OVERRUN, pos
        stop = j + np.int64(run)
        while j < stop:
            out[j] = 0
            j += 1
        if j == hi:
            break
        status, sym, pos = decode_one(words, pos, limit, k_val, tab_len, tab_sym)
        if status != STATUS_OK:
            return status, pos
        out[j] = sym + U64(1)
        j += 1
    return STATUS_OK, pos


SMALL_SYMBOLS = 256  # block histograms are exact below this; larger symbols are costed one by one


@njit
def block_orders(values, block, max_order):
    """Per block of `block` symbols, the order k <= max_order with the fewest bits, and those bits."""
    nblocks = (values.size + block - 1) // block
    orders = np.zeros(nblocks, dtype=np.uint8)
    bits = np.zeros(nblocks, dtype=np.uint64)
    hist = np.zeros(SMALL_SYMBOLS, dtype=np.uint64)
    costs = np.zeros(max_order + 1, dtype=np.uint64)
    for b in range(nblocks):
        lo = b * block
        hi = min(values.size, lo + block)
        hist[:] = 0
        costs[:] = 0
        top = U64(0)
        for j in range(lo, hi):
            n = U64(values[j])
            top = max(top, n)
        kmax = min(np.int64(bit_length(top)), max_order)
        for j in range(lo, hi):
            n = U64(values[j])
            if n < U64(SMALL_SYMBOLS):
                hist[n] += U64(1)
            else:
                for k in range(kmax + 1):
                    costs[k] += codeword_length(n, U64(k))
        for n in range(SMALL_SYMBOLS):
            c = hist[n]
            if c != U64(0):
                for k in range(kmax + 1):
                    costs[k] += c * codeword_length(U64(n), U64(k))
        best = 0
        for k in range(1, kmax + 1):
            if costs[k] < costs[best]:
                best = k
        orders[b] = best
        bits[b] = costs[best]
    return orders, bits


@njit
def zero_run_histograms(values, chunk, max_run_symbol, max_val_symbol):
    """Histograms of the run lengths and (value - 1)s zero-run mode writes, chunk by chunk.

    Symbols at or above the histogram sizes are counted in the last bin's companion array `big`.
    """
    run_hist = np.zeros(max_run_symbol + 1, dtype=np.uint64)
    val_hist = np.zeros(max_val_symbol + 1, dtype=np.uint64)
    for lo in range(0, values.size, chunk):
        hi = min(values.size, lo + chunk)
        run = 0
        for j in range(lo, hi):
            v = U64(values[j])
            if v == U64(0):
                run += 1
            else:
                run_hist[run] += U64(1)
                val_hist[v - U64(1)] += U64(1)
                run = 0
        if run > 0:
            run_hist[run] += U64(1)
    return run_hist, val_hist


@njit
def zero_run_length(values, lo, hi, k_run, k_val):
    """Exact bits `zero_run_encode_range` writes for values[lo:hi]."""
    total = U64(0)
    run = U64(0)
    for j in range(lo, hi):
        v = U64(values[j])
        if v == U64(0):
            run += U64(1)
        else:
            total += codeword_length(run, k_run) + codeword_length(v - U64(1), k_val)
            run = U64(0)
    if run > U64(0):
        total += codeword_length(run, k_run)
    return total
