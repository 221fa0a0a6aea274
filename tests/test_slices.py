"""Reading part of a tensor: `safe_open(...).get_slice(name)[index]` as safetensors' slices, which
decodes only the rows asked for (of a lossless float tensor, only the chunks holding them), on top of
`ContainerReader.decode_range` and `decode_floats(..., chunks=...)`."""

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import safetensors.torch
import torch
from hypothesis import given
from hypothesis import strategies as st

import bslz
from bslz import InvalidArgumentError
from bslz.codec import float_decode
from bslz.codec.floats import decode_floats, encode_floats
from bslz.formats import reconstruction, tensor_codec
from bslz.formats.container import ContainerReader

LAYOUTS = {"bfloat16": np.uint16, "float16": np.uint16, "float32": np.uint32}


def float_words(rng, n, word_dtype):
    """Bit patterns of Gaussian weights in the word size (their low bytes vary, the high ones repeat)."""
    if word_dtype == np.uint32:
        return (rng.standard_normal(n).astype(np.float32) * 0.02).view(np.uint32)
    return (rng.standard_normal(n).astype(np.float16) * np.float16(0.02)).view(np.uint16)


@pytest.mark.small
@given(
    layout=st.sampled_from(sorted(LAYOUTS)),
    count=st.integers(0, 3000),
    chunk_size=st.integers(1, 700),
    data=st.data(),
)
def test_a_range_of_chunks_decodes_to_those_values_of_the_whole(layout, count, chunk_size, data):
    words = float_words(np.random.default_rng(count), count, LAYOUTS[layout])
    encoded = encode_floats(words, layout, chunk_size=chunk_size)
    nchunks = -(-count // chunk_size)
    first = data.draw(st.integers(0, nchunks))
    end = data.draw(st.integers(first, nchunks))
    part = decode_floats(encoded, chunks=(first, end))
    assert np.array_equal(part, words[first * chunk_size : end * chunk_size])


@pytest.mark.small
@pytest.mark.parametrize("chunks", [(-1, 1), (2, 1), (0, 5)])
def test_a_range_beyond_the_chunks_is_refused(chunks):
    encoded = encode_floats(float_words(np.random.default_rng(0), 1000, np.uint16), "bfloat16", chunk_size=250)
    with pytest.raises(InvalidArgumentError, match="not a range"):
        decode_floats(encoded, chunks=chunks)


def sliced_tensors():
    rng = np.random.default_rng(7)
    return {
        # several chunks (float32: 131072 values a chunk), rows across their edges
        "matrix": (rng.standard_normal((700, 500)) * 0.02).astype(np.float32),
        "half": (rng.standard_normal((600, 480)) * 0.02).astype(np.float16),
        "vector": (rng.standard_normal(300_000) * 0.02).astype(np.float32),
        "cube": (rng.standard_normal((40, 90, 80)) * 0.02).astype(np.float32),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 7), dtype=np.float32),
        "ints": rng.integers(-50, 50, size=(300, 20)).astype(np.int32),
        "small": rng.standard_normal(384).astype(np.float32),
    }


def lossless_and_lossy_files(d, tensors):
    """(safetensors file, .bslz lossless, .bslz lossy (--step: quantized tensors)) of `tensors` in d."""
    src = d / "t.safetensors"
    safetensors.numpy.save_file(tensors, src)
    lossless, lossy = d / "t.bslz", d / "q.bslz"
    bslz.compress_file(src, lossless)
    bslz.compress_file(src, lossy, step=0.004)
    return src, lossless, lossy


@pytest.fixture(scope="module")
def sliced_files(tmp_path_factory):
    return lossless_and_lossy_files(tmp_path_factory.mktemp("slices"), sliced_tensors())


