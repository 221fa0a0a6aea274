"""Static rANS table coder: round trips, a reference decoder, corruption, and compression.

Tests marked `small` also run without the JIT:
    NUMBA_DISABLE_JIT=1 PYTHONPATH=src python3 -m pytest tests/test_rans.py -m small
"""

import bisect
import itertools
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bslz.codec import _rans_kernels as kernels
from bslz.codec import _rans_table as table_kernels
from bslz.codec import rans
from bslz.codec.rans import (
    decode_rans,
    encode_rans,
    histogram,
    order0_entropy_bits,
    quantize_frequencies,
    rans_size_bits,
    rans_table,
)
from bslz.errors import BslzError, FormatError, InvalidArgumentError, TruncatedError

SCALE = 1 << 14
LOW = 1 << 31


# ---- reference decoder: Python integers and a '0'/'1' string, nothing shared with the kernels ----


def ref_header(buf):
    """(max_symbol, frequencies or None for a single-symbol stream, header bytes)."""
    bits = "".join(f"{b:08b}" for b in buf)
    pos = 0

    def eg(k):
        nonlocal pos
        zeros = len(bits[pos:]) - len(bits[pos:].lstrip("0"))
        width = zeros + 1 + k
        value = int(bits[pos + zeros : pos + zeros + width], 2) - (1 << k)
        pos += zeros + width
        return value

    max_symbol = eg(0)
    multi = bits[pos] == "1"
    pos += 1
    if not multi:
        return max_symbol, None, (pos + 7) // 8
    k = int(bits[pos : pos + 4], 2)
    pos += 4
    freqs = [0] * (max_symbol + 1)
    s = 0
    while s < max_symbol:
        f = eg(k)
        if f == 0:
            s += 1 + eg(0)
        else:
            freqs[s] = f
            s += 1
    freqs[max_symbol] = SCALE - sum(freqs)
    return max_symbol, freqs, (pos + 7) // 8


