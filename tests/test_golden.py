"""Golden files, as numcodecs and pcodec keep them: written once per format version by
scripts/make_golden.py, decoded by every later bslz of the same major version.

The writer check compares a freshly written file with the golden one field by field: the prefix's
magic and version, the header JSON with its "creator" string (the bslz version) left out, and the
data section byte for byte. The header's length and space padding are not compared, since the
space reserved for the header depends on the length of the creator string.
"""

import hashlib
import json
import math
import pathlib

import pytest
import safetensors
import safetensors.torch
import torch

import bslz
import bslz.torch
from bslz.codec import floats
from bslz.formats import container_writer
from bslz.formats.container import FORMAT_MAJOR, FORMAT_MINOR, PREFIX, align

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
FOLDERS = sorted(FIXTURES.glob("format-*/manifest.json"))
CASES = [(m.parent, case) for m in FOLDERS for case in json.loads(m.read_text())["cases"]]
IDS = [f"{folder.name}/{case['name']}" for folder, case in CASES]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def raw_bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def container_parts(path):
    """(magic, major, minor, header without creator, data bytes) of a `.bslz` file."""
    blob = pathlib.Path(path).read_bytes()
    magic, major, minor, _, n = PREFIX.unpack_from(blob)
    header = json.loads(blob[PREFIX.size : PREFIX.size + n])
    header.pop("creator")
    return magic, major, minor, header, blob[align(PREFIX.size + n) :]


@pytest.mark.small
def test_current_version_has_golden_files():
    folder = FIXTURES / f"format-{FORMAT_MAJOR}.{FORMAT_MINOR}"
    assert (folder / "manifest.json").is_file(), f"run scripts/make_golden.py to write golden files for {folder.name}"
    # a guard against bloat: golden files stay a few KB each (format 1.3's lossless-pieces case needs
    # a payload of several 4 KiB pieces, ~19 KB with its input)
    assert sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file()) < 80 * 1024 * len(FOLDERS)


@pytest.mark.small
@pytest.mark.parametrize("folder, case", CASES, ids=IDS)
def test_fixtures_intact(folder, case):
    """The files are what make_golden.py wrote (guards against an accidental rewrite)."""
    for name, digest in case["sha256"].items():
        assert sha256(folder / name) == digest, name


@pytest.mark.small
@pytest.mark.parametrize("folder, case", CASES, ids=IDS)
def test_golden_decompresses(folder, case, tmp_path):
    out = tmp_path / "out.safetensors"
    bslz.decompress_file(folder / case["bslz"], out)
    assert sha256(out) == sha256(folder / case["decoded"])


@pytest.mark.small
@pytest.mark.parametrize("folder, case", CASES, ids=IDS)
def test_golden_safe_open(folder, case):
    expected = safetensors.torch.load_file(folder / case["decoded"])
    with safetensors.safe_open(folder / case["decoded"], framework="pt") as f:
        metadata = f.metadata()
    with bslz.safe_open(folder / case["bslz"], framework="pt") as f:
        assert sorted(f.keys()) == sorted(expected)
        assert f.metadata() == metadata
        for name, want in expected.items():
            got = f.get_tensor(name)
            assert got.dtype == want.dtype and got.shape == want.shape, name
            assert raw_bytes(got) == raw_bytes(want), name


@pytest.mark.small
@pytest.mark.parametrize("folder, case", CASES, ids=IDS)
def test_golden_slices(folder, case):
    """Rows of every tensor through get_slice (from format 1.3, of long payloads only the pieces
    holding their chunks are read) are safetensors' same rows of the decoded file."""
    with (
        safetensors.safe_open(folder / case["decoded"], framework="pt") as want,
        bslz.safe_open(folder / case["bslz"], framework="pt") as got,
    ):
        for name in want.keys():
            rows = want.get_slice(name).get_shape()[:1]
            if not rows or rows[0] < 2:
                continue
            index = slice(rows[0] // 3, rows[0] - 1)
            assert raw_bytes(got.get_slice(name)[index]) == raw_bytes(want.get_slice(name)[index]), name


@pytest.mark.small
@pytest.mark.parametrize("folder, case", CASES, ids=IDS)
def test_writer_unchanged(folder, case, tmp_path, monkeypatch):
    """Same input, same options (and writer settings): the same file, unless the format version changed."""
    version = tuple(json.loads((folder / "manifest.json").read_text())["format"])
    if version != (FORMAT_MAJOR, FORMAT_MINOR):
        pytest.skip(f"golden files of format {version}: decoded only, the writer is {FORMAT_MAJOR}.{FORMAT_MINOR}")
    if "snr" in case["options"] or "bits" in case["options"]:
        pytest.skip("a searched step is the encoder's choice (the search may get better): decoded only")
    for name, value in case.get("writer", {}).items():
        monkeypatch.setattr(container_writer, name, value)
    fresh = tmp_path / "fresh.bslz"
    report = bslz.compress_file(folder / case["input"], fresh, **case["options"])
    assert sorted({t.coding for t in report.tensors}) == case["codings"]
    magic, major, minor, header, data = container_parts(fresh)
    g_magic, g_major, g_minor, g_header, g_data = container_parts(folder / case["bslz"])
    assert (magic, major, minor) == (g_magic, g_major, g_minor)
    hint = "the writer changed what it writes: bump the format version and run scripts/make_golden.py, or revert"
    assert header == as_written_now(g_header, lossy="quantized" in case["codings"], fresh=header), hint
    assert data == g_data, hint


def as_written_now(header, lossy, fresh):
    """A golden header with the writer choices made since it was written, each one within format
    1.0 (readers handle both ways), applied; the data section is unchanged by all of them. `fresh`:
    the header written now, for fields that may differ in their last digits only."""
    if lossy:
        # the optional original header, "source", is left out of lossy files: it serves byte-identical
        # restoration, which a lossy file cannot give
        header.pop("source", None)
    for entry, now in zip(header["tensors"], fresh["tensors"]):
        if entry.get("reconstruction") == "dq" and entry.get("gg") and now.get("gg"):
            # the informative fit of a dependent-quantization tensor (decoding does not read it) comes
            # from the reconstruction's sums, taken in lanes since format 1.3's files were written:
            # the same to rounding
            assert now["gg"] == pytest.approx(entry["gg"], rel=1e-12)
            entry["gg"] = now["gg"]
    for entry in header["tensors"]:
        if entry["coding"] == "float" and entry["chunk_size"] * ITEM_BYTES[entry["dtype"]] == 1 << 18:
            # float chunks of 512 KiB instead of 256 KiB: a tensor within one chunk (all of these)
            # codes the same bytes, only its recorded chunk size changes
            assert math.prod(entry["shape"]) <= entry["chunk_size"]
            entry["chunk_size"] = floats.DEFAULT_CHUNK_BYTES // ITEM_BYTES[entry["dtype"]]
    return header


ITEM_BYTES = {"F8_E4M3": 1, "F8_E5M2": 1, "F16": 2, "BF16": 2, "F32": 4, "F64": 8}
