"""Loading a checkpoint onto a device (a GPU, or the CPU): the uncompressed safetensors file, the
same file compressed by bslz (lossless, and at `--bits`), and by zstd level 3, each loaded into
{name: tensor} on the device, in interleaved rounds, every load ended by a device synchronisation.

    PYTHONPATH=src python3 benchmarks/bench_load_device.py minilm-bf16.safetensors --device cuda

Prints, per way of loading, the best milliseconds and MB/s of the original file's bytes.
"""

import argparse
import os
import tempfile

import safetensors.torch
import torch
import zstandard

import bslz
import bslz.torch
from timing import best_times_interleaved


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a safetensors file")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bits", type=float, default=7.978, help="the lossy file's bits per float parameter")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    device = torch.device(args.device)
    size = os.path.getsize(args.path)
    with tempfile.TemporaryDirectory() as tmp:
        lossless, lossy, zstd_path = (os.path.join(tmp, n) for n in ("lossless.bslz", "lossy.bslz", "file.zst"))
        bslz.compress_file(args.path, lossless)
        bslz.compress_file(args.path, lossy, bits=args.bits)
        with open(args.path, "rb") as f:
            original = f.read()
        with open(zstd_path, "wb") as f:
            f.write(zstandard.ZstdCompressor(level=3).compress(original))

        def from_zstd():
            with open(zstd_path, "rb") as f:
                data = zstandard.ZstdDecompressor().decompress(f.read())
            return {k: v.to(device) for k, v in safetensors.torch.load(data).items()}

        ways = {
            "safetensors, uncompressed": lambda: safetensors.torch.load_file(args.path, device=str(device)),
            "bslz lossless": lambda: bslz.torch.load_file(lossless, device=device),
            f"bslz --bits {args.bits:g}": lambda: bslz.torch.load_file(lossy, device=device),
            "zstd -3, then safetensors": from_zstd,
        }
        files = {name: p for name, p in zip(ways, (args.path, lossless, lossy, zstd_path))}
        held = [None]  # each load's result held while the next one runs, as a program holds its model

        def synchronised(load):
            def call():
                sync(device)
                held[0] = load()
                sync(device)
                assert all(t.device.type == device.type for t in held[0].values())

            return call

        best = best_times_interleaved([synchronised(load) for load in ways.values()], args.rounds)
        held[0] = None
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"device: {name}; {os.path.basename(args.path)}, {size / 1e6:.1f} MB; best of {args.rounds} rounds")
        print("| load | file MB | best ms | MB/s |")
        print("|---|---|---|---|")
        for way, t in zip(ways, best):
            print(f"| {way} | {os.path.getsize(files[way]) / 1e6:.1f} | {1e3 * t:.1f} | {size / t / 1e6:.0f} |")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
