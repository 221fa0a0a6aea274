"""One benchmark job in its own process, so that its peak memory is its own.

    python worker.py JOB_JSON RESULT_JSON

Run by run_all.py, with the main interpreter (bslz, zstd, lz4, ZipNN) or the peers venv's (NNCodec,
DFloat11). Every tool goes file -> file (tmpfs): compress reads the original file(s) and writes the
compressed one(s), decompress reads those and writes safetensors back; MB/s are of original bytes.
A directory input (a sharded checkpoint) is coded shard by shard, the index and other files copied
(bslz: the CLI's directory code path, which also writes its rewritten index).

Result: compressed bytes, best-of-N compress / decompress seconds, peak RSS of this process
(ru_maxrss) and RSS after imports, and for lossless tools whether every file came back identical.
"""

import hashlib
import json
import math
import os
import resource
import shutil
import sys
import time


def rss_now_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def safetensors_header(data):
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), 8 + n


# ---- lossless byte coders: (compress(bytes, dtype) -> bytes, decompress(bytes, dtype) -> bytes) ----


def zstd_coder(level):
    import zstandard

    c, d = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
    return (lambda b, dt: c.compress(b)), (lambda b, dt: d.decompress(b))


def lz4_coder():
    import lz4.frame

    return (lambda b, dt: lz4.frame.compress(b)), (lambda b, dt: lz4.frame.decompress(b))


ZIPNN_DTYPE = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def zipnn_coder():
    import zipnn

    cache = {}

    def codec(dt):
        if dt not in cache:
            cache[dt] = zipnn.ZipNN(input_format="byte", bytearray_dtype=ZIPNN_DTYPE[dt])
        return cache[dt]

    return (lambda b, dt: bytes(codec(dt).compress(b))), (lambda b, dt: bytes(codec(dt).decompress(b)))


def whole_file(coder, dtype):
    comp, decomp = coder
    return (lambda src, dst: write(dst, comp(read(src), dtype))), (
        lambda src, dst: write(dst, decomp(read(src), dtype))
    )


def per_tensor(coder):
    """Each float tensor's bytes coded alone; the safetensors header and non-float tensors kept raw.

    File: 8-byte length + JSON list of [name, dtype, coded length] + the original header bytes + blobs.
    Decoding rebuilds the original file byte for byte (tensor data in offset order).
    """
    comp, decomp = coder

    def compress(src, dst):
        data = read(src)
        header, base = safetensors_header(data)
        entries = sorted(
            ((k, v) for k, v in header.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0]
        )
        blobs, table = [], []
        for name, info in entries:
            lo, hi = info["data_offsets"]
            raw = data[base + lo : base + hi]
            coded = comp(raw, info["dtype"]) if info["dtype"] in ZIPNN_DTYPE and raw else raw
            table.append([name, info["dtype"] if coded is not raw else "raw", len(coded)])
            blobs.append(coded)
        meta = json.dumps(table).encode()
        write(dst, len(meta).to_bytes(8, "little") + meta + data[:base] + b"".join(blobs))

    def decompress(src, dst):
        data = read(src)
        n = int.from_bytes(data[:8], "little")
        table = json.loads(data[8 : 8 + n])
        hlen = int.from_bytes(data[8 + n : 16 + n], "little")
        pos = 16 + n + hlen
        out = [data[8 + n : pos]]
        for _, dt, length in table:
            blob = data[pos : pos + length]
            out.append(blob if dt == "raw" else decomp(blob, dt))
            pos += length
        write(dst, b"".join(out))

    return compress, decompress


# ---- jobs ----


def file_pairs(src, workdir, suffix):
    """[(original file, compressed file, decoded file)] for a file or the shards of a directory."""
    if os.path.isdir(src):
        names = sorted(n for n in os.listdir(src) if n.endswith(".safetensors"))
    else:
        names = [os.path.basename(src)]
        src = os.path.dirname(src)
    return [
        (os.path.join(src, n), os.path.join(workdir, n + suffix), os.path.join(workdir, n + ".back")) for n in names
    ]


