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
2. Threads and cores (Linux: /proc/self/task/*/schedstat), for `decompress_bytes` of the lossless
   file, `compress_bytes` of the bf16 file and `load_file` of the lossy one, each result held while
   the next call runs (as `bench_container.py` holds it): per thread of the process that lived
   through the calls, the CPU time and the time it waited, runnable, for a core, means over ROUNDS
   calls. A thread started afresh in each call (compression's writer, `Background`) is not listed;
   on a 2-core machine, a wait for a core means that three threads wanted to run.
3. What fresh memory costs `decompress_bytes` of the lossless file: the call as it is (its output
   in memory `np.empty` gives, new pages the kernel zeroes on their first touch), then the same
   work into one buffer written before (`decompression._decompress_into`), and ZipNN's `decompress` (output
   in fresh memory too) for reference, in interleaved rounds, each result held while the next
   call runs; best and median of ROUNDS rounds.
4. One chunk (262144 values) of the bf16 word embeddings, one thread: `encode_chunk` of its
   lossless coding, and for its `--bits` coding the parts of decoding it (`rans.read_header`,
   `dq_rans.level_words`, and the whole `dq_rans.decode_chunk` with a table made for the chunk
   and with one already made); and `rans.read_header` of a header longer than the bytes parsed
   first (synthetic symbols).
"""

import os
import threading
import time

import numpy as np

import bslz
import bslz.reader as reader
import bslz.torch
from bench_container import minilm_bf16_workdir, zipnn_codec
from bslz import decompression
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


def thread_times(fn):
    """(median ms a call, [(thread, CPU ms a call, ms a call waiting for a core)]) over ROUNDS calls
    of fn after a warm-up; None where /proc has no schedstat (not Linux)."""
    held = [fn()]  # a call's result is let go once the next one has returned

    def schedstat():
        names = {t.native_id: t.name for t in threading.enumerate()}
        names[os.getpid()] = "calling thread"
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/schedstat") as f:
                    run_ns, wait_ns = f.read().split()[:2]
            except OSError:  # a thread that ended meanwhile
                continue
            out[tid] = (names.get(int(tid), "(not a Python thread)"), int(run_ns), int(wait_ns))
        return out

    if not os.path.exists(f"/proc/self/task/{os.getpid()}/schedstat"):
        return None
    walls = []
    before = schedstat()
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        held[0] = fn()
        walls.append(time.perf_counter() - t0)
    after = schedstat()
    rows = []
    for tid, (name, run_ns, wait_ns) in after.items():
        if tid in before:
            cpu, wait = (run_ns - before[tid][1]) / ROUNDS / 1e6, (wait_ns - before[tid][2]) / ROUNDS / 1e6
            if cpu >= 0.05:  # threads that took part (torch's idle ones left out)
                rows.append((name, cpu, wait))
    return 1e3 * float(np.median(walls)), rows


def print_thread_times(calls):
    """The threads table of `thread_times` for each of {name: call}."""
    print(f"\n## Threads: CPU and waits for a core (ms a call, means over {ROUNDS} calls)\n")
    print("| call | median ms a call | thread | CPU ms | waiting for a core, ms |\n|---|---|---|---|---|")
    for call, fn in calls.items():
        measured = thread_times(fn)
        if measured is None:
            print(f"| {call} | (no /proc schedstat here) | | | |")
            continue
        wall, rows = measured
        for j, (label, cpu, wait) in enumerate(sorted(rows, key=lambda r: r[0] != "calling thread")):
            first = f"{call} | {wall:.1f}" if j == 0 else " | "
            print(f"| {first} | {label} | {cpu:.2f} | {wait:.2f} |")


def fresh_memory(data, packed):
    """{call: (best ms, median ms)} of decompress_bytes into fresh memory, into memory written before
    and, where installed, of ZipNN's decompress (interleaved rounds, results held as in bench_container)."""
    reused = np.zeros(len(data), dtype=np.uint8)
    calls = {
        "decompress_bytes (fresh memory)": lambda: bslz.decompress_bytes(packed),
        "the same into memory written before": lambda: decompression._decompress_into(
            ContainerReader(packed), lambda n, dtype: reused[:n]
        ),
    }
    z = zipnn_codec("BF16")
    if z is not None:
        zipped = z.compress(bytes(bytearray(data)))  # (it rewrites its input in place)
        calls["ZipNN 0.5.4 decompress (fresh memory)"] = lambda: z.decompress(zipped)
    held = {name: fn() for name, fn in calls.items()}  # warm-up
    times = {name: [] for name in calls}
    for _ in range(ROUNDS):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            held[name] = fn()
            times[name].append(time.perf_counter() - t0)
    assert bytes(held["the same into memory written before"]) == data == bytes(held["decompress_bytes (fresh memory)"])
    return {name: (1e3 * min(t), 1e3 * float(np.median(t))) for name, t in times.items()}


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
        lambda: FC.encode_chunk(
            words, lo, hi, sign_pos, low_bits, widths, shifts, floats.eg.MAX_ORDER, *floats.chunk_scratch(hi - lo)
        ),
        ROUNDS,
        True,
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
        with open(bf16, "rb") as f:
            data = f.read()
        packed = bslz.compress_bytes(data)
        print_thread_times(
            {
                "decompress_bytes, lossless": lambda: bslz.decompress_bytes(packed),
                "compress_bytes, lossless": lambda: bslz.compress_bytes(data),
                "load_file, --bits 7.978": lambda: bslz.torch.load_file(lossy),
            }
        )
        print(f"\n## Fresh memory: lossless decompress_bytes (ms, {ROUNDS} interleaved rounds)\n")
        print("| call | best ms | median ms |\n|---|---|---|")
        for call, (best, median) in fresh_memory(data, packed).items():
            print(f"| {call} | {best:.1f} | {median:.1f} |")
        print("\n## One chunk of the bf16 word embeddings (262144 values), one thread (us, best of 20)\n")
        print("| part | us |\n|---|---|")
        for k, v in chunk_parts(bf16, lossy).items():
            print(f"| {k} | {v:.0f} |")


if __name__ == "__main__":
    main()
