"""The Viterbi search of dependent quantization: for each block of values, the index sequence of
least squared error over the paths of the state machine (`_dq_machine`). Callers validate input:
see `dq.quantize_dq`.
"""

import math

import numpy as np

from bslz.codec._dq_acs import make_add_compare_select
from bslz.codec._dq_machine import NUM_STATES, QUANTIZER, TRANSITIONS, reconstruct_index
from bslz.codec._jit import njit, njit_inline

_INF = 1e300


@njit_inline
def _candidates(c, quantizer):
    """The two indices of `quantizer` whose levels bracket v, from c = v / step (branch-free, as
    `reconstruct_index`). One division serves both quantizers: c / 2 is exactly v / (2 step) (halving commutes
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
def _indices(x, step, trace, out, as_symbols):
    """out[i]: the index of value i on the traced path (trace[i]: its quantizer and parity), or its
    se(v) mapping if `as_symbols` (here, not in a pass of its own: 0.3 ns a value less)."""
    for i in range(x.size):
        c = np.float64(x[i]) / step
        a0, b0 = _candidates(c, 0)  # each quantizer's two candidates; the path picks one quantizer
        a1, b1 = _candidates(c, 1)  # and the parity of the index, which picks one of the two
        q1 = (trace[i] >> 4) & 1
        parity = np.int64((trace[i] >> 3) & 1)
        k1 = a1 if q1 else a0
        k2 = b1 if q1 else b0
        k = k1 if (k1 & 1) == parity else k2
        out[i] = (2 * k - 1 if k > 0 else -2 * k) if as_symbols else k


@njit
def _quantize_block(x, step, out, decisions, trace, errors, costs, as_symbols):
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
    _indices(x, step, trace, out, as_symbols)


@njit
def _quantize_block_pair(xa, xb, step, out_a, out_b, decisions, trace, errors, costs, as_symbols):
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
    _indices(xa, step, trace, out_a, as_symbols)
    _trace_back(decisions[half : half + n], trace, _best_end_state(costs, NUM_STATES), TRACE_WARM_UP)
    _indices(xb, step, trace, out_b, as_symbols)


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
def quantize_blocks(x, step, block, out, b_lo, b_hi, as_symbols=False):
    """Blocks b_lo..b_hi of x, two full blocks at a time while there are two; out: int32, the
    indices, or their se(v) mappings if `as_symbols` (below 2**31 for indices within ±2**30)."""
    decisions = np.empty(2 * block, dtype=np.uint8)
    trace = np.empty(block, dtype=np.uint8)
    errors = np.empty((8, _SUB_BLOCK))
    costs = np.empty(2 * NUM_STATES)
    b = b_lo
    while b < b_hi:
        lo, mid, hi = b * block, min(x.size, (b + 1) * block), min(x.size, (b + 2) * block)
        if b + 1 < b_hi and hi - mid == mid - lo:
            _quantize_block_pair(
                x[lo:mid], x[mid:hi], step, out[lo:mid], out[mid:hi], decisions, trace, errors, costs, as_symbols
            )
            b += 2
        else:
            _quantize_block(x[lo:mid], step, out[lo:mid], decisions[:block], trace, errors, costs, as_symbols)
            b += 1
