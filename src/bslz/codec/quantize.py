"""Uniform scalar quantizer with a dead zone (step selection: `bslz.codec.step_search`).

Symbols (x: real values, step D > 0, rounding offset theta = `dead_zone` in [0, 1)):

    q = sign(x) * floor(|x| / D + theta)        computed in float64

theta = 0.5 is plain rounding; a smaller theta widens the zero bin to |x| < D (1 - theta) and
shifts every other bin outward. Bin j >= 1 holds D (j - theta) <= |x| < D (j + 1 - theta).

Reconstruction of a symbol q (sign(q) times a magnitude; q = 0 always gives 0):

    "midpoint": the middle of the bin, D (|q| + 1/2 - theta); with theta = 0.5 this is q D and
                |x - x_hat| <= D / 2 everywhere.
    "lattice":  q D whatever theta (the classic dead-zone decoder: it sits theta D above the lower
                bin edge, which approximates the centroid of a peaked density for free).
    "gg":       the conditional mean of the fitted generalized Gaussian over the bin, from a
                per-tensor table for |q| <= levels, the midpoint beyond.
"""

import math
from dataclasses import dataclass

import numpy as np

from bslz.codec import expgolomb
from bslz.codec._bits import bfloat16_bits
from bslz.codec._jit import njit
from bslz.codec._parallel import default_workers, parallel_map, split_range
from bslz.codec.gg import gg_bin_centroids
from bslz.errors import InvalidArgumentError

RECONSTRUCTIONS = ("midpoint", "lattice", "gg")
DEFAULT_GG_LEVELS = 64  # GG centroids for |q| <= 64; beyond, the density is flat across a bin
MAX_SYMBOL = 2**31 - 1  # symbols are int32 at most
_SYMBOL_DTYPES = ((127, np.int8), (32767, np.int16), (MAX_SYMBOL, np.int32))
_HISTOGRAM_MAX_ABS = 1 << 20  # past this, rates are costed symbol by symbol


@dataclass(frozen=True)
class QuantizerParams:
    """What a decoder needs to turn symbols back into values (GG reconstruction also needs (nu, beta)).

    step: quantization step D (units of the tensor), finite and > 0.
    dead_zone: rounding offset theta in [0, 1); 0.5 is plain rounding, smaller widens the zero bin.
    reconstruction: one of RECONSTRUCTIONS.
    """

    step: float
    dead_zone: float = 0.5
    reconstruction: str = "midpoint"

    def __post_init__(self):
        check_step(self.step)
        check_dead_zone(self.dead_zone)
        check_reconstruction(self.reconstruction)


def check_step(step):
    if isinstance(step, bool) or not isinstance(step, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(f"step must be a real number, got {step!r}")
    if not (math.isfinite(step) and step > 0):
        raise InvalidArgumentError(f"step must be finite and positive, got {step}")
    return float(step)


def check_dead_zone(dead_zone):
    if isinstance(dead_zone, bool) or not isinstance(dead_zone, (int, float, np.integer, np.floating)):
        raise InvalidArgumentError(f"dead_zone must be a real number, got {dead_zone!r}")
    if not 0.0 <= dead_zone < 1.0:
        raise InvalidArgumentError(f"dead_zone (rounding offset) must lie in [0, 1), got {dead_zone}")
    return float(dead_zone)


def check_reconstruction(reconstruction):
    if reconstruction not in RECONSTRUCTIONS:
        raise InvalidArgumentError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}")
    return reconstruction


