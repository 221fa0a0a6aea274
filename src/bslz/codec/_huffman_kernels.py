"""Numba kernels for the canonical Huffman coder of float heads. Callers validate input; see `huffman.py`.

Codes are at most MAX_LENGTH bits, so a decoder looks every codeword up in a table indexed by the
next MAX_LENGTH bits. Streams are read least significant bit first (as deflate packs its bits): the
decoder's fast rounds load the 8 bytes from the one holding the next bit and shift codewords out at
the bottom, and its last symbols come from a 64-bit buffer that ORs a word in above the bits it
holds. A symbol's codeword enters the stream most significant bit first: its bits, reversed, are
what the encoder ORs in.

The count of symbols is cut into NUM_STREAMS contiguous quarters, each its own stream, decoded in
lockstep so that four dependency chains run at once; a table entry gives up to two symbols (both
codewords inside the MAX_LENGTH-bit window), so a lookup yields ~1.9 symbols on MiniLM's bf16 heads;
decoders write uint16 words (a float's word, or a piece that callers merge into wider words).

Decoders return a status instead of raising (STATUS_*).
"""

import numpy as np

from bslz.codec._bits import finish_bits, peek64, put_bits
from bslz.codec._jit import load_le64, njit, njit_inline, store_pair16
from bslz.codec._rans_kernels import STATUS_BAD_TABLE, STATUS_OK, STATUS_TRAILING, STATUS_TRUNCATED
from bslz.codec._rans_table import put_eg, put_zero_run, read_eg

U64 = np.uint64
U32 = np.uint32

MAX_LENGTH = 12  # codeword bits at most: 4096-entry tables (16 KiB of pairs), alphabets up to 4096
MAX_ALPHABET = 1 << MAX_LENGTH
NUM_STREAMS = 4

# The statuses are the rANS coder's (the header reader shares its exp-Golomb reader): BAD_TABLE is
# lengths that make no complete prefix code, TRAILING a stream with bits left after its symbols.

_WINDOW = U64(MAX_ALPHABET - 1)
_SYM = U64(0xFFF)
_L = U64(MAX_LENGTH)
_W32 = U64(32)
_LO32 = U64(0xFFFFFFFF)
_3, _5, _7, _8 = U64(3), U64(5), U64(7), U64(8)
_63, _BYTE = U64(63), U64(0xFF)


@njit
def limited_code_lengths(hist, max_length, lengths):
    """Optimal code lengths of at most `max_length` bits for the counts `hist` (package-merge,
    Larmore and Hirschberg): `lengths` (uint8, zeroed, as long as hist) gets a length for every
    symbol with a non-zero count. Needs 2 <= present symbols <= 2**max_length (returns False otherwise).

    Package-merge: the list of level `max_length` is the leaves by weight; each shallower level
    merges the leaves with the pairs ("packages") of the level below. The first 2n - 2 items of
    level 1 make the code: a leaf is one bit longer for every level where it is among the chosen
    leaves, and the chosen items of a level below are the two halves of the packages chosen above.
    """
    present = 0
    for s in range(hist.size):
        if hist[s] > 0:
            present += 1
    if present < 2 or present > (1 << max_length):
        return False
    symbols = np.empty(present, dtype=np.int64)
    weights = np.empty(present, dtype=np.int64)
    t = 0
    for s in range(hist.size):
        if hist[s] > 0:
            symbols[t] = s
            weights[t] = np.int64(hist[s])
            t += 1
    order = np.argsort(weights, kind="mergesort")  # stable: equal counts keep symbol order
    leaves = weights[order]
    n = present
    width = 2 * n
    # per level: the merged list's weights, and how many of its first j items are leaves
    level_weights = np.zeros(width, dtype=np.int64)
    leaf_prefix = np.zeros((max_length + 1, width + 1), dtype=np.int64)
    level_size = np.zeros(max_length + 1, dtype=np.int64)
    level_weights[:n] = leaves
    size = n
    for j in range(n):
        leaf_prefix[max_length, j + 1] = j + 1
    level_size[max_length] = n
    merged = np.empty(width, dtype=np.int64)
    for level in range(max_length - 1, 0, -1):
        packages = size // 2
        a = 0  # next leaf
        b = 0  # next package
        m = 0
        while a < n or b < packages:
            take_leaf = b >= packages or (a < n and leaves[a] <= level_weights[2 * b] + level_weights[2 * b + 1])
            if take_leaf:
                merged[m] = leaves[a]
                a += 1
                leaf_prefix[level, m + 1] = leaf_prefix[level, m] + 1
            else:
                merged[m] = level_weights[2 * b] + level_weights[2 * b + 1]
                b += 1
                leaf_prefix[level, m + 1] = leaf_prefix[level, m]
            m += 1
        level_weights[:m] = merged[:m]
        size = m
        level_size[level] = m
    code_length = np.zeros(n, dtype=np.int64)
    chosen = 2 * n - 2
    for level in range(1, max_length + 1):
        chosen = min(chosen, level_size[level])
        leaves_chosen = leaf_prefix[level, chosen]
        for j in range(leaves_chosen):
            code_length[j] += 1
        chosen = 2 * (chosen - leaves_chosen)
    for j in range(n):
        lengths[symbols[order[j]]] = code_length[j]
    return True


