"""The rate term R(theta) = (1/N) sum |theta|^nu and its two ways into training.

reference mode (the paper, `apply_rate_step`): after the optimizer's step, outside it and with no
learning rate,  theta <- theta - lam * nu / N * sign(theta) * (|theta| + eps)^(nu - 1).
loss mode (`rate_penalty`): lam / N * sum((|theta| + eps)^nu - eps^nu), added to the loss; its
gradient is exactly the reference update (equal to lam * R(theta) when eps = 0), but the optimizer
sees it, so Adam rescales it per coordinate and the learning rate scales it.
nu is a constant in both (re-estimated between steps, never differentiated).
"""

import torch


def apply_rate_step(params, nus, coefficient, eps, workspace=None):
    """In place, no grad: p <- p - coefficient * nu * sign(p) * (|p| + eps)^(nu - 1) for each p.

    params: tensors; nus: one shape per tensor; coefficient: lam / N. `workspace`, a dict kept by
    the caller, holds one scratch tensor per parameter between calls: allocating a fresh tensor of
    a large parameter's size every step (page faults) cost as much as the arithmetic (measured).
    """
    workspace = {} if workspace is None else workspace
    with torch.no_grad():
        for p, nu in zip(params, nus):
            scale = -coefficient * nu
            if scale == 0.0:
                continue
            if nu == 1.0:  # the power is 1: plain L1 shrinkage
                p.add_(p.sign(), alpha=scale)
                continue
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
            p.add_(buf, alpha=scale)


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
