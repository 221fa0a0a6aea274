"""What the Python around bslz's kernels costs when threads decode side by side (stop 31's figures).

    PYTHONPATH=src:benchmarks python benchmarks/bench_gil_waits.py [--bf16-file minilm-bf16.safetensors]

A thread that calls a kernel, a checksum or a torch function lets the GIL go, and on its return
waits to take it back behind the other threads' Python. Measured on MiniLM cast to bf16 (as
`bench_container.py` writes it), compressed at `--bits 7.978`:

1. `bslz.torch.load_file`: its best time; the time summed over its calls of `as_tensor` (the
   revision's own, then stop 31's in parts: the numpy shaping, `torch.from_numpy`, the view to a
   dtype numpy lacks), and of `.to("cpu")` called on each tensor as `load_file` did before stop 31
   (`safe_open(...).iter_tensors()`). With `PYTHONPATH=<worktree of an older revision>/src:benchmarks`
   the first two rows are that revision's.
2. One chunk (262144 values) of the bf16 word embeddings, one thread: `encode_chunk` of its
   lossless coding, and for its `--bits` coding the parts of decoding it (`rans.read_header`,
   `dq_rans.level_words`, and the whole `dq_rans.decode_chunk` with a table made for the chunk
   and with one already made); and `rans.read_header` of a header longer than the bytes parsed
   first (synthetic symbols).
"""

import os
import time

import numpy as np

import bslz
import bslz.reader as reader
import bslz.torch
from bench_container import minilm_bf16_workdir
from bslz.codec import _float_chunks as FC
from bslz.codec import dq_rans, floats, rans
from bslz.formats.container import ContainerReader
from bslz.formats.dtypes import from_float32, lookup
from bslz.formats.safetensors_io import read_safetensors
from timing import best_time

ROUNDS = 20


def load_file_parts(path):
    """{part: ms a load}: load_file's best time, then, summed over a load's tensors, as_tensor's
    parts and what `.to("cpu")` on each tensor took (means over ROUNDS loads)."""
    best, _ = best_time(lambda: bslz.torch.load_file(path), ROUNDS, warm_up=True)
    plain = reader.as_tensor
    whole = [0.0]

    def whole_as_tensor(*args):
        t0 = time.perf_counter()
        tensor = plain(*args)
        whole[0] += time.perf_counter() - t0
        return tensor

    reader.as_tensor = whole_as_tensor
    try:
        for _ in range(ROUNDS):
            bslz.torch.load_file(path)
    finally:
        reader.as_tensor = plain
    sums = {"numpy shaping": 0.0, "torch.from_numpy": 0.0, "torch view": 0.0, '.to("cpu")': 0.0}

    def timed_as_tensor(raw, dtype_name, shape, framework):
        import torch

        from bslz._torch_dtypes import torch_dtype

        dtype, target = lookup(dtype_name), torch_dtype(dtype_name)
        t0 = time.perf_counter()
        words = np.ascontiguousarray(raw).view(dtype.numpy_dtype or dtype.word_dtype).reshape(tuple(shape))
        t1 = time.perf_counter()
        tensor = torch.from_numpy(words)
        t2 = time.perf_counter()
        if tensor.dtype != target:
            tensor = tensor.view(target)
        t3 = time.perf_counter()
        sums["numpy shaping"] += t1 - t0
        sums["torch.from_numpy"] += t2 - t1
        sums["torch view"] += t3 - t2
        return tensor

    reader.as_tensor = timed_as_tensor
    try:
        for _ in range(ROUNDS):
            with bslz.safe_open(path, framework="pt") as f:
                for _, tensor in f.iter_tensors():
                    t0 = time.perf_counter()
                    tensor.to("cpu")
                    sums['.to("cpu")'] += time.perf_counter() - t0
    finally:
        reader.as_tensor = plain
    parts = {f"as_tensor's {k}": 1e3 * v / ROUNDS for k, v in sums.items() if k != '.to("cpu")'}
    return {
        "load_file (best)": 1e3 * best,
        "as_tensor, this revision's": 1e3 * whole[0] / ROUNDS,
        **parts,
        '.to("cpu") on each tensor': 1e3 * sums['.to("cpu")'] / ROUNDS,
    }


