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
segment, as weights' chunks do not (`float_decode`, whose `decode_floats` is re-exported here).
"""

import dataclasses
import itertools
import threading

import numpy as np

from bslz.codec import _float_chunks as FC
from bslz.codec import _float_kernels as FK
from bslz.codec import expgolomb as eg
from bslz.codec._bits import words_to_bytes
from bslz.codec._huffman_segment import stream_words_needed
from bslz.codec._parallel import parallel_map
from bslz.codec.float_decode import RUN_CHUNKS as RUN_CHUNKS  # re-exported: decoding's side
from bslz.codec.float_decode import SEGMENT_HEADER
from bslz.codec.float_decode import chunk_runs as chunk_runs
from bslz.codec.float_decode import decode_floats as decode_floats
from bslz.codec.float_layouts import LAYOUTS as LAYOUTS  # re-exported: callers name layouts here
from bslz.codec.float_layouts import get_layout, kernel_args
from bslz.codec.huffman import encode_huffman, huffman_code
from bslz.codec.rans import encode_rans, histogram, rans_table
from bslz.errors import InvalidArgumentError

U64 = np.uint64
RAW, CONSTANT, EXP_GOLOMB, RANS, HUFFMAN = FC.RAW, FC.CONSTANT, FC.EXP_GOLOMB, FC.RANS, FC.HUFFMAN
METHOD_NAMES = {RAW: "raw", CONSTANT: "constant", EXP_GOLOMB: "exp-golomb", RANS: "rans", HUFFMAN: "huffman"}
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
