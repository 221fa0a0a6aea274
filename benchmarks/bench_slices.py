"""Reading rows of a tensor, as a tensor-parallel loader does: `get_slice(name)[rows]` of MiniLM
bf16's word embeddings (30522 x 384, the file's largest tensor), split into 8 shards of rows.

    PYTHONPATH=src:benchmarks python benchmarks/bench_slices.py [--bf16-file minilm-bf16.safetensors]

For the lossless .bslz file and for one at --bits 6.38: the whole tensor (`get_tensor`), and the 8
row shards one after another (`get_slice(name)[rows]`, each read and checked on its own: what each
rank of a tensor-parallel load does), against safetensors' own `get_slice` of the original file,
in ms, best of ROUNDS interleaved rounds (the files on a tmpfs, each `safe_open`ed once). A
lossless float tensor's shard decodes only its chunks (262144 values, about 683 rows) and a
quantized one (`--bits`) its stream's chunks (as many values); it reads and checks only the pieces
of the payload (format 1.3's piece checksums) that hold its tables and those chunks. The last
columns give the payload bytes a shard reads from the file (mean of the 8 shards, counted in a
pass of its own, untimed), against the whole payload's.
"""

import os

import safetensors
import torch

import bslz
from bench_container import minilm_bf16_workdir
from bslz.formats.container import ContainerReader
from timing import best_times_interleaved

NAME = "embeddings.word_embeddings.weight"
SHARDS = 8
ROUNDS = 15


def main():
    with minilm_bf16_workdir(__doc__) as (work, path):
        lossless, lossy = os.path.join(work, "l.bslz"), os.path.join(work, "q.bslz")
        bslz.compress_file(path, lossless)
        bslz.compress_file(path, lossy, bits=6.38)
        with (
            safetensors.safe_open(path, "pt") as theirs,
            bslz.safe_open(lossless, "pt") as ours,
            bslz.safe_open(lossy, "pt") as ours_lossy,
        ):
            rows = theirs.get_slice(NAME).get_shape()[0]
            shards = [slice(j * rows // SHARDS, (j + 1) * rows // SHARDS) for j in range(SHARDS)]
            whole = theirs.get_tensor(NAME)
            lossy_whole = ours_lossy.get_tensor(NAME)
            for shard in shards:  # the rows are the tensor's, before anything is timed
                assert torch.equal(ours.get_slice(NAME)[shard], whole[shard])
                assert torch.equal(ours_lossy.get_slice(NAME)[shard], lossy_whole[shard])

            def all_shards(f):
                return lambda: [f.get_slice(NAME)[shard] for shard in shards]

            calls = {
                "safetensors: get_tensor": lambda: theirs.get_tensor(NAME),
                f"safetensors: {SHARDS} shards": all_shards(theirs),
                "bslz lossless: get_tensor": lambda: ours.get_tensor(NAME),
                f"bslz lossless: {SHARDS} shards": all_shards(ours),
                "bslz --bits 6.38: get_tensor": lambda: ours_lossy.get_tensor(NAME),
                f"bslz --bits 6.38: {SHARDS} shards": all_shards(ours_lossy),
            }
            times = dict(zip(calls, best_times_interleaved(list(calls.values()), ROUNDS)))
            read = {
                "bslz lossless": shard_bytes_read(ours, shards),
                "bslz --bits 6.38": shard_bytes_read(ours_lossy, shards),
            }
            payload = {
                "bslz lossless": ours.reader.entry(NAME)["length"],
                "bslz --bits 6.38": ours_lossy.reader.entry(NAME)["length"],
            }
    print(f"## Rows of {NAME} ({rows} x 384, bf16) in {SHARDS} shards: ms, best of {ROUNDS} rounds\n")
    print(
        f"| file | whole tensor | {SHARDS} shards, one after another | a shard (mean) | whole / a shard |"
        " payload MB a shard reads | payload MB |"
    )
    print("|---|---|---|---|---|---|---|")
    for tool in ("safetensors", "bslz lossless", "bslz --bits 6.38"):
        t_whole, t_shards = times[f"{tool}: get_tensor"], times[f"{tool}: {SHARDS} shards"]
        sizes = f" {read[tool] / 1e6:.2f} | {payload[tool] / 1e6:.2f} |" if tool in read else "  |  |"
        print(
            f"| {tool} | {1e3 * t_whole:.2f} | {1e3 * t_shards:.2f} | {1e3 * t_shards / SHARDS:.2f} |"
            f" {t_whole / (t_shards / SHARDS):.1f} |{sizes}"
        )


def shard_bytes_read(opened, shards):
    """The payload bytes a shard reads from the file, mean over the shards."""
    counted = []
    original = ContainerReader._read_payload_bytes

    def counting(self, entry, out, lo, hi):
        counted.append(hi - lo)
        return original(self, entry, out, lo, hi)

    ContainerReader._read_payload_bytes = counting
    try:
        for shard in shards:
            opened.get_slice(NAME)[shard]
    finally:
        ContainerReader._read_payload_bytes = original
    return sum(counted) / len(shards)


if __name__ == "__main__":
    main()
