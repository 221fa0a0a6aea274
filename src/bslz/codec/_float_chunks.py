"""One kernel call per float chunk.

Decoding or encoding a chunk from Python took a dozen kernel calls and as many numpy ones, each
releasing and taking back the GIL: threads coding chunks side by side waited on each other for it
(16 threads decoded MiniLM bf16's embedding 1.5x faster than one; with one call a chunk, 4x), and a
small tensor's chunk cost ~0.5 ms (MiniLM's 65 norm and bias vectors: a third of a lossless
compression of the bf16 file). These kernels match the Python path in `floats` byte for byte
(encoding: every method, as `floats.encode_segment` picks it) or leave it to name the error
(decoding: Huffman, exp-Golomb and constant pieces and raw tail pieces; a chunk holding a rANS
segment, which weights' chunks do not, or any inconsistent chunk, is decoded the long way).
"""

import numpy as np

from bslz.codec._bits import big_endian_bytes, big_endian_words
from bslz.codec._expgolomb_decode import STATUS_OK, decode_range
from bslz.codec._expgolomb_kernels import encode_one_order, stream_length
from bslz.codec._float_kernels import (
    _tail_bits,
    head_piece,
    merge_head,
    merge_packed_tail,
    merge_tail,
    pack_bits,
    pack_bytes,
    pack_six_bit_tail,
    raw_by_sample,
    segment_costs,
    tail_piece,
    tail_raw_by_sample,
    unzigzag_around,
    zigzag_around,
)
from bslz.codec._huffman_segment import (
    SEGMENT_OK,
    code_for,
    decode_segment,
    encode_counted_segment_into,
    min_segment_bytes,
)
from bslz.codec._jit import load_le64, njit, njit_inline
from bslz.codec._rans_kernels import encode_with_table
from bslz.codec._rans_table import histogram, multi_symbol_table

U64 = np.uint64

# segment methods (FORMAT.md, float segments); `floats` names them too
RAW, CONSTANT, EXP_GOLOMB, RANS, HUFFMAN = 0, 1, 2, 3, 4
SEGMENT_HEADER_BYTES = 8  # method u8 | k u8 | center u16 | nbytes u32, little-endian
ENTROPY_MIN_GAIN = 128  # floats.ENTROPY_MIN_GAIN and RANS_MIN_GAIN_OVER_HUFFMAN (see there)
RANS_MIN_GAIN_OVER_HUFFMAN = 32


@njit
def decode_chunk(data, words, heads, lo, hi, sign_pos, low_bits, widths, shifts, eg_tables, max_order):
    """Decode one chunk's segments (`data`) into words[lo:hi] (zeroed here first, unless the head's
    decoding stores every word: `_straight_head`) in one call, when each is
    Huffman, exp-Golomb, constant or (tail pieces) raw: widths[p] bits at shifts[p] (-1: the head).
    `heads` is `words` when they are uint16 (the head is decoded straight into them), else an
    empty uint16 array; `eg_tables`: `expgolomb.decode_tables()`, orders up to `max_order`.
    Returns False, perhaps having written some words, for any other method or any inconsistency:
    the caller then zeroes the words and decodes the chunk piece by piece, which names the error."""
    n = hi - lo
    chunk = words[lo:hi]
    if not (heads.size and _straight_head(data, n)):  # a straight head writes every word itself
        for i in range(n):  # the pieces are OR-ed in; zeroed here, the words are in cache for them
            chunk[i] = 0
    info = np.zeros(2, dtype=np.int64)
    pos = 0
    for p in range(widths.size):
        if data.size - pos < SEGMENT_HEADER_BYTES:
            return False
        method, k = data[pos], data[pos + 1]
        center = np.int64(data[pos + 2]) | (np.int64(data[pos + 3]) << 8)
        nbytes = np.int64(data[pos + 4]) | (np.int64(data[pos + 5]) << 8) | (np.int64(data[pos + 6]) << 16)
        nbytes |= np.int64(data[pos + 7]) << 24
        pos += SEGMENT_HEADER_BYTES
        if nbytes > data.size - pos:
            return False
        payload = data[pos : pos + nbytes]
        pos += nbytes
        width = np.int64(widths[p])
        limit = (1 << width) - 1
        if method == CONSTANT:
            if nbytes or center > limit:
                return False
            bits = U64(center) << low_bits if p == 0 else _tail_bits(U64(center) << U64(shifts[p]), sign_pos, low_bits)
            for i in range(n):
                chunk[i] |= bits
        elif method == HUFFMAN and k == 0 and center == 0 and n > 0:
            if p == 0 and heads.size:  # straight into the words
                top = min(limit, (1 << (16 - np.int64(low_bits))) - 1)
                if decode_segment(payload, n, heads[lo:hi], np.int64(low_bits), top, info) != SEGMENT_OK:
                    return False
                continue
            piece = np.empty(n, dtype=np.uint16)
            if decode_segment(payload, n, piece, 0, limit, info) != SEGMENT_OK:
                return False
            if p == 0:
                merge_head(words, lo, hi, low_bits, piece)
            else:
                merge_tail(words, lo, hi, sign_pos, low_bits, U64(shifts[p]), piece)
        elif method == EXP_GOLOMB:
            piece = np.empty(n, dtype=np.uint16)
            if k > max_order or center > limit or not _exp_golomb_segment(payload, k, center, limit, eg_tables, piece):
                return False
            if p == 0:
                merge_head(words, lo, hi, low_bits, piece)
            else:
                merge_tail(words, lo, hi, sign_pos, low_bits, U64(shifts[p]), piece)
        elif p > 0 and method == RAW:
            if nbytes != (n * width + 7) // 8:
                return False
            if width == 8:
                merge_tail(words, lo, hi, sign_pos, low_bits, U64(shifts[p]), payload)
            else:
                merge_packed_tail(words, lo, hi, sign_pos, low_bits, U64(shifts[p]), U64(width), payload)
        else:
            return False
    return pos == data.size


