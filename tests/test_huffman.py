"""Canonical Huffman coder of float heads: round trips, a reference decoder, optimal lengths, corruption.

Tests marked `small` also run without the JIT:
    NUMBA_DISABLE_JIT=1 PYTHONPATH=src python3 -m pytest tests/test_huffman.py -m small
"""

import heapq
import itertools

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bslz.codec import _huffman_kernels as kernels
from bslz.codec.huffman import MAX_LENGTH, decode_huffman, encode_huffman, huffman_code
from bslz.errors import BslzError, FormatError, InvalidArgumentError, TruncatedError

# ---- reference decoder: Python integers and '0'/'1' strings, nothing shared with the kernels ----


def ref_lengths(buf):
    """(code lengths by symbol, header bytes), read from the header as FORMAT.md states it."""
    bits = "".join(f"{b:08b}" for b in buf)
    pos = 0

    def eg0():
        nonlocal pos
        zeros = len(bits[pos:]) - len(bits[pos:].lstrip("0"))
        value = int(bits[pos + zeros : pos + 2 * zeros + 1], 2) - 1
        pos += 2 * zeros + 1
        return value

    top = eg0()
    lengths = {}
    s = 0
    while s <= top:
        length = int(bits[pos : pos + 4], 2)
        pos += 4
        if length:
            lengths[s] = length
            s += 1
        else:
            s += 1 + eg0()
    return lengths, (pos + 7) // 8


def ref_codebook(lengths):
    """codeword string -> symbol, canonical: sorted by (length, symbol), each next code is the last + 1
    shifted to its length."""
    book, code, last = {}, -1, 0
    for s, length in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code = (code + 1) << (length - last) if code >= 0 else 0
        last = length
        book[format(code, f"0{length}b")] = s
    return book


def ref_decode(buf, count):
    lengths, pos = ref_lengths(buf)
    book = ref_codebook(lengths)
    sizes = [int.from_bytes(buf[pos + 4 * j : pos + 4 * j + 4], "little") for j in range(3)]
    body = buf[pos + 12 :]
    words = [int.from_bytes(body[i : i + 4], "little") for i in range(0, len(body), 4)]
    starts = [0, *itertools.accumulate(sizes)]
    ranges = list(zip(starts, starts[1:])) + [(starts[3], len(words))]
    quarter = -(-count // 4)
    out = []
    for j, (lo, hi) in enumerate(ranges):
        # bit i of the stream is bit i % 32 of word i // 32
        stream = "".join(format(w, "032b")[::-1] for w in words[lo:hi])
        pos, word = 0, ""
        wanted = max(0, min(quarter, count - j * quarter))
        got = []
        while len(got) < wanted:
            word += stream[pos]
            pos += 1
            if word in book:
                got.append(book[word])
                word = ""
        assert set(stream[pos:]) <= {"0"} and len(stream) - pos < 32
        out += got
    return out


def symbol_arrays(max_symbol=4095, max_size=3000):
    return hnp.arrays(np.uint16, st.integers(2, max_size), elements=st.integers(0, max_symbol))


def geometric(n, p, seed=0, top=4095):
    return np.minimum(np.random.default_rng(seed).geometric(p, n) - 1, top).astype(np.uint16)


# ---- round trips ----


@pytest.mark.small
def test_pinned_bytes():
    """Three symbols of counts 2, 1, 1: lengths 1, 2, 2, codes 0, 10, 11; stream 0 codes [0, 1]."""
    buf = encode_huffman(np.array([0, 1, 0, 2, 0], np.uint16))
    # header: EG0(2) = 011, lengths 0001 0010 0010, padding 0
    assert buf[:2] == bytes([0b01100010, 0b01000100])
    # streams of 2, 2, 1, 0 symbols: [0, 1] -> bits 0 then 1,0 -> 0b010 read LSB first = 0b010 (2)
    assert buf[2:14] == bytes([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0])
    assert buf[14:] == bytes([0b010, 0, 0, 0, 0b110, 0, 0, 0, 0, 0, 0, 0])
    assert ref_decode(buf, 5) == [0, 1, 0, 2, 0]


@pytest.mark.small
@given(symbol_arrays(max_symbol=20, max_size=60))
def test_round_trip_small(symbols):
    assume(np.unique(symbols).size >= 2)
    buf = encode_huffman(symbols)
    np.testing.assert_array_equal(decode_huffman(buf, symbols.size), symbols)
    assert ref_decode(buf, symbols.size) == symbols.tolist()


@given(symbol_arrays())
def test_round_trip_against_the_reference(symbols):
    assume(np.unique(symbols).size >= 2)
    buf = encode_huffman(symbols)
    np.testing.assert_array_equal(decode_huffman(buf, symbols.size), symbols)
    assert ref_decode(buf, symbols.size) == symbols.tolist()


@pytest.mark.parametrize("p", [0.02, 0.3, 0.9])
@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 8, 9, 31, 1000, 100_003])
def test_round_trip_skewed_every_count_mod_4(p, n):
    symbols = geometric(n, p, seed=n)
    symbols[:2] = [0, 1]  # at least two distinct symbols
    np.testing.assert_array_equal(decode_huffman(encode_huffman(symbols), n), symbols)


