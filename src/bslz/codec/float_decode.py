"""Decoding of `floats.encode_floats`'s streams (the layout: `floats`): a thread's share of a tensor's
chunks in runs, each run in one kernel call (`_float_chunks.decode_chunks`), and a chunk the kernel
declines (one holding a rANS segment, or a bad one, which the long way names) a segment at a time.
"""

import numpy as np

from bslz.codec import _float_chunks as FC
from bslz.codec import _float_kernels as FK
from bslz.codec import expgolomb as eg
from bslz.codec._bits import bytes_to_words
from bslz.codec._parallel import parallel_map, split_range, threads_for
from bslz.codec.float_layouts import get_layout, kernel_args
from bslz.codec.huffman import decode_huffman
from bslz.codec.rans import decode_rans
from bslz.errors import FormatError, InvalidArgumentError, TruncatedError

U64 = np.uint64
RAW, CONSTANT, EXP_GOLOMB, RANS, HUFFMAN = FC.RAW, FC.CONSTANT, FC.EXP_GOLOMB, FC.RANS, FC.HUFFMAN
SEGMENT_HEADER = np.dtype([("method", "u1"), ("k", "u1"), ("center", "<u2"), ("nbytes", "<u4")])


def decode_floats(encoded, out=None, *, workers=None, chunk_decoded=None, chunks=None):
    """Decode an `EncodedFloats` into an array of unsigned words (view it as the float dtype).

    `chunks` = (first, end): decode chunks first..end - 1 only (values first * chunk_size up to
    end * chunk_size or the last), into an array (`out`) of just those values; the whole chunk
    table is checked either way.

    `chunk_decoded(r, run_bytes, run_words)`, if given, is called for run r of consecutive chunks
    (`chunk_runs`, numbered from 0 in order) by the thread that decoded it, with the run's bytes
    of the payload and its decoded words: the container takes the words' checksum there."""
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
    if chunks is not None:
        first, end = chunks
        if not 0 <= first <= end <= nchunks:
            raise InvalidArgumentError(f"chunks {first}..{end} are not a range of the stream's {nchunks}")
        offsets = offsets[first : end + 1]
        count, nchunks = max(0, min(count, end * chunk_size) - first * chunk_size), end - first
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
