import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bslz.codec import _dq_search as search
from bslz.codec import dq
from bslz.codec.expgolomb import signed_to_unsigned
from bslz.codec.quantize import quantize
from bslz.codec.rate import symbols_rate_bits
from bslz.errors import InvalidArgumentError


def replay_reference(indices, step, block):
    """The decoder, written from the definition in FORMAT.md."""
    out, state = [], 0
    for i, k in enumerate(int(v) for v in indices):
        if i % block == 0:
            state = 0
        if dq.QUANTIZER[state] == 0:
            out.append(2 * k * step)
        else:
            out.append(0.0 if k == 0 else (2 * k - (1 if k > 0 else -1)) * step)
        state = dq.TRANSITIONS[state][k & 1]
    return np.array(out)


@pytest.mark.small
@given(
    x=hnp.arrays(np.float32, st.integers(0, 300), elements=st.floats(-10, 10, width=32)),
    step=st.floats(0.01, 3.0),
    block=st.integers(1, 64),
)
def test_decoder_matches_the_definition_and_errors_stay_below_two_steps(x, step, block):
    k = dq.quantize_dq(x, step, block)
    assert k.shape == x.shape and k.dtype == np.int32
    decoded = dq.dequantize_dq(k, step, block, np.float64)
    np.testing.assert_array_equal(decoded, replay_reference(k, step, block))
    assert np.all(np.abs(x.astype(np.float64) - decoded) < (2 + 2**-11) * step)


@pytest.mark.small
def test_trellis_minimises_squared_error_over_all_paths():
    """On short inputs the Viterbi search finds the best of every index sequence, by brute force."""
    rng = np.random.default_rng(0)
    step = 0.5
    for _ in range(20):
        x = rng.normal(0, 1.5, 5)
        best = math.inf
        near = [range(int(np.floor(v / (2 * step))) - 2, int(np.floor(v / (2 * step))) + 4) for v in x]
        for ks in np.stack(np.meshgrid(*near, indexing="ij"), -1).reshape(-1, 5):
            best = min(best, float(((x - replay_reference(ks, step, 5)) ** 2).sum()))
        got = float(((x - dq.dequantize_dq(dq.quantize_dq(x, step, 5), step, 5, np.float64)) ** 2).sum())
        assert got == pytest.approx(best, rel=1e-9, abs=1e-12)


def test_beats_uniform_rounding_at_equal_rate():
    """About 1 dB more SNR than rounding for the same coded size, on Laplacian weights."""
    x = np.random.default_rng(1).laplace(0, 0.02, 200_000).astype(np.float32)

    def snr(decoded):
        e = x.astype(np.float64) - decoded
        return 10 * math.log10(float(np.dot(x, x.astype(np.float64))) / float(np.dot(e, e)))

    step = 0.004
    k = dq.quantize_dq(x, step)
    dq_bits, dq_snr = symbols_rate_bits(k), snr(dq.dequantize_dq(k, step, dtype=np.float64))
    # the uniform step with the same rate, by bisection
    lo, hi = step / 4, step * 4
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if symbols_rate_bits(quantize(x, mid)) > dq_bits else (lo, mid)
    q = quantize(x, hi)
    assert symbols_rate_bits(q) <= dq_bits
    assert dq_snr > snr(q.astype(np.float64) * hi) + 0.6


@pytest.mark.small
def test_blocks_reset_the_state():
    x = np.random.default_rng(2).normal(0, 1, 1000)
    k = dq.quantize_dq(x, 0.1, 100)
    np.testing.assert_array_equal(dq.quantize_dq(x[:100], 0.1, 100), k[:100])
    np.testing.assert_array_equal(dq.quantize_dq(x[300:400], 0.1, 100), k[300:400])


