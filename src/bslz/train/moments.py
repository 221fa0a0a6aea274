"""Generalized-Gaussian shape and scale of the selected parameters, from moment sums.

The sums (sum |x|, sum x^2, count) are accumulated in float64 per tensor; under an initialised
torch.distributed process group they are all-reduced, so that every rank fits the same (nu, beta)
and so applies the same update. The fit itself is `bslz.codec.gg`'s moment-ratio estimate.
"""

import dataclasses
import math

import torch

from bslz.codec.gg import ALL_ZERO_FIT, shape_from_moment_ratio
from bslz.errors import InvalidArgumentError


@dataclasses.dataclass(frozen=True)
class GGFit:
    """nu: shape in [0.1, 3]; beta: scale, in the units of the parameters (0 for all-zero values)."""

    nu: float
    beta: float


def moment_sums(tensors, group=None):
    """float64 tensor (len(tensors), 3) of (sum |x|, sum x^2, count) per tensor, on the CPU,
    summed over the ranks of `group` when torch.distributed is initialised (a collective call)."""
    with torch.no_grad():
        device = tensors[0].device
        rows = [
            torch.stack(
                (
                    torch.linalg.vector_norm(t, 1, dtype=torch.float64),
                    torch.linalg.vector_norm(t, 2, dtype=torch.float64).square(),
                    torch.tensor(float(t.numel()), dtype=torch.float64, device=t.device),
                )
            ).to(device)
            for t in tensors
        ]
        sums = torch.stack(rows)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums, group=group)
        return sums.cpu()


def fit_from_sums(sum_abs, sum_sq, count):
    """GGFit of values with these float64 moment sums (moment ratio E[x^2] / E[|x|]^2)."""
    if not (math.isfinite(sum_abs) and math.isfinite(sum_sq)):
        raise InvalidArgumentError("parameters hold NaN or infinity: cannot fit their distribution")
    if sum_sq == 0.0 or count == 0:
        return GGFit(*ALL_ZERO_FIT)
    mean_abs, mean_sq = sum_abs / count, sum_sq / count
    nu = shape_from_moment_ratio(mean_sq / (mean_abs * mean_abs))
    beta = math.sqrt(mean_sq) * math.exp(0.5 * (math.lgamma(1.0 / nu) - math.lgamma(3.0 / nu)))
    return GGFit(nu, beta)


def fit_parameters(tensors, group=None):
    """(pooled GGFit over all tensors, [GGFit per tensor])."""
    sums = moment_sums(tensors, group)
    pooled = fit_from_sums(*sums.sum(dim=0).tolist())
    return pooled, [fit_from_sums(*row) for row in sums.tolist()]
