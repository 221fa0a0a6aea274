"""Small tensors decoded together (`formats.small_tensors.decode_many`): the lossless float tensors
of one chunk in one kernel call per float format, the rest one by one, with the same results and
the same errors as `ContainerReader.decode_raw` tensor by tensor."""

import numpy as np
import pytest
import safetensors.torch
import torch

import bslz
import bslz.numpy
import bslz.torch
from bslz import FormatError, InvalidArgumentError
from bslz.codec import floats
from bslz.codec._parallel import TINY_ELEMENTS
from bslz.formats.container import ContainerReader
from bslz.formats.small_tensors import decode_many

pytestmark = pytest.mark.small  # (seconds without the JIT too: the pure-Python path of the kernels is tested)


def small_tensors():
    g = torch.Generator().manual_seed(3)
    peaked = torch.tensor(np.random.default_rng(3).choice([3, 9, 200], 4000, p=[0.9, 0.05, 0.05]), dtype=torch.int32)
    low = torch.randint(0, 32, (4000,), generator=g, dtype=torch.int32)
    return {
        "bf16 norm": torch.randn(384, generator=g).to(torch.bfloat16),
        "bf16 bias": (torch.randn(1536, generator=g) * 0.02).to(torch.bfloat16),
        "f16 bias": (torch.randn(7, 100, generator=g) * 0.02).to(torch.float16),
        "f32 norm": torch.randn(384, generator=g) + 1,
        "f64": torch.randn(50, generator=g, dtype=torch.float64),
        "e4m3": torch.randn(300, generator=g).to(torch.float8_e4m3fn),
        "e5m2": torch.randn(300, generator=g).to(torch.float8_e5m2),
        "constant": torch.ones(64, dtype=torch.bfloat16),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 4, dtype=torch.bfloat16),
        "ids": torch.arange(512, dtype=torch.int64),
        "mask": torch.rand(100, generator=g) > 0.5,
        # a head peaked on three values: rANS-coded, which the kernel leaves to the long way
        "rans head": ((peaked << 5) | low).to(torch.int16).view(torch.bfloat16),
    }


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    src, dst = d / "small.safetensors", d / "small.bslz"
    safetensors.torch.save_file(small_tensors(), src)
    bslz.compress_file(src, dst)
    return dst


def test_the_file_holds_what_the_tests_mean(small_file):
    reader = ContainerReader(small_file)
    assert all(e["numel"] < TINY_ELEMENTS for e in reader.entries)
    float_coded = {e["name"] for e in reader.entries if e["coding"] == "float"}
    assert float_coded >= {"bf16 norm", "f32 norm", "e4m3", "rans head"}
    payload = reader.payload(reader.entry("rans head"))
    assert payload[16] == floats.RANS  # the head segment's method, after the two-offset chunk table


@pytest.mark.parametrize("source", ["file", "bytes"])
def test_decode_many_gives_what_decode_raw_gives(small_file, source):
    reader = ContainerReader(small_file if source == "file" else small_file.read_bytes())
    names = reader.keys()
    outs = [np.full(reader.entry(n)["nbytes"], 0xA5, dtype=np.uint8) for n in names]
    assert decode_many(reader, names, outs) == outs
    for name, out in zip(names, outs):
        np.testing.assert_array_equal(out, reader.decode_raw(name), err_msg=name)


def test_decompress_bytes_of_small_tensors_is_the_original_file(small_file, tmp_path):
    back = tmp_path / "back.safetensors"
    bslz.decompress_file(small_file, back)
    assert bytes(bslz.decompress_bytes(small_file.read_bytes())) == back.read_bytes()


@pytest.mark.parametrize("name", ["bf16 norm", "f32 norm", "e5m2"])
@pytest.mark.parametrize("fields", [("decoded_crc32",), ("crc32", "decoded_crc32")])
def test_a_checksum_that_fails_fails_as_in_decode_raw(small_file, name, fields):
    """Decoded bytes that fail their checksum fail as in decode_raw: named a corrupt payload when
    the payload fails its own checksum too."""
    reader = ContainerReader(small_file)
    for field in fields:
        reader.entry(name)[field] ^= 1
    with pytest.raises(FormatError) as one:
        reader.decode_raw(name)
    names = reader.keys()
    outs = [np.empty(reader.entry(n)["nbytes"], dtype=np.uint8) for n in names]
    with pytest.raises(FormatError) as many:
        decode_many(reader, names, outs)
    assert str(many.value) == str(one.value)
    expected = "payload fails its checksum" if "crc32" in fields else "decodes to bytes that fail their checksum"
    assert expected in str(one.value)


@pytest.mark.parametrize("name", ["bf16 norm", "f32 norm", "e5m2"])
def test_a_wrong_payload_checksum_alone_is_found_by_verify(small_file, name):
    """Decoding checks the payload's checksum only when the decoded bytes fail theirs: bytes that
    pass are the tensor. `verify` checks every checksum."""
    right = ContainerReader(small_file).decode_raw(name)
    reader = ContainerReader(small_file)
    reader.entry(name)["crc32"] ^= 1
    np.testing.assert_array_equal(reader.decode_raw(name), right)
    names = reader.keys()
    outs = decode_many(reader, names, [np.empty(reader.entry(n)["nbytes"], dtype=np.uint8) for n in names])
    np.testing.assert_array_equal(outs[names.index(name)], right)
    with pytest.raises(FormatError, match="payload fails its checksum"):
        reader.verify(name)


@pytest.mark.parametrize("offset", [0, 8, 16, 20, -1])
def test_a_corrupt_payload_fails_as_in_decode_raw(small_file, offset):
    """A byte changed in a payload (its chunk table, its segment headers, its last byte): the kernel
    declines it or decodes it to other bytes, and either way the error is decode_raw's."""
    data = bytearray(small_file.read_bytes())
    reader = ContainerReader(bytes(data))
    e = reader.entry("bf16 bias")
    data[reader.data_start + e["offset"] + (offset % e["length"])] ^= 0x41
    reader = ContainerReader(bytes(data))
    with pytest.raises(FormatError) as one:
        reader.decode_raw("bf16 bias")
    outs = [np.empty(reader.entry(n)["nbytes"], dtype=np.uint8) for n in reader.keys()]
    with pytest.raises(FormatError) as many:
        decode_many(reader, reader.keys(), outs)
    assert str(many.value) == str(one.value)


def test_load_file_gives_what_iter_tensors_gives_in_file_order(small_file):
    """`load_file` decodes side by side and the small float tensors together (`all_tensors`); its
    dict holds what the tensor-by-tensor `iter_tensors` yields, in the same order."""
    loaded = bslz.torch.load_file(small_file)
    with bslz.safe_open(small_file, "pt") as f:
        one_by_one = dict(f.iter_tensors())
    assert list(loaded) == list(one_by_one) == ContainerReader(small_file).keys()
    for name, tensor in one_by_one.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape
        assert torch.equal(loaded[name].reshape(-1).view(torch.uint8), tensor.reshape(-1).view(torch.uint8)), name
    with pytest.raises(InvalidArgumentError, match="numpy has no BF16"):  # as iter_tensors says it
        bslz.numpy.load_file(small_file)


def test_an_out_of_the_wrong_size_is_refused_as_decode_raw_refuses_it(small_file):
    reader = ContainerReader(small_file)
    outs = [np.empty(reader.entry(n)["nbytes"], dtype=np.uint8) for n in reader.keys()]
    outs[0] = outs[0][1:]
    with pytest.raises(InvalidArgumentError, match="out must be"):
        decode_many(reader, reader.keys(), outs)
