"""Numba kernels for the static rANS table coder. Callers validate input; see `rans.py`.

Coder: 64-bit states kept in [STATE_LOW, 2**63), 32-bit renormalisation, probabilities in units of
1/2**SCALE_BITS. The state range is 2**17 times the scale, so the coder's own loss is negligible
next to the cost of quantising the frequencies. NUM_STATES states are interleaved: symbol i goes
through state i % NUM_STATES, and all states share one word stream, so decoding runs
NUM_STATES independent dependency chains at once.

The frequency table (histogram, quantization, the header that carries it) is in `_rans_table`.
Decoders return a status instead of raising (STATUS_*).
"""

import numpy as np

from bslz.codec._jit import bit_length, mulhi64, njit, njit_inline, njit_variant

U64 = np.uint64
U32 = np.uint32

SCALE_BITS = 14
SCALE = 1 << SCALE_BITS
MAX_ALPHABET = 4096
NUM_STATES = 4  # the unrolled coder loops are written out for exactly four
STATE_LOW_BITS = 31  # states live in [2**31, 2**63): one 32-bit word in or out per symbol at most
STATE_LOW = 1 << STATE_LOW_BITS

STATUS_OK = 0
STATUS_TRUNCATED = 1
STATUS_BAD_TABLE = 2  # frequency table that is not a valid normalised table
STATUS_BAD_STATE = 3  # a state outside [STATE_LOW, 2**63) or not back at STATE_LOW at the end
STATUS_TRAILING = 4  # words left over once every symbol is decoded
STATUS_SYMBOL_TOO_LARGE = 5  # encoder input has a symbol >= MAX_ALPHABET

_SB = U64(SCALE_BITS)
_MASK = U64(SCALE - 1)
_SCALE64 = U64(SCALE)
_LOW = U64(STATE_LOW)
_HIGH = U64(1) << U64(63)
_W32 = U64(32)
_LO32 = U64(0xFFFFFFFF)
# encoder: a state at or above freq << _XMAX_SHIFT would leave [LOW, 2**63) once encoded
_XMAX_SHIFT = U64(STATE_LOW_BITS - SCALE_BITS + 32)


@njit
def build_slot_table(freqs, starts, nsym, slot_sym):
    """slot_sym[slot] = the symbol whose range [start, start + freq) holds slot."""
    for s in range(nsym):
        lo = np.int64(starts[s])
        for t in range(lo, lo + np.int64(freqs[s])):
            slot_sym[t] = s


@njit
def reciprocals(freqs, rcps, shifts):
    """Per frequency f >= 2: rcp = ceil(2**(63 + b) / f) with b = ceil(log2 f), and shift b - 1, so
    that x // f == mulhi64(x, rcp) >> shift for every x < 2**63 (Alverson, "Integer division using
    reciprocals"). The 128-bit dividend is divided in two 64-bit steps (it is x1 * 2**32 + f - 1)."""
    for s in range(freqs.size):
        f = U64(freqs[s])
        if f < U64(2):
            continue  # f = 1 divides by itself (see encode_step); absent symbols are never coded
        bits = bit_length(f - U64(1))
        x1 = U64(1) << (bits + U64(31))
        t1 = x1 // f
        t0 = ((x1 % f) << _W32 | (f - U64(1))) // f
        rcps[s] = (t1 << _W32) + t0
        shifts[s] = bits - U64(1)


@njit
def coding_table(freqs, starts, table):
    """table[s] = what encode_step takes for symbol s: (the state from which it spills a word, the
    reciprocal of its frequency f, the bias added, and SCALE - f with the reciprocal's shift in the
    high half): one row of four words a symbol, where four arrays took four loads from four lines.

    f = 1 needs no branch in the step: the reciprocal 2**64 - 1 with shift 0 gives q = x - 1 for
    every x >= 1 (states are), and the bias start + SCALE - 1 gives the 1 back, so that the new
    state is x + bias + q * (SCALE - 1) = x * SCALE + start, as for any f."""
    rcps = np.zeros(freqs.size, dtype=np.uint64)
    shifts = np.zeros(freqs.size, dtype=np.uint64)
    reciprocals(freqs, rcps, shifts)
    for s in range(freqs.size):
        f = U64(freqs[s])
        bias = U64(starts[s])
        if f == U64(1):
            rcps[s], shifts[s], bias = ~U64(0), U64(0), bias + _SCALE64 - U64(1)
        table[s, 0] = f << _XMAX_SHIFT
        table[s, 1] = rcps[s]
        table[s, 2] = bias
        table[s, 3] = (_SCALE64 - f) | (shifts[s] << _W32)


