"""The rate term R(theta) = (1/N) sum |theta|^nu and its two ways into training.

reference mode (the paper, `apply_rate_step`): after the optimizer's step, outside it and with no
learning rate,  theta <- theta - lam * nu / N * sign(theta) * (|theta| + eps)^(nu - 1).
loss mode (`rate_penalty`): lam / N * sum((|theta| + eps)^nu - eps^nu), added to the loss; its
gradient is exactly the reference update (equal to lam * R(theta) when eps = 0), but the optimizer
sees it, so Adam rescales it per coordinate and the learning rate scales it.
nu is a constant in both (re-estimated between steps, never differentiated).
"""

import torch

from bslz.codec._parallel import parallel_map, split_range
from bslz.train._rate_kernel import rate_step_range

FUSED_PIECE = 1 << 20  # about this many elements a work item of the fused kernel (for the threads)


def apply_rate_step(params, nus, coefficient, eps, workspace=None):
    """In place, no grad: p <- p - coefficient * nu * sign(p) * (|p| + eps)^(nu - 1) for each p.

    params: tensors; nus: one shape per tensor; coefficient: lam / N. Contiguous float32 CPU tensors
    take one fused pass (`_rate_kernel`, on every core); the others take torch operations, with
    `workspace`, a dict kept by the caller, holding one scratch tensor per parameter between calls
    (allocating a fresh one of a large parameter's size every step cost as much as the arithmetic).
    """
    workspace = {} if workspace is None else workspace
    fused = []
    with torch.no_grad():
        for p, nu in zip(params, nus):
            scale = coefficient * nu
            if scale == 0.0:
                continue
            if p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous():
                # written through numpy, which autograd does not see: count it as the in-place
                # change it is, so that a graph still holding p refuses to backpropagate through it
                torch.autograd.graph.increment_version(p)
                flat = p.detach().view(-1).numpy()
                pieces = split_range(flat.size, -(-flat.size // FUSED_PIECE))
                fused += [(flat, lo, hi, nu - 1.0, scale) for lo, hi in pieces]
            else:
                _torch_rate_step(p, nu, scale, eps, workspace)
        floor = float(torch.finfo(torch.float32).tiny)
        parallel_map(lambda w: rate_step_range(w[0], w[1], w[2], w[3], w[4], eps, floor), fused)


def _torch_rate_step(p, nu, scale, eps, workspace):
    if nu == 1.0:  # the power is 1: plain L1 shrinkage
        p.add_(p.sign(), alpha=-scale)
        return
    buf = workspace.get(id(p))
    if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
        buf = workspace[id(p)] = torch.empty_like(p)
    torch.abs(p, out=buf)
    if eps > 0:
        buf.add_(eps)
    else:
        buf.clamp_min_(torch.finfo(p.dtype).tiny)
    buf.pow_(nu - 1.0)
    # sign(p) * buf without a sign tensor: copysign, then exact zeros (sign 0) get no update
    torch.copysign(buf, p, out=buf)
    buf.masked_fill_(p == 0, 0.0)
    p.add_(buf, alpha=-scale)


def rate_penalty(params, nus, coefficient, eps):
    """Differentiable coefficient * sum_p sum((|p| + eps)^nu - eps^nu), a float32 scalar tensor."""
    total = None
    for p, nu in zip(params, nus):
        mag = p.abs() + eps if eps > 0 else p.abs().clamp_min(torch.finfo(p.dtype).tiny)
        term = torch.sum(mag.pow(nu), dtype=torch.float32) - p.numel() * eps**nu
        total = term if total is None else total + term
    return coefficient * total


def rate_value(params, nus):
    """R(theta) * N = sum_p sum |p|^nu as a float, without gradient (for logging)."""
    with torch.no_grad():
        return float(sum(torch.sum(p.abs().pow(nu), dtype=torch.float64).item() for p, nu in zip(params, nus)))
