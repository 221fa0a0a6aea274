"""Dependent (trellis-coded) quantization: two interleaved scalar quantizers and an 8-state machine.

Q0 reconstructs index k at 2·k·Δ, Q1 at (2·k − sgn k)·Δ (0 for k = 0). The quantizer for each value
is the one of the current state (QUANTIZER[state]), and the next state is TRANSITIONS[state][k & 1];
the state starts at 0 and is reset every `block` values. Together the two quantizers cover the
lattice of step Δ while each index spends the bits of a lattice of step 2Δ; the encoder picks the
index sequence by a Viterbi search over the states that minimises the squared error. This is the
"dependent quantization" of VVC and NNCodec (there with 4 states). On MiniLM's weights, at equal
index entropy, it buys 0.83-0.95 dB over uniform rounding with VVC's 4-state machine and
0.93-1.04 dB with the 8-state machine below, found by a local search from two interleaved
copies of the 4-state one (benchmarks/dq_study.py).

Each value is reconstructed at one of the two levels of its quantizer around it (levels are at
most 2Δ apart), so |x − x̂| < 2Δ. Reconstruction is an integer times Δ in float64: correctly
rounded, the same bits everywhere.
"""

import math

import numpy as np

from bslz.codec._bits import bfloat16_bits
from bslz.codec._dq_acs import make_add_compare_select
from bslz.codec._expgolomb_kernels import zigzag
from bslz.codec._jit import gather_byte_bits, njit, njit_inline
from bslz.codec._parallel import default_workers, parallel_map, split_range
from bslz.codec.expgolomb import signed_to_unsigned
from bslz.codec.quantize import signal_and_noise
from bslz.errors import InvalidArgumentError

TRANSITIONS = np.array([[0, 4], [6, 0], [1, 7], [5, 1], [2, 6], [4, 2], [3, 5], [7, 3]], dtype=np.int64)
QUANTIZER = np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)
NUM_STATES = len(TRANSITIONS)
DEFAULT_BLOCK = 1 << 16
U64 = np.uint64
MAX_INDEX = 2**30  # |k|: its se(v) mapping then fits uint32 with room
_INF = 1e300


@njit_inline
def reconstruct_index(k, quantizer, step):
    """Value of index k under quantizer 0 or 1: (2k - quantizer * sgn k) * step in float64.
    Branch-free: in the Viterbi and the decoder the signs are random (a branch mispredicts)."""
    sgn = np.int64(k > 0) - np.int64(k < 0)
    return np.float64(2 * k - quantizer * sgn) * step


@njit_inline
def _candidates(c, quantizer):
    """The two indices of `quantizer` whose levels bracket v, from c = v / step (branch-free, as
    above). One division serves both quantizers: c / 2 is exactly v / (2 step) (halving commutes
    with rounding away from the subnormal range)."""
    if quantizer == 0:  # a literal where inlined: folded
        k = np.int64(math.floor(c * 0.5))
        return k, k + 1
    # levels 0, ±1, ±3, ...: for |c| in [2m - 1, 2m + 1) the indices m and m + 1, signed like c
    # (-0.0 counts as positive); a sign taken by multiplication, not a branch
    m = np.int64(math.floor((abs(c) + 1.0) * 0.5))
    sign = 1 - 2 * np.int64(c < 0)
    return sign * m, sign * (m + 1)


def _predecessors(transitions):
    """(states, parities), each (NUM_STATES, 2): the two (state, k & 1) that lead to each state,
    lower state first (the Viterbi keeps the first of equal costs)."""
    pairs = [
        sorted((s, p) for s in range(len(transitions)) for p in (0, 1) if transitions[s][p] == ns)
        for ns in range(len(transitions))
    ]
    assert all(len(p) == 2 for p in pairs), "every state has two predecessors"
    return np.array([[s for s, _ in p] for p in pairs], dtype=np.int64), np.array(
        [[q for _, q in p] for p in pairs], dtype=np.int64
    )


PRED_STATES, PRED_PARITIES = _predecessors(TRANSITIONS)


# The add-compare-select step of the search, as vector code (`_dq_acs`): one block, or two in lockstep
_add_compare_select = make_add_compare_select(PRED_STATES, PRED_PARITIES, QUANTIZER)
_add_compare_select_2 = make_add_compare_select(PRED_STATES, PRED_PARITIES, QUANTIZER, chains=2)


