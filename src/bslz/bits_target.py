"""The `bits` lossy target: one dependent-quantization step for every quantized tensor (equal
distortion-rate slopes), the one that brings the whole file within BITS_TOLERANCE bits a quantized
parameter below the budget. Which tensors are quantized: `bslz.lossy`.

The search evaluates steps by secant steps on x = log(step) (`bslz.lossy._solve`). The first try
estimates the sizes; every later one writes the file, whose size is exact, and the file written at
the step the search ends on is the output: the tensors are quantized once for the estimate and once
for each file (two in every case measured).
"""

import math

import numpy as np

from bslz.codec.dq import quantize_dq_symbols
from bslz.codec.rate import symbols_rate_bits
from bslz.codec.size_estimate import estimate_size_bits
from bslz.codec.streams import CHUNK_TABLE_BITS, DEFAULT_CHUNK_SIZE, RANS_MIN_SYMBOLS
from bslz.errors import InvalidArgumentError
from bslz.formats.container import ALIGN
from bslz.lossy import (
    BITS_PER_LOG_STEP,
    _map_tensors,
    _SearchProgress,
    _solve,
    is_float,
    lossy_candidates,
    tensor_values,
)

BITS_TOLERANCE = 5e-4  # the file within this many bits a quantized parameter below the budget
# The first try: rounding costs about log2(rms / step) + 2 bits, and the trellis's step is about
# half as fine, so the step of b bits a parameter is about rms * 2**(GUESS_BITS_OFFSET - b). Measured
# on MiniLM f32 and bf16 at 4.936, 6.38 and 7.978 bits: the first try lands within 0.012 bits a
# parameter of the budget, on a synthetic 67 M-parameter bf16 file within 0.09
GUESS_BITS_OFFSET = 1.00


# How fast the file shrinks as x = log(step) grows, in BITS_PER_LOG_STEP a quantized parameter:
# less at low rates. Measured (the second try's change of size over the model's, MiniLM f32 and bf16
# and a synthetic 67 M-parameter bf16 file): 0.950-0.977 at 4.936 bits a parameter, 0.976-0.995 at
# 6.38, 1.004-1.012 at 7.978; a line through them, capped outside.
def slope_share(bits):
    return min(1.02, max(0.9, 1.0 + 0.012 * (bits - 7.2)))


# When the first try lands farther from the aim than this many tolerances, the slope is measured
# (`_sampled_slope`) rather than taken from the model, whose error of 1-2 % would then overshoot the
# tolerance: on the synthetic file at 4.936 bits, 133 kbit of 5.6 Mbit in a tolerance of 34 kbit
# for 1/ln 2 (a 1/16 sample: 5 kbit). MiniLM's first tries land 12-25 tolerances away, where the
# sample's own error (4 %: 1.4 M parameters) is the larger.
FAR_TOLERANCES = 33
SLOPE_SAMPLE_SHARE = 16  # the sample: the first 1/16 of each tensor
SLOPE_SAMPLE_MIN = 4096  # values, at least
# The estimate's share of a progress bar (the first file takes the rest; a second one, should the
# first miss the tolerance, leaves the bar where it stands)
SEARCH_PASSES = 1.0


