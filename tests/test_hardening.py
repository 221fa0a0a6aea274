"""Hostile files and interrupted writes (issue 6): the cases tests/test_container.py does not hold.

- header rules test_container.py leaves out (JSON numbers past what floats or numpy take, lone
  surrogates, huge shape lists, k out of range, chunk counts that disagree with element counts);
- decoders fed corrupt payloads whose checksums match (every bit flipped, every truncation);
- truncation at every section boundary of a file;
- writes that fail halfway: an exception, a full disk, SIGKILL; `-f` with a missing source; SRC == DST;
- the format spec and the golden files move together; threads sharing one handle; no pickle.
"""

import concurrent.futures
import errno
import hashlib
import io
import json
import os
import pathlib
import re
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import safetensors.numpy
from click.testing import CliRunner

import bslz
import bslz.api
import bslz.formats.atomic
from bslz import BslzError, FormatError, InvalidArgumentError, TruncatedError
from bslz.cli.commands import main as cli_main
from bslz.formats.container import FORMAT_MAJOR, FORMAT_MINOR, PREFIX, ContainerReader, align
from bslz.formats.tensor_codec import decode_tensor
from fuzz import corpus

ROOT = pathlib.Path(__file__).resolve().parents[1]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def seeds():
    """{group: (container bytes, {tensor name: decoded bytes})}, every coding and stream mode."""
    return corpus.seed_files()


@pytest.fixture(scope="module")
def seed_tensors():
    return corpus.seed_tensors()


def open_bytes(tmp_path, blob, **options):
    path = tmp_path / "f.bslz"
    path.write_bytes(blob)
    return ContainerReader(path, **options)


def edited(blob, edit):
    major, minor, reserved, header, data = corpus.split(blob)
    edit(header)
    return corpus.join(header, data, major, minor, reserved)


def entry(header, name):
    return next(e for e in header["tensors"] if e["name"] == name)


def decode_named(tmp_path, blob, name):
    reader = open_bytes(tmp_path, blob)
    try:
        return reader.decode_raw(name)
    finally:
        reader.close()


# ---- parsing: the rules test_container.py does not cover -----------------------------------------


def raw_header(blob, pattern, replacement):
    """The file with its header text edited by a regular expression (for JSON that json.dumps cannot
    write: 5000-digit integers, NaN, lone surrogates)."""
    magic, major, minor, reserved, n = PREFIX.unpack_from(blob)
    text = blob[PREFIX.size : PREFIX.size + n].rstrip(b" ")
    new, count = re.subn(pattern, lambda _: replacement, text, count=1)
    assert count == 1, pattern
    data = blob[align(PREFIX.size + n) :]
    return corpus.join(new, data, major, minor, reserved, magic)


@pytest.mark.small
@pytest.mark.parametrize(
    "pattern, replacement, match",
    [
        pytest.param(rb'"offset":\s*0', b'"offset": 1' + b"0" * 5000, "JSON", id="offset-5000-digits"),
        pytest.param(rb'"shape":\s*\[', b'"shape": [' + b"9" * 4400 + b",", "JSON", id="shape-dim-4400-digits"),
        pytest.param(rb'"crc32":\s*\d+', b'"crc32": 1e999', "crc32", id="crc-infinity-float"),
        pytest.param(rb'"length":\s*\d+', b'"length": NaN', "length", id="length-nan"),
        pytest.param(rb'"shape":\s*\[', b'"shape": [Infinity, ', "shape", id="shape-infinity"),
        pytest.param(rb'"name":\s*"[^"]*"', b'"name": "\\ud800"', None, id="name-lone-surrogate"),
        pytest.param(
            rb"^\{", b'{"source": {"format": "safetensors", "header": "\\udfff"}, ', "Unicode", id="source-surrogate"
        ),
        pytest.param(rb"^\{", b'{"tensors": [], ', None, id="duplicate-json-key"),
    ],
)
def test_hostile_json_text(seeds, tmp_path, pattern, replacement, match):
    """JSON that parses into what json.dumps never writes: a FormatError on open, or a file whose
    tensors still check out (a lone surrogate is a valid, if odd, tensor name)."""
    blob = raw_header(seeds["float"][0], pattern, replacement)
    if match is None:
        try:
            corpus.check_container(open_bytes(tmp_path, blob).path)
        except BslzError:
            pass
        return
    with pytest.raises(FormatError, match=match):
        open_bytes(tmp_path, blob)


