"""A quantized tensor's reconstruction: its values made from its symbols as the file decodes
them (rounded to its dtype), for the decoder, and with the sums measured on them for the encoder
(`tensor_codec.encode_quantized`), which must report what the file decodes.
"""

import functools

import numpy as np

from bslz.codec import dq_rans, streams
from bslz.codec._parallel import parallel_map, split_range
from bslz.codec.dq import DEFAULT_BLOCK as DQ_DEFAULT_BLOCK
from bslz.codec.dq import MAX_INDEX as DQ_MAX_INDEX
from bslz.codec.dq import (
    dequantize_dq_symbols,
    dequantize_dq_symbols_to_bfloat16,
    measured_dequantize_dq_symbols_to_bfloat16,
    quantize_dq_symbols,
    quantize_dq_symbols_to_bfloat16,
)
from bslz.codec.expgolomb import unsigned_to_signed
from bslz.codec.measure import moments_and_noise
from bslz.codec.quantize import dequantize_with_table
from bslz.codec.rans import decode_rans
from bslz.errors import FormatError, InvalidArgumentError
from bslz.formats.dtypes import from_float32, lookup, to_float32

DQ_BLOCK = DQ_DEFAULT_BLOCK


def quantize_dq(values, step, dtype_name, top=None, bfloat16_words=False):
    """(symbols, reconstruction): `quantize_dq_symbols(values, step, top=top)` and what
    `reconstruct_dq` gives for them; for bfloat16 tensors made in the search's last pass
    (`quantize_dq_symbols_to_bfloat16`), of their words as they are with `bfloat16_words`."""
    if dtype_name != "BF16":
        symbols = quantize_dq_symbols(values, step, top=top)
        return symbols, reconstruct_dq(symbols, step, dtype_name, values)
    symbols, words, sum_abs, signal, noise = quantize_dq_symbols_to_bfloat16(
        values, step, DQ_BLOCK, top, bfloat16_words=bfloat16_words
    )
    return symbols, (words.view(np.uint8), signal, noise, sum_abs)


def reconstruct_dq(symbols, step, dtype_name, values):
    """(raw bytes, sum w^2, sum (w - w_hat)^2, sum |w|) of the dependent-quantization
    reconstruction at `step` from `symbols`, as the file decodes it (rounded to the dtype), and of
    the tensor's float `values`: what `encode_quantized` measures for the same symbols, computed
    the same way."""
    return reconstruct_and_measure(symbols.reshape(-1), dq_fields(step), None, lookup(dtype_name), values)


def dq_fields(step):
    """The header fields of a dependent-quantization payload at `step` (before its stream's)."""
    return {"coding": "quantized", "reconstruction": "dq", "step": float(step), "dq_block": DQ_BLOCK}


# pieces of about this many values: fewer would cost more in threads than they save, and each
# piece's temporaries (a few times its size) are all that is held besides the result
RECONSTRUCT_PIECE = 1 << 20


