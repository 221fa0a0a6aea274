import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bslz.codec import _float_chunks as FC
from bslz.codec import _float_kernels as FK
from bslz.codec import expgolomb as eg
from bslz.codec import floats
from bslz.codec._huffman_segment import stream_words_needed
from bslz.codec._rans_table import NARROW_MIN_VALUES, NARROW_WIDTH
from bslz.codec.huffman import encode_huffman
from bslz.codec.rans import encode_rans
from bslz.errors import BslzError, FormatError, InvalidArgumentError, TruncatedError

LAYOUTS = sorted(floats.LAYOUTS)
U64 = np.uint64


def word_arrays(layout, max_size=700):
    spec = floats.LAYOUTS[layout]
    return hnp.arrays(spec.word_dtype, st.integers(0, max_size))


@pytest.mark.parametrize("layout", LAYOUTS)
@given(data=st.data())
def test_any_bit_pattern_round_trips(layout, data):
    words = data.draw(word_arrays(layout))
    chunk = data.draw(st.integers(1, 300))
    enc = floats.encode_floats(words, layout, chunk_size=chunk)
    np.testing.assert_array_equal(floats.decode_floats(enc), words)


@pytest.mark.small
@pytest.mark.parametrize("layout", LAYOUTS)
def test_special_values_round_trip(layout):
    spec = floats.LAYOUTS[layout]
    top = (1 << spec.bits) - 1
    sign = 1 << (spec.bits - 1)
    exp_all = ((1 << spec.exp_bits) - 1) << spec.man_bits
    specials = [
        0,
        sign,
        1,
        sign | 1,
        exp_all,
        exp_all | sign,
        exp_all | 1,
        exp_all | (1 << (spec.man_bits - 1)) | 3,
        top,
    ]
    words = np.array(specials * 7, dtype=spec.word_dtype)
    enc = floats.encode_floats(words, layout, chunk_size=16)
    np.testing.assert_array_equal(floats.decode_floats(enc), words)


@pytest.mark.small
def test_pieces_tile_every_bit():
    for layout in floats.LAYOUTS.values():
        pieces = layout.pieces()
        assert sum(width for _, width, _ in pieces) == layout.bits
        assert pieces[0][1] <= 12  # the head fits the rANS alphabet


@pytest.mark.small
@given(data=st.data(), width=st.integers(1, 12))
def test_raw_pieces_are_their_bits_back_to_back(data, width):
    """The RAW method's payload, from a reference written with '0'/'1' strings (MSB first, the
    last byte zero-padded), for the byte-group packer (width < 8) and the word packer alike."""
    values = data.draw(hnp.arrays(np.uint16, st.integers(0, 40), elements=st.integers(0, (1 << width) - 1)))
    bits = "".join(format(int(v), f"0{width}b") for v in values)
    bits += "0" * (-len(bits) % 8)
    expected = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    assert bytes(floats._raw_bytes(values, width)) == expected


@pytest.mark.small
@pytest.mark.parametrize("layout", LAYOUTS)
@given(data=st.data())
def test_a_packed_tail_piece_merges_back_into_its_bits(layout, data):
    """merge_packed_tail puts each packed value's bits back where they came from in the word (its
    sign bit at the top), for the pieces below a byte that each layout has: 6 bits (bf16, f32),
    1 (f16, e5m2), 2 (e4m3), 3 (f64), through their own loops and the remainder loop alike."""
    spec = floats.LAYOUTS[layout]
    words = data.draw(hnp.arrays(spec.word_dtype, st.integers(0, 200)))
    for _, width, shift in spec.pieces()[1:]:
        if width >= 8:
            continue
        piece = np.empty(words.size, dtype=np.uint16)
        floats._piece_values(words, 0, words.size, spec, width, shift, piece)
        merged = np.zeros_like(words)
        FK.merge_packed_tail(
            merged,
            0,
            words.size,
            U64(spec.bits - 1),
            U64(spec.low_bits),
            U64(shift),
            U64(width),
            floats._raw_bytes(piece, width),
        )
        expected = np.zeros_like(words)
        FK.merge_tail(expected, 0, words.size, U64(spec.bits - 1), U64(spec.low_bits), U64(shift), piece)
        np.testing.assert_array_equal(merged, expected)
        top_bit = spec.word_dtype.type(1 << (spec.bits - 1))
        piece_bits = (top_bit if shift + width - 1 == spec.low_bits else 0) | (
            ((1 << (width - (shift + width - 1 == spec.low_bits))) - 1) << shift
        )
        np.testing.assert_array_equal(merged, words & spec.word_dtype.type(piece_bits))


