"""The Viterbi search of dependent quantization: for each block of values, the index sequence of
least squared error over the paths of the state machine (`_dq_machine`). Callers validate input:
see `dq.quantize_dq`.
"""

import numpy as np

from bslz.codec._dq_acs import make_add_compare_select
from bslz.codec._dq_machine import NUM_STATES, QUANTIZER, TRANSITIONS
from bslz.codec._jit import njit, njit_inline, njit_variant
from bslz.codec.measure import BFLOAT16_PIECE, bfloat16_moments_and_noise, round_to_bfloat16, widen_bfloat16_into

U64 = np.uint64
_INF = 1e30  # the cost of a state not reached yet (float32)


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


# The add-compare-select step of the search, as vector code (`_dq_acs`), for one, two or four
# blocks in lockstep. Float32 costs: one chain's eight states fill one 256-bit vector (half the
# work of float64's): measured on one thread, 2.74 / 1.44 / 0.99 ns a value for 1 / 2 / 4 chains,
# where float64 took 3.5 / 2.1 for 1 / 2 (benchmarks/bench_dq.py has the whole search).
CHAINS = 4
_add_compare_select = make_add_compare_select(PRED_STATES, PRED_PARITIES, QUANTIZER)
_add_compare_select_2 = make_add_compare_select(PRED_STATES, PRED_PARITIES, QUANTIZER, chains=2)
_add_compare_select_4 = make_add_compare_select(PRED_STATES, PRED_PARITIES, QUANTIZER, chains=CHAINS)


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
# values whose candidate errors are computed ahead of the search (in L1); the costs are brought
# back to a minimum of 0 after each, so that float32 keeps them to within 2**-12 step^2 (costs
# grow by at most 4 step^2 a value)
_SUB_BLOCK = 512


@njit
def _best_end_state(costs, lo):
    """The cheapest of the states costs[lo : lo + 8] (the first of equal costs)."""
    s = 0
    for t in range(1, NUM_STATES):
        if costs[lo + t] < costs[lo + s]:
            s = t
    return s


@njit
def _renormalize(costs, chains):
    """Each chain's costs less their minimum (exact differences near it: float32 keeps the costs
    that decide the search small)."""
    for c in range(chains):
        low = costs[NUM_STATES * c]
        for t in range(1, NUM_STATES):
            low = min(low, costs[NUM_STATES * c + t])
        for t in range(NUM_STATES):
            costs[NUM_STATES * c + t] -= low


# Paths traced back from any two states meet within a few dozen values in practice (measured: every
# block of MiniLM-like data, at every step tried, within 128); a guess that had not met is redone.
TRACE_WARM_UP = 128


@njit_inline
def _step_back(decisions, trace, s, i):
    """trace[i] = the step back from state s at value i; the state before value i (both unsigned)."""
    step_back = TRACE[s, decisions[i]]
    trace[i] = step_back
    return U64(step_back & 7)


@njit
def _trace_segment(decisions, trace, s, lo, hi):
    """trace[i] for values hi - 1 down to lo, from s, the state after value hi - 1; returns the state
    before value lo."""
    state = U64(s)
    for i in range(hi - 1, lo - 1, -1):
        state = _step_back(decisions, trace, state, U64(i))
    return np.int64(state)


@njit
def _trace_back(decisions, trace, s, warm_up):
    """trace[i] = the step back at value i of the path that ends in state s (`_trace_table`); the
    number of quarters redone (for the tests).

    Each step back waits for the last (a table lookup, ~7 cycles), so the block is traced as four
    quarters at once: the top one from s, each lower one from the state reached by tracing
    `warm_up` values above it from state 0. Once the exact state entering a quarter is known, a
    quarter whose guess differs is traced again from it: the result is the sequential walk's, bit
    for bit. 1.8 -> 0.95 ns a value, and 0.55 with unsigned positions (one thread, random
    decisions)."""
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
    # positions and states unsigned: numba then adds no wraparound of negative indices to each access
    s0, s1, s2, s3 = U64(s), U64(g1), U64(g2), U64(g3)
    i0, i1, i2, i3 = U64(n), U64(3 * q), U64(2 * q), U64(q)  # each one past the value it steps back from next
    for _ in range(q):  # the top quarter's q highest values, and the three lower quarters
        i0, i1, i2, i3 = i0 - U64(1), i1 - U64(1), i2 - U64(1), i3 - U64(1)
        s0, s1 = _step_back(decisions, trace, s0, i0), _step_back(decisions, trace, s1, i1)
        s2, s3 = _step_back(decisions, trace, s2, i2), _step_back(decisions, trace, s3, i3)
    s1, s2, s3 = np.int64(s1), np.int64(s2), np.int64(s3)
    s0 = _trace_segment(decisions, trace, np.int64(s0), 3 * q, n - q)  # the top quarter's n % 4 extra values
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


