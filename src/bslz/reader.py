"""Lazy reading of a `.bslz` container, file or bytes, like `safetensors.safe_open`, and decoded
raw bytes as numpy arrays or torch tensors."""

import operator

import numpy as np

from bslz.codec._parallel import map_tensors_in_order, map_tensors_side_by_side
from bslz.errors import FormatError, InvalidArgumentError
from bslz.formats.container import ContainerReader
from bslz.formats.dtypes import lookup
from bslz.formats.small_tensors import decode_many


class SafeOpen:
    """Lazy access to the tensors of a `.bslz` file, like `safetensors.safe_open`: only the tensor
    asked for is decoded. Safe to share between threads."""

    def __init__(self, path, framework="np", device="cpu", **reader_options):
        if framework not in ("np", "numpy", "pt", "torch"):
            raise InvalidArgumentError(f"framework must be 'np' or 'pt', got {framework!r}")
        self.framework = "pt" if framework in ("pt", "torch") else "np"
        self._device = _moved_to(device, self.framework)
        self.reader = ContainerReader(path, **reader_options)

    def keys(self):
        return self.reader.keys()

    def metadata(self):
        return self.reader.metadata

    def get_tensor(self, name):
        return self._tensor(self.reader.entry(name), self.reader.decode_raw(name))  # memory of its own

    def _tensor(self, entry, raw):
        """The tensor of `entry` from its decoded bytes, on the device asked for."""
        return self._placed(as_tensor(raw, entry["dtype"], entry["shape"], self.framework))

    def _placed(self, tensor):
        """The tensor on the device asked for (decoding is on the CPU). On the CPU it is returned
        as it is: `.to` would give the tensor itself, after a wait for the GIL behind the threads
        decoding the next tensors (1.1-2.4 ms a load of MiniLM bf16's 104 tensors,
        `benchmarks/bench_gil_waits.py`)."""
        return tensor if self._device is None else tensor.to(self._device)

    def get_slice(self, name):
        """A `TensorSlice` of the tensor, as safetensors' `get_slice`: its shape and dtype without
        decoding it, and, indexed, only the rows asked for."""
        return TensorSlice(self, name)

    def iter_tensors(self):
        """Yield (name, tensor) for every tensor in file order, small ones decoded side by side."""
        decoded = map_tensors_in_order(lambda e: self.get_tensor(e["name"]), self.reader.entries, lambda e: e["numel"])
        for entry, tensor in decoded:
            yield entry["name"], tensor

    def all_tensors(self):
        """{name: tensor} of every tensor, in file order, decoded in whatever order keeps every core
        busy (`map_tensors_side_by_side`), the small float ones together (`decode_many`): what
        `load_file` returns."""
        entries = self.reader.entries

        def together(some):
            raws = decode_many(self.reader, [e["name"] for e in some], [np.empty(e["nbytes"], np.uint8) for e in some])
            return [self._tensor(e, raw) for e, raw in zip(some, raws)]

        numel = lambda e: e["numel"]  # noqa: E731
        tensors = map_tensors_side_by_side(lambda e: self.get_tensor(e["name"]), entries, numel, together)
        return {e["name"]: tensor for e, tensor in zip(entries, tensors)}

    def close(self):
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TensorSlice:
    """One tensor of a `SafeOpen`, as safetensors' slices: `get_shape()`, `get_dtype()`, and
    `[index]` with what they take (integers, slices of positive step, `...`). Indexing decodes the
    rows (first dimension) that the index selects: of a lossless float or a quantized tensor only
    the chunks that hold them (`ContainerReader.decode_range`, which reads and checks the pieces of
    the payload that hold them where it has piece checksums, else all of it), of an integer one the
    whole tensor. A tensor-parallel loader's rows of an embedding
    cost about their share of its decoding."""

    def __init__(self, opened, name):
        self._opened = opened
        self._entry = opened.reader.entry(name)

    def get_shape(self):
        return list(self._entry["shape"])

    def get_dtype(self):
        return self._entry["dtype"]

    def __getitem__(self, index):
        e = self._entry
        shape = tuple(e["shape"])
        parts = _checked_index(index if isinstance(index, tuple) else (index,), len(shape))
        first, end, local = _rows_selected(parts, shape)
        row = int(np.prod(shape[1:], dtype=object)) if shape else 1
        raw = self._opened.reader.decode_range(e["name"], first * row, end * row)
        block = as_tensor(raw, e["dtype"], (end - first, *shape[1:]) if shape else (), self._opened.framework)
        part = block[local]
        if self._opened.framework == "np":
            part = np.asarray(part)  # an array where numpy gives a scalar (an integer for every dimension)
        if part.shape != block.shape:  # not a view of the rows decoded, which may be more
            part = part.clone() if self._opened.framework == "pt" else part.copy()
        return self._opened._placed(part)


def _checked_index(parts, ndim):
    """The index's parts, each an integer, a slice of positive step or `...` (one at most), as
    safetensors' slices take them, no more than the tensor's `ndim` dimensions."""
    if sum(part is not Ellipsis for part in parts) > ndim:
        raise IndexError(f"too many indices ({len(parts)}) for a tensor of {ndim} dimensions")
    checked = []
    for j, part in enumerate(parts):
        if part is Ellipsis:
            if Ellipsis in checked:
                raise IndexError("an index can only have a single ellipsis ('...')")
        elif isinstance(part, slice):
            if part.step is not None and operator.index(part.step) <= 0:
                raise InvalidArgumentError(f"slice step must be a positive integer, got {part.step}")
        elif isinstance(part, bool) or not isinstance(part, (int, np.integer)):
            raise InvalidArgumentError(
                f"unsupported index {part!r} at position {j}: expected an integer, a slice or '...'"
            )
        checked.append(part)
    return tuple(checked)


def _rows_selected(parts, shape):
    """(first, end, local): the rows first..end - 1 that the index selects along the first
    dimension, and the index into the block of those rows. An index that starts with `...` (or a
    0-dimensional tensor) selects every row."""
    if not shape or not parts or parts[0] is Ellipsis:
        return 0, (shape[0] if shape else 1), parts
    rows, head = shape[0], parts[0]
    if isinstance(head, slice):
        selected = range(*head.indices(rows))
        if not selected:
            return 0, 0, (slice(0, 0), *parts[1:])
        first, end = selected[0], selected[-1] + 1
        return first, end, (slice(0, end - first, selected.step), *parts[1:])
    i = operator.index(head)
    if not -rows <= i < rows:
        raise IndexError(f"index {i} is out of bounds for dimension 0 of size {rows}")
    i %= rows
    return i, i + 1, (0, *parts[1:])


def _moved_to(device, framework):
    """The torch device tensors are moved to, or None where they stay on the CPU (numpy's only)."""
    if framework == "np":
        if device != "cpu":
            raise InvalidArgumentError(f"numpy arrays are on the CPU: device must be 'cpu', got {device!r}")
        return None
    import torch

    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgumentError(f"device {device!r} is not a torch device: {str(exc).splitlines()[0]}") from None
    return None if target.type == "cpu" else target


def safe_open(path, framework="np", device="cpu", **reader_options):
    """Open a `.bslz` file for lazy reading: `keys()`, `get_tensor(name)`, `get_slice(name)`,
    `metadata()`, tensors on `device` (torch's: "cuda:0", 0, ...; numpy's: "cpu") as
    `safetensors.safe_open` gives them. `path` may also be a container's bytes (any bytes-like
    object), read in place."""
    return SafeOpen(path, framework, device, **reader_options)


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
