"""Experiment 1: a small character-level GPT trained from scratch on pydoc_data.topics, lambda sweep.

For each lambda: `--steps` rate steps (BackSlash reference mode attached to AdamW; lambda = 0 trains
plainly), then `--ft-steps` plain fine-tuning steps with the hook removed (the tail of the same cosine
schedule), then `BackSlash.export` at ONE planned step Delta shared by every lambda (`step=` passed
explicitly), the file loaded back into a fresh model and evaluated on held-out text.

Writes out/gpt_<lam>.pt (float checkpoints, for exp. 2/3), out/gpt_<lam>.bslz, results/gpt_pydoc.json,
and plots. Run from the repository root:

    PYTHONPATH=src python3 benchmarks/backslash/gpt_pydoc.py
"""

import argparse
import json
import os
import sys
import time

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import HERE, OUT, CharData, CharGPT, Timer, evaluate, lr_at, set_threads  # noqa: E402

import bslz.torch  # noqa: E402
from bslz.formats.container import ContainerReader  # noqa: E402
from bslz.train import BackSlash  # noqa: E402


def payload_bits(path, names):
    """Payload bits of the named tensors in a .bslz file (the container's per-tensor 'length')."""
    entries = ContainerReader(path).entries
    return 8 * sum(e["length"] for e in entries if e["name"] in names)


def fresh_model(data, args):
    torch.manual_seed(args.seed)
    return CharGPT(data.vocab, ctx=args.ctx, d=args.d, layers=args.layers, heads=args.heads)


def load_bslz_into(model_factory, path):
    m = model_factory()
    m.load_state_dict(bslz.torch.load_file(path))
    return m


def run_one(lam, data, args):
    model = fresh_model(data, args)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 1)  # same batches for every lambda
    total = args.steps + args.ft_steps
    bs = BackSlash(model, lam, step=args.delta, reestimate_every=args.K)
    hook_t, update_t, refit_t = Timer(), Timer(), Timer()
    orig_step = bs.step

    def timed_step():  # the hook as attached, timed; refit steps (estimate + report) counted apart
        refit = (bs.steps + 1) % bs.reestimate_every == 0
        t0 = time.perf_counter()
        with hook_t:
            orig_step()
        (refit_t if refit else update_t).total += time.perf_counter() - t0
        (refit_t if refit else update_t).count += 1

    bs.step = timed_step
    handle = bs.attach(opt) if lam > 0 else None
    step_t = Timer()  # whole training step, hook included
    curve, snap = [], None
    t_start = time.perf_counter()
    for it in range(total):
        if it == args.steps:  # end of the rate phase: snapshot, then plain fine-tuning
            if handle is not None:
                handle.remove()
            snap = phase_snapshot(model, bs, data, args, lam, "rate")
        for g in opt.param_groups:
            g["lr"] = lr_at(it, total, args.lr)
        x, y = data.batch(gen, args.batch)
        with step_t:
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if (it + 1) % args.log_every == 0 or it + 1 == total:
            acc, ce = evaluate(model, data, max_windows=128)
            r = bs.report() if lam > 0 else None
            curve.append(
                dict(
                    step=it + 1,
                    train_loss=loss.item(),
                    heldout_acc128=acc,
                    heldout_ce128=ce,
                    nu=bs.nu if r is None else r.nu,
                    sparsity=None if r is None else r.sparsity,
                    pred_bits=None if r is None else r.bits_per_param,
                )
            )
            print(
                f"  lam={lam:g} step {it + 1:5d} loss {loss.item():.3f} acc(128 win) {acc:.4f}"
                + ("" if r is None else f" nu {r.nu:.3f} sparsity {r.sparsity:.3f} pred {r.bits_per_param:.3f} b/p"),
                flush=True,
            )
    train_s = time.perf_counter() - t_start
    if snap is None:
        snap = phase_snapshot(model, bs, data, args, lam, "rate")
    bs.estimate()
    final = phase_snapshot(model, bs, data, args, lam, "final")
    torch.save(model.state_dict(), os.path.join(OUT, f"gpt_{lam:g}.pt"))
    hook_steps = hook_t.count
    plain = step_t.total - hook_t.total
    timing = dict(
        train_s=train_s,
        steps=total,
        step_ms=1e3 * step_t.mean,
        plain_step_ms=1e3 * plain / max(1, step_t.count),
        hook_ms=1e3 * hook_t.mean if hook_steps else 0.0,
        hook_update_ms=1e3 * update_t.mean if update_t.count else 0.0,
        hook_refit_ms=1e3 * refit_t.mean if refit_t.count else 0.0,
        hook_steps=hook_steps,
        hook_overhead=(
            hook_t.total / (step_t.total - hook_t.total) * (step_t.count / hook_steps) if hook_steps else 0.0
        ),
    )
    return dict(
        lam=lam,
        rate=snap,
        final=final,
        curve=curve,
        timing=timing,
        reports=[
            dict(steps=r.steps, nu=r.nu, beta=r.beta, sparsity=r.sparsity, bits_per_param=r.bits_per_param)
            for r in bs.reports
        ],
    )


