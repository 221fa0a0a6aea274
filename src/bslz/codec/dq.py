"""Dependent (trellis-coded) quantization: two interleaved scalar quantizers and an 8-state machine.

Q0 reconstructs index k at 2·k·Δ, Q1 at (2·k − sgn k)·Δ (0 for k = 0). The quantizer for each value
is the one of the current state (QUANTIZER[state]), and the next state is TRANSITIONS[state][k & 1];
the state starts at 0 and is reset every `block` values. Together the two quantizers cover the
lattice of step Δ while each index spends the bits of a lattice of step 2Δ; the encoder picks the
index sequence by a Viterbi search over the states that minimises the squared error. This is the
"dependent quantization" of VVC and NNCodec (there with 4 states). On MiniLM's weights, at equal
index entropy, it buys 0.83-0.95 dB over uniform rounding with VVC's 4-state machine and
0.93-1.04 dB with the 8-state machine of `_dq_machine`, found by a local search from two
interleaved copies of the 4-state one (benchmarks/dq_study.py). The search is `_dq_search`; this
module holds the public calls and the decoder.

Each value is reconstructed at one of the two levels of its quantizer around x / Δ as the search
computes it (levels are at most 2Δ apart; x / Δ is within 2**-11 of exact in the float32 search),
so |x − x̂| < (2 + 2**-11)Δ. Reconstruction is an integer times Δ in float64: correctly
rounded, the same bits everywhere.
"""

import math

import numpy as np

from bslz.codec._dq_machine import NUM_STATES, QUANTIZER, TRANSITIONS
from bslz.codec._dq_search import quantize_blocks_bfloat16_words, quantize_blocks_float32, quantize_blocks_float64
from bslz.codec._jit import gather_byte_bits, njit, njit_inline
from bslz.codec._parallel import default_workers, parallel_map, split_range
from bslz.codec.expgolomb import signed_to_unsigned
from bslz.codec.measure import (
    BFLOAT16_PIECE,
    bfloat16_moments_and_noise,
    max_abs,
    max_abs_of_bfloat16_words,
    round_to_bfloat16,
    signal_and_noise,
    widen_bfloat16_into,
)
from bslz.errors import InvalidArgumentError, StepTooFineError

DEFAULT_BLOCK = 1 << 16
U64 = np.uint64
MAX_INDEX = 2**30  # |k|: its se(v) mapping then fits uint32 with room
# The search computes in float32 (`_dq_search._make_search`) when every |v| / step is below this:
# c = v / step then carries an error below 2**-11 steps (a few float32 ulps of 2**12)
F32_SEARCH_LIMIT = 2.0**12
_F32_NORMAL = (float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max))


def _eight_step_tables():
    """(NEXT8, QUANTIZERS8), each (NUM_STATES, 256): from a state and the parities of the next eight
    indices (bit j: index j), the state after them (uint8) and the quantizer of each of the eight,
    one a byte (uint64, little-endian: index j at byte j). The decoder's state chain then takes one
    lookup per eight values instead of eight."""
    state = np.repeat(np.arange(NUM_STATES), 256).reshape(NUM_STATES, 256)  # every (start, parities)
    parities = np.tile(np.arange(256), (NUM_STATES, 1))
    quantizers8 = np.zeros((NUM_STATES, 256), dtype=np.uint64)
    for j in range(8):  # all 2048 chains a step at a time (no Python loop over them at import)
        quantizers8 |= QUANTIZER[state].astype(np.uint64) << np.uint64(8 * j)
        state = TRANSITIONS[state, (parities >> j) & 1]
    return state.astype(np.uint8), quantizers8


NEXT8, QUANTIZERS8 = _eight_step_tables()
# NEXT8[:, byte] packed in a word: byte s holds 8 x NEXT8[s, byte], so that (word >> 8s) & 0x38 is
# 8 x the next state (every parity permutes the states, so does every byte of them)
NEXT8_SHIFTS = (
    NEXT8.astype(np.uint64) * np.uint64(8) << (np.uint64(8) * np.arange(NUM_STATES, dtype=np.uint64))[:, None]
).sum(axis=0, dtype=np.uint64)


