"""Step selection for the uniform quantizer of `bslz.codec.quantize`: the largest step that reaches
an SNR target, or the smallest that meets a bits-per-parameter target, by a walk then bisection on
log(step). (Lossy container targets use dependent quantization and the search in `bslz.lossy`.)"""

import math

import numpy as np

from bslz.codec.gg import fit_generalized_gaussian
from bslz.codec.quantize import (
    DEFAULT_GG_LEVELS,
    MAX_SYMBOL,
    _as_float_flat,
    _max_abs_checked,
    _snr_db,
    _squared_error_kernel,
    check_dead_zone,
    check_reconstruction,
    exp_golomb_bits,
    quantize,
    reconstruction_table,
)
from bslz.errors import InvalidArgumentError

_SEARCH_MAX_STEPS = 200  # bisections: a bound that real searches (about 10-40) never reach


def _smallest_safe_step(max_abs, dead_zone):
    """Smallest step whose symbols still fit int32 (with a margin for float64 rounding)."""
    return max_abs / (MAX_SYMBOL - 2 - dead_zone)


def _all_zero_step(max_abs, dead_zone):
    """A step at which every symbol is 0: max|x| / step + dead_zone < 1, with a margin."""
    return 2.0 * max_abs / (1.0 - dead_zone)


def _bisect_log_step(passes, small_steps_pass, guess, step_min, step_max, rtol):
    """The step where `passes` flips, by walking out from `guess` then bisecting on log(step).

    small_steps_pass=True (SNR): returns the largest passing step found; False (rate): the smallest.
    The caller has checked that the far end it is sure of passes (step_min resp. step_max).
    """

    def small_side(step):
        return passes(step) == small_steps_pass

    a, b = step_min, step_max  # invariant once checked: small_side(a) and not small_side(b)
    step = min(max(guess, step_min), step_max)
    factor = 2.0
    if small_side(step):
        while True:  # walk up until a step falls on the large side
            a = step
            if step >= step_max:
                return step_max  # passes everywhere up to the all-zero step (SNR case)
            step = min(step * factor, step_max)
            if not small_side(step):
                b = step
                break
            factor *= 2.0
    else:
        while True:  # walk down until a step falls on the small side
            b = step
            if step <= step_min:
                return step_min  # passes everywhere down to the int32 limit (rate case)
            step = max(step / factor, step_min)
            if small_side(step):
                a = step
                break
            factor *= 2.0
    for _ in range(_SEARCH_MAX_STEPS):
        if b <= a * (1.0 + rtol):
            break
        mid = math.sqrt(a * b)
        if small_side(mid):
            a = mid
        else:
            b = mid
    return a if small_steps_pass else b


def step_for_snr(
    x, snr_db, dead_zone=0.5, reconstruction="midpoint", gg_params=None, levels=DEFAULT_GG_LEVELS, rtol=1e-3
):
    """Largest step (within a factor 1 + rtol) whose SNR = 10 log10(sum x^2 / sum (x - x_hat)^2) >= snr_db.

    For "gg" without gg_params the GG is fitted to x. An all-zero x is exact at any step: 1.0 is
    returned. Raises InvalidArgumentError if even the smallest int32-safe step misses the target.
    """
    if not math.isfinite(snr_db):
        raise InvalidArgumentError(f"snr_db must be finite, got {snr_db}")
    dead_zone = check_dead_zone(dead_zone)
    check_reconstruction(reconstruction)
    flat = _as_float_flat(x)
    if flat.size == 0:
        raise InvalidArgumentError("cannot choose a step for an empty tensor")
    max_abs = _max_abs_checked(flat)
    signal = float(np.dot(flat.astype(np.float64), flat.astype(np.float64)))
    if signal == 0.0:
        return 1.0
    if reconstruction == "gg" and gg_params is None:
        gg_params = fit_generalized_gaussian(flat)
    table_args = (reconstruction, gg_params, levels)

    def ok(step):
        table, beyond = reconstruction_table(step, dead_zone, *table_args)
        return _snr_db(signal, float(_squared_error_kernel(flat, step, dead_zone, table, beyond))) >= snr_db

    step_min = _smallest_safe_step(max_abs, dead_zone)
    if not ok(step_min):
        raise InvalidArgumentError(f"SNR {snr_db} dB is out of reach with int32 symbols")
    guess = math.sqrt(12.0 * signal / flat.size / 10.0 ** (snr_db / 10.0))  # D^2/12 noise model
    return _bisect_log_step(ok, True, guess, step_min, _all_zero_step(max_abs, dead_zone), rtol)


def step_for_bits(x, bits_per_param, rate_fn=None, dead_zone=0.5, rtol=1e-3):
    """Smallest step (within a factor 1 + rtol) whose rate_fn(symbols) / x.size <= bits_per_param.

    rate_fn(symbols) -> bits, given the 1-D signed symbols of quantize(x, step, dead_zone);
    default exp_golomb_bits. Raises InvalidArgumentError if the target is below the rate of
    all-zero symbols (1 bit a symbol for exp-Golomb).
    """
    if not (math.isfinite(bits_per_param) and bits_per_param > 0):
        raise InvalidArgumentError(f"bits_per_param must be finite and positive, got {bits_per_param}")
    dead_zone = check_dead_zone(dead_zone)
    rate_fn = exp_golomb_bits if rate_fn is None else rate_fn
    flat = _as_float_flat(x)
    if flat.size == 0:
        raise InvalidArgumentError("cannot choose a step for an empty tensor")
    max_abs = _max_abs_checked(flat)
    if max_abs == 0.0:
        if rate_fn(np.zeros(flat.size, dtype=np.int8)) / flat.size > bits_per_param:
            raise InvalidArgumentError(f"{bits_per_param} bits per parameter is below the all-zero rate")
        return 1.0

    def ok(step):
        return rate_fn(quantize(flat, step, dead_zone)) / flat.size <= bits_per_param

    step_max = _all_zero_step(max_abs, dead_zone)
    if not ok(step_max):
        raise InvalidArgumentError(f"{bits_per_param} bits per parameter is below the all-zero rate")
    rms = math.sqrt(float(np.dot(flat.astype(np.float64), flat.astype(np.float64))) / flat.size)
    guess = rms * 2.0 ** (2.05 - bits_per_param)  # entropy of a quantized Gaussian: log2(sigma/D) + 2.05
    return _bisect_log_step(ok, False, guess, _smallest_safe_step(max_abs, dead_zone), step_max, rtol)
