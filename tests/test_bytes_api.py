"""The in-memory API: `compress_bytes` / `decompress_bytes`, `bslz.numpy` and `bslz.torch` `save` /
`load`, and `safe_open` over a container's bytes. Each must give the file API's bytes and the file
API's errors, read its input in place without changing it, and hand out tensors of their own."""

import contextlib
import hashlib
import json
import pathlib

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bslz
import bslz.numpy
import bslz.torch
from bslz import BslzError, InvalidArgumentError, TruncatedError
from bslz.formats.buffers import MemoryFile
from bslz.formats.container import ContainerReader
from bslz.formats.dtypes import lookup
from bslz.formats.tensor_codec import decode_tensor
from fuzz import corpus
from test_api import METADATA, every_dtype_tensors, lossy_tensors, same_bits

# every kind of buffer the calls take, each over the same bytes
BUFFERS = {
    "bytes": bytes,
    "bytearray": bytearray,
    "memoryview": memoryview,
    "numpy": lambda b: np.frombuffer(bytearray(b), dtype=np.uint8),
    "read-only numpy": lambda b: np.frombuffer(bytes(b), dtype=np.uint8),
}


def digest(buffer):
    return hashlib.sha256(memoryview(buffer)).hexdigest()


def reading(source):
    return contextlib.closing(ContainerReader(source))


@pytest.fixture(scope="module")
def every_dtype_image():
    tensors = every_dtype_tensors()
    return tensors, safetensors.torch.save(tensors, metadata=METADATA)


@pytest.fixture(scope="module")
def lossy_image():
    return safetensors.torch.save(lossy_tensors(), metadata={"format": "pt"})


def compressed_file(tmp_path, image, **options):
    src, dst = tmp_path / "in.safetensors", tmp_path / "out.bslz"
    src.write_bytes(image)
    bslz.compress_file(src, dst, overwrite=True, **options)
    return dst.read_bytes()


def decompressed_file(tmp_path, blob):
    """decompress_file's output for `blob`, or the class of the error it raised."""
    src, dst = tmp_path / "in.bslz", tmp_path / "out.safetensors"
    src.write_bytes(blob)
    try:
        bslz.decompress_file(src, dst, overwrite=True)
    except BslzError as exc:
        return type(exc)
    return dst.read_bytes()


def decompressed_bytes(blob):
    try:
        return bytes(bslz.decompress_bytes(blob))
    except BslzError as exc:
        return type(exc)


@pytest.mark.parametrize("kind", sorted(BUFFERS))
def test_every_dtype_round_trips_in_memory(every_dtype_image, tmp_path, kind):
    _, image = every_dtype_image
    packed = bslz.compress_bytes(BUFFERS[kind](image))
    assert isinstance(packed, memoryview) and not packed.readonly
    assert packed == compressed_file(tmp_path, image)  # the file API's container, byte for byte
    restored = bslz.decompress_bytes(BUFFERS[kind](packed))
    assert isinstance(restored, memoryview) and not restored.readonly
    assert restored == image


@pytest.mark.parametrize("target", [{"step": 2e-3}, {"snr": 30.0}, {"bits": 5.0}], ids=["step", "snr", "bits"])
def test_lossy_targets_in_memory_give_the_file_api_bytes(lossy_image, tmp_path, target):
    packed = bslz.compress_bytes(lossy_image, **target)
    assert packed == compressed_file(tmp_path, lossy_image, **target)
    with reading(packed) as reader:
        assert sum(e["coding"] == "quantized" for e in reader.entries) >= 4
    for kind in ("bytes", "bytearray"):  # payloads read-only and writable: both kernel variants
        assert bslz.decompress_bytes(BUFFERS[kind](packed)) == decompressed_file(tmp_path, packed)


def test_inputs_are_left_as_they_were(every_dtype_image, lossy_image):
    image = bytearray(every_dtype_image[1])
    before = digest(image)
    packed = bytearray(bslz.compress_bytes(image))
    lossy = bytearray(bslz.compress_bytes(lossy_image, step=2e-3))
    packed_before, lossy_before = digest(packed), digest(lossy)
    bslz.decompress_bytes(packed)
    bslz.decompress_bytes(lossy)
    bslz.torch.load(packed)
    bslz.torch.load(lossy)
    assert (digest(image), digest(packed), digest(lossy)) == (before, packed_before, lossy_before)


def test_loaded_tensors_do_not_share_the_callers_buffer():
    noise = np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8)  # incompressible: stored raw
    packed = bytearray(bslz.numpy.save({"noise": noise, "w": np.linspace(-1, 1, 1000, dtype=np.float32)}))
    with reading(packed) as reader:
        assert reader.entry("noise")["coding"] == "raw"
    tensors = bslz.numpy.load(packed)
    with bslz.safe_open(packed) as f:
        lazy = f.get_tensor("noise")
    packed[:] = bytes(len(packed))  # the caller reuses its buffer
    np.testing.assert_array_equal(tensors["noise"], noise)
    np.testing.assert_array_equal(lazy, noise)
    assert tensors["noise"].flags.writeable and lazy.flags.writeable


