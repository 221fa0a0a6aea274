"""Which float tensors are quantized, and with what step, for a lossy target.

Exactly one target: `bits` (average bits per float parameter over the whole file; one step for
every quantized tensor, which gives them all the same distortion-rate slope, found by bisection on
the exact file size), `snr` (every quantized tensor at least that many dB), or `step`.
Small tensors (norms, biases: fewer than `min_elements`), names matching an `exclude` pattern and
tensors holding NaN or infinity stay lossless. Without a target, tensors whose step the training
hook recorded (metadata key "bslz.steps", a JSON object name -> step) are quantized at that step.
"""

import dataclasses
import fnmatch
import json
import math

import numpy as np

from bslz.codec.quantize import quantize, step_for_snr
from bslz.codec.rate import symbols_rate_bits
from bslz.errors import InvalidArgumentError
from bslz.formats.dtypes import lookup, to_float32
from bslz.formats.tensor_codec import reconstruction_overhead_bits

STEPS_METADATA_KEY = "bslz.steps"
DEFAULT_MIN_ELEMENTS = 4096
LOW_RATE_BITS = 4.5  # at or below this target a dead zone pays (benchmarks/gg_quantization_study.py)
LOW_RATE_DEAD_ZONE = 0.35


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

    @property
    def dead_zone(self):
        return LOW_RATE_DEAD_ZONE if self.bits is not None and self.bits <= LOW_RATE_BITS else 0.5


def is_float(info):
    dtype = lookup(info.dtype)
    return dtype is not None and dtype.kind == "float"


def lossy_candidates(source, options):
    """TensorInfo of the float tensors a lossy target applies to. Tensors holding NaN or infinity
    stay lossless: a quantizer has no symbol for them, and losing them silently would be wrong."""
    out = []
    for info in source.tensors:
        if not is_float(info) or info.numel < max(options.min_elements, 1):
            continue
        if any(fnmatch.fnmatchcase(info.name, pattern) for pattern in options.exclude):
            continue
        if not np.isfinite(tensor_values(source, info)).all():
            continue
        out.append(info)
    return out


def tensor_values(source, info):
    dtype = lookup(info.dtype)
    return to_float32(source.tensor_bytes(info).view(dtype.word_dtype), dtype)


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


def plan_steps(source, options, lossless_bits=None):
    """{tensor name: quantizer step} for the tensors to quantize.

    `lossless_bits(exclude_names) -> bits` (needed for `bits`): the exact size of everything that is
    not quantized, header included, so that the whole file meets the target.
    """
    if options.target is None:
        names = {info.name for info in source.tensors}
        return {name: step for name, step in recorded_steps(source.metadata).items() if name in names}
    candidates = lossy_candidates(source, options)
    if options.step is not None:
        return {info.name: float(options.step) for info in candidates}
    if options.snr is not None:
        return {info.name: step_for_snr(tensor_values(source, info), options.snr) for info in candidates}
    return _steps_for_bits(source, candidates, options, lossless_bits)


def _steps_for_bits(source, candidates, options, lossless_bits):
    float_params = sum(info.numel for info in source.tensors if is_float(info))
    budget = options.bits * float_params
    fixed = lossless_bits({info.name for info in candidates})
    if not candidates:
        return {}

    # per quantized payload: orders padded to 8 bytes, payload to 64, and the reconstruction table
    fixed += sum(8 * (7 + 63) + reconstruction_overhead_bits(info.numel) for info in candidates)

    def total_bits(step):
        return fixed + sum(
            symbols_rate_bits(quantize(tensor_values(source, info), step, options.dead_zone)) for info in candidates
        )

    max_abs = max(float(np.abs(tensor_values(source, info)).max()) for info in candidates)
    largest = 4.0 * max_abs  # every symbol zero: the fewest bits a step can give
    if total_bits(largest) > budget:
        raise InvalidArgumentError(
            f"{options.bits} bits per parameter is below what this file costs with every quantized value at zero"
        )
    quantized = sum(info.numel for info in candidates)
    rms = math.sqrt(sum(_sum_squares(source, info) for info in candidates) / quantized)
    # a quantized Gaussian costs about log2(rms / step) + 2.05 bits: a first guess for the search
    guess = rms * 2.0 ** (2.05 - (budget - fixed) / quantized)
    step = _smallest_step_within(total_bits, budget, min(guess, largest), largest)
    return {info.name: step for info in candidates}


def _sum_squares(source, info):
    values = tensor_values(source, info).astype(np.float64)
    return float(np.dot(values, values))


def _smallest_step_within(total_bits, budget, guess, largest, rtol=5e-4):
    """The smallest step (within a factor 1 + rtol) whose total_bits <= budget, given that
    total_bits(largest) <= budget. The rate is close to linear in log(step) (a bit per parameter
    per halving), so regula falsi on log(step) (Illinois variant) needs a handful of evaluations
    where bisection needs twenty; each evaluation quantizes and codes the whole model."""
    b, fb = math.log(largest), total_bits(largest) - budget  # fb <= 0: within budget
    x = math.log(guess)
    fx = total_bits(guess) - budget
    for _ in range(30):  # walk down until over budget
        if fx > 0:
            break
        b, fb = x, fx
        x -= math.log(4.0)
        fx = total_bits(math.exp(x)) - budget
    else:  # a step 2**60 below the guess still fits: nothing finer is worth coding
        return math.exp(b)
    a, fa = x, fx  # fa > 0: over budget
    side = 0
    while b - a > math.log1p(rtol):
        x = (a * fb - b * fa) / (fb - fa)
        x = min(max(x, a + 0.01 * (b - a)), b - 0.01 * (b - a))  # stay strictly inside the bracket
        fx = total_bits(math.exp(x)) - budget
        if fx > 0:
            a, fa = x, fx
            if side == -1:
                fb /= 2  # Illinois: the same end kept twice, halve its weight
            side = -1
        else:
            b, fb = x, fx
            if side == 1:
                fa /= 2
            side = 1
    return math.exp(b)
