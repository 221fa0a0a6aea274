"""Seed files, mutations and the one property every hostile input must keep, shared by the
hypothesis tests (tests/test_fuzz_mutations.py), the atheris harness and the plain mutation loop
(tests/fuzz/harness.py).

The property: opening a file and decoding every tensor either raises a `BslzError` or gives exactly
the bytes that were written. Anything else (another exception, a crash, a hang) is a bug.
"""

import io
import json
import os
import struct
import zlib

import numpy as np

from bslz.codec import floats, streams
from bslz.errors import BslzError
from bslz.formats import container_writer, tensor_codec
from bslz.formats.checksums import crc32
from bslz.formats.container import ALIGN, MAGIC, PREFIX, ContainerReader, align
from bslz.formats.container_writer import ContainerWriter
from bslz.formats.piece_checksums import MIN_PIECE_BYTES
from bslz.formats.safetensors_io import read_safetensors
from bslz.formats.small_tensors import decode_many
from bslz.formats.stream_payload import pack_stream, unpack_stream
from bslz.formats.tensor_codec import encode_lossless, encode_quantized
from bslz.reader import as_tensor

# Small enough that a hostile shape cannot make a decoder allocate much, large enough for the seeds.
FUZZ_MAX_DECODED_BYTES = 1 << 20


def _int_stream(values, mode, signed):
    from bslz.codec.expgolomb import signed_to_unsigned

    symbols = signed_to_unsigned(values) if signed else values
    fields, payload = pack_stream(streams.encode_stream(symbols, mode=mode, chunk_size=256, block_size=64))
    fields["coding"] = "int"
    return fields, np.frombuffer(payload, np.uint8)


def seed_tensors():
    """[(name, dtype, shape, fields, payload, decoded raw bytes)] covering every coding and stream
    mode, each small (a seed file stays a few KiB)."""
    rng = np.random.default_rng(2024)
    out = []

    def lossless(name, dtype, arr):
        raw = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        fields, payload = encode_lossless(raw, dtype, arr.shape)
        payload = np.frombuffer(payload, np.uint8) if isinstance(payload, bytes) else np.asarray(payload, np.uint8)
        out.append((name, dtype, arr.shape, fields, payload, raw))

    w = (rng.standard_normal(600) * 0.02).astype(np.float32)
    lossless("f32", "F32", w.reshape(20, 30))
    lossless("f16", "F16", (rng.standard_normal(300) * 0.1).astype(np.float16))
    lossless("f64", "F64", w[:200].astype(np.float64))
    lossless("bf16", "BF16", (w[:256].view(np.uint32) >> 16).astype(np.uint16))
    lossless("f8", "F8_E4M3", (rng.geometric(0.2, 1000) + 30).astype(np.uint8))  # Huffman segments
    # rANS segments; its own generator keeps the draws of the seeds after it (regressions/ expect them)
    peaked = np.random.default_rng(2026).geometric(0.7, 1000) + 30
    lossless("f8.peaked", "F8_E4M3", peaked.astype(np.uint8))
    lossless("f32.const", "F32", np.full(100, 0.5, np.float32))
    lossless("raw.u8", "U8", np.array([3, 1, 4, 1, 5], np.uint8))
    lossless("raw.empty", "F32", np.zeros((0, 4), np.float32))
    out.append(("raw.unknown", "F4_FUTURE", (3,), {"coding": "raw"}, np.arange(7, dtype=np.uint8), None))
    ints = rng.geometric(0.3, 700).astype(np.int32) - 3
    for mode in ("eg", "zero_run", "rans"):
        vals = np.where(rng.random(700) < 0.6, 0, ints).astype(np.int32) if mode == "zero_run" else ints
        fields, payload = _int_stream(vals, mode, signed=True)
        out.append((f"i32.{mode}", "I32", (700,), fields, payload, vals.view(np.uint8)))
    u16 = rng.integers(0, 3000, 300).astype(np.uint16)
    fields, payload = _int_stream(u16, "rans", signed=False)
    out.append(("u16.rans", "U16", (300,), fields, payload, u16.view(np.uint8)))
    flags = rng.random(500) < 0.1
    fields, payload = _int_stream(flags.view(np.uint8), "eg", signed=False)
    out.append(("bool", "BOOL", (500,), fields, payload, flags.view(np.uint8)))
    q = (rng.laplace(size=800) * 0.05).astype(np.float32)
    for dtype, arr in (
        ("F32", q),
        ("F16", q.astype(np.float16)),
        ("BF16", (q.view(np.uint32) >> 16).astype(np.uint16)),
    ):
        raw = arr.view(np.uint8)
        for reconstruction in ("midpoint", "gg"):
            fields, payload, decoded, _, _ = encode_quantized(raw, dtype, 0.02, 0.4, reconstruction)
            name = f"q.{dtype.lower()}.{reconstruction}.{fields['mode']}"
            out.append((name, dtype, arr.shape, fields, np.frombuffer(payload, np.uint8), decoded))
    for mode in ("zero_run", "rans"):  # the same symbols in the other stream modes
        fields, payload, decoded, _, _ = encode_quantized(q.view(np.uint8), "F32", 0.05, 0.3, "gg")
        table_bytes = 8 * (fields["levels"] + 1)
        stream = unpack_stream(fields, np.frombuffer(payload[table_bytes:], np.uint8), q.size)
        symbols = streams.decode_stream(stream, dtype=np.uint32)
        fields = dict(fields)
        stream_fields, stream_payload = pack_stream(
            streams.encode_stream(symbols, mode=mode, chunk_size=256, block_size=64)
        )
        fields.update(stream_fields)
        payload = np.frombuffer(payload[:table_bytes] + stream_payload, np.uint8)
        out.append((f"q.f32.gg.{mode}", "F32", q.shape, fields, payload, decoded))
    if "dq" in tensor_codec.RECONSTRUCTIONS:  # dependent quantization, where this bslz has it
        fields, payload, decoded, _, _ = encode_quantized(q.view(np.uint8), "F32", 0.05, reconstruction="dq")
        out.append(("q.f32.dq", "F32", q.shape, fields, np.frombuffer(payload, np.uint8), decoded))
    # a float tensor of several chunks, of which `decode_range` decodes some (its own generator, as above)
    many = (np.random.default_rng(2027).standard_normal(900) * 0.02).astype(np.float32)
    encoded = floats.encode_floats(many, "float32", chunk_size=128)
    fields = {"coding": "float", "chunk_size": encoded.chunk_size}
    out.append(("f32.chunks", "F32", (30, 30), fields, np.asarray(encoded.payload, np.uint8), many.view(np.uint8)))
    # a payload of several 4 KiB pieces with their own checksums (format 1.3), which `decode_range`
    # reads only some of
    long = (np.random.default_rng(2028).standard_normal(4000) * 0.02).astype(np.float32)
    encoded = floats.encode_floats(long, "float32", chunk_size=512)
    fields = {"coding": "float", "chunk_size": encoded.chunk_size}
    out.append(("f32.pieces", "F32", (40, 100), fields, np.asarray(encoded.payload, np.uint8), long.view(np.uint8)))
    return out