@njit
def reversed_codes(lengths, codes):
    """Canonical codes (by length, then symbol; the first code of each length continues the last
    code of the shorter ones, shifted), bit-reversed into `codes` (uint64) for an LSB-first stream.
    Returns a status: the lengths must make a complete prefix code (Kraft sum exactly 1)."""
    count = np.zeros(MAX_LENGTH + 1, dtype=np.int64)
    for s in range(lengths.size):
        if lengths[s] > MAX_LENGTH:
            return STATUS_BAD_TABLE
        count[lengths[s]] += 1
    count[0] = 0
    kraft = 0
    for length in range(1, MAX_LENGTH + 1):
        kraft += count[length] << (MAX_LENGTH - length)
    if kraft != 1 << MAX_LENGTH:
        return STATUS_BAD_TABLE
    next_code = np.zeros(MAX_LENGTH + 1, dtype=np.int64)
    code = 0
    for length in range(1, MAX_LENGTH + 1):
        code = (code + count[length - 1]) << 1
        next_code[length] = code
    for s in range(lengths.size):
        length = np.int64(lengths[s])
        if length == 0:
            continue
        c = next_code[length]
        next_code[length] += 1
        r = 0
        for _ in range(length):
            r = (r << 1) | (c & 1)
            c >>= 1
        codes[s] = U64(r)
    return STATUS_OK


@njit
def decode_tables(lengths, codes, shift, single, pairs, meta):
    """Fill the lookup tables from complete code lengths and their `reversed_codes`, for symbols
    written shifted left by `shift` into uint16 words (max symbol << shift < 2**16).

    single[window] = symbol | length << 12 of the codeword at the bottom of a MAX_LENGTH-bit window;
    pairs[window] = (s1 << shift) | (s2 << shift) << 16, what one 32-bit store writes, and
    meta[window] (uint16) = total length | symbols (1 or 2) << 8: the second symbol counts when its
    codeword also lies inside the window (else s2 is a guess that the next lookup overwrites)."""
    for s in range(lengths.size):
        length = np.int64(lengths[s])
        if length == 0:
            continue
        entry = np.uint16(s | (length << 12))
        for j in range(1 << (MAX_LENGTH - length)):
            single[np.int64(codes[s]) | (j << length)] = entry
    for x in range(MAX_ALPHABET):
        e1 = np.int64(single[x])
        l1 = e1 >> 12
        e2 = np.int64(single[x >> l1])
        l2 = e2 >> 12
        pairs[x] = U32((((e1 & 0xFFF) << shift) & 0xFFFF) | ((((e2 & 0xFFF) << shift) & 0xFFFF) << 16))
        meta[x] = np.uint16((l1 + l2) | (2 << 8)) if l1 + l2 <= MAX_LENGTH else np.uint16(l1 | (1 << 8))