@pytest.mark.small
@pytest.mark.parametrize(
    "call",
    [
        lambda: dq.quantize_dq(np.ones(3), 0.0),
        lambda: dq.quantize_dq(np.ones(3), float("nan")),
        lambda: dq.quantize_dq(np.array([1.0, np.inf]), 0.1),
        lambda: dq.quantize_dq(np.ones(3, dtype=np.int32), 0.1),
        lambda: dq.quantize_dq(np.ones(3), 0.1, block=0),
        lambda: dq.quantize_dq(np.array([1e12]), 1e-3),
        lambda: dq.dequantize_dq(np.ones(3), 0.1),
    ],
)
def test_bad_arguments(call):
    with pytest.raises(InvalidArgumentError):
        call()


@pytest.mark.small
@given(
    k=hnp.arrays(np.int32, st.integers(0, 300), elements=st.integers(-(2**30), 2**30)),
    block=st.integers(1, 64),
)
def test_decoding_from_symbols_is_dequantize_of_the_signed_indices(k, block):
    """The container's one-pass decoder: se(v) symbols straight to values, |k| <= 2**30 accepted."""
    symbols = signed_to_unsigned(k).astype(np.uint32)
    got = dq.dequantize_dq_symbols(symbols, 0.37, block, np.float64)
    np.testing.assert_array_equal(got, dq.dequantize_dq(k, 0.37, block, np.float64))


@pytest.mark.small
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decoding_from_symbols_into_a_given_array(dtype):
    symbols = signed_to_unsigned(np.arange(-40, 41, dtype=np.int32)).astype(np.uint32)
    out = np.full(symbols.size, np.nan, dtype=dtype)
    assert dq.dequantize_dq_symbols(symbols, 0.37, 16, dtype, out=out) is out
    np.testing.assert_array_equal(out, dq.dequantize_dq_symbols(symbols, 0.37, 16, dtype))
    wrong_dtype, wrong_size = np.empty(symbols.size, np.float16), np.empty(symbols.size + 1, dtype)
    for bad in (wrong_dtype, wrong_size, np.empty(2 * symbols.size, dtype)[::2]):
        with pytest.raises(InvalidArgumentError):
            dq.dequantize_dq_symbols(symbols, 0.37, 16, dtype, out=bad)


@pytest.mark.small
@pytest.mark.parametrize("k", [2**30 + 1, -(2**30) - 1, 2**31])
def test_decoding_from_symbols_refuses_indices_beyond_the_limit(k):
    symbols = np.array([3, signed_to_unsigned(np.array([k]))[0], 0], dtype=np.uint32)
    assert dq.dequantize_dq_symbols(symbols, 0.1) is None
    assert dq.dequantize_dq_symbols_to_bfloat16(symbols, 0.1) is None


@pytest.mark.small
@given(
    k=hnp.arrays(np.int32, st.integers(0, 9000), elements=st.integers(-(2**30), 2**30)),
    step=st.sampled_from([0.37, 1e-3, 3e-39, 1e28]),  # a subnormal float32 step; values up to 2e37
    block=st.sampled_from([1, 7, 4096]),
)
def test_decoding_to_bfloat16_is_the_float32_values_rounded(k, step, block):
    """The one-pass bf16 decoder gives exactly from_float32's rounding of the float32 values, whose
    pieces (through the scratch) and blocks line up however the sizes fall."""
    from bslz.formats.dtypes import from_float32, lookup

    symbols = signed_to_unsigned(k, narrow=True)
    expected = from_float32(dq.dequantize_dq_symbols(symbols, step, block), lookup("BF16"))
    out = np.zeros(k.size, np.uint16)
    assert dq.dequantize_dq_symbols_to_bfloat16(symbols, step, block, out=out) is out
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(InvalidArgumentError):
        dq.dequantize_dq_symbols_to_bfloat16(symbols, step, block, out=np.zeros(k.size + 1, np.uint16))


