import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bslz.codec import expgolomb as eg
from bslz.errors import BslzError, FormatError, InvalidArgumentError, TruncatedError
from reference import bits_of, eg_codeword, eg_decode, eg_encode, zigzag

# Known codewords: H.264 ue(v) for k = 0, and the EG1 / EG2 rows of the standard table.
KNOWN = {
    0: ["1", "010", "011", "00100", "00101", "00110", "00111", "0001000", "0001001"],
    1: ["10", "11", "0100", "0101", "0110", "0111", "001000", "001001", "001010"],
    2: ["100", "101", "110", "111", "01000", "01001", "01010", "01011", "01100"],
}
UINTS = [np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.mark.small
@pytest.mark.parametrize("k", sorted(KNOWN))
def test_known_codewords(k):
    for n, word in enumerate(KNOWN[k]):
        assert eg_codeword(n, k) == word  # the reference agrees with the standard table
        buf, nbits = eg.encode(np.array([n], dtype=np.uint8), k)
        assert nbits == len(word)
        assert bits_of(buf, nbits) == word
        assert eg.decode(buf, 1, k)[0] == n


@pytest.mark.small
def test_stream_of_known_codewords_is_back_to_back():
    buf, nbits = eg.encode(np.arange(9, dtype=np.uint16), 0)
    assert bits_of(buf, nbits) == "".join(KNOWN[0])
    assert len(buf) == (nbits + 7) // 8
    assert "1" not in bits_of(buf, len(buf) * 8)[nbits:]  # padding bits are zero


@pytest.mark.small
@given(
    values=st.lists(st.integers(0, 300), max_size=40),
    k=st.integers(0, 6),
    dtype=st.sampled_from(UINTS[1:]),
)
def test_encode_matches_reference_small(values, k, dtype):
    arr = np.array(values, dtype=dtype)
    buf, nbits = eg.encode(arr, k)
    assert bits_of(buf, nbits) == eg_encode(values, k)
    assert eg.code_length(arr, k) == nbits
    assert eg.decode(buf, len(values), k).tolist() == values


@given(
    values=st.lists(st.integers(0, eg.MAX_VALUE), max_size=200),
    k=st.integers(0, eg.MAX_ORDER),
)
def test_encode_matches_reference_full_range(values, k):
    arr = np.array(values, dtype=np.uint64)
    buf, nbits = eg.encode(arr, k)
    assert bits_of(buf, nbits) == eg_encode(values, k)
    assert eg.decode(buf, len(values), k).tolist() == values


@given(
    arr=hnp.arrays(st.sampled_from(UINTS), st.integers(0, 3000), elements=st.integers(0, 255)),
    k=st.integers(0, 14),
)
def test_round_trip_any_uint_dtype(arr, k):
    buf, nbits = eg.encode(arr, k)
    np.testing.assert_array_equal(eg.decode(buf, arr.size, k), arr.astype(np.uint64))


@given(
    prefix=st.text("01", max_size=70),
    values=st.lists(st.integers(0, 1 << 40), min_size=1, max_size=30),
    k=st.integers(0, 20),
)
def test_decode_at_any_bit_offset(prefix, values, k):
    bits = prefix + eg_encode(values, k)
    bits += "0" * (-len(bits) % 8)
    buf = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    assert eg.decode(buf, len(values), k, bit_offset=len(prefix)).tolist() == values


@pytest.mark.small
@given(bits=st.text("01", min_size=8, max_size=200), k=st.integers(0, 8), count=st.integers(1, 20))
def test_decode_agrees_with_reference_on_arbitrary_bits(bits, k, count):
    """On any bit string the decoder returns what the reference reads, or says why it cannot."""
    bits = bits[: len(bits) // 8 * 8]
    buf = int(bits, 2).to_bytes(len(bits) // 8, "big")
    try:
        expected, _ = eg_decode(bits, count, k)
    except IndexError:
        expected = None  # the reference ran off the end
    if expected is not None and all(v < (1 << 64) for v in expected):
        assert eg.decode(buf, count, k).tolist() == expected
    else:
        with pytest.raises(FormatError):
            eg.decode(buf, count, k)


@pytest.mark.small
def test_empty_and_single_symbols():
    buf, nbits = eg.encode(np.zeros(0, dtype=np.uint8), 3)
    assert nbits == 0 and len(buf) == 0
    assert eg.decode(b"", 0, 3).size == 0
    for k in (0, 5, eg.MAX_ORDER):
        for n in (0, 1, 2**k, eg.MAX_VALUE):
            buf, nbits = eg.encode(np.array([n], dtype=np.uint64), k)
            assert nbits == len(eg_codeword(n, k))
            assert eg.decode(buf, 1, k)[0] == n


@pytest.mark.small
def test_largest_values_give_codewords_longer_than_a_word():
    n = eg.MAX_VALUE
    buf, nbits = eg.encode(np.array([n, 0, n], dtype=np.uint64), 0)
    assert nbits == 2 * len(eg_codeword(n, 0)) + 1 and len(eg_codeword(n, 0)) == 125
    assert eg.decode(buf, 3, 0).tolist() == [n, 0, n]


@pytest.mark.small
def test_truncation_at_every_length_raises():
    values = np.array([0, 7, 1000, 3, 2**33, 12], dtype=np.uint64)
    buf, nbits = eg.encode(values, 2)
    for cut in range(len(buf)):
        with pytest.raises(TruncatedError):
            eg.decode(bytes(buf)[:cut], values.size, 2)


@pytest.mark.small
def test_too_long_codeword_is_a_format_error():
    with pytest.raises(FormatError, match="longer than 64"):
        eg.decode(bytes(9) + b"\xff" * 9, 1, 0)  # 72 leading zeros
    with pytest.raises(TruncatedError):
        eg.decode(bytes(4), 1, 0)  # all zeros: the codeword never ends


@given(buf=st.binary(max_size=64), count=st.integers(0, 600), k=st.integers(0, eg.MAX_ORDER))
def test_random_buffers_never_crash(buf, count, k):
    try:
        out = eg.decode(buf, count, k)
    except BslzError:
        return
    assert out.shape == (count,)


@pytest.mark.small
@pytest.mark.parametrize(
    "call",
    [
        lambda: eg.encode(np.array([1, 2]), -1),
        lambda: eg.encode(np.array([1, 2]), eg.MAX_ORDER + 1),
        lambda: eg.encode(np.array([-1, 2]), 0),
        lambda: eg.encode(np.array([1.5]), 0),
        lambda: eg.encode(np.zeros((2, 2), dtype=np.uint8), 0),
        lambda: eg.encode(np.array([eg.MAX_VALUE + 1], dtype=np.uint64), 0),
        lambda: eg.decode(b"\xff", -1, 0),
        lambda: eg.decode(b"\xff", 1, 0, bit_offset=9),
        lambda: eg.best_order(),
        lambda: eg.best_order(np.array([1]), histogram=np.array([1])),
    ],
)
def test_bad_arguments(call):
    with pytest.raises(InvalidArgumentError):
        call()


@given(arr=hnp.arrays(np.uint32, st.integers(1, 500), elements=st.integers(0, 1 << 20)))
def test_best_order_is_the_exact_minimum(arr):
    brute = [len(eg_encode(arr.tolist(), k)) for k in range(eg.MAX_ORDER + 1)]
    k = eg.best_order(arr)
    assert brute[k] == min(brute) and k == brute.index(min(brute))
    assert eg.order_costs(arr).tolist() == brute[: len(eg.order_costs(arr))]


@pytest.mark.small
def test_best_order_from_histogram_matches_values():
    rng = np.random.default_rng(1)
    values = rng.geometric(0.05, 5000).astype(np.uint16)
    hist = np.bincount(values)
    assert eg.best_order(histogram=hist) == eg.best_order(values)
    assert eg.order_costs(histogram=hist).tolist() == eg.order_costs(values).tolist()


@pytest.mark.small
@given(st.lists(st.integers(-(2**61), 2**61), max_size=50))
def test_signed_mapping_is_se_v(values):
    arr = np.array(values, dtype=np.int64)
    mapped = eg.signed_to_unsigned(arr)
    assert mapped.tolist() == [zigzag(v) for v in values]
    assert eg.unsigned_to_signed(mapped).tolist() == values


@pytest.mark.small
def test_signed_mapping_widens_small_types():
    arr = np.array([-128, 127, 0, -1], dtype=np.int8)
    mapped = eg.signed_to_unsigned(arr)
    assert mapped.dtype == np.uint16 and mapped.tolist() == [256, 253, 0, 2]


@pytest.mark.small
def test_signed_to_unsigned_narrow():
    """narrow: int32 input gives uint32 when every mapped value fits (all but -2**31), the same values."""
    values = np.array([0, 1, -1, 2**31 - 1, -(2**31) + 1, 12345, -7], dtype=np.int32)
    narrow = eg.signed_to_unsigned(values, narrow=True)
    assert narrow.dtype == np.uint32
    np.testing.assert_array_equal(narrow, eg.signed_to_unsigned(values))
    with_min = np.append(values, np.int32(-(2**31)))
    assert eg.signed_to_unsigned(with_min, narrow=True).dtype == np.uint64
    assert eg.signed_to_unsigned(values.astype(np.int8), narrow=True).dtype == np.uint16


@pytest.mark.small
def test_signed_to_unsigned_in_place():
    """in_place: int32 input mapped into its own memory, the same values; otherwise a new array."""
    values = np.array([0, 1, -1, 2**31 - 1, -(2**31) + 1, 12345, -7], dtype=np.int32)
    expected = eg.signed_to_unsigned(values, narrow=True)
    work = values.copy()
    mapped = eg.signed_to_unsigned(work, narrow=True, in_place=True)
    assert mapped.dtype == np.uint32 and np.shares_memory(mapped, work)
    np.testing.assert_array_equal(mapped, expected)
    with_min = np.append(values, np.int32(-(2**31)))  # 2**32 does not fit: a new uint64 array
    assert not np.shares_memory(eg.signed_to_unsigned(with_min, narrow=True, in_place=True), with_min)
    read_only = values.copy()
    read_only.flags.writeable = False
    np.testing.assert_array_equal(eg.signed_to_unsigned(read_only, narrow=True, in_place=True), expected)
    np.testing.assert_array_equal(read_only, values)


@pytest.mark.small
@pytest.mark.parametrize("k", [0, 3, 4, 8, 20])
@pytest.mark.parametrize("buf", [b"\x00", b"\x00" * 8, b"\x00" * 5 + b"\xff" * 3])
def test_windows_of_zeros_are_truncated_not_wrapped(k, buf):
    """A window holding no 1 (the codeword runs past the buffer) is an error in every path, with
    no arithmetic wrapping (warnings are errors here, also without the JIT)."""
    with pytest.raises(FormatError):
        eg.decode(buf, 4, k)
