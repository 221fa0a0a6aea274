"""Dead-zone uniform quantizer, reconstructions, rate and step selection."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bslz.codec import expgolomb, gg, measure
from bslz.codec import quantize as qz
from bslz.codec import step_search as ss
from bslz.errors import InvalidArgumentError

RNG_SEED = 20250611
_ROUNDING = 1e-14  # |x| / step is computed in float64: bin edges move by a few ulps of |x|


def _laplace(n, scale=0.02, seed=RNG_SEED):
    return (np.random.default_rng(seed).laplace(size=n) * scale).astype(np.float32)


def _reference_symbols(x, step, dead_zone):
    """The defining formula, in Python floats: sign(x) floor(|x| / step + theta)."""
    return np.array([int(math.copysign(math.floor(abs(float(v)) / step + dead_zone), v)) for v in x.ravel()])


def _snr_db(x, x_hat):
    x = x.astype(np.float64)
    return 10 * math.log10(np.dot(x, x) / np.sum((x - x_hat.astype(np.float64)) ** 2))


finite_floats = hnp.arrays(np.float32, st.integers(1, 200), elements=st.floats(-1e3, 1e3, allow_nan=False, width=32))


@pytest.mark.small
@given(finite_floats, st.floats(1e-3, 10.0), st.sampled_from([0.0, 0.2, 0.35, 0.5, 0.7]))
def test_quantize_matches_formula(x, step, dead_zone):
    q = qz.quantize(x, step, dead_zone)
    assert q.shape == x.shape
    assert np.array_equal(q.astype(np.int64), _reference_symbols(x, step, dead_zone))


@pytest.mark.small
@given(finite_floats, st.floats(1e-3, 10.0))
def test_midpoint_rounding_error_is_at_most_half_a_step(x, step):
    x_hat = qz.dequantize(qz.quantize(x, step), step, dtype=np.float64)
    x64 = x.astype(np.float64)
    assert np.all(np.abs(x64 - x_hat) <= step / 2 + _ROUNDING * np.abs(x64))


@pytest.mark.small
@given(finite_floats, st.floats(1e-3, 10.0), st.floats(0.0, 0.5))
def test_dead_zone_bins(x, step, dead_zone):
    q = qz.quantize(x, step, dead_zone)
    x64 = x.astype(np.float64)
    zero = q == 0
    assert np.all(np.abs(x64[zero]) <= step * (1 - dead_zone) + _ROUNDING * np.abs(x64[zero]))  # the widened zero bin
    mid = qz.dequantize(q, step, dead_zone, "midpoint", dtype=np.float64)
    assert np.all((np.abs(x64 - mid) - _ROUNDING * np.abs(x64))[~zero] <= step / 2)  # other bins: width step
    lattice = qz.dequantize(q, step, dead_zone, "lattice", dtype=np.float64)
    assert np.array_equal(lattice, q * step)


@pytest.mark.small
def test_symbol_dtype_is_the_smallest_that_fits():
    x = np.array([-1.0, 1.0], dtype=np.float32)
    assert qz.quantize(x, 1 / 127).dtype == np.int8
    assert qz.quantize(x, 1 / 128).dtype == np.int16
    assert qz.quantize(x, 1 / 32767).dtype == np.int16
    assert qz.quantize(x, 1 / 32768).dtype == np.int32
    assert qz.quantize(x, 1 / (2**31 - 2)).dtype == np.int32
    with pytest.raises(InvalidArgumentError):
        qz.quantize(x, 1 / 2**31)
    assert qz.quantize(np.zeros(0, dtype=np.float32), 1.0).dtype == np.int8


@pytest.mark.small
def test_accepts_float16_integer_and_nd_input():
    x16 = np.array([[0.5, -1.25], [3.0, 0.0]], dtype=np.float16)
    assert np.array_equal(qz.quantize(x16, 0.25), [[2, -5], [12, 0]])
    assert np.array_equal(qz.quantize(np.array([3, -7]), 2.0), [2, -4])  # 1.5 and 3.5 round up in magnitude
    out = qz.dequantize(np.array([[1, -2]], dtype=np.int16), 0.5, dtype=np.float16)
    assert out.dtype == np.float16 and np.array_equal(out, [[0.5, -1.0]])


@pytest.mark.parametrize("step", [0.0, -1.0, math.nan, math.inf, True, "1"])
def test_bad_step_raises(step):
    with pytest.raises(InvalidArgumentError):
        qz.quantize(np.ones(3), step)
    with pytest.raises(InvalidArgumentError):
        qz.QuantizerParams(step)


@pytest.mark.parametrize("dead_zone", [-0.1, 1.0, math.nan])
def test_bad_dead_zone_raises(dead_zone):
    with pytest.raises(InvalidArgumentError):
        qz.quantize(np.ones(3), 0.1, dead_zone)
    with pytest.raises(InvalidArgumentError):
        qz.QuantizerParams(0.1, dead_zone)


@pytest.mark.small
def test_bad_inputs_raise():
    with pytest.raises(InvalidArgumentError):
        qz.quantize(np.array([1.0, np.nan]), 0.1)
    with pytest.raises(InvalidArgumentError):
        qz.quantize(np.array([1.0, -np.inf], dtype=np.float32), 0.1)
    with pytest.raises(InvalidArgumentError):
        qz.QuantizerParams(0.1, 0.5, "centroid")
    with pytest.raises(InvalidArgumentError):
        qz.dequantize(np.array([1.0]), 0.1)  # symbols must be integers
    with pytest.raises(InvalidArgumentError):
        qz.dequantize(np.array([1]), 0.1, reconstruction="gg")  # needs (nu, beta)
    with pytest.raises(InvalidArgumentError):
        qz.dequantize(np.array([1]), 0.1, dtype=np.int32)


def test_params_dataclass_keeps_valid_values():
    p = qz.QuantizerParams(0.25, 0.4, "gg")
    assert (p.step, p.dead_zone, p.reconstruction) == (0.25, 0.4, "gg")
    assert qz.QuantizerParams(1.0) == qz.QuantizerParams(1.0, 0.5, "midpoint")


def test_gg_reconstruction_is_symmetric_inside_bins_and_beats_midpoints():
    x = _laplace(200_000)
    nu, beta = gg.fit_generalized_gaussian(x)
    step, dead_zone = 0.03, 0.4  # coarse: the density falls visibly across a bin
    table, beyond = qz.reconstruction_table(step, dead_zone, "gg", (nu, beta), levels=16)
    j = np.arange(1, 17)
    assert table[0] == 0.0 and beyond == pytest.approx(0.1)
    assert np.all(table[1:] > (j - dead_zone) * step) and np.all(table[1:] < (j + 1 - dead_zone) * step)
    assert np.all(table[1:] < (j + 0.5 - dead_zone) * step)  # a falling density pulls centroids down
    q = qz.quantize(x, step, dead_zone)
    x_gg = qz.dequantize(q, step, dead_zone, "gg", (nu, beta), levels=16, dtype=np.float64)
    assert np.array_equal(qz.dequantize(-q, step, dead_zone, "gg", (nu, beta), levels=16, dtype=np.float64), -x_gg)
    big = np.abs(q) > 16
    assert np.array_equal(x_gg[big], qz.dequantize(q, step, dead_zone, dtype=np.float64)[big])
    x_mid = qz.dequantize(q, step, dead_zone, "midpoint", dtype=np.float64)
    assert _snr_db(x, x_gg) > _snr_db(x, x_mid) + 0.2  # measured 0.29 dB


@pytest.mark.small
@pytest.mark.parametrize("reconstruction", ["midpoint", "lattice", "gg"])
def test_squared_error_matches_dequantize(reconstruction):
    x = _laplace(10_000)
    gg_params = gg.fit_generalized_gaussian(x)
    x_hat = qz.dequantize(qz.quantize(x, 0.01, 0.3), 0.01, 0.3, reconstruction, gg_params, dtype=np.float64)
    expected = np.sum((x.astype(np.float64) - x_hat) ** 2)
    assert qz.squared_error(x, 0.01, 0.3, reconstruction, gg_params) == pytest.approx(expected, rel=1e-12)


@pytest.mark.small
@given(hnp.arrays(np.int16, st.integers(0, 300), elements=st.integers(-3000, 3000)))
def test_exp_golomb_bits_matches_expgolomb_module(symbols):
    u = expgolomb.signed_to_unsigned(symbols)
    expected = expgolomb.code_length(u, expgolomb.best_order(u)) if symbols.size else 0
    assert qz.exp_golomb_bits(symbols) == expected


@pytest.mark.small
def test_exp_golomb_bits_wide_symbols_and_bad_input():
    s = np.array([0, 3, -(2**30), 2**31 - 1], dtype=np.int32)
    u = expgolomb.signed_to_unsigned(s)
    assert qz.exp_golomb_bits(s) == expgolomb.code_length(u, expgolomb.best_order(u))
    with pytest.raises(InvalidArgumentError):
        qz.exp_golomb_bits(np.array([0.5]))


@pytest.mark.parametrize("snr_db", [10.0, 25.0, 40.0])
@pytest.mark.parametrize("dead_zone, reconstruction", [(0.5, "midpoint"), (0.3, "lattice"), (0.4, "gg")])
def test_step_for_snr_reaches_target_with_the_largest_step(snr_db, dead_zone, reconstruction):
    x = _laplace(50_000)
    gg_params = gg.fit_generalized_gaussian(x)

    def snr(step):
        err = qz.squared_error(x, step, dead_zone, reconstruction, gg_params)
        return 10 * math.log10(np.sum(x.astype(np.float64) ** 2) / err)

    step = ss.step_for_snr(x, snr_db, dead_zone, reconstruction, gg_params)
    assert snr(step) >= snr_db
    assert snr(step * 1.05) < snr_db


def test_step_for_snr_edge_cases():
    assert ss.step_for_snr(np.zeros(10, dtype=np.float32), 30.0) == 1.0  # exact at any step
    x = _laplace(1000)
    assert ss.step_for_snr(x, -5.0) >= 2 * np.abs(x).max()  # 0 dB is all zeros: any coarse step passes
    with pytest.raises(InvalidArgumentError):
        ss.step_for_snr(x, 400.0)  # beyond what int32 symbols can resolve
    for bad in (math.nan, math.inf):
        with pytest.raises(InvalidArgumentError):
            ss.step_for_snr(x, bad)
    with pytest.raises(InvalidArgumentError):
        ss.step_for_snr(np.zeros(0), 10.0)


@pytest.mark.parametrize("bits", [1.5, 3.0, 4.0, 6.0, 8.0])
@pytest.mark.parametrize("dead_zone", [0.5, 0.3])
def test_step_for_bits_meets_target_with_the_smallest_step(bits, dead_zone):
    x = _laplace(50_000)

    def rate(step):
        return qz.exp_golomb_bits(qz.quantize(x, step, dead_zone)) / x.size

    step = ss.step_for_bits(x, bits, dead_zone=dead_zone)
    assert rate(step) <= bits
    assert rate(step / 1.05) > bits


def test_step_for_bits_with_a_custom_rate():
    x = _laplace(20_000)

    def nonzero_bits(symbols):  # one bit per nonzero: a stand-in model
        return float(np.count_nonzero(symbols))

    step = ss.step_for_bits(x, 0.25, nonzero_bits)
    assert np.count_nonzero(qz.quantize(x, step)) / x.size <= 0.25
    assert np.count_nonzero(qz.quantize(x, step / 1.05)) / x.size > 0.25


def test_step_for_bits_edge_cases():
    x = _laplace(1000)
    with pytest.raises(InvalidArgumentError):
        ss.step_for_bits(x, 0.5)  # exp-Golomb spends at least one bit a symbol
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(InvalidArgumentError):
            ss.step_for_bits(x, bad)
    assert ss.step_for_bits(np.zeros(10, dtype=np.float32), 1.0) == 1.0
    with pytest.raises(InvalidArgumentError):
        ss.step_for_bits(np.zeros(10, dtype=np.float32), 0.5)


@given(hnp.arrays(np.float32, st.integers(0, 300), elements=st.floats(-(2.0**100), 2.0**100, width=32)))
def test_max_abs_and_signal_in_one_pass(x):
    top, signal = measure.max_abs_and_signal(x)
    assert top == (float(np.max(np.abs(x))) if x.size else 0.0)
    assert signal == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)), rel=1e-12)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_max_abs_and_signal_flags_a_value_that_is_not_finite(bad):
    x = np.array([0.5, bad, -2.0], dtype=np.float32)
    assert measure.max_abs_and_signal(x)[0] == math.inf
    big = np.array([1e200, -3.0])  # finite, though its square is not
    assert measure.max_abs_and_signal(big)[0] == 1e200


def test_max_abs_and_signal_a_piece_at_a_time_is_the_same():
    from bslz.formats.dtypes import from_float32, lookup, to_float32

    bf16 = lookup("BF16")
    words = from_float32(np.random.default_rng(5).laplace(0, 0.02, 10_007).astype(np.float32), bf16)
    whole = measure.max_abs_and_signal(to_float32(words, bf16))
    assert measure.max_abs_and_signal(words, widen=lambda piece: to_float32(piece, bf16), piece=1000) == whole
    words[7777] = 0x7FC0  # a NaN in a later piece
    assert measure.max_abs_and_signal(words, widen=lambda piece: to_float32(piece, bf16), piece=1000)[0] == math.inf


@given(
    hnp.arrays(np.float32, st.integers(0, 9000), elements=st.floats(-(2.0**100), 2.0**100, width=32)),
    st.sampled_from(["F32", "F64", "BF16"]),
)
def test_the_sums_for_a_guess_are_the_one_pass_sums_in_another_order(x, name):
    """max |x| exact, sum x^2 within rounding, of floats or of bfloat16 words (pieces of 4096 values:
    sizes around a piece and its four-value groups)."""
    from bslz.formats.dtypes import from_float32, lookup, to_float32

    if name == "F64":
        x = x.astype(np.float64)
    words = from_float32(x, lookup("BF16")) if name == "BF16" else None
    values = x if words is None else to_float32(words, lookup("BF16"))
    top, signal = (
        measure.max_abs_and_signal_for_a_guess(x)
        if words is None
        else measure.max_abs_and_signal_for_a_guess(words, bfloat16_words=True)
    )
    assert top == (float(np.max(np.abs(values))) if x.size else 0.0)
    assert signal == pytest.approx(measure.max_abs_and_signal(values)[1], rel=1e-12)


@pytest.mark.parametrize("where", [0, 4095, 4096, 2**21 - 1, 2**21 + 3])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_the_sums_for_a_guess_flag_a_value_that_is_not_finite_anywhere(where, bad):
    """In any piece (a large array is cut into pieces side by side), in a group of four or in the
    last values: max |x| is inf, for float32 values and for bfloat16 words."""
    from bslz.formats.dtypes import from_float32, lookup

    x = np.random.default_rng(where).laplace(0, 0.02, 2**21 + 4).astype(np.float32)
    x[where] = bad
    assert measure.max_abs_and_signal_for_a_guess(x)[0] == math.inf
    words = from_float32(np.nan_to_num(x), lookup("BF16"))
    words[where] = {math.inf: 0x7F80, -math.inf: 0xFF80}.get(bad, 0x7FC0)
    assert measure.max_abs_and_signal_for_a_guess(words, bfloat16_words=True)[0] == math.inf


@pytest.mark.parametrize("name", ["BF16", "F16", "F32", "F64", "F8_E4M3", "F8_E5M2"])
def test_rounding_to_a_dtype_into_a_given_array(name):
    """from_float32(values, dtype, out=words) writes the words from_float32 returns, into `out`."""
    from bslz.formats.dtypes import from_float32, lookup

    dtype = lookup(name)
    values = np.random.default_rng(3).laplace(0, 0.5, (3, 337)).astype(np.float32)
    out = np.zeros(values.size, dtype=dtype.word_dtype)
    got = from_float32(values, dtype, out=out)
    assert np.shares_memory(got, out) and got.shape == values.shape
    np.testing.assert_array_equal(out, from_float32(values, dtype).reshape(-1))
    with pytest.raises(InvalidArgumentError):
        from_float32(values, dtype, out=np.zeros(values.size - 1, dtype=dtype.word_dtype))


def _sums_in_their_order(x, x_hat):
    """(sum |x|, sum x^2, sum (x - x_hat)^2) in the order `measure` documents: each SUM_PIECE piece
    in SUM_LANES lanes (value i into lane i % SUM_LANES), the lanes' upper half added onto their
    lower half until one is left, and the pieces' sums added in order."""
    totals = [0.0, 0.0, 0.0]
    a, d = x.astype(np.float64), x.astype(np.float64) - x_hat.astype(np.float64)
    for lo in range(0, x.size, measure.SUM_PIECE):
        lanes = [[0.0] * measure.SUM_LANES for _ in range(3)]
        for i in range(lo, min(x.size, lo + measure.SUM_PIECE)):
            j = (i - lo) % measure.SUM_LANES
            lanes[0][j] += abs(float(a[i]))
            lanes[1][j] += float(a[i]) * float(a[i])
            lanes[2][j] += float(d[i]) * float(d[i])
        width = measure.SUM_LANES // 2
        while width:
            for sums in lanes:
                for j in range(width):
                    sums[j] += sums[j + width]
            width //= 2
        totals = [t + sums[0] for t, sums in zip(totals, lanes)]
    return tuple(totals)