# values, steps and blocks for the passes that reconstruct to bfloat16 and measure it
MEASURED_CASES = dict(
    x=hnp.arrays(np.float32, st.integers(0, 9000), elements=st.floats(-4, 4, width=32)),
    step=st.sampled_from([0.37, 1e-3, 3e-5]),
    block=st.sampled_from([1, 7, 4096]),
)


@pytest.mark.small
@given(**MEASURED_CASES)
def test_measured_bfloat16_decoding_gives_the_sums_of_the_values_and_their_reconstruction(x, step, block):
    """The reconstruct-and-measure pass: the bf16 words of the decoder, and the sums
    `moments_and_noise` takes of the values and the words widened: to the last bit where the
    blocks are whole pieces of the sums (`SUM_PIECE`), to rounding otherwise (each block's own)."""
    from bslz.codec.measure import SUM_PIECE, moments_and_noise
    from bslz.formats.dtypes import lookup, to_float32

    symbols = dq.quantize_dq_symbols(x, step, block)
    words, *sums = dq.measured_dequantize_dq_symbols_to_bfloat16(symbols, step, x, block)
    np.testing.assert_array_equal(words, dq.dequantize_dq_symbols_to_bfloat16(symbols, step, block))
    expected = moments_and_noise(x, to_float32(words, lookup("BF16")))
    if block % SUM_PIECE == 0:
        assert tuple(sums) == expected
    else:
        assert tuple(sums) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    if x.size:
        beyond = symbols.copy()
        beyond[0] = 2**31 + 2  # index -(2**30 + 1)
        assert dq.measured_dequantize_dq_symbols_to_bfloat16(beyond, step, x, block)[0] is None
        with pytest.raises(InvalidArgumentError):
            dq.measured_dequantize_dq_symbols_to_bfloat16(symbols, step, x[:-1], block)


@pytest.mark.small
def test_viterbi_matches_a_table_driven_search():
    """The vector add-compare-select step, the lockstep chains and the four-quarter walk back against
    a plain search over TRANSITIONS in the same arithmetic (same tie rule); blocks of 1000 and 4096
    are long enough for the quartered walk, 600 and 1000 for costs brought back to 0 mid-block,
    blocks of 64 (on two threads) run four, two and one chain at once, and values at half-steps make
    ties that only the rounding breaks."""
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.laplace(0, 1.0, 3000), np.round(rng.normal(0, 3, 1000)) * 0.25, np.zeros(50)])
    for step, block in ((0.25, 1000), (0.1, 64), (1.0, 4096), (0.05, 600)):
        np.testing.assert_array_equal(dq.quantize_dq(x, step, block), viterbi_reference(x, step, block))


@pytest.mark.small
def test_float32_search_matches_a_table_driven_search_in_float32():
    """Float32 values within F32_SEARCH_LIMIT steps are searched in float32 arithmetic (c = v *
    (1 / step)): against the plain search computing its candidates the same way, steps whose
    inverse is and is not exact in float32, ties at half-steps included; values a step beyond the
    limit, float64 values and a step whose inverse is no normal float32 go to the float64 search."""
    rng = np.random.default_rng(17)
    x = np.concatenate([rng.laplace(0, 1.0, 2000), np.round(rng.normal(0, 3, 600)) * 0.25]).astype(np.float32)
    for step, block in ((0.25, 1000), (0.1, 64), (0.05, 600)):
        assert dq._float32_search(x, step, float(np.abs(x).max()))
        np.testing.assert_array_equal(
            dq.quantize_dq(x, step, block), viterbi_reference(x, step, block, candidates=np.float32)
        )
    top = float(np.abs(x).max())
    assert not dq._float32_search(x, top / dq.F32_SEARCH_LIMIT, top)
    assert not dq._float32_search(x.astype(np.float64), 0.25, top)
    assert not dq._float32_search(np.zeros(3, np.float32), 1e-39, 0.0)
    assert not dq._float32_search(np.zeros(3, np.float32), 1e39, 0.0)
    # beyond the limit: the float64 search, as the float64 values get
    fine = top / (1.5 * dq.F32_SEARCH_LIMIT)
    np.testing.assert_array_equal(dq.quantize_dq(x, fine, 1000), dq.quantize_dq(x.astype(np.float64), fine, 1000))


