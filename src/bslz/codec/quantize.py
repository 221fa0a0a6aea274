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
from bslz.codec._jit import njit
from bslz.codec._parallel import parallel_map, pieces_per_core
from bslz.codec.gg import gg_bin_centroids
from bslz.codec.measure import max_abs
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
    top = max_abs(flat)
    if not math.isfinite(top):
        raise InvalidArgumentError("tensor holds NaN or infinity")
    return top


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
    pieces = pieces_per_core(flat.size)
    parallel_map(lambda b: _quantize_kernel(flat[b[0] : b[1]], step, dead_zone, out[b[0] : b[1]]), pieces)
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