@njit
def decode_chunks(
    body, offsets, words, heads, c_lo, c_hi, chunk_size, sign_pos, low_bits, widths, shifts, eg_tables, max_order
):
    """`decode_chunk` of chunks c_lo..c_hi - 1 of a tensor (chunk c: body[offsets[c] : offsets[c + 1]],
    values c * chunk_size up to the words' end) in one call, the GIL released once for them all;
    returns the first chunk it left undecoded (c_hi when none): the caller decodes that one the long
    way and calls again from the next."""
    for c in range(c_lo, c_hi):
        lo = c * chunk_size
        hi = min(words.size, lo + chunk_size)
        data = body[offsets[c] : offsets[c + 1]]
        if not decode_chunk(data, words, heads, lo, hi, sign_pos, low_bits, widths, shifts, eg_tables, max_order):
            return c
    return c_hi


@njit
def decode_one_chunk_tensors(
    joined, bounds, words, heads, word_bounds, sign_pos, low_bits, widths, shifts, eg_tables, max_order, decoded
):
    """Decode tensors of one chunk each, of one float format, in one call: tensor t's whole payload
    (its chunk table of two offsets, then its chunk) is joined[bounds[t]: bounds[t + 1]], its words
    go to words[word_bounds[t]: word_bounds[t + 1]] (at least one). decoded[t] says whether it was
    decoded; one that was not (a table that is not [0, its chunk's size], or what `decode_chunk`
    declines) is left for the caller to decode the long way, which names what is wrong."""
    for t in range(decoded.size):
        payload = joined[bounds[t] : bounds[t + 1]]
        decoded[t] = False
        if payload.size < 16 or load_le64(payload, 0) != U64(0) or load_le64(payload, 8) != U64(payload.size - 16):
            continue
        lo, hi = word_bounds[t], word_bounds[t + 1]
        decoded[t] = decode_chunk(
            payload[16:], words, heads, lo, hi, sign_pos, low_bits, widths, shifts, eg_tables, max_order
        )


@njit_inline
def _straight_head(data, n):
    """Whether the chunk's first segment (the head) is a Huffman one that `decode_chunk` decodes
    straight into uint16 words: it stores every word of the chunk (it does not OR into them), so
    the words need no zeroing first (a pass over the chunk saved)."""
    if n <= 0 or data.size < SEGMENT_HEADER_BYTES:
        return False
    return data[0] == HUFFMAN and data[1] == 0 and data[2] == 0 and data[3] == 0  # method, k, center


