"""What `--bits` on a sharded checkpoint gives up: each shard is coded to the budget on its own (its
own step), where one file is coded at one step for every tensor (equal slope over the model).

    PYTHONPATH=src:benchmarks python benchmarks/bench_sharded_bits.py [--bf16-file minilm-bf16.safetensors]

MiniLM cast to bf16 is written once whole and once as two shards of unlike tensors (the embeddings,
then the encoder layers), with an index; each is compressed with `bslz compress ... --bits B`, and
the aggregate SNR over every float tensor (10 log10(sum w^2 / sum (w - w_hat)^2)) and the bits a
float parameter (compressed bytes x 8 / float parameters) are printed for each.
"""

import json
import os
import subprocess
import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file

import bslz.torch
from bench_container import minilm_bf16_workdir

BUDGETS = (4.936, 6.38, 7.978)


def shard(path, directory):
    """Two shards of the file's tensors in `directory`: the embeddings, then the rest; and the index."""
    tensors = load_file(path)
    first = {k: v for k, v in tensors.items() if k.startswith("embeddings.")}
    rest = {k: v for k, v in tensors.items() if k not in first}
    names = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    weight_map = {}
    for name, part in zip(names, (first, rest)):
        save_file(part, os.path.join(directory, name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def measure(original, compressed_files):
    """(bits a float parameter, aggregate SNR in dB) of the compressed files against the original tensors."""
    decoded = {}
    for path in compressed_files:
        decoded.update(bslz.torch.load_file(path))
    signal = noise = 0.0
    params = 0
    for name, w in original.items():
        if w.is_floating_point():
            w = w.double()
            signal += float((w * w).sum())
            noise += float(((w - decoded[name].double()) ** 2).sum())
            params += w.numel()
    size = sum(os.path.getsize(p) for p in compressed_files)
    return 8 * size / params, 10 * np.log10(signal / noise)


def main():
    with minilm_bf16_workdir(__doc__) as (work, whole):
        ckpt = os.path.join(work, "ckpt")
        os.mkdir(ckpt)
        shard(whole, ckpt)
        original = load_file(whole)
        print("| --bits | one file: bits, SNR dB | two shards: bits, SNR dB | SNR lost to shards |")
        print("|---|---|---|---|")
        for bits in BUDGETS:
            one, two = os.path.join(work, "one.bslz"), os.path.join(work, "ckpt.bslz")
            for src, dst in ((whole, one), (ckpt, two)):
                cmd = [sys.executable, "-m", "bslz.cli", "compress", src, "-o", dst, "--bits", str(bits), "-f", "-q"]
                subprocess.run(cmd, check=True)
            shards = sorted(os.path.join(two, n) for n in os.listdir(two) if n.endswith(".bslz"))
            (b1, s1), (b2, s2) = measure(original, [one]), measure(original, shards)
            print(f"| {bits} | {b1:.4f}, {s1:.3f} | {b2:.4f}, {s2:.3f} | {s1 - s2:.3f} dB |")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