@njit_inline
def _errors(v, c, quantizer, step):
    """Squared errors of `quantizer`'s two levels around v (c = v / step): (even index's, odd index's)."""
    k1, k2 = _candidates(c, quantizer)
    d1 = v - reconstruct_index(k1, quantizer, step)
    d2 = v - reconstruct_index(k2, quantizer, step)
    e1, e2 = d1 * d1, d2 * d2
    odd = (k1 & 1) == 1
    return e2 if odd else e1, e1 if odd else e2


def _trace_table():
    """TRACE[state, decision byte]: the step back from `state` after a value whose decisions are
    that byte: the predecessor state (bits 0-2), the parity of the value's index (bit 3) and the
    predecessor's quantizer (bit 4). One lookup per value on the backtrack's dependency chain."""
    trace = np.zeros((NUM_STATES, 256), dtype=np.uint8)
    for s in range(NUM_STATES):  # all 256 bytes at once (no Python loop over them at import)
        which = (np.arange(256) >> s) & 1
        prev, parity = PRED_STATES[s, which], PRED_PARITIES[s, which]
        trace[s] = prev | parity << 3 | QUANTIZER[prev] << 4
    return trace


TRACE = _trace_table()
_SUB_BLOCK = 512  # values whose candidate errors are computed ahead of the search (fits L1)


@njit
def _block_errors(x, step, errors, row):
    """errors[row + r, i] for the values x (a sub-block): the squared errors of the four candidate
    levels, two per quantizer, one of each parity (rows: quantizer 0 even / odd, quantizer 1
    even / odd). No chain: this loop vectorizes."""
    for i in range(x.size):
        v = np.float64(x[i])
        c = v / step
        errors[row, i], errors[row + 1, i] = _errors(v, c, 0, step)
        errors[row + 2, i], errors[row + 3, i] = _errors(v, c, 1, step)


@njit
def _best_end_state(costs, lo):
    """The cheapest of the states costs[lo : lo + 8] (the first of equal costs)."""
    s = 0
    for t in range(1, NUM_STATES):
        if costs[lo + t] < costs[lo + s]:
            s = t
    return s


@njit
def _indices(x, step, trace, out):
    """out[i]: the index of value i on the traced path (trace[i]: its quantizer and parity)."""
    for i in range(x.size):
        c = np.float64(x[i]) / step
        a0, b0 = _candidates(c, 0)  # each quantizer's two candidates; the path picks one quantizer
        a1, b1 = _candidates(c, 1)  # and the parity of the index, which picks one of the two
        q1 = (trace[i] >> 4) & 1
        parity = np.int64((trace[i] >> 3) & 1)
        k1 = a1 if q1 else a0
        k2 = b1 if q1 else b0
        out[i] = k1 if (k1 & 1) == parity else k2


@njit
def _quantize_block(x, step, out, decisions, trace, errors, costs):
    """Viterbi search over the values x (one block); writes their indices to out.

    Three passes, so that only the add-compare-select runs on the dependency chain (one loop doing
    everything ran 3x slower, measured): per sub-block, the errors (`_block_errors`), then each
    state takes the cheaper of its two predecessors (decisions[i]: one bit per state, 1 for the
    second predecessor; `_dq_acs`). Then the walk back (`_trace_back`: trace[i], the TRACE entry
    of each step back), then the indices (`_indices`), no chain left.

    4.5 ns a value on one thread (MiniLM-like data), 6.7 with a scalar add-compare-select and a
    sequential walk back; 3.6 for two blocks in lockstep (`_quantize_block_pair`). Tried and
    dropped: eight blocks in lockstep, one a SIMD lane (the blocks are independent): numba's LLVM
    left the lane loop scalar (vaddsd, not vaddpd), 12.7-15 ns."""
    costs[:NUM_STATES] = _INF
    costs[0] = 0.0
    for lo in range(0, x.size, _SUB_BLOCK):
        xs = x[lo : lo + _SUB_BLOCK]
        _block_errors(xs, step, errors, 0)
        _add_compare_select(costs[:NUM_STATES], errors[:4], decisions, decisions.size, lo, xs.size)
    _trace_back(decisions[: x.size], trace, _best_end_state(costs, 0), TRACE_WARM_UP)
    _indices(x, step, trace, out)


