"""Measures of float values and of their reconstruction: max |x| (NaN and infinity found), sum x^2,
sum |x| and sum (x - x_hat)^2 in float64, in one pass each; and the bfloat16 rounding of float32
values with its measure, for kernels that reconstruct bfloat16 words a piece at a time.

The reconstruction's sums are taken SUM_PIECE values at a time, each piece in SUM_LANES running
sums folded into one (`_piece_moments`), and the pieces' sums carried on in order from call to call:
a tensor measured in pieces of a multiple of SUM_PIECE values gives the sums of one pass over it.
"""

import math

import numpy as np

from bslz.codec._bits import bfloat16_bits
from bslz.codec._jit import njit
from bslz.codec._parallel import parallel_map, pieces_per_core
from bslz.errors import InvalidArgumentError

_FLOAT64_MAX = 1.7976931348623157e308  # |x| above it, or NaN: not finite


@njit
def _max_abs_and_signal_kernel(x, top, signal, finite):
    """The running (max |x|, sum x^2, all finite) carried on over x."""
    for i in range(x.size):
        a = np.float64(x[i])
        signal += a * a
        m = abs(a)
        finite &= m <= _FLOAT64_MAX  # False for NaN and inf
        top = max(top, m)
    return top, signal, finite


MAX_ABS_PIECE = 1 << 20  # values a thread takes at least


def max_abs(values):
    """max |x| of a float32 or float64 array (0.0 if empty), inf if one is NaN or infinite."""
    bits = np.ascontiguousarray(values).reshape(-1)
    if bits.dtype not in (np.float32, np.float64):  # float16, longdouble: exactly in float64
        bits = bits.astype(np.float64)
    word = np.uint64 if bits.dtype == np.float64 else np.uint32
    return magnitude_of_bits(_largest_magnitude_bits(bits.view(word), word(np.iinfo(word).max >> 1)), word)


def max_abs_of_bfloat16_words(words):
    """`max_abs` of the values of bfloat16 bit patterns (uint16), from the words themselves."""
    words = np.ascontiguousarray(words).reshape(-1)
    return magnitude_of_bits(_largest_magnitude_bits(words, np.uint16(0x7FFF)) << 16, np.uint32)


def _largest_magnitude_bits(bits, sign_cleared):
    """The largest of the bit patterns with their sign bit cleared, a piece per core."""
    pieces = pieces_per_core(bits.size, MAX_ABS_PIECE)
    return int(max(parallel_map(lambda b: _max_magnitude_bits(bits[b[0] : b[1]], sign_cleared), pieces), default=0))


_EXPONENT_ALL_ONES = {np.dtype(np.uint32): (0x7F800000, np.float32), np.dtype(np.uint64): (0x7FF << 52, np.float64)}


def magnitude_of_bits(bits, word_dtype):
    """The float of a sign-cleared bit pattern, inf for infinity's and NaN's."""
    infinity, real = _EXPONENT_ALL_ONES[np.dtype(word_dtype)]
    return math.inf if bits >= infinity else float(np.array(bits, dtype=word_dtype).view(real))


@njit
def _max_magnitude_bits(bits, sign_cleared):
    """The largest of the bit patterns with their sign bit cleared (a vectorized integer max)."""
    top = sign_cleared ^ sign_cleared  # 0, of the words' type
    for i in range(bits.size):
        top = max(top, bits[i] & sign_cleared)
    return top