@pytest.mark.small
@pytest.mark.parametrize("layout", ["bfloat16", "float32"])
@given(st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_six_bit_tails_merge_a_group_at_a_time_into_words_holding_their_other_bits(layout, n, seed):
    """The vector path of six-bit pieces (`_six_bit_tails`: a bfloat16 tail, a float32 tail's top
    piece) ORs each value's sign and five bits into words that already hold their other bits, as
    the scalar loops do, for every count (the groups of sixteen, then the last values and the last
    four bytes the vector loads would read past)."""
    from bslz.codec._six_bit_tails import GROUP, GROUP_BYTES, LOAD_BYTES, merge_groups, merge_groups_scalar

    spec = floats.LAYOUTS[layout]
    shift = 16 if layout == "float32" else 0
    words = np.random.default_rng(seed).integers(0, 2**spec.bits, n, dtype=np.uint64).astype(spec.word_dtype)
    piece = np.empty(n, dtype=np.uint16)
    floats._piece_values(words, 0, n, spec, 6, shift, piece)
    packed = np.frombuffer(floats._raw_bytes(piece, 6), dtype=np.uint8)  # exactly 6 n / 8 bytes: no slack
    piece_bits = spec.word_dtype.type((1 << (spec.bits - 1)) | (31 << shift))
    others = words & ~piece_bits
    merged = others.copy()
    FK.merge_packed_tail(merged, 0, n, U64(spec.bits - 1), U64(spec.low_bits), U64(shift), U64(6), packed)
    np.testing.assert_array_equal(merged, words)
    spare = LOAD_BYTES - GROUP_BYTES
    groups = min(n // GROUP, (packed.size - spare) // GROUP_BYTES) if packed.size >= spare else 0
    scalar = others.copy()
    merge_groups_scalar(scalar, packed, groups)
    vector = others.copy()
    merge_groups(vector, packed, groups)
    np.testing.assert_array_equal(vector, scalar)
    np.testing.assert_array_equal(vector[: GROUP * groups], words[: GROUP * groups])
    with pytest.raises(ValueError):  # one group more passes the words' end or the packed bytes' (the last load's)
        merge_groups(others.copy(), packed, groups + 1)


def _weight_like_words(layout, n, seed, scale):
    """Bit patterns of Gaussian weights in `layout` (their heads get Huffman-coded), some exact zeros."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0, scale, n)
    values[rng.random(n) < 0.05] = 0
    return _as_layout_words(values, layout)


def _as_layout_words(values, layout):
    if layout == "bfloat16":
        return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    return values.astype({"float16": np.float16, "float32": np.float32, "float64": np.float64}[layout]).view(
        floats.LAYOUTS[layout].word_dtype
    )


def _one_call_encoding(words, n, spec):
    """FC.encode_chunk of words[:n] in layout `spec`, with the thread's scratch."""
    widths, shifts = floats.kernel_args(spec)[:2]
    return FC.encode_chunk(
        words,
        0,
        n,
        U64(spec.bits - 1),
        U64(spec.low_bits),
        widths,
        shifts,
        floats.eg.MAX_ORDER,
        *floats.chunk_scratch(n),
    )


@pytest.mark.parametrize("layout", ["bfloat16", "float16", "float32", "float64"])
@given(data=st.data())
def test_one_call_chunk_encoding_matches_the_segment_by_segment_one(layout, data):
    """FC.encode_chunk gives the very bytes of the long way (`_encode_pieces`), or declines (empty)
    where a piece's coding would be exp-Golomb or might be rANS (small chunks: a Huffman header
    costs enough that rANS may win). FC.decode_chunk decodes the long way's bytes, or declines."""
    spec = floats.LAYOUTS[layout]
    kind = data.draw(st.sampled_from(["weights", "any", "few values"]))
    n = data.draw(st.integers(1, 3000))
    if kind == "weights":
        words = _weight_like_words(
            layout, n, data.draw(st.integers(0, 2**32 - 1)), 10.0 ** data.draw(st.integers(-4, 1))
        )
    elif kind == "any":
        words = data.draw(hnp.arrays(spec.word_dtype, n))
    else:
        words = np.array(
            data.draw(st.lists(hnp.from_dtype(spec.word_dtype), min_size=1, max_size=3)), dtype=spec.word_dtype
        )
        words = words[data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, words.size - 1)))]
    widths, shifts = floats.kernel_args(spec)[:2]
    fast = _one_call_encoding(words, n, spec)
    slow = b"".join(bytes(part) for part in floats._encode_pieces(words, 0, n, spec))
    assert bytes(fast) == slow
    out = np.full(n, np.iinfo(spec.word_dtype).max, dtype=spec.word_dtype)  # every word must be written
    if FC.decode_chunk(
        np.frombuffer(slow, np.uint8),
        out,
        out if out.dtype == np.uint16 else np.empty(0, np.uint16),
        0,
        n,
        U64(spec.bits - 1),
        U64(spec.low_bits),
        widths,
        shifts,
        floats.eg.decode_tables(),
        floats.eg.MAX_ORDER,
    ):
        np.testing.assert_array_equal(out, words)