@njit
def encode_chunk(words, lo, hi, sign_pos, low_bits, widths, shifts, max_order, piece, streams):
    """The segments of words[lo:hi] (uint8 array, its size the bytes used), exactly as
    `floats.encode_segment` codes each piece (widths[p] bits, at shifts[p]; -1: the head).
    `piece` (uint16, hi - lo values or more) and `streams` (uint32, `stream_words_needed(hi - lo)`
    or more) are scratch, kept by the caller between chunks."""
    n = hi - lo
    bound = 0
    for p in range(widths.size):
        bound += SEGMENT_HEADER_BYTES + (n * np.int64(widths[p]) + 7) // 8
    out = np.empty(bound, dtype=np.uint8)  # every coding kept here is at most the raw size
    piece = piece[:n]
    pos = 0
    for p in range(widths.size):
        width = np.int64(widths[p])
        mask = (U64(1) << U64(width)) - U64(1)
        raw_size = (n * width + 7) // 8
        shift = U64(shifts[p]) if p > 0 else U64(0)  # (the head has none: -1)
        # a raw 6-bit tail (bf16's, f32's top piece) is sampled and packed straight from the words
        if p > 0 and width == 6 and tail_raw_by_sample(words, lo, hi, sign_pos, low_bits, shift, 6, ENTROPY_MIN_GAIN):
            _put_segment_header(out, pos, RAW, 0, 0, raw_size)
            pos += SEGMENT_HEADER_BYTES
            pack_six_bit_tail(words, lo, hi, sign_pos, low_bits, shift, out[pos : pos + raw_size])
            pos += raw_size
            continue
        if p == 0:
            head_piece(words, lo, hi, low_bits, mask, piece)
        else:
            tail_piece(words, lo, hi, sign_pos, low_bits, shift, mask, piece)
        if p > 0 and raw_by_sample(piece, width, ENTROPY_MIN_GAIN):  # tails (a head is never uniform)
            pos = _put_raw_segment(out, pos, piece, width, raw_size)
            continue
        hist = np.zeros(1 << width, dtype=np.uint64)  # the piece's values are below it
        histogram(piece, hist)
        center, k, eg_bits, entropy_bits, distinct = segment_costs(hist, width, max_order)
        if hist[center] == U64(n):
            _put_segment_header(out, pos, CONSTANT, 0, center, 0)
            pos += SEGMENT_HEADER_BYTES
            continue
        eg_size = (np.int64(eg_bits) + 7) // 8
        best = min(raw_size, eg_size)
        limit = best - best // ENTROPY_MIN_GAIN
        huffman_size = 0  # the Huffman segment, when kept, is written in place (a rANS one over it)
        if entropy_bits / 8 < limit:
            huffman_size = _huffman_segment_into(
                piece, hist[: 1 << width], limit, streams, out[pos + SEGMENT_HEADER_BYTES :]
            )
            if huffman_size:
                limit = huffman_size - huffman_size // RANS_MIN_GAIN_OVER_HUFFMAN
        if (entropy_bits + distinct + 5) / 8 < limit:
            rans = _rans_segment(piece, hist[: 1 << width], limit)
            if rans.size:
                _put_segment_header(out, pos, RANS, 0, 0, rans.size)
                out[pos + SEGMENT_HEADER_BYTES : pos + SEGMENT_HEADER_BYTES + rans.size] = rans
                pos += SEGMENT_HEADER_BYTES + rans.size
                continue
        if huffman_size:
            _put_segment_header(out, pos, HUFFMAN, 0, 0, huffman_size)
            pos += SEGMENT_HEADER_BYTES + huffman_size
            continue
        if eg_size < raw_size:
            coded = _exp_golomb_bytes(piece, center, k)
            _put_segment_header(out, pos, EXP_GOLOMB, k, center, coded.size)
            out[pos + SEGMENT_HEADER_BYTES : pos + SEGMENT_HEADER_BYTES + coded.size] = coded
            pos += SEGMENT_HEADER_BYTES + coded.size
            continue
        pos = _put_raw_segment(out, pos, piece, width, raw_size)
    return out[:pos]


@njit_inline
def _put_raw_segment(out, pos, piece, width, raw_size):
    """A RAW segment of the piece's values at out[pos:]; returns the position after it."""
    _put_segment_header(out, pos, RAW, 0, 0, raw_size)
    pos += SEGMENT_HEADER_BYTES
    out[pos : pos + raw_size] = 0  # the packers OR bits in
    _put_raw(piece, width, out[pos : pos + raw_size])
    return pos + raw_size