@njit
def encode_streams(symbols, codewords, quarter, out, stream_words):
    """`_encode_streams`, checking that every symbol has a codeword (returns False if one has none)."""
    return _encode_streams(symbols, codewords, quarter, out, stream_words, True)


@njit
def encode_counted_streams(symbols, codewords, quarter, out, stream_words):
    """`_encode_streams` of symbols whose code was made from their own histogram: each has a
    codeword, so the check is left out (returns True)."""
    return _encode_streams(symbols, codewords, quarter, out, stream_words, False)


@njit_inline
def _encode_streams(symbols, codewords, quarter, out, stream_words, check):
    """Code stream j = symbols[j * quarter: (j + 1) * quarter] into `out` (uint32, at least
    4 * (quarter * MAX_LENGTH // 32 + 1) + 1 words), the streams back to back; stream_words[j] = the
    words of stream j. `codewords[s]` = reversed code | length << 32, for every symbol (callers
    check symbols < size). Returns False, having coded nothing sure, if a symbol has no codeword.

    Symbols go in two at a time: their codewords are joined first (at most 2 MAX_LENGTH = 24 bits),
    off the dependency chain, so that the chain (shift into the buffer, count, spill) runs once a
    pair. The low word is stored after every pair and kept only when 32 bits are full: no branch (a
    spill comes every ~3.5 pairs of a bf16 head, ~4.5 bits a symbol, too irregular to predict), and
    `filled` stays below 32 + 2 MAX_LENGTH, so its bit 5 says "full"; a stream's last store past its
    end is what the next one overwrites first. Four streams in lockstep were slower, a length check
    branching per symbol cost 0.5 ns a symbol more (measured)."""
    n = U64(symbols.size)
    q = U64(quarter)
    missing = U64(0)  # bit 63 set once a length was 0 (length - 1 wraps)
    p = U64(0)
    for j in range(NUM_STREAMS):
        i = min(U64(j) * q, n)  # unsigned indices: no negative-index check (1.9 -> 1.3 ns a symbol)
        hi = min(i + q, n)
        start = p
        acc = U64(0)
        filled = U64(0)
        while i + U64(1) < hi:
            first = codewords[symbols[i]]
            second = codewords[symbols[i + U64(1)]]
            first_length, second_length = first >> _W32, second >> _W32
            missing |= (first_length - U64(1)) | (second_length - U64(1))
            acc |= ((first & _LO32) | ((second & _LO32) << first_length)) << filled
            filled += first_length + second_length
            out[p] = U32(acc & _LO32)
            full = filled & _W32
            acc >>= full
            p += full >> U64(5)
            filled -= full
            i += U64(2)
        if i < hi:  # an odd stream's last symbol
            e = codewords[symbols[i]]
            length = e >> _W32
            missing |= length - U64(1)
            acc |= (e & _LO32) << filled
            filled += length
            out[p] = U32(acc & _LO32)
            full = filled & _W32
            acc >>= full
            p += full >> U64(5)
            filled -= full
        if filled > U64(0):
            out[p] = U32(acc)
            p += U64(1)
        stream_words[j] = np.int64(p - start)
    return (missing >> U64(63)) == U64(0) if check else True  # unchecked: LLVM drops `missing`


@njit_inline
def _lookup_pair(pairs, meta, out, bits, used, o):
    """One table lookup of a fast round, at the bottom of `bits` (what is left of the 64 bits loaded
    for the round): stores two symbols (the second a guess when the entry holds one, overwritten by
    the next lookup); returns the bits shifted past the codewords, `used` and the output position
    after it. The whole entry is added to `used`: its low byte is the bits used (a round's stay
    below 64, so they never carry into the symbol counts above it; the caller keeps `used & 0xFF`),
    and the shift takes the entry mod 64 for free (x86 does), the counts being multiples of 256.
    So the chain from one lookup to the next is a load, a shift and a mask, with no mask of the
    entry and no shift from the round's start (MiniLM bf16's embedding heads, one segment: 113 ->
    94 us, scratch)."""
    x = bits & _WINDOW
    store_pair16(out, o, U64(pairs[x]))
    m = U64(meta[x])
    return bits >> (m & _63), used + m, o + (m >> _8)


