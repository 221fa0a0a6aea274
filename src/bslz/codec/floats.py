"""Lossless coding of float tensors: bit-exact for every pattern (NaN payloads, ±0, ±inf, subnormals).

Each float is cut into pieces (`float_layouts` names them, `_float_kernels` cuts them): the exponent
with the top mantissa bits, then sign and the rest of the mantissa as a top piece and whole bytes.
The tensor is cut into chunks; every (chunk, piece) is one segment, coded with whichever of five
methods is smallest, by exact size (an entropy coder only if it saves at least 1/128 of raw or
exp-Golomb, and rANS only if it saves at least 1/32 of Huffman: ENTROPY_MIN_GAIN,
RANS_MIN_GAIN_OVER_HUFFMAN):

    RAW       the piece's bits packed back to back
    CONSTANT  one value repeated (no payload)
    EXP_GOLOMB  order-k exp-Golomb of se(v - center), center = the most frequent value
    RANS      the static rANS table coder
    HUFFMAN   canonical Huffman, 12-bit codewords at most (format 1.2)

Layout of an encoded tensor (all integers little-endian):

    chunk table: (num_chunks + 1) x u64 byte offsets of each chunk, relative to the end of the table
    per chunk, per piece, a segment: method u8 | k u8 | center u16 | nbytes u32 | nbytes of payload

A chunk is coded in one kernel call (`_float_chunks`), and decoded in one when it holds no rANS
segment, as weights' chunks do not; the others go a segment at a time from here.
"""

import dataclasses
import itertools
import threading

import numpy as np

from bslz.codec import _float_chunks as FC
from bslz.codec import _float_kernels as FK
from bslz.codec import expgolomb as eg
from bslz.codec._bits import bytes_to_words, words_to_bytes
from bslz.codec._huffman_segment import stream_words_needed
from bslz.codec._parallel import parallel_map, split_range, threads_for
from bslz.codec.float_layouts import LAYOUTS as LAYOUTS  # re-exported: callers name layouts here
from bslz.codec.float_layouts import get_layout, kernel_args
from bslz.codec.huffman import decode_huffman, encode_huffman, huffman_code
from bslz.codec.rans import decode_rans, encode_rans, histogram, rans_table
from bslz.errors import FormatError, InvalidArgumentError, TruncatedError

U64 = np.uint64
RAW, CONSTANT, EXP_GOLOMB, RANS, HUFFMAN = FC.RAW, FC.CONSTANT, FC.EXP_GOLOMB, FC.RANS, FC.HUFFMAN
METHOD_NAMES = {RAW: "raw", CONSTANT: "constant", EXP_GOLOMB: "exp-golomb", RANS: "rans", HUFFMAN: "huffman"}
SEGMENT_HEADER = np.dtype([("method", "u1"), ("k", "u1"), ("center", "<u2"), ("nbytes", "<u4")])
# 512 KiB of original data a chunk: half the per-chunk overhead of 256 KiB, the same ratio (measured)
DEFAULT_CHUNK_BYTES = 1 << 19
# An entropy coder is chosen for a segment only if it saves at least 1/ENTROPY_MIN_GAIN of raw or
# exp-Golomb: its decoding is a pass of ~1-1.3 ns a value, and on the near-uniform pieces (sign and
# low mantissa bits) rANS saved 0.1-0.2 % of them, 0.002 % of a MiniLM bf16 file, while trying it
# took a third of the compression time. (zstd's rule for its entropy-coded blocks is 1/64.)
ENTROPY_MIN_GAIN = FC.ENTROPY_MIN_GAIN  # 128
# rANS must then save 1/RANS_MIN_GAIN_OVER_HUFFMAN of the Huffman size: on MiniLM's heads it saves
# 0.6-1.05 %, and Huffman decodes them about 2x as fast (bench_heads.py: 1.03 against 2.31 ns a
# symbol; up to two symbols a lookup, where rANS takes a multiply and two dependent loads a symbol).
RANS_MIN_GAIN_OVER_HUFFMAN = FC.RANS_MIN_GAIN_OVER_HUFFMAN  # 32


def default_chunk_size(layout):
    return DEFAULT_CHUNK_BYTES // (layout.bits // 8)