def test_the_files_hold_the_codings_the_tests_mean(sliced_files):
    _, lossless, lossy = sliced_files
    codings = {e["name"]: e["coding"] for e in ContainerReader(lossless).entries}
    assert codings["matrix"] == codings["half"] == codings["vector"] == "float"
    assert codings["ints"] == "int"
    assert {e["name"]: e["coding"] for e in ContainerReader(lossy).entries}["matrix"] == "quantized"


@given(data=st.data())
def test_decode_range_is_that_range_of_the_whole_tensor(sliced_files, data):
    _, lossless, lossy = sliced_files
    reader = ContainerReader(data.draw(st.sampled_from([lossless, lossy])))
    e = reader.entry(data.draw(st.sampled_from(reader.keys())))
    start = data.draw(st.integers(0, e["numel"]))
    stop = data.draw(st.integers(start, e["numel"]))
    item = e["nbytes"] // max(1, e["numel"])
    whole = reader.decode_raw(e["name"])
    assert np.array_equal(reader.decode_range(e["name"], start, stop), whole[start * item : stop * item])


def test_decode_range_refuses_a_range_outside_the_tensor(sliced_files):
    reader = ContainerReader(sliced_files[1])
    for start, stop in [(-1, 3), (5, 4), (0, 384 + 1)]:
        with pytest.raises(InvalidArgumentError, match="not a range"):
            reader.decode_range("small", start, stop)


def indices(shape):
    """Indices as safetensors' slices take them: per dimension an integer or a slice of positive
    step (bounds past the dimension included), some dimensions left out, or `...` first."""
    part = lambda n: st.one_of(  # noqa: E731
        st.integers(-n, n - 1) if n else st.nothing(),
        st.builds(
            slice,
            st.none() | st.integers(-n - 3, n + 3),
            st.none() | st.integers(-n - 3, n + 3),
            st.none() | st.integers(1, 5),
        ),
    )
    parts = st.tuples(*(part(n) for n in shape))
    return st.one_of(
        parts.flatmap(lambda p: st.integers(0, len(p)).map(lambda k: p[:k])),
        parts.map(lambda p: (Ellipsis, *p[1:])),
    )


@given(data=st.data())
def test_a_slice_is_what_numpy_gives_for_the_index(sliced_files, data):
    src, lossless, lossy = sliced_files
    name = data.draw(st.sampled_from(sorted(sliced_tensors())))
    path = data.draw(st.sampled_from([lossless, lossy]))
    with bslz.safe_open(path) as f:
        whole = f.get_tensor(name)
        index = data.draw(indices(whole.shape))
        part = f.get_slice(name)[index]
    expected = np.asarray(whole[index])
    assert isinstance(part, np.ndarray) and part.shape == expected.shape and part.dtype == expected.dtype
    assert np.array_equal(part, expected)
    assert part.base is None or part.nbytes == part.base.nbytes  # memory of its own, not a view of more rows


def test_slices_are_those_of_safetensors(sliced_files):
    src, lossless, _ = sliced_files
    cases = [(1,), (slice(1, 3),), (slice(None), slice(None, None, 2)), (Ellipsis, 1), (-1,), 1, (), (slice(25, 38),)]
    with safetensors.safe_open(src, "np") as theirs, bslz.safe_open(lossless) as ours:
        for name in ("matrix", "half", "cube", "ints"):
            a, b = theirs.get_slice(name), ours.get_slice(name)
            assert (a.get_shape(), a.get_dtype()) == (b.get_shape(), b.get_dtype())
            across = [(slice(250, 270), slice(3, None, 4))] if a.get_shape()[0] >= 270 else []  # chunks' edges
            for index in cases + across:
                assert np.array_equal(a[index], b[index]), (name, index)