@njit
def _quantize_block_pair(xa, xb, step, out_a, out_b, decisions, trace, errors, costs):
    """`_quantize_block` of two blocks of the same size at once: their add-compare-select chains
    interleaved in one loop (each step waits ~10 cycles for the last: two chains hide each other's
    wait). decisions: two blocks' room, block a's first; errors: 8 rows; costs: 16."""
    n = xa.size
    half = decisions.size // 2
    costs[:] = _INF
    costs[0] = 0.0
    costs[NUM_STATES] = 0.0
    for lo in range(0, n, _SUB_BLOCK):
        m = min(_SUB_BLOCK, n - lo)
        _block_errors(xa[lo : lo + m], step, errors, 0)
        _block_errors(xb[lo : lo + m], step, errors, 4)
        _add_compare_select_2(costs, errors, decisions, half, lo, m)
    _trace_back(decisions[:n], trace, _best_end_state(costs, 0), TRACE_WARM_UP)
    _indices(xa, step, trace, out_a)
    _trace_back(decisions[half : half + n], trace, _best_end_state(costs, NUM_STATES), TRACE_WARM_UP)
    _indices(xb, step, trace, out_b)


# Paths traced back from any two states meet within a few dozen values in practice (measured: every
# block of MiniLM-like data, at every step tried, within 128); a guess that had not met is redone.
TRACE_WARM_UP = 128


@njit
def _trace_segment(decisions, trace, s, lo, hi):
    """trace[i] for values hi - 1 down to lo, from s, the state after value hi - 1; returns the state
    before value lo."""
    for i in range(hi - 1, lo - 1, -1):
        step_back = TRACE[s, decisions[i]]
        trace[i] = step_back
        s = step_back & 7
    return s


@njit
def _trace_back(decisions, trace, s, warm_up):
    """trace[i] = the step back at value i of the path that ends in state s (`_trace_table`); the
    number of quarters redone (for the tests).

    Each step back waits for the last (a table lookup, ~7 cycles), so the block is traced as four
    quarters at once: the top one from s, each lower one from the state reached by tracing
    `warm_up` values above it from state 0. Once the exact state entering a quarter is known, a
    quarter whose guess differs is traced again from it: the result is the sequential walk's, bit
    for bit. 1.8 -> 0.6 ns a value (one thread)."""
    n = decisions.size
    q = n // 4
    if q < warm_up or warm_up < 1:
        _trace_segment(decisions, trace, s, 0, n)
        return 0
    g1 = g2 = g3 = 0  # guessed states after values 3q - 1, 2q - 1 and q - 1
    for j in range(warm_up):
        g1 = TRACE[g1, decisions[3 * q + warm_up - 1 - j]] & 7
        g2 = TRACE[g2, decisions[2 * q + warm_up - 1 - j]] & 7
        g3 = TRACE[g3, decisions[q + warm_up - 1 - j]] & 7
    s0, s1, s2, s3 = s, g1, g2, g3
    for j in range(q):  # the top quarter's q highest values, and the three lower quarters
        i = n - 1 - j
        step_back = TRACE[s0, decisions[i]]
        trace[i] = step_back
        s0 = step_back & 7
        i = 3 * q - 1 - j
        step_back = TRACE[s1, decisions[i]]
        trace[i] = step_back
        s1 = step_back & 7
        i = 2 * q - 1 - j
        step_back = TRACE[s2, decisions[i]]
        trace[i] = step_back
        s2 = step_back & 7
        i = q - 1 - j
        step_back = TRACE[s3, decisions[i]]
        trace[i] = step_back
        s3 = step_back & 7
    s0 = _trace_segment(decisions, trace, s0, 3 * q, n - q)  # the top quarter's n % 4 extra values
    redone = 0
    if s0 != g1:
        s1 = _trace_segment(decisions, trace, s0, 2 * q, 3 * q)
        redone += 1
    if s1 != g2:
        s2 = _trace_segment(decisions, trace, s1, q, 2 * q)
        redone += 1
    if s2 != g3:
        _trace_segment(decisions, trace, s2, 0, q)
        redone += 1
    return redone


@njit
def _quantize_blocks(x, step, block, out, b_lo, b_hi):
    """Blocks b_lo..b_hi of x, two full blocks at a time while there are two."""
    decisions = np.empty(2 * block, dtype=np.uint8)
    trace = np.empty(block, dtype=np.uint8)
    errors = np.empty((8, _SUB_BLOCK))
    costs = np.empty(2 * NUM_STATES)
    b = b_lo
    while b < b_hi:
        lo, mid, hi = b * block, min(x.size, (b + 1) * block), min(x.size, (b + 2) * block)
        if b + 1 < b_hi and hi - mid == mid - lo:
            _quantize_block_pair(x[lo:mid], x[mid:hi], step, out[lo:mid], out[mid:hi], decisions, trace, errors, costs)
            b += 2
        else:
            _quantize_block(x[lo:mid], step, out[lo:mid], decisions[:block], trace, errors, costs)
            b += 1