def _as_words(values, layout):
    arr = np.asarray(values)
    if arr.dtype.itemsize != layout.bits // 8:
        raise InvalidArgumentError(f"{layout.name} needs {layout.bits // 8}-byte elements, got {arr.dtype}")
    return np.ascontiguousarray(arr).reshape(-1).view(layout.word_dtype)


def _piece_values(words, lo, hi, layout, width, shift, out):
    mask = U64((1 << width) - 1)
    _, _, sign_pos, low_bits = kernel_args(layout)
    if shift is None:
        FK.head_piece(words, lo, hi, low_bits, mask, out)
    else:
        FK.tail_piece(words, lo, hi, sign_pos, low_bits, U64(shift), mask, out)


def _raw_bytes(values, width):
    """The values' bits back to back, as a uint8 array (joined into the payload with no other copy)."""
    if width == 8:
        return values.astype(np.uint8)
    if width < 8:
        out = np.zeros((values.size * width + 7) // 8, dtype=np.uint8)
        FK.pack_bytes(values, width, out)
        return out
    words = np.zeros((values.size * width) // 64 + 2, dtype=np.uint64)
    nbits = FK.pack_bits(values, width, words)
    return words_to_bytes(words, nbits)


def _entropy_bytes(hist, n):
    c = hist[hist > 0].astype(np.float64)
    return float(-(c * np.log2(c / n)).sum()) / 8


def encode_segment(values, width, tail=True):
    """(method, k, center, payload bytes) of the smallest coding of one piece's values; a `tail`
    piece that its sample shows near uniform is left raw at once (`raw_by_sample`: a head never is,
    nor tried)."""
    n = values.size
    if tail and FK.raw_by_sample(values, width, ENTROPY_MIN_GAIN):
        return RAW, 0, 0, _raw_bytes(values, width)
    hist = histogram(values)
    # EG costs come from the histogram: se(v - center) only permutes it
    center, k, eg_bits, entropy_bits, distinct = FK.segment_costs(hist, width, eg.MAX_ORDER)
    if hist[center] == n:
        return CONSTANT, 0, center, b""
    raw_size = (n * width + 7) // 8
    eg_size = (int(eg_bits) + 7) // 8
    best_size = min(raw_size, eg_size)
    limit = best_size - best_size // ENTROPY_MIN_GAIN  # an entropy coder must come in below it
    huffman = None
    # neither entropy coder beats the order-0 entropy: small pieces of many values skip both
    if entropy_bits / 8 < limit:
        code = huffman_code(hist[: 1 << width])
        if code is not None and code.min_bytes() < limit:
            coded = encode_huffman(values, code)
            if len(coded) < limit:
                huffman = coded
                limit = len(coded) - len(coded) // RANS_MIN_GAIN_OVER_HUFFMAN
    # rANS spends at least a bit of table on each distinct value and 5 more
    if (entropy_bits + distinct + 5) / 8 < limit:
        table = rans_table(hist[: 1 << width])
        if table.min_bytes() < limit:  # nor its own table plus the cost of its frequencies
            coded = encode_rans(values, table)
            if len(coded) < limit:
                return RANS, 0, 0, coded
    if huffman is not None:
        return HUFFMAN, 0, 0, huffman
    if eg_size < raw_size:
        mapped = np.empty(n, dtype=np.uint32)
        FK.zigzag_around(values, center, mapped)
        buf, _ = eg.encode(mapped, k)
        return EXP_GOLOMB, k, center, buf
    return RAW, 0, 0, _raw_bytes(values, width)


def _encode_chunk(words, lo, hi, layout):
    """The chunk's segments as a list of byte buffers (joined once, with every chunk's, by the caller)."""
    # the kernel has the default choice rules built in: with others set (bench_heads.py) the long way
    if ENTROPY_MIN_GAIN == FC.ENTROPY_MIN_GAIN and RANS_MIN_GAIN_OVER_HUFFMAN == FC.RANS_MIN_GAIN_OVER_HUFFMAN:
        widths, shifts, sign_pos, low_bits = kernel_args(layout)
        return [
            FC.encode_chunk(words, lo, hi, sign_pos, low_bits, widths, shifts, eg.MAX_ORDER, *chunk_scratch(hi - lo))
        ]
    return _encode_pieces(words, lo, hi, layout)


_scratch = threading.local()
SCRATCH_MAX_VALUES = 1 << 20  # a thread keeps scratch for chunks up to this many values (~4 MiB)


def chunk_scratch(count):
    """(piece, streams): `FC.encode_chunk`'s scratch arrays for a chunk of `count` values, the
    calling thread's own, kept between its chunks. Fresh ones each chunk (1 MiB for 262144 values)
    could be fresh pages each time, faulted in again: glibc gives freed memory at the top of its
    heap back to the kernel (how often depends on the heap; benchmarks/bench_chunk_scratch.py)."""
    kept = getattr(_scratch, "arrays", None)
    if kept is not None and kept[0].size >= count:
        return kept
    arrays = (np.empty(count, dtype=np.uint16), np.empty(stream_words_needed(count), dtype=np.uint32))
    if count <= SCRATCH_MAX_VALUES:
        _scratch.arrays = arrays
    return arrays


def _encode_pieces(words, lo, hi, layout):
    """`_encode_chunk` the long way, a segment at a time (what FC.encode_chunk matches byte for byte)."""
    parts = []
    piece_buf = np.empty(hi - lo, dtype=np.uint16)
    for _, width, shift in layout.pieces():
        _piece_values(words, lo, hi, layout, width, shift, piece_buf)
        method, k, center, payload = encode_segment(piece_buf, width, tail=shift is not None)
        header = np.zeros(1, dtype=SEGMENT_HEADER)
        header[0] = (method, k, center, len(payload))
        parts.append(header.tobytes())
        parts.append(payload)
    return parts


@dataclasses.dataclass(frozen=True)
class EncodedFloats:
    layout: str
    count: int
    chunk_size: int
    payload: bytes | np.ndarray  # bytes-like: the encoder makes a uint8 array

    def size_bits(self):
        return 8 * len(self.payload)


def encode_floats(values, layout, *, chunk_size=None, workers=None):
    """Code the bit patterns of a float array (`values`: any array of the layout's element size).

    `layout` names the float format (see LAYOUTS); returns an `EncodedFloats`.
    """
    layout = get_layout(layout)
    words = _as_words(values, layout)
    chunk_size = default_chunk_size(layout) if chunk_size is None else chunk_size
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or not 1 <= chunk_size <= 1 << 30:
        raise InvalidArgumentError(f"chunk_size must be an integer in 1..2**30, got {chunk_size!r}")
    bounds = [(lo, min(words.size, lo + chunk_size)) for lo in range(0, words.size, chunk_size)]
    chunks = parallel_map(lambda b: _encode_chunk(words, b[0], b[1], layout), bounds, workers)
    # in Python: numpy's cumsum of a short list cost more than a small tensor's whole chunk table
    sizes = itertools.accumulate(sum(len(part) for part in parts) for parts in chunks)
    offsets = np.array([0, *sizes], dtype="<u8")
    return EncodedFloats(layout.name, words.size, int(chunk_size), _assemble(offsets, chunks))


def _assemble(offsets, chunks):
    """The payload (uint8 array): the chunk table, then every segment, each copied once; a chunk's
    segments are let go once copied, so the payload is never held twice (a join would hold it all
    twice at its end). Writing the chunks' own buffers one by one instead, without this copy, was
    slower: held until the writing thread had written them, they made the memory allocator hand out
    fresh pages to the next chunks, each page a fault (MiniLM bf16, `compress_bytes`: measured with
    `resource.getrusage(...).ru_minflt` around the call)."""
    table = offsets.view(np.uint8)
    payload = np.empty(table.size + int(offsets[-1]), dtype=np.uint8)
    payload[: table.size] = table
    pos = table.size
    for c in range(len(chunks)):
        for part in chunks[c]:
            n = len(part)
            payload[pos : pos + n] = np.frombuffer(part, dtype=np.uint8) if isinstance(part, bytes) else part
            pos += n
        chunks[c] = None
    return payload


def decode_floats(encoded, out=None, *, workers=None, chunk_decoded=None):
    """Decode an `EncodedFloats` into an array of unsigned words (view it as the float dtype).

    `chunk_decoded(r, run_bytes, run_words)`, if given, is called for run r of consecutive chunks
    (`chunk_runs`, numbered from 0 in order) by the thread that decoded it, with the run's bytes
    of the payload and its decoded words: the container takes their checksums there."""
    layout = get_layout(encoded.layout)
    count, chunk_size = encoded.count, encoded.chunk_size
    if not isinstance(count, int) or count < 0 or not isinstance(chunk_size, int) or not 1 <= chunk_size <= 1 << 30:
        raise FormatError(f"float stream: bad count {count!r} or chunk size {chunk_size!r}")
    data = np.frombuffer(encoded.payload, dtype=np.uint8)
    nchunks = -(-count // chunk_size)
    table_bytes = 8 * (nchunks + 1)
    if data.size < table_bytes:
        raise TruncatedError(f"float stream of {data.size} bytes has no room for its {nchunks}-chunk table")
    # Python ints: a tensor of one chunk (MiniLM has 65 of a few hundred values) spent more time in
    # numpy's checks of its two offsets than in its kernel
    offsets = data[:table_bytes].view("<u8").tolist()
    body = data[table_bytes:]
    if offsets[0] != 0 or any(a > b for a, b in zip(offsets, offsets[1:])):
        raise FormatError("float stream: chunk offsets are not increasing from 0")
    if offsets[-1] != body.size:
        cls = TruncatedError if offsets[-1] > body.size else FormatError
        raise cls(f"float stream: chunks span {offsets[-1]} bytes, {body.size} present")
    if out is None:  # each chunk zeroes its words as it decodes them, in cache (not a pass of its own)
        out = np.empty(count, dtype=layout.word_dtype)
    elif out.shape != (count,) or out.dtype != layout.word_dtype:
        raise InvalidArgumentError(f"out must be a {layout.word_dtype} array of shape ({count},)")

    widths, shifts, sign_pos, low_bits = kernel_args(layout)
    heads = out if out.dtype == np.uint16 else np.empty(0, dtype=np.uint16)  # see FC.decode_chunk
    eg_tables = eg.decode_tables()
    chunk_offsets = np.array(offsets, dtype=np.int64)

    def decode_run(index_and_run):
        index, (c_lo, c_hi) = index_and_run
        c = c_lo
        while c < c_hi:
            c = FC.decode_chunks(
                body,
                chunk_offsets,
                out,
                heads,
                c,
                c_hi,
                chunk_size,
                sign_pos,
                low_bits,
                widths,
                shifts,
                eg_tables,
                eg.MAX_ORDER,
            )
            if c < c_hi:  # the long way, which raises for a bad chunk
                lo, hi = c * chunk_size, min(count, (c + 1) * chunk_size)
                out[lo:hi] = 0
                _decode_chunk(body[offsets[c] : offsets[c + 1]], out, lo, hi, layout)
                c += 1
        if chunk_decoded is not None:
            chunk_decoded(
                index, body[offsets[c_lo] : offsets[c_hi]], out[c_lo * chunk_size : min(count, c_hi * chunk_size)]
            )

    parallel_map(decode_run, list(enumerate(chunk_runs(nchunks, workers))), workers)
    return out


# A thread's share of a tensor's chunks is decoded in runs of at most this many, one kernel call
# each, their checksums taken after each: a call for each chunk made the threads take the GIL back
# after each, and a call for the whole share checked it once, out of cache. MiniLM bf16,
# `decompress_bytes`: `benchmarks/compare_revisions.py 870c4a4 56e1af4 --rounds 6` (a call a chunk,
# then runs of 4) 1.02x best / 1.04x median; with this constant edited, 6 interleaved rounds, the
# median time against a call a chunk was 0.936 with 4, 0.947 with the whole share, 1.003 with 1.
RUN_CHUNKS = 4


def chunk_runs(nchunks, workers=None):
    """(first, end) chunks of the runs (RUN_CHUNKS) of each thread's share of a tensor's chunks, the
    shares as `parallel_map` would spread them."""
    runs = []
    for lo, hi in split_range(nchunks, threads_for(nchunks, workers)):
        runs += [(c, min(hi, c + RUN_CHUNKS)) for c in range(lo, hi, RUN_CHUNKS)]
    return runs


def _decode_chunk(data, out, lo, hi, layout):
    n = hi - lo
    _, _, sign_pos, low_bits = kernel_args(layout)
    pos = 0
    piece = np.empty(n, dtype=np.uint16)
    for name, width, shift in layout.pieces():
        if data.size - pos < SEGMENT_HEADER.itemsize:
            raise TruncatedError(f"float chunk ends before its {name} segment header")
        method, k, center, nbytes = data[pos : pos + SEGMENT_HEADER.itemsize].view(SEGMENT_HEADER)[0].item()
        pos += SEGMENT_HEADER.itemsize
        if nbytes > data.size - pos:
            raise TruncatedError(f"float chunk's {name} segment claims {nbytes} bytes, {data.size - pos} left")
        payload = data[pos : pos + nbytes]
        pos += nbytes
        if method == HUFFMAN and (k or center):
            raise FormatError(f"{name}: Huffman segment with k={k}, center={center} (both must be 0)")
        if method == RAW and shift is not None:  # the common tail: merged straight from its bits
            _check_raw_size(payload, n, width, name)
            if width == 8:
                FK.merge_tail(out, lo, hi, sign_pos, low_bits, U64(shift), payload)
            else:
                FK.merge_packed_tail(out, lo, hi, sign_pos, low_bits, U64(shift), U64(width), payload)
            continue
        # the common head: decoded straight into the words (the Huffman decoder writes uint16 words;
        # wider ones get the head through `piece` and merge_head, one pass where a shift took two)
        if shift is None and (method == RANS or (method == HUFFMAN and out.dtype == np.uint16)):
            decode = decode_huffman if method == HUFFMAN else decode_rans
            decode(payload, n, out=out[lo:hi], shift=layout.low_bits, limit=(1 << width) - 1)
            continue
        _decode_segment(payload, method, k, center, width, piece, name)
        if shift is None:
            FK.merge_head(out, lo, hi, low_bits, piece)
        else:
            FK.merge_tail(out, lo, hi, sign_pos, low_bits, U64(shift), piece)
    if pos != data.size:
        raise FormatError(f"float chunk has {data.size - pos} bytes after its last segment")


def _check_raw_size(payload, n, width, name):
    if payload.size != (n * width + 7) // 8:
        raise FormatError(f"{name}: raw segment of {payload.size} bytes for {n} values of {width} bits")


def _decode_segment(payload, method, k, center, width, piece, name):
    n = piece.size
    limit = (1 << width) - 1
    if method == CONSTANT:
        if payload.size or center > limit:
            raise FormatError(f"{name}: bad constant segment")
        piece[:] = center
    elif method == RAW:
        _check_raw_size(payload, n, width, name)
        if width == 8:
            piece[:] = payload
        else:
            FK.unpack_bits(bytes_to_words(payload), n, width, piece)
    elif method == EXP_GOLOMB:
        if k > eg.MAX_ORDER or center > limit:
            raise FormatError(f"{name}: bad exp-Golomb parameters k={k}, center={center}")
        mapped = eg.decode(payload, n, k)
        if (eg.code_length(mapped, k) + 7) // 8 != payload.size:
            raise FormatError(f"{name}: exp-Golomb segment has trailing bytes")
        if not FK.unzigzag_around(mapped, center, limit, piece):
            raise FormatError(f"{name}: exp-Golomb values out of range")
    elif method == RANS:
        decode_rans(payload, n, out=piece)
        if n and int(piece.max()) > limit:
            raise FormatError(f"{name}: rANS symbols out of range")
    elif method == HUFFMAN:
        decode_huffman(payload, n, out=piece, limit=limit)
    else:
        raise FormatError(f"{name}: unknown segment method {method}")


def order0_bound_bits(values, layout, *, chunk_size=None):
    """Sum over chunks and pieces of the order-0 entropy: the bound a per-chunk order-0 coder meets."""
    layout = get_layout(layout)
    words = _as_words(values, layout)
    chunk_size = default_chunk_size(layout) if chunk_size is None else chunk_size
    total = 0.0
    piece = np.empty(min(chunk_size, words.size), dtype=np.uint16)
    for lo in range(0, words.size, chunk_size):
        hi = min(words.size, lo + chunk_size)
        for _, width, shift in layout.pieces():
            _piece_values(words, lo, hi, layout, width, shift, piece[: hi - lo])
            total += 8 * _entropy_bytes(np.bincount(piece[: hi - lo]), hi - lo)
    return total
