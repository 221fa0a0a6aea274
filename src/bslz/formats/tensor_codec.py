"""Coding one tensor: its raw bytes in, a payload and the header fields that describe it out.

Codings (the "coding" field of a tensor entry, FORMAT.md):
- "raw": the bytes as they are (unknown dtypes, empty tensors, or whenever nothing smaller exists);
- "float": lossless float coding (`bslz.codec.floats`);
- "int": integers and bools, exp-Golomb of the values (se(v)-mapped when signed);
- "quantized": lossy; uniform quantizer symbols, exp-Golomb coded, reconstructed on decode.

A symbol stream's payload (int and quantized codings) is laid out by `bslz.formats.stream_payload`.
"""

import numpy as np

from bslz.codec import floats, streams
from bslz.codec.expgolomb import MAX_VALUE, signed_to_unsigned, unsigned_to_signed
from bslz.codec.gg import fit_from_sums, fit_generalized_gaussian
from bslz.codec.quantize import quantize, reconstruction_table
from bslz.errors import FormatError, InvalidArgumentError, TruncatedError
from bslz.formats.dtypes import lookup, to_float32, to_float32_and_top
from bslz.formats.reconstruction import (
    decode_and_reconstruct_by_chunk,
    dq_fields,
    quantize_dq,
    quantizer_table,
    reconstruct,
    reconstruct_and_measure,
    reconstructs_by_chunk,
)
from bslz.formats.stream_payload import encode_and_pack, stream_head_bytes, unpack_stream

CODINGS = ("raw", "float", "int", "quantized")
RECONSTRUCTIONS = ("midpoint", "gg", "dq")


# ---- encoding ------------------------------------------------------------------------------


def encode_lossless(raw, dtype_name, shape):
    """(fields, payload) for the smallest lossless coding of a tensor's raw bytes (uint8 array)."""
    dtype = lookup(dtype_name)
    if dtype is None or raw.size == 0:
        return {"coding": "raw"}, raw
    if dtype.kind == "float":
        enc = floats.encode_floats(raw.view(dtype.word_dtype), dtype.float_layout)
        fields, payload = {"coding": "float", "chunk_size": enc.chunk_size}, enc.payload
    else:
        symbols = _int_symbols(raw, dtype)
        if symbols is None:
            return {"coding": "raw"}, raw
        fields, payload = encode_and_pack(symbols)
        fields["coding"] = "int"
    if len(payload) >= raw.size:
        return {"coding": "raw"}, raw
    return fields, payload


