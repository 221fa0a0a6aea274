"""Piece checksums (format 1.3): a long payload also carries the CRC-32 of each of its pieces, so
that reading part of a tensor (`get_slice`, `ContainerReader.decode_range`) reads and checks only
the pieces holding its tables and chunks, and `verify` checks them all.

The writer gives them to payloads from 4 MiB; these tests lower that to 4096 bytes (the format's
smallest piece) to keep their files small, except where they check the default."""

import json
import zlib

import numpy as np
import pytest
import safetensors.numpy
from click.testing import CliRunner

import bslz
from bslz import FormatError
from bslz.cli import main
from bslz.formats import container_writer, tensor_codec
from bslz.formats.container import PREFIX, ContainerReader, align
from bslz.formats.container_writer import MAX_PIECES, piece_bytes_for
from bslz.formats.piece_checksums import MIN_PIECE_BYTES, PiecesRead
from test_slices import lossless_and_lossy_files

DEFAULT_PIECES_FROM_BYTES = container_writer.PIECES_FROM_BYTES


@pytest.fixture(autouse=True)
def pieces_from_4096(monkeypatch):
    monkeypatch.setattr(container_writer, "PIECES_FROM_BYTES", MIN_PIECE_BYTES)


def tensors():
    rng = np.random.default_rng(11)
    return {
        # lossless float32: 131072 values a chunk, so three chunks
        "matrix": (rng.standard_normal((700, 500)) * 0.02).astype(np.float32),
        "small": rng.standard_normal(384).astype(np.float32),
        "ints": rng.integers(-50, 50, size=(300, 20)).astype(np.int32),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tensors as safetensors, and as .bslz lossless and lossy (--step: quantized by chunk)."""
    with pytest.MonkeyPatch.context() as patch:  # (a module's fixture: the autouse one comes later)
        patch.setattr(container_writer, "PIECES_FROM_BYTES", MIN_PIECE_BYTES)
        return lossless_and_lossy_files(tmp_path_factory.mktemp("pieces"), tensors())


def split(blob):
    _, major, minor, _, n = PREFIX.unpack_from(blob)
    return (major, minor), json.loads(blob[PREFIX.size : PREFIX.size + n]), blob[align(PREFIX.size + n) :]


def rewritten(blob, edit):
    """The container with its header JSON edited by `edit(header)`, written with the same length
    (padded with spaces; the edit must not lengthen it)."""
    _, _, _, _, n = PREFIX.unpack_from(blob)
    header = json.loads(blob[PREFIX.size : PREFIX.size + n])
    edit(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= n
    return blob[: PREFIX.size] + text + b" " * (n - len(text)) + blob[PREFIX.size + n :]


def payload_of(blob, name):
    _, header, data = split(blob)
    e = next(e for e in header["tensors"] if e["name"] == name)
    return e, data[e["offset"] : e["offset"] + e["length"]]


@pytest.mark.small
@pytest.mark.parametrize("length", [0, 1, MIN_PIECE_BYTES, MIN_PIECE_BYTES + 1, 100_000, 15_435_664, 2**40])
def test_the_piece_size_is_a_power_of_two_giving_at_most_max_pieces(length):
    size = piece_bytes_for(length)
    if length <= MIN_PIECE_BYTES:
        assert size is None
        return
    assert size >= MIN_PIECE_BYTES and size & (size - 1) == 0
    assert -(-length // size) <= MAX_PIECES
    assert size == MIN_PIECE_BYTES or -(-length // (size // 2)) > MAX_PIECES  # the smallest such


def test_by_default_payloads_from_4_mib_have_pieces_and_shorter_ones_none(tmp_path, monkeypatch):
    monkeypatch.setattr(container_writer, "PIECES_FROM_BYTES", DEFAULT_PIECES_FROM_BYTES)
    assert piece_bytes_for(DEFAULT_PIECES_FROM_BYTES - 1) is None
    assert piece_bytes_for(DEFAULT_PIECES_FROM_BYTES) == DEFAULT_PIECES_FROM_BYTES // MAX_PIECES
    rng = np.random.default_rng(3)
    src = tmp_path / "t.safetensors"
    safetensors.numpy.save_file(
        {
            "big": rng.standard_normal(1_500_000).astype(np.float32),
            "medium": rng.standard_normal(300_000).astype(np.float32),
        },
        src,
    )
    bslz.compress_file(src, tmp_path / "t.bslz")
    entries = {e["name"]: e for e in split((tmp_path / "t.bslz").read_bytes())[1]["tensors"]}
    assert entries["big"]["length"] >= DEFAULT_PIECES_FROM_BYTES
    assert len(entries["big"]["piece_crc32"]) == -(-entries["big"]["length"] // entries["big"]["piece_bytes"])
    assert "piece_bytes" not in entries["medium"] and "piece_crc32" not in entries["medium"]


@pytest.mark.parametrize("which", [1, 2], ids=["lossless", "lossy"])
def test_long_payloads_carry_the_crc32_of_each_piece(files, which):
    blob = files[which].read_bytes()
    version, header, _ = split(blob)
    assert version == (1, 3)
    with_pieces = 0
    for e in header["tensors"]:
        _, payload = payload_of(blob, e["name"])
        assert e["crc32"] == zlib.crc32(payload)
        if e["length"] <= MIN_PIECE_BYTES:
            assert "piece_bytes" not in e and "piece_crc32" not in e
            continue
        size = e["piece_bytes"]
        assert size == piece_bytes_for(e["length"])
        assert e["piece_crc32"] == [zlib.crc32(payload[lo : lo + size]) for lo in range(0, len(payload), size)]
        with_pieces += 1
    assert with_pieces >= 2  # the matrix and the ints


@pytest.fixture
def bytes_read(monkeypatch):
    """The payload bytes each file-backed read takes, as (name, lo, hi)."""
    reads = []
    original = ContainerReader._read_payload_bytes

    def spy(self, entry, out, lo, hi):
        reads.append((entry["name"], lo, hi))
        return original(self, entry, out, lo, hi)

    monkeypatch.setattr(ContainerReader, "_read_payload_bytes", spy)
    return reads


@pytest.mark.parametrize("which", [1, 2], ids=["lossless", "lossy"])
@pytest.mark.parametrize("rows", [slice(0, 5), slice(300, 310), slice(690, 700)], ids=["first", "middle", "last"])
def test_a_slice_of_a_file_reads_only_the_pieces_that_hold_its_chunks(files, which, rows, bytes_read):
    whole = tensors()["matrix"]
    with bslz.safe_open(files[which]) as f:
        e = f.reader.entry("matrix")
        part = f.get_slice("matrix")[rows]
        size = e["piece_bytes"]
        read = sorted({i for name, lo, hi in bytes_read if name == "matrix" for i in range(lo // size, -(-hi // size))})
        # the pieces of its tables and of the chunks holding those rows (500 values a row)
        head = tensor_codec.range_head_bytes(e, e["dtype"], e["numel"])
        _, payload = payload_of(files[which].read_bytes(), "matrix")
        lo, hi = tensor_codec.range_payload_span(
            e, np.frombuffer(payload[:head], np.uint8), e["dtype"], e["numel"], 500 * rows.start, 500 * rows.stop
        )
        assert read == sorted(set(range(-(-head // size))) | set(range(lo // size, -(-hi // size))))
        assert len(read) < len(e["piece_crc32"])
        assert np.array_equal(part, f.get_tensor("matrix")[rows])
    if which == 1:
        assert np.array_equal(part, whole[rows])


@pytest.mark.parametrize("which", [1, 2], ids=["lossless", "lossy"])
def test_a_slice_decodes_from_the_pieces_it_read_alone(files, which, monkeypatch):
    """The bytes of a payload a slice does not read are left as they are in memory: noise there
    changes nothing."""
    rng = np.random.default_rng(5)
    original = PiecesRead.__init__

    def noisy(self, *args):
        original(self, *args)
        self.payload[:] = rng.integers(0, 256, self.payload.size, dtype=np.uint8)

    with bslz.safe_open(files[which]) as f:
        whole = f.get_tensor("matrix")
        monkeypatch.setattr(PiecesRead, "__init__", noisy)
        for rows in (slice(0, 5), slice(250, 270), slice(300, 310), slice(650, 700)):
            assert np.array_equal(f.get_slice("matrix")[rows], whole[rows])


def corrupt(blob, name, at):
    """The container with one bit of tensor `name`'s payload flipped, `at` bytes into it."""
    e, _ = payload_of(blob, name)
    data_start = len(blob) - len(split(blob)[2])
    out = bytearray(blob)
    out[data_start + e["offset"] + at] ^= 0x10
    return bytes(out)


@pytest.mark.parametrize("source", ["path", "bytes"])
def test_a_corrupt_piece_a_slice_reads_fails_it(files, tmp_path, source):
    blob = files[1].read_bytes()
    e, _ = payload_of(blob, "matrix")
    bad = corrupt(blob, "matrix", e["length"] - 100)  # in the last chunk
    path = tmp_path / "bad.bslz"
    path.write_bytes(bad)
    with bslz.safe_open(path if source == "path" else bad) as f:
        with pytest.raises(FormatError, match="checksum"):
            f.get_slice("matrix")[690:]


@pytest.mark.parametrize("source", ["path", "bytes"])
def test_a_corrupt_piece_elsewhere_leaves_a_slice_right_but_fails_the_whole_and_verify(files, tmp_path, source):
    blob = files[1].read_bytes()
    e, _ = payload_of(blob, "matrix")
    bad = corrupt(blob, "matrix", e["length"] - 100)
    path = tmp_path / "bad.bslz"
    path.write_bytes(bad)
    with bslz.safe_open(path if source == "path" else bad) as f:
        assert np.array_equal(f.get_slice("matrix")[:5], tensors()["matrix"][:5])  # rows of the first chunk
        with pytest.raises(FormatError, match="checksum"):
            f.get_tensor("matrix")
    result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 1 and "checksum" in result.output


def test_verify_checks_the_piece_checksums_themselves(files, tmp_path):
    """A wrong piece checksum (the payload and its whole checksum intact) passes get_tensor, and
    verify finds it."""
    blob = files[1].read_bytes()

    def edit(header):
        e = next(e for e in header["tensors"] if e["name"] == "matrix")
        e["piece_crc32"][0] ^= 1

    path = tmp_path / "wrong.bslz"
    path.write_bytes(rewritten(blob, edit))
    with bslz.safe_open(path) as f:
        assert np.array_equal(f.get_tensor("matrix"), tensors()["matrix"])
    result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 1 and "'matrix'" in result.output and "checksum" in result.output
    ok = CliRunner().invoke(main, ["verify", str(files[1])])
    assert ok.exit_code == 0, ok.output


def test_without_piece_checksums_a_slice_checks_the_whole_payload(files, tmp_path):
    """A file without them (every file before format 1.3): a slice reads the whole payload and
    fails on corruption anywhere in it."""
    blob = files[1].read_bytes()

    def edit(header):
        for e in header["tensors"]:
            e.pop("piece_bytes", None)
            e.pop("piece_crc32", None)

    plain = rewritten(blob, edit)
    e, _ = payload_of(plain, "matrix")
    with bslz.safe_open(plain) as f:
        assert np.array_equal(f.get_slice("matrix")[:5], tensors()["matrix"][:5])
    with bslz.safe_open(corrupt(plain, "matrix", e["length"] - 100)) as f:
        with pytest.raises(FormatError, match="checksum"):
            f.get_slice("matrix")[:5]


def set_pieces(**fields):
    def edit(header):
        e = next(e for e in header["tensors"] if e["name"] == "matrix")
        for key, value in fields.items():
            if value is None:
                e.pop(key)
            else:
                e[key] = value(e) if callable(value) else value

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(set_pieces(piece_bytes=None), id="list-without-size"),
        pytest.param(set_pieces(piece_crc32=None), id="size-without-list"),
        pytest.param(set_pieces(piece_bytes=3 * 4096), id="size-not-power-of-two"),
        pytest.param(set_pieces(piece_bytes=2048), id="size-below-4096"),
        pytest.param(set_pieces(piece_bytes=True), id="size-bool"),
        pytest.param(set_pieces(piece_bytes=2**63), id="size-huge"),
        pytest.param(set_pieces(piece_crc32=lambda e: e["piece_crc32"][:-1]), id="one-crc-short"),
        pytest.param(set_pieces(piece_crc32=lambda e: [2**32] + e["piece_crc32"][1:]), id="crc-past-32-bits"),
        pytest.param(set_pieces(piece_crc32=lambda e: [-1] + e["piece_crc32"][1:]), id="crc-negative"),
        pytest.param(set_pieces(piece_crc32=lambda e: ["0"] + e["piece_crc32"][1:]), id="crc-str"),
        pytest.param(set_pieces(piece_crc32=7), id="list-int"),
    ],
)
def test_bad_piece_fields_are_refused_on_open(files, edit):
    with pytest.raises(FormatError, match="piece"):
        ContainerReader(rewritten(files[1].read_bytes(), edit))
