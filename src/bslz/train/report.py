"""What training predicts the file will cost: the codec's own rate function at the planned step.

The prediction for a tensor is `bslz.codec.rate.tensor_rate_bits`, taken in its two steps
(`quantize`, then `symbols_rate_bits`: the exact size of the coded symbol stream, chunk table and
orders included) so that the symbols also give the sparsity, plus the reconstruction table the container adds
to large tensors (`bslz.formats.tensor_codec.reconstruction_overhead_bits`). The only bytes of a
quantized payload it leaves out are the zero padding of the order bytes to 8 bytes (< 8 a tensor).
"""

import dataclasses

import numpy as np
import torch

from bslz.codec.quantize import quantize
from bslz.codec.rate import symbols_rate_bits
from bslz.formats.tensor_codec import reconstruction_overhead_bits

DEAD_ZONE = 0.5  # the dead zone `bslz compress` uses for steps recorded in the metadata (plain rounding)


@dataclasses.dataclass(frozen=True)
class TensorRate:
    """One tensor at the planned step. bits: predicted payload bits; sparsity: share quantized to 0 (|x| < step / 2)."""

    name: str
    numel: int
    nu: float
    beta: float
    step: float
    sparsity: float
    bits: int

    @property
    def bits_per_param(self):
        return self.bits / self.numel if self.numel else 0.0


@dataclasses.dataclass(frozen=True)
class RateReport:
    """The state of the rate term after `steps` updates.

    nu, beta: the pooled generalized-Gaussian fit of the selected parameters (the last estimate);
    step: the planned quantizer step (units of the parameters); sparsity: share of selected
    parameters that quantize to 0 (|x| < step / 2), which the file stores as exact zeros; bits_per_param: predicted
    payload bits per selected parameter at that step; num_params: N, the selected parameters.
    """

    steps: int
    lam: float
    nu: float
    beta: float
    step: float
    sparsity: float
    bits_per_param: float
    num_params: int
    tensors: tuple = ()

    @property
    def predicted_bytes(self):
        """Predicted payload bytes of the selected tensors in the exported file."""
        return self.bits_per_param * self.num_params / 8

    def as_log(self, prefix="bslz/"):
        """Flat {key: float} for a logger."""
        keys = ("nu", "beta", "step", "sparsity", "bits_per_param")
        return {prefix + k: float(getattr(self, k)) for k in keys}


def tensor_rate(name, tensor, fit, step):
    """TensorRate of `tensor` quantized at `step` (float) as the export would quantize it."""
    with torch.no_grad():
        values = tensor.detach().to("cpu", torch.float32).numpy()
    numel = values.size
    if not numel:
        return TensorRate(name, 0, fit.nu, fit.beta, float(step), 0.0, 0)
    symbols = quantize(values, step, DEAD_ZONE)
    bits = symbols_rate_bits(symbols) + reconstruction_overhead_bits(numel)
    sparsity = 1.0 - np.count_nonzero(symbols) / numel
    return TensorRate(name, numel, fit.nu, fit.beta, float(step), sparsity, int(bits))


def rate_report(steps, lam, pooled, step, tensor_rates):
    """RateReport pooling `tensor_rates` (a sequence of TensorRate)."""
    numel = sum(t.numel for t in tensor_rates)
    zeros = sum(t.sparsity * t.numel for t in tensor_rates)
    bits = sum(t.bits for t in tensor_rates)
    return RateReport(
        steps, float(lam), pooled.nu, pooled.beta, float(step), zeros / numel, bits / numel, numel, tuple(tensor_rates)
    )
