"""What bounds the BF16 lossless speed targets on this machine, measured (MiniLM cast to bf16).

    PYTHONPATH=src:benchmarks python3 benchmarks/bench_limits.py [--rounds 5]

1. Two threads: how much faster two threads run work that one thread runs in turn, for a loop
   bound by latency (a chain of dependent multiplies), bslz's Huffman decode kernel on one bf16
   head chunk, ZipNN's decompress (its `threads=1` against `threads=2`) and bslz's `decode_floats`
   (workers=1 against 2). Two separate cores give ~2x to all four.
2. Page faults: ZipNN, zstd-3 and bslz (codec only, as bench_container times it) in two child
   processes, one with glibc's default allocator settings and one where freed memory is kept and
   reused (mallopt M_MMAP_THRESHOLD = 1 GiB, M_TRIM_THRESHOLD = 2 GiB), so that output buffers do
   not fault in fresh pages on every call. MB/s of the original bytes.
3. The split of a bf16 word: the file's ratio when the Huffman-coded head holds the exponent and
   2 (bslz), 1 or 0 (ZipNN's byte split) top mantissa bits, the rest of each word coded by the
   smallest segment method (raw, in practice). Fewer bits in the head make the tail a whole byte,
   what a fast decoder wants, and cost ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading

import numpy as np

from bench_container import minilm_bf16, work_base

HERE = os.path.dirname(os.path.abspath(__file__))
CHUNK = 1 << 18
MB = 1e6


def two_threads(path, rounds):
    import numba
    import zipnn

    from bslz.codec import floats
    from bslz.codec.huffman import decode_huffman, encode_huffman, huffman_code
    from bslz.codec.rans import histogram
    from timing import best_time

    @numba.njit(nogil=True, cache=True)
    def latency_chain(n):
        x = np.uint64(1)
        for _ in range(n):
            x = x * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
        return x

    data = open(path, "rb").read()
    words = _bf16_words(path)
    head = (words[:CHUNK] >> np.uint16(5)) & np.uint16(1023)
    coded = np.frombuffer(bytes(encode_huffman(head, huffman_code(histogram(head)[:1024]))), dtype=np.uint8)

    def huffman_job(repeats):
        out = np.empty(CHUNK, dtype=np.uint16)
        for _ in range(repeats):
            decode_huffman(coded, CHUNK, out=out, shift=5, limit=1023)

    def in_turn_and_side_by_side(job):
        job()  # compile
        one, _ = best_time(lambda: (job(), job()), rounds)
        both, _ = best_time(lambda: _side_by_side(job), rounds)
        return one / both

    rows = [
        ("latency-bound loop (dependent multiplies)", in_turn_and_side_by_side(lambda: latency_chain(20_000_000))),
        ("bslz Huffman decode, one bf16 head chunk x 40", in_turn_and_side_by_side(lambda: huffman_job(40))),
    ]
    z1 = zipnn.ZipNN(input_format="byte", bytearray_dtype="bfloat16", threads=1)
    z2 = zipnn.ZipNN(input_format="byte", bytearray_dtype="bfloat16", threads=2)
    packed = z2.compress(bytes(bytearray(data)))  # ZipNN rewrites its input in place: a copy
    t1, _ = best_time(lambda: z1.decompress(packed), rounds, warm_up=True)
    t2, _ = best_time(lambda: z2.decompress(packed), rounds, warm_up=True)
    rows.append(("ZipNN 0.5.4 decompress, whole file (threads=1 / threads=2)", t1 / t2))
    enc = floats.encode_floats(words, "bfloat16")
    out = np.empty(words.size, dtype=np.uint16)
    t1, _ = best_time(lambda: floats.decode_floats(enc, out, workers=1), rounds, warm_up=True)
    t2, _ = best_time(lambda: floats.decode_floats(enc, out, workers=2), rounds, warm_up=True)
    rows.append(("bslz decode_floats, all bf16 weights in one array (workers=1 / 2)", t1 / t2))
    print(f"## Two threads against one (best of {rounds}; 2.0x = two separate cores)\n")
    print("| work | speed-up with two threads |\n|---|---|")
    for name, speedup in rows:
        print(f"| {name} | {speedup:.2f}x |")
    print()


def _side_by_side(job):
    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _bf16_words(path):
    from bslz.formats.safetensors_io import read_safetensors

    source = read_safetensors(path)
    parts = [np.array(source.tensor_bytes(t)).view(np.uint16) for t in source.tensors if t.dtype == "BF16"]
    return np.concatenate(parts)


CHILD = r"""
import ctypes, json, math, os, sys
if sys.argv[3] == "reuse":
    libc = ctypes.CDLL("libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    assert libc.mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1 and libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1) == 1
import numpy as np, zipnn, zstandard
from bench_container import codec_only_lossless
from timing import best_times_interleaved
path, bslz_path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[4])
data = open(path, "rb").read()
z = zipnn.ZipNN(input_format="byte", bytearray_dtype="bfloat16", threads=min(len(os.sched_getaffinity(0)), 16))
copies = iter([bytes(bytearray(data)) for _ in range(rounds + 1)])  # ZipNN rewrites its input
zpacked = z.compress(next(copies))
zc, zd = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
spacked = zc.compress(data)
encode, decode, close = codec_only_lossless(path, bslz_path)
fns = {
    "ZipNN compress": lambda: z.compress(next(copies)),
    "ZipNN decompress": lambda: z.decompress(zpacked),
    "zstd-3 compress": lambda: zc.compress(data),
    "zstd-3 decompress": lambda: zd.decompress(spacked),
    "bslz codec-only compress": encode,
    "bslz codec-only decompress": decode,
}
times = best_times_interleaved(list(fns.values()), rounds)
print(json.dumps({name: len(data) / 1e6 / t for name, t in zip(fns, times)}))
"""


def page_faults(path, workdir, rounds):
    import bslz

    bslz_path = os.path.join(workdir, "minilm-bf16.bslz")
    bslz.compress_file(path, bslz_path, overwrite=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(HERE, "..", "src"), HERE]))
    results = {}
    for mode in ("default", "reuse"):
        run = subprocess.run(
            [sys.executable, "-c", CHILD, path, bslz_path, mode, str(rounds)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results[mode] = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"## Page faults: fresh output pages on every call, or freed memory reused (MB/s, best of {rounds})\n")
    print("| call | glibc default | freed memory reused | reused / default |\n|---|---|---|---|")
    for name in results["default"]:
        a, b = results["default"][name], results["reuse"][name]
        print(f"| {name} | {a:.0f} | {b:.0f} | {b / a:.2f}x |")
    print()


def head_split(path):
    """Ratio of the file with heads of 2, 1 and 0 mantissa bits (the rest of each word: the
    smallest segment method), every other byte of the file as bslz writes it."""
    import bslz
    from bslz.codec import floats
    from bslz.formats.container import ContainerReader
    from bslz.formats.safetensors_io import read_safetensors

    source = read_safetensors(path)
    tensors = [np.array(source.tensor_bytes(t)).view(np.uint16) for t in source.tensors if t.dtype == "BF16"]
    with tempfile.TemporaryDirectory() as d:
        packed = os.path.join(d, "m.bslz")
        bslz.compress_file(path, packed)
        file_size = os.path.getsize(packed)
        reader = ContainerReader(packed)
        float_payload = sum(e["length"] for e in reader.entries if e["coding"] == "float")
        reader.close()
    chunk = floats.default_chunk_size(floats.get_layout("bfloat16"))
    print("## The split of a bf16 word: head (Huffman) = exponent + j mantissa bits, the rest a tail\n")
    print("| head mantissa bits j | head / tail bits | float payload bytes | file ratio |\n|---|---|---|---|")
    for j in (2, 1, 0):
        low = 7 - j
        payload = 0
        for words in tensors:
            payload += 8 * (-(-words.size // chunk) + 1)  # the chunk table
            for lo in range(0, words.size, chunk):
                w = words[lo : lo + chunk].astype(np.uint32)
                head = ((w >> low) & ((1 << (8 + j)) - 1)).astype(np.uint16)
                tail = (((w >> 15) << low) | (w & ((1 << low) - 1))).astype(np.uint16)
                for values, width in ((head, 8 + j), (tail, 1 + low)):
                    payload += floats.SEGMENT_HEADER.itemsize + len(floats.encode_segment(values, width)[3])
        if j == 2:  # the same computation as the encoder's: it must give the file's own bytes
            assert payload == float_payload, (payload, float_payload)
        ratio = os.path.getsize(path) / (file_size - float_payload + payload)
        tag = " (bslz's)" if j == 2 else " (ZipNN's byte split)" if j == 0 else ""
        print(f"| {j}{tag} | {8 + j} / {1 + low} | {payload} | {ratio:.4f} |")
    print(f"\nThe bslz file itself: ratio {os.path.getsize(path) / file_size:.4f}; the issue's ZipNN ratio: 1.504.\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--bf16-file", metavar="PATH", help="MiniLM in bf16 (bench_container.py writes it), if not built here"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bslz-limits-", dir=work_base()) as workdir:
        path = minilm_bf16(workdir, args.bf16_file)
        two_threads(path, args.rounds)
        page_faults(path, workdir, args.rounds)
        head_split(path)
    print(f"load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
