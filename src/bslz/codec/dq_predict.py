"""A prediction of a tensor's dependent-quantization size (`size_estimate.estimate_size_bits` of
`dq.quantize_dq_symbols(x, step)`) at about a third of its cost: the trellis searches a sample.

Each value's place on the lattice, v = x / step, is its nearest even level m = round(v / 2) and
which of SUB_BINS sub-intervals around it v falls in. Where the trellis puts the index of a value
(m + d, d mostly -1, 0 or 1) depends on its place, and on its neighbours only through their
distribution, the same across the tensor: the sample (runs across the whole tensor,
`sample_runs`) gives how often each place moves by each d, a pass over every value counts the
places, and together they give the histogram of the indices over the tensor. Its entropy is the
payload's, but for what the chunks' own tables gain or lose against one table for the tensor: that
gap is taken from plain rounding's indices m, sized chunk by chunk from the same pass.

On MiniLM f32 and bf16 at the `--bits` search's first guesses for 4.936, 6.38 and 7.978 bits a
parameter the whole file's prediction lands within 0.07-1.8 tolerances of the exact estimate
(`BITS_TOLERANCE`, 5e-4 bits a parameter; `benchmarks/bits_estimate_study.py`), where the sample's
own sizes scaled up land 39-65 tolerances off (its chunks pool 16 of the tensor's).
"""

import math

import numpy as np

from bslz.codec._jit import njit
from bslz.codec._parallel import default_workers, parallel_map, split_range
from bslz.codec.dq import quantize_dq
from bslz.codec.expgolomb import best_order, order_costs
from bslz.codec.measure import widen_bfloat16_into
from bslz.codec.rans import MAX_ALPHABET
from bslz.codec.rans_escape import ESCAPE
from bslz.codec.size_estimate import chunk_bits_of_histogram
from bslz.codec.streams import DEFAULT_CHUNK_SIZE

SUB_BINS = 16
EXACT_LEVELS = 4  # places of |m| up to this are told apart; beyond, only by sign and sub-interval
SHIFTS = 3  # the trellis's index moves d from -SHIFTS to SHIFTS (a larger one counts as the largest)
PLACE_KEYS = (2 * EXACT_LEVELS + 3) * SUB_BINS
SAMPLE_SHARE = 16  # the sample: one run of SAMPLE_RUN values in every SAMPLE_SHARE
SAMPLE_RUN = 4096
PIECE = 4096  # bfloat16 words widened at a time, into an L1-sized scratch
CORE_LEVELS = 511  # see _count_places
U64 = np.uint64


def sample_runs(x):
    """One run of SAMPLE_RUN values in every SAMPLE_SHARE across x (flat), or None when x is too
    short for two runs (it is then searched whole)."""
    runs = x.size // (SAMPLE_RUN * SAMPLE_SHARE)
    if runs < 2:
        return None
    picked = x[: runs * SAMPLE_RUN * SAMPLE_SHARE].reshape(runs, SAMPLE_SHARE, SAMPLE_RUN)
    return np.ascontiguousarray(picked[:, 0, :]).reshape(-1)


@njit
def _place(v, half_span):
    """SUB_BINS (m + half_span) + sub-interval, the place of v = x / step (|v| / 2 + 1 < half_span):
    v / 2 + 0.5 + half_span is positive, so truncation is floor, and its whole part is m + half_span."""
    return np.int64((v * 0.5 + (half_span + 0.5)) * SUB_BINS)


@njit
def _place_key(m, sub):
    """The key of place (m, sub): |m| beyond EXACT_LEVELS pooled by sign."""
    return (min(EXACT_LEVELS + 1, max(-EXACT_LEVELS - 1, m)) + EXACT_LEVELS + 1) * SUB_BINS + sub