def test_long_shape_list_is_refused_fast(seeds, tmp_path):
    """A million huge dimensions: the product is cut short once it passes 2**64, not computed in
    quadratic time."""

    def edit(h):
        h["tensors"][0]["shape"] = [2**64 - 1] * 1_000_000

    start = time.monotonic()
    with pytest.raises(FormatError, match="max_decoded_bytes"):
        open_bytes(tmp_path, edited(seeds["float"][0], edit))
    assert time.monotonic() - start < 10


def test_long_shape_list_in_safetensors_input(tmp_path):
    header = json.dumps({"a": {"dtype": "F32", "shape": [2**64 - 1] * 300_000, "data_offsets": [0, 4]}}).encode()
    src = tmp_path / "a.safetensors"
    src.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    start = time.monotonic()
    with pytest.raises(FormatError, match="larger than its offsets"):
        bslz.compress_file(src, tmp_path / "a.bslz")
    assert time.monotonic() - start < 10
    assert not (tmp_path / "a.bslz").exists()


@pytest.mark.small
@pytest.mark.parametrize(
    "text",
    [b"[" * 200_000, b'{"a": ' + b"7" * 5000 + b"}", b'{"a": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}'],
    ids=["deep-nesting", "5000-digit-int", "unterminated"],
)
def test_hostile_safetensors_header(tmp_path, text):
    src = tmp_path / "a.safetensors"
    src.write_bytes(struct.pack("<Q", len(text)) + text + bytes(4))
    with pytest.raises(FormatError, match="JSON"):
        bslz.compress_file(src, tmp_path / "a.bslz")


def set_named(name, key, value):
    def edit(h):
        entry(h, name)[key] = value

    return edit


QUANTIZED = "q.f32.gg.eg"


@pytest.mark.small
@pytest.mark.parametrize(
    "name, key, value",
    [
        (QUANTIZED, "step", float("nan")),
        (QUANTIZED, "step", float("inf")),
        (QUANTIZED, "step", -0.0),
        (QUANTIZED, "step", 2**64),
        (QUANTIZED, "step", 10**400),
        (QUANTIZED, "step", True),
        (QUANTIZED, "step", [0.1]),
        (QUANTIZED, "dead_zone", float("nan")),
        (QUANTIZED, "dead_zone", -0.1),
        (QUANTIZED, "dead_zone", 10**400),
        (QUANTIZED, "gg", [1.0, 2**70]),
        (QUANTIZED, "gg", [float("nan"), 1.0]),
        (QUANTIZED, "gg", [0.05, 1.0]),
        (QUANTIZED, "gg", [1.0, -1.0]),
        (QUANTIZED, "gg", [1.0]),
        (QUANTIZED, "levels", 65537),
        (QUANTIZED, "levels", 1.5),
        (QUANTIZED, "levels", True),
        (QUANTIZED, "levels", 10**6),  # the table would not fit the payload
        (QUANTIZED, "reconstruction", None),
        (QUANTIZED, "chunk_size", 2**31),
        (QUANTIZED, "chunk_size", True),
        (QUANTIZED, "block_size", 0),
        (QUANTIZED, "block_size", 2**64),
        (QUANTIZED, "num_orders", 0),  # orders disagree with the block count
        (QUANTIZED, "num_orders", -1),
        (QUANTIZED, "mode", 1),
        (QUANTIZED, "mode", "rans"),  # an eg payload read as rANS
        ("i32.eg", "mode", "zero_run"),
        ("i32.zero_run", "mode", "eg"),
        ("i32.rans", "mode", "eg"),
        ("i32.eg", "chunk_size", 255),  # chunk count disagrees with the element count
        ("i32.eg", "chunk_size", 700),
        ("i32.rans", "num_orders", 1),
        ("f32", "chunk_size", 0),
        ("f32", "chunk_size", 1),  # 600 chunks where the table has 3
        ("f32", "chunk_size", 2**31),
        ("f32", "chunk_size", "600"),
        ("f32", "chunk_size", 1.0),
        ("f32", "shape", [30, 30]),  # elements disagree with the chunk table and segments
        ("i32.eg", "shape", [701]),
        ("i32.rans", "shape", [699]),
        (QUANTIZED, "shape", [801]),
        ("bool", "dtype", "U8"),  # still decodes: same symbols, but decoded_crc32 of the same bytes
        ("u16.rans", "dtype", "I16"),
        ("f16", "dtype", "BF16"),
        ("raw.u8", "coding", "int"),
    ],
)
def test_bad_fields_raise_format_error(seeds, tmp_path, name, key, value):
    """Checked when the tensor is decoded: a FormatError, never another exception or wrong bytes."""
    blob, expected = seeds["all"]
    reader = open_bytes(tmp_path, edited(blob, set_named(name, key, value)))
    try:
        got = reader.decode_raw(name)
    except FormatError as exc:
        assert str(exc)
    else:
        assert got.tobytes() == expected[name], "decoded without error to other bytes"
    finally:
        reader.close()


