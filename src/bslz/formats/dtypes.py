"""The safetensors dtypes and how bslz codes each one.

A dtype bslz does not know is passed through as raw bytes: nothing is lost, nothing is compressed.
"""

import dataclasses

import numpy as np

from bslz.codec._bits import bfloat16_bits
from bslz.codec._jit import njit
from bslz.codec._parallel import parallel_map, pieces_per_core
from bslz.codec.measure import magnitude_of_bits, max_abs
from bslz.errors import InvalidArgumentError


@dataclasses.dataclass(frozen=True)
class DType:
    name: str  # as safetensors spells it
    itemsize: int
    kind: str  # "float", "int", "uint", "bool"
    float_layout: str | None = None  # the layout in bslz.codec.floats for float kinds

    @property
    def word_dtype(self):
        """Unsigned integer dtype of the same size: how the raw bits are handled."""
        return np.dtype(f"u{self.itemsize}")

    @property
    def numpy_dtype(self):
        """The numpy dtype holding the values, None where numpy has none (bf16, fp8)."""
        return _NUMPY.get(self.name)


DTYPES = {
    d.name: d
    for d in (
        DType("BOOL", 1, "bool"),
        DType("U8", 1, "uint"),
        DType("I8", 1, "int"),
        DType("U16", 2, "uint"),
        DType("I16", 2, "int"),
        DType("U32", 4, "uint"),
        DType("I32", 4, "int"),
        DType("U64", 8, "uint"),
        DType("I64", 8, "int"),
        DType("F16", 2, "float", "float16"),
        DType("BF16", 2, "float", "bfloat16"),
        DType("F32", 4, "float", "float32"),
        DType("F64", 8, "float", "float64"),
        DType("F8_E4M3", 1, "float", "float8_e4m3"),
        DType("F8_E5M2", 1, "float", "float8_e5m2"),
    )
}

_NUMPY = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype(np.uint16),
    "I16": np.dtype(np.int16),
    "U32": np.dtype(np.uint32),
    "I32": np.dtype(np.int32),
    "U64": np.dtype(np.uint64),
    "I64": np.dtype(np.int64),
    "F16": np.dtype(np.float16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
}
_FROM_NUMPY = {v: k for k, v in _NUMPY.items()}


def lookup(name):
    """The DType of a safetensors dtype name, or None for one bslz passes through raw."""
    return DTYPES.get(name)


def from_numpy(dtype):
    """Safetensors name of a numpy dtype."""
    try:
        return _FROM_NUMPY[np.dtype(dtype)]
    except KeyError:
        from bslz.errors import InvalidArgumentError

        raise InvalidArgumentError(f"numpy dtype {np.dtype(dtype)} has no safetensors name") from None


def to_float32(raw_words, dtype):
    """Float values of raw bit patterns (uint words) of a float DType, as float32 (float64 for F64).

    F32 and F64 come back as views of `raw_words`, not copies: treat the result as read-only.
    """
    if dtype.name == "BF16":
        return _widened_bfloat16(raw_words)[0]
    if dtype.name in ("F8_E4M3", "F8_E5M2"):
        return _fp8_to_float32(raw_words, dtype.name)
    return raw_words.view(dtype.numpy_dtype).astype(np.float64 if dtype.name == "F64" else np.float32, copy=False)


def to_float32_and_top(raw_words, dtype):
    """(`to_float32(raw_words, dtype)`, max |value|), max |value| inf if a value is NaN or infinite.

    The largest magnitude is that of the largest bit pattern with the sign cleared (NaN's above
    infinity's): an integer max, found in the widening pass for bf16 and in one vector pass over
    the values otherwise, where numpy's max and min took two passes (and the quantizer's check two
    more: 4 % of a lossy compression, measured on MiniLM bf16)."""
    if dtype.name == "BF16":
        values, top_word = _widened_bfloat16(raw_words)
        return values, magnitude_of_bits(top_word << 16, np.uint32)
    values = to_float32(raw_words, dtype)
    return values, max_abs(values)


def _widened_bfloat16(raw_words):
    """(float32 values of bf16 words, the largest word with its sign cleared)."""
    out = np.empty(np.shape(raw_words), dtype=np.uint32)
    words, wide = np.ascontiguousarray(raw_words).reshape(-1), out.reshape(-1)
    # a large tensor a piece per core (MiniLM bf16's embedding: 9 ms on one core, measured)
    tops = parallel_map(lambda b: _widen_bfloat16(words[b[0] : b[1]], wide[b[0] : b[1]]), pieces_per_core(words.size))
    return out.view(np.float32), max(tops, default=0)


def from_float32(values, dtype, out=None):
    """Raw bit patterns of `values` rounded to a float DType (round to nearest even); written into
    `out` (contiguous words of the dtype, as many as values) when given, and returned."""
    shape = np.shape(values)
    if out is not None and (out.dtype != dtype.word_dtype or out.size != np.size(values) or not out.flags.c_contiguous):
        raise InvalidArgumentError(f"out must be {np.size(values)} contiguous {dtype.word_dtype} words")
    if dtype.name == "BF16":
        bits = np.ascontiguousarray(values, dtype=np.float32).reshape(-1).view(np.uint32)
        words = np.empty(bits.size, dtype=np.uint16) if out is None else out.reshape(-1)
        _round_to_bfloat16(bits, words)
        return words.reshape(shape)
    if dtype.name in ("F8_E4M3", "F8_E5M2"):
        import torch

        torch_dtype = torch.float8_e4m3fn if dtype.name == "F8_E4M3" else torch.float8_e5m2
        words = (
            torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(torch_dtype).view(torch.uint8).numpy()
        )
        if out is None:
            return words
        out.reshape(-1)[:] = words.reshape(-1)
        return out.reshape(shape)
    if out is None:
        return np.ascontiguousarray(values).astype(dtype.numpy_dtype, copy=False).view(dtype.word_dtype)
    out.view(dtype.numpy_dtype).reshape(shape)[...] = values  # numpy's cast, as astype's, in place
    return out.reshape(shape)


@njit
def _widen_bfloat16(words, out):
    """float32 bit patterns of bf16 ones, one pass (numpy took a cast and a shift); returns the
    largest word with its sign cleared (`to_float32_and_top`)."""
    top = np.uint16(0)
    for i in range(words.size):
        out[i] = np.uint32(words[i]) << np.uint32(16)
        top = max(top, np.uint16(words[i] & np.uint16(0x7FFF)))
    return int(top)


@njit
def _round_to_bfloat16(bits, out):
    """Upper halves of float32 bit patterns, rounded to nearest even (finite values)."""
    for i in range(bits.size):
        out[i] = bfloat16_bits(bits[i])


def _fp8_to_float32(raw_words, name):
    import torch

    torch_dtype = torch.float8_e4m3fn if name == "F8_E4M3" else torch.float8_e5m2
    raw_words = np.ascontiguousarray(raw_words, dtype=np.uint8)
    if not raw_words.flags.writeable:  # torch warns of read-only arrays (a file's mapping, a buffer)
        raw_words = raw_words.copy()
    return torch.from_numpy(raw_words).view(torch_dtype).float().numpy()
