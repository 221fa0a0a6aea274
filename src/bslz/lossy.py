"""Which float tensors are quantized, and with what step, for a lossy target.

Exactly one target: `bits` (average bits per float parameter over the whole file; one step for
every quantized tensor, which gives them all the same distortion-rate slope, found by secant steps
on the exact file size), `snr` (every quantized tensor at least that many dB), or `step`.
Small tensors (norms, biases: fewer than `min_elements`), names matching an `exclude` pattern and
tensors holding NaN or infinity stay lossless. Without a target, tensors whose step the training
hook recorded (metadata key "bslz.steps", a JSON object name -> step) are quantized at that step.
"""

import dataclasses
import fnmatch
import json
import math

from bslz.codec._parallel import map_tensors_in_order
from bslz.codec.dq import quantize_dq_symbols, squared_error_dq
from bslz.codec.floats import get_layout
from bslz.codec.measure import max_abs_and_signal, max_abs_and_signal_for_a_guess
from bslz.errors import InvalidArgumentError
from bslz.formats.dtypes import lookup, to_float32

STEPS_METADATA_KEY = "bslz.steps"
DEFAULT_MIN_ELEMENTS = 4096


@dataclasses.dataclass(frozen=True)
class LossyOptions:
    bits: float | None = None
    snr: float | None = None
    step: float | None = None
    exclude: tuple = ()
    min_elements: int = DEFAULT_MIN_ELEMENTS

    def __post_init__(self):
        given = [k for k in ("bits", "snr", "step") if getattr(self, k) is not None]
        if len(given) > 1:
            raise InvalidArgumentError(f"give at most one of bits, snr, step (got {', '.join(given)})")
        for k in given:
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidArgumentError(f"{k} must be a finite number, got {v!r}")
        if self.bits is not None and self.bits <= 0:
            raise InvalidArgumentError(f"bits must be positive, got {self.bits}")
        if self.step is not None and self.step <= 0:
            raise InvalidArgumentError(f"step must be positive, got {self.step}")
        if isinstance(self.exclude, str):
            object.__setattr__(self, "exclude", (self.exclude,))

    @property
    def target(self):
        return next((k for k in ("bits", "snr", "step") if getattr(self, k) is not None), None)


def is_float(info):
    dtype = lookup(info.dtype)
    return dtype is not None and dtype.kind == "float"


def lossy_tensors(source, options):
    """The float tensors a lossy target applies to, in file order, before any look at their values:
    large enough and not excluded."""
    return [
        info
        for info in source.tensors
        if is_float(info)
        and info.numel >= max(options.min_elements, 1)
        and not any(fnmatch.fnmatchcase(info.name, pattern) for pattern in options.exclude)
    ]


def lossy_candidates(source, options):
    """{TensorInfo: (max |w|, sum w^2)} of the `lossy_tensors`, but for those holding NaN or
    infinity: they stay lossless (a quantizer has no symbol for them, and losing them silently
    would be wrong)."""
    named = lossy_tensors(source, options)

    def stats(info):  # max |w| inf: the tensor is not finite
        dtype = lookup(info.dtype)
        words = source.tensor_bytes(info).view(dtype.word_dtype)
        if dtype.name == "BF16":  # no widened copy: the words themselves
            return max_abs_and_signal_for_a_guess(words, bfloat16_words=True)
        if dtype.name in ("F32", "F64"):  # views of the words
            return max_abs_and_signal_for_a_guess(to_float32(words, dtype))
        return max_abs_and_signal(words, widen=lambda piece: to_float32(piece, dtype))

    found = map_tensors_in_order(stats, named, lambda info: info.numel)
    return {info: (top, squares) for info, (top, squares) in found if math.isfinite(top)}


def mantissa_bits(dtype_name):
    """Stored mantissa bits of a float dtype (its values decode rounded to them)."""
    return get_layout(lookup(dtype_name).float_layout).man_bits


