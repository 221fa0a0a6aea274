"""What a small tensor costs on its own: the time bslz spends per tensor, not per byte.

    PYTHONPATH=src:benchmarks python3 benchmarks/bench_small_tensors.py
    PYTHONPATH=<other worktree>/src:benchmarks python3 benchmarks/bench_small_tensors.py   # to compare

A model's norms and biases (MiniLM: 65 of its 104 tensors, 384 to 1536 values) weigh nothing, but
each goes through the whole path: its coding, its checksums, its entry, the writer. This times
`bslz.compress_bytes` and `bslz.decompress_bytes` of a file of 65 such bfloat16 tensors (normal
values, sd 0.05) of each size, best of 50 calls, divided by 65. Run the two revisions in turns:
single figures move by 10 % or more on a 2-core machine.
"""

import bslz
from timing import best_time

TENSORS = 65


def bfloat16_file(values, seed=0):
    """A safetensors image of TENSORS bfloat16 vectors of `values` values."""
    import torch
    from safetensors.torch import save

    generator = torch.Generator().manual_seed(seed)
    return save({f"t{i}": (torch.randn(values, generator=generator) * 0.05).bfloat16() for i in range(TENSORS)})


def main():
    print("| values a tensor | compress us a tensor | decompress us a tensor | ratio |")
    print("|---|---|---|---|")
    for values in (384, 1536, 8192):
        data = bfloat16_file(values)
        packed = bslz.compress_bytes(data)
        assert bytes(bslz.decompress_bytes(packed)) == data
        t_c, _ = best_time(lambda: bslz.compress_bytes(data), 50, warm_up=True)
        t_d, _ = best_time(lambda: bslz.decompress_bytes(packed), 50, warm_up=True)
        print(f"| {values} | {1e6 * t_c / TENSORS:.0f} | {1e6 * t_d / TENSORS:.0f} | {len(data) / len(packed):.3f} |")


if __name__ == "__main__":
    main()