def copy_others(src, dst_dir):
    if os.path.isdir(src):
        for n in os.listdir(src):
            if not n.endswith(".safetensors"):
                shutil.copyfile(os.path.join(src, n), os.path.join(dst_dir, n))


def time_best(fn, repeats):
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_lossless_bytes(job, result):
    tool, dtype = job["tool"], job.get("dtype", "F32")
    coder = {"zstd-3": lambda: zstd_coder(3), "zstd-19": lambda: zstd_coder(19), "lz4": lz4_coder}.get(
        tool.split(" ")[0], zipnn_coder
    )()
    compress, decompress = per_tensor(coder) if tool.endswith("per tensor") else whole_file(coder, dtype)
    pairs = file_pairs(job["src"], job["workdir"], ".c")
    result["rss_after_imports_mib"] = rss_now_mib()
    out_dir = job["workdir"]

    def c_all():
        for s, c, _ in pairs:
            compress(s, c)
        copy_others(job["src"], out_dir)

    def d_all():
        for _, c, b in pairs:
            decompress(c, b)

    result["t_compress"] = time_best(c_all, job["repeats"])
    result["t_decompress"] = time_best(d_all, job["repeats"])
    result["compressed_bytes"] = sum(os.path.getsize(c) for _, c, _ in pairs)
    result["exact"] = all(sha256(s) == sha256(b) for s, _, b in pairs)


def run_bslz(job, result):
    import bslz
    from bslz.cli import checkpoint

    result["rss_after_imports_mib"] = rss_now_mib()
    src, work = job["src"], job["workdir"]
    kwargs = {"bits": job["bits"]} if job.get("bits") else {}
    if os.path.isdir(src):
        out, back = os.path.join(work, "out.bslz"), os.path.join(work, "back")

        def c_all():
            plan = checkpoint.plan_compress(src)
            checkpoint.run_plan(
                src, out, plan, lambda i, o, n: bslz.compress_file(i, o, overwrite=True, **kwargs), overwrite=True
            )

        def d_all():
            plan = checkpoint.plan_decompress(out)
            checkpoint.run_plan(
                out, back, plan, lambda i, o, n: bslz.decompress_file(i, o, overwrite=True), overwrite=True
            )

        c_all(), d_all()  # warm-up: numba compile / cache load
        result["t_compress"] = time_best(c_all, job["repeats"])
        result["t_decompress"] = time_best(d_all, job["repeats"])
        shards = sorted(n for n in os.listdir(src) if n.endswith(".safetensors"))
        result["compressed_bytes"] = sum(
            os.path.getsize(os.path.join(out, n[: -len(".safetensors")] + ".bslz")) for n in shards
        )
        result["exact"] = all(sha256(os.path.join(src, n)) == sha256(os.path.join(back, n)) for n in shards)
        return
    dst, back = os.path.join(work, "out.bslz"), job.get("back") or os.path.join(work, "back.safetensors")
    if job.get("warmup", True):
        bslz.compress_file(src, dst, overwrite=True, **kwargs)
        bslz.decompress_file(dst, back, overwrite=True)
    result["t_compress"] = time_best(lambda: bslz.compress_file(src, dst, overwrite=True, **kwargs), job["repeats"])
    result["t_decompress"] = time_best(lambda: bslz.decompress_file(dst, back, overwrite=True), job["repeats"])
    result["compressed_bytes"] = os.path.getsize(dst)
    result["exact"] = sha256(src) == sha256(back)


def run_nncodec(job, result):
    """NNCodec 2.1.3 `nnc.compress` on every tensor (float32; the int64 one as int32, restored after)."""
    import contextlib

    import numpy as np
    from nncodec import nnc
    from safetensors.numpy import load_file, save_file

    result["rss_after_imports_mib"] = rss_now_mib()
    src, work = job["src"], job["workdir"]
    dst, back = os.path.join(work, "out.nnc"), job["back"]
    data = read(src)
    header, _ = safetensors_header(data)
    metadata = header.get("__metadata__")

    def compress():
        params = load_file(src)
        params = {k: (v.astype(np.int32) if v.dtype.kind in "iu" else v) for k, v in params.items()}
        with contextlib.redirect_stdout(sys.stderr):
            nnc.compress(params, bitstream_path=dst, qp=job["qp"], use_dq=True, verbose=False)

    def decompress():
        with contextlib.redirect_stdout(sys.stderr):
            out = nnc.decompress(dst, verbose=False)
        out = {k: np.ascontiguousarray(v).astype(np.dtype(DTYPES[header[k]["dtype"]])) for k, v in out.items()}
        save_file(out, back, metadata=metadata)

    result["t_compress"] = time_best(compress, job["repeats"])
    result["t_decompress"] = time_best(decompress, job["repeats"])
    result["compressed_bytes"] = os.path.getsize(dst)