def ref_decode(buf, count):
    if count == 0:
        return []
    max_symbol, freqs, nbytes = ref_header(buf)
    if freqs is None:
        return [max_symbol] * count
    starts = [0] + list(itertools.accumulate(freqs))[:-1]
    payload = buf[nbytes:]
    words = [int.from_bytes(payload[i : i + 4], "little") for i in range(0, len(payload), 4)]
    used = min(count, 4)
    states = [words[2 * j] | words[2 * j + 1] << 32 for j in range(used)]
    pos = 2 * used
    out = []
    for i in range(count):
        x = states[i % 4]
        slot = x % SCALE
        s = bisect.bisect_right(starts, slot) - 1
        while freqs[s] == 0:  # zero-width ranges share a start with the next symbol
            s += 1
        x = freqs[s] * (x // SCALE) + slot - starts[s]
        if x < LOW:
            x = x << 32 | words[pos]
            pos += 1
        states[i % 4] = x
        out.append(s)
    assert states == [LOW] * used and pos == len(words)
    return out


def round_trip(symbols):
    buf = encode_rans(symbols)
    got = decode_rans(buf, symbols.size)
    assert got.dtype == (np.uint16 if symbols.size and symbols.max() > 255 else np.uint8)
    np.testing.assert_array_equal(got, symbols)
    assert rans_size_bits(symbols) == 8 * len(buf)
    return buf


def gaussian_exponents(n, seed=0):
    """Exponent bytes of float32 Gaussian samples: the peaked stream this coder exists for."""
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    return ((x.view(np.uint32) >> 23) & 0xFF).astype(np.uint8)


# ---- round trips ----


@pytest.mark.small
def test_empty_stream_is_zero_bytes():
    assert encode_rans(np.zeros(0, np.uint8)) == b""
    assert decode_rans(b"", 0).size == 0
    with pytest.raises(FormatError):
        decode_rans(b"\x00", 0)
    with pytest.raises(TruncatedError):
        decode_rans(b"", 3)


@pytest.mark.small
@pytest.mark.parametrize("symbol, dtype", [(0, np.uint8), (200, np.uint8), (4095, np.uint16)])
def test_one_distinct_symbol_is_a_header_alone(symbol, dtype):
    symbols = np.full(1000, symbol, dtype)
    buf = round_trip(symbols)
    assert len(buf) <= 4  # EG0(max_symbol) and one bit: 25 + 1 bits at most
    assert ref_decode(buf, 1000) == symbols.tolist()
    with pytest.raises(FormatError):
        decode_rans(buf + b"\x00", 1000)


@pytest.mark.small
def test_pinned_bytes():
    # [0, 1]: EG0(1)=010, multi=1, k=1100, EG12(8192), pad; then states 2**32 and 2**32 + 8192
    assert encode_rans(np.array([0, 1], np.uint8)).hex() == "5c6000" + "0000000001000000" + "0020000001000000"


@pytest.mark.small
@given(hnp.arrays(np.uint8, st.integers(0, 300), elements=st.integers(0, 12)))
def test_round_trip_uint8_small(symbols):
    buf = round_trip(symbols)
    assert ref_decode(buf, symbols.size) == symbols.tolist()


@given(hnp.arrays(np.uint8, st.integers(0, 3000)))
def test_round_trip_uint8(symbols):
    round_trip(symbols)


@given(
    st.integers(1, 4096).flatmap(
        lambda alphabet: hnp.arrays(np.uint16, st.integers(1, 3000), elements=st.integers(0, alphabet - 1))
    )
)
def test_round_trip_uint16(symbols):
    round_trip(symbols)


@given(st.floats(0.02, 0.98), st.integers(1, 20000), st.integers(0, 2**32 - 1))
def test_round_trip_skewed(p, n, seed):
    symbols = np.minimum(np.random.default_rng(seed).geometric(p, n) - 1, 255).astype(np.uint8)
    round_trip(symbols)


@given(st.floats(0.02, 0.98), st.integers(1, 20000), st.integers(0, 2**32 - 1), st.integers(1, 4095))
def test_size_lower_bound_holds_and_a_given_table_codes_the_same(p, n, seed, top):
    """RansTable.min_bytes() never exceeds the coded size (callers skip coding on it), and a table
    passed in gives the same bytes as the one encode_rans builds itself."""
    rng = np.random.default_rng(seed)
    symbols = np.minimum(rng.geometric(p, n) - 1, top).astype(np.uint16)
    table = rans_table(histogram(symbols))
    coded = encode_rans(symbols, table)
    assert coded == encode_rans(symbols)
    assert table.min_bytes() <= len(coded)
    assert len(coded) <= table.min_bytes() + 8 * kernels.NUM_STATES + 4  # and it is close


def test_round_trip_all_256_symbols_and_alphabet_4096():
    rng = np.random.default_rng(1)
    round_trip(rng.permutation(np.repeat(np.arange(256, dtype=np.uint8), 37)))
    round_trip(rng.permutation(np.arange(4096, dtype=np.uint16).repeat(3)))
    round_trip(rng.integers(0, 4096, 100000).astype(np.uint16))


@pytest.mark.small
def test_one_rare_symbol_in_a_long_run():
    # the dominant symbol gets SCALE - 1: the cheapest a symbol can be
    symbols = np.zeros(50000, np.uint8)
    symbols[12345] = 1
    buf = round_trip(symbols)
    assert len(buf) < 60


@pytest.mark.small
def test_decode_into_out_and_other_input_types():
    symbols = np.array([1, 2, 2, 3, 3, 3, 9], np.uint8)
    buf = encode_rans(symbols)
    out = np.zeros(7, np.uint16)
    assert decode_rans(bytearray(buf), 7, out=out) is out
    np.testing.assert_array_equal(out, symbols)
    np.testing.assert_array_equal(decode_rans(np.frombuffer(buf, np.uint8), 7), symbols)
    np.testing.assert_array_equal(decode_rans(encode_rans(symbols.astype(">u2")), 7), symbols)
    wide = encode_rans(np.array([300, 1], np.uint16))
    with pytest.raises(FormatError):
        decode_rans(wide, 2, out=np.zeros(2, np.uint8))


@pytest.mark.small
@pytest.mark.parametrize("dtype, shift", [(np.uint16, 5), (np.uint32, 20), (np.uint64, 51), (np.uint8, 1)])
def test_decode_with_a_shift_writes_the_symbols_shifted(dtype, shift):
    rng = np.random.default_rng(3)
    symbols = np.minimum(rng.geometric(0.05, 5001), 100).astype(np.uint16)
    out = np.full(symbols.size, 7, dtype)  # overwritten, not ORed
    assert decode_rans(encode_rans(symbols), symbols.size, out=out, shift=shift) is out
    np.testing.assert_array_equal(out, symbols.astype(np.uint64) << np.uint64(shift))
    one = np.full(9, 3, np.uint16)
    np.testing.assert_array_equal(decode_rans(encode_rans(one), 9, out=np.zeros(9, dtype), shift=shift), 3 << shift)


@pytest.mark.small
def test_symbols_above_the_limit_or_the_shifted_width_are_an_error():
    buf = encode_rans(np.array([5, 1, 40, 40], np.uint16))
    np.testing.assert_array_equal(decode_rans(buf, 4, limit=40), [5, 1, 40, 40])
    with pytest.raises(FormatError, match="above 39"):
        decode_rans(buf, 4, limit=39)
    with pytest.raises(FormatError, match="above 31"):  # 40 << 11 does not fit 16 bits
        decode_rans(buf, 4, out=np.zeros(4, np.uint16), shift=11)
    with pytest.raises(FormatError, match="above 3"):
        decode_rans(encode_rans(np.full(3, 4, np.uint8)), 3, limit=3)
    with pytest.raises(InvalidArgumentError, match="needs out"):
        decode_rans(buf, 4, shift=2)
    with pytest.raises(InvalidArgumentError):
        decode_rans(buf, 4, out=np.zeros(4, np.uint32))  # wide outputs only with a shift


@pytest.mark.small
def test_any_unsigned_width_up_to_32_bits_codes_the_same():
    """Quantizer symbols come as uint32: coded as they are, the same bytes as narrowed to uint16."""
    values = np.random.default_rng(9).geometric(0.05, 5000).astype(np.uint16)
    expected = encode_rans(values)
    assert encode_rans(values.astype(np.uint32)) == expected
    with pytest.raises(InvalidArgumentError):  # still below 4096 only
        encode_rans(np.array([1, 4096, 2], np.uint32))


@pytest.mark.small
@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(3, np.int32),
        np.zeros((2, 2), np.uint8),
        np.array([4096], np.uint16),
        np.zeros(3, np.float32),
        np.zeros(3, np.uint64),
    ],
)
def test_encode_rejects_bad_input(bad):
    with pytest.raises(InvalidArgumentError):
        encode_rans(bad)


