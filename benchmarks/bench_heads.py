"""What Huffman-coded float heads (format 1.2) buy against rANS-coded ones, on MiniLM.

    PYTHONPATH=src:benchmarks python3 benchmarks/bench_heads.py [--rounds 7] [--chunk-only]

1. One chunk (256 Ki values) of the bf16 word embeddings' heads, one thread: `decode_huffman` and
   `decode_rans`, `encode_huffman` and `encode_rans`, in interleaved rounds, ns a symbol, and each
   stream's size; and whole chunks (head and tail) of the bf16 and f32 embeddings through
   `encode_floats` / `decode_floats`.
2. Every head chunk of every MiniLM tensor of 256 Ki values or more: how much smaller rANS codes
   it than Huffman (the default rule keeps Huffman unless rANS saves 1/32 = 3.1 %).
3. Whole files (MiniLM in f32, bf16, f16): each compressed twice by the same bslz, once with the
   default rule (rANS only where it saves 1/32 of Huffman's size) and once with rANS wherever it is
   smaller (floats.RANS_MIN_GAIN_OVER_HUFFMAN set huge, the choice of format 1.1); both files are
   decoded in interleaved rounds with `bslz.torch.load_file` and `bslz.decompress_file` (tmpfs).
"""

import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

import bslz
import bslz.torch
from bench_container import build_files
from bslz.codec import floats
from bslz.codec.huffman import decode_huffman, encode_huffman
from bslz.codec.rans import decode_rans, encode_rans
from timing import best_times_interleaved

CHUNK = 1 << 18


def embedding_words(path, word_dtype):
    """The first CHUNK words of MiniLM's word embeddings in the file's float dtype."""
    import torch
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        tensor = f.get_tensor("embeddings.word_embeddings.weight")
    return tensor.view({np.uint16: torch.uint16, np.uint32: torch.uint32}[word_dtype]).numpy().reshape(-1)[:CHUNK]


def one_chunk(path, f32_path, rounds):
    words = embedding_words(path, np.uint16)
    layout = floats.get_layout("bfloat16")
    width = layout.pieces()[0][1]
    heads = ((words >> layout.low_bits) & ((1 << width) - 1)).astype(np.uint16)
    huffman, rans = encode_huffman(heads), encode_rans(heads)
    out = np.zeros(CHUNK, np.uint16)
    repeat = 20

    def repeated(call):
        return lambda: [call() for _ in range(repeat)]

    def timed(decode, buf, **kw):
        return repeated(lambda: decode(buf, CHUNK, out=out, shift=layout.low_bits, **kw))

    def encoded(encode):
        return repeated(lambda: encode(heads))

    # whole chunks (head and tail pieces) as the container codes them: one kernel call each way
    chunks = {"bf16": ("bfloat16", words), "f32": ("float32", embedding_words(f32_path, np.uint32))}
    coded = {name: floats.encode_floats(w, layout_name, workers=1) for name, (layout_name, w) in chunks.items()}
    back = {name: np.zeros(CHUNK, w.dtype) for name, (_, w) in chunks.items()}

    def chunk_pair(name):
        layout_name, w = chunks[name]
        return [
            repeated(lambda: floats.encode_floats(w, layout_name, workers=1)),
            repeated(lambda: floats.decode_floats(coded[name], out=back[name], workers=1)),
        ]

    limit = (1 << width) - 1
    t_h, t_r, e_h, e_r, *chunk_times = best_times_interleaved(
        [
            timed(decode_huffman, huffman),
            timed(decode_rans, rans, limit=limit),
            encoded(encode_huffman),
            encoded(encode_rans),
            *(call for name in chunks for call in chunk_pair(name)),
        ],
        rounds,
    )
    assert all(np.array_equal(back[name], w) for name, (_, w) in chunks.items())
    print("## One chunk of bf16 heads (256 Ki values, one thread)\n")
    print("| coder | bytes | decode ns a symbol | encode ns a symbol |\n|---|---|---|---|")
    print(f"| Huffman | {len(huffman)} | {1e9 * t_h / repeat / CHUNK:.2f} | {1e9 * e_h / repeat / CHUNK:.2f} |")
    print(f"| rANS | {len(rans)} | {1e9 * t_r / repeat / CHUNK:.2f} | {1e9 * e_r / repeat / CHUNK:.2f} |")
    for j, name in enumerate(chunks):
        c_e, c_d = chunk_times[2 * j : 2 * j + 2]
        print(
            f"| whole {name} chunk (head and tail, `encode_floats` / `decode_floats`) | {len(coded[name].payload)} |"
            f" {1e9 * c_d / repeat / CHUNK:.2f} | {1e9 * c_e / repeat / CHUNK:.2f} |"
        )
    print()


