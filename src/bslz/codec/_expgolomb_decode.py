"""Numba decoders for order-k exp-Golomb streams. Callers validate input; see `expgolomb.py`.

Decoders return a status instead of raising (STATUS_*), never read past `limit` bits of the
stream (the word array is padded, see `_bits.READ_PADDING_WORDS`), never write outside
out[lo:hi], and never store a symbol above `max_symbol` (the largest the dtype of `out` holds,
at least 2**16 - 1 since table symbols reach 2**12 - 1).

Speed comes from four things (measured on 2 cores, see benchmarks/bench_codec.py):
- a multi-symbol table on the top 12 bits of a register window: one lookup yields up to four
  symbols and their total length;
- for orders of ARITH_MIN_ORDER and more, where a lookup yields one symbol or none, codewords
  taken from the window by leading-zero count instead, two a refill (1.4-3x the table's rate;
  a lane at a time: lanes in lockstep gained nothing there);
- lanes: four chunks decoded in lockstep, four independent dependency chains;
- a leading-zero-count path from memory for the codewords the window cannot hold.
"""

import numpy as np

from bslz.codec._bits import peek64
from bslz.codec._jit import bit_length, njit, njit_inline

U64 = np.uint64
STATUS_OK = 0
STATUS_TRUNCATED = 1
STATUS_CODEWORD_TOO_LONG = 2
STATUS_OVERRUN = 3  # a zero run or chunk that goes past the symbols or bits it belongs to
STATUS_TOO_LARGE = 4  # a symbol above what the output array holds

TABLE_BITS = 12
TABLE_MAX_ORDER = TABLE_BITS - 1  # above this no codeword fits in the table
# From this order on, codewords of 5+ bits: the window path beats the table (measured: 1.4x at
# k = 4, 3x at k = 8; the table wins at k = 3 and below)
ARITH_MIN_ORDER = 4
SYMBOLS_PER_LOOKUP = 4
# A table entry: bits 0-2 symbol count (0: the first codeword does not fit), bits 3-7 their total
# length, then four 12-bit symbols from bit 8 (a codeword of <= 12 bits holds a value < 2**11).
_COUNT_MASK = U64(7)
_SYMBOL_MASK = U64(0xFFF)


@njit
def build_tables():
    """Multi-symbol tables: row k (k <= 11) for order k, one more all-zero row for larger orders."""
    tables = np.zeros((TABLE_MAX_ORDER + 2, 1 << TABLE_BITS), dtype=np.uint64)
    for k in range(TABLE_MAX_ORDER + 1):
        for prefix in range(1 << TABLE_BITS):
            pos = 0
            count = 0
            entry = U64(0)
            while count < SYMBOLS_PER_LOOKUP:
                zeros = 0
                while pos + zeros < TABLE_BITS and (prefix >> (TABLE_BITS - 1 - pos - zeros)) & 1 == 0:
                    zeros += 1
                length = 2 * zeros + k + 1
                if pos + length > TABLE_BITS:
                    break
                v = (prefix >> (TABLE_BITS - pos - length)) & ((1 << (zeros + k + 1)) - 1)
                entry |= U64(v - (1 << k)) << U64(8 + 12 * count)
                count += 1
                pos += length
            tables[k, prefix] = entry | U64(count) | (U64(pos) << U64(3))
    return tables


@njit_inline
def table_row(k):
    return min(k, U64(TABLE_MAX_ORDER + 1))


@njit_inline
def decode_one_slow(words, pos, limit, k, max_symbol):
    """One codeword at bit `pos` by leading-zero count: (status, symbol, new pos).

    Symbols above `max_symbol` (what the output dtype holds) are an error, never truncated.
    """
    window = peek64(words, pos)
    zeros = U64(64) - bit_length(window)
    if pos + zeros > limit:
        return STATUS_TRUNCATED, U64(0), pos
    if zeros + k >= U64(64):
        return STATUS_CODEWORD_TOO_LONG, U64(0), pos
    nb = zeros + k + U64(1)
    sym = (peek64(words, pos + zeros) >> (U64(64) - nb)) - (U64(1) << k)
    if sym > max_symbol:
        return STATUS_TOO_LARGE, U64(0), pos
    return STATUS_OK, sym, pos + zeros + nb