def _eight_step_tables():
    """(NEXT8, QUANTIZERS8), each (NUM_STATES, 256): from a state and the parities of the next eight
    indices (bit j: index j), the state after them (uint8) and the quantizer of each of the eight,
    one a byte (uint64, little-endian: index j at byte j). The decoder's state chain then takes one
    lookup per eight values instead of eight."""
    state = np.repeat(np.arange(NUM_STATES), 256).reshape(NUM_STATES, 256)  # every (start, parities)
    parities = np.tile(np.arange(256), (NUM_STATES, 1))
    quantizers8 = np.zeros((NUM_STATES, 256), dtype=np.uint64)
    for j in range(8):  # all 2048 chains a step at a time (no Python loop over them at import)
        quantizers8 |= QUANTIZER[state].astype(np.uint64) << np.uint64(8 * j)
        state = TRANSITIONS[state, (parities >> j) & 1]
    return state.astype(np.uint8), quantizers8


NEXT8, QUANTIZERS8 = _eight_step_tables()
# NEXT8[:, byte] packed in a word: byte s holds 8 x NEXT8[s, byte], so that (word >> 8s) & 0x38 is
# 8 x the next state (every parity permutes the states, so does every byte of them)
NEXT8_SHIFTS = (
    NEXT8.astype(np.uint64) * np.uint64(8) << (np.uint64(8) * np.arange(NUM_STATES, dtype=np.uint64))[:, None]
).sum(axis=0, dtype=np.uint64)