def max_abs_and_signal(x, widen=None, piece=1 << 16):
    """(max |x|, sum x^2 in float64) in one pass; max |x| is inf if some x is NaN or infinite.

    With `widen` (a function of a slice of x giving its float values), x is taken `piece` values at
    a time through it: no widened copy of a whole tensor (bf16 words: 4 bytes a value each time)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    top, signal, finite = 0.0, 0.0, True
    if widen is None:
        top, signal, finite = _max_abs_and_signal_kernel(flat, top, signal, finite)
    else:  # the same sums in the same order
        for lo in range(0, flat.size, piece):
            top, signal, finite = _max_abs_and_signal_kernel(widen(flat[lo : lo + piece]), top, signal, finite)
    return (top if finite else math.inf), signal


# A search's first guess wants max |x| and sum x^2 of every tensor before it quantizes any: one
# running float64 sum waits for each add to finish before the next. These take four running sums,
# interleaved, each piece of a large tensor on its own core: the sums come out in another order
# (their last bits may differ), which a guess does not mind. Measures that are reported or compared
# keep the in-order sums above.
GUESS_PIECE = 4096  # bfloat16 values widened at a time, into an L1-sized scratch


@njit
def _four_squares(x, a0, a1, a2, a3):
    """Four interleaved running sums of x^2 (value i into sum i % 4), carried on over x: no max or
    finiteness test among them (a float max passes a NaN over, so it keeps the loop scalar), so
    that the four sums vectorize."""
    n4 = x.size - x.size % 4
    for i in range(0, n4, 4):
        x0, x1, x2, x3 = np.float64(x[i]), np.float64(x[i + 1]), np.float64(x[i + 2]), np.float64(x[i + 3])
        a0 += x0 * x0
        a1 += x1 * x1
        a2 += x2 * x2
        a3 += x3 * x3
    for i in range(n4, x.size):
        x0 = np.float64(x[i])
        a0 += x0 * x0
    return a0, a1, a2, a3


@njit
def _guess_sums(x, bits, sign_cleared, bfloat16_words):
    """(largest of the bit patterns `bits` of x with their sign cleared, sum x^2) of float values,
    or of bfloat16 words (x and bits the same words) widened a piece at a time."""
    top = _max_magnitude_bits(bits, sign_cleared)
    a0, a1, a2, a3 = 0.0, 0.0, 0.0, 0.0
    if not bfloat16_words:
        a0, a1, a2, a3 = _four_squares(x, a0, a1, a2, a3)
        return top, (a0 + a1) + (a2 + a3)
    scratch = np.empty(GUESS_PIECE, dtype=np.uint32)
    values = scratch.view(np.float32)
    for lo in range(0, x.size, GUESS_PIECE):
        piece = x[lo : lo + GUESS_PIECE]
        widen_bfloat16_into(piece, scratch)
        a0, a1, a2, a3 = _four_squares(values[: piece.size], a0, a1, a2, a3)
    return top, (a0 + a1) + (a2 + a3)


def max_abs_and_signal_for_a_guess(x, bfloat16_words=False):
    """(max |x|, sum x^2 in float64) of a float32 or float64 array, or of bfloat16 words (uint16)
    if `bfloat16_words`; max |x| is inf if some x is NaN or infinite. max |x| is exact (from the bit
    patterns, as `max_abs`), the sum is `max_abs_and_signal`'s in another order (see GUESS_PIECE)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    if bfloat16_words:
        bits, word, shift = flat, np.uint32, 16  # a bfloat16 pattern is the top half of float32's
    else:
        word, shift = (np.uint64 if flat.dtype == np.float64 else np.uint32), 0
        bits = flat.view(word)
    sign_cleared = bits.dtype.type(np.iinfo(bits.dtype).max >> 1)
    pieces = pieces_per_core(flat.size, MAX_ABS_PIECE, GUESS_PIECE)

    def sums(piece):
        lo, hi = piece
        return _guess_sums(flat[lo:hi], bits[lo:hi], sign_cleared, bfloat16_words)

    parts = parallel_map(sums, pieces)
    top = max((int(t) for t, _ in parts), default=0)
    return magnitude_of_bits(top << shift, word), sum(s for _, s in parts)


def signal_and_noise(x, x_hat, signal=0.0, noise=0.0):
    """(sum x^2, sum (x - x_hat)^2) in float64 over two arrays of the same size, in one pass; added
    onto running sums `signal` and `noise` if given (as `moments_and_noise_kernel` carries them)."""
    x, x_hat = _same_size_flat(x, x_hat)
    return moments_and_noise_kernel(x, x_hat, 0.0, float(signal), float(noise))[1:]