def build_container(tensors, metadata=None, source_header=None):
    """Bytes of a container holding `tensors` ([(name, dtype, shape, fields, payload, decoded)]),
    every payload longer than 4096 bytes with its pieces' checksums (the writer's threshold for
    them lowered to the format's smallest piece: the seeds stay a few KiB)."""
    f = io.BytesIO()
    saved = container_writer.PIECES_FROM_BYTES
    container_writer.PIECES_FROM_BYTES = MIN_PIECE_BYTES
    try:
        writer = ContainerWriter(
            f, [(t[0], t[1], t[2]) for t in tensors], metadata=metadata, source_header=source_header
        )
        for name, dtype, shape, fields, payload, decoded in tensors:
            dcrc = crc32(decoded) if decoded is not None else zlib.crc32(bytes(payload))
            writer.add(name, dtype, shape, fields, payload, dcrc)
        writer.close()
    finally:
        container_writer.PIECES_FROM_BYTES = saved
    return f.getvalue()


def seed_files():
    """{name: (container bytes, {tensor name: decoded bytes})}: one file per group of codings, and
    one holding everything."""
    tensors = seed_tensors()
    expected = {t[0]: (bytes(t[5]) if t[5] is not None else bytes(t[4])) for t in tensors}
    groups = {
        "float": [t for t in tensors if t[3]["coding"] in ("float", "raw")],
        "int": [t for t in tensors if t[3]["coding"] == "int"],
        "quantized": [t for t in tensors if t[3]["coding"] == "quantized"],
        "all": tensors,
    }
    out = {}
    for group, members in groups.items():
        blob = build_container(members, metadata={"format": "pt", "group": group})
        out[group] = (blob, {t[0]: expected[t[0]] for t in members})
    return out


# ---- taking a container apart and putting it back together -------------------------------------


