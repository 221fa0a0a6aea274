"""Whole Huffman segments in one kernel call each: header, stream table and streams (layout:
`huffman.py`, FORMAT.md). From Python a segment took a dozen kernel and numpy calls, each giving up
the GIL and taking it back: threads coding chunks side by side waited on each other.
"""

import numpy as np

from bslz.codec._bits import big_endian_bytes, big_endian_words
from bslz.codec._huffman_kernels import (
    MAX_ALPHABET,
    MAX_LENGTH,
    NUM_STREAMS,
    decode_streams,
    decode_tables,
    encode_counted_streams,
    encode_streams,
    limited_code_lengths,
    read_header,
    reversed_codes,
    write_header,
)
from bslz.codec._jit import njit, njit_inline
from bslz.codec._rans_kernels import STATUS_OK, STATUS_TRUNCATED

U64 = np.uint64
STREAM_TABLE_BYTES = 4 * (NUM_STREAMS - 1)


@njit
def code_for(counts):
    """(code lengths, header bytes, codeword bits) of the limited code for `counts` (its last
    entry non-zero); bits is -1 when no code applies (fewer than two symbols present)."""
    lengths = np.zeros(counts.size, dtype=np.uint8)
    if not limited_code_lengths(counts, MAX_LENGTH, lengths):
        return lengths, np.zeros(0, dtype=np.uint8), -1
    bits = 0
    for s in range(counts.size):
        bits += np.int64(counts[s]) * np.int64(lengths[s])
    words = np.zeros(counts.size * 5 // 64 + 4, dtype=np.uint64)  # 4 bits a length, runs shorter
    nbits = np.int64(write_header(lengths, counts.size - 1, words))
    return lengths, big_endian_bytes(words, (nbits + 7) // 8), bits


@njit
def min_segment_bytes(header_bytes, bits):
    """A lower bound on a segment's size: its codewords in whole 32-bit words."""
    return header_bytes + STREAM_TABLE_BYTES + 4 * ((bits + 31) // 32)


@njit
def encode_segment(symbols, lengths, header):
    """The segment of `symbols` (each below lengths.size) under complete code `lengths` whose
    header bytes are `header`; an empty array if a symbol has no codeword."""
    streams = np.empty(stream_words_needed(symbols.size), dtype=np.uint32)
    stream_words = np.zeros(NUM_STREAMS, dtype=np.int64)
    if not _encode_streams(symbols, lengths, True, streams, stream_words):
        return np.zeros(0, dtype=np.uint8)
    out = np.empty(header.size + STREAM_TABLE_BYTES + 4 * stream_words.sum(), dtype=np.uint8)
    _write_segment(header, streams, stream_words, out)
    return out


@njit
def encode_counted_segment_into(symbols, lengths, header, streams, out):
    """`encode_segment` for a code made from the symbols' own histogram (every symbol has a codeword:
    the check is left out of the coding loop, four operations a pair of symbols), with no arrays of
    its own: the streams coded in `streams` (scratch of `stream_words_needed(symbols.size)` words),
    the segment written to `out` only if it fits there. Returns its size (-1: the code is not
    complete)."""
    stream_words = np.zeros(NUM_STREAMS, dtype=np.int64)
    if not _encode_streams(symbols, lengths, False, streams, stream_words):
        return -1
    nbytes = header.size + STREAM_TABLE_BYTES + 4 * stream_words.sum()
    if nbytes <= out.size:
        _write_segment(header, streams, stream_words, out[:nbytes])
    return nbytes


@njit
def stream_words_needed(count):
    """uint32 words that the streams of a segment of `count` symbols may take (their scratch)."""
    return NUM_STREAMS * ((count + NUM_STREAMS - 1) // NUM_STREAMS * MAX_LENGTH // 32 + 1) + 1


@njit_inline
def _encode_streams(symbols, lengths, check, streams, stream_words):
    """The symbols coded in the four streams, packed one after the other in `streams`, each one's
    word count in `stream_words`; False if a symbol has no codeword (with `check`) or the code is
    not complete."""
    codewords = np.zeros(lengths.size, dtype=np.uint64)
    if reversed_codes(lengths, codewords) != STATUS_OK:
        return False
    for s in range(lengths.size):
        codewords[s] |= U64(lengths[s]) << U64(32)
    quarter = (symbols.size + NUM_STREAMS - 1) // NUM_STREAMS
    if check:
        return encode_streams(symbols, codewords, quarter, streams, stream_words)
    return encode_counted_streams(symbols, codewords, quarter, streams, stream_words)


@njit_inline
def _write_segment(header, streams, stream_words, out):
    """Header, stream table and streams into `out`, exactly their size."""
    out[: header.size] = header
    for j in range(NUM_STREAMS - 1):
        for b in range(4):
            out[header.size + 4 * j + b] = (stream_words[j] >> (8 * b)) & 0xFF
    words = streams[: stream_words.sum()]
    out[header.size + STREAM_TABLE_BYTES :] = words.view(np.uint8)  # little-endian (numba: LE only)


# decode_segment's statuses: what is wrong with a segment, for the caller's error message
SEGMENT_OK = 0
SEGMENT_HEADER_TRUNCATED = 1
SEGMENT_BAD_LENGTHS = 2  # a length above MAX_LENGTH, or a zero run reaching max_symbol
SEGMENT_BAD_PADDING = 3  # non-zero bits after the header
SEGMENT_SYMBOL_ABOVE_TOP = 4  # info[0]: the largest symbol
SEGMENT_INCOMPLETE_CODE = 5
SEGMENT_TABLE_TRUNCATED = 6  # the stream table
SEGMENT_PARTIAL_WORD = 7  # info[0]: the bytes after the last whole word
SEGMENT_STREAMS_TRUNCATED = 8  # info[0], info[1]: the words the streams claim, the words present
SEGMENT_STREAM_TRUNCATED = 9
SEGMENT_TRAILING = 10
HEADER_PREFIX_BYTES = 1024  # a typical header fits: parse it without converting the whole segment


@njit
def decode_segment(data, count, out, shift, top, info):
    """Decode a whole segment (uint8 `data`: header, stream table, streams) of count >= 1 symbols
    into `out` (uint16), each shifted left by `shift`; a symbol above `top` is an error. Returns a
    SEGMENT_* status (details in info, int64[2]).

    One call for what was a dozen from Python (60 us a segment, most of it with the GIL held:
    threads decoding side by side waited on each other)."""
    lengths = np.zeros(MAX_ALPHABET, dtype=np.uint8)
    prefix = min(data.size, HEADER_PREFIX_BYTES)
    status, max_symbol, nbits = read_header(big_endian_words(data, prefix), 8 * prefix, lengths)
    if status == STATUS_TRUNCATED and prefix < data.size:
        lengths[:] = 0
        status, max_symbol, nbits = read_header(big_endian_words(data, data.size), 8 * data.size, lengths)
    if status == STATUS_TRUNCATED:
        return SEGMENT_HEADER_TRUNCATED
    if status != STATUS_OK:
        return SEGMENT_BAD_LENGTHS
    bits = np.int64(nbits)
    hbytes = (bits + 7) // 8
    if bits % 8 and (np.int64(data[hbytes - 1]) & ((1 << (8 - bits % 8)) - 1)):
        return SEGMENT_BAD_PADDING
    info[0] = max_symbol
    if max_symbol > top:
        return SEGMENT_SYMBOL_ABOVE_TOP
    lengths = lengths[: max_symbol + 1]
    codes = np.zeros(lengths.size, dtype=np.uint64)
    if reversed_codes(lengths, codes) != STATUS_OK:
        return SEGMENT_INCOMPLETE_CODE
    start = hbytes + STREAM_TABLE_BYTES
    if data.size < start:
        return SEGMENT_TABLE_TRUNCATED
    if (data.size - start) % 4:
        info[0] = (data.size - start) % 4
        return SEGMENT_PARTIAL_WORD
    first = np.zeros(NUM_STREAMS + 1, dtype=np.int64)
    for j in range(NUM_STREAMS - 1):
        p = hbytes + 4 * j
        word = np.int64(data[p]) | (np.int64(data[p + 1]) << 8) | (np.int64(data[p + 2]) << 16)
        first[j + 1] = first[j] + (word | (np.int64(data[p + 3]) << 24))
    first[NUM_STREAMS] = (data.size - start) // 4
    if first[NUM_STREAMS - 1] > first[NUM_STREAMS]:
        info[0], info[1] = first[NUM_STREAMS - 1], first[NUM_STREAMS]
        return SEGMENT_STREAMS_TRUNCATED
    single = np.empty(MAX_ALPHABET, dtype=np.uint16)
    pairs = np.empty(MAX_ALPHABET, dtype=np.uint32)
    meta = np.empty(MAX_ALPHABET, dtype=np.uint16)
    decode_tables(lengths, codes, shift, single, pairs, meta)
    status = decode_streams(data[start:], first, pairs, meta, single, count, out, shift)
    if status == STATUS_TRUNCATED:
        return SEGMENT_STREAM_TRUNCATED
    if status != STATUS_OK:
        return SEGMENT_TRAILING
    return SEGMENT_OK