def test_round_trip_every_symbol_of_4096():
    symbols = np.random.default_rng(3).permutation(np.repeat(np.arange(4096, dtype=np.uint16), 3))
    buf = encode_huffman(symbols)
    assert set(ref_lengths(buf)[0].values()) == {12}  # 4096 symbols: every codeword 12 bits
    np.testing.assert_array_equal(decode_huffman(buf, symbols.size), symbols)


@pytest.mark.small
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
@pytest.mark.parametrize("shift", [0, 3, 6])
def test_decode_with_a_shift_writes_the_symbols_shifted(dtype, shift):
    symbols = geometric(500, 0.2, seed=shift)
    symbols[:2] = [0, 1]
    out = np.zeros(500, dtype=dtype)
    decode_huffman(encode_huffman(symbols), 500, out=out, shift=shift)
    np.testing.assert_array_equal(out, symbols.astype(dtype) << dtype(shift))


@pytest.mark.small
@pytest.mark.parametrize("offset", [0, 1, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, ">u2"])
def test_decode_into_a_slice_of_any_offset_and_byte_order(offset, dtype):
    """Two symbols a 32-bit store: at odd element offsets too, and never past the slice."""
    symbols = (geometric(1001, 0.3, seed=offset) % 200).astype(np.uint16)
    symbols[:2] = [0, 1]
    big = np.full(1001 + 8, 0xAB, dtype=dtype)
    out = big[offset : offset + 1001]
    decode_huffman(encode_huffman(symbols), 1001, out=out, shift=0)
    np.testing.assert_array_equal(out, symbols)
    assert np.all(big[:offset] == 0xAB) and np.all(big[offset + 1001 :] == 0xAB)


@pytest.mark.small
def test_symbols_above_the_limit_or_the_shifted_width_are_an_error():
    buf = encode_huffman(np.array([0, 1023, 5, 5], np.uint16))
    with pytest.raises(FormatError, match="above 1022"):
        decode_huffman(buf, 4, limit=1022)
    with pytest.raises(FormatError, match="above 511"):  # 16 - 7 bits left
        decode_huffman(buf, 4, out=np.zeros(4, np.uint16), shift=7)
    decode_huffman(buf, 4, out=np.zeros(4, np.uint16), shift=6)


@pytest.mark.small
@pytest.mark.parametrize(
    "call",
    [
        lambda: encode_huffman(np.array([3, 3, 3], np.uint16)),  # one distinct symbol
        lambda: encode_huffman(np.array([0, 4096], np.uint16)),
        lambda: encode_huffman(np.array([[0, 1]], np.uint16)),
        lambda: encode_huffman(np.array([0.0, 1.0])),
        lambda: encode_huffman(np.array([0, 1, 2], np.uint16), huffman_code(np.array([1, 1]))),  # 2 not coded
        lambda: decode_huffman(b"", -1),
        lambda: decode_huffman(b"", 3, out=np.zeros(2, np.uint16)),
        lambda: decode_huffman(b"", 3, out=np.zeros(3, np.int16)),
        lambda: decode_huffman(b"", 3, out=np.zeros(3, np.uint16), shift=16),
    ],
)
def test_bad_arguments(call):
    with pytest.raises(InvalidArgumentError):
        call()