def _as_float_flat(x):
    """x as a contiguous 1-D float32/float64 array the kernels accept (float16 widens exactly)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise InvalidArgumentError(f"expected a real numeric array, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32 if arr.dtype.kind == "f" and arr.itemsize <= 4 else np.float64)
    return np.ascontiguousarray(arr).reshape(-1)


# ---- kernels ---------------------------------------------------------------------------------


@njit
def _max_abs_and_finite(x):
    """(max |x|, True if every value is finite) in one pass."""
    m = 0.0
    for i in range(x.size):
        a = abs(np.float64(x[i]))
        if not a <= 1.7976931348623157e308:  # NaN or inf
            return m, False
        if a > m:
            m = a
    return m, True


@njit
def _quantize_kernel(x, step, dead_zone, out):
    for i in range(x.size):
        v = np.float64(x[i])
        q = math.floor(abs(v) / step + dead_zone)
        out[i] = q if v >= 0.0 else -q


@njit
def _magnitude(q_abs, step, table, beyond_offset):
    """Reconstructed |x| of a symbol magnitude: table entry, else offset lattice point."""
    if q_abs < table.size:
        return table[q_abs]
    return (q_abs + beyond_offset) * step


@njit
def _dequantize_kernel(symbols, step, table, beyond_offset, out):
    for i in range(symbols.size):
        q = np.int64(symbols[i])
        m = _magnitude(abs(q), step, table, beyond_offset)
        out[i] = m if q >= 0 else -m


@njit
def _squared_error_kernel(x, step, dead_zone, table, beyond_offset):
    """Sum of (x - dequantize(quantize(x)))^2 in float64, without materialising either."""
    total = 0.0
    for i in range(x.size):
        a = abs(np.float64(x[i]))
        q_abs = np.int64(math.floor(a / step + dead_zone))
        d = a - _magnitude(q_abs, step, table, beyond_offset)
        total += d * d
    return total


@njit
def _zigzag_histogram(symbols, size):
    """Histogram of the se(v) images of signed symbols: v > 0 -> 2v - 1, v <= 0 -> -2v."""
    hist = np.zeros(size, dtype=np.uint64)
    for i in range(symbols.size):
        v = np.int64(symbols[i])
        hist[2 * v - 1 if v > 0 else -2 * v] += np.uint64(1)
    return hist


# ---- quantize / dequantize -------------------------------------------------------------------


def symbol_dtype(max_abs_symbol):
    """Smallest signed integer dtype holding symbols in [-max_abs_symbol, max_abs_symbol]."""
    for limit, dtype in _SYMBOL_DTYPES:
        if max_abs_symbol <= limit:
            return np.dtype(dtype)
    raise InvalidArgumentError(f"symbols up to {max_abs_symbol} overflow int32: the step is too small")


def _max_abs_checked(flat):
    max_abs, finite = _max_abs_and_finite(flat)
    if not finite:
        raise InvalidArgumentError("tensor holds NaN or infinity")
    return max_abs


def _max_symbol(max_abs, step, dead_zone):
    return math.floor(max_abs / step + dead_zone)


def quantize(x, step, dead_zone=0.5):
    """Signed symbols q = sign(x) floor(|x| / step + dead_zone), same shape as x.

    dtype: int8, int16 or int32, the smallest that holds max |q|. Raises InvalidArgumentError for
    a step that is not finite and positive, NaN / infinity in x, or symbols beyond int32.
    """
    step = check_step(step)
    dead_zone = check_dead_zone(dead_zone)
    shape = np.shape(x)
    flat = _as_float_flat(x)
    dtype = symbol_dtype(_max_symbol(_max_abs_checked(flat), step, dead_zone))
    out = np.empty(flat.size, dtype=dtype)
    _quantize_kernel(flat, step, dead_zone, out)
    return out.reshape(shape)


def reconstruction_table(step, dead_zone=0.5, reconstruction="midpoint", gg_params=None, levels=DEFAULT_GG_LEVELS):
    """(table, beyond_offset): |x_hat| of |q| is table[|q|] for |q| < len(table), else (|q| + beyond_offset) step.

    table is float64, table[0] = 0. For "gg", gg_params = (nu, beta) of the fitted GG and the table
    holds the bin centroids for |q| = 0..levels; a decoder that stores this table (or (nu, beta))
    reconstructs exactly as the encoder measured.
    """
    step = check_step(step)
    dead_zone = check_dead_zone(dead_zone)
    check_reconstruction(reconstruction)
    midpoint_offset = 0.5 - dead_zone
    if reconstruction == "lattice":
        return np.zeros(1), 0.0
    if reconstruction == "midpoint":
        return np.zeros(1), midpoint_offset
    if gg_params is None:
        raise InvalidArgumentError('reconstruction "gg" needs gg_params = (nu, beta)')
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or not 0 <= levels <= 1 << 20:
        raise InvalidArgumentError(f"levels must be an integer in 0..2**20, got {levels!r}")
    try:
        nu, beta = (float(v) for v in gg_params)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"gg_params must be (nu, beta), got {gg_params!r}") from None
    j = np.arange(1, int(levels) + 1, dtype=np.float64)
    centroids = gg_bin_centroids((j - dead_zone) * step, (j + 1.0 - dead_zone) * step, nu, beta)
    return np.concatenate(([0.0], centroids)), midpoint_offset


def dequantize(
    symbols, step, dead_zone=0.5, reconstruction="midpoint", gg_params=None, levels=DEFAULT_GG_LEVELS, dtype=np.float32
):
    """Values reconstructed from signed integer symbols (see the module docstring), same shape.

    gg_params = (nu, beta) is required for reconstruction="gg". dtype: output float dtype.
    """
    sym = np.asarray(symbols)
    if sym.dtype.kind not in "iu":
        raise InvalidArgumentError(f"symbols must be integers, got {sym.dtype}")
    out_dtype = np.dtype(dtype)
    if out_dtype.kind != "f":
        raise InvalidArgumentError(f"dtype must be a float dtype, got {out_dtype}")
    table, beyond_offset = reconstruction_table(step, dead_zone, reconstruction, gg_params, levels)
    return dequantize_with_table(sym, step, table, beyond_offset, out_dtype)


def dequantize_with_table(symbols, step, table, beyond_offset, dtype=np.float32):
    """Values of integer symbols given a `reconstruction_table` (table, beyond_offset), same shape.

    Only multiplications and additions, each correctly rounded: the same bits on every machine,
    which is why the container stores the table rather than the (nu, beta) it came from.
    """
    sym = np.asarray(symbols)
    out_dtype = np.dtype(dtype)
    compute_dtype = out_dtype if out_dtype in (np.float32, np.float64) else np.dtype(np.float32)
    flat = np.ascontiguousarray(sym).reshape(-1)
    out = np.empty(flat.size, dtype=compute_dtype)
    _dequantize_kernel(flat, check_step(step), np.ascontiguousarray(table, dtype=np.float64), float(beyond_offset), out)
    return out.astype(out_dtype, copy=False).reshape(sym.shape)


@njit
def _signal_and_noise_kernel(x, y, signal, noise):
    """The running (sum x^2, sum (x - y)^2) carried on over x and y."""
    for i in range(x.size):
        a = np.float64(x[i])
        d = a - np.float64(y[i])
        signal += a * a
        noise += d * d
    return signal, noise


@njit
def _max_abs_and_signal_kernel(x, top, signal, finite):
    """The running (max |x|, sum x^2, all finite) carried on over x."""
    for i in range(x.size):
        a = np.float64(x[i])
        signal += a * a
        m = abs(a)
        finite &= m <= 1.7976931348623157e308  # False for NaN and inf
        top = max(top, m)
    return top, signal, finite


MAX_ABS_PIECE = 1 << 20  # values a thread takes at least


def max_abs(values):
    """max |x| of a float32 or float64 array (0.0 if empty), inf if one is NaN or infinite."""
    bits = np.ascontiguousarray(values).reshape(-1)
    if bits.dtype not in (np.float32, np.float64):  # float16, longdouble: exactly in float64
        bits = bits.astype(np.float64)
    word = np.uint64 if bits.dtype == np.float64 else np.uint32
    bits, sign_cleared = bits.view(word), word(np.iinfo(word).max >> 1)
    pieces = split_range(bits.size, max(1, min(default_workers(), bits.size // MAX_ABS_PIECE)))
    tops = parallel_map(lambda b: _max_magnitude_bits(bits[b[0] : b[1]], sign_cleared), pieces)
    return magnitude_of_bits(int(max(tops, default=0)), word)


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


def signal_and_noise(x, x_hat, signal=0.0, noise=0.0):
    """(sum x^2, sum (x - x_hat)^2) in float64 over two arrays of the same size, in one pass; added
    onto running sums `signal` and `noise` if given (in the same order as over the arrays joined)."""
    x, x_hat = _same_size_flat(x, x_hat)
    return _signal_and_noise_kernel(x, x_hat, float(signal), float(noise))


@njit
def moments_and_noise_kernel(x, y, sum_abs, signal, noise):
    """The running (sum |x|, sum x^2, sum (x - y)^2) carried on over x and y (a kernel: callable
    from other kernels)."""
    for i in range(x.size):
        a = np.float64(x[i])
        d = a - np.float64(y[i])
        sum_abs += abs(a)
        signal += a * a
        noise += d * d
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
    bits = scratch.view(np.uint32)
    for i in range(words.size):
        bits[i] = np.uint32(words[i]) << np.uint32(16)
    return moments_and_noise_kernel(x, scratch[: words.size], sum_abs, signal, noise)


def moments_and_noise(x, x_hat):
    """(sum |x|, sum x^2, sum (x - x_hat)^2) in float64, in one pass: `signal_and_noise` with the
    first moment a GG fit needs besides (measured: no slower than the two sums alone)."""
    return moments_and_noise_kernel(*_same_size_flat(x, x_hat), 0.0, 0.0, 0.0)


def _same_size_flat(x, x_hat):
    x, x_hat = np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(x_hat).reshape(-1)
    if x.size != x_hat.size:
        raise InvalidArgumentError(f"arrays of {x.size} and {x_hat.size} elements")
    return x, x_hat


def squared_error(x, step, dead_zone=0.5, reconstruction="midpoint", gg_params=None, levels=DEFAULT_GG_LEVELS):
    """Sum of (x - x_hat)^2 over x (float64), as dequantize(quantize(x)) in float64 would give."""
    flat = _as_float_flat(x)
    max_abs = _max_abs_checked(flat)
    symbol_dtype(_max_symbol(max_abs, check_step(step), check_dead_zone(dead_zone)))
    table, beyond_offset = reconstruction_table(step, dead_zone, reconstruction, gg_params, levels)
    return float(_squared_error_kernel(flat, float(step), float(dead_zone), table, beyond_offset))


def _snr_db(signal, error):
    if error == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / error)


# ---- rate ------------------------------------------------------------------------------------


def exp_golomb_bits(symbols):
    """Exact bits of the signed symbols, zigzag-mapped (se(v)), under the best exp-Golomb order k.

    symbols: integer array of any shape. Equals
    code_length(signed_to_unsigned(s), best_order(signed_to_unsigned(s))) of bslz.codec.expgolomb,
    counted from a histogram so that no widened copy of the symbols is made.
    """
    flat = np.ascontiguousarray(np.asarray(symbols)).reshape(-1)
    if flat.dtype.kind not in "iu":
        raise InvalidArgumentError(f"symbols must be integers, got {flat.dtype}")
    if flat.size == 0:
        return 0
    max_abs = max(abs(int(flat.min())), abs(int(flat.max())))
    if max_abs > MAX_SYMBOL:
        raise InvalidArgumentError("symbols beyond int32 are not supported")
    if max_abs < _HISTOGRAM_MAX_ABS:
        costs = expgolomb.order_costs(histogram=_zigzag_histogram(flat, 2 * max_abs + 1))
    else:  # a histogram would be larger than the symbols
        costs = expgolomb.order_costs(expgolomb.signed_to_unsigned(flat))
    return int(costs.min())
