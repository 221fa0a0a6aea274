"""The `bits` lossy target: one dependent-quantization step for every quantized tensor (equal
distortion-rate slopes), the one that brings the whole file within BITS_TOLERANCE bits a quantized
parameter below the budget. Which tensors are quantized: `bslz.lossy`.

The search evaluates steps by secant steps on x = log(step) (`bslz.lossy._solve`). The first try
predicts the sizes (`bslz.codec.dq_predict`: the trellis searches 1/16 of each tensor); the second
writes the file at the step the prediction and the model slope point to, whose size is exact. A file
that misses the tolerance is brought into it by the step of its last tensors alone (`_tail`), which
are all that the later tries code again: those tensors' step then differs from the others' by
TAIL_MAX_LOG_STEP at most, at a cost in SNR far below the tolerance's (beyond it, every tensor's step
is searched again). The file written at the step the search ends on is the output.

A tensor is stored lossless where that is no larger than quantized (`bslz.lossy.lossless_may_be_smaller`)
or where the step is too fine for its values' indices, in the estimate as in the files; a budget the
lossless file meets gives the lossless file.
"""

import math

import numpy as np

from bslz.codec.dq import quantize_dq_symbols, step_fits
from bslz.codec.dq_predict import predicted_size_bits, sample_runs
from bslz.codec.expgolomb import best_order, code_length
from bslz.codec.rans import histogram, rans_table
from bslz.codec.rans_escape import clipped, excesses
from bslz.codec.rate import symbols_rate_bits
from bslz.codec.size_estimate import estimate_size_bits
from bslz.codec.stream_plan import CHUNK_TABLE_BITS
from bslz.codec.streams import DEFAULT_CHUNK_SIZE, RANS_MIN_SYMBOLS
from bslz.errors import InvalidArgumentError
from bslz.formats.container import ALIGN
from bslz.formats.dtypes import lookup, to_float32
from bslz.formats.tensor_codec import encode_lossless
from bslz.lossy import (
    BITS_PER_LOG_STEP,
    _map_tensors,
    _SearchProgress,
    _solve,
    is_float,
    lossless_may_be_smaller,
    lossy_candidates,
    searched_values,
)

BITS_TOLERANCE = 5e-4  # the file within this many bits a quantized parameter below the budget
# The first try: rounding costs about log2(rms / step) + 2 bits, and the trellis's step is about
# half as fine, so the step of b bits a parameter is about rms * 2**(GUESS_BITS_OFFSET - b). Measured
# at 4.936, 6.38 and 7.978 bits: the first try lands 0.007-0.029 bits a parameter below the budget on
# MiniLM f32 and bf16, 0.06-0.09 below and 0.07-0.08 above on two synthetic 67 M-parameter files
# (benchmarks/measure_memory.py's at 0.25 GiB, f32; four Gaussian-like bf16 matrices)
GUESS_BITS_OFFSET = 1.00


# How fast the file shrinks as x = log(step) grows, in BITS_PER_LOG_STEP a quantized parameter:
# less at low rates. Measured (the second try's change of size over the first's, over the model's,
# on those twelve cases): 0.956-0.977 at 4.936 bits a parameter, 0.988-0.996 at 6.38, 1.004-1.009
# at 7.978; a line through them, capped outside.
def slope_share(bits):
    return min(1.02, max(0.9, 1.0 + 0.012 * (bits - 7.2)))


# When the first try lands farther from the aim than this many tolerances (MiniLM's: 13-57; a
# synthetic 67 M-parameter file's: 120-176), the slope is measured on a sample (`_sampled_slope`)
# rather than taken from the model: the model's error grows with the distance (1-2 % of it), the
# sample's does not (MiniLM: within 0.9 % and 2.7 %, the synthetic files: 0.1 %), measured on the
# same twelve cases as `slope_share`.
FAR_TOLERANCES = 100
# The estimate's share of a progress bar, in passes over the tensors (the first file takes the rest;
# tensors written again leave the bar where it stands): a prediction costs about a fifth of a pass
SEARCH_PASSES = 0.2
# A file that misses the tolerance is brought in by the step of its last tensors alone (`_tail`): at
# least this share of the quantized parameters, enough to do it at a step half TAIL_MAX_LOG_STEP (in
# log(step)) from the others' by the model slope; should it take more than TAIL_MAX_LOG_STEP, every
# tensor's step is searched again. Moving a share s of the parameters by d adds about 2 s d^2 to the
# noise against moving all of them by s d (equal slopes, the same size): 1/32 at 3 % adds 6e-5,
# 0.0003 dB
TAIL_MIN_SHARE = 1 / 32
TAIL_MAX_LOG_STEP = 0.03