def chunk_parts(bf16_path, lossy_path):
    """{part: us} for one embedding chunk, one thread (best of ROUNDS)."""
    name, c = "embeddings.word_embeddings.weight", 10
    source = read_safetensors(bf16_path)
    info = next(t for t in source.tensors if t.name == name)
    words = source.tensor_bytes(info).view(np.uint16)
    widths, shifts, sign_pos, low_bits = floats.kernel_args(floats.get_layout("bfloat16"))
    lo, hi = c * 262144, (c + 1) * 262144
    out = {}
    out["lossless encode_chunk"] = best_time(
        lambda: FC.encode_chunk(words, lo, hi, sign_pos, low_bits, widths, shifts, floats.eg.MAX_ORDER), ROUNDS, True
    )[0]
    r = ContainerReader(lossy_path)
    e = r.entry(name)
    chunks = []  # the tensor's chunks, as the reader hands them to the decoder
    plain = dq_rans.decode_chunk
    dq_rans.decode_chunk = lambda chunk, *args: chunks.append(bytes(chunk)) or plain(chunk, *args)
    try:
        r.decode_raw(name)
    finally:
        dq_rans.decode_chunk = plain
        r.close()
    chunk = np.frombuffer(chunks[c], dtype=np.uint8)
    bf16 = lookup("BF16")

    def to_words(v):
        return from_float32(v, bf16)

    max_symbol = rans.read_header(chunk)[0]
    words_out = np.empty(262144, dtype=np.uint16)
    out["lossy: rans.read_header"] = best_time(lambda: rans.read_header(chunk), ROUNDS, True)[0]
    long_header = np.frombuffer(  # a table of thousands of symbols: more than the first bytes parsed
        rans.encode_rans(np.minimum(np.random.default_rng(1).exponential(300, 147456), 4095).astype(np.uint16)),
        dtype=np.uint8,
    )
    out["rans.read_header, a 1234-byte header (synthetic)"] = best_time(
        lambda: rans.read_header(long_header), ROUNDS, True
    )[0]
    out["lossy: level_words"] = best_time(
        lambda: dq_rans.level_words(max_symbol, e["step"], np.float32, to_words), ROUNDS, True
    )[0]
    out["lossy: decode_chunk, table made for it"] = best_time(
        lambda: dq_rans.decode_chunk(chunk, e["step"], e["dq_block"], np.float32, to_words, words_out), ROUNDS, True
    )[0]
    if hasattr(dq_rans, "LevelTables"):  # (a revision before stop 31 made a table for each chunk)
        tables = dq_rans.LevelTables(e["step"], np.float32, to_words)
        tables.covering(max_symbol)
        out["lossy: decode_chunk, table shared"] = best_time(
            lambda: dq_rans.decode_chunk(chunk, e["step"], e["dq_block"], np.float32, to_words, words_out, tables),
            ROUNDS,
            True,
        )[0]
    return {k: 1e6 * v for k, v in out.items()}


def main():
    with minilm_bf16_workdir(__doc__) as (work, bf16):
        lossy = os.path.join(work, "lossy.bslz")
        bslz.compress_file(bf16, lossy, bits=7.978)
        print("## bslz.torch.load_file, MiniLM bf16 at --bits 7.978 (ms a load)\n")
        print("| part | ms |\n|---|---|")
        for k, v in load_file_parts(lossy).items():
            print(f"| {k} | {v:.2f} |")
        print("\n## One chunk of the bf16 word embeddings (262144 values), one thread (us, best of 20)\n")
        print("| part | us |\n|---|---|")
        for k, v in chunk_parts(bf16, lossy).items():
            print(f"| {k} | {v:.0f} |")


if __name__ == "__main__":
    main()