# A quantized tensor is stored losslessly instead when that is no larger: no error, for no more
# bits. Lossless coding keeps real weights' sign and mantissa bits raw and spends more than this
# margin on their exponents (MiniLM's tensors of 1024 values and more, bf16 and f16: 2.51-3.27 bits
# a value over those raw bits, in `bslz info`'s bits/param column of the lossless files), so the
# comparison is only made once the quantized payload passes the raw bits by it: below, a lossless
# encoding would be spent for nothing, in every search near those rates. (A float tensor whose
# mantissas compress is compared from there on too: MiniLM f32's pooler costs 13.53 bits a value
# lossless, so --bits 14-26 may quantize it where lossless would be smaller.)
LOSSLESS_CHECK_MARGIN_BITS = 2


def lossless_may_be_smaller(dtype_name, payload_bits, numel):
    """Whether a quantized payload of `payload_bits` is large enough for the lossless coding of
    its tensor to be tried against it (see LOSSLESS_CHECK_MARGIN_BITS)."""
    return payload_bits >= numel * (mantissa_bits(dtype_name) + 1 + LOSSLESS_CHECK_MARGIN_BITS)


def searched_values(source, info):
    """(x, bfloat16_words): a tensor as dependent quantization reads it (`quantize_dq_symbols`):
    bfloat16 words as they are, other dtypes as their float values."""
    dtype = lookup(info.dtype)
    words = source.tensor_bytes(info).view(dtype.word_dtype)
    return (words, True) if dtype.name == "BF16" else (to_float32(words, dtype), False)


def recorded_steps(metadata):
    """Steps the training hook recorded in the safetensors metadata: {name: step}."""
    text = (metadata or {}).get(STEPS_METADATA_KEY)
    if text is None:
        return {}
    try:
        steps = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidArgumentError(f"metadata {STEPS_METADATA_KEY!r} is not JSON") from None
    if not isinstance(steps, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in steps.values()
    ):
        raise InvalidArgumentError(f"metadata {STEPS_METADATA_KEY!r} must map names to positive steps")
    return {str(k): float(v) for k, v in steps.items()}


def plan_steps(source, options):
    """{tensor name: quantizer step} for the tensors to quantize, for the `step` and `snr` targets
    and for steps recorded by the training hook (no target); `bits` is `bslz.bits_target`.

    Targets use dependent quantization (`bslz.codec.dq`, step = its lattice step); steps recorded
    by the training hook are uniform quantizer steps, as the training rate was computed for.
    For `snr` every step is None: the writer searches each tensor's (`dq_quantize_for_snr`) and
    codes the symbols of the step it finds, rather than quantizing every tensor once more after a
    search pass. The values are not read here: the writer finds the tensors holding NaN or
    infinity (`to_float32_and_top`) and keeps them lossless, in its own pass over them (a pass here first
    cost 10 % of a `step` compression, measured on MiniLM bf16).
    """
    if options.target is None:
        names = {info.name for info in source.tensors}
        return {name: step for name, step in recorded_steps(source.metadata).items() if name in names}
    if options.bits is not None:
        raise InvalidArgumentError("the bits target is searched as the file is written: see bslz.bits_target")
    step = None if options.step is None else float(options.step)
    return {info.name: step for info in lossy_tensors(source, options)}


def _map_tensors(fn, infos, tick):
    """[fn(info) for info in infos], small tensors side by side; tick(info) as each is done."""
    results = []
    for info, result in map_tensors_in_order(fn, infos, lambda info: info.numel):
        results.append(result)
        tick(info)
    return results


class _SearchProgress:
    """Turns 'one more tensor searched' into progress(fraction, name) calls, over `passes` rounds of
    all the candidates (an estimate: the fraction stops short of 1 if there are more)."""

    def __init__(self, candidates, passes, progress):
        self.total = max(1, sum(info.numel for info in candidates)) * passes
        self.done = 0
        self.progress = progress

    def __call__(self, info):
        self.done += info.numel
        if self.progress is not None:
            self.progress(min(self.done / self.total, 0.99), info.name)


