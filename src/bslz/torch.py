"""`save_file` / `load_file` (files), `save` / `load` (bytes) and `save_model` / `load_model`
(modules with tied weights) for torch tensors, mirroring `safetensors.torch`, in the `.bslz` format.

bf16 and fp8 (float8_e4m3fn, float8_e5m2) tensors round-trip bit-exactly in lossless mode.
"""

import safetensors.torch
import torch  # the real torch: absolute imports do not resolve to this module

from bslz.api import compress_bytes, compress_file
from bslz.errors import InvalidArgumentError
from bslz.numpy import staged_safetensors
from bslz.reader import safe_open


def save_file(tensors, filename, metadata=None, *, bits=None, snr=None, step=None, exclude=(), overwrite=True):
    """Write `tensors` ({name: torch.Tensor}, contiguous, not sharing storage, as safetensors asks)
    and `metadata` ({str: str}) to a `.bslz` file.

    Lossless by default; `bits`, `snr`, `step` and `exclude` are those of `bslz.compress_file`.
    Returns the `CompressReport`. Refuses an existing `filename` when `overwrite` is False.
    """
    _check_tensors(tensors)
    with staged_safetensors(filename, overwrite) as tmp:
        safetensors.torch.save_file(tensors, tmp, metadata=metadata)
        return compress_file(tmp, filename, bits=bits, snr=snr, step=step, exclude=exclude, overwrite=overwrite)


def load_file(filename, device="cpu"):
    """All tensors of a `.bslz` file as {name: torch.Tensor} on `device`."""
    return _load(filename, device)


def save_model(
    model,
    filename,
    metadata=None,
    force_contiguous=False,
    *,
    bits=None,
    snr=None,
    step=None,
    exclude=(),
    overwrite=True,
):
    """`save_file` of a module's state dict, as `safetensors.torch.save_model` writes it: of
    tensors that share memory (tied weights) one name is kept. Returns the `CompressReport`."""
    with staged_safetensors(filename, overwrite) as tmp:
        safetensors.torch.save_model(model, tmp, metadata=metadata, force_contiguous=force_contiguous)
        return compress_file(tmp, filename, bits=bits, snr=snr, step=step, exclude=exclude, overwrite=overwrite)


def load_model(model, filename, strict=True, device="cpu"):
    """Load a `.bslz` file into a module, as `safetensors.torch.load_model`: a name `save_model`
    left out because its tensor shares memory with a name loaded (tied weights) is not missing.
    Returns (missing, unexpected) names; with `strict`, raises RuntimeError if either is not empty."""
    state = _load(filename, device)
    missing, unexpected = model.load_state_dict(state, strict=False)
    own = model.state_dict()
    loaded = {_storage(own[name]) for name in state if name in own} - {0}
    missing = [name for name in missing if _storage(own[name]) not in loaded]
    if strict and (missing or unexpected):
        raise RuntimeError(
            f"Error(s) in loading state_dict for {type(model).__name__}: missing keys {missing},"
            f" unexpected keys {unexpected}"
        )
    return missing, unexpected


def _storage(tensor):
    """Where a tensor's memory lies (0 for none: meta or empty tensors share nothing)."""
    return tensor.untyped_storage().data_ptr() if tensor.device.type != "meta" else 0


def save(tensors, metadata=None, *, bits=None, snr=None, step=None, exclude=()):
    """The bytes of a `.bslz` container holding `tensors` ({name: torch.Tensor}, as `save_file`
    takes them) and `metadata` ({str: str}); the options are those of `save_file`."""
    _check_tensors(tensors)
    image = safetensors.torch.save(tensors, metadata=metadata)
    return compress_bytes(image, bits=bits, snr=snr, step=step, exclude=exclude)


def load(data, device="cpu"):
    """All tensors of a `.bslz` container held in memory (any bytes-like object) as
    {name: torch.Tensor} on `device`."""
    return _load(data, device)


def _check_tensors(tensors):
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise InvalidArgumentError("tensors must be a dict of torch tensors")


def _load(source, device):
    """Every tensor of a container, a path or its bytes (`safe_open` takes either), on `device`."""
    with safe_open(source, framework="pt", device=device) as f:  # each tensor decoded into memory of its own
        return f.all_tensors()