# One running float64 sum waits for each add to finish before the next (0.85 ns a value for the
# three sums, one thread): SUM_LANES of each, side by side, vectorize (0.36). Their order is fixed
# here, not by the machine's vectors, so the sums are the same on every machine.
SUM_LANES = 32
SUM_PIECE = 32 * SUM_LANES


@njit
def _piece_moments(x, y, lanes):
    """(sum |x|, sum x^2, sum (x - y)^2) of at most SUM_PIECE values: value i into lane i % SUM_LANES
    of each sum, then the lanes' upper half added onto their lower half until one is left.
    `lanes`: (3, SUM_LANES) float64 scratch."""
    lanes[:] = 0.0
    for lo in range(0, x.size, SUM_LANES):
        xs, ys = x[lo : lo + SUM_LANES], y[lo : lo + SUM_LANES]
        for j in range(xs.size):
            a = np.float64(xs[j])
            d = a - np.float64(ys[j])
            lanes[0, j] += abs(a)
            lanes[1, j] += a * a
            lanes[2, j] += d * d
    width = SUM_LANES // 2
    while width:
        for j in range(width):
            lanes[0, j] += lanes[0, j + width]
            lanes[1, j] += lanes[1, j + width]
            lanes[2, j] += lanes[2, j + width]
        width //= 2
    return lanes[0, 0], lanes[1, 0], lanes[2, 0]


@njit
def moments_and_noise_kernel(x, y, sum_abs, signal, noise):
    """The running (sum |x|, sum x^2, sum (x - y)^2) carried on over x and y, a SUM_PIECE piece of
    them at a time (a kernel: callable from other kernels)."""
    lanes = np.empty((3, SUM_LANES))
    for lo in range(0, x.size, SUM_PIECE):
        a, s, n = _piece_moments(x[lo : lo + SUM_PIECE], y[lo : lo + SUM_PIECE], lanes)
        sum_abs += a
        signal += s
        noise += n
    return sum_abs, signal, noise


# float32 values rounded to bfloat16 at a time, between a kernel's loops: an L1-sized scratch
BFLOAT16_PIECE = 4096


@njit
def round_to_bfloat16(scratch, out):
    """out[i] = scratch[i] (float32) rounded to bfloat16 (the bit patterns) as `from_float32` rounds it."""
    bits = scratch.view(np.uint32)
    for i in range(out.size):
        out[i] = bfloat16_bits(bits[i])


@njit
def bfloat16_moments_and_noise(x, words, scratch, sum_abs, signal, noise):
    """`moments_and_noise_kernel` of x and the bfloat16 `words` widened, carried on; through
    `scratch` (float32, at least as long, overwritten with the widened values)."""
    widen_bfloat16_into(words, scratch.view(np.uint32))
    return moments_and_noise_kernel(x, scratch[: words.size], sum_abs, signal, noise)


@njit
def widen_bfloat16_into(words, bits):
    """bits[i] = the float32 bit pattern of bfloat16 word i (bits at least as long as words)."""
    for i in range(words.size):
        bits[i] = np.uint32(words[i]) << np.uint32(16)


def moments_and_noise(x, x_hat):
    """(sum |x|, sum x^2, sum (x - x_hat)^2) in float64, in one pass: `signal_and_noise` with the
    first moment a GG fit needs besides (measured: no slower than the two sums alone)."""
    return moments_and_noise_kernel(*_same_size_flat(x, x_hat), 0.0, 0.0, 0.0)


def _same_size_flat(x, x_hat):
    x, x_hat = np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(x_hat).reshape(-1)
    if x.size != x_hat.size:
        raise InvalidArgumentError(f"arrays of {x.size} and {x_hat.size} elements")
    return x, x_hat