@njit_inline
def window_codeword(cur, used, k, max_symbol):
    """The codeword at the top of the window `cur` (of which `used` bits are spent): (slow, symbol,
    length). slow: it is not whole in the window's 64 - used valid bits, has 32 or more leading
    zeros, or its symbol passes max_symbol; `decode_one_slow` then reads it (or reports why not)."""
    zeros = U64(64) - bit_length(cur)
    z = min(zeros, U64(31))  # shift amounts stay below 64 whatever the window holds
    nb = z + k + U64(1)
    top = (cur << z) >> (U64(64) - nb)  # 2**k + symbol when the codeword's 1 lies in the window
    sym = top - min(top, U64(1) << k)  # (else it is slow anyway: no wrap-around, even in plain Python)
    length = z + nb
    return (zeros > U64(31)) | (length > U64(64) - used) | (sym > max_symbol), sym, length


# Helpers called per symbol take scalars, or `words` only to read it: a helper that writes `out`
# or indexes a table, even inlined, kept reference counting in the loop and ran 9x slower
# (measured). So each loop spells out its table lookup and its four stores.


@njit_inline
def refill(words, cur, used, pos, limit):
    """Reload the register window once more than 32 of its bits are used: (ok, cur, used).

    `cur` holds the stream from `pos` on, left-aligned; `used` bits of it were consumed since it
    was loaded, so a 12-bit lookup always sees valid bits. `pos` is checked against `limit`
    here (and at the end of a range): between reloads nothing is read from memory.
    """
    if used <= U64(32):
        return True, cur, used
    if pos > limit:
        return False, cur, used
    return True, peek64(words, pos), U64(0)


@njit_inline
def advance(entry, cur, used, pos, j):
    """Consume the codewords of a table entry: (cur, used, pos, j)."""
    length = (entry >> U64(3)) & U64(31)
    return cur << length, used + length, pos + length, j + np.int64(entry & _COUNT_MASK)


@njit
def finish_block(words, out, tables, cur, used, pos, limit, j, end, k, max_symbol):
    """Decode out[j:end] (one block, one order k) on one lane: (status, cur, used, pos, j)."""
    row = table_row(k)  # derived here, not passed in: a row argument made this loop 3x slower (measured)
    while k >= U64(ARITH_MIN_ORDER) and j + 2 <= end:  # two codewords from the window a refill
        ok, cur, used = refill(words, cur, used, pos, limit)
        if not ok:
            return STATUS_TRUNCATED, cur, used, pos, j
        slow, sym, length = window_codeword(cur, used, k, max_symbol)
        if slow:
            status, sym, pos = decode_one_slow(words, pos, limit, k, max_symbol)
            if status != STATUS_OK:
                return status, cur, used, pos, j
            out[j] = sym
            j += 1
            used = U64(64)  # reload before the next codeword
            continue
        out[j] = sym
        cur, used, pos = cur << length, used + length, pos + length
        slow, sym, length = window_codeword(cur, used, k, max_symbol)
        if not slow:
            out[j + 1] = sym
            cur, used, pos = cur << length, used + length, pos + length
            j += 1
        j += 1
    while j + SYMBOLS_PER_LOOKUP <= end:
        ok, cur, used = refill(words, cur, used, pos, limit)
        if not ok:
            return STATUS_TRUNCATED, cur, used, pos, j
        e = tables[row, cur >> U64(64 - TABLE_BITS)]
        if e & _COUNT_MASK:
            out[j] = (e >> U64(8)) & _SYMBOL_MASK
            out[j + 1] = (e >> U64(20)) & _SYMBOL_MASK
            out[j + 2] = (e >> U64(32)) & _SYMBOL_MASK
            out[j + 3] = (e >> U64(44)) & _SYMBOL_MASK
            cur, used, pos, j = advance(e, cur, used, pos, j)
        else:
            status, sym, pos = decode_one_slow(words, pos, limit, k, max_symbol)
            if status != STATUS_OK:
                return status, cur, used, pos, j
            out[j] = sym
            j += 1
            used = U64(64)  # reload before the next lookup
    while j < end:  # fewer than four symbols left in the block: one at a time
        if pos > limit:
            return STATUS_TRUNCATED, cur, used, pos, j
        status, sym, pos = decode_one_slow(words, pos, limit, k, max_symbol)
        if status != STATUS_OK:
            return status, cur, used, pos, j
        out[j] = sym
        j += 1
        used = U64(64)
    return STATUS_OK, cur, used, pos, j