def payload_of(blob, name):
    _, _, _, header, data = corpus.split(blob)
    e = entry(header, name)
    return e["offset"], bytearray(data[e["offset"] : e["offset"] + e["length"]])


def with_payload(blob, name, payload):
    """`blob` with tensor `name`'s payload replaced (same length) and its crc32 made to match."""
    major, minor, reserved, header, data = corpus.split(blob)
    e = entry(header, name)
    assert len(payload) == e["length"]
    data = data[: e["offset"]] + bytes(payload) + data[e["offset"] + e["length"] :]
    e["crc32"] = zlib.crc32(bytes(payload))
    return corpus.join(header, data, major, minor, reserved)


@pytest.mark.small
def test_order_out_of_range_in_stream(seeds, tmp_path):
    """Exp-Golomb orders above 32 (one byte in the payload, checksum fixed) are refused."""
    blob = seeds["all"][0]
    for name in ("i32.eg", "i32.zero_run"):
        _, payload = payload_of(blob, name)
        _, _, _, header, _ = corpus.split(blob)
        nchunks = -(-700 // entry(header, name)["chunk_size"])
        for k in (33, 64, 255):
            corrupt = bytearray(payload)
            corrupt[8 * nchunks] = k
            with pytest.raises(FormatError, match="orders"):
                decode_named(tmp_path, with_payload(blob, name, corrupt), name)


@pytest.mark.small
def test_order_out_of_range_in_float_segment(seeds, tmp_path):
    """A float segment claiming exp-Golomb with k > 32 (or an unknown method) is refused."""
    blob = seeds["all"][0]
    _, payload = payload_of(blob, "f32")
    nchunks = 1
    first_segment = 8 * (nchunks + 1)
    for method, k in ((2, 33), (2, 255), (9, 0), (255, 0)):
        corrupt = bytearray(payload)
        corrupt[first_segment : first_segment + 2] = bytes([method, k])
        with pytest.raises(FormatError):
            decode_named(tmp_path, with_payload(blob, "f32", corrupt), "f32")


@pytest.mark.small
def test_rans_table_order_out_of_range(seeds, tmp_path):
    """The rANS header's 4-bit table order k above 13, with the checksum fixed: refused."""
    from bslz.codec.rans import decode_rans, encode_rans

    symbols = np.random.default_rng(0).integers(0, 20, 500).astype(np.uint16)
    coded = bytearray(encode_rans(symbols))
    # EG0(19) is 9 bits (0000 10100), then multi = 1, then k in the next 4 bits (bits 10..13)
    bits = "".join(f"{b:08b}" for b in coded)
    assert bits[:10] == "0000101001"
    for k in (14, 15):
        new = bits[:10] + f"{k:04b}" + bits[14:]
        corrupt = int(new, 2).to_bytes(len(coded), "big")
        with pytest.raises(FormatError):
            decode_rans(corrupt, symbols.size)


# ---- decoders fed corrupt payloads whose checksums match -------------------------------------------


def decode_direct(t, payload):
    """decode_tensor on a seed tensor's fields with another payload: the decoders alone, no checksum."""
    _, dtype, shape, fields, _, _ = t
    numel = int(np.prod(shape))
    return decode_tensor(fields, np.frombuffer(bytes(payload), np.uint8), dtype, numel, len(expected_bytes(t)))


def expected_bytes(t):
    return bytes(t[5]) if t[5] is not None else bytes(t[4])


def coded_seeds():
    names = [t[0] for t in corpus.seed_tensors() if t[3]["coding"] != "raw"]
    return names


@pytest.mark.parametrize("name", coded_seeds())
def test_every_bit_flip_reaches_the_decoder(seed_tensors, name):
    """Every single-bit flip of the payload (every 3rd bit past 2 KiB), decoded without a checksum:
    a FormatError, or bytes that decoded_crc32 then tells apart (counted), never another exception."""
    t = next(t for t in seed_tensors if t[0] == name)
    payload, want = bytes(t[4]), expected_bytes(t)
    n_bits = 8 * len(payload)
    step = 1 if len(payload) <= 2048 else 3
    silent = 0
    for bit in range(0, n_bits, step):
        corrupt = bytearray(payload)
        corrupt[bit // 8] ^= 0x80 >> (bit % 8)
        try:
            got = decode_direct(t, corrupt)
        except FormatError:
            continue
        assert got.size == len(want)
        silent += got.tobytes() != want and zlib.crc32(got) == zlib.crc32(want)
    assert silent == 0, f"{silent} flips decoded to other bytes with the same crc32"


@pytest.mark.parametrize("name", coded_seeds())
def test_every_truncation_reaches_the_decoder(seed_tensors, name):
    """Every proper prefix of the payload, and the payload with bytes appended: FormatError."""
    t = next(t for t in seed_tensors if t[0] == name)
    payload = bytes(t[4])
    for cut in range(len(payload)):
        with pytest.raises(FormatError):
            decode_direct(t, payload[:cut])
    for extra in (b"\x00", b"\x00" * 8, b"\xff" * 3):
        try:
            got = decode_direct(t, payload + extra)
        except FormatError:
            continue
        raise AssertionError(f"{len(extra)} bytes appended to {name} decoded to {got.size} bytes without error")


def test_corrupt_payload_with_matching_checksum_through_the_reader(seeds, tmp_path):
    """Through the reader, the payload checksum recomputed: a FormatError, or the original bytes."""
    blob, expected = seeds["all"]
    rng = np.random.default_rng(7)
    _, _, _, header, _ = corpus.split(blob)
    for e in header["tensors"]:
        if e["length"] == 0:
            continue
        for _ in range(25):
            _, payload = payload_of(blob, e["name"])
            for _ in range(int(rng.integers(1, 4))):
                payload[int(rng.integers(len(payload)))] ^= 1 << int(rng.integers(8))
            try:
                got = decode_named(tmp_path, with_payload(blob, e["name"], payload), e["name"])
            except FormatError:
                continue
            assert got.tobytes() == expected[e["name"]]


# ---- truncation at every section boundary -----------------------------------------------------------


def section_boundaries(blob):
    """Offsets where a section of the file starts or ends: the prefix fields, the header, its
    padding, each payload and, inside payloads, the chunk tables, orders and float segments."""
    n = struct.unpack_from("<Q", blob, 16)[0]
    data_start = align(PREFIX.size + n)
    text_end = PREFIX.size + len(blob[PREFIX.size : PREFIX.size + n].rstrip(b" "))
    cuts = {0, 8, 10, 12, 16, PREFIX.size, text_end, PREFIX.size + n, data_start}
    _, _, _, header, data = corpus.split(blob)
    for e in header["tensors"]:
        start, end = data_start + e["offset"], data_start + e["offset"] + e["length"]
        cuts |= {start, end, align(end)}
        payload = data[e["offset"] : e["offset"] + e["length"]]
        if e["coding"] == "float":
            nchunks = -(-int(np.prod(e["shape"])) // e["chunk_size"])
            table = 8 * (nchunks + 1)
            cuts.add(start + table)
            offsets = np.frombuffer(payload[:table], "<u8")
            for c in range(nchunks):
                pos = table + int(offsets[c])
                while pos < table + int(offsets[c + 1]):
                    cuts |= {start + pos, start + pos + 1, start + pos + 8}
                    pos += 8 + struct.unpack_from("<I", payload, pos + 4)[0]
        elif e["coding"] in ("int", "quantized"):
            table = 8 * (e["levels"] + 1) if e.get("reconstruction") == "gg" else 0
            nchunks = -(-int(np.prod(e["shape"])) // e["chunk_size"])
            side = 8 * nchunks + e["num_orders"]
            cuts |= {start + table, start + table + 8 * nchunks, start + table + side, start + table + align(side)}
    return sorted(c for c in cuts if c < len(blob))


def test_truncation_at_every_section_boundary(seeds, tmp_path):
    blob = seeds["all"][0]
    cuts = section_boundaries(blob)
    cuts = sorted({c + d for c in cuts for d in (-1, 0, 1) if 0 <= c + d < len(blob)})
    assert len(cuts) > 100
    path = tmp_path / "cut.bslz"
    for cut in cuts:
        path.write_bytes(blob[:cut])
        with pytest.raises(TruncatedError):
            ContainerReader(path)


# ---- writing: failures halfway leave nothing ----------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A safetensors file with a few tensors (about 600 KB)."""
    d = tmp_path_factory.mktemp("source")
    rng = np.random.default_rng(11)
    tensors = {f"layer{i}.weight": (rng.standard_normal((128, 256)) * 0.02).astype(np.float32) for i in range(4)}
    tensors["ids"] = np.arange(5000, dtype=np.int64)
    path = d / "model.safetensors"
    safetensors.numpy.save_file(tensors, path, metadata={"format": "np"})
    packed = d / "model.bslz"
    bslz.compress_file(path, packed)
    return path, packed


class FullDisk(io.RawIOBase):
    """A file object that fails like a full disk after `limit` bytes written."""

    def __init__(self, f, limit):
        self.f, self.limit, self.written = f, limit, 0

    def write(self, b):
        n = len(memoryview(b).cast("B"))
        if self.written + n > self.limit:
            room = self.limit - self.written
            if room > 0:
                self.f.write(memoryview(b).cast("B")[:room])
                self.written += room
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written += n
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def seek(self, *args):
        return self.f.seek(*args)

    def tell(self):
        return self.f.tell()

    def truncate(self, *args):
        return self.f.truncate(*args)

    def flush(self):
        return self.f.flush()

    def fileno(self):
        return self.f.fileno()

    def close(self):
        if not self.closed:
            super().close()  # flushes through self.flush first
            self.f.close()


def fill_disk_after(monkeypatch, limit):
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        return FullDisk(real_fdopen(fd, mode, *args, **kwargs), limit)

    monkeypatch.setattr(bslz.formats.atomic.os, "fdopen", fdopen)


def listing(directory):
    return sorted(p.name for p in pathlib.Path(directory).iterdir())


@pytest.mark.parametrize("limit", [0, 100, 20_000, 200_000])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
def test_full_disk_leaves_nothing(source, tmp_path, monkeypatch, limit, existing):
    src, packed = source
    src_digest, packed_digest = sha256(src), sha256(packed)
    out_bslz, out_st = tmp_path / "out.bslz", tmp_path / "out.safetensors"
    if existing:
        out_bslz.write_bytes(b"old compressed")
        out_st.write_bytes(b"old decompressed")
    before = listing(tmp_path)
    fill_disk_after(monkeypatch, limit)
    with pytest.raises(OSError) as exc:
        bslz.compress_file(src, out_bslz, overwrite=True)
    assert exc.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as exc:
        bslz.decompress_file(packed, out_st, overwrite=True)
    assert exc.value.errno == errno.ENOSPC
    assert listing(tmp_path) == before  # no output, no temporary file
    if existing:
        assert out_bslz.read_bytes() == b"old compressed" and out_st.read_bytes() == b"old decompressed"
    assert sha256(src) == src_digest and sha256(packed) == packed_digest


@pytest.mark.parametrize("stage", ["fsync", "replace"])
def test_failure_at_fsync_or_rename_leaves_nothing(source, tmp_path, monkeypatch, stage):
    src, _ = source
    dst = tmp_path / "out.bslz"
    dst.write_bytes(b"old")

    def fail(*args, **kwargs):
        raise OSError(errno.EIO, f"injected {stage} failure")

    monkeypatch.setattr(bslz.formats.atomic.os, stage, fail)
    with pytest.raises(OSError, match="injected"):
        bslz.compress_file(src, dst, overwrite=True)
    assert listing(tmp_path) == ["out.bslz"] and dst.read_bytes() == b"old"


def test_output_is_fsynced_before_rename(source, tmp_path, monkeypatch):
    src, _ = source
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(bslz.formats.atomic.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        bslz.formats.atomic.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1]
    )
    bslz.compress_file(src, tmp_path / "out.bslz")
    assert events == ["fsync", "replace"]


def test_force_never_destroys_destination_when_source_is_missing(tmp_path):
    runner = CliRunner()
    for command, dst_name in (("compress", "x.bslz"), ("decompress", "x.safetensors")):
        dst = tmp_path / dst_name
        dst.write_bytes(b"precious")
        result = runner.invoke(cli_main, [command, str(tmp_path / "missing"), "-o", str(dst), "-f"])
        assert result.exit_code == 1, result.output
        assert dst.read_bytes() == b"precious"
    with pytest.raises(FileNotFoundError):
        bslz.compress_file(tmp_path / "missing", tmp_path / "x.bslz", overwrite=True)
    with pytest.raises(FileNotFoundError):
        bslz.decompress_file(tmp_path / "missing", tmp_path / "x.safetensors", overwrite=True)
    assert listing(tmp_path) == ["x.bslz", "x.safetensors"]


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_source_as_destination_through_a_link_is_refused(source, tmp_path, link):
    src, packed = source
    for input_path, func in ((src, bslz.compress_file), (packed, bslz.decompress_file)):
        alias = tmp_path / f"alias-{input_path.name}"
        os.symlink(input_path, alias) if link == "symlink" else os.link(input_path, alias)
        digest = sha256(input_path)
        with pytest.raises(InvalidArgumentError, match="overwrite the input"):
            func(input_path, alias, overwrite=True)
        assert sha256(input_path) == digest


def test_decompress_onto_its_source_is_refused_by_the_cli(source, tmp_path):
    _, packed = source
    copy = tmp_path / "m.bslz"
    copy.write_bytes(packed.read_bytes())
    result = CliRunner().invoke(cli_main, ["decompress", str(copy), "-o", str(copy), "-f"])
    assert result.exit_code == 1 and "overwrite the input" in result.output
    assert copy.read_bytes() == packed.read_bytes() and listing(tmp_path) == ["m.bslz"]


def test_sigkill_mid_compress(tmp_path):
    """SIGKILL while `python -m bslz.cli compress` writes: no output file and the input untouched.
    What remains is the hidden temporary file `.out.bslz.<random>.tmp`: no process is left to
    remove it, and a later run does not either (it picks a new random name); it never has the
    output's name, so nothing mistakes it for a finished file."""
    rng = np.random.default_rng(3)
    tensors = {f"w{i}": rng.standard_normal(3_000_000).astype(np.float32) for i in range(8)}  # 96 MB
    src = tmp_path / "big.safetensors"
    safetensors.numpy.save_file(tensors, src)
    digest = sha256(src)
    dst = tmp_path / "out.bslz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bslz.cli", "compress", str(src), "-o", str(dst), "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        temps = []
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".out.bslz.") and p.name.endswith(".tmp")]
            if temps and temps[0].stat().st_size > 0:
                break
            time.sleep(0.005)
        assert proc.poll() is None, f"compress finished before it could be killed: {proc.stderr.read()!r}"
        assert temps, "no temporary file appeared"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert not dst.exists()
    assert sha256(src) == digest
    stray = [p.name for p in tmp_path.iterdir() if p.name not in ("big.safetensors",)]
    assert len(stray) == 1 and re.fullmatch(r"\.out\.bslz\.\w+\.tmp", stray[0]), stray
    bslz.compress_file(src, dst)  # a rerun succeeds; the stray file stays
    assert len(listing(tmp_path)) == 3
    with bslz.safe_open(dst) as f:
        assert f.get_tensor("w3").tobytes() == tensors["w3"].tobytes()


# ---- golden files and the spec move together --------------------------------------------------------

# sha256 of FORMAT.md's normative text (everything from "## File layout" on) for each format version.
# Changing the format means: a new version number, fixtures for it (scripts/make_golden.py), and a
# new line here. Rewording the spec without changing the format also needs a new line (same version).
SPEC_DIGESTS = {
    (1, 0): {"02113a59e6910e324b719d52943bf618e258dc743230134ae937c8c5273c9aed"},
    (1, 1): {"b475d92cc04aad416b6de4fe91911914848d19336e1df3dbcb96b0426a5bfe46"},  # stream mode rans_escape
    (1, 2): {"9fdab835a61b32a427502680a2948b1034e66a4644e569233d2d6f51ea03d67c"},  # float segment method Huffman
    (1, 3): {
        "5025f5c286102ae486416170d9a155944645c4cf7c963c261375da7bb91c451a",  # piece checksums
        # a reader's duty: decoded_crc32 MUST be checked, crc32 MAY be left to name a failure (files unchanged)
        "2fa0fdfd9e77e092679a8e3c7fcb30e96cfae930a08944159e0e2d372781870d",
    },
}


def normative_text():
    text = (ROOT / "FORMAT.md").read_text(encoding="utf-8")
    return text[text.index("## File layout") :]


@pytest.mark.small
def test_spec_matches_the_format_version():
    """FORMAT.md names the version the writer writes, lists it in its table, and its normative text
    is one recorded for that version: editing the format without a version bump fails here."""
    text = (ROOT / "FORMAT.md").read_text(encoding="utf-8")
    version = f"{FORMAT_MAJOR}.{FORMAT_MINOR}"
    assert text.splitlines()[0] == f"# The `.bslz` format, version {version}"
    assert re.search(rf"^\| {re.escape(version)} \|", text, re.M), f"FORMAT.md's version table lacks {version}"
    digest = hashlib.sha256(normative_text().encode()).hexdigest()
    assert (FORMAT_MAJOR, FORMAT_MINOR) in SPEC_DIGESTS, f"record format {version} in SPEC_DIGESTS"
    assert digest in SPEC_DIGESTS[(FORMAT_MAJOR, FORMAT_MINOR)], (
        f"FORMAT.md's normative text changed (sha256 {digest}): if the format changed, bump the version"
        " and write golden files; else add the digest to SPEC_DIGESTS for this version"
    )
    for major, minor in SPEC_DIGESTS:
        folder = ROOT / "tests" / "fixtures" / f"format-{major}.{minor}"
        assert (folder / "manifest.json").is_file(), f"format {major}.{minor} has no golden files"
        assert re.search(rf"^\| {major}\.{minor} \|", text, re.M), f"version table lacks {major}.{minor}"


@pytest.mark.small
def test_golden_files_survive_hostile_edits_of_themselves(tmp_path):
    """Each golden file with its header edited into every rule's violation still gives BslzError."""
    for path in sorted((ROOT / "tests" / "fixtures").glob("format-*/*.bslz")):
        blob = path.read_bytes()
        major, minor, reserved, header, data = corpus.split(blob)
        for key in ("offset", "length", "shape", "dtype", "coding", "crc32"):
            h = json.loads(json.dumps(header))
            h["tensors"][-1][key] = -1
            with pytest.raises(FormatError):
                corpus.check_container(open_bytes(tmp_path, corpus.join(h, data, major, minor, reserved)).path)
                raise FormatError("accepted")


# ---- threads sharing one handle -------------------------------------------------------------------


def test_threads_share_one_handle_for_every_coding(seeds, tmp_path):
    """Many threads reading every tensor (each coding and stream mode) from one safe_open handle,
    repeatedly and in random order, get exactly the written bytes."""
    blob, expected = seeds["all"]
    path = tmp_path / "all.bslz"
    path.write_bytes(blob)
    names = sorted(n for n in expected if n != "raw.unknown") * 12
    np.random.default_rng(5).shuffle(names)
    with bslz.safe_open(path, framework="pt") as f:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda n: (n, f.get_tensor(n)), names))
            raws = list(pool.map(lambda n: (n, f.reader.decode_raw(n).tobytes()), names))
    import torch

    for name, got in results:
        assert got.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() == expected[name], name
    assert all(raw == expected[name] for name, raw in raws)


# ---- no unpickling ----------------------------------------------------------------------------------


@pytest.mark.small
def test_no_code_path_unpickles():
    """Nothing under src/ unpickles, torch.load()s, np.load()s with pickles, or eval()s/exec()s."""
    forbidden = re.compile(
        r"\bpickle\b|\bcPickle\b|\bdill\b|\bjoblib\b|torch\.load\b|allow_pickle\s*=\s*True|\bmarshal\b"
        r"|(?<![\w.])eval\s*\(|(?<![\w.])exec\s*\(|__import__\s*\(|\bshelve\b|yaml\.load\b"
    )
    hits = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if forbidden.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert hits == []
    assert forbidden.search("x = torch.load(f)") and forbidden.search("np.load(p, allow_pickle=True)")