# ---- code lengths ----


def unlimited_huffman_cost(counts):
    """The cost in bits of an unrestricted Huffman code (merge the two lightest, each merge costs its weight)."""
    heap = [int(c) for c in counts if c]
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        total += merged
        heapq.heappush(heap, merged)
    return total


@pytest.mark.small
@given(st.lists(st.integers(0, 10**6), min_size=2, max_size=40))
def test_lengths_are_optimal_when_the_limit_does_not_bind(counts):
    counts = np.array(counts, dtype=np.uint64)
    assume(np.count_nonzero(counts) >= 2)
    lengths = np.zeros(counts.size, np.uint8)
    assert kernels.limited_code_lengths(counts, 30, lengths)  # 40 symbols never need 30 bits
    assert int(np.dot(counts, lengths.astype(np.uint64))) == unlimited_huffman_cost(counts)
    present = counts > 0
    assert np.all((lengths > 0) == present)
    assert sum(2.0 ** -int(x) for x in lengths[present]) == 1.0


def brute_force_limited_cost(counts, limit):
    """The least cost over every complete code of lengths <= limit (small alphabets only)."""
    weights = sorted((int(c) for c in counts if c), reverse=True)
    best = None
    # in an optimal code heavier symbols never get longer codewords: non-decreasing lengths suffice
    for lengths in itertools.combinations_with_replacement(range(1, limit + 1), len(weights)):
        if sum(2.0**-x for x in lengths) == 1.0:
            cost = sum(w * x for w, x in zip(weights, lengths))
            best = cost if best is None else min(best, cost)
    return best


@given(st.lists(st.integers(1, 1000), min_size=2, max_size=7), st.integers(3, 4))
def test_limited_lengths_are_optimal_against_brute_force(counts, limit):
    assume(len(counts) <= 1 << limit)
    counts = np.array(counts, dtype=np.uint64)
    lengths = np.zeros(counts.size, np.uint8)
    assert kernels.limited_code_lengths(counts, limit, lengths)
    assert lengths.max() <= limit
    assert int(np.dot(counts, lengths.astype(np.uint64))) == brute_force_limited_cost(counts, limit)


@pytest.mark.small
def test_fibonacci_counts_are_limited_to_12_bits():
    """Fibonacci counts make the deepest unrestricted Huffman tree (30 symbols: 29 bits)."""
    fib = [1, 1]
    while len(fib) < 30:
        fib.append(fib[-1] + fib[-2])
    code = huffman_code(np.array(fib, dtype=np.uint64))
    assert code.lengths.max() == MAX_LENGTH
    assert sum(2.0 ** -int(x) for x in code.lengths) == 1.0
    symbols = np.repeat(np.arange(30, dtype=np.uint16), 3)
    np.testing.assert_array_equal(decode_huffman(encode_huffman(symbols, code), symbols.size), symbols)


def test_gaussian_heads_within_one_percent_of_entropy():
    symbols = np.clip(np.round(np.random.default_rng(7).standard_normal(200_000) * 20 + 500), 0, 1023)
    symbols = symbols.astype(np.uint16)
    counts = np.bincount(symbols)
    p = counts[counts > 0] / symbols.size
    entropy = -(p * np.log2(p)).sum() * symbols.size
    assert 8 * len(encode_huffman(symbols)) < entropy * 1.01


@given(symbol_arrays(max_symbol=300))
def test_min_and_max_bytes_bound_any_size(symbols):
    assume(np.unique(symbols).size >= 2)
    code = huffman_code(np.bincount(symbols))
    assert code.min_bytes() <= len(encode_huffman(symbols, code)) <= code.max_bytes()