def test_float32_search_loses_nothing_measurable():
    """On weight-like float32 values the float32 search's squared error is the float64 search's
    to 1e-7, at a coarse and a fine step."""
    x = np.random.default_rng(9).normal(0, 1.0, 40_000).astype(np.float32)
    for step in (0.5, 0.02):
        assert dq._float32_search(x, step, float(np.abs(x).max()))
        errors = [
            float(((x - dq.dequantize_dq(dq.quantize_dq(v, step, 10_000), step, 10_000, np.float64)) ** 2).sum())
            for v in (x, x.astype(np.float64))
        ]
        assert errors[0] == pytest.approx(errors[1], rel=1e-7)


def test_float32_costs_lose_nothing_measurable():
    """Against a search in exact float64 arithmetic the float32 one finds paths whose squared error
    is the same to 1e-7 (ties and near-ties aside, the same path), at a coarse and a fine step."""
    x = np.random.default_rng(8).normal(0, 1.0, 20_000)
    for step in (0.5, 0.02):
        k = dq.quantize_dq(x, step, 10_000)
        exact = viterbi_reference(x, step, 10_000, arithmetic=np.float64)
        errors = [float(((x - dq.dequantize_dq(i, step, 10_000, np.float64)) ** 2).sum()) for i in (k, exact)]
        assert errors[0] == pytest.approx(errors[1], rel=1e-7)
        assert np.mean(k == exact) > 0.99


def viterbi_reference(x, step, block, arithmetic=np.float32, candidates=np.float64):
    """Viterbi over the 8 states with a cost per state and both indices around each value, in Python.

    As the search computes them: errors in units of step^2 from c = v / step, rounded to float32,
    costs summed in float32 and brought back to a minimum of 0 after every _SUB_BLOCK values of a
    block; with `arithmetic` float64, exact errors and sums instead. With `candidates` float32,
    c = v * (1 / step) and the errors in float32 arithmetic, as the float32 search computes them."""
    out = []
    for lo in range(0, x.size, block):
        cost = [arithmetic(0.0)] + [math.inf] * 7
        back = []
        for i, v in enumerate(x[lo : lo + block]):
            if candidates == np.float32:
                c = np.float32(v) * np.float32(1.0 / step)
            else:
                c = float(v) / step
            new, arg = [math.inf] * 8, [None] * 8
            for s in range(8):
                if cost[s] == math.inf:
                    continue
                q = int(dq.QUANTIZER[s])
                for k, error in _around(c, q):
                    j = arithmetic(cost[s] + arithmetic(error))
                    ns = int(dq.TRANSITIONS[s][k & 1])
                    if j < new[ns]:
                        new[ns], arg[ns] = j, (s, k)
            cost = new
            back.append(arg)
            if arithmetic == np.float32 and (i + 1) % search._SUB_BLOCK == 0:
                low = min(cost)
                cost = [t if t == math.inf else np.float32(t - low) for t in cost]
        s = min(range(8), key=lambda t: (cost[t], t))
        path = []
        for arg in reversed(back):
            s, k = arg[s]
            path.append(k)
        out += path[::-1]
    return np.array(out, dtype=np.int32)


def _around(c, q):
    """The indices of quantizer q whose levels (2k, or 2k - sgn k) are the nearest below and above
    c = v / step, each with its squared error in units of step^2, computed as the search does, in
    the arithmetic of c (a float, or a numpy float32)."""
    real = type(c)
    half, one, two, zero = real(0.5), real(1.0), real(2.0), real(0.0)
    if q == 0:
        h = np.floor(c * half)
        d = c - two * h
        return [(int(h), d * d), (int(h) + 1, (d - two) * (d - two))]
    a, sign = abs(c), (-1 if c < 0 else 1)
    m = np.floor((a + one) * half)
    d = a - max(two * m - one, zero)
    return [(sign * int(m), d * d), (sign * (int(m) + 1), (a - two * m - one) * (a - two * m - one))]


