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
FOREACH_BATCH = 1 << 26  # elements a multi-tensor batch: its two scratch tensors take 2x this many


def apply_rate_step(params, nus, coefficient, eps, workspace=None):
    """In place, no grad: p <- p - coefficient * nu * sign(p) * (|p| + eps)^(nu - 1) for each p.

    params: tensors; nus: one shape per tensor; coefficient: lam / N. Contiguous float32 CPU tensors
    take one fused pass (`_rate_kernel`, on every core); other CPU tensors take torch operations, with
    `workspace`, a dict kept by the caller, holding one scratch tensor per parameter between calls
    (allocating a fresh one of a large parameter's size every step cost as much as the arithmetic);
    tensors on an accelerator take torch's multi-tensor operations (`_foreach_rate_step`).
    """
    workspace = {} if workspace is None else workspace
    fused, on_devices = [], {}
    with torch.no_grad():
        for p, nu in zip(params, nus):
            scale = coefficient * nu
            if scale == 0.0:
                continue
            if p.device.type != "cpu":
                on_devices.setdefault((p.device, p.dtype), []).append((p, nu, scale))
            elif p.dtype == torch.float32 and p.is_contiguous():
                # written through numpy, which autograd does not see: count it as the in-place
                # change it is, so that a graph still holding p refuses to backpropagate through it
                torch.autograd.graph.increment_version(p)
                flat = p.detach().view(-1).numpy()
                pieces = split_range(flat.size, -(-flat.size // FUSED_PIECE))
                fused += [(flat, lo, hi, nu - 1.0, scale) for lo, hi in pieces]
            else:
                _torch_rate_step(p, nu, scale, eps, workspace)
        for group in on_devices.values():
            for batch in _batches(group):
                _foreach_rate_step(batch, eps)
        floor = float(torch.finfo(torch.float32).tiny)
        parallel_map(lambda w: rate_step_range(w[0], w[1], w[2], w[3], w[4], eps, floor), fused)


def _batches(group, cap=FOREACH_BATCH):
    """`group` in runs of about `cap` elements at most (a larger tensor alone), in order."""
    batch, size = [], 0
    for item in group:
        if batch and size + item[0].numel() > cap:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item[0].numel()
    if batch:
        yield batch


def _foreach_rate_step(batch, eps):
    """The update of (p, nu, scale) triples of one device and dtype in five multi-tensor kernels
    (`torch._foreach_*`, as torch's optimizers use them): one kernel a parameter and an operation
    is a launch each, which on a GPU costs more than the arithmetic of most parameters."""
    ps = [p for p, _, _ in batch]
    mags = torch._foreach_abs(ps)
    if eps > 0:
        torch._foreach_add_(mags, eps)
    else:
        torch._foreach_clamp_min_(mags, torch.finfo(ps[0].dtype).tiny)
    torch._foreach_pow_(mags, [nu - 1.0 for _, nu, _ in batch])
    # p - scale * sign(p) * mag: sign(0) = 0, so exact zeros get no update
    torch._foreach_addcmul_(ps, mags, torch._foreach_sign(ps), [-scale for _, _, scale in batch])


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
