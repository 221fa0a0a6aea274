"""Write the golden files of the current format version to tests/fixtures/format-M.m/ (run once per version).

    python scripts/make_golden.py [--force]

Each case is an input safetensors file, the `.bslz` file bslz wrote from it, and the safetensors file
`bslz decompress` restores (for lossless cases that is the input itself). `manifest.json` lists the
cases with the options they were compressed with. tests/test_golden.py decodes these files forever,
and checks that the current writer still produces the same bytes while the format version is unchanged.
Golden files are never rewritten: a new format version gets a new folder.
"""

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import sys

import numpy as np
import safetensors.torch
import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import bslz  # noqa: E402
from bslz.formats import container_writer  # noqa: E402
from bslz.formats.container import FORMAT_MAJOR, FORMAT_MINOR  # noqa: E402

METADATA = {"format": "pt", "origin": "scripts/make_golden.py"}


def _bits(words, np_word, torch_dtype):
    return torch.from_numpy(np.asarray(words, dtype=np_word).copy()).view(torch_dtype)


def lossless_tensors():
    """Every dtype, with special float values, extremes, scalars and empty tensors; a few KB."""
    rng = np.random.default_rng(20240501)
    w = (rng.laplace(size=256) * 0.02).astype(np.float32)
    specials = np.array([0x80000000, 0x7F800000, 0xFF800000, 0x7FC0BEEF, 0xFF800001, 0x00000001, 0x807FFFFF], np.uint32)
    f32 = np.concatenate([specials, w.view(np.uint32)])
    bf16 = (w.view(np.uint32) >> 16).astype(np.uint16)
    every8 = rng.permutation(np.arange(256, dtype=np.uint16)).astype(np.uint8)
    return {
        "f32": _bits(f32, np.uint32, torch.float32).reshape(-1, 1),
        "bf16": _bits(bf16, np.uint16, torch.bfloat16).reshape(8, 32),
        "f16": torch.from_numpy((rng.standard_normal(256) * 0.1).astype(np.float16)),
        "f64": torch.from_numpy(np.concatenate([[np.nan, -0.0, np.inf, 5e-324], rng.standard_normal(60)])),
        "f8_e4m3": _bits(every8, np.uint8, torch.float8_e4m3fn),
        "f8_e5m2": _bits(every8[::-1], np.uint8, torch.float8_e5m2).reshape(4, 64),
        "i64": torch.from_numpy(rng.integers(-40, 400, 100)),
        "i64.extremes": torch.tensor([-(2**63), 2**63 - 1, 0, -1], dtype=torch.int64),
        "i32": torch.from_numpy(rng.integers(-5, 5, (10, 30)).astype(np.int32)),
        "i16": torch.from_numpy(rng.integers(-300, 300, 100).astype(np.int16)),
        "i8": torch.from_numpy(rng.integers(-128, 128, 100).astype(np.int8)),
        "u8": torch.from_numpy(rng.integers(0, 9, 100).astype(np.uint8)),
        "u16": torch.from_numpy(rng.integers(0, 70, 100).astype(np.uint16)),
        "u32": torch.from_numpy(np.arange(100, dtype=np.uint32) * 3),
        "u64": torch.from_numpy(np.arange(100, dtype=np.uint64)),
        "bool": torch.from_numpy(rng.random(100) < 0.1),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros((3, 0), dtype=torch.bfloat16),
    }


def lossy_tensors():
    """Float tensors of three widths and a bias small enough to stay lossless; a few KB."""
    rng = np.random.default_rng(20240502)
    return {
        "dense.weight": torch.from_numpy((rng.laplace(size=(16, 32)) * 0.05).astype(np.float32)),
        "attn.weight": torch.from_numpy((rng.standard_normal((16, 32)) * 0.05).astype(np.float32)).to(torch.bfloat16),
        "mlp.weight": torch.from_numpy((rng.standard_normal(512) * 0.1).astype(np.float16)),
        "dense.bias": torch.from_numpy((rng.standard_normal(32) * 0.01).astype(np.float32)),
    }