# How the targets move with x = log(step): the rate by about one bit a parameter per halving, the
# SNR by about 6.02 dB. The solver starts from these slopes and then uses the measured ones.
BITS_PER_LOG_STEP = 1 / math.log(2)
DB_PER_LOG_STEP = 20 / math.log(10)
# --snr: each tensor within SNR_TOLERANCE_DB above the target on the first try, then twice that, ...
# up to SNR_MAX_TOLERANCE_DB. A bf16 tensor's SNR strays 0.03-0.2 dB from its trend as the step moves
# 0.1-0.5 % (its levels round to bf16 differently): a fixed 0.02 dB took 1.3-3.9 tries a parameter on
# MiniLM bf16 from 25 to 50 dB, these 1.03-1.16 from 25 to 40 and 2.1 at 45-50 (f32: 1.0-1.1), for
# files 0.06 % larger at 30 dB, 0.01 % at 40 (5.060 -> 5.063, 6.764 -> 6.765 bits a parameter)
SNR_TOLERANCE_DB = 0.05
SNR_MAX_TOLERANCE_DB = 0.2
ROUNDING_SHARE_CAP = 0.08  # see snr_guess_step


def snr_guess_step(signal, numel, snr_db, mantissa_bits=None):
    """The dependent-quantization step expected to give `snr_db` on `numel` values of energy
    `signal`: rounding with step D leaves noise D^2 / 12, and the trellis at lattice step D / 1.76
    about matches it, better at high rates (corrected below: the search's first try then lands
    within its first tolerance on most tensors). 1.0 for an all-zero tensor.

    `mantissa_bits`: the tensor's float format stores this many, and decoded values are rounded to
    it, which adds about signal x 2**(-2 m - 1) / 12 of noise (measured on MiniLM: 2.6e-6 of the
    signal for bf16, 4e-8 for f16), but never more than ROUNDING_SHARE_CAP (8 %) of the target's
    (bf16 at 45 and 50 dB: the rounding lands many levels back on the original values; with 8 %
    the first try's margin has a median of 0.05 dB at 45 dB and 0.01 dB at 50, with 3 % -0.17 and
    -0.24), left out of the quantizer's share."""
    if signal == 0.0:
        return 1.0
    share = 10.0 ** (-snr_db / 10.0)
    if mantissa_bits is not None:  # once the quantizer's errors near the format's own steps, the rounding
        share -= min(2.0 ** (-2 * mantissa_bits - 1) / 12.0, ROUNDING_SHARE_CAP * share)  # partly undoes them
    # the trellis gains more over rounding at low rates: at the step above, its SNR came out this
    # many dB above the target (MiniLM f32, median over its tensors: 0.77 at 15 dB, 0.41 at 20, 0.11
    # at 30, 0.01 at 40, -0.02 at 50; spread 0.02-0.2 dB tensor to tensor); aim at the middle of
    # the search's first tolerance above it
    excess = -0.035 + 0.803 * math.exp(-0.116 * (min(max(snr_db, 10.0), 60.0) - 15.0))
    return math.sqrt(12.0 * signal / numel * share) / 1.76 * 10.0 ** ((excess - SNR_TOLERANCE_DB / 2) / 20.0)


def dq_quantize_for_snr(values, snr_db, guess=None, search=None, mantissa_bits=None, signal=None):
    """(step, symbols): a dependent-quantization step whose SNR is at least `snr_db` and within
    SNR_TOLERANCE_DB of it, or up to SNR_MAX_TOLERANCE_DB after more tries, searched from
    `guess` (default `snr_guess_step`, for values stored with `mantissa_bits`), and the se(v)
    symbols of the trellis indices at that step (`quantize_dq_symbols`; None for an all-zero
    tensor, or when the search ended on a step it had left behind).

    `search(values, step) -> (symbols, signal, noise)`: the symbols at that step and the sums the
    SNR is taken from; by default `quantize_dq_symbols` and the sums of the float32
    reconstruction. The writer passes the sums of the values as the file will decode them
    (rounded to bf16, f16, ...), so that the step found is the step kept (measured on float32
    values, a bf16 tensor lost 0.1-0.5 dB to rounding and had to be quantized again at smaller steps,
    ending up to 0.45 dB above the target). `signal`: the values' sum of squares, if the caller has
    it (a search of bfloat16 words, which `values` then holds)."""
    signal = max_abs_and_signal(values)[1] if signal is None else signal
    if signal == 0.0:
        return 1.0, None
    if search is None:

        def search(values, step):
            symbols = quantize_dq_symbols(values, step)
            return symbols, signal, squared_error_dq(values, symbols, step)

    last = {}  # the latest quantization only: one array of symbols held at a time

    def margin(log_step):  # SNR above the target, in dB: falls as the step grows
        step = math.exp(log_step)
        last.clear()
        last[log_step], measured_signal, noise = search(values, step)
        if noise == 0.0:
            return math.inf
        return 10.0 * math.log10(measured_signal / noise) - snr_db if measured_signal > 0 else -math.inf

    guess = guess if guess is not None else snr_guess_step(signal, values.size, snr_db, mantissa_bits)
    log_step = _solve(margin, math.log(guess), DB_PER_LOG_STEP, (0.0, SNR_TOLERANCE_DB), SNR_MAX_TOLERANCE_DB)
    return math.exp(log_step), last.get(log_step)