def _acs_reference(costs, errors, n):
    """(new costs, decision bytes) of n steps, from the predecessor tables in Python."""
    costs, out = costs.copy(), []
    for i in range(n):
        new, byte = np.empty(8, np.float32), 0
        for j in range(8):
            paths = [
                costs[s] + errors[i, 2 * dq.QUANTIZER[s] + p]
                for s, p in zip(search.PRED_STATES[j], search.PRED_PARITIES[j])
            ]
            new[j] = min(paths)
            byte |= int(paths[1] < paths[0]) << j
        costs = new
        out.append(byte)
    return costs, out


@pytest.mark.small
def test_add_compare_select_against_the_predecessor_tables():
    """Each state's new cost is the cheaper of its two predecessors' (costs plus the error of the
    predecessor's quantizer at the parity that leads here), the second only if strictly cheaper;
    decision bit j set when state j took its second. Ties included (integer errors). One chain,
    and two and four in lockstep, each with its own costs, errors and decisions."""
    rng = np.random.default_rng(3)
    n, stride = 200, 230
    errors = rng.integers(0, 4, (4, search._SUB_BLOCK, 4)).astype(np.float32)
    costs = rng.integers(0, 6, 32).astype(np.float32)
    expected = [_acs_reference(costs[8 * c : 8 * c + 8], errors[c], n) for c in range(4)]

    one, decisions = costs[:8].copy(), np.zeros(n + 5, dtype=np.uint8)
    search._add_compare_select(one, errors[:1], decisions, decisions.size, 5, n)
    assert decisions[5:].tolist() == expected[0][1] and decisions[:5].tolist() == [0] * 5
    np.testing.assert_array_equal(one, expected[0][0])

    for chains, acs in ((2, search._add_compare_select_2), (4, search._add_compare_select_4)):
        several, decisions = costs[: 8 * chains].copy(), np.zeros(chains * stride, dtype=np.uint8)
        acs(several, errors[:chains], decisions, stride, 5, n)
        for c in range(chains):
            assert decisions[c * stride + 5 : c * stride + 5 + n].tolist() == expected[c][1]
            np.testing.assert_array_equal(several[8 * c : 8 * c + 8], expected[c][0])
    with pytest.raises(ValueError):  # never past the arrays it is given
        search._add_compare_select(one, errors[:1], decisions[: n + 5], n + 5, 6, n)
    with pytest.raises(ValueError):  # nor one chain's decisions into the next one's
        search._add_compare_select_4(several, errors, decisions, n, 5, n)
    with pytest.raises(ValueError):  # nor errors of another shape
        search._add_compare_select_2(costs[:16].copy(), errors[:1], decisions, stride, 5, n)


@pytest.mark.small
@pytest.mark.parametrize("warm_up", [1, 3, 128])
def test_quartered_walk_back_is_the_sequential_one(warm_up):
    """Random decisions (paths that need not meet soon) and a short warm-up: the quarters whose
    guessed state is wrong are redone, and the walk equals the one-chain walk bit for bit."""
    rng = np.random.default_rng(warm_up)
    redone = 0
    for n in (4 * warm_up - 1, 4 * warm_up, 1000, 4099):
        decisions = rng.integers(0, 256, n).astype(np.uint8)
        for end_state in range(dq.NUM_STATES):
            expected, trace = np.empty(n, np.uint8), np.empty(n, np.uint8)
            search._trace_segment(decisions, expected, end_state, 0, n)
            redone += search._trace_back(decisions, trace, end_state, warm_up)
            np.testing.assert_array_equal(trace, expected)
    assert (redone > 0) == (warm_up < 128)  # the redo path is exercised, and rare with the default