def outlier_tensors():
    """A weight matrix with a few outliers: at a fine step its indices pass rANS's alphabet (format
    1.1's "rans_escape" streams); a few KB."""
    rng = np.random.default_rng(20261202)
    levels = rng.choice(np.array([0.0, 0.01, -0.01, 0.03]), 2048, p=[0.4, 0.25, 0.25, 0.1])  # far from geometric
    w = (levels + rng.standard_normal(2048) * 0.001).astype(np.float32)
    w[[5, 700, 1500]] = [2.0, -3.0, 0.9]
    return {"proj.weight": torch.from_numpy(w.reshape(32, 64))}


def head_tensors():
    """Weights large enough that their float heads are Huffman-coded (format 1.2); a few KB."""
    rng = np.random.default_rng(20261204)
    w = (rng.laplace(size=2048) * 0.02).astype(np.float32)
    return {
        "bf16.weight": torch.from_numpy(w).to(torch.bfloat16).reshape(32, 64),
        "f32.weight": torch.from_numpy(w[:1024]),
    }


def piece_tensors():
    """A weight whose payload is longer than 4096 bytes: written with the writer's threshold for
    pieces lowered to that (WRITER_SETTINGS), it carries its pieces' checksums (format 1.3), in
    4096-byte pieces; about 10 KB."""
    rng = np.random.default_rng(20261205)
    return {"long.weight": torch.from_numpy((rng.laplace(size=(50, 52)) * 0.02).astype(np.float32))}


INPUTS = {
    "lossless": lossless_tensors,
    "lossy": lossy_tensors,
    "outliers": outlier_tensors,
    "heads": head_tensors,
    "pieces": piece_tensors,
}
# name -> (input, compress_file options)
CASES = {
    "lossless": ("lossless", {}),
    "quantized-step": ("lossy", {"step": 0.01, "min_lossy_elements": 256}),
    "quantized-snr": ("lossy", {"snr": 25.0, "min_lossy_elements": 256}),
    "quantized-escape": ("outliers", {"step": 0.0005, "min_lossy_elements": 256}),  # from format 1.1
    "lossless-huffman": ("heads", {}),  # from format 1.2
    "lossless-pieces": ("pieces", {}),  # from format 1.3
}
# Writer constants a case is written with (bslz.formats.container_writer's), where its payloads are
# too small for the defaults to show what the case is for; tests/test_golden.py sets them the same
WRITER_SETTINGS = {"lossless-pieces": {"PIECES_FROM_BYTES": 4096}}


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--force", action="store_true", help="replace an existing folder (never for a released version)"
    )
    parser.add_argument(
        "--out", type=pathlib.Path, default=ROOT / "tests" / "fixtures" / f"format-{FORMAT_MAJOR}.{FORMAT_MINOR}"
    )
    args = parser.parse_args()
    if args.out.exists():
        if not args.force:
            sys.exit(f"{args.out} exists: golden files are written once per format version")
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    manifest = {"format": [FORMAT_MAJOR, FORMAT_MINOR], "creator": f"bslz {bslz.__version__}", "cases": []}
    for name, make in INPUTS.items():
        safetensors.torch.save_file(make(), args.out / f"{name}.input.safetensors", metadata=METADATA)
    for name, (input_name, options) in CASES.items():
        source = args.out / f"{input_name}.input.safetensors"
        packed = args.out / f"{name}.bslz"
        settings = WRITER_SETTINGS.get(name, {})
        saved = {k: getattr(container_writer, k) for k in settings}
        try:
            for k, v in settings.items():
                setattr(container_writer, k, v)
            report = bslz.compress_file(source, packed, **options)
        finally:
            for k, v in saved.items():
                setattr(container_writer, k, v)
        case = {"name": name, "options": options, "input": source.name, "bslz": packed.name}
        if settings:
            case["writer"] = settings
        if report.lossless:
            case["decoded"] = source.name
        else:
            decoded = args.out / f"{name}.decoded.safetensors"
            bslz.decompress_file(packed, decoded)
            case["decoded"] = decoded.name
        case["sha256"] = {f: sha256(args.out / f) for f in sorted({case["input"], case["bslz"], case["decoded"]})}
        case["codings"] = sorted({t.coding for t in report.tensors})
        manifest["cases"].append(case)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(os.path.getsize(p) for p in args.out.iterdir())
    print(f"wrote {len(manifest['cases'])} cases, {total} bytes, to {args.out}")


if __name__ == "__main__":
    main()