def test_bfloat16_rows_through_torch_are_those_of_safetensors(tmp_path):
    weights = (torch.randn(2000, 384) * 0.02).to(torch.bfloat16)  # 3 chunks of 262144
    src, packed = tmp_path / "e.safetensors", tmp_path / "e.bslz"
    safetensors.torch.save_file({"embedding": weights}, src)
    bslz.compress_file(src, packed)
    with safetensors.safe_open(src, "pt") as theirs, bslz.safe_open(packed, framework="pt") as ours:
        assert ours.get_slice("embedding").get_dtype() == "BF16"
        for shard in range(8):  # a tensor-parallel loader's rows
            rows = slice(shard * 250, (shard + 1) * 250)
            part = ours.get_slice("embedding")[rows]
            assert part.dtype == torch.bfloat16 and torch.equal(part, theirs.get_slice("embedding")[rows])
        assert torch.equal(ours.get_slice("embedding")[5, ::3], weights[5, ::3])
    with bslz.safe_open(packed) as f, pytest.raises(InvalidArgumentError, match="framework='pt'"):
        f.get_slice("embedding")[:10]


def test_rows_of_a_float_tensor_decode_only_the_chunks_that_hold_them(sliced_files, monkeypatch):
    decoded = []
    real = float_decode.FC.decode_chunks

    def spy(body, offsets, words, heads, c_lo, c_hi, *rest):
        decoded.append(c_hi - c_lo)
        return real(body, offsets, words, heads, c_lo, c_hi, *rest)

    monkeypatch.setattr(float_decode.FC, "decode_chunks", spy)
    with bslz.safe_open(sliced_files[1]) as f:
        f.get_slice("matrix")[300:310]  # values 150000..155000: the second of three chunks
        assert sum(decoded) == 1
        decoded.clear()
        f.get_slice("matrix")[250:270]  # 125000..135000: across the first chunk's end
        assert sum(decoded) == 2
        decoded.clear()
        f.get_tensor("matrix")
        assert sum(decoded) == 3


@pytest.mark.parametrize(
    "index, error, message",
    [
        ((slice(None, None, -1),), InvalidArgumentError, "positive"),
        ((slice(None, None, 0),), InvalidArgumentError, "positive"),
        ((None,), InvalidArgumentError, "unsupported index"),
        ((np.array([1, 2]),), InvalidArgumentError, "unsupported index"),
        ((True,), InvalidArgumentError, "unsupported index"),
        ((700,), IndexError, "out of bounds"),
        ((-701,), IndexError, "out of bounds"),
        ((1, 2, 3), IndexError, "too many indices"),
        ((Ellipsis, Ellipsis), IndexError, "single ellipsis"),
    ],
)
def test_an_index_slices_do_not_take_is_refused(sliced_files, index, error, message):
    with bslz.safe_open(sliced_files[1]) as f, pytest.raises(error, match=message):
        f.get_slice("matrix")[index]


def test_rows_of_a_quantized_tensor_decode_only_the_chunks_that_hold_them(sliced_files, monkeypatch):
    decoded = []
    real = reconstruction.streams.map_rans_chunks

    def spy(stream, fn, chunks=None):
        def counted(lo, hi, chunk):
            decoded.append(lo // stream.plan.chunk_size)
            fn(lo, hi, chunk)

        return real(stream, counted, chunks)

    monkeypatch.setattr(reconstruction.streams, "map_rans_chunks", spy)
    with bslz.safe_open(sliced_files[2]) as f:
        whole = f.get_tensor("matrix")
        assert sorted(decoded) == [0, 1]  # 350000 values in chunks of 262144
        decoded.clear()
        rows = f.get_slice("matrix")[600:610]  # values 300000..305000
        assert decoded == [1] and np.array_equal(rows, whole[600:610])


def test_a_quantized_stream_not_decoded_by_chunk_is_decoded_whole(sliced_files, monkeypatch):
    with bslz.safe_open(sliced_files[2]) as f:
        whole = f.get_tensor("matrix")
        monkeypatch.setattr(tensor_codec, "reconstructs_by_chunk", lambda plan, fields: False)
        assert np.array_equal(f.get_slice("matrix")[300:310], whole[300:310])