@pytest.mark.small
def test_gather_byte_bits_and_eight_step_tables():
    """The decoder's eight-at-a-time state chain: the bit gather on every pattern, and the tables
    against eight single steps."""
    from bslz.codec._jit import gather_byte_bits

    for parities in range(256):
        word = sum(((parities >> j) & 1) << (8 * j) for j in range(8))
        assert int(gather_byte_bits(np.uint64(word))) == parities
        for start in range(dq.NUM_STATES):
            state, quantizers = start, []
            for j in range(8):
                quantizers.append(int(dq.QUANTIZER[state]))
                state = int(dq.TRANSITIONS[state][(parities >> j) & 1])
            assert dq.NEXT8[start, parities] == state
            assert (int(dq.NEXT8_SHIFTS[parities]) >> (8 * start)) & 0x38 == 8 * state
            assert list(int(dq.QUANTIZERS8[start, parities]).to_bytes(8, "little")) == quantizers


@pytest.mark.parametrize("size", [1, 1000, 3 * 4096 + 17])
def test_symbols_and_their_squared_error_piece_by_piece(size):
    """quantize_dq_symbols: the se(v) symbols of quantize_dq's indices; the squared error summed a
    piece at a time in the same order as over the whole reconstruction: the very same float64."""
    from bslz.codec.measure import signal_and_noise

    x = np.random.default_rng(size).laplace(0, 0.02, size).astype(np.float32)
    k = dq.quantize_dq(x, 0.003, block=1024)
    whole = signal_and_noise(x, dq.dequantize_dq(k, 0.003, block=1024))[1]
    symbols = dq.quantize_dq_symbols(x, 0.003, block=1024)
    assert np.array_equal(symbols, signed_to_unsigned(k, narrow=True)) and symbols.dtype == np.uint32
    assert dq.squared_error_dq(x, symbols, 0.003, block=1024, piece_blocks=2) == whole


