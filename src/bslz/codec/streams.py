"""Chunked exp-Golomb symbol streams: the unit the container stores for a coded tensor.

A stream of `count` unsigned symbols is cut into chunks of `chunk_size` symbols. Each chunk is coded
on its own, starts on a 64-bit word boundary and is decodable alone, so a decoder can start at any
chunk and decode chunks in parallel. Inside a stream one of two modes codes the symbols:

- "eg": order-k exp-Golomb with one k per block of `block_size` symbols (one block for the whole
  stream when a single k is cheapest);
- "zero_run": for sparse streams, EG(k_run) of each run of zeros, then EG(k_val) of the next
  symbol minus one;
- "rans": each chunk a static rANS stream (`bslz.codec.rans`), for alphabets below 4096 symbols:
  it lands within a fraction of a percent of each chunk's order-0 entropy, where exp-Golomb pays
  3-20 % for the mismatch between its code lengths and the histogram;
- "rans_escape": the same with the symbols from 4095 up coded as 4095 and their excess in
  exp-Golomb after each chunk's rANS stream (`bslz.codec.rans_escape`), for larger alphabets.

`plan_stream` picks the mode and orders by exact size; `encode_stream` writes what the plan says.
The size of a stream (`stream_size_bits`) is payload bits plus side information: 64 bits a chunk for
the chunk table and 8 bits an order.
"""

import functools

import numpy as np

from bslz.codec import _expgolomb_kernels as K
from bslz.codec import _stream_kernels as SK
from bslz.codec._bits import bytes_to_words
from bslz.codec._parallel import default_workers, parallel_map, pieces_per_core, split_range
from bslz.codec.expgolomb import as_symbols, best_order, decode_tables, raise_for_status
from bslz.codec.rans import MAX_ALPHABET, decode_rans, encode_rans
from bslz.codec.rans_escape import decode_escaped, encode_escaped, excesses
from bslz.codec.stream_plan import EncodedStream, StreamPlan
from bslz.errors import FormatError, InvalidArgumentError

U64 = np.uint64
MODES = ("eg", "zero_run", "rans", "rans_escape")
RANS_MODES = ("rans", "rans_escape")  # chunks of whole bytes, coded while planning
DEFAULT_CHUNK_SIZE = 1 << 18
DEFAULT_BLOCK_SIZE = 1 << 12
# Exp-Golomb chunks are decoded four side by side on each core (lanes: independent dependency
# chains), so a stream of one chunk decodes on one lane of one core. Plans cut shorter streams into
# up to EG_MIN_CHUNKS chunks, of at least EG_MIN_CHUNK_SIZE symbols: a chunk costs its table entry
# and on average 32 bits of padding, 0.006 bits a symbol at that size. (Measured on MiniLM's 40
# weight matrices at 30 dB: 5.6250 -> 5.6260 bits a symbol, decoding 432 -> 510 M symbols/s.)
EG_MIN_CHUNKS = 8
EG_MIN_CHUNK_SIZE = 1 << 14
MAX_CHUNK_BITS_PER_SYMBOL = 256  # two codewords of at most 125 bits each (zero-run mode)
# Zero-run mode is only costed when at least this share of symbols are zero (it cannot win below).
ZERO_RUN_MIN_ZERO_SHARE = 0.25
RANS_MIN_SYMBOLS = 64  # below this a frequency table costs more than it saves