@njit
def _block_quantizers(ub, parity, quantizer, parity8, quantizer8):
    """quantizer[i]: the quantizer each index of one block (se(v) symbols ub) was coded with, the
    state starting at 0; returns the largest symbol.

    The state chain is the slow part (each state waits for the last): it runs on the parities
    alone, eight at a time, and the eight steps are a permutation of the states (each parity
    permutes them), packed in one word loaded off the chain, so that the chain itself is a shift
    and a mask (a table lookup on the chain: 0.28 -> 0.14 ns a value). The loops around it have no
    chain and vectorize (a byte per value in and out of the chain: bit fields did not vectorize)."""
    largest = U64(0)  # max symbol: a max reduction vectorizes, an `ok &=` flag did not
    n = ub.size
    for i in range(n):  # |index| = (u + 1) >> 1 grows with u, and its parity is the index's
        largest = max(largest, U64(ub[i]))
        parity[i] = ((U64(ub[i]) + U64(1)) >> U64(1)) & U64(1)
    s8 = U64(0)  # 8 x the state
    for g in range(n // 8):
        byte = gather_byte_bits(parity8[g])  # the eight parities, index j at bit j
        quantizer8[g] = QUANTIZERS8[s8 >> U64(3), byte]
        s8 = (NEXT8_SHIFTS[byte] >> s8) & U64(0x38)  # the chain: a shift and a mask, no load
    s = np.int64(s8 >> U64(3))
    for i in range(8 * (n // 8), n):  # the block's last values, one at a time
        quantizer[i] = QUANTIZER[s]
        s = TRANSITIONS[s, parity[i]]
    return largest


@njit
def _dequantize_blocks(u, step, block, max_index, out, b_lo, b_hi):
    """Values of the indices whose se(v) mappings are u, in blocks b_lo..b_hi, the state restarting
    at 0 in each block; False if an index passes max_index."""
    largest = U64(0)
    words = (block + 7) // 8
    parity = np.zeros(8 * words, dtype=np.uint8)  # k & 1 of each index of the block
    quantizer = np.zeros(8 * words, dtype=np.uint8)  # the quantizer each index was coded with
    parity8, quantizer8 = parity.view(np.uint64), quantizer.view(np.uint64)  # eight a word
    for b in range(b_lo, b_hi):
        # slices indexed from 0: an index known >= 0 lets the loops vectorize
        ub, ob = u[b * block : (b + 1) * block], out[b * block : (b + 1) * block]
        largest = max(largest, _block_quantizers(ub, parity, quantizer, parity8, quantizer8))
        for i in range(ub.size):
            ob[i] = np.float64(_level(np.int64(ub[i]), np.int64(quantizer[i]))) * step
    return (largest + U64(1)) >> U64(1) <= U64(max_index)


_BF16_PIECE = 4096  # float32 values between the two loops: an L1-sized scratch


@njit
def _dequantize_blocks_to_bfloat16(u, step, block, max_index, out, b_lo, b_hi):
    """`_dequantize_blocks` rounded to float32 and then to bfloat16 (the bit patterns, uint16) as
    `from_float32` rounds, a piece at a time through a small scratch: no float32 array of the
    whole range written and read back (0.47 -> 0.3 ns a value)."""
    largest = U64(0)
    words = (block + 7) // 8
    parity = np.zeros(8 * words, dtype=np.uint8)
    quantizer = np.zeros(8 * words, dtype=np.uint8)
    parity8, quantizer8 = parity.view(np.uint64), quantizer.view(np.uint64)
    scratch = np.empty(_BF16_PIECE, dtype=np.float32)
    scratch_bits = scratch.view(np.uint32)
    for b in range(b_lo, b_hi):
        ub, ob = u[b * block : (b + 1) * block], out[b * block : (b + 1) * block]
        largest = max(largest, _block_quantizers(ub, parity, quantizer, parity8, quantizer8))
        for lo in range(0, ub.size, _BF16_PIECE):
            up, qp, op = ub[lo : lo + _BF16_PIECE], quantizer[lo : lo + _BF16_PIECE], ob[lo : lo + _BF16_PIECE]
            for i in range(up.size):
                scratch[i] = np.float64(_level(np.int64(up[i]), np.int64(qp[i]))) * step
            for i in range(up.size):
                op[i] = bfloat16_bits(scratch_bits[i])
    return (largest + U64(1)) >> U64(1) <= U64(max_index)


@njit_inline
def _level(u, quantizer):
    """2k - quantizer * sgn k (see `reconstruct_index`) of the index k whose se(v) mapping is u,
    straight from u: k = (u + 1) / 2 for u odd, -u / 2 for u even (2x faster than through k)."""
    return (u + 1 - quantizer) if u & 1 else (quantizer * (u > 0) - u)


def _max_abs(x):
    """max |x| of a non-empty float array, NaN if it holds one (numpy's max and min propagate NaN)."""
    return max(float(x.max()), -float(x.min()))


def _check(x, step, block):
    if (
        isinstance(step, bool)
        or not isinstance(step, (int, float, np.floating))
        or not (math.isfinite(step) and step > 0)
    ):
        raise InvalidArgumentError(f"step must be a finite positive number, got {step!r}")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or not 1 <= block <= 1 << 24:
        raise InvalidArgumentError(f"block must be an integer in 1..2**24, got {block!r}")
    flat = np.ascontiguousarray(x).reshape(-1)
    if flat.dtype.kind != "f":
        raise InvalidArgumentError(f"dependent quantization needs floats, got {flat.dtype}")
    top = _max_abs(flat) if flat.size else 0.0
    if not math.isfinite(top):
        raise InvalidArgumentError("tensor holds NaN or infinity")
    if top / (2.0 * step) + 2 > MAX_INDEX:
        raise InvalidArgumentError(f"step {step} is too small for values up to {top}: indices would pass 2**30")
    return flat, float(step), int(block)


def quantize_dq(x, step, block=DEFAULT_BLOCK):
    """Trellis-quantized indices of x (int32, same shape) for lattice step `step`."""
    return _trellis(x, step, block, as_symbols=False).reshape(np.shape(x))


def quantize_dq_symbols(x, step, block=DEFAULT_BLOCK):
    """The se(v) symbols (uint32, flat) of `quantize_dq(x, step, block)`: what a stream codes. Each
    thread maps the indices it found in place, right after finding them (a separate pass over the
    tensor took 0.5 ns a value, on one thread)."""
    return _trellis(x, step, block, as_symbols=True).view(np.uint32)


def _trellis(x, step, block, as_symbols):
    """The flat int32 indices of x, their se(v) symbols in their place if `as_symbols`."""
    flat, step, block = _check(x, step, block)
    indices = np.empty(flat.size, dtype=np.int32)  # |index| <= MAX_INDEX: se(v) < 2**31 fits uint32

    def run(blocks):
        _quantize_blocks(flat, step, block, indices, *blocks)
        if as_symbols:
            lo, hi = blocks[0] * block, min(flat.size, blocks[1] * block)
            zigzag(indices[lo:hi], indices[lo:hi].view(np.uint32))  # each value read before its place is written

    parallel_map(run, split_range(-(-flat.size // block), default_workers()))
    return indices


def _block_ranges(size, block):
    return split_range(-(-size // block), 4 * default_workers())


def dequantize_dq(indices, step, block=DEFAULT_BLOCK, dtype=np.float32):
    """Values of trellis-quantized indices (float64 arithmetic, rounded once to `dtype`)."""
    k = np.ascontiguousarray(indices).reshape(-1)
    if k.dtype.kind not in "iu":
        raise InvalidArgumentError(f"indices must be integers, got {k.dtype}")
    if k.size and (int(k.min()) < -MAX_INDEX or int(k.max()) > MAX_INDEX):
        raise InvalidArgumentError(f"indices must be within ±{MAX_INDEX}")
    out = np.empty(k.size, dtype=dtype)
    step, block = float(step), int(block)

    def run(blocks):  # se(v)-mapped a piece at a time: no whole-tensor temporary
        lo, hi = blocks[0] * block, min(k.size, blocks[1] * block)
        symbols = signed_to_unsigned(k[lo:hi].astype(np.int32, copy=False), narrow=True)
        _dequantize_blocks(symbols, step, block, MAX_INDEX, out[lo:hi], 0, blocks[1] - blocks[0])

    parallel_map(run, _block_ranges(k.size, block))
    return out.reshape(np.shape(indices))


def squared_error_dq(values, symbols, step, block=DEFAULT_BLOCK, piece_blocks=16):
    """sum (values - dequantize_dq_symbols(symbols, step))^2 in float64, summed in the same order as
    over the whole arrays, but reconstructed `piece_blocks` blocks at a time: no tensor-sized array."""
    x, u = np.ascontiguousarray(values).reshape(-1), np.ascontiguousarray(symbols).reshape(-1)
    signal, noise, piece = 0.0, 0.0, block * piece_blocks
    for lo in range(0, u.size, piece):
        y = dequantize_dq_symbols(u[lo : lo + piece], step, block)
        signal, noise = signal_and_noise(x[lo : lo + piece], y, signal, noise)
    return noise


def dequantize_dq_symbols(symbols, step, block=DEFAULT_BLOCK, dtype=np.float32, out=None):
    """`dequantize_dq` of the indices whose se(v) mappings are `symbols` (unsigned), in one pass,
    into `out` if given (contiguous, `dtype`, one a symbol); None if an index passes MAX_INDEX (the
    caller reports the corrupt stream)."""
    u = _check_symbols(symbols)
    out = _check_out(out, u.size, dtype)
    return _dequantize_in_parallel(_dequantize_blocks, u, step, block, out)


def dequantize_dq_symbols_to_bfloat16(symbols, step, block=DEFAULT_BLOCK, out=None):
    """The bfloat16 bit patterns (uint16) of `dequantize_dq_symbols(symbols, step, block)` rounded to
    bfloat16 (nearest even, from the float32 values: the very bits `from_float32` gives), in one
    pass, into `out` if given; None if an index passes MAX_INDEX."""
    u = _check_symbols(symbols)
    out = _check_out(out, u.size, np.uint16)
    return _dequantize_in_parallel(_dequantize_blocks_to_bfloat16, u, step, block, out)


def _check_symbols(symbols):
    u = np.ascontiguousarray(symbols).reshape(-1)
    if u.dtype.kind != "u" or u.dtype.itemsize > 4:
        raise InvalidArgumentError(f"symbols must be unsigned integers of at most 32 bits, got {u.dtype}")
    return u


def _check_out(out, size, dtype):
    if out is None:
        return np.empty(size, dtype=dtype)
    if out.dtype != np.dtype(dtype) or out.shape != (size,) or not out.flags.c_contiguous:
        raise InvalidArgumentError(f"out must be a contiguous {np.dtype(dtype)} array of {size} values")
    return out


def _dequantize_in_parallel(kernel, u, step, block, out):
    step, block = float(step), int(block)
    oks = parallel_map(lambda b: kernel(u, step, block, MAX_INDEX, out, *b), _block_ranges(u.size, block))
    return out if all(oks) else None