def reconstruct_and_measure(symbols, fields, table, dtype, values):
    """(raw bytes of the reconstruction, signal, noise, sum |w|) a piece per thread: the
    reconstruction, its rounding to the dtype and the sums measured on it are one pass over each
    piece (whole trellis blocks), rather than serial passes over the tensor."""
    decoded = np.empty(symbols.size * dtype.itemsize, dtype=np.uint8)
    words = decoded.view(dtype.word_dtype)

    def run(bounds):
        lo, hi = bounds
        if fields["reconstruction"] == "dq" and dtype.name == "BF16":  # measured as it is made: one pass
            made, *sums = measured_dequantize_dq_symbols_to_bfloat16(
                symbols[lo:hi], fields["step"], values[lo:hi], fields["dq_block"], out=words[lo:hi]
            )
            if made is None:
                raise InvalidArgumentError(f"dependent quantization index beyond {DQ_MAX_INDEX}")
            return sums
        reconstruct(symbols[lo:hi], fields, table, dtype, out=words[lo:hi])
        return moments_and_noise(values[lo:hi], to_float32(words[lo:hi], dtype))

    parts = max(1, symbols.size // RECONSTRUCT_PIECE)
    pieces = parallel_map(run, split_range(symbols.size, parts, fields.get("dq_block", 1)))
    sum_abs, signal, noise = (sum(p[j] for p in pieces) for j in range(3))
    return decoded, signal, noise, sum_abs


def quantizer_table(fields, prefix):
    """(table, beyond offset) of a uniform quantizer's reconstruction: midpoints, or the stored GG
    table; None for dependent quantization."""
    if fields["reconstruction"] == "dq":
        return None
    beyond_offset = 0.5 - fields["dead_zone"]
    if fields["reconstruction"] == "midpoint":
        return np.zeros(1), beyond_offset
    return np.frombuffer(prefix, dtype="<f8").astype(np.float64), beyond_offset


def reconstruct(symbols, fields, table, dtype, out=None):
    """Raw bytes of the tensor from its decoded se(v) symbols (uint32), written into `out` (the
    dtype's words, one a symbol) when given: no copy of a chunk's values, and for BF16 / F32 / F64
    under dependent quantization no array of values at all."""
    compute = _compute_dtype(dtype)
    if fields["reconstruction"] == "dq":
        if dtype.name == "BF16":  # rounded as it is reconstructed: no float32 array in between
            words = dequantize_dq_symbols_to_bfloat16(symbols, fields["step"], fields["dq_block"], out=out)
            if words is None:
                raise FormatError(f"dependent quantization index beyond {DQ_MAX_INDEX}")
            return words.view(np.uint8)
        direct = out is not None and dtype.numpy_dtype == compute  # the values are the words
        values = dequantize_dq_symbols(
            symbols, fields["step"], fields["dq_block"], compute, out=out.view(compute) if direct else None
        )
        if values is None:
            raise FormatError(f"dependent quantization index beyond {DQ_MAX_INDEX}")
        if direct:
            return out.view(np.uint8)
    else:
        values = dequantize_with_table(unsigned_to_signed(symbols, np.int32), fields["step"], *table, compute)
    return from_float32(values.reshape(-1), dtype, out=out).view(np.uint8)


def reconstructs_by_chunk(plan, fields):
    """A rANS stream whose chunks each hold whole trellis blocks (every encoder default) decodes
    chunk by chunk into values: no array of every symbol, each chunk's symbols used in cache."""
    if plan.mode != "rans" or plan.count == 0:
        return False
    return fields["reconstruction"] != "dq" or plan.chunk_size % fields["dq_block"] == 0


def _compute_dtype(dtype):
    """The float type a dtype's values are reconstructed in (then rounded to the dtype)."""
    return np.float64 if dtype.name == "F64" else np.float32


@functools.lru_cache(maxsize=16)
def _level_tables(step, dtype_name):
    """The `dq_rans.LevelTables` of a step and dtype, for every tensor that has both: a file made
    for `--bits` quantizes every tensor with one step."""
    dtype = lookup(dtype_name)
    return dq_rans.LevelTables(step, _compute_dtype(dtype), lambda v: from_float32(v, dtype))


def decode_and_reconstruct_by_chunk(stream, fields, table, dtype, nbytes, out=None, chunk_decoded=None, chunks=None):
    """Dependent quantization's chunks straight into words (`dq_rans`), where that path takes them;
    the others decoded to symbols and then reconstructed. Into `out` (uint8, nbytes) if given.
    `chunks` = (first, end): those chunks only, their values the nbytes.
    chunk_decoded(c, None, words): see `decode_tensor`."""
    out = np.empty(nbytes, dtype=np.uint8) if out is None else out
    words = out.view(dtype.word_dtype)
    tables = _level_tables(fields["step"], dtype.name) if fields["reconstruction"] == "dq" else None
    base = 0 if chunks is None else chunks[0] * stream.plan.chunk_size  # the first value in words

    def decode(lo, hi, chunk):
        place = words[lo - base : hi - base]
        with np.errstate(over="ignore", invalid="ignore"):  # numpy's error state is per thread: see decode_tensor
            if tables is not None and dq_rans.decode_chunk(
                chunk, fields["step"], fields["dq_block"], _compute_dtype(dtype), tables.to_words, place, tables
            ):
                return
            symbols = decode_rans(chunk, hi - lo, np.empty(hi - lo, np.uint16))
            reconstruct(symbols, fields, table, dtype, out=place)

    def decode_and_report(lo, hi, chunk):
        decode(lo, hi, chunk)
        if chunk_decoded is not None:
            chunk_decoded(lo // stream.plan.chunk_size, None, words[lo - base : hi - base])

    streams.map_rans_chunks(stream, decode_and_report, chunks)
    return out
