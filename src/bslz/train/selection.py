"""Which parameters the rate term applies to, and under which names.

The reference implementation penalises every parameter of the model. Here the default is the
weights of Linear, Conv and Embedding layers (and the input projections of nn.MultiheadAttention):
norms and biases are a tiny share of the parameters, are kept lossless by the codec anyway
(`bslz.lossy` skips tensors under 4096 elements), and driving a norm's scale to zero changes what
the layer computes rather than how much it costs. This is a deliberate deviation from the paper.
"""

import warnings

import torch
from torch import nn

from bslz.errors import InvalidArgumentError

WEIGHT_MODULES = (
    nn.Linear,
    nn.Bilinear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Embedding,
    nn.EmbeddingBag,
)
ATTENTION_WEIGHTS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
LOW_PRECISION_EPS = 1e-4  # machine epsilon above this (fp16: 1e-3, bf16: 8e-3) cannot hold a small update


class PrecisionWarning(UserWarning):
    """A selected parameter's dtype is too coarse for the rate term's small per-step updates."""


def default_select(name, param, module):
    """True for the weight of a Linear, Conv*d, ConvTranspose*d, Embedding or EmbeddingBag module and
    the input projection weights of nn.MultiheadAttention; never a bias, a norm or a frozen parameter."""
    if not param.requires_grad:
        return False
    leaf = name.rsplit(".", 1)[-1]
    if isinstance(module, WEIGHT_MODULES):
        return leaf == "weight"
    if isinstance(module, nn.MultiheadAttention):
        return leaf in ATTENTION_WEIGHTS
    return False


def select_parameters(model_or_params, select=None):
    """[(name, parameter)] the rate term applies to, each parameter once (tied weights are shared).

    model_or_params: an nn.Module, or an iterable of tensors or of (name, tensor) pairs.
    select: None (`default_select` for a module, everything for an iterable), a callable
    (name, param, module) -> bool (module is None for an iterable), or a collection of names.
    """
    if isinstance(model_or_params, nn.Module):
        candidates = _module_candidates(model_or_params)
    else:
        candidates = _iterable_candidates(model_or_params)
    if select is None:
        chosen = [(n, p) for n, p, m in candidates if m is None or default_select(n, p, m)]
    elif callable(select):
        chosen = [(n, p) for n, p, m in candidates if select(n, p, m)]
    else:
        chosen = _by_names(candidates, select)
    if not chosen:
        raise InvalidArgumentError("no parameter selected for the rate term")
    for name, param in chosen:
        if not param.is_floating_point():
            raise InvalidArgumentError(f"parameter {name!r} has dtype {param.dtype}: the rate term needs floats")
    return chosen


def _module_candidates(model):
    """(name, param, owning module) in named_parameters order, each tensor once."""
    seen, out = set(), []
    for module_name, module in model.named_modules():
        for leaf, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            out.append((f"{module_name}.{leaf}" if module_name else leaf, param, module))
    return out


def _iterable_candidates(params):
    seen, out = set(), []
    for i, item in enumerate(params):
        name, param = item if isinstance(item, tuple) else (f"param.{i}", item)
        if not isinstance(param, torch.Tensor):
            raise InvalidArgumentError(f"expected a tensor or a (name, tensor) pair, got {type(item).__name__}")
        if id(param) not in seen:
            seen.add(id(param))
            out.append((str(name), param, None))
    return out


def _by_names(candidates, names):
    if isinstance(names, str):
        names = [names]
    wanted = set(names)
    known = {n for n, _, _ in candidates}
    missing = sorted(wanted - known)
    if missing:
        raise InvalidArgumentError(f"no parameter named {', '.join(map(repr, missing[:5]))}")
    return [(n, p) for n, p, _ in candidates if n in wanted]


def warn_low_precision(named_params, stacklevel=3):
    """Warn (PrecisionWarning) once if any selected parameter is stored in bf16, fp16 or fp8."""
    coarse = [n for n, p in named_params if torch.finfo(p.dtype).eps > LOW_PRECISION_EPS]
    if coarse:
        shown = ", ".join(coarse[:3]) + (f" and {len(coarse) - 3} more" if len(coarse) > 3 else "")
        warnings.warn(
            f"rate term on low-precision parameters ({shown}): an update smaller than the dtype's spacing "
            "is rounded away; train fp32 master weights (mixed precision / autocast) instead",
            PrecisionWarning,
            stacklevel=stacklevel,
        )
