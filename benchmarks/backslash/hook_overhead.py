"""The BackSlash hook's cost against a training step, by model size, on a GPU (or the CPU).

For each size a character-level GPT (`common.CharGPT`, pydoc text, AdamW) is timed, every timing
between device synchronisations:
  - a plain training step (forward, backward, optimizer step);
  - the reference update as `BackSlash.step()` applies it (on a GPU: torch's multi-tensor operations);
  - the same update one parameter at a time (`update._torch_rate_step`, the CPU's path for tensors
    the fused kernel does not take), for comparison;
  - a re-estimate of nu (`estimate()`) and a report (`report()`), each made once every K steps; of the
    report, the copies of the selected tensors to the CPU alone (where its rate function runs).
overhead = (update + (estimate + report) / K) / plain step.

    PYTHONPATH=src python3 benchmarks/backslash/hook_overhead.py --device cuda
"""

import argparse
import json
import os
import sys
import time

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import CharData, CharGPT  # noqa: E402

from bslz.train import BackSlash, update  # noqa: E402


def timed(fn, device, repeats):
    """Median seconds of `repeats` calls of fn, each between synchronisations."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(d, layers, data, args, device):
    torch.manual_seed(0)
    model = CharGPT(data.vocab, ctx=args.ctx, d=d, layers=layers, heads=max(1, d // 64)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(1)
    x, y = (t.to(device) for t in data.batch(gen, args.batch))

    def train_step():
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    bs = BackSlash(model, args.lam, step=1e-3, reestimate_every=10**9, report_every=0)
    coefficient, nus, workspace = bs.lam / bs.num_params, bs._nus(), {}

    def one_at_a_time():
        with torch.no_grad():
            for p, nu in zip(bs.params, nus):
                update._torch_rate_step(p, nu, coefficient * nu, bs.eps, workspace)

    for _ in range(args.warmup):
        train_step()
        bs.step()
        one_at_a_time()
    row = dict(
        d=d,
        layers=layers,
        params=sum(p.numel() for p in model.parameters()),
        selected=bs.num_params,
        selected_tensors=len(bs.params),
        step_ms=1e3 * timed(train_step, device, args.repeats),
        update_ms=1e3 * timed(bs.step, device, args.repeats),
        one_at_a_time_ms=1e3 * timed(one_at_a_time, device, args.repeats),
        estimate_ms=1e3 * timed(bs.estimate, device, max(3, args.repeats // 10)),
        report_ms=1e3 * timed(bs.report, device, max(3, args.repeats // 10)),
        copies_ms=1e3 * timed(lambda: [p.detach().to("cpu", torch.float32) for p in bs.params], device, 3),
    )
    per_k = (row["estimate_ms"] + row["report_ms"]) / args.K
    row["overhead"] = (row["update_ms"] + per_k) / row["step_ms"]
    row["overhead_one_at_a_time"] = (row["one_at_a_time_ms"] + per_k) / row["step_ms"]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", default="128x2,512x8,1024x12", help="d x layers, comma-separated")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--lam", type=float, default=100.0)
    ap.add_argument("--K", type=int, default=100, help="reestimate_every (and report_every) assumed")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    device = torch.device(args.device)
    data = CharData(ctx=args.ctx)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}, batch {args.batch} x {args.ctx} tokens, K = {args.K}")
    print(
        "| d x layers | params | selected (tensors) | step ms | update ms | one at a time ms | estimate ms "
        "| report ms (copies) | overhead | overhead, one at a time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes.split(","):
        d, layers = (int(v) for v in size.split("x"))
        r = measure(d, layers, data, args, device)
        rows.append(r)
        print(
            f"| {d} x {layers} | {r['params'] / 1e6:.1f} M | {r['selected'] / 1e6:.1f} M ({r['selected_tensors']}) "
            f"| {r['step_ms']:.2f} | {r['update_ms']:.3f} | {r['one_at_a_time_ms']:.3f} | {r['estimate_ms']:.2f} "
            f"| {r['report_ms']:.1f} ({r['copies_ms']:.1f}) | {100 * r['overhead']:.1f} % "
            f"| {100 * r['overhead_one_at_a_time']:.1f} % |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), device=name, torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
