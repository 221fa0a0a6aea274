"""`save_file` / `load_file` (files) and `save` / `load` (bytes) for numpy arrays, mirroring
`safetensors.numpy`, in the `.bslz` format.

numpy has no bf16 or fp8: use `bslz.torch` for those.
"""

import contextlib
import os
import tempfile

import numpy as np
import safetensors.numpy

from bslz.api import compress_bytes, compress_file
from bslz.errors import InvalidArgumentError
from bslz.reader import safe_open


def save_file(tensors, filename, metadata=None, *, bits=None, snr=None, step=None, exclude=(), overwrite=True):
    """Write `tensors` ({name: np.ndarray}) and `metadata` ({str: str}) to a `.bslz` file.

    Lossless by default; `bits`, `snr`, `step` and `exclude` are those of `bslz.compress_file`.
    Returns the `CompressReport`. Refuses an existing `filename` when `overwrite` is False.
    """
    _check_arrays(tensors)
    with staged_safetensors(filename, overwrite) as tmp:
        safetensors.numpy.save_file(tensors, tmp, metadata=metadata)
        return compress_file(tmp, filename, bits=bits, snr=snr, step=step, exclude=exclude, overwrite=overwrite)


def load_file(filename):
    """All tensors of a `.bslz` file as {name: np.ndarray} (each a fresh, writable array)."""
    return _load(filename)


def save(tensors, metadata=None, *, bits=None, snr=None, step=None, exclude=()):
    """The bytes of a `.bslz` container holding `tensors` ({name: np.ndarray}) and `metadata`
    ({str: str}); the options are those of `save_file`."""
    _check_arrays(tensors)
    image = safetensors.numpy.save(tensors, metadata=metadata)
    return compress_bytes(image, bits=bits, snr=snr, step=step, exclude=exclude)


def load(data):
    """All tensors of a `.bslz` container held in memory (any bytes-like object) as
    {name: np.ndarray}, each a fresh, writable array."""
    return _load(data)


def _check_arrays(tensors):
    if not isinstance(tensors, dict) or not all(isinstance(v, np.ndarray) for v in tensors.values()):
        raise InvalidArgumentError("tensors must be a dict of numpy arrays")


def _load(source):
    """Every tensor of a container, a path or its bytes (`safe_open` takes either)."""
    with safe_open(source, framework="np") as f:  # each tensor is decoded into memory of its own: no copy
        return f.all_tensors()


@contextlib.contextmanager
def staged_safetensors(filename, overwrite):
    """Yield the path of a temporary safetensors file beside `filename`; it is removed afterwards,
    whatever happens."""
    filename = os.fspath(filename)
    if not overwrite and os.path.exists(filename):
        raise InvalidArgumentError(f"{filename}: already exists (use overwrite=True to replace it)")
    directory = os.path.dirname(os.path.abspath(filename))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(filename)}.", suffix=".safetensors.tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