@pytest.mark.small
def test_min_and_max_bytes_bound_the_size():
    for seed in range(5):
        symbols = geometric(2 + 997 * seed, 0.1 + 0.2 * seed, seed=seed)
        symbols[:2] = [0, 1]
        code = huffman_code(np.bincount(symbols))
        assert code.min_bytes() <= len(encode_huffman(symbols, code)) <= code.max_bytes()


# ---- corruption and truncation ----


@pytest.mark.small
def test_every_truncation_is_an_error():
    symbols = geometric(150, 0.3, seed=2)
    symbols[:2] = [0, 1]
    buf = encode_huffman(symbols)
    for n in range(len(buf)):
        with pytest.raises((TruncatedError, FormatError)):
            decode_huffman(buf[:n], symbols.size)


@pytest.mark.small
@pytest.mark.parametrize("extra", [b"\x00\x00\x00\x00", b"\x01", b"\xff" * 8])
def test_trailing_bytes_are_format_errors(extra):
    buf = encode_huffman(np.array([1, 2, 3, 1, 1], np.uint16))
    with pytest.raises(FormatError):
        decode_huffman(buf + extra, 5)


@pytest.mark.small
def test_nonzero_padding_is_an_error():
    buf = bytearray(encode_huffman(np.array([0, 1, 0, 2, 0], np.uint16)))
    buf[-5] |= 0x80  # the top padding bit of stream 1's word (it holds 3 bits)
    with pytest.raises(FormatError):
        decode_huffman(bytes(buf), 5)
    buf = bytearray(encode_huffman(np.array([0, 1, 0, 2, 0], np.uint16)))
    buf[1] |= 1  # the header's padding bit
    with pytest.raises(FormatError, match="padding"):
        decode_huffman(bytes(buf), 5)


@pytest.mark.small
@pytest.mark.parametrize("lengths", [[1, 1, 1], [1, 2], [2, 2, 2], [13, 1, 1], [0, 1], [1]])
def test_lengths_that_make_no_complete_code_are_an_error(lengths):
    """Three streams of one zero word each: a complete code would decode them (three symbols, the
    one whose codeword is all zeros), so only the check of the lengths can refuse them."""
    words = np.zeros(8, np.uint64)
    lengths = np.array(lengths, np.uint8)
    if lengths.max() > 12:
        header = bytes([0b01111010, 0b00100010])  # EG0(2) = 011, then 1101 (13), 0001, 0001, padding 0
    else:
        nbits = kernels.write_header(lengths, lengths.size - 1, words)
        header = words.astype(">u8").view(np.uint8)[: (int(nbits) + 7) // 8].tobytes()
    streams = np.array([1, 1, 1], "<u4").tobytes() + bytes(12)
    with pytest.raises(FormatError, match="invalid code lengths" if lengths.max() > 12 else "complete"):
        decode_huffman(header + streams, 3)
    complete = encode_huffman(np.array([0, 1, 1], np.uint16))[:2]  # lengths 1, 1
    np.testing.assert_array_equal(decode_huffman(complete + streams, 3), [0, 0, 0])


def decode_or_error(buf, count):
    """Corrupt input may decode (undetectable damage) but only ever to `count` symbols, or raise BslzError."""
    try:
        got = decode_huffman(buf, count)
    except BslzError:
        return
    assert got.size == count


def test_every_bit_flip_is_caught_or_harmless():
    symbols = geometric(400, 0.2, seed=9)
    buf = encode_huffman(symbols)
    for bit in range(8 * len(buf)):
        bad = bytearray(buf)
        bad[bit // 8] ^= 1 << (bit % 8)
        decode_or_error(bytes(bad), symbols.size)


@pytest.mark.small
@given(st.binary(max_size=200), st.integers(0, 500))
def test_random_bytes_never_crash(buf, count):
    decode_or_error(buf, count)


@given(st.binary(min_size=1, max_size=2000), st.integers(1, 20000))
def test_random_bytes_after_a_valid_header_never_crash(tail, count):
    buf = encode_huffman(geometric(1000, 0.2, seed=1))
    _, header_bytes = ref_lengths(buf)
    decode_or_error(buf[:header_bytes] + tail, count)
