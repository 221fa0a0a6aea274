import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from bslz.codec import streams
from bslz.codec.stream_plan import EncodedStream, StreamPlan
from bslz.errors import BslzError, FormatError, InvalidArgumentError
from reference import bits_of, eg_decode, eg_encode

SIZES = dict(chunk_size=64, block_size=16)


def sparse_or_dense(draw_zero_share):
    return st.integers(0, 40) if not draw_zero_share else st.one_of(st.just(0), st.integers(0, 40))


@given(
    arr=hnp.arrays(np.uint16, st.integers(0, 400), elements=st.one_of(st.just(0), st.integers(0, 3000))),
    mode=st.sampled_from(["auto", "eg", "zero_run", "rans", "rans_escape"]),
)
def test_round_trip_every_mode(arr, mode):
    enc = streams.encode_stream(arr, mode=mode, **SIZES)
    np.testing.assert_array_equal(streams.decode_stream(enc), arr)
    assert enc.size_bits() == streams.stream_size_bits(arr, mode=mode, **SIZES)


@pytest.mark.small
@given(arr=hnp.arrays(np.uint8, st.integers(0, 200), elements=st.integers(0, 200)))
def test_each_chunk_is_a_standard_eg_stream(arr):
    """A plain EG decoder given a chunk's start, k and count reads that chunk's symbols."""
    enc = streams.encode_stream(arr, mode="eg", **SIZES)
    plan = enc.plan
    starts = plan.chunk_word_starts()
    payload_bits = bits_of(enc.payload, enc.payload.size * 8)
    for c in range(plan.num_chunks):
        lo, hi = c * plan.chunk_size, min(arr.size, (c + 1) * plan.chunk_size)
        pos = int(starts[c]) * 64
        for b in range(lo, hi, plan.block_size if len(plan.orders) > 1 else hi - lo):
            k = int(plan.orders[b // plan.block_size])
            end = min(hi, b - b % plan.block_size + plan.block_size) if len(plan.orders) > 1 else hi
            got, used = eg_decode(payload_bits[pos:], end - b, k)
            assert got == arr[b:end].tolist()
            pos += used
        assert pos - int(starts[c]) * 64 == plan.chunk_bits[c]


@pytest.mark.small
def test_auto_picks_the_smallest_plan():
    rng = np.random.default_rng(3)
    dense = rng.geometric(0.2, 1000).astype(np.uint16)
    sparse = np.where(rng.random(1000) < 0.95, 0, dense).astype(np.uint16)
    for arr in (dense, sparse):
        sizes = {m: streams.stream_size_bits(arr, mode=m, **SIZES) for m in ("eg", "zero_run", "rans")}
        assert streams.stream_size_bits(arr, mode="auto", **SIZES) == min(sizes.values())
    assert streams.plan_stream(sparse, **SIZES).mode == "zero_run"
    assert streams.plan_stream(dense, **SIZES).mode == "eg"
    skewed = rng.choice([0, 1, 2, 9], 5000, p=[0.05, 0.05, 0.05, 0.85]).astype(np.uint16)  # far from geometric
    assert streams.plan_stream(skewed).mode == "rans"


@given(
    arr=hnp.arrays(
        np.uint64,
        st.integers(0, 300),
        elements=st.one_of(st.integers(0, 20), st.integers(4090, 4100), st.integers(0, 2**62)),
    ),
)
def test_rans_escape_round_trips_symbols_of_any_size(arr):
    enc = streams.encode_stream(arr, mode="rans_escape", **SIZES)
    np.testing.assert_array_equal(streams.decode_stream(enc), arr)
    assert enc.size_bits() == streams.stream_size_bits(arr, mode="rans_escape", **SIZES)


@pytest.mark.small
def test_a_rans_escape_chunk_is_rans_then_exp_golomb_escapes():
    """FORMAT.md: u32 n, a rANS stream of the symbols with those from 4095 up as 4095, then the
    order-k codewords of their excess over 4095, zero-padded to a byte."""
    from bslz.codec.rans import decode_rans

    rng = np.random.default_rng(8)
    arr = rng.geometric(0.01, 150).astype(np.uint32)
    arr[[3, 70, 71, 140]] = [4095, 5000, 2**31, 4096]
    enc = streams.encode_stream(arr, mode="rans_escape", **SIZES)
    k = int(enc.plan.orders[0])
    starts = enc.plan.chunk_word_starts()
    for c in range(enc.plan.num_chunks):
        chunk = enc.payload[int(starts[c]) * 8 : int(starts[c]) * 8 + int(enc.plan.chunk_bits[c]) // 8].tobytes()
        symbols = arr[c * 64 : (c + 1) * 64]
        n = int.from_bytes(chunk[:4], "little")
        np.testing.assert_array_equal(decode_rans(chunk[4 : 4 + n], symbols.size), np.minimum(symbols, 4095))
        big = [int(v) - 4095 for v in symbols if v >= 4095]
        assert chunk[4 + n :] == bytes(int(b, 2) for b in chunks_of(eg_encode(big, k)))


def chunks_of(bits):
    bits += "0" * (-len(bits) % 8)
    return [bits[i : i + 8] for i in range(0, len(bits), 8)]


@pytest.mark.small
def test_outliers_no_longer_cost_rans_its_place():
    """A few symbols past rANS's alphabet: auto codes the rest with rANS, the outliers escaped."""
    rng = np.random.default_rng(9)
    arr = rng.choice(np.arange(0, 300, dtype=np.uint32), 200_000, p=np.r_[[0.3], np.full(299, 0.7 / 299)])
    arr[rng.integers(0, arr.size, 20)] = rng.integers(4096, 100_000, 20)
    plan = streams.plan_stream(arr)
    assert plan.mode == "rans_escape"
    assert plan.size_bits() < 0.97 * min(streams.stream_size_bits(arr, mode=m) for m in ("eg", "zero_run"))


@pytest.mark.small
@pytest.mark.parametrize(
    "edit, error",
    [
        (lambda c: c + b"\x00", "after|bytes of escapes"),  # a byte past the escapes
        (lambda c: c[:-1], "ends|bytes of escapes|cannot fit"),  # the escapes cut short
        (lambda c: (2**31).to_bytes(4, "little") + c[4:], "claims"),  # the rANS length past the chunk
        (lambda c: c[:-1] + bytes([c[-1] | 1]), "padding|bytes of escapes"),  # a padding bit set
    ],
)
def test_hostile_rans_escape_chunks_are_format_errors(edit, error):
    from bslz.codec.rans_escape import decode_escaped, encode_escaped

    arr = np.array([1, 2, 3, 5000, 4, 70000, 0] * 3, dtype=np.uint32)
    chunk = encode_escaped(arr, 3)  # 6 escapes of 3 + 13 + 1 bits... padded: the last byte has room
    np.testing.assert_array_equal(decode_escaped(chunk, arr.size, 3, np.empty(arr.size, np.uint32)), arr)
    with pytest.raises(FormatError, match=error):
        decode_escaped(edit(chunk), arr.size, 3, np.empty(arr.size, np.uint32))


@pytest.mark.small
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.uint64])
def test_an_escape_too_large_for_the_output_is_a_format_error(dtype):
    """An escape codeword of 2**63 (no writer makes one): a FormatError for every output type."""
    from bslz.codec.rans_escape import decode_escaped, encode_escaped

    arr = np.array([1, 2, 5000, 3] * 20, dtype=np.uint32)
    head = encode_escaped(arr, 3)  # its rANS stream codes 20 escapes
    n = int.from_bytes(head[:4], "little")
    bits = ("0" * 60 + format(2**63 + 8, "064b")) * 20  # EG3 of 2**63, twenty times
    tail = bytes(int(b, 2) for b in chunks_of(bits))
    with pytest.raises(FormatError, match="larger than its output type"):
        decode_escaped(head[: 4 + n] + tail, arr.size, 3, np.empty(arr.size, dtype))


@pytest.mark.small
def test_block_orders_beat_one_order_on_non_stationary_data():
    rng = np.random.default_rng(4)
    arr = np.concatenate([rng.geometric(0.5, 256), rng.geometric(0.002, 256)]).astype(np.uint32)
    plan = streams.plan_stream(arr, mode="eg", chunk_size=512, block_size=16)
    assert len(plan.orders) == arr.size // 16
    single_bits = min(len(eg_encode(arr.tolist(), k)) for k in range(20))
    assert int(plan.chunk_bits.sum()) + 8 * len(plan.orders) < single_bits
    np.testing.assert_array_equal(streams.decode_stream(streams.encode_stream(arr, plan)), arr)


@pytest.mark.small
def test_block_order_is_exact_per_block():
    rng = np.random.default_rng(5)
    arr = rng.geometric(0.01, 64).astype(np.uint16)
    plan = streams._plans_eg(arr, 64, 16, int(arr.max()))[1]
    for b in range(4):
        block = arr[16 * b : 16 * (b + 1)].tolist()
        costs = [len(eg_encode(block, k)) for k in range(33)]
        assert costs[plan.orders[b]] == min(costs)


@pytest.mark.small
def test_size_counts_padding_chunk_table_and_orders():
    arr = np.arange(200, dtype=np.uint16)
    enc = streams.encode_stream(arr, mode="eg", **SIZES)
    plan = enc.plan
    assert enc.payload.size * 8 == sum(-(-int(b) // 64) * 64 for b in plan.chunk_bits)
    assert enc.size_bits() == enc.payload.size * 8 + 64 * plan.num_chunks + 8 * len(plan.orders)


@pytest.mark.small
def test_corrupt_payload_is_caught_or_exact():
    rng = np.random.default_rng(6)
    arr = rng.geometric(0.1, 300).astype(np.uint16)
    assert_flips_caught_or_exact(streams.encode_stream(arr, **SIZES), arr, 7)


def assert_flips_caught_or_exact(enc, arr, stride):
    """Every `stride`-th payload bit flipped: a FormatError, or a stream of the right length."""
    for bit in range(0, enc.payload.size * 8, stride):
        payload = enc.payload.copy()
        payload[bit // 8] ^= 1 << (bit % 8)
        try:
            out = streams.decode_stream(dataclasses.replace(enc, payload=payload))
        except FormatError:
            continue
        assert out.shape == arr.shape  # undetected flips still give a stream of the right length


@pytest.mark.small
@pytest.mark.parametrize(
    "change",
    [
        dict(mode="lz77"),
        dict(chunk_size=0),
        dict(count=10**6),
        dict(chunk_bits=np.array([2**40], dtype=np.uint64)),
        dict(orders=np.array([40], dtype=np.uint8)),
        dict(orders=np.array([], dtype=np.uint8)),
    ],
)
def test_inconsistent_plans_are_format_errors(change):
    enc = streams.encode_stream(np.arange(50, dtype=np.uint8), mode="eg", chunk_size=64, block_size=64)
    with pytest.raises(FormatError):
        streams.decode_stream(dataclasses.replace(enc, plan=dataclasses.replace(enc.plan, **change)))


@pytest.mark.small
def test_truncated_payload_is_a_format_error():
    enc = streams.encode_stream(np.arange(500, dtype=np.uint16), **SIZES)
    for cut in (0, 8, enc.payload.size - 8):
        with pytest.raises(FormatError):
            streams.decode_stream(dataclasses.replace(enc, payload=enc.payload[:cut]))


@given(
    payload=st.binary(max_size=128),
    k=st.integers(0, 32),
    count=st.integers(0, 300),
    mode=st.sampled_from(streams.MODES),
)
def test_random_payloads_never_crash(payload, k, count, mode):
    nchunks = -(-count // 64)
    words = len(payload) // 8
    bits = np.full(nchunks, 64 * words // max(nchunks, 1), dtype=np.uint64)
    orders = np.array({"eg": [k], "zero_run": [k, k // 2], "rans": [], "rans_escape": [k]}[mode], dtype=np.uint8)
    plan = StreamPlan(mode, count, 64, max(count, 1), orders, bits)
    enc = EncodedStream(plan, np.frombuffer(payload, dtype=np.uint8)[: int(plan.chunk_word_starts()[-1]) * 8])
    try:
        out = streams.decode_stream(enc)
    except BslzError:
        return
    assert out.shape == (count,)


@pytest.mark.small
@pytest.mark.parametrize(
    "kwargs",
    [dict(mode="x"), dict(chunk_size=100, block_size=16), dict(chunk_size=0), dict(block_size=True)],
)
def test_bad_plan_arguments(kwargs):
    with pytest.raises(InvalidArgumentError):
        streams.plan_stream(np.arange(10, dtype=np.uint8), **kwargs)


@pytest.mark.small
@pytest.mark.parametrize("mode", ["eg", "zero_run", "rans_escape"])
def test_narrow_output_types_never_wrap(mode):
    arr = np.array([0, 0, 0, 5, 70000, 3, 0, 65535] * 40, dtype=np.uint32)
    enc = streams.encode_stream(arr, mode=mode, **SIZES)
    for dtype in (np.uint32, np.uint64):
        out = streams.decode_stream(enc, dtype=dtype)
        assert out.dtype == dtype
        np.testing.assert_array_equal(out, arr)
    with pytest.raises(FormatError, match="larger than its output type"):
        streams.decode_stream(enc, dtype=np.uint16)
    small = np.minimum(arr, 65535).astype(np.uint16)
    decoded = streams.decode_stream(streams.encode_stream(small, mode=mode), dtype=np.uint16)
    np.testing.assert_array_equal(decoded, small)


@pytest.mark.small
@given(hnp.arrays(np.uint32, st.integers(0, 200), elements=st.integers(0, 5)))
def test_max_and_zeros_in_one_pass(arr):
    from bslz.codec._expgolomb_kernels import max_and_zeros

    top, zeros = max_and_zeros(arr)
    assert top == (int(arr.max()) if arr.size else 0) and zeros == arr.size - np.count_nonzero(arr)


@given(
    scales=st.lists(st.integers(0, 30), min_size=1, max_size=9),
    seed=st.integers(0, 2**32 - 1),
    huge=st.booleans(),
)
def test_every_order_decodes_exactly_in_lanes_and_alone(scales, seed, huge):
    """Chunks of different scales (orders 0 to ~30, so some lanes take codewords from the window and
    others the table, codewords longer than a window among them) decode to what was coded, four
    chunks in lockstep or one by one; into too narrow an output, an error."""
    rng = np.random.default_rng(seed)
    parts = [rng.geometric(1.0 / (2.0**s + 1), 64).astype(np.uint64) - 1 for s in scales]
    arr = np.concatenate(parts)
    if huge:  # a few codewords of over 64 bits
        arr[rng.integers(0, arr.size, 3)] = rng.integers(2**40, 2**60, 3, dtype=np.uint64)
    enc = streams.encode_stream(arr, mode="eg", **SIZES)
    np.testing.assert_array_equal(streams.decode_stream(enc), arr)
    if arr.max() > 2**32 - 1:
        with pytest.raises(FormatError, match="larger than its output type"):
            streams.decode_stream(enc, dtype=np.uint32)
    for c in range(enc.plan.num_chunks):  # and each chunk is the standard EG stream of its symbols
        lo, hi = c * 64, min(arr.size, (c + 1) * 64)
        starts = enc.plan.chunk_word_starts()
        chunk_bits = bits_of(enc.payload[int(starts[c]) * 8 : int(starts[c + 1]) * 8], int(enc.plan.chunk_bits[c]))
        pos = 0
        for b in range(lo, hi, enc.plan.block_size if len(enc.plan.orders) > 1 else hi - lo):
            k = int(enc.plan.orders[b // enc.plan.block_size]) if len(enc.plan.orders) > 1 else int(enc.plan.orders[0])
            end = min(hi, b + enc.plan.block_size) if len(enc.plan.orders) > 1 else hi
            got, used = eg_decode(chunk_bits[pos:], end - b, k)
            assert got == arr[b:end].tolist()
            pos += used


@pytest.mark.small
def test_short_streams_are_cut_into_up_to_eight_chunks():
    """So that their chunks decode side by side (four lanes a core), not on one lane."""
    assert streams.eg_chunk_size(147_456, 1 << 18, 4096) == 5 * 4096  # 8 chunks, the last of one block
    assert streams.eg_chunk_size(20_000, 1 << 18, 4096) == streams.EG_MIN_CHUNK_SIZE  # never smaller
    assert streams.eg_chunk_size(10_000, 1 << 18, 4096) == 1 << 18  # one chunk either way: as asked
    assert streams.eg_chunk_size(10**8, 1 << 18, 4096) == 1 << 18
    assert streams.eg_chunk_size(147_456, 64, 16) == 64  # a smaller chunk_size asked for stays
    assert streams.eg_chunk_size(100_000, 1 << 18, 3000) % 3000 == 0  # whole blocks
    arr = np.random.default_rng(9).geometric(0.05, 147_456).astype(np.uint16)
    enc = streams.encode_stream(arr, mode="eg")
    assert enc.plan.num_chunks == 8 and enc.plan.chunk_size == 5 * 4096
    np.testing.assert_array_equal(streams.decode_stream(enc, dtype=np.uint16), arr)
    assert enc.size_bits() == streams.stream_size_bits(arr, mode="eg")


@pytest.mark.small
@pytest.mark.parametrize("tail", [1, 17, 63])
def test_a_short_last_chunk_decodes_in_lanes(tail):
    """The last group of four chunks runs in lockstep for its short last chunk, and its other three
    finish alone: exact, and a chunk that ends a bit early or late, or a flipped bit, is caught."""
    arr = (np.random.default_rng(tail).geometric(0.05, 7 * 64 + tail) - 1).astype(np.uint16)
    enc = streams.encode_stream(arr, mode="eg", **SIZES)
    assert enc.plan.num_chunks == 8
    np.testing.assert_array_equal(streams.decode_stream(enc), arr)
    for c in range(8):
        for delta in (-1, 1):
            chunk_bits = enc.plan.chunk_bits.copy()
            chunk_bits[c] = int(chunk_bits[c]) + delta
            bad = dataclasses.replace(enc, plan=dataclasses.replace(enc.plan, chunk_bits=chunk_bits))
            with pytest.raises(FormatError):
                streams.decode_stream(bad)
    assert_flips_caught_or_exact(enc, arr, 5)


def test_long_streams_cost_exp_golomb_only_where_a_sample_says_it_may_win():
    """From EG_SAMPLE_MIN_BLOCKS blocks, exp-Golomb is costed only when its sampled blocks come within
    EG_SAMPLE_MARGIN of the best other plan: skipped on quantized weights (rANS well ahead), costed
    and chosen where block orders follow a scale that changes block to block; either way the plan
    is the smallest of all modes."""
    from bslz.codec.dq import quantize_dq_symbols

    rng = np.random.default_rng(5)
    weights = quantize_dq_symbols(rng.laplace(0, 0.02, 600_000).astype(np.float32), 0.001)
    scales = np.repeat(2.0 ** rng.integers(0, 14, 150), streams.DEFAULT_BLOCK_SIZE)
    mixed = (rng.exponential(1.0, scales.size) * scales).astype(np.uint32)
    short = weights[: 36 * streams.DEFAULT_BLOCK_SIZE]  # a 147 k-value matrix's blocks: sampled too
    for arr, eg_wins in ((weights, False), (short, False), (mixed, True)):
        top = int(arr.max())
        best_other = min(
            streams.stream_size_bits(arr, mode=m)
            for m in (("rans",) if top < streams.MAX_ALPHABET else ("rans_escape",))
        )
        assert streams._eg_may_win(arr, streams.DEFAULT_BLOCK_SIZE, top, best_other) == eg_wins
        auto = streams.plan_stream(arr)
        assert auto.mode == ("eg" if eg_wins else "rans" if top < streams.MAX_ALPHABET else "rans_escape")
        assert auto.size_bits() == min(best_other, streams.stream_size_bits(arr, mode="eg"))


@pytest.mark.small
def test_sampled_block_costs_are_those_of_the_sampled_blocks_copied():
    """`_block_costs` of one block in `every`, read in place, gives the costs of those blocks
    copied out and costed as a stream of their own."""
    rng = np.random.default_rng(8)
    block = 64
    arr = rng.geometric(0.05, 37 * block + 5).astype(np.uint32)
    arr[5 * block + 3] = 70_000  # a symbol costed one by one, in a sampled block
    top = int(arr.max())
    whole = arr.size // block
    for every in (1, 3, 8):
        sampled = -(-whole // every)
        copied = np.ascontiguousarray(arr[: whole * block].reshape(whole, block)[::every]).reshape(-1)
        np.testing.assert_array_equal(
            streams._block_costs(arr, block, top, sampled, every), streams._block_costs(copied, block, top)
        )