@njit
def _block_scratch(block):
    """(parity, quantizer): a byte for each index of a block, whole 8-byte words of them (the state
    chain reads and writes them eight at a time)."""
    words = (block + 7) // 8
    return np.zeros(8 * words, dtype=np.uint8), np.zeros(8 * words, dtype=np.uint8)


@njit
def _block_quantizers(ub, parity, quantizer):
    """quantizer[i]: the quantizer each index of one block (se(v) symbols ub) was coded with, the
    state starting at 0 (parity[i]: scratch for k & 1); returns the largest symbol.

    The state chain is the slow part (each state waits for the last): it runs on the parities
    alone, eight at a time, and the eight steps are a permutation of the states (each parity
    permutes them), packed in one word loaded off the chain, so that the chain itself is a shift
    and a mask (a table lookup on the chain: 0.28 -> 0.13 ns a value). The loops around it have no
    chain and vectorize (a byte per value in and out of the chain: bit fields did not vectorize)."""
    largest = U64(0)  # max symbol: a max reduction vectorizes, an `ok &=` flag did not
    parity8, quantizer8 = parity.view(np.uint64), quantizer.view(np.uint64)  # eight a word
    n = ub.size
    for i in range(n):  # |index| = (u + 1) >> 1 grows with u, and its parity is the index's
        largest = max(largest, U64(ub[i]))
        parity[i] = ((U64(ub[i]) + U64(1)) >> U64(1)) & U64(1)
    s8 = U64(0)  # 8 x the state
    for g in range(n // 8):
        byte = gather_byte_bits(parity8[g])  # the eight parities, index j at bit j
        quantizer8[g] = QUANTIZERS8[s8 >> U64(3), byte]
        s8 = (NEXT8_SHIFTS[byte] >> s8) & U64(0x38)  # the chain: a shift and a mask, no load
    s = np.int64(s8 >> U64(3))
    for i in range(8 * (n // 8), n):  # the block's last values, one at a time
        quantizer[i] = QUANTIZER[s]
        s = TRANSITIONS[s, parity[i]]
    return largest


@njit
def _dequantize_blocks(u, step, block, max_index, out, b_lo, b_hi):
    """Values of the indices whose se(v) mappings are u, in blocks b_lo..b_hi, the state restarting
    at 0 in each block; False if an index passes max_index."""
    largest = U64(0)
    parity, quantizer = _block_scratch(block)
    for b in range(b_lo, b_hi):
        # slices indexed from 0: an index known >= 0 lets the loops vectorize
        ub, ob = u[b * block : (b + 1) * block], out[b * block : (b + 1) * block]
        largest = max(largest, _block_quantizers(ub, parity, quantizer))
        for i in range(ub.size):
            ob[i] = np.float64(_level(np.int64(ub[i]), np.int64(quantizer[i]))) * step
    return (largest + U64(1)) >> U64(1) <= U64(max_index)


@njit
def _dequantize_blocks_to_bfloat16(u, step, block, max_index, out, b_lo, b_hi, values, sums):
    """`_dequantize_blocks` rounded to float32 and then to bfloat16 (the bit patterns, uint16) as
    `from_float32` rounds, a piece at a time through a small scratch: no float32 array of the
    whole range written and read back (0.47 -> 0.3 ns a value).

    With `values` (the float values the symbols were found for, one a symbol; empty: none),
    sums[:3] += (sum |x|, sum x^2, sum (x - x_hat)^2) over the blocks, x_hat the bfloat16 values
    decoded, summed in order from 0: `moments_and_noise` of the values and the reconstruction
    widened, in the pass that makes the reconstruction (a pass of its own read 20 bytes a value
    and wrote 4 more)."""
    largest = U64(0)
    parity, quantizer = _block_scratch(block)
    scratch = np.empty(BFLOAT16_PIECE, dtype=np.float32)
    sum_abs = signal = noise = 0.0
    for b in range(b_lo, b_hi):
        ub, ob = u[b * block : (b + 1) * block], out[b * block : (b + 1) * block]
        largest = max(largest, _block_quantizers(ub, parity, quantizer))
        for lo in range(0, ub.size, BFLOAT16_PIECE):
            up, qp, op = ub[lo : lo + BFLOAT16_PIECE], quantizer[lo : lo + BFLOAT16_PIECE], ob[lo : lo + BFLOAT16_PIECE]
            for i in range(up.size):
                scratch[i] = np.float64(_level(np.int64(up[i]), np.int64(qp[i]))) * step
            round_to_bfloat16(scratch, op)
            if values.size:
                vp = values[b * block + lo : b * block + lo + up.size]
                sum_abs, signal, noise = bfloat16_moments_and_noise(vp, op, scratch, sum_abs, signal, noise)
    if values.size:  # callers measuring nothing share one `sums` between threads: left untouched
        sums[0] += sum_abs
        sums[1] += signal
        sums[2] += noise
    return (largest + U64(1)) >> U64(1) <= U64(max_index)


@njit_inline
def _level(u, quantizer):
    """2k - quantizer * sgn k (see `reconstruct_index`) of the index k whose se(v) mapping is u,
    straight from u: k = (u + 1) / 2 for u odd, -u / 2 for u even (2x faster than through k)."""
    return (u + 1 - quantizer) if u & 1 else (quantizer * (u > 0) - u)


def step_fits(top, step):
    """Whether the indices of values up to `top` at `step` stay within MAX_INDEX (quantizing
    raises where they would not)."""
    return top / (2.0 * step) + 2 <= MAX_INDEX


def _check(x, step, block, top=None, bfloat16_words=False):
    if (
        isinstance(step, bool)
        or not isinstance(step, (int, float, np.floating))
        or not (math.isfinite(step) and step > 0)
    ):
        raise InvalidArgumentError(f"step must be a finite positive number, got {step!r}")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or not 1 <= block <= 1 << 24:
        raise InvalidArgumentError(f"block must be an integer in 1..2**24, got {block!r}")
    flat = np.ascontiguousarray(x).reshape(-1)
    if bfloat16_words and flat.dtype != np.uint16:
        raise InvalidArgumentError(f"bfloat16 words are uint16, got {flat.dtype}")
    if not bfloat16_words and flat.dtype.kind != "f":
        raise InvalidArgumentError(f"dependent quantization needs floats, got {flat.dtype}")
    if top is None:
        top = max_abs_of_bfloat16_words(flat) if bfloat16_words else max_abs(flat)
    top = float(top)
    if not math.isfinite(top):
        raise InvalidArgumentError("tensor holds NaN or infinity")
    if not step_fits(top, step):
        raise StepTooFineError(f"step {step} is too small for values up to {top}: indices would pass 2**30")
    return flat, float(step), int(block), top


def quantize_dq(x, step, block=DEFAULT_BLOCK, top=None):
    """Trellis-quantized indices of x (int32, same shape) for lattice step `step`.

    `top`: max |x| (inf if x holds NaN or infinity), if the caller knows it: not looked for again."""
    return _trellis(x, step, block, False, top).reshape(np.shape(x))


def quantize_dq_symbols(x, step, block=DEFAULT_BLOCK, top=None, bfloat16_words=False):
    """The se(v) symbols (uint32, flat) of `quantize_dq(x, step, block, top)`: what a stream codes,
    written by the search as it finds the indices (a separate pass over the tensor took 0.5 ns a
    value, on one thread). With `bfloat16_words`, x holds the bfloat16 bit patterns (uint16) of
    the values, read as they are: the same symbols as of their float32 values, without a float32
    copy of them."""
    return _trellis(x, step, block, True, top, bfloat16_words=bfloat16_words).view(np.uint32)


def quantize_dq_symbols_to_bfloat16(x, step, block=DEFAULT_BLOCK, top=None, bfloat16_words=False):
    """(symbols, words, sum |x|, sum x^2, sum (x - x_hat)^2): `quantize_dq_symbols(x, step, block)`,
    the bfloat16 words the decoder makes of them (`dequantize_dq_symbols_to_bfloat16`) and the
    sums over x and x_hat, those words widened, in the search's last pass (a pass of its own took
    3.5 ns a value, one thread). Each block's sums are taken in order, and added up in block order:
    the same sums on any number of threads. `bfloat16_words`: as `quantize_dq_symbols`'."""
    indices, decoded, block_sums = _trellis(x, step, block, True, top, measured=True, bfloat16_words=bfloat16_words)
    sum_abs, signal, noise = (float(v) for v in block_sums.sum(axis=0))
    return indices.view(np.uint32), decoded, sum_abs, signal, noise


def _trellis(x, step, block, as_symbols, top, measured=False, bfloat16_words=False):
    """The flat int32 indices of x, their se(v) symbols in their place if `as_symbols`; if
    `measured`, (indices, decoded words, block sums) (`quantize_dq_symbols_to_bfloat16`);
    `bfloat16_words`: see `quantize_dq_symbols`."""
    flat, step, block, top = _check(x, step, block, top, bfloat16_words)
    indices = np.empty(flat.size, dtype=np.int32)  # |index| <= MAX_INDEX: se(v) < 2**31 fits uint32
    decoded = np.empty(flat.size if measured else 0, dtype=np.uint16)
    block_sums = np.zeros((max(1, -(-flat.size // block)) if measured else 1, 3))
    if bfloat16_words and _float32_search_allowed(step, top):
        search = quantize_blocks_bfloat16_words
    else:
        if bfloat16_words:  # the float64 search: of the values widened (their float32 values, exactly)
            wide = np.empty(flat.size, dtype=np.uint32)
            widen_bfloat16_into(flat, wide)
            flat = wide.view(np.float32)
        search = quantize_blocks_float32 if _float32_search(flat, step, top) else quantize_blocks_float64

    def run(blocks):
        search(flat, step, block, indices, *blocks, as_symbols, decoded, block_sums)

    parallel_map(run, split_range(-(-flat.size // block), default_workers()))
    return (indices, decoded, block_sums) if measured else indices


def _float32_search(flat, step, top):
    """Whether the search may compute in float32: float32 values, all within F32_SEARCH_LIMIT
    steps, and 1 / step a normal float32."""
    return flat.dtype == np.float32 and _float32_search_allowed(step, top)


def _float32_search_allowed(step, top):
    return top < F32_SEARCH_LIMIT * step and _F32_NORMAL[0] <= 1.0 / step <= _F32_NORMAL[1]


def _block_ranges(size, block):
    return split_range(-(-size // block), 4 * default_workers())


def dequantize_dq(indices, step, block=DEFAULT_BLOCK, dtype=np.float32):
    """Values of trellis-quantized indices (float64 arithmetic, rounded once to `dtype`)."""
    k = np.ascontiguousarray(indices).reshape(-1)
    if k.dtype.kind not in "iu":
        raise InvalidArgumentError(f"indices must be integers, got {k.dtype}")
    if k.size and (int(k.min()) < -MAX_INDEX or int(k.max()) > MAX_INDEX):
        raise InvalidArgumentError(f"indices must be within ±{MAX_INDEX}")
    out = np.empty(k.size, dtype=dtype)
    step, block = float(step), int(block)

    def run(blocks):  # se(v)-mapped a piece at a time: no whole-tensor temporary
        lo, hi = blocks[0] * block, min(k.size, blocks[1] * block)
        symbols = signed_to_unsigned(k[lo:hi].astype(np.int32, copy=False), narrow=True)
        _dequantize_blocks(symbols, step, block, MAX_INDEX, out[lo:hi], 0, blocks[1] - blocks[0])

    parallel_map(run, _block_ranges(k.size, block))
    return out.reshape(np.shape(indices))


def squared_error_dq(values, symbols, step, block=DEFAULT_BLOCK, piece_blocks=16):
    """sum (values - dequantize_dq_symbols(symbols, step))^2 in float64, summed in the same order as
    over the whole arrays, but reconstructed `piece_blocks` blocks at a time: no tensor-sized array."""
    x, u = np.ascontiguousarray(values).reshape(-1), np.ascontiguousarray(symbols).reshape(-1)
    signal, noise, piece = 0.0, 0.0, block * piece_blocks
    for lo in range(0, u.size, piece):
        y = dequantize_dq_symbols(u[lo : lo + piece], step, block)
        signal, noise = signal_and_noise(x[lo : lo + piece], y, signal, noise)
    return noise


def dequantize_dq_symbols(symbols, step, block=DEFAULT_BLOCK, dtype=np.float32, out=None):
    """`dequantize_dq` of the indices whose se(v) mappings are `symbols` (unsigned), in one pass,
    into `out` if given (contiguous, `dtype`, one a symbol); None if an index passes MAX_INDEX (the
    caller reports the corrupt stream)."""
    u = _check_symbols(symbols)
    out = _check_out(out, u.size, dtype)
    return _dequantize_in_parallel(_dequantize_blocks, u, step, block, out)


def dequantize_dq_symbols_to_bfloat16(symbols, step, block=DEFAULT_BLOCK, out=None):
    """The bfloat16 bit patterns (uint16) of `dequantize_dq_symbols(symbols, step, block)` rounded to
    bfloat16 (nearest even, from the float32 values: the very bits `from_float32` gives), in one
    pass, into `out` if given; None if an index passes MAX_INDEX."""
    u = _check_symbols(symbols)
    out = _check_out(out, u.size, np.uint16)
    no_values, sums = np.zeros(0, np.float32), np.zeros(3)  # nothing measured: the sums are not written

    def kernel(u, step, block, max_index, out, b_lo, b_hi):
        return _dequantize_blocks_to_bfloat16(u, step, block, max_index, out, b_lo, b_hi, no_values, sums)

    return _dequantize_in_parallel(kernel, u, step, block, out)


def measured_dequantize_dq_symbols_to_bfloat16(symbols, step, values, block=DEFAULT_BLOCK, out=None):
    """(`dequantize_dq_symbols_to_bfloat16(symbols, step, block, out)`, sum |x|, sum x^2,
    sum (x - x_hat)^2) over `values` (float32, one a symbol) and x_hat the decoded bfloat16 values,
    in one pass on this thread (callers run pieces of a tensor side by side); (None, ...) if an
    index passes MAX_INDEX."""
    u = _check_symbols(symbols)
    out = _check_out(out, u.size, np.uint16)
    x = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if x.size != u.size:
        raise InvalidArgumentError(f"{x.size} values for {u.size} symbols")
    sums = np.zeros(3)
    ok = _dequantize_blocks_to_bfloat16(u, float(step), int(block), MAX_INDEX, out, 0, -(-u.size // block), x, sums)
    return (out if ok else None), float(sums[0]), float(sums[1]), float(sums[2])


def _check_symbols(symbols):
    u = np.ascontiguousarray(symbols).reshape(-1)
    if u.dtype.kind != "u" or u.dtype.itemsize > 4:
        raise InvalidArgumentError(f"symbols must be unsigned integers of at most 32 bits, got {u.dtype}")
    return u


def _check_out(out, size, dtype):
    if out is None:
        return np.empty(size, dtype=dtype)
    if out.dtype != np.dtype(dtype) or out.shape != (size,) or not out.flags.c_contiguous:
        raise InvalidArgumentError(f"out must be a contiguous {np.dtype(dtype)} array of {size} values")
    return out


def _dequantize_in_parallel(kernel, u, step, block, out):
    step, block = float(step), int(block)
    oks = parallel_map(lambda b: kernel(u, step, block, MAX_INDEX, out, *b), _block_ranges(u.size, block))
    return out if all(oks) else None