@pytest.mark.small
def test_decode_rejects_bad_arguments():
    buf = encode_rans(np.array([1, 2], np.uint8))
    for kwargs in (
        {"count": -1},
        {"count": 2, "out": np.zeros(3, np.uint8)},
        {"count": 2, "out": np.zeros(2, np.int8)},
    ):
        with pytest.raises(InvalidArgumentError):
            decode_rans(buf, **kwargs)


@pytest.mark.small
def test_encode_step_quotient_is_exact_at_the_extremes():
    # the kernel divides by multiplying with a reciprocal: check against integer divmod
    rng = np.random.default_rng(5)
    freqs = np.array([1, 2, 3, 5, 7, 4097, 8191, 8192, SCALE - 1] + rng.integers(1, SCALE, 20).tolist(), np.uint32)
    starts = (SCALE - freqs).astype(np.uint32)  # the largest start each frequency can have
    table = np.zeros((freqs.size, 4), np.uint64)
    kernels.coding_table(freqs, starts, table)
    for f, start, row in zip(freqs.tolist(), starts.tolist(), table):
        top = f << 49  # states at or above this spill a word first
        for x in [LOW, LOW + 1, top - 1, top - f, top - f - 1, top // 3, top, 2**63 - 1]:
            got, spill, word = kernels.encode_step(np.uint64(x), *row)
            y = x >> 32 if x >= top else x
            assert bool(spill) == (x >= top) and int(word) == x & 0xFFFFFFFF
            assert int(got) == (y // f << 14) + y % f + start


@pytest.mark.small
def test_mulhi64_is_the_high_half_of_the_product():
    from bslz.codec._jit import mulhi64

    top = 2**64 - 1
    for a, b in [(0, 0), (1, top), (top, top), (2**63, 2), (2**32 + 1, 2**32 - 1), (0xDEADBEEFCAFEF00D, 0x123456789)]:
        assert int(mulhi64(np.uint64(a), np.uint64(b))) == (a * b) >> 64


@pytest.mark.small
def test_reciprocals_divide_exactly():
    """x // f == mulhi(x, rcp) >> shift for every frequency and states across [0, 2**63)."""
    freqs = np.arange(2, SCALE + 1, dtype=np.uint32)
    rcps, shifts = np.zeros(freqs.size, np.uint64), np.zeros(freqs.size, np.uint64)
    kernels.reciprocals(freqs, rcps, shifts)
    for f, rcp, shift in zip(
        freqs.tolist()[::97] + [SCALE - 1, SCALE],
        rcps[::97].tolist() + rcps[-2:].tolist(),
        shifts[::97].tolist() + shifts[-2:].tolist(),
    ):
        assert rcp == -(-(1 << (63 + shift + 1)) // f) and shift + 1 == (f - 1).bit_length()
        for x in (0, 1, f - 1, f, LOW, 2**62 + 12345, 2**63 - 1, (2**63 // f) * f, (2**63 // f) * f - 1):
            assert ((x * rcp) >> (64 + shift)) == x // f


# ---- frequency quantisation ----


@pytest.mark.small
@pytest.mark.parametrize("hist", [[5, 1, 1], [100, 3, 0, 1], [1, 1, 1, 1], [7, 0, 2, 30, 1], [1000, 1]])
def test_quantization_is_optimal_against_brute_force(hist):
    scale = 16
    hist = np.array(hist)
    present = np.flatnonzero(hist)

    def cost(f):
        return sum(hist[i] * math.log2(scale / f[j]) for j, i in enumerate(present))

    best = min(cost(f) for f in itertools.product(range(1, scale + 1), repeat=present.size) if sum(f) == scale)
    freqs = quantize_frequencies(hist, scale)
    assert freqs.sum() == scale and ((freqs > 0) == (hist > 0)).all()
    assert cost(freqs[present]) <= best + 1e-9


# ---- corruption and truncation ----


@pytest.mark.small
def test_every_truncation_is_truncated_error():
    symbols = np.random.default_rng(2).geometric(0.4, 150).astype(np.uint8)
    buf = encode_rans(symbols)
    for n in range(len(buf)):
        with pytest.raises(TruncatedError):
            decode_rans(buf[:n], symbols.size)


@pytest.mark.small
@pytest.mark.parametrize("extra", [b"\x00", b"\x00\x00\x00", b"\x00" * 4, b"\xff" * 8])
def test_trailing_bytes_are_format_errors(extra):
    buf = encode_rans(np.array([1, 2, 3, 1, 1], np.uint8))
    with pytest.raises(FormatError):
        decode_rans(buf + extra, 5)


def test_a_header_longer_than_the_parsed_prefix_is_read_whole():
    """A table of thousands of symbols takes more than the HEADER_PREFIX_BYTES parsed first: the
    whole buffer is parsed then, to the reference's table and length."""
    symbols = np.random.default_rng(21).integers(0, 4000, 20_000).astype(np.uint16)
    buf = encode_rans(symbols)
    max_symbol, freqs, nbytes = rans.read_header(buf)
    assert nbytes > rans.HEADER_PREFIX_BYTES
    assert (max_symbol, list(freqs), nbytes) == ref_header(buf)
    np.testing.assert_array_equal(decode_rans(buf, symbols.size), symbols)


@pytest.mark.small
def test_nonzero_header_padding_is_format_error():
    buf = bytearray(encode_rans(np.full(5, 5, np.uint8)))  # EG0(5) + bit = 6 bits, 2 padding bits
    buf[0] |= 1
    with pytest.raises(FormatError):
        decode_rans(bytes(buf), 5)


def decode_or_error(buf, count):
    """Corrupt input may decode (undetectable damage) but only ever to `count` symbols, or raise BslzError."""
    try:
        got = decode_rans(buf, count)
    except BslzError:
        return
    assert got.size == count


def test_every_bit_flip_is_caught_or_harmless():
    symbols = gaussian_exponents(400)
    buf = encode_rans(symbols)
    detected = 0
    for bit in range(8 * len(buf)):
        bad = bytearray(buf)
        bad[bit // 8] ^= 1 << (bit % 8)
        try:
            decode_rans(bytes(bad), symbols.size)
        except FormatError:
            detected += 1
    assert detected >= 0.9 * 8 * len(buf)  # the final-state check catches nearly every flip


@pytest.mark.small
@given(st.binary(max_size=200), st.integers(0, 500))
def test_random_bytes_never_crash(buf, count):
    decode_or_error(buf, count)


@given(st.binary(min_size=1, max_size=2000), st.integers(1, 100000))
def test_random_bytes_after_a_valid_header_never_crash(tail, count):
    header = encode_rans(gaussian_exponents(1000))[:8]
    decode_or_error(header + tail, count)


# ---- compression ----


def test_gaussian_exponents_within_half_a_percent_of_entropy():
    symbols = gaussian_exponents(131072)
    bits = rans_size_bits(symbols)
    entropy = order0_entropy_bits(symbols)
    header_allowance = 8 * 64  # frequency table and four 64-bit states
    assert bits <= 1.005 * entropy + header_allowance
    assert bits >= entropy  # sanity: nothing beats the order-0 bound on i.i.d. data by much


@pytest.mark.small
def test_order0_entropy():
    assert order0_entropy_bits(np.array([1, 1, 2, 2], np.uint8)) == 4.0
    assert order0_entropy_bits(np.zeros(0, np.uint8)) == 0.0


@pytest.mark.small
@given(st.lists(st.integers(0, 10**7), min_size=2, max_size=300))
def test_quantization_starts_from_the_proportional_rounding(counts):
    """The kernel rounds as numpy would (the same start, so the same table as earlier versions wrote)."""
    hist = np.array(counts, dtype=np.uint64)
    assume(np.count_nonzero(hist) >= 1)
    idx = np.flatnonzero(hist)
    c = hist[idx].astype(np.float64)
    f = np.maximum(1, np.floor(c * kernels.SCALE / c.sum() + 0.5)).astype(np.int64)
    table_kernels.improve_frequencies(c, f, kernels.SCALE)
    expected = np.zeros(hist.size, dtype=np.uint32)
    expected[idx] = f
    assert np.array_equal(quantize_frequencies(hist), expected)


def _exchanges_by_scan(counts, freqs, scale):
    """The greedy exchanges as `improve_frequencies` documents them, each move a scan of every
    symbol: np.argmax of the gains, np.argmin of the losses (the first of equals)."""
    freqs = freqs.copy()

    def gains():
        return counts * np.log2((freqs + 1) / freqs)

    def losses():
        with np.errstate(divide="ignore"):
            return np.where(freqs > 1, counts * np.log2(freqs / np.maximum(freqs - 1, 1)), np.inf)

    for _ in range(4 * scale + counts.size):
        total = int(freqs.sum())
        i = int(np.argmax(gains())) if total <= scale else -1
        j = int(np.argmin(losses())) if total >= scale else -1
        if total == scale and gains()[i] <= losses()[j] + 1e-9:
            break
        if i >= 0:
            freqs[i] += 1
        if j >= 0:
            freqs[j] -= 1
    return freqs


@pytest.mark.small
@given(st.lists(st.integers(1, 10**6), min_size=2, max_size=400), st.sampled_from([64, 1024, kernels.SCALE]))
def test_frequency_exchanges_pick_what_a_scan_picks(counts, scale):
    """The tournament trees of `improve_frequencies` move the frequencies a scan of every symbol
    would (many rare symbols: many moves), to the same table."""
    c = np.array(counts, dtype=np.float64)
    assume(c.size <= scale // 2)
    f = np.maximum(1, np.floor(c * scale / c.sum() + 0.5)).astype(np.int64)
    expected = _exchanges_by_scan(c, f, scale)
    table_kernels.improve_frequencies(c, f, scale)
    assert np.array_equal(f, expected) and f.sum() == scale