def split(blob):
    """(major, minor, reserved, header dict, data bytes), or None when the prefix or JSON is broken."""
    if len(blob) < PREFIX.size:
        return None
    magic, major, minor, reserved, n = PREFIX.unpack_from(blob)
    try:
        header = json.loads(blob[PREFIX.size : PREFIX.size + n])
    except (ValueError, RecursionError):
        return None
    return major, minor, reserved, header, blob[align(PREFIX.size + n) :]


def join(header, data, major=1, minor=0, reserved=0, magic=MAGIC):
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    head = PREFIX.pack(magic, major, minor, reserved, len(text)) + text
    return head + bytes(-len(head) % ALIGN) + data


def fix_checksums(blob):
    """The same file with every payload crc32 (and piece_crc32, where piece_bytes is usable)
    recomputed from the (possibly corrupt) bytes it points at, so that a corrupt payload gets past
    the checksums and reaches its decoder. Files whose header does not parse come back unchanged."""
    parts = split(blob)
    if parts is None or not isinstance(parts[3], dict) or not isinstance(parts[3].get("tensors"), list):
        return blob
    major, minor, reserved, header, data = parts
    for e in header["tensors"]:
        if isinstance(e, dict) and all(_is_uint(e.get(k)) for k in ("offset", "length")):
            payload = data[e["offset"] : e["offset"] + e["length"]]
            e["crc32"] = zlib.crc32(payload)
            size = e.get("piece_bytes")
            if _is_uint(size) and size >= 4096 and "piece_crc32" in e:
                e["piece_crc32"] = [zlib.crc32(payload[lo : lo + size]) for lo in range(0, len(payload), size)]
    return join(header, data, major, minor, reserved)


def _is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 40


# ---- mutations ---------------------------------------------------------------------------------

HOSTILE_VALUES = [
    -1, 0, 1, 2, 3, 7, 8, 63, 64, 65, 255, 256, 4095, 4096, 65535, 65536, 65537, 2**31 - 1, 2**31, 2**32,
    2**32 + 1, 2**53, 2**62, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**100, 10**400, -(2**63), 0.5, -0.0, 1e-320,
    1e308, float("nan"), float("inf"), float("-inf"), True, False, None, "", "0", "eg", "zero_run", "rans",
    "raw", "float", "int", "quantized", "midpoint", "gg", "F32", "U8", "BOOL", "\ud800", [], [0], [1, 2],
    [0.5, 0.1], [-1], [2**31, 2**31], [2**40] * 3, {}, {"a": 1},
]  # fmt: skip