def write_for_bits(source, options, lossless_bits, write, progress=None):
    """The result of `write(steps)` at the step, for every quantized tensor, that brings the whole
    file within BITS_TOLERANCE bits a quantized parameter below `options.bits` a float parameter.

    `write(steps, tops) -> (file bits, result)` writes the file at those steps (over the last one
    written); `tops`: {name: max |value|} of the candidates, known from their first pass.
    `lossless_bits(quantized_names) -> bits`: the exact size of everything that is not quantized,
    header included, for the estimate. `progress(fraction, tensor_name)`: called as the estimate goes.
    """
    stats = lossy_candidates(source, options)
    tops = {info.name: top for info, (top, _) in stats.items()}
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
    lossless_sizes = {}  # info: payload bits of its lossless coding, once known
    if any(lossless_may_be_smaller(info.dtype, options.bits, 1) for info in candidates):
        # the lossless file, if within the budget, is the file of least error: written to know
        # its size, only at budgets where some candidate may be smaller lossless than quantized
        bits, report = write({})
        if bits <= budget:
            return report
        # the estimate takes the candidates' lossless sizes from that file rather than coding them again
        payload_bytes = {t.name: t.compressed_bytes for t in report.tensors}
        lossless_sizes = {info: 8 * payload_bytes[info.name] for info in candidates}
    quantized = sum(info.numel for info in candidates)
    # a file's size moves in steps of a payload's alignment (64 bytes): no narrower window is sure to
    # hold one (a small file's search then ran out its 60 tries, each a file written)
    accept = (-max(BITS_TOLERANCE * quantized, 8.0 * ALIGN), 0.0)
    aim = accept[0] / 2  # where _solve aims

    def lossless_size(info):
        if info not in lossless_sizes:
            lossless_sizes[info] = 8 * len(encode_lossless(source.tensor_bytes(info), info.dtype, info.shape)[1])
        return lossless_sizes[info]

    def steps_at(log_step):  # a step too fine for a tensor's values leaves it lossless
        step = math.exp(log_step)
        return {info.name: step for info in candidates if step_fits(stats[info][0], step)}

    def estimate(log_step):  # bits over the budget, from size predictions
        step = math.exp(log_step)

        def size(info):  # (max |w| known from the candidates' pass)
            if not step_fits(stats[info][0], step):
                return lossless_size(info)
            x, bfloat16_words = searched_values(source, info)
            bits = predicted_size_bits(x, step, stats[info][0], bfloat16_words)
            if bits is None:  # a tensor too short for a sample: searched whole
                bits = estimate_size_bits(
                    quantize_dq_symbols(x, step, top=stats[info][0], bfloat16_words=bfloat16_words)
                )
            # the file stores the tensor lossless where that is smaller
            return min(bits, lossless_size(info)) if lossless_may_be_smaller(info.dtype, bits, info.numel) else bits

        return fixed + sum(_map_tensors(size, candidates, tick)) - budget

    rms = math.sqrt(sum(squares for _, squares in stats.values()) / quantized)
    max_abs = max(top for top, _ in stats.values())
    x = math.log(min(rms * 2.0 ** (GUESS_BITS_OFFSET - (budget - fixed) / quantized), 4.0 * max_abs))
    first = estimate(x)
    slope = quantized * BITS_PER_LOG_STEP * slope_share((budget - fixed) / quantized)
    if abs(first - aim) > FAR_TOLERANCES * -accept[0]:
        x1 = x + (first - aim) / slope
        sampled = [info for info in candidates if all(step_fits(stats[info][0], math.exp(e)) for e in (x, x1))]
        slope = _sampled_slope(source, sampled, x, x1) or slope
    # an estimate never ends the search: one inside the tolerance is measured by writing the file
    x1 = x if accept[0] <= first <= accept[1] else x + (first - aim) / slope
    steps1 = steps_at(x1)
    bits1, report1 = write(steps1, tops)
    if accept[0] <= bits1 - budget <= accept[1]:
        return report1
    # the file missed: the last tensors' step brings it in, those tensors coded again alone (`write`
    # keeps the ones before), unless that would take more than half the tensors, or a step more than
    # TAIL_MAX_LOG_STEP from the others': then every tensor's step, as the file is written whole
    quantized_first = {t.name for t in report1.tensors if t.coding == "quantized"}  # (not those stored lossless)
    in_order = sorted(candidates, key=lambda info: info.begin)
    tail = _tail(in_order, quantized_first, bits1 - budget - aim, slope / quantized)
    on_disk = {"key": (None, x1), "over": bits1 - budget, "report": report1}  # the file written last

    def over_budget(tail, log_step):  # bits over the budget at that step for the tail (None: all)
        if (tail, log_step) != on_disk["key"]:
            step = math.exp(log_step)
            steps = {n: s for n, s in steps1.items() if n not in tail} if tail else {}
            steps |= {i.name: step for i in candidates if (not tail or i.name in tail) and step_fits(stats[i][0], step)}
            bits, report = write(steps, tops)
            on_disk.update(key=(tail, log_step), over=bits - budget, report=report)
        return on_disk["over"]

    def search(tail):  # the file at the step found for the tail's tensors (None: for all)
        share = sum(info.numel for info in candidates if not tail or info.name in tail) / quantized

        def fall(log_step):
            if tail and abs(log_step - x1) > TAIL_MAX_LOG_STEP:
                raise _TailTooFar
            return over_budget(tail, log_step)

        # a file's size can jump over the tolerance: where a tensor turns lossless (a step too fine
        # for its indices), or with the jitter of bfloat16's rounding. A bracket an eighth of the
        # tolerance wide by the model slope ends the search there.
        found = _solve(fall, x1, slope * share, accept, narrowest=-accept[0] / (slope * share) / 8)
        over_budget(tail, found)  # written again if the search ended on a step it had left behind
        return on_disk["report"]

    if tail:
        try:
            return search(frozenset(tail))
        except _TailTooFar:
            pass
    return search(None)