@njit
def decode_streams(data, first_word, pairs, meta, single, count, out, shift):
    """Decode `count` symbols (stream j: its quarter) from the streams' bytes `data` (uint8, its
    size a multiple of 4) into out (uint16), each shifted left by `shift`, with `decode_tables`.
    first_word[j] is the 32-bit word where stream j starts, first_word[NUM_STREAMS] = data.size / 4.

    Any content is safe: the tables are complete (every window decodes), a stream reads a byte
    only below its end, and every step moves an output position. Returns a status.

    Fast rounds: each stream loads the 8 bytes holding its next bit (`load_le64`: 57 bits or more
    past it) and makes four lookups (<= 48 bits, <= 8 symbols), so that rounds need no refill
    logic, and min(room / 8, bytes left / 6) of them need no check. Against a 32-bit buffer refilled
    before every two lookups this took a segment of MiniLM bf16 heads from 0.55 to 0.49 ns a symbol.
    The streams are LSB first in little-endian words, so a stream is also LSB first by bytes.
    """
    quarter = U64((count + NUM_STREAMS - 1) // NUM_STREAMS)
    n = U64(count)
    sh = U64(shift)
    o0, o1, o2, o3 = min(U64(0), n), min(quarter, n), min(U64(2) * quarter, n), min(U64(3) * quarter, n)
    e0, e1, e2, e3 = min(o0 + quarter, n), min(o1 + quarter, n), min(o2 + quarter, n), min(o3 + quarter, n)
    # each stream's bit position, and the word its stream ends at
    s0, s1, s2, s3 = U64(first_word[0]), U64(first_word[1]), U64(first_word[2]), U64(first_word[3])
    s0, s1, s2, s3 = s0 << _5, s1 << _5, s2 << _5, s3 << _5
    w0, w1, w2, w3 = U64(first_word[1]), U64(first_word[2]), U64(first_word[3]), U64(first_word[4])
    # a fast round loads 8 bytes from the byte its position is in, and moves it by 6 bytes at most:
    # stream j has max(0, (4 w_j - 8 - byte) / 6 + 1) rounds left inside its own bytes
    while True:
        room = min(min((e0 - o0) >> _3, (e1 - o1) >> _3), min((e2 - o2) >> _3, (e3 - o3) >> _3))
        rounds = min(min(_rounds_left(s0, w0), _rounds_left(s1, w1)), min(_rounds_left(s2, w2), _rounds_left(s3, w3)))
        rounds = min(room, rounds)
        if rounds == U64(0):
            break
        for _ in range(rounds):
            b0, b1 = load_le64(data, s0 >> _3), load_le64(data, s1 >> _3)
            b2, b3 = load_le64(data, s2 >> _3), load_le64(data, s3 >> _3)
            u0, u1, u2, u3 = s0 & _7, s1 & _7, s2 & _7, s3 & _7
            b0, b1, b2, b3 = b0 >> u0, b1 >> u1, b2 >> u2, b3 >> u3
            for _ in range(4):  # unrolled by LLVM: four lookups a stream, the streams in lockstep
                b0, u0, o0 = _lookup_pair(pairs, meta, out, b0, u0, o0)
                b1, u1, o1 = _lookup_pair(pairs, meta, out, b1, u1, o1)
                b2, u2, o2 = _lookup_pair(pairs, meta, out, b2, u2, o2)
                b3, u3, o3 = _lookup_pair(pairs, meta, out, b3, u3, o3)
            u0, u1, u2, u3 = u0 & _BYTE, u1 & _BYTE, u2 & _BYTE, u3 & _BYTE  # the bits used (see _lookup_pair)
            s0, s1, s2, s3 = (s0 & ~_7) + u0, (s1 & ~_7) + u1, (s2 & ~_7) + u2, (s3 & ~_7) + u3
    words = data.view(np.uint32)
    status = _finish_stream(words, single, out, sh, s0, w0, o0, e0)
    if status == STATUS_OK:
        status = _finish_stream(words, single, out, sh, s1, w1, o1, e1)
    if status == STATUS_OK:
        status = _finish_stream(words, single, out, sh, s2, w2, o2, e2)
    if status == STATUS_OK:
        status = _finish_stream(words, single, out, sh, s3, w3, o3, e3)
    return status


@njit_inline
def _rounds_left(position, end_word):
    """Fast rounds a stream at bit `position` can make before its 8-byte loads pass `end_word`."""
    byte, last = position >> _3, end_word << U64(2)  # (last: the stream's end, in bytes)
    return (last - U64(8) - byte) // U64(6) + U64(1) if byte + U64(8) <= last else U64(0)


@njit
def _finish_stream(words, single, out, sh, position, w_end, o, end):
    """Decode the rest of one stream, from bit `position`, a symbol at a time, checking every read,
    then check that it ends exactly: every word read, fewer than 32 bits left, and those zero
    (padding)."""
    p = position >> _5
    if p < w_end:  # the rest of the word the position is in
        b = U64(words[p]) >> (position & U64(31))
        n = _W32 - (position & U64(31))
        p += U64(1)
    else:
        b, n = U64(0), U64(0)
    while o < end:
        if n <= _W32 and p < w_end:
            b |= U64(words[p]) << n
            n += _W32
            p += U64(1)
        e = U64(single[b & _WINDOW])
        length = e >> U64(12)
        if length > n:
            return STATUS_TRUNCATED
        out[o] = (e & _SYM) << sh
        b >>= length
        n -= length
        o += U64(1)
    if p != w_end or n >= _W32 or b != U64(0):
        return STATUS_TRAILING
    return STATUS_OK


@njit
def write_header(lengths, max_symbol, words):
    """Header bits, most significant first, into zeroed `words`: EG0(max_symbol), then per symbol
    0..max_symbol its 4-bit code length; a zero length is followed by EG0(r), r more zero lengths
    (never reaching max_symbol). Returns the length in bits."""
    w, acc, filled = put_eg(words, 0, U64(0), U64(0), U64(max_symbol), U64(0))
    s = 0
    while s <= max_symbol:
        length = U64(lengths[s])
        w, acc, filled = put_bits(words, w, acc, filled, length, U64(4))
        if length == U64(0):
            w, acc, filled, s = put_zero_run(words, w, acc, filled, lengths, s, max_symbol)
        else:
            s += 1
    return finish_bits(words, w, acc, filled, 0)[1]


@njit
def read_header(words, nbits, lengths):
    """Parse a header into `lengths` (uint8, size MAX_ALPHABET, zeroed): (status, max_symbol, bits)."""
    nbits = U64(nbits)
    status, max_symbol, pos = read_eg(words, U64(0), nbits, U64(0))
    if status != STATUS_OK:
        return status, 0, pos
    if max_symbol >= U64(MAX_ALPHABET):
        return STATUS_BAD_TABLE, 0, pos
    top = np.int64(max_symbol)
    s = 0
    while s <= top:
        if pos + U64(4) > nbits:
            return STATUS_TRUNCATED, 0, pos
        length = peek64(words, pos) >> U64(60)
        pos += U64(4)
        if length > _L:
            return STATUS_BAD_TABLE, 0, pos
        if length == U64(0):
            status, r, pos = read_eg(words, pos, nbits, U64(0))
            if status != STATUS_OK:
                return status, 0, pos
            if r >= U64(top - s):  # the run may not reach max_symbol, whose length is not zero
                return STATUS_BAD_TABLE, 0, pos
            s += 1 + np.int64(r)
        else:
            lengths[s] = length
            s += 1
    return STATUS_OK, top, pos