def mutate_bytes(blob, rng, other=None):
    """One random byte-level mutation of `blob` (bytes); `other` is a second file to splice from."""
    b = bytearray(blob)
    kind = rng.integers(8)
    if not b:
        return bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
    pos = int(rng.integers(len(b)))
    if kind == 0:  # flip one bit
        b[pos] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # flip several bits in a small window
        for _ in range(int(rng.integers(2, 9))):
            b[min(len(b) - 1, pos + int(rng.integers(16)))] ^= 1 << int(rng.integers(8))
    elif kind == 2:  # random bytes
        n = int(rng.integers(1, 17))
        b[pos : pos + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif kind == 3:  # interesting bytes
        b[pos] = [0, 1, 0x7F, 0x80, 0xFF, 0x20, 0x22, 0x5B, 0x5D, 0x2C][int(rng.integers(10))]
    elif kind == 4:  # truncate
        del b[pos:]
    elif kind == 5:  # delete or duplicate a range
        n = int(rng.integers(1, 65))
        if rng.integers(2):
            del b[pos : pos + n]
        else:
            b[pos:pos] = b[pos : pos + n]
    elif kind == 6 and other:  # splice: a prefix of this file, a suffix of another
        cut = int(rng.integers(len(other)))
        b = b[:pos] + bytearray(other[cut:])
    else:  # an interesting 64-bit little-endian integer
        values = [0, 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63, 2**64 - 1]
        value = values[int(rng.integers(len(values)))]
        b[pos : pos + 8] = struct.pack("<Q", value)[: len(b) - pos]
    return bytes(b)


def mutate_header(blob, rng):
    """Set one random field of the JSON header (or a tensor entry) to a hostile value; payloads kept."""
    parts = split(blob)
    if parts is None or not isinstance(parts[3], dict):
        return blob
    major, minor, reserved, header, data = parts
    entries = header.get("tensors") if isinstance(header.get("tensors"), list) else []
    value = HOSTILE_VALUES[int(rng.integers(len(HOSTILE_VALUES)))]
    if entries and rng.random() < 0.85:
        e = entries[int(rng.integers(len(entries)))]
        if not isinstance(e, dict):
            return blob
        keys = sorted(e) + ["gg", "levels", "step", "dead_zone", "num_orders", "block_size", "piece_bytes"]
        key = keys[int(rng.integers(len(keys)))]
        if key == "shape" and isinstance(e.get(key), list) and e[key] and rng.random() < 0.5:
            e[key][int(rng.integers(len(e[key])))] = value  # one dimension
        elif key in ("gg", "piece_crc32") and isinstance(e.get(key), list) and e[key] and rng.random() < 0.5:
            e[key][int(rng.integers(len(e[key])))] = value
        elif rng.random() < 0.1:
            e.pop(key, None)
        else:
            e[key] = value
    else:
        key = ["creator", "metadata", "source", "tensors", "extra"][int(rng.integers(5))]
        header[key] = value
    text = json.dumps(header, allow_nan=True).encode("utf-8", "surrogatepass")
    return join(text, data, major, minor, reserved)


def mutate(blob, rng, other=None):
    """A random stack of 1-4 mutations, header-aware ones included; checksums fixed half the time."""
    for _ in range(int(rng.integers(1, 5))):
        blob = mutate_header(blob, rng) if rng.random() < 0.3 else mutate_bytes(blob, rng, other)
    return fix_checksums(blob) if rng.random() < 0.5 else blob


# ---- the property ------------------------------------------------------------------------------


def check_container(path, expected=None, max_decoded_bytes=FUZZ_MAX_DECODED_BYTES):
    """Open `path` and decode every tensor, whole, its middle third (`decode_range`, what
    `get_slice` reads) and as `verify` does. BslzError is a fine answer; any other exception propagates. A tensor that
    decodes must be bytes-identical to `expected[name]` (when known), and a part that decodes the
    same part of the whole (a part is checked by the payload's checksum alone: where the whole
    fails its decoded checksum, a part may decode to other bytes). Returns the number of tensors
    that decoded whole."""
    try:
        reader = ContainerReader(path, max_decoded_bytes=max_decoded_bytes)
    except BslzError:
        return 0
    decoded = 0
    whole = {}  # name: its decoded bytes, or None where they fail
    try:
        for name in reader.keys():
            part = _middle_third(reader, name)
            try:
                reader.verify(name)  # every checksum, piece checksums too
            except BslzError:
                pass
            try:
                raw = reader.decode_raw(name)
            except BslzError:
                whole[name] = None
                continue
            whole[name] = raw.tobytes()
            if part is not None:
                third, item = reader.entry(name)["numel"] // 3, raw.size // max(1, reader.entry(name)["numel"])
                assert part.tobytes() == raw[third * item : 2 * third * item].tobytes(), f"{name!r}: part differs"
            decoded += 1
            e = reader.entry(name)
            try:
                as_tensor(raw, e["dtype"], e["shape"], "np")  # what safe_open hands out
            except BslzError:
                pass
            if expected is not None and name in expected:
                assert raw.tobytes() == expected[name], f"tensor {name!r} decoded without error to other bytes"
            assert raw.size == e["nbytes"]
        _check_decoded_together(reader, whole)
    finally:
        reader.close()
    return decoded


def _check_decoded_together(reader, whole):
    """`decode_many` of every tensor (the small float ones in one kernel call, as `decompress_bytes`
    decodes them) fails where one of them failed alone, and else gives the same bytes."""
    names = list(whole)
    outs = [np.empty(reader.entry(name)["nbytes"], dtype=np.uint8) for name in names]
    try:
        decode_many(reader, names, outs)
    except BslzError:
        assert any(raw is None for raw in whole.values()), "decode_many failed where every tensor decodes alone"
        return
    for name, out in zip(names, outs):
        assert whole[name] is not None, f"{name!r}: decode_many decoded what decode_raw refuses"
        assert out.tobytes() == whole[name], f"{name!r}: decode_many decoded other bytes"


def _middle_third(reader, name):
    """The raw bytes of the tensor's middle third, or None where they fail to decode."""
    third = reader.entry(name)["numel"] // 3
    try:
        return reader.decode_range(name, third, 2 * third)
    except BslzError:
        return None


def check_safetensors(path):
    """read_safetensors (the compressor's input parser) on hostile bytes: a BslzError or a header
    whose tensors tile the file."""
    try:
        st = read_safetensors(path)
    except BslzError:
        return 0
    size = os.path.getsize(path)
    assert all(st.data_start + t.end <= size for t in st.tensors)
    return len(st.tensors)
