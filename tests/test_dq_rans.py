import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bslz.codec import dq, dq_rans
from bslz.codec.rans import decode_rans, encode_rans
from bslz.errors import FormatError, TruncatedError
from bslz.formats.dtypes import from_float32, lookup

DTYPES = ["BF16", "F32", "F16", "F64"]


def general_path(chunk, count, step, block, dtype):
    """The words of decoding the chunk to symbols and then dequantizing them (`dq`'s decoder)."""
    symbols = decode_rans(chunk, count, np.empty(count, np.uint16))
    if dtype.name == "BF16":
        return dq.dequantize_dq_symbols_to_bfloat16(symbols, step, block)
    compute = np.float64 if dtype.name == "F64" else np.float32
    return from_float32(dq.dequantize_dq_symbols(symbols, step, block, compute), dtype)


def fused(chunk, count, step, block, dtype):
    out = np.full(count, 0x5A5A, dtype=dtype.word_dtype)
    compute = np.float64 if dtype.name == "F64" else np.float32
    taken = dq_rans.decode_chunk(chunk, step, block, compute, lambda v: from_float32(v, dtype), out)
    return out if taken else None


@pytest.mark.small
@given(
    name=st.sampled_from(DTYPES),
    count=st.integers(2, 3000),
    block=st.sampled_from([4, 8, 64, 100, 1024]),
    scale=st.sampled_from([0.7, 3.0, 40.0, 600.0]),
    step=st.sampled_from([1e-3, 0.0123, 1.0, 3.7e4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_chunk_decoded_into_words_is_the_symbols_decoded_then_dequantized(name, count, block, scale, step, seed):
    """Any alphabet (up to the rANS coder's 4096 symbols), block size that is a multiple of four,
    count (the tail one symbol at a time) and step: the fused path's words are the general path's,
    bit for bit (bf16 and f16 rounding included)."""
    dtype = lookup(name)
    rng = np.random.default_rng(seed)
    symbols = np.minimum(rng.exponential(scale, count), 4095).astype(np.uint16)
    symbols[0], symbols[1] = 0, max(1, symbols[1])  # never a stream of one symbol
    chunk = encode_rans(symbols)
    with np.errstate(over="ignore"):  # a level beyond float16
        expected = general_path(chunk, count, step, block, dtype)
        got = fused(chunk, count, step, block, dtype)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.small
def test_chunks_sharing_level_tables_decode_as_each_alone():
    """A tensor's chunks share one `LevelTables`: a chunk with larger symbols than the chunks before
    it grows the table, one with smaller ones uses it as it is; every chunk decodes to the words
    of the general path."""
    bf16 = lookup("BF16")
    tables = dq_rans.LevelTables(0.0123, np.float32, lambda v: from_float32(v, bf16))
    sizes = []
    for top in (40, 10, 300, 3000, 5):
        symbols = (np.arange(1000) % (top + 1)).astype(np.uint16)
        chunk = encode_rans(symbols)
        out = np.empty(symbols.size, np.uint16)
        assert dq_rans.decode_chunk(chunk, 0.0123, 64, np.float32, tables.to_words, out, tables)
        np.testing.assert_array_equal(out, general_path(chunk, symbols.size, 0.0123, 64, bf16))
        sizes.append(tables.table.size)
    assert sizes[0] < sizes[2] < sizes[3] and sizes[1] == sizes[0] and sizes[4] == sizes[3]


@pytest.mark.small
def test_chunks_left_to_the_general_path():
    """One symbol repeated (no payload), blocks not a multiple of four, an empty buffer: False,
    nothing written."""
    bf16 = lookup("BF16")
    assert fused(encode_rans(np.full(100, 7, np.uint16)), 100, 0.01, 64, bf16) is None
    assert fused(encode_rans(np.arange(100, dtype=np.uint16) % 9), 100, 0.01, 66, bf16) is None
    assert fused(b"", 100, 0.01, 64, bf16) is None


@pytest.mark.small
def test_a_damaged_chunk_raises_as_the_general_decoder_does():
    bf16 = lookup("BF16")
    symbols = (np.random.default_rng(2).exponential(5.0, 5000)).astype(np.uint16)
    chunk = bytearray(encode_rans(symbols))
    for bad, error in ((bytes(chunk[:-8]), TruncatedError), (bytes(chunk + bytes(4)), FormatError)):
        with pytest.raises(error) as general:
            general_path(bad, symbols.size, 0.01, 64, bf16)
        with pytest.raises(error) as ours:
            fused(bad, symbols.size, 0.01, 64, bf16)
        assert str(ours.value) == str(general.value)
    chunk[len(chunk) // 2] ^= 0x10  # a flipped bit: an error, or the general path's very words
    try:
        expected = general_path(bytes(chunk), symbols.size, 0.01, 64, bf16)
    except (FormatError, TruncatedError):
        with pytest.raises((FormatError, TruncatedError)):
            fused(bytes(chunk), symbols.size, 0.01, 64, bf16)
    else:
        np.testing.assert_array_equal(fused(bytes(chunk), symbols.size, 0.01, 64, bf16), expected)