def test_a_chunk_encodes_the_same_whatever_its_scratch_held():
    """The scratch a thread keeps between chunks (`floats.chunk_scratch`): kept for chunks up to
    SCRATCH_MAX_VALUES, and a chunk coded in scratch full of garbage, or larger than it needs,
    gives the bytes of fresh scratch."""
    spec = floats.LAYOUTS["bfloat16"]
    words = _weight_like_words("bfloat16", 262144, 11, 0.02)
    args = (U64(spec.bits - 1), U64(spec.low_bits), *floats.kernel_args(spec)[:2], floats.eg.MAX_ORDER)
    fresh = (np.empty(words.size, np.uint16), np.empty(stream_words_needed(words.size), np.uint32))
    expected = bytes(FC.encode_chunk(words, 0, words.size, *args, *fresh))
    piece, streams = floats.chunk_scratch(words.size)
    assert floats.chunk_scratch(1000)[0] is piece  # kept, and large enough for a smaller chunk
    for garbage in (0, 0xFFFF, 0x5A5A):
        piece.fill(garbage)
        streams.fill(garbage * 0x10001)
        assert bytes(FC.encode_chunk(words, 0, words.size, *args, piece, streams)) == expected
        assert bytes(FC.encode_chunk(words, 0, 5000, *args, piece, streams)) == bytes(
            FC.encode_chunk(words, 0, 5000, *args, *fresh)
        )
    assert floats.chunk_scratch(floats.SCRATCH_MAX_VALUES + 1)[0] is not floats.chunk_scratch(1)[0]


@pytest.mark.parametrize("layout", ["bfloat16", "float32"])
@pytest.mark.parametrize("kind", ["weights", "few values"])
def test_chunks_whose_tails_are_counted_in_pairs_match_the_segment_by_segment_one(layout, kind):
    """Chunks of NARROW_MIN_VALUES values or more count their 6-bit tail pieces in pairs: the same
    bytes as the long way, whether the tails stay raw (weights) or are entropy coded (few values)."""
    spec = floats.LAYOUTS[layout]
    n = NARROW_MIN_VALUES + 7  # odd: one value left after the pairs
    words = _weight_like_words(layout, n, 3, 0.05)
    if kind == "few values":
        words = words[np.random.default_rng(4).integers(0, 5, n)]
    widths, shifts = floats.kernel_args(spec)[:2]
    assert NARROW_WIDTH in widths.tolist()
    fast = _one_call_encoding(words, n, spec)
    assert bytes(fast) == b"".join(bytes(part) for part in floats._encode_pieces(words, 0, n, spec))


@given(width=st.integers(1, 6), data=st.data())
def test_narrow_histograms_count_what_histograms_count(width, data):
    from bslz.codec._rans_table import histogram, narrow_histogram

    symbols = data.draw(hnp.arrays(np.uint16, st.integers(0, 600), elements=st.integers(0, (1 << width) - 1)))
    want, got = np.zeros(4096, np.uint64), np.zeros(1 << width, np.uint64)
    histogram(symbols, want)
    narrow_histogram(symbols, width, got)
    np.testing.assert_array_equal(got, want[: 1 << width])


def test_histograms_of_many_narrow_symbols_are_counted_in_pairs_and_still_refuse_large_ones():
    from bslz.codec._rans_kernels import STATUS_OK, STATUS_SYMBOL_TOO_LARGE
    from bslz.codec._rans_table import histogram

    symbols = np.random.default_rng(5).integers(0, 64, NARROW_MIN_VALUES + 1).astype(np.uint16)
    hist = np.zeros(64, np.uint64)
    assert histogram(symbols, hist) == STATUS_OK
    np.testing.assert_array_equal(hist, np.bincount(symbols, minlength=64))
    for where in (0, symbols.size - 1):  # in a pair, and the odd last one
        bad = symbols.copy()
        bad[where] = 64
        hist[:] = 0
        assert histogram(bad, hist) == STATUS_SYMBOL_TOO_LARGE and not hist.any()