DTYPES = {"F32": "float32", "F16": "float16", "I64": "int64", "I32": "int32"}

# DFloat11 0.5.0 constants (dfloat11/dfloat11.py; that module loads a CUDA kernel at import, so they are copied)
DF11_BYTES_PER_THREAD, DF11_THREADS_PER_BLOCK = 8, 512


def run_dfloat11(job, result):
    """DFloat11 0.5.0's own CPU encoder (dfloat11_utils) on MiniLM bf16, grouped as its compress_model does
    for a pattern_dict of one pattern per encoder layer (all Linear weights of a layer share one Huffman
    code), each embedding table alone; every other tensor stays raw bf16. Saved as its model.safetensors."""
    import contextlib

    # dfloat11/__init__ loads the CUDA kernel through cupy: load the encoder module by its path instead
    import importlib.util

    import torch
    from safetensors.torch import load_file, save_file

    spec = importlib.util.find_spec("dfloat11")
    path = os.path.join(os.path.dirname(spec.origin), "dfloat11_utils.py")
    utils_spec = importlib.util.spec_from_file_location("dfloat11_utils", path)
    utils = importlib.util.module_from_spec(utils_spec)
    utils_spec.loader.exec_module(utils)
    encode_weights, get_32bit_codec, get_codec, get_luts = (
        utils.encode_weights,
        utils.get_32bit_codec,
        utils.get_codec,
        utils.get_luts,
    )

    result["rss_after_imports_mib"] = rss_now_mib()
    src, work = job["src"], job["workdir"]
    dst = os.path.join(work, "model.df11.safetensors")

    def compress():
        tensors = load_file(src)
        groups = {}
        for name, t in tensors.items():
            if t.dtype != torch.bfloat16 or t.dim() != 2:
                continue
            parts = name.split(".")
            key = ".".join(parts[:3]) if "layer" in parts else name[: -len(".weight")]
            groups.setdefault(key, []).append(name)
        out = {k: v for k, v in tensors.items() if not any(k in g for g in groups.values())}
        with contextlib.redirect_stdout(sys.stderr):
            for key, names in groups.items():
                weights = [tensors[n].flatten() for n in names]
                _, counter = get_codec(torch.cat(weights))
                codec, _, table = get_32bit_codec(counter)
                luts = get_luts(table)
                encoded, other, positions, gaps, splits = encode_weights(
                    weights, codec, DF11_BYTES_PER_THREAD, DF11_THREADS_PER_BLOCK
                )
                for field, value in (
                    ("luts", luts),
                    ("encoded_exponent", encoded),
                    ("sign_mantissa", other),
                    ("output_positions", positions.view(torch.uint8)),
                    ("gaps", gaps),
                    ("split_positions", splits),
                ):
                    out[f"{key}.{field}"] = value.contiguous()
        save_file(out, dst)

    result["t_compress"] = time_best(compress, job["repeats"])
    result["t_decompress"] = None
    result["compressed_bytes"] = os.path.getsize(dst)


def main():
    job = json.loads(sys.argv[1])
    result = {"job": job}
    os.makedirs(job["workdir"], exist_ok=True)
    kind = job["kind"]
    {"bytes": run_lossless_bytes, "bslz": run_bslz, "nncodec": run_nncodec, "dfloat11": run_dfloat11}[kind](job, result)
    result["peak_rss_mib"] = peak_rss_mib()
    with open(sys.argv[2], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