@njit_inline
def encode_step(x, x_max, rcp, bias, multiplier_shift):
    """Push a symbol (its `coding_table` row) into state x: (state, spilled?, spilled low word).
    Takes no arrays: numba left reference counting inside the loop when the helper took `out`.

    The quotient x // f comes from a multiply by the reciprocal: half the time of a float64
    reciprocal with fix-ups, which was itself ~10 % faster than a 64-bit divide (measured), and
    without a branch to mispredict. The new state (q << SCALE_BITS) + (x - q * f) + start is
    computed as x + start + q * (SCALE - f): one multiply after the quotient, not two operations."""
    spill = x >= x_max
    word = U32(x & _LO32)
    x = (x >> _W32) if spill else x
    q = mulhi64(x, rcp) >> (multiplier_shift >> _W32)
    return x + bias + q * (multiplier_shift & _LO32), spill, word


@njit
def encode_states(symbols, table, out):
    """rANS-code `symbols` backwards into the tail of `out` (uint32, >= size + 2 * NUM_STATES).

    Returns the index of the first word written: out[first:] is the payload, the final states
    first (low word, high word, state 0 first), then renormalisation words in decoding order.
    `table`: the symbols' `coding_table`.

    Every step stores its low word at pos - 1 and moves pos only on a spill (no branch): a
    stored-but-kept word lies below pos and is overwritten or left out of the payload.
    """
    n = U64(symbols.size)
    pos = U64(out.size)
    xs = np.full(NUM_STATES, _LOW, dtype=np.uint64)
    four = U64(4)
    i = n
    # the last n % 4 symbols first, so the unrolled loop below sees whole rounds of four
    while i % four != U64(0):
        i -= U64(1)
        j = i % four
        s = symbols[i]
        xs[j], spill, word = encode_step(xs[j], table[s, 0], table[s, 1], table[s, 2], table[s, 3])
        out[pos - U64(1)] = word
        pos -= U64(spill)
    x0 = xs[0]
    x1 = xs[1]
    x2 = xs[2]
    x3 = xs[3]
    while i > U64(0):
        i -= four
        s = symbols[i + U64(3)]
        x3, spill, word = encode_step(x3, table[s, 0], table[s, 1], table[s, 2], table[s, 3])
        out[pos - U64(1)] = word
        pos -= U64(spill)
        s = symbols[i + U64(2)]
        x2, spill, word = encode_step(x2, table[s, 0], table[s, 1], table[s, 2], table[s, 3])
        out[pos - U64(1)] = word
        pos -= U64(spill)
        s = symbols[i + U64(1)]
        x1, spill, word = encode_step(x1, table[s, 0], table[s, 1], table[s, 2], table[s, 3])
        out[pos - U64(1)] = word
        pos -= U64(spill)
        s = symbols[i]
        x0, spill, word = encode_step(x0, table[s, 0], table[s, 1], table[s, 2], table[s, 3])
        out[pos - U64(1)] = word
        pos -= U64(spill)
    xs[0] = x0
    xs[1] = x1
    xs[2] = x2
    xs[3] = x3
    used = min(n, U64(NUM_STATES))
    for j in range(np.int64(used) - 1, -1, -1):
        pos -= U64(2)
        out[pos] = U32(xs[j] & _LO32)
        out[pos + U64(1)] = U32(xs[j] >> _W32)
    return pos


@njit
def decode_step(x, slot_sym, freqs, starts):
    """One symbol out of state x: (symbol, state before renormalisation)."""
    slot = x & _MASK
    s = slot_sym[slot]
    return s, U64(freqs[s]) * (x >> _SB) + slot - U64(starts[s])


