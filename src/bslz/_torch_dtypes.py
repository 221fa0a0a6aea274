"""safetensors dtype names and torch dtypes, both ways (imports torch: use only where torch is wanted)."""

import torch

from bslz.errors import InvalidArgumentError

_TORCH = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "U16": torch.uint16,
    "I16": torch.int16,
    "U32": torch.uint32,
    "I32": torch.int32,
    "U64": torch.uint64,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
_NAMES = {v: k for k, v in _TORCH.items()}


def torch_dtype(name):
    try:
        return _TORCH[name]
    except KeyError:
        raise InvalidArgumentError(f"no torch dtype for {name!r}") from None


def dtype_name(torch_dtype_):
    try:
        return _NAMES[torch_dtype_]
    except KeyError:
        raise InvalidArgumentError(f"torch dtype {torch_dtype_} has no safetensors name") from None