def write_for_bits(source, options, lossless_bits, write, progress=None):
    """The result of `write(steps)` at the step, for every quantized tensor, that brings the whole
    file within BITS_TOLERANCE bits a quantized parameter below `options.bits` a float parameter.

    `write(steps) -> (file bits, result)` writes the file at those steps (over the last one written).
    `lossless_bits(quantized_names) -> bits`: the exact size of everything that is not quantized,
    header included, for the estimate. `progress(fraction, tensor_name)`: called as the estimate goes.
    """
    stats = lossy_candidates(source, options)
    tick = _SearchProgress(list(stats), SEARCH_PASSES, progress)
    candidates = list(stats)
    if not candidates:
        return write({})[1]
    float_params = sum(info.numel for info in source.tensors if is_float(info))
    budget = options.bits * float_params
    lossless = lossless_bits({info.name for info in candidates})
    # each quantized payload is padded to 64 bytes (32 on average), its orders to 8 (none under rANS):
    # the estimate aims at the file's size, the zero-step check at a bound on it
    fixed = lossless + 8 * 32 * len(candidates)
    if _below_all_zero(budget, lossless + 8 * (7 + 63) * len(candidates), candidates):
        raise InvalidArgumentError(
            f"{options.bits} bits per parameter is below what this file costs with every quantized value at zero"
        )
    quantized = sum(info.numel for info in candidates)
    # a file's size moves in steps of a payload's alignment (64 bytes): no narrower window is sure to
    # hold one (a small file's search then ran out its 60 tries, each a file written)
    accept = (-max(BITS_TOLERANCE * quantized, 8.0 * ALIGN), 0.0)
    aim = accept[0] / 2  # where _solve aims

    def estimate(log_step):  # bits over the budget, from size estimates
        def size(info):
            return estimate_size_bits(quantize_dq_symbols(tensor_values(source, info), math.exp(log_step)))

        return fixed + sum(_map_tensors(size, candidates, tick)) - budget

    rms = math.sqrt(sum(squares for _, squares in stats.values()) / quantized)
    max_abs = max(top for top, _ in stats.values())
    x = math.log(min(rms * 2.0 ** (GUESS_BITS_OFFSET - (budget - fixed) / quantized), 4.0 * max_abs))
    first = estimate(x)
    slope = quantized * BITS_PER_LOG_STEP * slope_share((budget - fixed) / quantized)
    if abs(first - aim) > FAR_TOLERANCES * -accept[0]:
        slope = _sampled_slope(source, candidates, x, x + (first - aim) / slope) or slope
    # an estimate never ends the search: one inside the tolerance is measured by writing the file
    estimated = {} if accept[0] <= first <= accept[1] else {x: first}
    written = {}  # log(step) -> write's result, for the step written last only

    def over_budget(log_step):  # bits over the budget: falls as the step grows
        if log_step in estimated:
            return estimated.pop(log_step)
        written.clear()
        bits, written[log_step] = write({info.name: math.exp(log_step) for info in candidates})
        return bits - budget

    log_step = _solve(over_budget, x, slope, accept)
    if log_step not in written:  # the search ended on a step it had left behind
        written.clear()
        written[log_step] = write({info.name: math.exp(log_step) for info in candidates})[1]
    return written[log_step]


def _sampled_slope(source, candidates, x0, x1):
    """Bits the file loses per unit of x = log(step) from x0 to x1, measured on a sample (the first
    1/SLOPE_SAMPLE_SHARE of each tensor, scaled up; a size estimate at each end), or None if it does
    not fall. Costs 2/SLOPE_SAMPLE_SHARE of an estimate over every tensor."""
    if x1 == x0:
        return None

    def fall(info):
        values = tensor_values(source, info, max(SLOPE_SAMPLE_MIN, -(-info.numel // SLOPE_SAMPLE_SHARE)))
        ends = [estimate_size_bits(quantize_dq_symbols(values, math.exp(x))) for x in (x0, x1)]
        return (ends[0] - ends[1]) * info.numel / max(1, values.size)

    slope = sum(_map_tensors(fall, candidates, lambda info: None)) / (x1 - x0)
    return slope if math.isfinite(slope) and slope > 0 else None


# a chunk of zeros as rANS: a one-byte header padded to a 64-bit word, and its chunk-table entry
ZERO_CHUNK_BITS = 64 + CHUNK_TABLE_BITS


def _below_all_zero(budget, fixed, candidates):
    """Whether `budget` is below the fewest bits a step can give: every index zero (what the trellis
    picks at steps of 4 max|w| and beyond, where level 0 is the nearest level of both quantizers).

    A stream of zeros costs at most ZERO_CHUNK_BITS a chunk (one-symbol rANS tables): the exact
    size, a pass over every tensor, is only computed when that bound does not settle it."""

    def zeros_bits(info):
        return symbols_rate_bits(np.zeros(info.numel, dtype=np.int32))

    def bound(info):
        return ZERO_CHUNK_BITS * -(-info.numel // DEFAULT_CHUNK_SIZE) if info.numel >= RANS_MIN_SYMBOLS else None

    bounds = [bound(info) for info in candidates]
    if None not in bounds and fixed + sum(bounds) <= budget:
        return False
    return fixed + sum(map(zeros_bits, candidates)) > budget