def head_savings(paths):
    import torch
    from safetensors import safe_open

    print("## rANS's saving over Huffman on every head chunk (tensors of 256 Ki values or more)\n")
    print("| dtype | chunks | median | 10th percentile | 90th percentile | largest |\n|---|---|---|---|---|---|")
    for name, path in paths.items():
        layout = floats.get_layout({"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[name])
        width = layout.pieces()[0][1]
        savings = []
        with safe_open(path, "pt") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                if not t.is_floating_point() or t.numel() < CHUNK:
                    continue
                words = t.view({2: torch.uint16, 4: torch.uint32}[t.element_size()]).numpy().reshape(-1)
                step = floats.default_chunk_size(layout)
                for lo in range(0, words.size, step):
                    chunk = words[lo : lo + step]
                    heads = ((chunk >> layout.low_bits) & ((1 << width) - 1)).astype(np.uint16)
                    huffman = len(encode_huffman(heads))
                    savings.append(1 - len(encode_rans(heads)) / huffman)
        q = 100 * np.percentile(savings, [50, 10, 90, 100])
        print(f"| {name} | {len(savings)} | {q[0]:.2f} % | {q[1]:.2f} % | {q[2]:.2f} % | {q[3]:.2f} % |")
    print()


def whole_files(paths, workdir, rounds):
    print(f"## Whole files: heads Huffman (default) against rANS wherever smaller (best of {rounds}, MB/s)\n")
    print("| dtype | ratio, default | ratio, rANS heads | load_file | load_file, rANS heads | × |", end="")
    print(" decompress_file | decompress_file, rANS heads | × |")
    print("|---|---|---|---|---|---|---|---|---|")
    default_gain = floats.RANS_MIN_GAIN_OVER_HUFFMAN
    for name, path in paths.items():
        size = os.path.getsize(path)
        files = {}
        for kind, gain in (("default", default_gain), ("rans", sys.maxsize)):
            floats.RANS_MIN_GAIN_OVER_HUFFMAN = gain
            try:
                files[kind] = os.path.join(workdir, f"{name}.{kind}.bslz")
                bslz.compress_file(path, files[kind], overwrite=True)
            finally:
                floats.RANS_MIN_GAIN_OVER_HUFFMAN = default_gain
        back = os.path.join(workdir, "back.safetensors")
        bslz.torch.load_file(files["default"])  # warm-up: compile
        bslz.torch.load_file(files["rans"])
        t = best_times_interleaved(
            [
                lambda: bslz.torch.load_file(files["default"]),
                lambda: bslz.torch.load_file(files["rans"]),
                lambda: bslz.decompress_file(files["default"], back, overwrite=True),
                lambda: bslz.decompress_file(files["rans"], back, overwrite=True),
            ],
            rounds,
        )
        mbs = [size / x / 1e6 for x in t]
        ratios = [size / os.path.getsize(files[k]) for k in ("default", "rans")]
        print(
            f"| {name} | {ratios[0]:.4f} | {ratios[1]:.4f} | {mbs[0]:.0f} | {mbs[1]:.0f} | {mbs[0] / mbs[1]:.2f} |"
            f" {mbs[2]:.0f} | {mbs[3]:.0f} | {mbs[2] / mbs[3]:.2f} |"
        )
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk-only", action="store_true", help="only the one-chunk table (1)")
    args = parser.parse_args()
    base = "/dev/shm" if os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free > 2 << 30 else None
    with tempfile.TemporaryDirectory(prefix="bslz-heads-", dir=base) as workdir:
        paths = build_files(workdir)
        one_chunk(paths["BF16"], paths["F32"], args.rounds)
        if args.chunk_only:
            return
        head_savings(paths)
        whole_files(paths, workdir, args.rounds)


if __name__ == "__main__":
    main()