@njit
def _count_places(x, bfloat16_words, inv_step, half_span, chunk_size, c_lo, c_hi, places, levels):
    """Chunks c_lo..c_hi of x: places[m + half_span, sub] and each chunk's levels[c, m + half_span]
    counted (places: this range's own array). The places of |m| up to CORE_LEVELS are counted in
    four copies a chunk, value i into copy i % 4: most values share a few places, and one copy made
    each count wait for the last; the rare ones beyond straight into `places` (a chunk's copies of
    every place cost more to clear and add up than to count, with outliers thousands of levels out).
    The copies of a place are side by side and their offsets unsigned (no wraparound of negative
    indices): 1.3-1.4 -> 0.8-0.9 ns a value (MiniLM's embedding, bfloat16, one thread). Bfloat16
    words are widened a piece at a time."""
    span = places.shape[0]
    flat_places = places.reshape(-1)
    scratch = np.empty(PIECE if bfloat16_words else 0, dtype=np.uint32)
    wide = scratch.view(np.float32)
    where = np.empty(PIECE, dtype=np.int64)  # a piece's places: computed apart, the loop vectorizes
    core_lo, core_hi = max(0, half_span - CORE_LEVELS), min(span, half_span + CORE_LEVELS + 1)
    first, end = core_lo * SUB_BINS, core_hi * SUB_BINS
    core = U64(end - first)
    copies = np.empty(4 * (end - first), dtype=np.int32)  # place p's copies at 4 p .. 4 p + 3; a chunk's counts fit
    for c in range(c_lo, c_hi):
        copies[:] = 0
        for lo in range(c * chunk_size, min(x.size, (c + 1) * chunk_size), PIECE):
            hi = min(x.size, (c + 1) * chunk_size, lo + PIECE)
            if bfloat16_words:
                widen_bfloat16_into(x[lo:hi], scratch)
                for i in range(hi - lo):
                    where[i] = _place(np.float64(wide[i]) * inv_step, half_span)
            else:
                for i in range(hi - lo):
                    where[i] = _place(np.float64(x[lo + i]) * inv_step, half_span)
            for i in range(hi - lo):
                t = U64(where[i] - first)  # a place below the core wraps past it
                if t < core:
                    copies[(t << U64(2)) | (U64(i) & U64(3))] += 1
                else:
                    flat_places[where[i]] += 1
                    levels[c, where[i] // SUB_BINS] += 1
        for j in range(end - first):
            n = copies[4 * j] + copies[4 * j + 1] + copies[4 * j + 2] + copies[4 * j + 3]
            flat_places[first + j] += n
            levels[c, (first + j) // SUB_BINS] += n


@njit
def _count_moves(sample, indices, inv_step, half_span, counts):
    """counts[key, d + SHIFTS]: the sample's values of each place whose index the trellis put at m + d."""
    for i in range(sample.size):
        place = _place(np.float64(sample[i]) * inv_step, half_span)
        m = place // SUB_BINS - half_span
        d = min(SHIFTS, max(-SHIFTS, np.int64(indices[i]) - m))
        counts[_place_key(m, place % SUB_BINS), d + SHIFTS] += 1


def _moves(sample, step, top, half_span):
    """moves[key, d + SHIFTS]: the share of the sample's values of each place the trellis moved by d
    (`top`: max |x| of the tensor, at least the sample's)."""
    counts = np.zeros((PLACE_KEYS, 2 * SHIFTS + 1), dtype=np.int64)
    _count_moves(sample, quantize_dq(sample, step, top=top), 1.0 / step, half_span, counts)
    counts[counts.sum(axis=1) == 0, SHIFTS] = 1  # a place the sample never reached: no move
    return counts / counts.sum(axis=1, keepdims=True)


@njit
def _entropy_bits(counts):
    """sum over the counts of -c log2(c / n)."""
    n = counts.sum()
    bits = 0.0
    for c in counts:
        if c > 0:
            bits -= c * np.log2(c / n)
    return bits


@njit
def _entropy_gap(places, moves, levels, half_span):
    """Entropy (bits) of the trellis's indices as `places` and `moves` predict them, less that of
    plain rounding's levels (`levels`: their counts, pooled over the chunks)."""
    span = places.shape[0]
    indices = np.zeros(span + 2 * SHIFTS)
    for level in range(span):
        for sub in range(SUB_BINS):
            n = places[level, sub]
            if n:
                key = _place_key(level - half_span, sub)
                for d in range(2 * SHIFTS + 1):  # the level moved by d - SHIFTS
                    indices[level + d] += n * moves[key, d]
    return _entropy_bits(indices) - _entropy_bits(levels.astype(np.float64))


@njit
def _symbol_histogram(levels, half_span, hist, excess):
    """hist: the histogram of the se(v) symbols of the levels m counted in `levels` (index m +
    half_span) as rANS codes them, those from ESCAPE up as ESCAPE; excess: the counts of their
    excesses over ESCAPE (`rans_escape.excesses`)."""
    hist[:] = 0
    excess[:] = 0
    for i in range(levels.size):
        m = i - half_span
        u = 2 * m - 1 if m > 0 else -2 * m
        if u >= ESCAPE:
            hist[ESCAPE] += levels[i]
            excess[u - ESCAPE] = levels[i]
        else:
            hist[u] = levels[i]


def predicted_size_bits(x, step, top, bfloat16_words=False, chunk_size=DEFAULT_CHUNK_SIZE):
    """About `estimate_size_bits(quantize_dq_symbols(x, step, top=top, bfloat16_words=...))`, or
    None for a tensor too short for the sample, or whose levels spread over more than a quarter of
    a chunk's size (the caller then searches it whole). x: float32 values, or bfloat16
    words (uint16) with `bfloat16_words`; `top`: max |x|."""
    flat = np.ascontiguousarray(x).reshape(-1)
    sample = sample_runs(flat)
    half_span = int(math.floor(top / step * 0.5 + 0.5)) + 1 + SHIFTS  # every m + d within 0..2 half_span
    if sample is None or 2 * half_span + 1 > chunk_size // 4:
        return None  # (levels spread so wide that a chunk's counts of them take more memory than its symbols)
    if bfloat16_words:
        sample = (sample.astype(np.uint32) << 16).view(np.float32)
    moves = _moves(sample, step, top, half_span)
    nchunks = -(-flat.size // chunk_size)
    span = 2 * half_span + 1
    levels = np.zeros((nchunks, span), dtype=np.int64)

    def count(chunks):  # each range its own places, its chunks' rows of levels
        places = np.zeros((span, SUB_BINS), dtype=np.int64)
        _count_places(flat, bfloat16_words, 1.0 / step, half_span, chunk_size, *chunks, places, levels)
        return places

    ranges = split_range(nchunks, default_workers())
    places = count(ranges[0]) if len(ranges) == 1 else sum(parallel_map(count, ranges))
    # plain rounding's levels sized as `estimate_size_bits` sizes a stream, escapes and all: the
    # escapes' order is the best for the whole tensor's excesses
    hist = np.empty(MAX_ALPHABET, dtype=np.uint64)
    excess = np.empty(max(1, 2 * half_span + 1 - ESCAPE), dtype=np.uint64)
    pooled = levels.sum(axis=0)
    present = np.flatnonzero(pooled) - half_span
    escaped = max(2 * int(present[-1]) - 1, -2 * int(present[0])) >= MAX_ALPHABET  # se(v) of the extreme levels
    if escaped:
        _symbol_histogram(pooled, half_span, hist, excess)
        k = best_order(histogram=excess)
    per_chunk = 8 if escaped else 0  # (8: the escapes' order)
    for row in levels:
        _symbol_histogram(row, half_span, hist, excess)
        per_chunk += chunk_bits_of_histogram(hist, order_costs(histogram=excess, max_order=k)[k] if escaped else None)
    return per_chunk + _entropy_gap(places, moves, pooled, half_span)