def _make_search(real, bfloat16_words=False):
    """quantize_blocks(x, step, block, out, b_lo, b_hi, as_symbols) with the candidates and their
    errors computed in `real` arithmetic from c = v / step; with `bfloat16_words`, x holds bfloat16
    bit patterns (uint16), widened the blocks searched together at a time (`group_values`, 1 MiB)
    rather than the whole tensor beforehand (a float32 copy of it: 4 bytes a value more at the
    peak, benchmarks/measure_memory.py --large-dtype BF16):

    - float64: c correctly rounded, the errors exact to float64 before their rounding to float32;
    - float32: c = v * (1 / step) in float32 (a few ulps of c): eight values a 256-bit vector, half
      the time of float64's in the two passes that compute candidates (errors 2.6 -> 1.2, indices
      1.6 -> 0.8 ns a value, one thread), for values within F32_SEARCH_LIMIT steps (`dq`), where
      those ulps are below 2**-11 of a step.

    The errors' pass and the indices' pass take their candidates from the same c, by the same rule
    (`lower_candidate`), so the path's parities always name the levels whose errors it was costed
    with."""
    half, one, two, zero = real(0.5), real(1.0), real(2.0), real(0.0)
    tag = "bfloat16_words" if bfloat16_words else np.dtype(real).name  # see njit_variant
    if real is np.float64:

        @njit_variant(tag, inline=True)
        def scale_of(step):
            return step

        @njit_variant(tag, inline=True)
        def scaled(v, scale):  # v / step, correctly rounded
            return np.float64(v) / scale

    else:

        @njit_variant(tag, inline=True)
        def scale_of(step):
            return real(1.0 / step)

        @njit_variant(tag, inline=True)
        def scaled(v, scale):
            return real(v) * scale

    if bfloat16_words:

        @njit_variant(tag, inline=True)
        def group_values(x, lo, count, wide):
            """x[lo : lo + count] as float32 values, widened into `wide` (at least count)."""
            widen_bfloat16_into(x[lo : lo + count], wide.view(np.uint32))
            return wide[:count]

    else:

        @njit_variant(tag, inline=True)
        def group_values(x, lo, count, wide):
            """x[lo : lo + count]: the values themselves."""
            return x[lo : lo + count]

    @njit_variant(tag, inline=True)
    def lower_candidate(c, quantizer):
        """As a float, from c = v / step: quantizer 0's lower index h = floor(c / 2) (levels 2h and
        2h + 2 bracket c), quantizer 1's index m of smaller magnitude (levels 0, ±1, ±3, ...: for
        |c| in [2m - 1, 2m + 1) the indices m and m + 1, signed like c)."""
        if quantizer == 0:  # a literal where inlined: folded
            return np.floor(c * half)
        return np.floor((abs(c) + one) * half)

    @njit_variant(tag)
    def block_errors(x, step, errors):
        """errors[4 i + r] for the values x (a sub-block): the squared errors, in units of step^2
        and rounded to float32, of the four candidate levels, two per quantizer, one of each parity
        (r: quantizer 0 even / odd, quantizer 1 even / odd). In units of the step the levels are
        the integers 2k and 2k - sgn k; float arithmetic throughout, with no chain: this loop
        vectorizes."""
        scale = scale_of(step)
        for i in range(x.size):
            c = scaled(x[i], scale)
            h = lower_candidate(c, 0)  # quantizer 0: indices h and h + 1, levels 2h and 2h + 2
            d = c - two * h
            e_low, e_high = d * d, (d - two) * (d - two)
            odd = h - two * np.floor(h * half) == one
            errors[4 * i + 0] = np.float32(e_high if odd else e_low)
            errors[4 * i + 1] = np.float32(e_low if odd else e_high)
            a = abs(c)  # quantizer 1, by symmetry: indices m and m + 1 at levels max(2m - 1, 0) and 2m + 1
            m = lower_candidate(c, 1)
            d = a - max(two * m - one, zero)
            e_low, e_high = d * d, (a - two * m - one) * (a - two * m - one)
            odd = m - two * np.floor(m * half) == one
            errors[4 * i + 2] = np.float32(e_high if odd else e_low)
            errors[4 * i + 3] = np.float32(e_low if odd else e_high)

    @njit_variant(tag)
    def indices(x, step, trace, out, as_symbols, decoded, sums, scratch):
        """out[i]: the index of value i on the traced path (trace[i]: its quantizer and parity), or
        its se(v) mapping if `as_symbols` (here, not in a pass of its own: 0.3 ns a value less).

        The path's quantizer picks its lower candidate, and the index's parity picks it or the next
        one. Float arithmetic, converted once at the end (a value is at most 2**31 - 1,
        `dq._check`), and no branch on the quantizer: both lower candidates are computed and one
        kept by arithmetic (integers in float: exact), so that the loop vectorizes, where a branch
        on each value's random quantizer kept it scalar (1.9 -> 0.6 ns a value, float32, one
        thread, measured on MiniLM's embedding).

        With `decoded` (uint16, one a value; empty: none), also the bfloat16 words the decoder
        makes of the indices (level 2k - q sgn k times the step in float64, rounded to float32,
        then to bfloat16), and sums[:3] += (sum |x|, sum x^2, sum (x - x_hat)^2) in order, x_hat
        the decoded values: the reconstruction and its measure in the search's last pass, a piece
        at a time through `scratch` (float32, BFLOAT16_PIECE), where a pass of their own took
        3.5 ns a value."""
        scale = scale_of(step)
        measuring = decoded.size > 0
        for lo in range(0, x.size, BFLOAT16_PIECE):
            hi = min(x.size, lo + BFLOAT16_PIECE)
            values, steps_back, found = x[lo:hi], trace[lo:hi], out[lo:hi]
            for i in range(hi - lo):
                c = scaled(values[i], scale)
                q1 = real((steps_back[i] >> 4) & 1)
                parity = real((steps_back[i] >> 3) & 1)
                low0, low1 = lower_candidate(c, 0), lower_candidate(c, 1)
                low = low0 + q1 * (low1 - low0)
                low_parity = low - two * np.floor(low * half)  # 0 or 1, negative lows too
                chosen = low + abs(low_parity - parity)
                k = chosen if (c >= zero or q1 == zero) else -chosen  # quantizer 1's candidates are signed like c
                found[i] = np.int32((two * k - one if k > zero else -two * k) if as_symbols else k)
                if measuring:
                    sign = (one if k > zero else zero) - (one if k < zero else zero)
                    level = two * k - q1 * sign + zero  # + 0: level 0 is +0, as the decoder's integer
                    scratch[i] = np.float64(level) * step
            if measuring:
                round_to_bfloat16(scratch, decoded[lo:hi])
                sums[0], sums[1], sums[2] = bfloat16_moments_and_noise(
                    values, decoded[lo:hi], scratch, sums[0], sums[1], sums[2]
                )

    @njit_variant(tag)
    def search_blocks(x, lo, n, chains, step, out, decisions, trace, errors, costs, as_symbols, measured, wide):
        """Viterbi search over `chains` (1, 2 or 4) blocks of n values in lockstep, block c being
        x[lo + c n : lo + (c + 1) n]; writes their indices to out (same positions).

        Three passes, so that only the add-compare-select runs on the dependency chain (one loop
        doing everything ran 3x slower, measured): per sub-block, the errors (`block_errors`),
        then each state takes the cheaper of its two predecessors (decisions[c n + i]: one bit per
        state, 1 for the second predecessor; `_dq_acs`). Then, block by block, the walk back
        (`_trace_back`: trace[i], the TRACE entry of each step back), then the indices
        (`indices`), no chain left. Each step of a chain waits ~10 cycles for the last: the
        chains hide each other's wait. decisions: room for chains * n; errors: (CHAINS,
        _SUB_BLOCK, 4); costs: 8 CHAINS; measured: (decoded, block sums, first block, scratch),
        see `indices` (block c's sums at block_sums[first block + c]); wide: `group_values`'
        scratch (float32, room for chains * n)."""
        xs = group_values(x, lo, chains * n, wide)  # the blocks' values: xs[c n + i] is x's lo + c n + i
        costs[:] = _INF
        for c in range(chains):
            costs[NUM_STATES * c] = 0.0
        for sub in range(0, n, _SUB_BLOCK):
            m = min(_SUB_BLOCK, n - sub)
            for c in range(chains):
                block_errors(xs[c * n + sub : c * n + sub + m], step, errors[c].reshape(-1))
            if chains == 4:
                _add_compare_select_4(costs, errors, decisions, n, sub, m)
            elif chains == 2:
                _add_compare_select_2(costs[: 2 * NUM_STATES], errors[:2], decisions, n, sub, m)
            else:
                _add_compare_select(costs[:NUM_STATES], errors[:1], decisions, n, sub, m)
            _renormalize(costs, chains)
        decoded, block_sums, b0, scratch = measured
        for c in range(chains):
            block = slice(lo + c * n, lo + (c + 1) * n)
            values = xs[c * n : (c + 1) * n]
            end = _best_end_state(costs, NUM_STATES * c)
            _trace_back(decisions[c * n : (c + 1) * n], trace[:n], end, TRACE_WARM_UP)
            if decoded.size:
                indices(values, step, trace[:n], out[block], as_symbols, decoded[block], block_sums[b0 + c], scratch)
            else:
                indices(values, step, trace[:n], out[block], as_symbols, decoded, block_sums[0], scratch)

    @njit_variant(tag)
    def quantize_blocks(x, step, block, out, b_lo, b_hi, as_symbols, decoded, block_sums):
        """Blocks b_lo..b_hi of x, four (or two) full blocks at a time while there are as many;
        out: int32, the indices, or their se(v) mappings if `as_symbols` (below 2**31 for indices
        within ±2**30). With `decoded` (uint16, as long as x; empty: none), also the bfloat16
        words of the reconstruction, and each block's (sum |x|, sum x^2, sum (x - x_hat)^2) in
        block_sums[b] (see `indices`)."""
        scratch = np.empty(BFLOAT16_PIECE if decoded.size else 0, dtype=np.float32)
        wide = np.empty(CHAINS * block if bfloat16_words else 0, dtype=np.float32)
        decisions = np.empty(CHAINS * block, dtype=np.uint8)
        trace = np.empty(block, dtype=np.uint8)
        errors = np.zeros((CHAINS, _SUB_BLOCK, 4), dtype=np.float32)
        costs = np.empty(NUM_STATES * CHAINS, dtype=np.float32)
        b = b_lo
        while b < b_hi:
            lo = b * block
            n = min(x.size, lo + block) - lo
            whole = 0 if n < block else min(b_hi - b, (x.size - lo) // block)  # full blocks from here on
            chains = 4 if whole >= 4 else (2 if whole >= 2 else 1)
            measured = (decoded, block_sums, b, scratch)
            search_blocks(x, lo, n, chains, step, out, decisions, trace, errors, costs, as_symbols, measured, wide)
            b += chains

    return quantize_blocks


_search_float64 = _make_search(np.float64)
_search_float32 = _make_search(np.float32)
_search_bfloat16_words = _make_search(np.float32, bfloat16_words=True)


# The entry points are module-level functions, not the factory's closures: numba keys a closure's
# cache entry on its cells, and the cells hold kernels whose pickles carry a fresh id in every
# process, so each process compiled the whole search again (~5 s) and added one more entry to
# the cache. A module-level caller is found in the cache, its callees with it.
@njit
def quantize_blocks_float64(x, step, block, out, b_lo, b_hi, as_symbols, decoded, block_sums):
    """`_make_search`'s quantize_blocks, in float64."""
    _search_float64(x, step, block, out, b_lo, b_hi, as_symbols, decoded, block_sums)


@njit
def quantize_blocks_float32(x, step, block, out, b_lo, b_hi, as_symbols, decoded, block_sums):
    """`_make_search`'s quantize_blocks, in float32."""
    _search_float32(x, step, block, out, b_lo, b_hi, as_symbols, decoded, block_sums)


@njit
def quantize_blocks_bfloat16_words(x, step, block, out, b_lo, b_hi, as_symbols, decoded, block_sums):
    """`_make_search`'s quantize_blocks, in float32, of bfloat16 words (uint16)."""
    _search_bfloat16_words(x, step, block, out, b_lo, b_hi, as_symbols, decoded, block_sums)
