"""Lazy reading of a `.bslz` container, file or bytes, like `safetensors.safe_open`, and decoded
raw bytes as numpy arrays or torch tensors."""

import numpy as np

from bslz.codec._parallel import map_tensors_in_order
from bslz.errors import FormatError, InvalidArgumentError
from bslz.formats.container import ContainerReader
from bslz.formats.dtypes import lookup


class SafeOpen:
    """Lazy access to the tensors of a `.bslz` file, like `safetensors.safe_open`: only the tensor
    asked for is decoded. Safe to share between threads."""

    def __init__(self, path, framework="np", **reader_options):
        if framework not in ("np", "numpy", "pt", "torch"):
            raise InvalidArgumentError(f"framework must be 'np' or 'pt', got {framework!r}")
        self.framework = "pt" if framework in ("pt", "torch") else "np"
        self.reader = ContainerReader(path, **reader_options)

    def keys(self):
        return self.reader.keys()

    def metadata(self):
        return self.reader.metadata

    def get_tensor(self, name):
        entry = self.reader.entry(name)
        raw = self.reader.decode_raw(name)  # memory of its own, from a file or a buffer
        return as_tensor(raw, entry["dtype"], entry["shape"], self.framework)

    def iter_tensors(self):
        """Yield (name, tensor) for every tensor in file order, small ones decoded side by side."""
        decoded = map_tensors_in_order(lambda e: self.get_tensor(e["name"]), self.reader.entries, lambda e: e["numel"])
        for entry, tensor in decoded:
            yield entry["name"], tensor

    def close(self):
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def safe_open(path, framework="np", **reader_options):
    """Open a `.bslz` file for lazy reading: `keys()`, `get_tensor(name)`, `metadata()`. `path` may
    also be a container's bytes (any bytes-like object), read in place."""
    return SafeOpen(path, framework, **reader_options)


def as_tensor(raw, dtype_name, shape, framework):
    """A numpy array or torch tensor of `shape` viewing decoded raw bytes."""
    dtype = lookup(dtype_name)
    if dtype is None:
        raise InvalidArgumentError(f"tensor dtype {dtype_name!r} is not one bslz can turn into an array")
    if framework == "pt":
        import torch

        from bslz._torch_dtypes import torch_dtype

        target = torch_dtype(dtype_name)
        try:
            if raw.size == 0:  # torch cannot view an empty byte array as a wider dtype
                return torch.empty(tuple(shape), dtype=target)
            # shaped and typed in numpy, where it can: each torch call lets go of the GIL and waits to
            # take it back behind the threads decoding the next tensors (`benchmarks/bench_gil_waits.py`,
            # MiniLM bf16 at --bits 7.978: with three torch calls a tensor, 11.5-13.7 ms of a 55-62 ms
            # `load_file` at b2804be; 6.3-6.4 of 47-49 now, 4.4-4.6 of them bf16's one view)
            words = np.ascontiguousarray(raw).view(dtype.numpy_dtype or dtype.word_dtype).reshape(tuple(shape))
            tensor = torch.from_numpy(words)
            return tensor if tensor.dtype == target else tensor.view(target)
        except (RuntimeError, ValueError, OverflowError, TypeError) as exc:  # a zero-size shape, a dimension past 2**63
            raise FormatError(f"tensor shape {list(shape)} is beyond what torch can hold: {exc}") from None
    if dtype.numpy_dtype is None:
        raise InvalidArgumentError(f"numpy has no {dtype_name}: open the file with framework='pt'")
    try:
        return raw.view(dtype.numpy_dtype).reshape(tuple(shape))
    except ValueError as exc:  # over 64 dimensions, or a zero-size shape numpy cannot represent
        raise FormatError(f"tensor shape {list(shape)} is beyond what numpy can hold: {exc}") from None