def test_unaligned_tensors_are_restored(tmp_path):
    """A safetensors file may place a tensor at any byte: decompress_bytes then decodes it apart and
    copies it into place (a float32 tensor at an odd offset here)."""
    w = np.random.default_rng(3).standard_normal(5000).astype(np.float32)
    header = {
        "odd": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
        "w": {"dtype": "F32", "shape": [5000], "data_offsets": [3, 3 + w.nbytes]},
        "h": {"dtype": "F16", "shape": [999], "data_offsets": [3 + w.nbytes, 3 + w.nbytes + 1998]},
    }
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-aligned: "w" is at 3 mod 8
    data = b"\x01\x02\x03" + w.tobytes() + w[:999].astype(np.float16).tobytes()
    image = len(text).to_bytes(8, "little") + text + data
    packed = bslz.compress_bytes(image)
    assert packed == compressed_file(tmp_path, image)
    restored = bslz.decompress_bytes(packed)
    assert restored == image
    assert np.frombuffer(restored, np.uint8).ctypes.data % 4 == 0  # so "w" did sit at an odd address


NOT_BUFFERS = {"int": 12, "none": None, "strided": np.zeros((8, 8), np.uint8)[:, ::2], "list": [1, 2]}


@pytest.mark.parametrize("call", [bslz.compress_bytes, bslz.decompress_bytes, bslz.numpy.load, bslz.torch.load])
@pytest.mark.parametrize("bad", list(NOT_BUFFERS.values()), ids=list(NOT_BUFFERS))
def test_what_is_not_a_buffer_is_refused(call, bad):
    with pytest.raises(InvalidArgumentError):
        call(bad)


@pytest.mark.parametrize("call", [bslz.compress_bytes, bslz.decompress_bytes])
@pytest.mark.parametrize("path", ["model.bslz", pathlib.Path("model.safetensors")], ids=["str", "path"])
def test_a_path_is_pointed_to_the_file_calls(call, path):
    with pytest.raises(InvalidArgumentError, match="_file"):
        call(path)


@pytest.mark.parametrize("cut", [0, 7, 23, 100, -1])
def test_truncated_buffers(every_dtype_image, tmp_path, cut):
    _, image = every_dtype_image
    packed = bslz.compress_bytes(image)
    with pytest.raises(TruncatedError):
        bslz.decompress_bytes(packed[:cut])
    with pytest.raises(TruncatedError):
        bslz.compress_bytes(image[:cut])
    assert decompressed_bytes(packed[:cut]) == decompressed_file(tmp_path, packed[:cut])