JUMP_SLOPES = 8  # a measured slope this many model slopes steep is a jump of `fall`, not its trend


def _solve(fall, x, slope, accept, widest=None, narrowest=1e-12):
    """An x = log(step) with accept[0] <= fall(x) <= accept[1], for `fall` decreasing in x, close
    to linear, about -slope per unit of x. The accept interval lies on the side of the root that
    meets the target (bits: at most the budget; SNR: at least the target). With `widest`, its far
    end from the target moves out as the evaluations go, doubling its width each time up to
    `widest` (for a `fall` that jitters on the scale of the interval). Once the x that miss the
    interval on either side are within `narrowest` of each other, `fall` is taken to jump over it
    there, and the side that meets the target is returned.

    Secant steps aimed at the middle of the interval, from the model slope at first, then the
    measured one; a step that leaves the bracket found so far bisects it instead, as does one
    from where `fall` was flat or jumped (JUMP_SLOPES), and a flat stretch before any bracket is
    left in model steps that double as it goes on. Each evaluation quantizes whole tensors, which
    is why their number matters: two to four do (a bracketing search that walked in factors of 4
    took six to seven)."""
    lo_ok, hi_ok = accept
    aim = (lo_ok + hi_ok) / 2
    below = above = None  # largest x with fall above the interval, smallest with fall below it
    previous = None
    flat_run = 0  # evaluations in a row that found `fall` where the one before had
    for tries in range(60):
        fx = fall(x)
        width = hi_ok - lo_ok if widest is None else min((hi_ok - lo_ok) * 2.0**tries, widest)
        lo, hi = (hi_ok - width, hi_ok) if hi_ok <= 0 else (lo_ok, lo_ok + width)  # the target's end stays
        if lo <= fx <= hi:
            return x
        if fx > hi_ok:
            below = x if below is None else max(below, x)
        else:
            above = x if above is None else min(above, x)
        bracketed = below is not None and above is not None
        # a secant from where `fall` was flat (bits: every tensor lossless), or across a jump (far
        # steeper than the model), would crawl: bisect the bracket, or double the model's steps
        crawls = False
        if not math.isfinite(fx):  # no noise at all: the step is far too small
            x_next = x + math.log(4.0)
        else:
            measured = (previous[1] - fx) / (x - previous[0]) if previous and previous[0] != x else 0.0
            x_next = x + (fx - aim) / (measured if math.isfinite(measured) and measured > 0 else slope)
            flat = previous is not None and previous[1] == fx
            # (a secant from a point of a flat stretch, the one before flat too, also crawls)
            crawls = flat or flat_run > 0 or (bracketed and measured > JUMP_SLOPES * slope)
            flat_run = flat_run + 1 if flat else 0
            if flat and not bracketed:
                x_next = x + (fx - aim) / slope * 2.0 ** (flat_run - 1)
            previous = (x, fx)
        if bracketed:
            if above - below < narrowest:  # nothing left between them: take the side that meets the target
                break
            if crawls or not below < x_next < above:
                x_next = (below + above) / 2
        x = x_next
    side = above if hi_ok <= 0 else below
    if side is None:
        raise InvalidArgumentError("no quantizer step reaches the target")
    return side