def _check_sizes(chunk_size, block_size):
    for name, value in (("chunk_size", chunk_size), ("block_size", block_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= (1 << 30):
            raise InvalidArgumentError(f"{name} must be an integer in 1..2**30, got {value!r}")
    if chunk_size % block_size:
        raise InvalidArgumentError(f"chunk_size ({chunk_size}) must be a multiple of block_size ({block_size})")


def plan_stream(values, *, mode="auto", chunk_size=DEFAULT_CHUNK_SIZE, block_size=DEFAULT_BLOCK_SIZE):
    """Choose how to code `values` (unsigned symbols): the cheapest plan, found by exact sizes
    (exp-Golomb's left out of a long stream where a sample shows it far behind: `_eg_may_win`).

    `mode` is "auto" (cheapest of all), "eg" (cheapest of one k and k per block), "zero_run",
    "rans" (symbols below 4096 only) or "rans_escape" (in "auto" only for symbols from 4096 up).
    """
    arr = as_symbols(values)
    _check_sizes(chunk_size, block_size)
    if mode not in ("auto",) + MODES:
        raise InvalidArgumentError(f"mode must be 'auto' or one of {', '.join(MODES)}, got {mode!r}")
    candidates = []
    top, zeros = _max_and_zeros(arr)  # one pass for what every planner needs
    top = int(top)
    if mode in ("auto", "zero_run"):
        plan = _plan_zero_run(arr, chunk_size, block_size, top, zeros, required=mode == "zero_run")
        if plan is not None:
            candidates.append(plan)
    if mode in ("auto", "rans"):
        plan = _plan_rans(arr, chunk_size, block_size, top, required=mode == "rans")
        if plan is not None:
            candidates.append(plan)
    if mode == "rans_escape" or (mode == "auto" and top >= MAX_ALPHABET and arr.size >= RANS_MIN_SYMBOLS):
        candidates.append(_plan_rans_escape(arr, chunk_size, block_size))
    best = min(candidates, key=StreamPlan.size_bits) if candidates else None
    if mode == "eg" or (mode == "auto" and (best is None or _eg_may_win(arr, block_size, top, best.size_bits()))):
        candidates = _plans_eg(arr, chunk_size, block_size, top) + candidates  # first: it wins ties, as it did
    return min(candidates, key=StreamPlan.size_bits)


def _max_and_zeros(arr):
    """(largest symbol, number of zeros), a piece a core."""
    parts = parallel_map(lambda b: K.max_and_zeros(arr[b[0] : b[1]]), pieces_per_core(arr.size))
    return max((top for top, _ in parts), default=0), sum(zeros for _, zeros in parts)


# A long stream's exp-Golomb plans are costed only where a sample says they may win: on whole blocks,
# one in EG_SAMPLE_EVERY across the stream, each at its best order (a bound below both plans'
# payloads, but for the sampling), scaled up, more than EG_SAMPLE_MARGIN above the best other plan
# and they are not. Costing every block took 1.8 ns a symbol, 4 % of a lossy compression; on
# MiniLM's quantized weights exp-Golomb lands 7-9 % above rANS. From 16 blocks (a sample of 2 or more):
# at 64, MiniLM's 147 k-value matrices (36 blocks) were costed whole, 9 ms of a one-thread `--bits
# 7.978` compression of its bfloat16 file (4 M symbols), where their samples take 2.
EG_SAMPLE_MIN_BLOCKS = 16
EG_SAMPLE_EVERY = 8
EG_SAMPLE_MARGIN = 1 / 32


def _eg_may_win(arr, block_size, top, best_bits):
    """Whether exp-Golomb may code `arr` in fewer than `best_bits` (see EG_SAMPLE_EVERY)."""
    whole = arr.size // block_size
    if whole < EG_SAMPLE_MIN_BLOCKS:
        return True
    sampled = -(-whole // EG_SAMPLE_EVERY)  # whole blocks 0, EG_SAMPLE_EVERY, 2 EG_SAMPLE_EVERY, ...
    sampled_bits = float(_block_costs(arr, block_size, top, sampled, EG_SAMPLE_EVERY).min(axis=1).sum())
    return sampled_bits * (arr.size / (sampled * block_size)) <= (1.0 + EG_SAMPLE_MARGIN) * best_bits


def _plan_rans_escape(arr, chunk_size, block_size):
    orders = np.array([best_order(excesses(arr)) if arr.size else 0], np.uint8)
    coded = _code_byte_chunks(arr, chunk_size, "rans_escape", orders)
    chunk_bits = np.array([8 * len(c) for c in coded], dtype=np.uint64)
    return StreamPlan("rans_escape", arr.size, chunk_size, block_size, orders, chunk_bits, coded)


def _plan_rans(arr, chunk_size, block_size, top, required):
    if top >= MAX_ALPHABET or (not required and arr.size < RANS_MIN_SYMBOLS):
        if required:
            raise InvalidArgumentError(f"rans mode takes symbols below {MAX_ALPHABET}, got {top}")
        return None
    coded = _code_byte_chunks(arr, chunk_size, "rans", None)
    chunk_bits = np.array([8 * len(c) for c in coded], dtype=np.uint64)
    return StreamPlan("rans", arr.size, chunk_size, block_size, np.zeros(0, np.uint8), chunk_bits, coded)


def _code_byte_chunks(arr, chunk_size, mode, orders):
    """The chunks (bytes) of a "rans" or "rans_escape" stream (orders: the escapes' k), on all cores."""
    if mode == "rans":
        symbols = _rans_symbols(arr)

        def code(b):
            return encode_rans(symbols[b[0] : b[1]])
    else:

        def code(b):
            return encode_escaped(arr[b[0] : b[1]], int(orders[0]))

    return tuple(parallel_map(code, [(lo, min(arr.size, lo + chunk_size)) for lo in range(0, arr.size, chunk_size)]))


def _rans_symbols(arr):
    """The symbols (all < 4096) as the rANS coder takes them: as they are up to 32 bits (no copy of a
    quantized tensor's uint32 symbols), narrowed from 64."""
    return arr if arr.dtype.itemsize <= 4 else arr.astype(np.uint16)


def stream_size_bits(values, **kwargs):
    """Exact size in bits of `encode_stream(values, **kwargs)`, without writing it."""
    return plan_stream(values, **kwargs).size_bits()


def _block_costs(arr, block_size, top, nblocks=None, every=1):
    """Bits of every block (or of `nblocks` blocks, one in `every`) under every order up to the bit
    length of the largest symbol `top` (no larger order can be best), computed on all cores."""
    from bslz.codec.expgolomb import MAX_ORDER

    nblocks = -(-arr.size // block_size) if nblocks is None else nblocks
    costs = np.zeros((nblocks, min(MAX_ORDER, top.bit_length()) + 1), dtype=np.uint64)
    parallel_map(lambda b: K.block_costs(arr, block_size, costs, *b, every), split_range(nblocks, default_workers()))
    return costs


def eg_chunk_size(count, chunk_size, block_size):
    """Symbols a chunk of an exp-Golomb plan holds: `chunk_size`, or fewer (whole blocks, at least
    EG_MIN_CHUNK_SIZE) for a stream too short to fill EG_MIN_CHUNKS chunks of it. A stream that is
    one chunk either way keeps `chunk_size` (its plan, and the file, as before)."""
    wanted = -(-max(EG_MIN_CHUNK_SIZE, -(-count // EG_MIN_CHUNKS)) // block_size) * block_size
    return chunk_size if wanted >= count else min(chunk_size, wanted)


def _plans_eg(arr, chunk_size, block_size, top):
    """The one-order plan, and the order-per-block plan when there is more than one block (`top`:
    the largest symbol), in chunks of `eg_chunk_size`."""
    chunk_size = eg_chunk_size(arr.size, chunk_size, block_size)
    costs = _block_costs(arr, block_size, top)
    per_chunk = chunk_size // block_size
    starts = np.arange(0, len(costs), per_chunk)

    def chunk_sums(block_bits):
        return np.add.reduceat(block_bits, starts).astype(np.uint64) if len(block_bits) else np.zeros(0, np.uint64)

    k = int(np.argmin(costs.sum(axis=0)))
    single = StreamPlan("eg", arr.size, chunk_size, max(arr.size, 1), np.array([k], np.uint8), chunk_sums(costs[:, k]))
    if len(costs) <= 1:
        return [single]
    orders = np.argmin(costs, axis=1)
    block_bits = costs[np.arange(len(costs)), orders]
    return [single, StreamPlan("eg", arr.size, chunk_size, block_size, orders.astype(np.uint8), chunk_sums(block_bits))]


def _plan_zero_run(arr, chunk_size, block_size, top, zeros, required):
    from bslz.codec.expgolomb import MAX_ORDER

    if not required and (arr.size == 0 or zeros < ZERO_RUN_MIN_ZERO_SHARE * arr.size):
        return None
    nchunks = -(-arr.size // chunk_size)
    # runs are at most a chunk long; no order above the bit length of the largest symbol can be best
    run_costs = np.zeros((nchunks, min(MAX_ORDER, chunk_size.bit_length()) + 1), dtype=np.uint64)
    val_costs = np.zeros((nchunks, min(MAX_ORDER, top.bit_length()) + 1), dtype=np.uint64)
    parallel_map(
        lambda c: K.zero_run_costs(arr, chunk_size, run_costs, val_costs, *c), split_range(nchunks, default_workers())
    )
    k_run = int(np.argmin(run_costs.sum(axis=0)))
    k_val = int(np.argmin(val_costs.sum(axis=0)))
    chunk_bits = run_costs[:, k_run] + val_costs[:, k_val]
    return StreamPlan("zero_run", arr.size, chunk_size, block_size, np.array([k_run, k_val], np.uint8), chunk_bits)


def encode_stream(values, plan=None, **plan_kwargs):
    """Code `values` as a chunked stream; `plan` defaults to `plan_stream(values, **plan_kwargs)`."""
    plan, parts = encode_stream_parts(values, plan, **plan_kwargs)
    one = len(parts) == 1 and isinstance(parts[0], np.ndarray)  # exp-Golomb's words, as bytes already
    payload = parts[0] if one else np.frombuffer(b"".join(parts), dtype=np.uint8)
    return EncodedStream(plan, payload)


def encode_stream_parts(values, plan=None, **plan_kwargs):
    """(plan, parts): `encode_stream`'s plan and its payload as a list of bytes-like parts, back to
    back, for a caller that copies them once into a larger whole (a tensor's payload)."""
    arr = as_symbols(values)
    if plan is None:
        plan = plan_stream(arr, **plan_kwargs)
    elif plan.count != arr.size:
        raise InvalidArgumentError(f"plan is for {plan.count} symbols, got {arr.size}")
    if plan.mode in RANS_MODES:
        return plan, _rans_chunk_parts(arr, plan)
    starts = plan.chunk_word_starts()
    words = np.zeros(int(starts[-1]) + 1, dtype=np.uint64)  # +1: the writer may touch one spare word
    written = np.zeros(plan.num_chunks, dtype=np.uint64)
    if plan.mode == "eg":
        code = functools.partial(SK.encode_eg_chunks, arr, plan.chunk_size, plan.orders, plan.block_size)
    else:
        k_run, k_val = U64(plan.orders[0]), U64(plan.orders[1])
        code = functools.partial(SK.encode_zero_run_chunks, arr, plan.chunk_size, k_run, k_val)
    parallel_map(lambda c: code(words, starts, written, *c), split_range(plan.num_chunks, default_workers()))
    if not np.array_equal(written, plan.chunk_bits):
        raise InvalidArgumentError("plan does not match the values it is used with")
    return plan, [words[: int(starts[-1])].astype(">u8").view(np.uint8)]


def _rans_chunk_parts(arr, plan):
    """The rANS chunks of a plan, each followed by its zero padding to whole 64-bit words."""
    coded = plan.coded_chunks
    if coded is None:
        coded = _code_byte_chunks(arr, plan.chunk_size, plan.mode, plan.orders)
    if [8 * len(c) for c in coded] != plan.chunk_bits.tolist():
        raise InvalidArgumentError("plan does not match the values it is used with")
    return [part for c in coded for part in (c, bytes(-len(c) % 8))]


def _checked_payload(encoded):
    """(plan, validated payload, chunk word starts) of an `EncodedStream`."""
    plan = encoded.plan
    validate_plan(plan)
    starts = plan.chunk_word_starts()
    payload = np.asarray(encoded.payload, dtype=np.uint8)
    if payload.size != int(starts[-1]) * 8:
        raise FormatError(f"stream payload is {payload.size} bytes, its chunk table says {int(starts[-1]) * 8}")
    return plan, payload, starts


def _consume_rans_chunks(plan, payload, starts, consume):
    """Decode every chunk of a checked rANS stream on all cores; consume(lo, hi, symbols) gets each
    chunk's symbols (uint16) on the thread that decoded them."""

    def decode_chunk(lo, hi, chunk):
        consume(lo, hi, decode_rans(chunk, hi - lo, np.empty(hi - lo, np.uint16)))

    _map_byte_chunks(plan, payload, starts, decode_chunk)


def _map_byte_chunks(plan, payload, starts, fn, chunks=None):
    """fn(first symbol, end, bytes) for every chunk (chunks first..end - 1 where `chunks` =
    (first, end)) of a checked stream of whole-byte chunks, on all cores."""
    first, end = (0, plan.num_chunks) if chunks is None else chunks
    if not 0 <= first <= end <= plan.num_chunks:
        raise InvalidArgumentError(f"chunks {first}..{end} are not a range of the stream's {plan.num_chunks}")
    parallel_map(lambda c: fn(*_byte_chunk(plan, payload, starts, c)), range(first, end))


def _byte_chunk(plan, payload, starts, c):
    """(first symbol, end, bytes) of chunk c of a stream of whole-byte chunks."""
    begin = int(starts[c]) * 8
    return (
        c * plan.chunk_size,
        min(plan.count, (c + 1) * plan.chunk_size),
        payload[begin : begin + int(plan.chunk_bits[c]) // 8],
    )


def map_rans_chunks(encoded, fn, chunks=None):
    """fn(lo, hi, chunk) for every chunk of a "rans" stream (chunks first..end - 1 only where
    `chunks` = (first, end)), on all cores: symbols lo..hi are the `rans.decode_rans` of the bytes
    `chunk` (the stream checked, the chunks not decoded)."""
    plan, payload, starts = _checked_payload(encoded)
    if plan.mode != "rans":
        raise InvalidArgumentError(f"a rans stream is needed here, got {plan.mode!r}")
    _map_byte_chunks(plan, payload, starts, fn, chunks)


OUTPUT_DTYPES = (np.uint16, np.uint32, np.uint64)


def decode_stream(encoded, out=None, dtype=np.uint64):
    """Decode every symbol of an `EncodedStream` into a new array of `dtype`, or into `out`.

    The output dtype may be uint16, uint32 or uint64: narrower is faster (fewer bytes stored); a
    symbol that does not fit raises FormatError rather than wrapping.
    """
    plan, payload, starts = _checked_payload(encoded)
    if out is None:
        out = np.empty(plan.count, dtype=dtype)
    if out.shape != (plan.count,) or out.dtype not in OUTPUT_DTYPES or not out.flags.c_contiguous:
        raise InvalidArgumentError(f"out must be a contiguous uint16/32/64 array of shape ({plan.count},)")
    if plan.mode == "rans":  # symbols are below 4096: every output dtype holds them

        def store(lo, hi, symbols):
            out[lo:hi] = symbols

        _consume_rans_chunks(plan, payload, starts, store)
        return out
    if plan.mode == "rans_escape":

        def decode_chunk(c):
            lo, hi, chunk = _byte_chunk(plan, payload, starts, c)
            decode_escaped(chunk, hi - lo, int(plan.orders[0]), out[lo:hi])

        parallel_map(decode_chunk, range(plan.num_chunks))
        return out
    max_symbol = U64(np.iinfo(out.dtype).max)
    words = bytes_to_words(payload)
    status = np.zeros(plan.num_chunks, dtype=np.int64)
    if plan.mode == "eg":
        kernel = SK.decode_eg_chunks
        coding = (plan.orders, plan.block_size, out, decode_tables())
    else:
        kernel = SK.decode_zero_run_chunks
        coding = (U64(plan.orders[0]), U64(plan.orders[1]), out)

    def decode_chunks(bounds):
        kernel(words, starts, plan.chunk_bits, plan.chunk_size, *coding, status, max_symbol, *bounds)

    parallel_map(decode_chunks, split_range(plan.num_chunks, default_workers(), multiple=4))
    for s in status:
        raise_for_status(int(s), "exp-Golomb chunk")
    return out


def validate_plan(plan):
    """Check a plan read from a file before any decoding trusts it."""
    from bslz.codec.expgolomb import MAX_ORDER

    if plan.mode not in MODES:
        raise FormatError(f"unknown stream mode {plan.mode!r}")
    if not 1 <= plan.chunk_size <= (1 << 30) or not 1 <= plan.block_size < (1 << 62) or not 0 <= plan.count < (1 << 62):
        raise FormatError(
            f"stream sizes out of range: count {plan.count}, chunk {plan.chunk_size}, block {plan.block_size}"
        )
    expected_chunks = -(-plan.count // plan.chunk_size)
    if len(plan.chunk_bits) != expected_chunks:
        raise FormatError(
            f"stream of {plan.count} symbols needs {expected_chunks} chunks, table has {len(plan.chunk_bits)}"
        )
    max_bits = MAX_CHUNK_BITS_PER_SYMBOL * plan.chunk_size
    if len(plan.chunk_bits) and int(np.max(plan.chunk_bits)) > max_bits:
        raise FormatError(f"a chunk claims more than {max_bits} bits")
    if plan.mode == "eg":
        expected_orders = max(1, -(-plan.count // plan.block_size))
    elif plan.mode == "zero_run":
        expected_orders = 2
    else:
        expected_orders = 1 if plan.mode == "rans_escape" else 0
        if len(plan.chunk_bits) and np.any(plan.chunk_bits % U64(8)):
            raise FormatError("rANS chunks must be whole bytes")
    if len(plan.orders) != expected_orders or (len(plan.orders) and int(np.max(plan.orders)) > MAX_ORDER):
        raise FormatError(
            f"stream orders are inconsistent: {len(plan.orders)} orders, {expected_orders} expected, max {MAX_ORDER}"
        )