def make_state_decoder(put4, put1):
    """A kernel decode(words, slot_sym, freqs, starts, out, context) -> status that decodes out.size
    symbols from `words` (the payload) and hands them to `put4(out, i, s0, s1, s2, s3, context,
    carry) -> carry` four at a time (symbols i .. i + 3) and to `put1(out, i, s, context, carry)
    -> carry` one at a time at the end (`carry`: a uint64 the sink keeps from call to call, 0 at
    first). The sinks are inlined: `decode_states` shifts each symbol into out; dependent
    quantization's decoder (`_dq_rans`) maps them to values there, in the same loop.

    Any word content is safe: every word position is checked before it is read, a state only
    shrinks during a step and takes at most one word, so the loop ends after out.size steps.

    Tried and dropped (measured): two payloads decoded interleaved in one loop (eight chains) ran
    1.30-1.34 -> 1.00-1.12 ns a symbol on one thread, but whole-file decoding with both cores busy
    gained nothing (MiniLM bf16, 8 interleaved rounds: 47.4 / 48.0 ms); four words loaded ahead of
    the states and selected without a load: 1.28 -> 1.67 ns; a slot-indexed (freq, bias) table:
    1.34 -> 1.49 ns.
    """

    @njit_variant(put4.__name__.lstrip("_"))
    def decode(words, slot_sym, freqs, starts, out, context):
        count = U64(out.size)
        nw = U64(words.size)
        used = min(count, U64(NUM_STATES))
        if nw < U64(2) * used:
            return STATUS_TRUNCATED
        xs = np.full(NUM_STATES, _LOW, dtype=np.uint64)
        for j in range(used):
            x = U64(words[2 * j]) | (U64(words[2 * j + 1]) << _W32)
            if x < _LOW or x >= _HIGH:
                return STATUS_BAD_STATE
            xs[j] = x
        pos = U64(2) * used
        x0 = xs[0]
        x1 = xs[1]
        x2 = xs[2]
        x3 = xs[3]
        i = U64(0)
        four = U64(4)
        carry = U64(0)
        # fast path: four symbols and at most four words a round, so one check a round suffices.
        # Renormalisation is branchless (a word is read every step, used when needed): a state
        # spills about every 32 / (bits a symbol) steps, too irregular for the branch predictor.
        while i + four <= count and pos + four <= nw:
            s0, x0 = decode_step(x0, slot_sym, freqs, starts)
            s1, x1 = decode_step(x1, slot_sym, freqs, starts)
            s2, x2 = decode_step(x2, slot_sym, freqs, starts)
            s3, x3 = decode_step(x3, slot_sym, freqs, starts)
            carry = put4(out, i, s0, s1, s2, s3, context, carry)
            need = x0 < _LOW
            w = (x0 << _W32) | U64(words[pos])
            x0 = w if need else x0
            pos += U64(need)
            need = x1 < _LOW
            w = (x1 << _W32) | U64(words[pos])
            x1 = w if need else x1
            pos += U64(need)
            need = x2 < _LOW
            w = (x2 << _W32) | U64(words[pos])
            x2 = w if need else x2
            pos += U64(need)
            need = x3 < _LOW
            w = (x3 << _W32) | U64(words[pos])
            x3 = w if need else x3
            pos += U64(need)
            i += four
        xs[0] = x0
        xs[1] = x1
        xs[2] = x2
        xs[3] = x3
        # tail: one symbol at a time, checking every read
        while i < count:
            j = i % U64(NUM_STATES)
            s, x = decode_step(xs[j], slot_sym, freqs, starts)
            carry = put1(out, i, s, context, carry)
            if x < _LOW:
                if pos >= nw:
                    return STATUS_TRUNCATED
                x = (x << _W32) | U64(words[pos])
                pos += U64(1)
            xs[j] = x
            i += U64(1)
        for j in range(NUM_STATES):
            if xs[j] != _LOW:
                return STATUS_BAD_STATE
        if pos != nw:
            return STATUS_TRAILING
        return STATUS_OK

    return decode


@njit_inline
def _put_shifted4(out, i, s0, s1, s2, s3, shift, carry):
    out[i] = U64(s0) << shift
    out[i + U64(1)] = U64(s1) << shift
    out[i + U64(2)] = U64(s2) << shift
    out[i + U64(3)] = U64(s3) << shift
    return carry


@njit_inline
def _put_shifted1(out, i, s, shift, carry):
    out[i] = U64(s) << shift
    return carry


_decode_shifted = make_state_decoder(_put_shifted4, _put_shifted1)


@njit
def decode_states(words, slot_sym, freqs, starts, out, shift):
    """`make_state_decoder`'s decode with each symbol shifted left by `shift` (a float's exponent
    straight into its word: a separate merge pass took ~0.4 ns a value) -> status. A module-level
    function, not the factory's closure, so that numba finds it in its cache: see `_dq_search`'s
    `quantize_blocks_float32`."""
    return _decode_shifted(words, slot_sym, freqs, starts, out, shift)


@njit
def encode_with_table(symbols, freqs):
    """The payload words of `symbols` coded with the table `freqs` (`encode_states`' out[first:])."""
    starts = np.zeros(freqs.size, dtype=np.uint32)
    for s in range(1, freqs.size):
        starts[s] = starts[s - 1] + freqs[s - 1]
    coding = np.zeros((freqs.size, 4), dtype=np.uint64)
    coding_table(freqs, starts, coding)
    out = np.empty(symbols.size + 2 * NUM_STATES, dtype=np.uint32)
    first = encode_states(symbols, coding, out)
    return out[first:]