SEEDS = corpus.seed_files()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(group=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_mutated_containers_decompress_as_files_do(tmp_path, group, data):
    """Bit flips (checksums fixed or not): decompress_bytes raises the error class decompress_file
    raises, or gives the bytes it writes."""
    blob = bytearray(SEEDS[group][0])
    for bit in data.draw(st.lists(st.integers(0, 8 * len(blob) - 1), min_size=1, max_size=3)):
        blob[bit // 8] ^= 0x80 >> (bit % 8)
    blob = corpus.fix_checksums(bytes(blob)) if data.draw(st.booleans()) else bytes(blob)
    assert decompressed_bytes(blob) == decompressed_file(tmp_path, blob)


def test_decode_into_out_matches_a_fresh_array():
    """Every coding and stream mode of the fuzz seeds, lossy ones included."""
    for name, dtype, shape, fields, payload, _ in corpus.seed_tensors():
        numel = int(np.prod(shape))
        fresh = decode_tensor(fields, payload, dtype, numel, payload.size if _raw(fields) else numel * _itemsize(dtype))
        out = np.full(fresh.size, 0xA5, dtype=np.uint8)  # whatever the memory held: every byte is written
        assert decode_tensor(fields, payload, dtype, numel, fresh.size, out) is out
        assert out.tobytes() == fresh.tobytes(), name
        with pytest.raises(InvalidArgumentError):
            decode_tensor(fields, payload, dtype, numel, fresh.size, np.empty(fresh.size + 1, np.uint8))


def _itemsize(dtype_name):
    return lookup(dtype_name).itemsize


def _raw(fields):
    return fields["coding"] == "raw"


def test_numpy_save_load(tmp_path):
    rng = np.random.default_rng(11)
    tensors = {
        "w": rng.standard_normal((64, 96)).astype(np.float32),
        "h": rng.standard_normal(5000).astype(np.float16),
        "ids": np.arange(-50, 50, dtype=np.int64),
        "mask": rng.random(77) < 0.5,
        "empty": np.zeros((0, 4), np.float64),
    }
    packed = bslz.numpy.save(tensors, {"k": "v"})
    bslz.numpy.save_file(tensors, tmp_path / "m.bslz", {"k": "v"})
    assert packed == (tmp_path / "m.bslz").read_bytes()
    back = bslz.numpy.load(packed)
    assert list(back) == list(bslz.numpy.load_file(tmp_path / "m.bslz"))
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape
        np.testing.assert_array_equal(back[name], t)
    with bslz.safe_open(packed) as f:
        assert f.metadata() == {"k": "v"} and sorted(f.keys()) == sorted(tensors)
    lossy = bslz.numpy.save(tensors, bits=6.0)
    assert len(lossy) < len(packed)
    assert bslz.numpy.load(lossy)["w"].dtype == np.float32


def test_torch_save_load_bf16_fp8_exact():
    tensors = {name: t for name, t in every_dtype_tensors().items() if t.dtype.is_floating_point}
    packed = bslz.torch.save(tensors, METADATA)  # (safetensors orders metadata keys as it likes: no byte check)
    back = bslz.torch.load(packed)
    with bslz.safe_open(packed, framework="pt") as f:
        assert f.metadata() == METADATA
    assert set(back) == set(tensors)
    assert all(same_bits(back[name], t.contiguous()) for name, t in tensors.items())
    with pytest.raises(InvalidArgumentError):
        bslz.torch.save({"x": np.zeros(3)})
    with pytest.raises(InvalidArgumentError):
        bslz.numpy.save({"x": torch.zeros(3)})


def test_safe_open_over_bytes_decodes_only_what_is_asked(every_dtype_image, monkeypatch):
    tensors, image = every_dtype_image
    packed = bslz.compress_bytes(image)
    decoded = []
    real = ContainerReader.decode_raw

    def spy(self, name, **kw):
        decoded.append(name)
        return real(self, name, **kw)

    monkeypatch.setattr(ContainerReader, "decode_raw", spy)
    with bslz.safe_open(packed, framework="pt") as f:
        assert f.metadata() == METADATA
        assert same_bits(f.get_tensor("bf16.every"), tensors["bf16.every"])
    assert decoded == ["bf16.every"]


def test_memory_file_behaves_as_a_file(tmp_path):
    """The same writes, seeks and truncations on a MemoryFile and a real file give the same bytes,
    across its growth (capacity 4)."""
    ops = [("write", b"abc"), ("seek", 10), ("write", b"xy"), ("seek", 1), ("write", b"Q" * 20), ("truncate", None)]
    ops += [("seek", 30), ("truncate", None), ("seek", 0), ("write", b"zz"), ("truncate", 5), ("seek", 8)]
    ops += [("write", memoryview(np.arange(3, dtype=np.uint16)))]
    memory = MemoryFile(4)
    with open(tmp_path / "f", "w+b") as f:
        for op, arg in ops:
            for target in (memory, f):
                getattr(target, op)(*(() if arg is None else (arg,)))
            assert memory.tell() == f.tell(), op
        f.seek(0)
        assert memory.getbuffer() == f.read()
    with pytest.raises(ValueError):
        memory.seek(-1)


class Pipe:
    """A write-only stream, as a pipe is: no seek, no tell."""

    def __init__(self):
        self.chunks = []

    def write(self, data):
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self):
        pass

    def getvalue(self):
        return b"".join(self.chunks)


@pytest.mark.parametrize("options", [{}, {"snr": 30.0}])
def test_the_stream_calls_write_what_the_file_calls_write_into_a_pipe(tmp_path, lossy_image, options):
    src = tmp_path / "in.safetensors"
    src.write_bytes(lossy_image)
    expected = compressed_file(tmp_path, lossy_image, **options)
    for source in (src, lossy_image):  # a path, and the bytes
        out = Pipe()
        report = bslz.compress_stream(source, out, **options)
        assert out.getvalue() == expected and report.compressed_bytes == len(expected)
        assert report.lossless == (not options)
    assert report.source == ""  # bytes have no name
    restored = decompressed_file(tmp_path, expected)
    for source in (tmp_path / "in.bslz", expected):
        out = Pipe()
        assert bslz.decompress_stream(source, out) == len(restored) and out.getvalue() == restored


def test_the_stream_calls_raise_the_file_calls_errors(lossy_image):
    with pytest.raises(BslzError):
        bslz.compress_stream(b"not safetensors", Pipe())
    with pytest.raises(BslzError):
        bslz.decompress_stream(b"not a container", Pipe())
