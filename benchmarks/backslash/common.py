"""Shared pieces of the BackSlash reproduction: pydoc text, a small character-level GPT, training, eval.

Data: the English text of Python's own `pydoc_data.topics` (79 documentation topics, ~465k characters).
The topics are shuffled with a fixed seed and about 10 % of the characters (whole topics) are held out.
"""

import math
import os
import random
import time

import torch
from torch import nn
from torch.nn import functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")


def set_threads(n=2):
    torch.set_num_threads(n)
    torch.set_num_interop_threads(1)


# ---- data -------------------------------------------------------------------------------------------


def pydoc_split(held_out_share=0.10, seed=0):
    """(train_text, heldout_text, keys_heldout): whole topics held out until >= held_out_share of chars."""
    from pydoc_data.topics import topics

    keys = sorted(topics)
    random.Random(seed).shuffle(keys)
    total = sum(len(topics[k]) for k in keys)
    held, n = [], 0
    for k in keys:
        if n >= held_out_share * total:
            break
        if n + len(topics[k]) > 2 * held_out_share * total:  # skip a topic too big to hold out alone
            continue
        held.append(k)
        n += len(topics[k])
    train = "\n\n".join(topics[k] for k in keys if k not in held)
    heldout = "\n\n".join(topics[k] for k in held)
    return train, heldout, held


class CharData:
    def __init__(self, ctx=128, seed=0):
        train, heldout, self.held_keys = pydoc_split(seed=seed)
        chars = sorted(set(train) | set(heldout))
        self.itos = chars
        self.stoi = {c: i for i, c in enumerate(chars)}
        self.vocab = len(chars)
        self.ctx = ctx
        self.train = torch.tensor([self.stoi[c] for c in train], dtype=torch.long)
        self.heldout = torch.tensor([self.stoi[c] for c in heldout], dtype=torch.long)
        # fixed evaluation windows over the held-out text (non-overlapping)
        n = (len(self.heldout) - 1) // ctx
        self.eval_x = self.heldout[: n * ctx].view(n, ctx)
        self.eval_y = self.heldout[1 : n * ctx + 1].view(n, ctx)

    def batch(self, gen, batch_size):
        i = torch.randint(0, len(self.train) - self.ctx - 1, (batch_size,), generator=gen)
        off = torch.arange(self.ctx)
        x = self.train[i[:, None] + off]
        y = self.train[i[:, None] + off + 1]
        return x, y


# ---- model ------------------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, d, heads, mlp=4):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, mlp * d)
        self.out = nn.Linear(mlp * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class CharGPT(nn.Module):
    def __init__(self, vocab, ctx=128, d=128, layers=2, heads=4):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, x):
        t = x.shape[1]
        h = self.tok(x) + self.pos(torch.arange(t, device=x.device))
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.ln(h))


@torch.no_grad()
def evaluate(model, data, max_windows=None, batch=64):
    """(held-out next-character accuracy, mean cross-entropy in nats) over the fixed windows."""
    model.eval()
    xs, ys = data.eval_x, data.eval_y
    if max_windows:
        xs, ys = xs[:max_windows], ys[:max_windows]
    correct, loss, n = 0, 0.0, 0
    for i in range(0, len(xs), batch):
        logits = model(xs[i : i + batch])
        y = ys[i : i + batch]
        correct += (logits.argmax(-1) == y).sum().item()
        loss += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        n += y.numel()
    model.train()
    return correct / n, loss / n


def lr_at(step, total, peak, warmup=50, floor=0.1):
    """Linear warmup, then cosine decay to floor * peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p)))


class Timer:
    """Accumulates wall seconds of `with timer:` blocks."""

    def __init__(self):
        self.total, self.count = 0.0, 0

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.total += time.perf_counter() - self.t0
        self.count += 1

    @property
    def mean(self):
        return self.total / self.count if self.count else float("nan")


def magnitude_prune_(model, select_names, rate):
    """Zero the `rate` share of smallest-|w| entries of the named parameters, one global threshold."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        if rate <= 0:
            return 0.0
        allw = torch.cat([params[n].detach().abs().flatten() for n in select_names])
        k = int(rate * allw.numel())
        if k == 0:
            return 0.0
        thr = torch.kthvalue(allw, k).values
        for n in select_names:
            p = params[n]
            p.masked_fill_(p.abs() <= thr, 0.0)
        return thr.item()


def load_gpt_run():
    """(results of gpt_pydoc.py as saved in results/gpt_pydoc.json, its args, its CharData split)."""
    import json

    with open(os.path.join(HERE, "results", "gpt_pydoc.json")) as f:
        results = json.load(f)
    args = results["args"]
    return results, args, CharData(ctx=args["ctx"], seed=args["seed"])