def phase_snapshot(model, bs, data, args, lam, tag):
    """Float accuracy, export at Delta (and at Delta * the extra factors), reload, quantized accuracy."""
    acc, ce = evaluate(model, data)
    rep = bs.report()
    out = dict(
        float_acc=acc,
        float_ce=ce,
        nu=rep.nu,
        beta=rep.beta,
        sparsity=rep.sparsity,
        pred_bits_selected=rep.bits_per_param,
        num_selected=rep.num_params,
        exports={},
    )
    factory = lambda: fresh_model(data, args)  # noqa: E731
    for f in [1.0] + ([x for x in args.extra_delta if tag == "final"]):
        path = os.path.join(OUT, f"gpt_{lam:g}_{tag}_d{f:g}.bslz")
        exp = BackSlash(model, 0.0, step=args.delta * f) if f != 1.0 else bs
        cr = exp.export(path)
        qacc, qce = evaluate(load_bslz_into(factory, path), data)
        sel_bits = payload_bits(path, set(exp.steps_by_name()))
        out["exports"][f"{f:g}"] = dict(
            delta=args.delta * f,
            file_bytes=cr.compressed_bytes,
            float_params=cr.float_params,
            bits_per_param=cr.bits_per_float_param,
            snr_db=cr.aggregate_snr_db,
            selected_payload_bits_per_param=sel_bits / rep.num_params,
            acc=qacc,
            ce=qce,
            path=os.path.relpath(path, HERE),
        )
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lams", default="0,10,40,160")
    ap.add_argument("--steps", type=int, default=1200, help="rate-phase steps")
    ap.add_argument("--ft-steps", type=int, default=300, help="plain fine-tuning steps after the rate phase")
    ap.add_argument("--delta", type=float, default=0.01, help="planned quantizer step, the same for every lambda")
    ap.add_argument("--extra-delta", default="0.5,2", help="extra export steps, as factors of --delta")
    ap.add_argument("--K", type=int, default=100, help="reestimate_every (and report_every)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=300)
    ap.add_argument("--tag", default="gpt_pydoc")
    args = ap.parse_args()
    args.extra_delta = [float(x) for x in args.extra_delta.split(",") if x]
    set_threads(args.threads)
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    t0 = time.perf_counter()
    data = CharData(ctx=args.ctx, seed=args.seed)
    nparams = sum(p.numel() for p in fresh_model(data, args).parameters())
    print(
        f"data: vocab {data.vocab}, train {len(data.train)} chars, held-out {len(data.heldout)} chars "
        f"({len(data.held_keys)} topics); model {nparams} params; threads {torch.get_num_threads()}"
    )
    runs = []
    for lam in [float(x) for x in args.lams.split(",")]:
        runs.append(run_one(lam, data, args))
    wall = time.perf_counter() - t0
    fp32_bits = 32.0
    result = dict(
        args=vars(args),
        params=nparams,
        vocab=data.vocab,
        heldout_chars=len(data.heldout),
        runs=runs,
        wall_s=wall,
        fp32_bits_per_param=fp32_bits,
    )
    with open(os.path.join(HERE, "results", f"{args.tag}.json"), "w") as f:
        json.dump(result, f, indent=1)
    print_tables(result)
    print(f"\nwall time {wall:.0f} s ({wall / 60:.1f} min)")
    from plots import plot_gpt

    plot_gpt(result, os.path.join(HERE, f"{args.tag}.png"))


def print_tables(result):
    runs = result["runs"]
    base = next(r for r in runs if r["lam"] == 0)
    b0 = base["final"]["exports"]["1"]["bits_per_param"]
    s0 = base["final"]["exports"]["1"]["selected_payload_bits_per_param"]
    delta = result["args"]["delta"]
    print(
        f"\nTable 1: held-out next-char accuracy and .bslz size at Delta = {delta:g} (all lambda), "
        f"{result['params']} params"
    )
    print(
        "| lambda | phase | nu | sparsity | float acc | file acc | file bits/param | vs lam=0 file | vs fp32 "
        "| selected payload b/p | predicted b/p |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        for ph in ("rate", "final"):
            s = r[ph]
            e = s["exports"]["1"]
            print(
                f"| {r['lam']:g} | {ph} | {s['nu']:.3f} | {s['sparsity']:.3f} | {s['float_acc']:.4f} | "
                f"{e['acc']:.4f} | {e['bits_per_param']:.3f} | {100 * (1 - e['bits_per_param'] / b0):+.1f} % | "
                f"{100 * (1 - e['bits_per_param'] / 32):.1f} % | {e['selected_payload_bits_per_param']:.3f} | "
                f"{s['pred_bits_selected']:.3f} |"
            )
    print(
        "\n('vs lam=0 file': size reduction relative to the lam=0 final model exported at the same Delta, "
        f"{b0:.3f} bits/param whole file, {s0:.3f} b/p selected payload; 'vs fp32': relative to 32 bits/param)"
    )
    print("\nTable 1b: final models exported at other steps (accuracy of the loaded file, bits/param whole file)")
    facs = sorted(base["final"]["exports"], key=float)
    print("| lambda | " + " | ".join(f"Delta={float(f) * delta:g} acc | b/p" for f in facs) + " |")
    print("|---|" + "---|---|" * len(facs))
    for r in runs:
        ex = r["final"]["exports"]
        print(
            f"| {r['lam']:g} | "
            + " | ".join(f"{ex[f]['acc']:.4f} | {ex[f]['bits_per_param']:.3f}" for f in facs)
            + " |"
        )
    print("\nTable 1c: time per training step and hook overhead")
    print(
        "| lambda | train s | step ms (with hook) | plain part ms | hook ms/step | update-only ms | "
        "refit+report ms (every K) | overhead |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        t = r["timing"]
        print(
            f"| {r['lam']:g} | {t['train_s']:.0f} | {t['step_ms']:.1f} | {t['plain_step_ms']:.1f} | "
            f"{t['hook_ms']:.2f} | {t['hook_update_ms']:.2f} | {t['hook_refit_ms']:.1f} | "
            f"{100 * t['hook_overhead']:.1f} % |"
        )
    print(f"(plain step of the lam=0 run: {base['timing']['step_ms']:.1f} ms)")


if __name__ == "__main__":
    main()