@njit
def decode_range(words, pos, limit, orders, block, out, lo, hi, tables, max_symbol):
    """Decode out[lo:hi] from bit `pos` without reading codewords past bit `limit`: (status, end pos)."""
    if pos > limit:
        return STATUS_TRUNCATED, pos
    cur = peek64(words, pos)
    used = U64(0)
    j = lo
    while j < hi:
        k = U64(orders[j // block])
        end = min(hi, (j // block + 1) * block)
        status, cur, used, pos, j = finish_block(words, out, tables, cur, used, pos, limit, j, end, k, max_symbol)
        if status != STATUS_OK:
            return status, pos
    if pos > limit:
        return STATUS_TRUNCATED, pos
    return STATUS_OK, pos


@njit
def decode_four_lanes(words, starts, limits, orders, block, out, los, length, tables, status, ends, max_symbol):
    """Decode four ranges of `length` symbols (out[los[i]:los[i] + length] from bit starts[i], no
    codeword read past bit limits[i]) in lockstep, block by block; each lane finishes its block
    alone once another lane reaches the end of its own. Writes status[0..3] and, where OK, the bit
    position each lane ended at in ends[0..3] (the caller checks it against the lane's end)."""
    for i in range(4):
        status[i] = STATUS_OK
        if starts[i] > limits[i]:
            status[i] = STATUS_TRUNCATED
            return
    p0, p1, p2, p3 = starts[0], starts[1], starts[2], starts[3]
    m0, m1, m2, m3 = limits[0], limits[1], limits[2], limits[3]
    c0, c1, c2, c3 = peek64(words, p0), peek64(words, p1), peek64(words, p2), peek64(words, p3)
    u0 = u1 = u2 = u3 = U64(0)
    shift = U64(64 - TABLE_BITS)
    r = 0
    while r < length:
        j0, j1, j2, j3 = los[0] + r, los[1] + r, los[2] + r, los[3] + r
        step = min(length - r, (j0 // block + 1) * block - j0)
        end0, end1, end2, end3 = j0 + step, j1 + step, j2 + step, j3 + step
        k0, k1, k2, k3 = (
            U64(orders[j0 // block]),
            U64(orders[j1 // block]),
            U64(orders[j2 // block]),
            U64(orders[j3 // block]),
        )
        t0, t1, t2, t3 = table_row(k0), table_row(k1), table_row(k2), table_row(k3)
        s0 = s1 = s2 = s3 = STATUS_OK
        # orders of ARITH_MIN_ORDER and up go straight to finish_block: its window path, a lane at a
        # time, decodes them as fast as lanes in lockstep did (measured), with no second copy here
        lockstep = min(min(k0, k1), min(k2, k3)) < U64(ARITH_MIN_ORDER)
        while lockstep and j0 + 4 <= end0 and j1 + 4 <= end1 and j2 + 4 <= end2 and j3 + 4 <= end3:
            ok0, c0, u0 = refill(words, c0, u0, p0, m0)
            e0 = tables[t0, c0 >> shift]
            ok1, c1, u1 = refill(words, c1, u1, p1, m1)
            e1 = tables[t1, c1 >> shift]
            ok2, c2, u2 = refill(words, c2, u2, p2, m2)
            e2 = tables[t2, c2 >> shift]
            ok3, c3, u3 = refill(words, c3, u3, p3, m3)
            e3 = tables[t3, c3 >> shift]
            if not (ok0 and ok1 and ok2 and ok3):
                break  # finish_block below finds which lane ran out, and why
            if e0 & _COUNT_MASK:
                out[j0] = (e0 >> U64(8)) & _SYMBOL_MASK
                out[j0 + 1] = (e0 >> U64(20)) & _SYMBOL_MASK
                out[j0 + 2] = (e0 >> U64(32)) & _SYMBOL_MASK
                out[j0 + 3] = (e0 >> U64(44)) & _SYMBOL_MASK
                c0, u0, p0, j0 = advance(e0, c0, u0, p0, j0)
            else:  # a codeword longer than the table
                s0, v0, p0 = decode_one_slow(words, p0, m0, k0, max_symbol)
                out[j0] = v0
                j0 += 1
                u0 = U64(64)
            if e1 & _COUNT_MASK:
                out[j1] = (e1 >> U64(8)) & _SYMBOL_MASK
                out[j1 + 1] = (e1 >> U64(20)) & _SYMBOL_MASK
                out[j1 + 2] = (e1 >> U64(32)) & _SYMBOL_MASK
                out[j1 + 3] = (e1 >> U64(44)) & _SYMBOL_MASK
                c1, u1, p1, j1 = advance(e1, c1, u1, p1, j1)
            else:  # a codeword longer than the table
                s1, v1, p1 = decode_one_slow(words, p1, m1, k1, max_symbol)
                out[j1] = v1
                j1 += 1
                u1 = U64(64)
            if e2 & _COUNT_MASK:
                out[j2] = (e2 >> U64(8)) & _SYMBOL_MASK
                out[j2 + 1] = (e2 >> U64(20)) & _SYMBOL_MASK
                out[j2 + 2] = (e2 >> U64(32)) & _SYMBOL_MASK
                out[j2 + 3] = (e2 >> U64(44)) & _SYMBOL_MASK
                c2, u2, p2, j2 = advance(e2, c2, u2, p2, j2)
            else:  # a codeword longer than the table
                s2, v2, p2 = decode_one_slow(words, p2, m2, k2, max_symbol)
                out[j2] = v2
                j2 += 1
                u2 = U64(64)
            if e3 & _COUNT_MASK:
                out[j3] = (e3 >> U64(8)) & _SYMBOL_MASK
                out[j3 + 1] = (e3 >> U64(20)) & _SYMBOL_MASK
                out[j3 + 2] = (e3 >> U64(32)) & _SYMBOL_MASK
                out[j3 + 3] = (e3 >> U64(44)) & _SYMBOL_MASK
                c3, u3, p3, j3 = advance(e3, c3, u3, p3, j3)
            else:  # a codeword longer than the table
                s3, v3, p3 = decode_one_slow(words, p3, m3, k3, max_symbol)
                out[j3] = v3
                j3 += 1
                u3 = U64(64)
            if s0 | s1 | s2 | s3:
                break
        if not (s0 | s1 | s2 | s3):
            s0, c0, u0, p0, j0 = finish_block(words, out, tables, c0, u0, p0, m0, j0, end0, k0, max_symbol)
            s1, c1, u1, p1, j1 = finish_block(words, out, tables, c1, u1, p1, m1, j1, end1, k1, max_symbol)
            s2, c2, u2, p2, j2 = finish_block(words, out, tables, c2, u2, p2, m2, j2, end2, k2, max_symbol)
            s3, c3, u3, p3, j3 = finish_block(words, out, tables, c3, u3, p3, m3, j3, end3, k3, max_symbol)
        if s0 | s1 | s2 | s3:
            status[0], status[1], status[2], status[3] = s0, s1, s2, s3
            return
        r += step
    ends[0], ends[1], ends[2], ends[3] = p0, p1, p2, p3
    for i in range(4):
        status[i] = STATUS_TRUNCATED if ends[i] > limits[i] else STATUS_OK


@njit
def zero_run_decode_range(words, pos, limit, k_run, k_val, out, lo, hi, max_symbol):
    """Inverse of `_expgolomb_kernels.zero_run_encode_range`: (status, end pos)."""
    j = lo
    while j < hi:
        if pos > limit:
            return STATUS_TRUNCATED, pos
        status, run, pos = decode_one_slow(words, pos, limit, k_run, ~U64(0))  # checked against the range below
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
        if pos > limit:
            return STATUS_TRUNCATED, pos
        status, sym, pos = decode_one_slow(words, pos, limit, k_val, max_symbol - U64(1))
        if status != STATUS_OK:
            return status, pos
        out[j] = sym + U64(1)
        j += 1
    if pos > limit:
        return STATUS_TRUNCATED, pos
    return STATUS_OK, pos