@pytest.mark.small
@given(hnp.arrays(np.float32, st.integers(1, 3000), elements=st.floats(-1e3, 1e3, allow_nan=False, width=32)))
def test_moments_and_noise_are_the_sums_in_their_fixed_order(x):
    """The sums of the reconstruction's measure in the order `measure` fixes (not the machine's
    vectors), and the same carried on over pieces of SUM_PIECE values as over the whole."""
    x_hat = (x * np.float32(0.9)).astype(np.float32)
    sum_abs, signal, noise = measure.moments_and_noise(x, x_hat)
    assert (sum_abs, signal, noise) == _sums_in_their_order(x, x_hat)
    assert (signal, noise) == measure.signal_and_noise(x, x_hat)  # the same sums, the same order
    signal, noise, cut = 0.0, 0.0, measure.SUM_PIECE
    for lo in range(0, x.size, cut):
        signal, noise = measure.signal_and_noise(x[lo : lo + cut], x_hat[lo : lo + cut], signal, noise)
    assert (signal, noise) == measure.signal_and_noise(x, x_hat)


@pytest.mark.small
@pytest.mark.parametrize("name", ["BF16", "F16", "F32", "F64", "F8_E4M3", "F8_E5M2"])
@given(data=st.data())
def test_the_largest_magnitude_found_while_widening_is_numpys(name, data):
    """`to_float32_and_top`: the values `to_float32` gives, and their largest magnitude as numpy
    finds it, inf where a value is NaN or infinite (any bit pattern: NaNs, infinities, -0.0,
    subnormals)."""
    from bslz.formats.dtypes import lookup, to_float32, to_float32_and_top

    dtype = lookup(name)
    words = data.draw(hnp.arrays(dtype.word_dtype, st.integers(0, 300)))
    values, top = to_float32_and_top(words, dtype)
    np.testing.assert_array_equal(
        values.view(f"u{values.itemsize}"), to_float32(words, dtype).view(f"u{values.itemsize}")
    )
    with np.errstate(invalid="ignore"):  # a signalling NaN widened
        wide = values.astype(np.float64)
    if not np.isfinite(wide).all():
        assert top == math.inf
    else:
        assert top == (float(np.abs(wide).max()) if wide.size else 0.0)


@pytest.mark.small
def test_max_abs_over_pieces_side_by_side_and_other_float_dtypes(monkeypatch):
    x = np.random.default_rng(3).laplace(0, 1.0, 10_000).astype(np.float32)
    x[9_000] = -40.0
    monkeypatch.setattr(measure, "MAX_ABS_PIECE", 1000)  # ten pieces on the pool
    assert measure.max_abs(x) == 40.0
    x[123] = np.nan
    assert measure.max_abs(x) == math.inf
    assert measure.max_abs(np.array([-3.5, 2.0], dtype=np.float16)) == 3.5
    assert measure.max_abs(np.zeros(0)) == 0.0