@njit_inline
def _put_segment_header(out, pos, method, k, center, nbytes):
    out[pos] = method
    out[pos + 1] = k
    out[pos + 2] = center & 0xFF
    out[pos + 3] = center >> 8
    for b in range(4):
        out[pos + 4 + b] = (nbytes >> (8 * b)) & 0xFF


@njit
def _huffman_segment_into(values, hist, limit, streams, out):
    """The size of `huffman.encode_huffman(values, huffman_code(hist))`, written to `out` (room for
    `limit` bytes at least), if below `limit` (the code's lower bound already tells when it cannot
    be), else 0. `hist` is the values' own histogram: every value has a codeword. `streams`: scratch
    (`stream_words_needed(values.size)` words)."""
    max_symbol = -1
    for s in range(hist.size):
        if hist[s] > 0:
            max_symbol = s
    lengths, header, bits = code_for(hist[: max_symbol + 1])
    if bits < 0 or min_segment_bytes(header.size, bits) >= limit:
        return 0
    size = encode_counted_segment_into(values, lengths, header, streams, out[: limit - 1])
    return size if 0 < size < limit else 0


@njit
def _rans_segment(values, hist, limit):
    """`rans.encode_rans(values, rans_table(hist))` if it is shorter than `limit` (tried only when
    the table's lower bound, `RansTable.min_bytes`, is), else an empty array; `hist` has two
    distinct values or more."""
    max_symbol = 0
    for s in range(hist.size):
        if hist[s] > 0:
            max_symbol = s
    freqs, ideal, header_words, header_bits = multi_symbol_table(hist, max_symbol)
    header_bytes = np.int64((np.int64(header_bits) + 7) // 8)
    if header_bytes + ideal / 8 >= limit:
        return np.zeros(0, dtype=np.uint8)
    words = encode_with_table(values, freqs)
    size = np.int64(header_bytes + 4 * words.size)
    if size >= limit:
        return np.zeros(0, dtype=np.uint8)
    coded = np.empty(size, dtype=np.uint8)
    coded[:header_bytes] = big_endian_bytes(header_words, header_bytes)
    for i in range(words.size):  # little-endian, as `encode_rans` writes them
        for b in range(4):
            coded[header_bytes + 4 * i + b] = (words[i] >> np.uint32(8 * b)) & np.uint32(0xFF)
    return coded


@njit
def _exp_golomb_bytes(values, center, k):
    """`expgolomb.encode` of the se(v - center) mappings of the values, order k: its bytes."""
    mapped = np.empty(values.size, dtype=np.uint64)
    zigzag_around(values, center, mapped)
    words, nbits = encode_one_order(mapped, k)
    return big_endian_bytes(words, (nbits + U64(7)) // U64(8))


@njit
def _exp_golomb_segment(payload, k, center, limit, tables, piece):
    """Decode an exp-Golomb segment (order k, around `center`) into `piece`, as `floats` checks it:
    False if it ends early, holds a codeword too long, has bytes after its codewords, or a value
    outside 0..limit."""
    n = piece.size
    nbits = U64(8 * payload.size)
    if n > 8 * payload.size:  # every codeword has at least one bit
        return False
    mapped = np.empty(n, dtype=np.uint64)
    orders = np.full(1, k, dtype=np.uint8)
    words = big_endian_words(payload, payload.size)
    status, _ = decode_range(words, U64(0), nbits, orders, max(n, 1), mapped, 0, n, tables, ~U64(0))
    if status != STATUS_OK:
        return False
    if (stream_length(mapped, 0, n, orders, max(n, 1)) + U64(7)) // U64(8) != U64(payload.size):
        return False
    return unzigzag_around(mapped, center, limit, piece)


@njit
def _put_raw(values, width, out):
    """`floats._raw_bytes(values, width)` into `out` (zeroed, of exactly that size)."""
    if width == 8:
        for i in range(values.size):
            out[i] = values[i]
    elif width < 8:
        pack_bytes(values, U64(width), out)
    else:
        words = np.zeros((values.size * width) // 64 + 2, dtype=np.uint64)
        pack_bits(values, U64(width), words)
        out[:] = big_endian_bytes(words, out.size)
