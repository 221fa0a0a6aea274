"""Numba kernels that write and cost order-k exp-Golomb codes (decoders: `_expgolomb_decode`).

Callers validate input; see `expgolomb.py`.

Codeword of n under order k: v = n + 2**k has b bits; the codeword is v written in
2*b - 1 - k bits, i.e. (b - 1 - k) zeros then v, most significant bit first.

Orders come per block: `orders[j]` is the k of symbols [j*block, (j+1)*block). One order for a
whole stream is one block.
"""

import numpy as np

from bslz.codec._bits import finish_bits, put_bits
from bslz.codec._jit import bit_length, njit, njit_inline

U64 = np.uint64


@njit_inline
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


@njit_inline
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
    return finish_bits(words, w, acc, filled, w0)


@njit
def encode_one_order(values, k):
    """(words, bits): all the values' order-k codewords, back to back from word 0."""
    orders = np.full(1, k, dtype=np.uint8)
    block = max(values.size, 1)
    nbits = stream_length(values, 0, values.size, orders, block)
    words = np.zeros(nbits // U64(64) + U64(1), dtype=np.uint64)
    encode_range(values, 0, values.size, orders, block, words, 0)
    return words, nbits


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
def max_and_zeros(values):
    """(largest value, number of zeros) in one pass."""
    m = U64(0)
    zeros = 0
    for i in range(values.size):
        v = U64(values[i])
        m = max(m, v)
        zeros += v == U64(0)
    return m, zeros


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
    return finish_bits(words, w, acc, filled, w0)


SMALL_SYMBOLS = 256  # block histograms are exact below this; larger symbols are costed one by one


@njit
def block_costs(values, block, costs, b_lo, b_hi, every=1):
    """costs[b, k] = exact bits of block b * every (symbols [b*every*block, (b*every+1)*block)) under
    order k, for b in [b_lo, b_hi) and k < costs.shape[1] (`every` > 1: a sample of the blocks, with
    no copy of it). One pass: a 256-bin histogram per block costs the small symbols, larger ones
    are costed one by one."""
    max_order = costs.shape[1] - 1
    hist = np.zeros(SMALL_SYMBOLS, dtype=np.uint64)
    for b in range(b_lo, b_hi):
        lo = b * every * block
        hi = min(values.size, lo + block)
        top = 0
        for j in range(lo, hi):
            n = U64(values[j])
            if n < U64(SMALL_SYMBOLS):
                hist[n] += U64(1)
                top = max(top, np.int64(n))
            else:
                for k in range(max_order + 1):
                    costs[b, k] += codeword_length(n, U64(k))
        for n in range(top + 1):
            c = hist[n]
            if c != U64(0):
                for k in range(max_order + 1):
                    costs[b, k] += c * codeword_length(U64(n), U64(k))
                hist[n] = 0


@njit_inline
def add_costs(costs, c, n, count):
    """costs[c, k] += count * bits of n under order k, for every k in the row."""
    for k in range(costs.shape[1]):
        costs[c, k] += count * codeword_length(n, U64(k))


@njit
def zero_run_costs(values, chunk, run_costs, val_costs, c_lo, c_hi):
    """Per chunk c in [c_lo, c_hi) and order k: exact bits of the run lengths (run_costs[c, k]) and
    of the (value - 1)s (val_costs[c, k]) that zero-run mode writes. Small ones are binned."""
    run_hist = np.zeros(SMALL_SYMBOLS, dtype=np.uint64)
    val_hist = np.zeros(SMALL_SYMBOLS, dtype=np.uint64)
    for c in range(c_lo, c_hi):
        lo = c * chunk
        hi = min(values.size, lo + chunk)
        run = U64(0)
        for j in range(lo, hi + 1):
            if j < hi:
                v = U64(values[j])
                if v == U64(0):
                    run += U64(1)
                    continue
            elif run == U64(0):
                break  # no trailing zeros: nothing more is written
            if run < U64(SMALL_SYMBOLS):
                run_hist[run] += U64(1)
            else:
                add_costs(run_costs, c, run, U64(1))
            run = U64(0)
            if j < hi:
                if v - U64(1) < U64(SMALL_SYMBOLS):
                    val_hist[v - U64(1)] += U64(1)
                else:
                    add_costs(val_costs, c, v - U64(1), U64(1))
        for n in range(SMALL_SYMBOLS):
            if run_hist[n]:
                add_costs(run_costs, c, U64(n), run_hist[n])
                run_hist[n] = 0
            if val_hist[n]:
                add_costs(val_costs, c, U64(n), val_hist[n])
                val_hist[n] = 0


@njit
def zigzag(values, out):
    """out[i] = se(v) of values[i]: v > 0 -> 2v - 1, v <= 0 -> -2v."""
    for i in range(values.size):
        v = np.int64(values[i])
        out[i] = 2 * v - 1 if v > 0 else -2 * v


@njit
def unzigzag(values, out, lowest, highest):
    """out[i] = the signed value whose se(v) is values[i]; False if one falls outside [lowest, highest]."""
    for i in range(values.size):
        u = U64(values[i])
        half = np.int64(u >> U64(1))  # u < 2**64: half < 2**63 fits
        if u & U64(1):
            if half >= highest:
                return False
            out[i] = half + 1
        else:
            if -half < lowest:
                return False
            out[i] = -half
    return True
