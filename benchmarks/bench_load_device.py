"""Loading a checkpoint onto a device (a GPU, or the CPU): the uncompressed safetensors file, the
same file compressed by bslz (lossless, and at `--bits`), and by zstd level 3, each loaded into
{name: tensor} on the device, in interleaved rounds, every load ended by a device synchronisation.

    PYTHONPATH=src python3 benchmarks/bench_load_device.py minilm-bf16.safetensors --device cuda

Prints, per way of loading, the best and median milliseconds and MB/s of the original file's bytes.
"""

import argparse
import os
import statistics
import tempfile
import time

import safetensors.torch
import torch
import zstandard

import bslz
import bslz.torch


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
        times = {name: [] for name in ways}
        held = None
        for r in range(args.rounds):
            for name, load in ways.items() if r % 2 == 0 else reversed(ways.items()):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                loaded = load()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[name].append(time.perf_counter() - t0)
                assert all(t.device.type == device.type for t in loaded.values())
                held = loaded  # held while the next load runs, as a program holding its model would
        del held
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"device: {name}; {os.path.basename(args.path)}, {size / 1e6:.1f} MB; best / median of {args.rounds}")
        print("| load | file MB | best ms | median ms | MB/s (best) |")
        print("|---|---|---|---|---|")
        for way, ts in times.items():
            best = min(ts)
            print(
                f"| {way} | {os.path.getsize(files[way]) / 1e6:.1f} | {1e3 * best:.1f} "
                f"| {1e3 * statistics.median(ts):.1f} | {size / best / 1e6:.0f} |"
            )


if __name__ == "__main__":
    main()