@pytest.mark.small
@given(**MEASURED_CASES)
def test_search_with_its_reconstruction_measured(x, step, block):
    """The search's measured last pass: the symbols of `quantize_dq_symbols`, the bf16 words of the
    decoder (level 0 as +0), and the sums of `moments_and_noise` over the values and the words
    widened, to rounding (summed block by block, in block order)."""
    from bslz.codec.measure import moments_and_noise
    from bslz.formats.dtypes import lookup, to_float32

    symbols, words, *sums = dq.quantize_dq_symbols_to_bfloat16(x, step, block)
    np.testing.assert_array_equal(symbols, dq.quantize_dq_symbols(x, step, block))
    np.testing.assert_array_equal(words, dq.dequantize_dq_symbols_to_bfloat16(symbols, step, block))
    assert sums == pytest.approx(moments_and_noise(x, to_float32(words, lookup("BF16"))), rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("workers", [1, 2])
def test_bfloat16_words_search_as_their_values(monkeypatch, workers):
    """The search reading bfloat16 words finds what it finds on their float32 values: symbols,
    decoded words and sums, on full and partial blocks searched 4, 2 and 1 at a time, and on the
    float64 search (values beyond F32_SEARCH_LIMIT steps)."""
    monkeypatch.setattr(dq, "default_workers", lambda: workers)
    rng = np.random.default_rng(12)
    for size, step in ((0, 0.01), (7, 0.01), (4096 * 7 + 100, 0.002), (4096 * 3, 1e-6)):
        words = (rng.laplace(0, 0.03, size).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        x = (words.astype(np.uint32) << 16).view(np.float32)
        found = dq.quantize_dq_symbols(words, step, 4096, bfloat16_words=True)
        np.testing.assert_array_equal(found, dq.quantize_dq_symbols(x, step, 4096))
        measured = dq.quantize_dq_symbols_to_bfloat16(words, step, 4096, bfloat16_words=True)
        expected = dq.quantize_dq_symbols_to_bfloat16(x, step, 4096)
        for a, b in zip(measured, expected):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(InvalidArgumentError, match="uint16"):
        dq.quantize_dq_symbols(x, 0.01, bfloat16_words=True)
    with pytest.raises(InvalidArgumentError, match="NaN"):
        dq.quantize_dq_symbols(np.array([0x7FC0], np.uint16), 0.01, bfloat16_words=True)


def test_measured_search_sums_do_not_depend_on_the_threads(monkeypatch):
    """Each block's sums are taken in order and added in block order: one thread or two, the same
    bits."""
    x = np.random.default_rng(4).laplace(0, 0.05, 300_000).astype(np.float32)
    runs = []
    for workers in (1, 2):
        monkeypatch.setattr(dq, "default_workers", lambda workers=workers: workers)
        runs.append(dq.quantize_dq_symbols_to_bfloat16(x, 2e-3, 4096))
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][2:] == runs[1][2:]


@pytest.mark.small
def test_a_known_largest_magnitude_gives_the_same_indices():
    """`top` given (the writer knows it from the widening pass) is not looked for again: the
    indices are those found without it, on the float32 and on the float64 search."""
    x = np.random.default_rng(11).laplace(0, 0.02, 70_000).astype(np.float32)
    top = float(np.abs(x).max())
    for step in (0.001, top / 5000):  # within F32_SEARCH_LIMIT steps, and beyond
        np.testing.assert_array_equal(dq.quantize_dq_symbols(x, step, top=top), dq.quantize_dq_symbols(x, step))
    with pytest.raises(InvalidArgumentError, match="NaN"):
        dq.quantize_dq_symbols(x, 0.001, top=math.inf)


@pytest.mark.parametrize("bfloat16", [False, True])
@pytest.mark.parametrize("share_of_rms", [0.05, 0.3, 1.0])
def test_the_predicted_size_is_the_estimate_of_the_trellis_indices(bfloat16, share_of_rms):
    """`dq_predict.predicted_size_bits` (the trellis on 1/16 of the values) lands within 0.2 % of the
    size estimate of the whole tensor's indices, on a tensor whose scale drifts along it, from
    about 8 bits a value down to 2, and with outliers whose indices take rANS's escapes; None for
    a tensor too short to sample."""
    from bslz.codec.dq_predict import predicted_size_bits
    from bslz.codec.size_estimate import estimate_size_bits
    from bslz.formats.dtypes import from_float32, lookup, to_float32

    rng = np.random.default_rng(17)
    x = (rng.laplace(size=600_000) * np.linspace(0.01, 0.03, 600_000)).astype(np.float32)
    words = from_float32(x, lookup("BF16")) if bfloat16 else None
    values = x if words is None else to_float32(words, lookup("BF16"))
    top = float(np.abs(values).max())
    step = share_of_rms * float(np.sqrt(np.mean(values.astype(np.float64) ** 2)))
    exact = estimate_size_bits(dq.quantize_dq_symbols(values, step))
    predicted = predicted_size_bits(values if words is None else words, step, top, bfloat16)
    assert predicted == pytest.approx(exact, rel=2e-3)
    assert predicted_size_bits(values[:100_000], step, top) is None  # too short for two sample runs
    assert predicted_size_bits(values, top / 200_000, top) is None  # levels over 2**16 apart: searched whole
    # indices up to 2500 (symbols past rANS's alphabet: escapes), a few outliers far out
    outliers = values.copy()
    outliers[::10_007] *= 40
    fine = top / 2000
    exact = estimate_size_bits(dq.quantize_dq_symbols(outliers, fine))
    assert predicted_size_bits(outliers, fine, float(np.abs(outliers).max())) == pytest.approx(exact, rel=2e-3)