def _int_symbols(raw, dtype):
    values = raw.view(np.uint8 if dtype.kind == "bool" else dtype.numpy_dtype)
    if dtype.kind == "int":
        if dtype.itemsize == 8 and (values.max() > MAX_VALUE // 2 or values.min() < -(MAX_VALUE // 2)):
            return None  # se(v) would overflow: keep raw
        return signed_to_unsigned(values)
    if dtype.itemsize == 8 and values.max() > MAX_VALUE:
        return None
    return values


GG_LEVELS = 16  # centroids differ from midpoints only in the first few bins of a peaked density
GG_MIN_ELEMENTS = 1 << 16  # below this the table costs more bits than the centroids save


def default_reconstruction(numel):
    return "gg" if numel >= GG_MIN_ELEMENTS else "midpoint"


def reconstruction_overhead_bits(numel):
    """Bits a quantized payload spends besides its symbol stream: the GG table, if any."""
    return 64 * (GG_LEVELS + 1) if default_reconstruction(numel) == "gg" else 0


def encode_quantized(
    raw,
    dtype_name,
    step,
    dead_zone=0.5,
    reconstruction=None,
    symbols=None,
    reconstructed=None,
    values=None,
    plan=None,
    top=None,
    decoded_as=None,
):
    """(fields, payload, reconstructed raw bytes, signal, noise) of a float tensor quantized with
    `step`; signal = sum w^2 and noise = sum (w - w_hat)^2 over the values in their own dtype.
    `decoded_as`: a function of the reconstructed bytes (a checksum) whose result is returned in
    their place, applied as soon as they exist: a search's reconstruction is then let go before
    the payload is coded (2 bytes a bfloat16 value less at the peak, benchmarks/measure_memory.py).

    `reconstruction`: "dq" (dependent quantization, `bslz.codec.dq`; `step` is its lattice step,
    no dead zone), or a uniform quantizer with `dead_zone` reconstructed at "midpoint" or "gg"
    (default: "gg" for tensors large enough to pay for its table). With "gg" the payload starts
    with the table of reconstruction magnitudes (levels + 1 little-endian float64), so decoding is
    plain arithmetic, identical on every machine, rather than special functions of (nu, beta).
    `symbols`: with "dq", the `quantize_dq_symbols` of the values at `step` if the caller has them
    already (a step search), so that they are not computed again; `reconstructed`: what
    `reconstruct_dq` gave for those symbols, if the search measured them (the same pass, not made
    twice); `values`: the tensor's float values (`to_float32` of `raw`), if the caller has them
    (bfloat16 under "dq" needs none: the search reads the words themselves);
    `plan`: the `streams.plan_stream` of those symbols, if the caller made it (a `bits` search);
    `top`: max |value| (`to_float32_and_top`), if the caller has the values and knows it.
    """
    dtype = lookup(dtype_name)
    numel = raw.nbytes // dtype.itemsize
    reconstruction = reconstruction or default_reconstruction(numel)
    # bfloat16 words read by dependent quantization themselves: no float32 copy of the tensor
    words_read = reconstruction == "dq" and values is None and dtype.name == "BF16"
    if words_read:
        values = raw.view(np.uint16)
    elif values is None:
        values, top = to_float32_and_top(raw.view(dtype.word_dtype), dtype)
    values = values.reshape(-1)
    if reconstruction != "dq" or symbols is None:
        reconstructed = plan = None  # only the reconstruction and plan of the symbols given are theirs
    if reconstruction == "dq":  # indices within ±2**30: their se(v) symbols fit uint32
        if symbols is None:
            symbols, reconstructed = quantize_dq(values, step, dtype.name, top, bfloat16_words=words_read)
        symbols = symbols.reshape(-1)
        fields = dq_fields(step)
        fields["gg"] = None  # informative (`bslz info` shows nu): fitted from the reconstruction pass's sums
    else:
        fields = {
            "coding": "quantized",
            "reconstruction": reconstruction,
            "step": float(step),
            "dead_zone": float(dead_zone),
        }
        # int32 indices above -2**31: se(v) fits 32 bits, as the decoder reads it back; the indices
        # are ours to overwrite
        symbols = signed_to_unsigned(quantize(values, step, dead_zone).reshape(-1), narrow=True, in_place=True)
        if symbols.dtype.itemsize > 4:
            raise InvalidArgumentError("quantizer indices do not fit 32 bits")
    if reconstructed is not None:  # the decoded bytes checksummed and let go before the payload is made
        reconstructed = _decoded_as(reconstructed, decoded_as)
    prefix = b""
    if reconstruction == "gg":
        gg = fit_generalized_gaussian(values)
        fields["gg"] = [float(v) for v in gg]
        fields["levels"] = GG_LEVELS
        table, _ = reconstruction_table(step, dead_zone, "gg", gg, GG_LEVELS)
        prefix = table.astype("<f8").tobytes()
    stream_fields, payload = encode_and_pack(symbols, plan, prefix)
    fields.update(stream_fields)

    def floats():  # the float values: bfloat16 words widened only where they are needed
        return to_float32(values, dtype) if words_read else values

    if reconstructed is None:
        reconstructed = _decoded_as(
            reconstruct_and_measure(symbols, fields, quantizer_table(fields, prefix), dtype, floats()), decoded_as
        )
    decoded, signal, noise, sum_abs = reconstructed
    if reconstruction == "dq":
        gg = fit_from_sums(values.size, sum_abs, signal)  # an empty tensor: the same error as fitting it
        fields["gg"] = [float(v) for v in (gg or fit_generalized_gaussian(floats()))]
    return fields, payload, decoded, signal, noise


def _decoded_as(reconstructed, decoded_as):
    """(decoded bytes, signal, noise, sum |w|) with `decoded_as` of the bytes in their place."""
    return reconstructed if decoded_as is None else (decoded_as(reconstructed[0]), *reconstructed[1:])


def decode_tensor(fields, payload, dtype_name, numel, nbytes, out=None, chunk_decoded=None):
    """Raw bytes (uint8 array of `nbytes`) of a tensor from its header fields and payload; written
    into `out` if given (uint8, `nbytes`) and `out` returned. Decoders write the dtype's words in
    place; an `out` not aligned to them (a tensor at an odd offset of a safetensors file) gets the
    bytes decoded apart, then copied.

    `chunk_decoded(c, chunk_bytes, chunk_words)`, if given, is called for each piece c (numbered
    from 0, in order) of a tensor decoded piece by piece, by the thread that decoded it, with its
    decoded words and (the "float" coding, whose chunk table and chunks are its payload) its bytes
    of the payload, else None: a chunk of a quantized stream, a run of chunks of a float tensor
    (`floats.chunk_runs`). A tensor decoded otherwise reports nothing."""
    if out is None:
        return _decode_tensor(fields, payload, dtype_name, numel, nbytes, None, chunk_decoded)
    if out.dtype != np.uint8 or out.shape != (nbytes,) or not out.flags.c_contiguous:
        raise InvalidArgumentError(f"out must be a contiguous uint8 array of {nbytes} bytes")
    dtype = lookup(dtype_name)
    # (asked of a view: out.ctypes.data took 4x as long, `python -m timeit`)
    aligned = dtype is None or (nbytes % dtype.itemsize == 0 and out.view(dtype.word_dtype).flags.aligned)
    raw = _decode_tensor(fields, payload, dtype_name, numel, nbytes, out if aligned else None, chunk_decoded)
    if raw is not out:  # a coding that decodes into memory of its own
        if raw.size != nbytes:
            raise FormatError(f"tensor decoded to {raw.size} bytes, expected {nbytes}")
        out[:] = raw
    return out


def _decode_tensor(fields, payload, dtype_name, numel, nbytes, out, chunk_decoded=None):
    """decode_tensor's bytes, in `out` where the coding decodes in place, else in a new array."""
    coding = fields.get("coding")
    if coding == "raw":
        if payload.size != nbytes:
            raise FormatError(f"raw payload of {payload.size} bytes for a {nbytes}-byte tensor")
        return payload
    dtype = lookup(dtype_name)
    if dtype is None:
        raise FormatError(f"coding {coding!r} needs a known dtype, got {dtype_name!r}")
    if coding == "float":
        enc = _encoded_floats(fields, payload, dtype, numel)
        words = None if out is None or nbytes != numel * dtype.itemsize else out.view(dtype.word_dtype)
        return floats.decode_floats(enc, words, chunk_decoded=chunk_decoded).view(np.uint8)
    if coding == "int":
        if dtype.kind == "float":
            raise FormatError(f"int coding for a {dtype_name} tensor")
        # se(v) of a signed 32-bit value can reach 2**32: it needs 64-bit symbols
        wide = np.uint64 if dtype.itemsize == 8 or (dtype.kind == "int" and dtype.itemsize == 4) else np.uint32
        symbols = streams.decode_stream(unpack_stream(fields, payload, numel), dtype=wide)
        if dtype.kind == "int":
            return unsigned_to_signed(symbols, dtype.numpy_dtype).view(np.uint8)
        limit = 1 if dtype.kind == "bool" else np.iinfo(dtype.word_dtype).max
        if symbols.size and symbols.max() > limit:
            raise FormatError(f"decoded integers do not fit {dtype_name}")
        return symbols.astype(dtype.word_dtype).view(np.uint8)
    if coding == "quantized":
        table, stream = _quantized_stream(fields, payload, dtype, numel)
        with np.errstate(over="ignore", invalid="ignore"):  # a hostile step overflows the dtype: decoded_crc32 fails
            if reconstructs_by_chunk(stream.plan, fields) and nbytes == numel * dtype.itemsize:
                return decode_and_reconstruct_by_chunk(stream, fields, table, dtype, nbytes, out, chunk_decoded)
            symbols = streams.decode_stream(stream, dtype=np.uint32)
            del stream  # the payload's memory can go before the reconstruction's is taken
            return reconstruct(symbols, fields, table, dtype)
    raise FormatError(f"unknown coding {coding!r}")


def _encoded_floats(fields, payload, dtype, numel):
    """The `floats.EncodedFloats` of a tensor of the "float" coding."""
    if dtype.kind != "float":
        raise FormatError(f"float coding for a {dtype.name} tensor")
    chunk_size = fields.get("chunk_size")
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or not 1 <= chunk_size <= 1 << 30:
        raise FormatError(f"float coding needs an integer chunk_size in 1..2**30, got {chunk_size!r}")
    return floats.EncodedFloats(dtype.float_layout, numel, chunk_size, payload)


def _quantized_stream(fields, payload, dtype, numel):
    """(reconstruction table or None, `EncodedStream`) of a tensor of the "quantized" coding."""
    if dtype.kind != "float":
        raise FormatError(f"quantized coding for a {dtype.name} tensor")
    _check_quantizer_fields(fields)
    table_bytes = _table_bytes(fields)
    if payload.size < table_bytes:
        raise TruncatedError(f"quantized payload of {payload.size} bytes has no room for its reconstruction table")
    table = quantizer_table(fields, payload[:table_bytes].tobytes())
    if table is not None and not np.all(np.isfinite(table[0])):
        raise FormatError("reconstruction table holds NaN or infinity")
    return table, unpack_stream(fields, payload[table_bytes:], numel)


def _table_bytes(fields):
    """Bytes a quantized payload (its fields checked) starts with: its reconstruction table, if any."""
    return 8 * (fields["levels"] + 1) if fields["reconstruction"] == "gg" else 0


RANGED_CODINGS = ("float", "quantized")


def _covering_chunks(start, stop, chunk_size):
    """(first, end): the chunks that hold elements start..stop - 1."""
    return start // chunk_size, -(-stop // chunk_size)


def decode_tensor_range(fields, payload, dtype_name, numel, start, stop):
    """Raw bytes (uint8) of elements start..stop - 1 (flat, row-major; start < stop) of a tensor
    of a RANGED_CODINGS coding, decoded from the chunks that hold them alone; None for a quantized
    tensor whose stream does not decode chunk by chunk (the caller decodes it whole)."""
    dtype = lookup(dtype_name)
    coding = fields.get("coding")
    if coding not in RANGED_CODINGS or dtype is None or not 0 <= start < stop <= numel:
        raise InvalidArgumentError(f"no range {start}..{stop} of a {coding!r}-coded {dtype_name} tensor of {numel}")
    if coding == "float":
        enc = _encoded_floats(fields, payload, dtype, numel)
        chunk_size = enc.chunk_size
        first, end = _covering_chunks(start, stop, chunk_size)
        words = floats.decode_floats(enc, chunks=(first, end))
    else:
        table, stream = _quantized_stream(fields, payload, dtype, numel)
        if not reconstructs_by_chunk(stream.plan, fields):
            return None
        chunk_size = stream.plan.chunk_size
        first, end = _covering_chunks(start, stop, chunk_size)
        nbytes = (min(numel, end * chunk_size) - first * chunk_size) * dtype.itemsize
        with np.errstate(over="ignore", invalid="ignore"):  # as in _decode_tensor
            raw = decode_and_reconstruct_by_chunk(stream, fields, table, dtype, nbytes, chunks=(first, end))
        words = raw.view(dtype.word_dtype)
    return words[start - first * chunk_size : stop - first * chunk_size].view(np.uint8)


def range_head_bytes(fields, dtype_name, numel):
    """How many bytes at the start of a RANGED_CODINGS payload `decode_tensor_range` reads for any
    range: its tables (a float payload's chunk table; a quantized one's reconstruction table, chunk
    table and orders). None where the fields do not say (they are checked when it decodes)."""
    dtype = lookup(dtype_name)
    if dtype is None or dtype.kind != "float" or numel == 0:
        return None
    try:
        if fields.get("coding") == "float":
            return 8 * (-(-numel // _encoded_floats(fields, b"", dtype, numel).chunk_size) + 1)
        _check_quantizer_fields(fields)
        return _table_bytes(fields) + stream_head_bytes(fields, numel)
    except FormatError:
        return None


def range_payload_span(fields, head, dtype_name, numel, start, stop):
    """(lo, hi): the payload bytes that hold the chunks of elements start..stop - 1, found from
    `head`, the payload's first `range_head_bytes` bytes; None where its tables are inconsistent or
    the stream does not decode chunk by chunk (the caller then reads the whole payload, whose
    decoding says what is wrong)."""
    dtype = lookup(dtype_name)
    try:
        if fields.get("coding") == "float":  # the chunk table: byte offsets after itself
            first, end = _covering_chunks(start, stop, _encoded_floats(fields, b"", dtype, numel).chunk_size)
            offsets = np.frombuffer(head, dtype="<u8")
            lo, hi = int(offsets[first]), int(offsets[end])
        else:  # the chunk table: each chunk's bits, in whole words
            _, stream = _quantized_stream(fields, head, dtype, numel)
            if not reconstructs_by_chunk(stream.plan, fields):
                return None
            first, end = _covering_chunks(start, stop, stream.plan.chunk_size)
            starts = stream.plan.chunk_word_starts()
            lo, hi = 8 * int(starts[first]), 8 * int(starts[end])
    except (FormatError, IndexError):
        return None
    return (head.size + lo, head.size + hi) if lo <= hi <= 1 << 62 else None


_FLOAT_MAX = float(np.finfo(np.float64).max)


def _check_gg(gg):
    if (
        not isinstance(gg, list)
        or len(gg) != 2
        # abs(v) <= max float, not np.isfinite(v): a JSON integer past 2**64 makes np.isfinite raise TypeError
        or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= _FLOAT_MAX and v >= 0 for v in gg
        )
        or not 0.1 <= gg[0] <= 3.0
    ):
        raise FormatError(f"gg must be [nu, beta] with nu in [0.1, 3] and beta >= 0, got {gg!r}")


def _check_quantizer_fields(fields):
    step, dead_zone, reconstruction = fields.get("step"), fields.get("dead_zone"), fields.get("reconstruction")
    # abs(v) <= max float, not np.isfinite(v): a JSON integer past 2**64 makes np.isfinite raise TypeError
    if not isinstance(step, (int, float)) or isinstance(step, bool) or not (abs(step) <= _FLOAT_MAX and step > 0):
        raise FormatError(f"quantizer step must be a finite positive number, got {step!r}")
    if reconstruction not in RECONSTRUCTIONS:
        raise FormatError(f"unknown reconstruction {reconstruction!r}")
    if reconstruction == "dq":
        block = fields.get("dq_block")
        if not isinstance(block, int) or isinstance(block, bool) or not 1 <= block <= 1 << 24:
            raise FormatError(f"dq_block must be an integer in 1..2**24, got {block!r}")
        if "gg" in fields:
            _check_gg(fields["gg"])
        return
    if not isinstance(dead_zone, (int, float)) or isinstance(dead_zone, bool) or not 0 <= dead_zone < 1:
        raise FormatError(f"quantizer dead_zone must be in [0, 1), got {dead_zone!r}")
    if reconstruction == "gg":
        _check_gg(fields.get("gg"))
        levels = fields.get("levels")
        if not isinstance(levels, int) or isinstance(levels, bool) or not 0 <= levels <= 1 << 16:
            raise FormatError(f"gg levels must be an integer in 0..65536, got {levels!r}")