@pytest.mark.small
def test_weight_chunks_take_the_one_call_paths():
    """Weights in chunks of the default size (256 Ki values): coded and decoded in one kernel call
    each (smaller chunks may go the long way: their Huffman header costs enough that rANS may win)."""
    for layout in ("bfloat16", "float16", "float32"):
        spec = floats.LAYOUTS[layout]
        words = _weight_like_words(layout, 1 << 18, 7, 0.05)
        widths, shifts = floats.kernel_args(spec)[:2]
        args = (U64(spec.bits - 1), U64(spec.low_bits), widths, shifts)
        segments = FC.encode_chunk(words, 0, words.size, *args, floats.eg.MAX_ORDER, *floats.chunk_scratch(words.size))
        assert segments.size and segments[0] == floats.HUFFMAN
        out = np.full_like(words, np.iinfo(words.dtype).max)  # the straight head writes every word
        heads = out if out.dtype == np.uint16 else np.empty(0, np.uint16)
        assert FC.decode_chunk(segments, out, heads, 0, words.size, *args, *EG_ARGS)
        np.testing.assert_array_equal(out, words)


EG_ARGS = (floats.eg.decode_tables(), floats.eg.MAX_ORDER)


@pytest.mark.small
def test_small_norm_vectors_take_the_one_call_paths_with_exp_golomb_heads():
    """Bias-like vectors of 384 values (near 0), as MiniLM has dozens of: their heads are
    exp-Golomb, coded and decoded in one kernel call each, byte for byte the long way's."""
    rng = np.random.default_rng(11)
    for layout in ("bfloat16", "float16", "float32"):
        spec = floats.LAYOUTS[layout]
        widths, shifts = floats.kernel_args(spec)[:2]
        args = (U64(spec.bits - 1), U64(spec.low_bits), widths, shifts)
        for spread in (0.01, 0.02):
            words = _as_layout_words(spread * rng.standard_normal(384), layout)
            segments = FC.encode_chunk(
                words, 0, words.size, *args, floats.eg.MAX_ORDER, *floats.chunk_scratch(words.size)
            )
            assert bytes(segments) == b"".join(bytes(p) for p in floats._encode_pieces(words, 0, words.size, spec))
            assert segments[0] == floats.EXP_GOLOMB, (layout, spread)
            out = np.zeros_like(words)
            heads = out if out.dtype == np.uint16 else np.empty(0, np.uint16)
            assert FC.decode_chunk(segments, out, heads, 0, words.size, *args, *EG_ARGS)
            np.testing.assert_array_equal(out, words)


@pytest.mark.small
def test_one_call_exp_golomb_segments_are_checked_as_the_long_way_checks_them():
    """A segment that ends early, has a byte after its codewords, or decodes to a value beyond the
    piece's width is declined (the long way then names the error); a good one decodes."""
    from bslz.codec import expgolomb as eg

    tables, piece = eg.decode_tables(), np.zeros(5, np.uint16)
    mapped = np.array([0, 1, 2, 7, 3], np.uint64)  # se(v - 4): 4, 5, 3, 8, 6
    payload, _ = eg.encode(mapped, 1)
    assert FC._exp_golomb_segment(payload, 1, 4, 15, tables, piece)
    assert piece.tolist() == [4, 5, 3, 8, 6]
    assert not FC._exp_golomb_segment(payload[:-1], 1, 4, 15, tables, piece)
    assert not FC._exp_golomb_segment(np.append(payload, np.uint8(0)), 1, 4, 15, tables, piece)
    assert not FC._exp_golomb_segment(payload, 1, 4, 7, tables, piece)  # 8 > 7
    assert not FC._exp_golomb_segment(payload, 1, 0, 15, tables, piece)  # 0 - 1 < 0


@pytest.mark.parametrize("dtype,layout", [(np.float16, "float16"), (np.float32, "float32"), (np.float64, "float64")])
def test_gaussian_weights_compress_near_the_bound(dtype, layout):
    values = np.random.default_rng(0).standard_normal(200_000).astype(dtype) * dtype(0.05)
    enc = floats.encode_floats(values, layout)
    np.testing.assert_array_equal(floats.decode_floats(enc).view(dtype), values)
    bound = floats.order0_bound_bits(values, layout)
    assert enc.size_bits() <= bound * 1.005 + 512
    assert enc.size_bits() < values.nbytes * 8


