"""Chunk-parallel Numba kernels of `streams`: every chunk of a stream coded or decoded on its own,
each kernel over a range of chunks that a thread is given. Callers validate plans and payloads;
see `streams.py`.

The encoders once ran under numba's `prange`: its OpenMP threads then spun, waiting for more work,
through the rest of the compression (`perf record` of `compress_bytes` on MiniLM bf16, whose one
integer tensor has 512 values: ~5 % of the samples in libgomp)."""

import numpy as np

from bslz.codec import _expgolomb_decode as D
from bslz.codec import _expgolomb_kernels as K
from bslz.codec._jit import njit, njit_inline

U64 = np.uint64


@njit_inline
def _chunk_status(status, end, limit):
    """A chunk decoded without error must also end exactly at its last bit."""
    return D.STATUS_OVERRUN if status == D.STATUS_OK and end != limit else status


@njit
def encode_eg_chunks(values, chunk, orders, block, words, starts, written, c_lo, c_hi):
    """Code chunks [c_lo, c_hi) at their word starts; written[c] = the bits of chunk c."""
    for c in range(c_lo, c_hi):
        lo = c * chunk
        _, nbits = K.encode_range(values, lo, min(values.size, lo + chunk), orders, block, words, np.int64(starts[c]))
        written[c] = nbits


@njit
def encode_zero_run_chunks(values, chunk, k_run, k_val, words, starts, written, c_lo, c_hi):
    """`encode_eg_chunks` for the zero-run mode."""
    for c in range(c_lo, c_hi):
        lo = c * chunk
        _, nbits = K.zero_run_encode_range(
            values, lo, min(values.size, lo + chunk), k_run, k_val, words, np.int64(starts[c])
        )
        written[c] = nbits


@njit
def decode_eg_chunks(words, starts, chunk_bits, chunk, orders, block, out, tables, status, max_symbol, c_lo, c_hi):
    """Decode chunks [c_lo, c_hi): four at a time in lanes, the rest one by one. In a group that
    holds the stream's last chunk, shorter than the others, the lanes run in lockstep for its
    length and the other three finish alone."""
    c = c_lo
    lane_status = np.zeros(4, dtype=np.int64)
    ends = np.zeros(4, dtype=np.uint64)
    while c + 4 <= c_hi:
        bit_starts = starts[c : c + 4] * U64(64)
        limits = bit_starts + chunk_bits[c : c + 4]
        los = np.arange(c, c + 4) * chunk
        length = min(out.size - los[3], chunk)  # only the last chunk of a stream is shorter
        D.decode_four_lanes(
            words, bit_starts, limits, orders, block, out, los, length, tables, lane_status, ends, max_symbol
        )
        failed = lane_status.max() != D.STATUS_OK  # the other lanes then stopped where they were
        for i in range(4):
            s = lane_status[i]
            hi = min(out.size, los[i] + chunk)
            if failed:
                status[c + i] = s
                continue
            if los[i] + length < hi:
                s, ends[i] = D.decode_range(
                    words, ends[i], limits[i], orders, block, out, los[i] + length, hi, tables, max_symbol
                )
            status[c + i] = _chunk_status(s, ends[i], limits[i])
        c += 4
    for single in range(c, c_hi):
        lo = single * chunk
        pos = starts[single] * U64(64)
        limit = pos + chunk_bits[single]
        s, end = D.decode_range(
            words, pos, limit, orders, block, out, lo, min(out.size, lo + chunk), tables, max_symbol
        )
        status[single] = _chunk_status(s, end, limit)


@njit
def decode_zero_run_chunks(words, starts, chunk_bits, chunk, k_run, k_val, out, status, max_symbol, c_lo, c_hi):
    for c in range(c_lo, c_hi):
        lo = c * chunk
        pos = starts[c] * U64(64)
        limit = pos + chunk_bits[c]
        s, end = D.zero_run_decode_range(
            words, pos, limit, k_run, k_val, out, lo, min(out.size, lo + chunk), max_symbol
        )
        status[c] = _chunk_status(s, end, limit)
