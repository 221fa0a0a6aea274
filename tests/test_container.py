"""The `.bslz` container reader refuses what FORMAT.md forbids, each with the right error.

Focused cases; exhaustive hardening (every bit flipped, fuzzing) lives elsewhere.
"""

import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import bslz.numpy
from bslz import FormatError, TruncatedError, UnsupportedVersionError
from bslz.codec import streams
from bslz.formats import checksums, stream_payload, tensor_codec
from bslz.formats import reconstruction as reconstruction_module
from bslz.formats.container import ALIGN, MAGIC, MAX_HEADER_BYTES, PREFIX, ContainerReader, align
from bslz.formats.dtypes import from_float32, lookup, to_float32


def make_tensors():
    rng = np.random.default_rng(5)
    return {
        "w": (rng.standard_normal(5000) * 0.02).astype(np.float32),  # float coding
        "ids": np.arange(300, dtype=np.int32) % 17,  # int coding
        "q": (rng.standard_normal(1 << 16) * 0.1).astype(np.float16),  # quantized, with a GG table
        "tiny": np.array([3, 1, 4], np.uint8),  # raw
    }


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Bytes of a valid container holding every coding."""
    path = tmp_path_factory.mktemp("good") / "good.bslz"
    report = bslz.numpy.save_file(make_tensors(), path, {"k": "v"}, step=0.01, exclude=["w"])
    assert {t.coding for t in report.tensors} == {"float", "int", "quantized", "raw"}
    return path.read_bytes()


@pytest.fixture(scope="module")
def uniform(tmp_path_factory):
    """A valid container whose "q" is uniformly quantized (a step recorded by training, no target)."""
    path = tmp_path_factory.mktemp("uniform") / "uniform.bslz"
    report = bslz.numpy.save_file(make_tensors(), path, {"bslz.steps": json.dumps({"q": 0.01})})
    assert {t.name: t.coding for t in report.tensors}["q"] == "quantized"
    return path.read_bytes()


def split(blob):
    """(major, minor, reserved, header dict, data bytes) of a container."""
    magic, major, minor, reserved, n = PREFIX.unpack_from(blob)
    assert magic == MAGIC
    return major, minor, reserved, json.loads(blob[PREFIX.size : PREFIX.size + n]), blob[align(PREFIX.size + n) :]


def join(header, data, major=1, minor=0, reserved=0, magic=MAGIC):
    text = json.dumps(header).encode() if isinstance(header, dict) else header
    head = PREFIX.pack(magic, major, minor, reserved, len(text)) + text
    return head + bytes(-len(head) % ALIGN) + data


def open_bytes(tmp_path, blob, **options):
    path = tmp_path / "f.bslz"
    path.write_bytes(blob)
    return ContainerReader(path, **options)


def decode_all(reader):
    try:
        return {name: reader.decode_raw(name).copy() for name in reader.keys()}
    finally:
        reader.close()


def edited(good, edit, data_edit=None):
    major, minor, reserved, header, data = split(good)
    edit(header)
    return join(header, data if data_edit is None else data_edit(data), major, minor, reserved)


# ---- the valid file --------------------------------------------------------------------------


@pytest.mark.small
def test_good_file_layout(good, tmp_path):
    major, minor, reserved, header, data = split(good)
    assert (major, minor, reserved) == (1, 3, 0)
    assert header["creator"].startswith("bslz ")
    _, _, _, n = struct.unpack_from("<HHIQ", good, 8)
    assert (
        good[
            PREFIX.size + len(json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()) : PREFIX.size + n
        ].strip(b" ")
        == b""
    )
    expected = 0
    for e in header["tensors"]:
        assert e["offset"] == expected and e["offset"] % ALIGN == 0
        assert not any(data[e["offset"] + e["length"] : align(e["offset"] + e["length"])])  # zero padding
        expected = align(e["offset"] + e["length"])
    last = header["tensors"][-1]
    assert len(data) == last["offset"] + last["length"]
    decoded = decode_all(open_bytes(tmp_path, good))
    assert decoded["tiny"].tobytes() == bytes([3, 1, 4])
    assert decoded["w"].tobytes() == make_tensors()["w"].tobytes()


def test_a_container_written_over_another_is_the_one_written_alone(tmp_path):
    """A writer may write a file over an earlier container (the `bits` search writes its tries over
    one another): the gaps are zeros again and the file ends at the last payload."""
    from bslz.formats.container_writer import ContainerWriter

    def write(f, payloads):
        writer = ContainerWriter(f, [(name, "U8", [len(p)]) for name, p in payloads])
        for name, p in payloads:
            writer.add(name, "U8", [len(p)], {"coding": "raw"}, p, zlib.crc32(p))
        return writer.close()

    short = [("a", bytes([1] * 10)), ("b", bytes([2] * 3))]
    with open(tmp_path / "over.bslz", "wb") as f:
        write(f, [("a", bytes([9] * 300)), ("b", bytes([9] * 500))])
        size = write(f, short)
    with open(tmp_path / "alone.bslz", "wb") as f:
        assert write(f, short) == size
    assert (tmp_path / "over.bslz").read_bytes() == (tmp_path / "alone.bslz").read_bytes()
    assert os.path.getsize(tmp_path / "alone.bslz") == size
    assert {k: v.tobytes() for k, v in decode_all(ContainerReader(tmp_path / "over.bslz")).items()} == dict(short)


def test_rebuilt_file_still_reads(good, tmp_path):
    """The helpers themselves: a re-serialized header (other padding) reads the same."""
    assert decode_all(open_bytes(tmp_path, edited(good, lambda h: None))).keys() == {"w", "ids", "q", "tiny"}


def test_newer_minor_version_and_unknown_fields_are_read(good, tmp_path):
    _, _, _, header, data = split(good)
    header["future"] = {"anything": [1, 2]}
    header["tensors"][0]["future_field"] = "ignored"
    reader = open_bytes(tmp_path, join(header, data, minor=9))
    assert reader.version == (1, 9)
    assert len(decode_all(reader)) == 4


# ---- prefix ----------------------------------------------------------------------------------


@pytest.mark.small
@pytest.mark.parametrize("magic", [b"\x89BSLZ\r\n\x00", b"PK\x03\x04\x00\x00\x00\x00", b"\x00" * 8])
def test_bad_magic(good, tmp_path, magic):
    with pytest.raises(FormatError, match="magic") as exc:
        open_bytes(tmp_path, magic + good[8:])
    assert type(exc.value) is FormatError


def test_safetensors_file_is_not_a_container(tmp_path):
    import safetensors.numpy

    safetensors.numpy.save_file({"a": np.zeros(3)}, tmp_path / "a.safetensors")
    with pytest.raises(FormatError, match="magic"):
        ContainerReader(tmp_path / "a.safetensors")


@pytest.mark.small
@pytest.mark.parametrize("major", [0, 2, 65535])
def test_unknown_major_version(good, tmp_path, major):
    _, minor, reserved, header, data = split(good)
    with pytest.raises(UnsupportedVersionError, match=f"format {major}"):
        open_bytes(tmp_path, join(header, data, major=major))


@pytest.mark.small
def test_reserved_field_must_be_zero(good, tmp_path):
    _, _, _, header, data = split(good)
    with pytest.raises(FormatError, match="reserved"):
        open_bytes(tmp_path, join(header, data, reserved=1))


@pytest.mark.small
@pytest.mark.parametrize("n", [MAX_HEADER_BYTES + 1, 2**63, 2**64 - 1])
def test_header_over_the_cap(tmp_path, n):
    """Refused from the prefix alone, before reading (or allocating) the announced header."""
    blob = PREFIX.pack(MAGIC, 1, 0, 0, n) + b"{}"
    with pytest.raises(FormatError, match="cap") as exc:
        open_bytes(tmp_path, blob)
    assert not isinstance(exc.value, TruncatedError)


# ---- truncation ------------------------------------------------------------------------------


def test_every_truncation_is_detected(good, tmp_path):
    """Proper prefixes of the file (every one in the prefix, around the header's end and in the
    data, a sample inside the header) are refused on open as truncated: the tiling leaves no slack."""
    path = tmp_path / "cut.bslz"
    header_end = PREFIX.size + struct.unpack_from("<Q", good, 16)[0]
    cuts = set(range(PREFIX.size + 1)) | set(range(PREFIX.size, header_end, 37))
    cuts |= set(range(header_end - 3, min(header_end + 2 * ALIGN, len(good))))
    cuts |= set(range(header_end, len(good), 7)) | {len(good) - 1}
    for cut in cuts:
        path.write_bytes(good[:cut])
        with pytest.raises(TruncatedError):
            ContainerReader(path)


def test_truncated_payload_inside_a_valid_tiling(good, tmp_path):
    """A payload shortened along with its length field: the checksum, then the decoder, catch it."""
    _, _, _, header, data = split(good)
    entries = {e["name"]: e for e in header["tensors"]}
    for name in ("w", "ids", "q"):
        h = json.loads(json.dumps(header))
        e = next(x for x in h["tensors"] if x["name"] == name)
        e["length"] -= 9
        start, end = e["offset"], e["offset"] + entries[name]["length"]
        new_data = data[: start + e["length"]] + bytes(-(start + e["length"]) % ALIGN) + data[align(end) :]
        shift = align(end) - align(start + e["length"])
        for later in h["tensors"]:
            if later["offset"] > start:
                later["offset"] -= shift
        reader = open_bytes(tmp_path, join(h, new_data))
        with pytest.raises(FormatError):
            reader.decode_raw(name)
        e["crc32"] = zlib.crc32(new_data[start : start + e["length"]])
        reader.close()
        reader = open_bytes(tmp_path, join(h, new_data))
        with pytest.raises(FormatError):  # TruncatedError or another FormatError, never a crash
            reader.decode_raw(name)
        reader.close()


# ---- checksums -------------------------------------------------------------------------------


def _decodes_exactly_or_fails_as_corrupt(reader, name, right):
    """A corrupt payload: decoding it fails, naming it, or (a flip in bits the decoder never reads,
    such as a stream's last byte's padding) gives the tensor exactly; `verify` always fails."""
    try:
        np.testing.assert_array_equal(reader.decode_raw(name), right)
    except FormatError as exc:
        assert "payload fails its checksum" in str(exc)
    with pytest.raises(FormatError, match="payload fails its checksum"):
        reader.verify(name)


def test_payload_corruption_caught_by_checksum(good, tmp_path):
    _, _, _, header, data = split(good)
    reader = open_bytes(tmp_path, good)
    right = {n: reader.decode_raw(n) for n in reader.keys()}
    reader.close()
    for e in header["tensors"]:
        for where in (0, e["length"] // 2, e["length"] - 1):
            corrupt = bytearray(data)
            corrupt[e["offset"] + where] ^= 0x10
            reader = open_bytes(tmp_path, join(header, bytes(corrupt)))
            _decodes_exactly_or_fails_as_corrupt(reader, e["name"], right[e["name"]])
            others = [n for n in reader.keys() if n != e["name"]]
            assert all(reader.decode_raw(n) is not None for n in others)  # the rest still decodes
            reader.close()


def test_decoded_checksum_mismatch(good, tmp_path):
    def edit(h):
        for e in h["tensors"]:
            e["decoded_crc32"] ^= 1

    reader = open_bytes(tmp_path, edited(good, edit))
    for name in reader.keys():
        with pytest.raises(FormatError, match="checksum"):
            reader.decode_raw(name)
    reader.close()


def test_checksums_of_pieces_combine_into_the_whole():
    data = np.random.default_rng(8).integers(0, 256, 10_000, dtype=np.uint8)
    if not checksums.CAN_COMBINE:
        pytest.skip("no zlib-ng: checksums are taken whole")
    bounds = [0, 1, 1, 4096, 9999, 10_000]  # an empty piece too
    pieces = checksums.PieceCrcs()
    for j in reversed(range(len(bounds) - 1)):  # threads finish in any order
        pieces.take(j, data[bounds[j] : bounds[j + 1]])
    assert pieces.total_bytes() == data.size
    assert pieces.combined() == zlib.crc32(data)
    assert pieces.combined(zlib.crc32(b"table")) == zlib.crc32(b"table" + data.tobytes())
    gap = checksums.PieceCrcs()
    gap.take(1, data)
    assert gap.combined() is None


def test_checksums_of_bytes_like_objects_are_those_of_their_bytes():
    """bytes are not handed to numpy (which takes them for one string: b"" became a zero byte)."""
    data = b"\x00\x01 bytes"
    for like in (b"", data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        assert checksums.crc32(like) == zlib.crc32(bytes(like))
        assert checksums.crc32_of_pieces(like, 4) == (
            [zlib.crc32(bytes(like)[lo : lo + 4]) for lo in range(0, len(like), 4)],
            zlib.crc32(bytes(like)),
        )
    assert checksums.crc32(np.arange(6, dtype=np.uint16)[::2]) == zlib.crc32(np.array([0, 2, 4], np.uint16).tobytes())


@pytest.fixture(scope="module")
def chunked(tmp_path_factory):
    """Bytes of a container whose lossless float tensor "w" has five chunks and whose "q" is
    quantized (dependent quantization, several chunks)."""
    path = tmp_path_factory.mktemp("chunked") / "chunked.bslz"
    rng = np.random.default_rng(9)
    w = (rng.standard_normal(4 * 131072 + 5) * 0.02).astype(np.float32)
    q = (rng.standard_normal(2 * 262144 + 77) * 0.02).astype(np.float32)
    bslz.numpy.save_file({"w": w, "q": q, "ids": np.arange(50, dtype=np.int32)}, path, snr=30, exclude=["w"])
    blob = path.read_bytes()
    entries = {e["name"]: e for e in split(blob)[3]["tensors"]}
    assert entries["w"]["coding"] == "float" and entries["w"]["chunk_size"] == 131072
    assert entries["q"]["coding"] == "quantized" and entries["q"]["reconstruction"] == "dq"
    assert entries["q"]["chunk_size"] < q.size
    return blob


@pytest.mark.parametrize("whole", [False, True], ids=["chunk-by-chunk", "whole"])
def test_checksums_name_what_is_wrong_whichever_way_they_are_taken(chunked, tmp_path, monkeypatch, whole):
    """Checked chunk by chunk as they decode (zlib-ng), or whole after decoding: a byte flipped
    anywhere in a payload (a float tensor's chunk table, a segment header that breaks the decoding,
    a raw tail byte that does not; a quantized one's) is named as a corrupt payload, or decodes to
    the tensor exactly (a flip in bits the decoder never reads), and
    a wrong decoded checksum as such, by the reader and by both decompressions."""
    from bslz.formats import container

    if whole:
        monkeypatch.setattr(container, "CAN_COMBINE", False)
    elif not checksums.CAN_COMBINE:
        pytest.skip("no zlib-ng: checksums are taken whole")
    _, _, _, header, data = split(chunked)
    reader = open_bytes(tmp_path, chunked)
    right = {n: reader.decode_raw(n) for n in reader.keys()}
    reader.close()
    entries = {e["name"]: e for e in header["tensors"]}
    e = entries["w"]
    payload = data[e["offset"] : e["offset"] + e["length"]]
    table = 8 * 6
    starts = [table + o for o in np.frombuffer(payload[:table], "<u8").tolist()]
    wheres = {
        "w": [0, table - 1] + starts[:-1] + [s - 1 for s in starts[1:]],  # each chunk's first and last byte
        "q": [0, entries["q"]["length"] // 2, entries["q"]["length"] - 1],
    }
    for name, places in wheres.items():
        for where in places:
            corrupt = bytearray(data)
            corrupt[entries[name]["offset"] + where] ^= 0x10
            reader = open_bytes(tmp_path, join(header, bytes(corrupt)))
            assert reader.checks_while_decoding(name) is not whole
            _decodes_exactly_or_fails_as_corrupt(reader, name, right[name])
            reader.close()
    for name in ("w", "q"):
        h = json.loads(json.dumps(header))
        next(x for x in h["tensors"] if x["name"] == name)["decoded_crc32"] ^= 1
        reader = open_bytes(tmp_path, join(h, data))
        with pytest.raises(FormatError, match="decodes to bytes that fail their checksum"):
            reader.decode_raw(name)
        reader.close()
        with pytest.raises(FormatError, match="decodes to bytes that fail their checksum"):
            bslz.decompress_bytes(join(h, data))
        bad = tmp_path / "bad.bslz"
        bad.write_bytes(join(h, data))
        with pytest.raises(FormatError, match="decodes to bytes that fail their checksum"):
            bslz.decompress_file(bad, tmp_path / "out.safetensors")
        assert not (tmp_path / "out.safetensors").exists()


def test_decompression_stops_at_a_decoded_checksum_mismatch_and_leaves_nothing(good, tmp_path):
    """The decoded bytes' checksum is checked on the writing thread: its failure still ends the
    run with the error, and no output (nor temporary file) is left."""
    import bslz

    def edit(h):
        h["tensors"][len(h["tensors"]) // 2]["decoded_crc32"] ^= 1

    src = tmp_path / "bad.bslz"
    src.write_bytes(edited(good, edit))
    with pytest.raises(FormatError, match="checksum"):
        bslz.decompress_file(src, tmp_path / "out.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.bslz"]


# ---- tiling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda es: es[1].update(offset=0), id="overlap"),
        pytest.param(lambda es: es[1].update(offset=es[1]["offset"] - ALIGN), id="overlap-aligned"),
        pytest.param(lambda es: es[1].update(offset=es[1]["offset"] + ALIGN), id="gap"),
        pytest.param(lambda es: es[0].update(offset=ALIGN), id="gap-at-start"),
        pytest.param(lambda es: es[1].update(offset=es[1]["offset"] + 1), id="misaligned"),
        pytest.param(lambda es: es.reverse(), id="out-of-order"),
        pytest.param(lambda es: es[-1].update(length=es[-1]["length"] - 1), id="slack-at-end"),
        pytest.param(lambda es: es[0].update(length=es[0]["length"] + ALIGN), id="runs-into-next"),
    ],
)
def test_offsets_must_tile_the_data(good, tmp_path, change):
    with pytest.raises(FormatError):
        open_bytes(tmp_path, edited(good, lambda h: change(h["tensors"])))


def test_trailing_bytes_refused(good, tmp_path):
    for extra in (b"\x00", b"\x00" * ALIGN, b"polyglot"):
        with pytest.raises(FormatError, match="payloads end"):
            open_bytes(tmp_path, good + extra)


def test_duplicate_names(good, tmp_path):
    def edit(h):
        h["tensors"][1]["name"] = h["tensors"][0]["name"]

    with pytest.raises(FormatError, match="twice"):
        open_bytes(tmp_path, edited(good, edit))


# ---- header fields ---------------------------------------------------------------------------


def set_field(key, value, index=0):
    def edit(h):
        h["tensors"][index][key] = value

    return edit


def set_named(name, key, value):
    def edit(h):
        next(e for e in h["tensors"] if e["name"] == name)[key] = value

    return edit


def drop_field(key):
    def edit(h):
        del h["tensors"][0][key]

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(set_field("name", 7), id="name-int"),
        pytest.param(set_field("name", None), id="name-null"),
        pytest.param(set_field("dtype", ["F32"]), id="dtype-list"),
        pytest.param(set_field("shape", 5000), id="shape-int"),
        pytest.param(set_field("shape", [-5000]), id="shape-negative"),
        pytest.param(set_field("shape", [5000.0]), id="shape-float"),
        pytest.param(set_field("shape", [True]), id="shape-bool"),
        pytest.param(set_field("shape", ["5000"]), id="shape-str"),
        pytest.param(set_field("offset", "0"), id="offset-str"),
        pytest.param(set_field("length", 1.5), id="length-float"),
        pytest.param(set_field("length", -1), id="length-negative"),
        pytest.param(set_field("crc32", None), id="crc-null"),
        pytest.param(set_field("decoded_crc32", False), id="decoded-crc-bool"),
        pytest.param(set_field("coding", "zstd"), id="coding-unknown"),
        pytest.param(set_field("coding", 1), id="coding-int"),
        pytest.param(drop_field("crc32"), id="missing-crc"),
        pytest.param(drop_field("coding"), id="missing-coding"),
        pytest.param(lambda h: h["tensors"].append("not an entry"), id="entry-str"),
        pytest.param(lambda h: h.update(tensors={"a": 1}), id="tensors-dict"),
        pytest.param(lambda h: h.pop("tensors"), id="tensors-missing"),
        pytest.param(lambda h: h.update(metadata={"k": 1}), id="metadata-int-value"),
        pytest.param(lambda h: h.update(metadata=["k"]), id="metadata-list"),
        pytest.param(lambda h: h.update(source={"format": "safetensors", "header": 3}), id="source-header-int"),
        pytest.param(lambda h: h.update(source="safetensors"), id="source-str"),
    ],
)
def test_wrong_types_in_header(good, tmp_path, edit):
    with pytest.raises(FormatError):
        open_bytes(tmp_path, edited(good, edit))


@pytest.mark.parametrize(
    "text",
    [b"[]", b'"tensors"', b"{", b"\xff\xfe{}", b"{}" + b"\x00", b"[" * 100_000 + b"]" * 100_000],
    ids=["list", "string", "unterminated", "not-utf8", "nul-padding", "deep-nesting"],
)
def test_header_not_a_json_object(tmp_path, text):
    with pytest.raises(FormatError, match="header"):
        open_bytes(tmp_path, join(text, b""))


@pytest.mark.parametrize(
    "key, value",
    [
        ("step", -0.1),
        ("step", "0.1"),
        ("step", 0),
        ("dead_zone", 1.0),
        ("reconstruction", "magic"),
        ("gg", [50.0, 1.0]),
        ("gg", "x"),
        ("levels", -1),
        ("mode", "lz4"),
        ("chunk_size", 0),
        ("chunk_size", "big"),
        ("num_orders", 2**40),
    ],
)
def test_bad_quantizer_and_stream_fields(uniform, tmp_path, key, value):
    """Checked when the tensor is decoded: a FormatError, never another exception."""
    reader = open_bytes(tmp_path, edited(uniform, set_named("q", key, value)))
    with pytest.raises(FormatError):
        reader.decode_raw("q")
    reader.close()


@pytest.mark.parametrize(
    "key, value",
    [
        ("dq_block", 0),
        ("dq_block", 2**25),
        ("dq_block", "x"),
        ("gg", [0.01, 1.0]),
        ("gg", [1.0, float("nan")]),
        ("gg", [10**400, 1.0]),  # found by tests/test_fuzz_mutations.py: np.isfinite raised TypeError
    ],
)
def test_bad_dependent_quantization_fields(good, tmp_path, key, value):
    reader = open_bytes(tmp_path, edited(good, set_named("q", key, value)))
    assert reader.entry("q")["reconstruction"] == "dq"
    with pytest.raises(FormatError):
        reader.decode_raw("q")
    reader.close()


def test_unknown_dtype_must_be_raw(good, tmp_path):
    with pytest.raises(FormatError, match="must be raw"):
        open_bytes(tmp_path, edited(good, set_named("w", "dtype", "F4_FUTURE")))


@pytest.mark.parametrize("coding", ["float", "quantized"])
def test_coding_must_suit_the_dtype(good, tmp_path, coding):
    reader = open_bytes(tmp_path, edited(good, set_named("ids", "coding", coding)))
    with pytest.raises(FormatError):
        reader.decode_raw("ids")
    reader.close()


def test_raw_size_must_match_the_shape(good, tmp_path):
    reader = open_bytes(tmp_path, edited(good, set_named("tiny", "shape", [4])))
    with pytest.raises(FormatError):
        reader.decode_raw("tiny")
    reader.close()


# ---- limits ----------------------------------------------------------------------------------


def test_max_decoded_bytes_enforced(good, tmp_path):
    path = tmp_path / "f.bslz"
    path.write_bytes(good)
    largest = (1 << 16) * 2  # "q": 65536 float16 values
    ContainerReader(path, max_decoded_bytes=largest).close()  # the largest tensor, exactly
    with pytest.raises(FormatError, match="max_decoded_bytes"):
        ContainerReader(path, max_decoded_bytes=largest - 1)


@pytest.mark.small
@pytest.mark.parametrize("shape", [[2**40, 2**40], [2**31, 2**31, 2**31], [2**63]])
def test_hostile_shape_refused_before_allocating(good, tmp_path, shape):
    with pytest.raises(FormatError, match="max_decoded_bytes"):
        open_bytes(tmp_path, edited(good, set_named("w", "shape", shape)))


@pytest.mark.parametrize("mode", ["rans", "rans_escape", "eg", "zero_run"])
def test_a_stream_packed_from_its_parts_is_the_stream_packed_whole(mode):
    """`encode_and_pack` copies the stream's parts straight into the payload: the fields and bytes
    of `pack_stream` of the whole `EncodedStream`."""
    rng = np.random.default_rng(4)
    symbols = rng.geometric(0.3, 3 * streams.DEFAULT_CHUNK_SIZE + 77).astype(np.uint32) - 1
    symbols[::1000] = 5000  # escapes for rans_escape
    if mode == "rans":
        symbols = np.minimum(symbols, 4095)
    plan = streams.plan_stream(symbols, mode=mode)
    for prefix in (b"", b"12345678"):
        assert stream_payload.encode_and_pack(symbols, plan, prefix) == stream_payload.pack_stream(
            streams.encode_stream(symbols, plan), prefix
        )


@pytest.mark.small
@pytest.mark.parametrize("symbol", [2**31 + 1, 2**32 - 1])
def test_dependent_quantization_index_beyond_the_limit(symbol):
    """A stream whose se(v) symbols decode to |k| > 2**30: FormatError, not a wrapped value."""
    symbols = np.array([1, 2, symbol, 0], dtype=np.uint32)
    fields, payload = stream_payload.pack_stream(streams.encode_stream(symbols))
    fields.update(coding="quantized", reconstruction="dq", step=0.01, dq_block=65536)
    with pytest.raises(FormatError, match="beyond"):
        tensor_codec.decode_tensor(fields, np.frombuffer(payload, np.uint8), "F32", 4, 16)


@pytest.mark.parametrize("dtype", ["F32", "BF16", "F16", "F64"])
@pytest.mark.parametrize("reconstruction", ["dq", "gg", "midpoint"])
def test_chunk_by_chunk_decoding_gives_the_encoders_values(dtype, reconstruction, monkeypatch):
    """rANS streams of several chunks decode chunk by chunk straight into values: the bytes the
    encoder reconstructed, and those of the whole-stream path."""
    numel = 3 * streams.DEFAULT_CHUNK_SIZE + 1234
    x = np.random.default_rng(7).laplace(0, 0.02, numel).astype(np.float32)
    raw = from_float32(x, lookup(dtype)).view(np.uint8)
    fields, payload, decoded, _, _ = tensor_codec.encode_quantized(raw, dtype, 0.004, reconstruction=reconstruction)
    assert fields["mode"] == "rans" and fields["chunk_size"] < numel
    payload = np.frombuffer(payload, np.uint8)
    by_chunk = tensor_codec.decode_tensor(fields, payload, dtype, numel, raw.size)
    monkeypatch.setattr(tensor_codec, "reconstructs_by_chunk", lambda plan, fields: False)
    whole = tensor_codec.decode_tensor(fields, payload, dtype, numel, raw.size)
    assert by_chunk.tobytes() == decoded.tobytes() == whole.tobytes()


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
@pytest.mark.parametrize("reconstruction", ["dq", "gg"])
def test_the_encoder_reconstructs_and_measures_piece_by_piece(dtype, reconstruction, monkeypatch):
    """Pieces of whole trellis blocks, one a thread: the same bytes, signal and noise as one pass
    over the whole tensor."""
    block = reconstruction_module.DQ_BLOCK
    monkeypatch.setattr(reconstruction_module, "RECONSTRUCT_PIECE", 2 * block)
    numel = 6 * block + block // 2 + 5  # a last piece of part of a block
    x = np.random.default_rng(9).laplace(0, 0.02, numel).astype(np.float32)
    raw = from_float32(x, lookup(dtype)).view(np.uint8)
    fields, payload, decoded, signal, noise = tensor_codec.encode_quantized(
        raw, dtype, 0.004, reconstruction=reconstruction
    )
    whole = tensor_codec.decode_tensor(fields, np.frombuffer(payload, np.uint8), dtype, numel, raw.size)
    assert decoded.tobytes() == whole.tobytes()
    values = to_float32(raw.view(lookup(dtype).word_dtype), lookup(dtype)).astype(np.float64)
    values_hat = to_float32(decoded.view(lookup(dtype).word_dtype), lookup(dtype)).astype(np.float64)
    assert signal == pytest.approx(np.sum(values**2), rel=1e-12)
    assert noise == pytest.approx(np.sum((values - values_hat) ** 2), rel=1e-9) and noise > 0


@pytest.mark.parametrize("reconstruction", ["dq", "midpoint"])
def test_a_hostile_step_decodes_chunk_by_chunk_without_raising(reconstruction):
    """A step near the float maximum overflows the values: no warning turned error on a decoding
    thread (numpy's error state is per thread), just values that the decoded checksum then refuses."""
    numel = 2 * streams.DEFAULT_CHUNK_SIZE + 99
    x = np.random.default_rng(8).laplace(0, 0.02, numel).astype(np.float32)
    fields, payload, _, _, _ = tensor_codec.encode_quantized(
        x.view(np.uint8), "F32", 0.004, reconstruction=reconstruction
    )
    assert fields["mode"] == "rans"
    fields["step"] = 3e38
    out = tensor_codec.decode_tensor(fields, np.frombuffer(payload, np.uint8), "F32", numel, 4 * numel)
    assert not np.isfinite(out.view(np.float32)).all()


@pytest.mark.parametrize("size", [0, 1, 7, 4096, 1_000_003])
def test_the_checksum_is_zlibs_crc32(size):
    """Whichever library computes it (zlib-ng when installed), the checksum is zlib's CRC-32:
    files written with one are read with the other."""
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    assert checksums.crc32(data) == zlib.crc32(data.tobytes())
    assert checksums.crc32(data.view(np.uint8)[::-1].copy()) == zlib.crc32(data[::-1].tobytes())


def test_the_checksum_falls_back_to_zlib_without_zlib_ng():
    code = (
        "import sys; sys.modules['zlib_ng'] = None\n"  # makes `import zlib_ng...` raise ImportError
        "import zlib\n"
        "from bslz.formats import checksums\n"
        "assert checksums._crc32 is zlib.crc32\n"
        "assert checksums.crc32(b'bslz') == zlib.crc32(b'bslz')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_safetensors_tensors_are_read_only_maps_of_the_right_bytes(tmp_path):
    """Each tensor comes back as a read-only view of its bytes in the file, at any offset (not a
    multiple of the page size), and the mapping goes when the array does."""
    import gc

    import safetensors.numpy

    from bslz.formats.safetensors_io import read_safetensors

    tensors = {f"t{i}": np.arange(i * 7 + 3, dtype=np.float32) * (i + 1) for i in range(20)}
    path = tmp_path / "m.safetensors"
    safetensors.numpy.save_file(tensors, str(path))
    source = read_safetensors(path)
    for info in source.tensors:
        raw = source.tensor_bytes(info)
        assert raw.tobytes() == tensors[info.name].tobytes() and not raw.flags.writeable
        with pytest.raises(ValueError):
            raw[:1] = 0
    del raw
    gc.collect()
    if os.path.exists("/proc/self/maps"):  # Linux: no mapping of the file is left
        with open("/proc/self/maps") as maps:
            assert str(path) not in maps.read()


@pytest.mark.parametrize("size", [0, 5, 3 * (1 << 20) + 7])  # one piece, and a piece per core
def test_bfloat16_widening_is_the_shift_of_every_pattern(size):
    words = np.random.default_rng(size).integers(0, 1 << 16, size, dtype=np.uint16)
    words[:5] = [0x7FC1, 0xFF80, 0x0001, 0x8000, 0x7F80][: min(size, 5)]  # NaN payload, -inf, subnormal, -0, inf
    wide = to_float32(words, lookup("BF16"))
    assert wide.dtype == np.float32 and wide.shape == words.shape
    assert np.array_equal(wide.view(np.uint32), words.astype(np.uint32) << 16)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_checksums_taken_in_pieces_side_by_side_are_zlibs(monkeypatch, workers):
    """A large tensor's CRC-32 is taken in pieces on several threads and combined: zlib's value,
    whatever the number of threads and however the pieces fall."""
    monkeypatch.setattr(checksums, "default_workers", lambda: workers)
    piece = checksums.CRC_PIECE_BYTES
    for n in (0, 1, 2 * piece - 1, 2 * piece, 3 * piece + 17):
        data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
        for side_by_side in (False, True):
            assert checksums.crc32(data, side_by_side) == zlib.crc32(data.tobytes())
            assert checksums.crc32(data[n // 2 :], side_by_side) == zlib.crc32(data[n // 2 :].tobytes())


def test_large_payloads_read_in_pieces_side_by_side(monkeypatch, tmp_path):
    """A payload of several READ_PIECE_BYTES is read in pieces on two threads: the same bytes; a
    file cut short after it was opened still gives a clear TruncatedError."""
    from bslz.codec import _parallel
    from bslz.formats import container

    monkeypatch.setattr(_parallel, "default_workers", lambda: 2)  # the pieces, and the threads they run on
    data = np.random.default_rng(0).integers(0, 256, 2 * container.READ_PIECE_BYTES + 999, dtype=np.uint8)
    path = tmp_path / "big.bslz"
    bslz.numpy.save_file({"noise": data}, path)
    reader = ContainerReader(path)
    np.testing.assert_array_equal(reader.decode_raw("noise"), data)
    os.truncate(path, os.path.getsize(path) - 10)
    with pytest.raises(TruncatedError):
        reader.payload(reader.entry("noise"))
    reader.close()