class _TailTooFar(Exception):
    """The tail's step would move more than TAIL_MAX_LOG_STEP from the others'."""


def _tail(candidates, quantized_names, miss, slope_per_param):
    """The names of the last quantized tensors in file order (`candidates` in that order,
    `quantized_names` those the file quantized) that can move the file by `miss` bits with a step
    half TAIL_MAX_LOG_STEP away, by the model slope (`slope_per_param`: bits a quantized parameter
    per unit of log(step)), and TAIL_MIN_SHARE of the quantized parameters at least; None if that
    takes more than half of them."""
    quantized = [info for info in candidates if info.name in quantized_names]
    total = sum(info.numel for info in quantized)
    needed = max(TAIL_MIN_SHARE * total, abs(miss) / (slope_per_param * TAIL_MAX_LOG_STEP / 2))
    names, params = set(), 0
    for info in reversed(quantized):
        if params >= needed:
            break
        names.add(info.name)
        params += info.numel
    return names if params <= total / 2 else None


def _sampled_slope(source, candidates, x0, x1):
    """Bits the file loses per unit of x = log(step) from x0 to x1, measured on a sample (`_sample`;
    `_sample_bits` at each end, scaled up), or None if it does not fall. Costs about 2/SAMPLE_SHARE
    of an estimate over every tensor."""
    if x1 == x0:
        return None

    def fall(info):  # the payloads scale with the values, the tables with the chunks
        values = _sample(source, info)
        (p0, t0, chunks), (p1, t1, _) = (_sample_bits(quantize_dq_symbols(values, math.exp(x))) for x in (x0, x1))
        return (p0 - p1) * info.numel / max(1, values.size) + (t0 - t1) * -(-info.numel // DEFAULT_CHUNK_SIZE) / chunks

    slope = sum(_map_tensors(fall, candidates, lambda info: None)) / (x1 - x0)
    return slope if math.isfinite(slope) and slope > 0 else None


def _sample_bits(symbols):
    """(payload bits, table bits, chunks) of the symbols as rANS (with escapes) codes them, the
    payloads as their tables' ideal sizes: a sample's payloads scale with the tensor, its tables
    with its chunks (scaling both with the values put MiniLM's slope 1-4 % off)."""
    rans_symbols = clipped(symbols)
    chunks = range(0, symbols.size, DEFAULT_CHUNK_SIZE)
    tables = [rans_table(histogram(rans_symbols[lo : lo + DEFAULT_CHUNK_SIZE])) for lo in chunks]
    big = excesses(symbols)
    payload = sum(t.ideal_bits for t in tables) + (code_length(big, best_order(big)) if big.size else 0)
    return payload, sum(8 * len(t.header) for t in tables), max(1, len(tables))


def _sample(source, info):
    """The float values of `dq_predict.sample_runs` of a tensor, runs across the whole of it (its
    first rows alone, a sample of the same size, put MiniLM's slope 1-3 % off: its embeddings' first
    rows are special tokens); a tensor too short for two runs whole."""
    dtype = lookup(info.dtype)
    words = source.tensor_bytes(info).view(dtype.word_dtype)
    picked = sample_runs(words)
    return to_float32(words if picked is None else picked, dtype)


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