@pytest.mark.small
def test_every_method_is_chosen_where_it_is_smallest():
    rng = np.random.default_rng(1)
    cases = {
        floats.CONSTANT: np.full(1000, 7, dtype=np.uint16),
        floats.RAW: rng.integers(0, 256, 1000).astype(np.uint16),
        floats.EXP_GOLOMB: (128 + rng.geometric(0.1, 200) * rng.choice([-1, 1], 200)).astype(np.uint16),
        # probabilities that are powers of two: Huffman meets the entropy, rANS pays for its table
        floats.HUFFMAN: rng.choice([3, 9, 200, 201], 5000, p=[0.5, 0.25, 0.125, 0.125]).astype(np.uint16),
        # one symbol of probability 0.9: Huffman spends a whole bit on it
        floats.RANS: rng.choice([3, 9, 200], 5000, p=[0.9, 0.05, 0.05]).astype(np.uint16),
    }
    for expected, values in cases.items():
        method, _, _, payload = floats.encode_segment(values, 8)
        assert method == expected, (floats.METHOD_NAMES[method], floats.METHOD_NAMES[expected])
        mapped = eg.signed_to_unsigned(values.astype(np.int64) - int(np.bincount(values).argmax()))
        sizes = [values.size, (eg.code_length(mapped, eg.best_order(mapped)) + 7) // 8, len(encode_rans(values))]
        if method != floats.CONSTANT:
            sizes.append(len(encode_huffman(values)))
        assert len(payload) == (0 if method == floats.CONSTANT else min(sizes))


@pytest.mark.small
def test_an_entropy_coder_must_save_a_128th_to_be_chosen():
    """A near-uniform piece that Huffman and rANS would shrink by less than 1/128 stays raw (their
    decoding pass is not worth it); one skewed just enough more is entropy-coded."""
    rng = np.random.default_rng(4)
    for skew, expected in ((0.5, floats.RAW), (1.5, floats.HUFFMAN)):  # rANS saves 0.2 % and 1.6 % of raw
        p = np.full(64, 1.0)
        p[:8] += skew
        values = rng.choice(64, 300_000, p=p / p.sum()).astype(np.uint16)
        raw, coded, huff = (values.size * 6 + 7) // 8, len(encode_rans(values)), len(encode_huffman(values))
        method, _, _, payload = floats.encode_segment(values, 6)
        assert coded < raw  # rANS is smaller in both cases: the rule, not the size, decides
        assert (method, len(payload)) == ((floats.RAW, raw) if expected == floats.RAW else (floats.HUFFMAN, huff))
        assert (huff < raw - raw // 128) == (expected == floats.HUFFMAN)
        assert coded >= huff - huff // 32  # and rANS does not save enough over Huffman to be chosen


@pytest.mark.small
def test_rans_must_save_a_32nd_of_huffman_to_be_chosen():
    """Float heads are Huffman-coded unless rANS saves at least 1/32 of Huffman's size: rANS lands
    about 1 % nearer the entropy on real heads, Huffman decodes them 2-3x as fast."""
    rng = np.random.default_rng(5)
    gaussian_head = np.clip(np.round(rng.standard_normal(100_000) * 12 + 500), 0, 1023).astype(np.uint16)
    peaked = rng.choice([3, 9, 200], 20_000, p=[0.9, 0.05, 0.05]).astype(np.uint16)
    for values, expected in ((gaussian_head, floats.HUFFMAN), (peaked, floats.RANS)):
        huff, coded = len(encode_huffman(values)), len(encode_rans(values))
        method, _, _, payload = floats.encode_segment(values, 10)
        assert method == expected, floats.METHOD_NAMES[method]
        assert coded < huff  # rANS is smaller in both cases
        assert (coded < huff - huff // 32) == (expected == floats.RANS)
        assert len(payload) == (huff if expected == floats.HUFFMAN else coded)


@pytest.mark.small
@pytest.mark.parametrize("method", ["rans", "huffman"])
def test_a_head_coding_values_wider_than_the_head_is_an_error(method):
    """A hostile bf16 chunk whose exponent segment codes 1024 (the head has 10 bits): decoded into
    the words unchecked it would reach the sign bit."""
    n = 16
    symbols = np.array([1024, 3] * (n // 2), np.uint16)
    head = encode_rans(symbols) if method == "rans" else encode_huffman(symbols)
    tail = bytes(n * 6 // 8)
    segments = b""
    code = floats.RANS if method == "rans" else floats.HUFFMAN
    for m, payload in ((code, head), (floats.RAW, tail)):
        header = np.zeros(1, dtype=floats.SEGMENT_HEADER)
        header[0] = (m, 0, 0, len(payload))
        segments += header.tobytes() + payload
    table = np.array([0, len(segments)], "<u8").tobytes()
    enc = floats.EncodedFloats("bfloat16", n, n, table + segments)
    with pytest.raises(FormatError, match="above 1023"):
        floats.decode_floats(enc)


@pytest.mark.small
@pytest.mark.parametrize("field", ["k", "center"])
def test_a_huffman_segment_with_k_or_center_set_is_an_error(field):
    """FORMAT.md: a Huffman segment's k and center MUST be 0."""
    words = (np.random.default_rng(6).laplace(size=4096) * 0.02).astype(np.float32).view(np.uint32)
    words = (words >> 16).astype(np.uint16)
    enc = floats.encode_floats(words, "bfloat16")
    np.testing.assert_array_equal(floats.decode_floats(enc), words)
    payload = bytearray(enc.payload)
    header = np.frombuffer(payload, floats.SEGMENT_HEADER, count=1, offset=16).copy()  # 2-entry chunk table
    assert header[0]["method"] == floats.HUFFMAN
    header[0][field] = 1
    payload[16 : 16 + floats.SEGMENT_HEADER.itemsize] = header.tobytes()
    with pytest.raises(FormatError, match="must be 0"):
        floats.decode_floats(dataclasses.replace(enc, payload=bytes(payload)))


@pytest.mark.small
def test_empty_tensor():
    enc = floats.encode_floats(np.zeros(0, dtype=np.uint16), "bfloat16")
    assert floats.decode_floats(enc).size == 0


@pytest.mark.parametrize("workers", [1, 3])
def test_each_decoded_run_of_chunks_is_reported_with_its_bytes_and_words(workers):
    """`chunk_decoded` sees every run of chunks once (`chunk_runs`: consecutive chunks, at most
    RUN_CHUNKS, within one thread's share), on the thread that decoded it: its bytes are the
    payload after the chunk table, in order, and its words the decoded ones."""
    import threading

    values = np.random.default_rng(4).standard_normal(1003).astype(np.float32)
    enc = floats.encode_floats(values, "float32", chunk_size=10)
    runs = floats.chunk_runs(101, workers)
    assert [c for lo, hi in runs for c in range(lo, hi)] == list(range(101))
    assert max(hi - lo for lo, hi in runs) <= floats.RUN_CHUNKS
    seen = {}
    another_thread = threading.Event()

    def chunk_decoded(r, run_bytes, run_words):
        seen[r] = (bytes(run_bytes), run_words.copy(), threading.get_ident())
        if len({ident for _, _, ident in seen.values()}) > 1:
            another_thread.set()
        elif workers > 1:  # hold the first thread (which could decode every run, on a busy machine)
            another_thread.wait(timeout=30)  # until another thread decodes one

    out = floats.decode_floats(enc, workers=workers, chunk_decoded=chunk_decoded)
    assert np.array_equal(out, values.view(np.uint32))
    assert sorted(seen) == list(range(len(runs)))
    table = 8 * 102
    assert b"".join(seen[r][0] for r in range(len(runs))) == bytes(enc.payload)[table:]
    assert np.array_equal(np.concatenate([seen[r][1] for r in range(len(runs))]), out)
    assert (len({ident for _, _, ident in seen.values()}) > 1) == (workers > 1)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_decodes_the_chunks_the_kernel_declines_the_long_way(workers):
    """Chunks whose heads are rANS-coded (peaked on a few values), which the one-call kernel leaves
    to the long way, between Huffman-coded ones in the same runs: every chunk decodes."""
    spec = floats.LAYOUTS["bfloat16"]
    rng = np.random.default_rng(13)
    chunk = 2000
    pieces = []
    for c in range(12):
        if c % 3 == 1:  # peaked: rANS
            heads = rng.choice([3, 9, 200], chunk, p=[0.9, 0.05, 0.05]).astype(np.uint16)
            pieces.append((heads << spec.low_bits) | rng.integers(0, 1 << spec.low_bits, chunk).astype(np.uint16))
        else:
            pieces.append((rng.standard_normal(chunk).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16))
    words = np.concatenate(pieces)
    encoded = floats.encode_floats(words, "bfloat16", chunk_size=chunk)
    methods = [int(encoded.payload[8 * 13 + off]) for off in np.frombuffer(encoded.payload[: 8 * 13], "<u8")[:-1]]
    assert floats.RANS in methods and floats.HUFFMAN in methods
    np.testing.assert_array_equal(floats.decode_floats(encoded, workers=workers), words)


def _encoded_sample():
    values = np.random.default_rng(2).standard_normal(3000).astype(np.float32)
    return floats.encode_floats(values, "float32", chunk_size=1000)


@pytest.mark.small
def test_truncation_is_detected_everywhere():
    enc = _encoded_sample()
    for cut in range(0, len(enc.payload), 97):
        with pytest.raises(FormatError):
            floats.decode_floats(dataclasses.replace(enc, payload=enc.payload[:cut]))
    with pytest.raises(TruncatedError):
        floats.decode_floats(dataclasses.replace(enc, payload=enc.payload[:-1]))


@given(flips=st.lists(st.integers(0, 10**9), min_size=1, max_size=4))
def test_bit_flips_give_an_error_or_a_tensor_of_the_right_shape(flips):
    enc = _encoded_sample()
    payload = bytearray(enc.payload)
    for f in flips:
        payload[f % len(payload)] ^= 1 << (f % 8)
    try:
        out = floats.decode_floats(dataclasses.replace(enc, payload=bytes(payload)))
    except BslzError:
        return
    assert out.shape == (enc.count,)


@given(payload=st.binary(max_size=200), count=st.integers(0, 100), layout=st.sampled_from(LAYOUTS))
def test_random_payloads_never_crash(payload, count, layout):
    enc = floats.EncodedFloats(layout, count, 40, payload)
    try:
        floats.decode_floats(enc)
    except BslzError:
        pass


@pytest.mark.small
@pytest.mark.parametrize(
    "call",
    [
        lambda: floats.encode_floats(np.zeros(3, np.float32), "float17"),
        lambda: floats.encode_floats(np.zeros(3, np.float32), "bfloat16"),
        lambda: floats.encode_floats(np.zeros(3, np.float32), "float32", chunk_size=0),
    ],
)
def test_bad_arguments(call):
    with pytest.raises(InvalidArgumentError):
        call()


@pytest.mark.small
@given(
    width=st.integers(1, 12),
    counts=st.lists(st.integers(0, 10**6), min_size=1, max_size=60),
    offset=st.integers(0, 4095),
)
def test_segment_costs_match_the_histogram_computed_the_long_way(width, counts, offset):
    """center = the most frequent value (first of equals); k and bits = the cheapest exp-Golomb
    code of se(v - center) (first of equals); entropy = the order-0 entropy."""
    from bslz.codec import _float_kernels as FK

    size = 1 << width
    hist = np.zeros(4096, dtype=np.uint64)
    for i, c in enumerate(counts):
        hist[(offset + 37 * i) % size] += c
    if not hist.any():
        hist[offset % size] = 1
    center, k, bits, entropy, distinct = FK.segment_costs(hist, width, eg.MAX_ORDER)
    assert distinct == np.count_nonzero(hist)
    h = hist[:size]
    assert center == int(np.argmax(h))
    v = np.arange(size)
    mapped = np.zeros(2 << width, dtype=np.uint64)
    mapped[np.where(v > center, 2 * (v - center) - 1, 2 * (center - v))] = h
    costs = eg.order_costs(histogram=mapped)
    assert k == int(np.argmin(costs)) and bits == costs[k]
    c = h[h > 0].astype(np.float64)
    assert entropy == pytest.approx(float(-(c * np.log2(c / c.sum())).sum()), rel=1e-12, abs=1e-9)


@pytest.mark.small
@given(st.integers(0, 2**32 - 1), st.integers(2, 600), st.integers(1, 12))
def test_rans_never_beats_the_bound_that_lets_a_segment_skip_it(seed, n, width):
    """encode_segment tries rANS only below the order-0 entropy plus one bit a distinct value plus
    five: no rANS stream is smaller."""
    from bslz.codec import _float_kernels as FK
    from bslz.codec.rans import histogram

    rng = np.random.default_rng(seed)
    values = np.minimum(rng.geometric(rng.uniform(0.05, 0.9), n) - 1, (1 << width) - 1).astype(np.uint16)
    _, _, _, entropy, distinct = FK.segment_costs(histogram(values), width, eg.MAX_ORDER)
    assert (entropy + distinct + 5) / 8 <= len(encode_rans(values)) + 1e-9


@pytest.mark.small
def test_one_call_chunk_encoding_codes_rans_segments_too():
    """A head peaked on a few values is rANS-coded, in the kernel too, byte for byte the long way's;
    the one-call decoder leaves such a chunk to the long way, which decodes it."""
    spec = floats.LAYOUTS["bfloat16"]
    rng = np.random.default_rng(12)
    for n in (384, 5000):
        heads = rng.choice([3, 9, 200], n, p=[0.9, 0.05, 0.05]).astype(np.uint16)
        words = (heads << spec.low_bits) | rng.integers(0, 1 << spec.low_bits, n).astype(np.uint16)
        widths, shifts = floats.kernel_args(spec)[:2]
        args = (U64(spec.bits - 1), U64(spec.low_bits), widths, shifts)
        fast = FC.encode_chunk(words, 0, n, *args, floats.eg.MAX_ORDER, *floats.chunk_scratch(words.size))
        assert fast[0] == floats.RANS
        assert bytes(fast) == b"".join(bytes(part) for part in floats._encode_pieces(words, 0, n, spec))
        assert not FC.decode_chunk(fast, np.zeros_like(words), np.zeros(n, np.uint16), 0, n, *args, *EG_ARGS)
        encoded = floats.encode_floats(words, "bfloat16")
        np.testing.assert_array_equal(floats.decode_floats(encoded), words)


@pytest.mark.parametrize("layout", ["bfloat16", "float32"])
@pytest.mark.parametrize("extra", [0, 1, 2, 3, 5])
def test_a_raw_six_bit_tail_is_packed_from_the_words_as_the_long_way_packs_it(layout, extra):
    """A 6-bit tail piece (bf16's tail, f32's top one) that its sample leaves raw is sampled and packed
    straight from the words (`tail_raw_by_sample`, `pack_six_bit_tail`): the chunk is byte for byte
    the long way's, for any count of values (four to three bytes, then the last one to three), and
    one whose tail is not near uniform is coded as before."""
    spec = floats.LAYOUTS[layout]
    n = FK.RAW_SAMPLE_MIN_VALUES + extra
    rng = np.random.default_rng(extra)
    values = (rng.standard_normal(n) * 0.02).astype(np.float32)
    words = values.view(np.uint32) if layout == "float32" else (values.view(np.uint32) >> 16).astype(np.uint16)
    skewed = words & ~np.array(spec.bits == 32 and 0x3F0000 or 0x3F, words.dtype)  # the 6-bit tail always 0
    widths, shifts = floats.kernel_args(spec)[:2]
    args = (U64(spec.bits - 1), U64(spec.low_bits), widths, shifts)
    for w, six_bit_tail_raw in ((words, True), (skewed, False)):
        fast = bytes(FC.encode_chunk(w, 0, n, *args, floats.eg.MAX_ORDER, *floats.chunk_scratch(n)))
        assert fast == b"".join(bytes(part) for part in floats._encode_pieces(w, 0, n, spec))
        piece = np.empty(n, np.uint16)
        p = list(widths).index(6)
        FK.tail_piece(w, 0, n, U64(spec.bits - 1), U64(spec.low_bits), U64(shifts[p]), U64(63), piece)
        assert FK.tail_raw_by_sample(w, 0, n, *args[:2], U64(shifts[p]), 6, floats.ENTROPY_MIN_GAIN) == six_bit_tail_raw
        assert FK.raw_by_sample(piece, 6, floats.ENTROPY_MIN_GAIN) == six_bit_tail_raw
        packed = np.full((6 * n + 7) // 8, 0xA5, np.uint8)  # any content before
        FK.pack_six_bit_tail(w, 0, n, *args[:2], U64(shifts[p]), packed)
        assert packed.tobytes() == bytes(floats._raw_bytes(piece, 6))
        np.testing.assert_array_equal(floats.decode_floats(floats.encode_floats(w, layout)), w)


@given(
    width=st.sampled_from([1, 2, 6, 8]),
    skew=st.floats(0.0, 0.6),
    n=st.sampled_from([FK.RAW_SAMPLE_MIN_VALUES, 3 * FK.RAW_SAMPLE_MIN_VALUES + 5]),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_piece_left_raw_by_its_sample_is_one_its_whole_histogram_leaves_raw(width, skew, n, seed):
    """Where the sample (`raw_by_sample`) says raw, the whole histogram says so too: its entropy
    is not below what an entropy coder must reach, nor its exp-Golomb code below raw; and a
    piece far from uniform is never declared raw by its sample."""
    rng = np.random.default_rng(seed)
    size = 1 << width
    weights = np.exp(-skew * np.arange(size) * 8 / size)  # from uniform to steeply falling
    values = rng.choice(size, n, p=weights / weights.sum()).astype(np.uint16)
    hist = np.bincount(values, minlength=size).astype(np.uint64)
    _, _, eg_bits, entropy_bits, _ = FK.segment_costs(hist, width, eg.MAX_ORDER)
    raw_size = (n * width + 7) // 8
    if FK.raw_by_sample(values, width, floats.ENTROPY_MIN_GAIN):
        best = min(raw_size, (int(eg_bits) + 7) // 8)
        assert best == raw_size and entropy_bits / 8 >= best - best // floats.ENTROPY_MIN_GAIN
        assert floats.encode_segment(values, width)[0] == floats.RAW
    if entropy_bits / n < width * 0.95:
        assert not FK.raw_by_sample(values, width, floats.ENTROPY_MIN_GAIN)


def test_small_pieces_are_not_sampled():
    values = np.random.default_rng(3).integers(0, 64, FK.RAW_SAMPLE_MIN_VALUES - 1).astype(np.uint16)
    assert not FK.raw_by_sample(values, 6, floats.ENTROPY_MIN_GAIN)
    assert FK.raw_by_sample(np.concatenate([values, values[:1]]), 6, floats.ENTROPY_MIN_GAIN)
