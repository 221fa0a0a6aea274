"""Output naming and path checks for the CLI: zstd's habits (derive the output name, never write onto the
input, refuse to replace an existing output without -f)."""

import os

from bslz.errors import InvalidArgumentError

SAFETENSORS_SUFFIX = ".safetensors"
BSLZ_SUFFIX = ".bslz"
INDEX_SUFFIX = ".safetensors.index.json"
BSLZ_INDEX_SUFFIX = ".bslz.index.json"


def _clean(path):
    path = os.path.normpath(os.fspath(path))
    return os.path.abspath(path) if os.path.basename(path) in ("", ".", "..") else path


def ensure_exists(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or directory")


def compressed_name(path):
    """`model.safetensors` -> `model.bslz`; any other name (a directory `ckpt` too) gets `.bslz` appended."""
    path = _clean(path)
    if path.endswith(SAFETENSORS_SUFFIX) and len(os.path.basename(path)) > len(SAFETENSORS_SUFFIX):
        return path[: -len(SAFETENSORS_SUFFIX)] + BSLZ_SUFFIX
    return path + BSLZ_SUFFIX


def decompressed_name(path, is_dir=False):
    """`model.bslz` -> `model.safetensors`, a directory `ckpt.bslz` -> `ckpt`; None without a `.bslz` suffix."""
    path = _clean(path)
    if not path.endswith(BSLZ_SUFFIX) or len(os.path.basename(path)) <= len(BSLZ_SUFFIX):
        return None
    stem = path[: -len(BSLZ_SUFFIX)]
    if is_dir or stem.endswith(SAFETENSORS_SUFFIX):
        return stem
    return stem + SAFETENSORS_SUFFIX


def check_dir_paths(src, dst, overwrite):
    """Refuse an output directory that is, holds or sits inside the input, or that exists without `overwrite`."""
    if not os.path.isdir(src):
        raise FileNotFoundError(f"{src}: no such directory")
    a, b = os.path.realpath(src), os.path.realpath(dst)
    if a == b:
        raise InvalidArgumentError(f"{dst}: the output would overwrite the input")
    if b.startswith(a + os.sep) or a.startswith(b + os.sep):
        raise InvalidArgumentError(f"{dst}: the output directory must not be inside the input directory or hold it")
    if os.path.lexists(dst):
        if not overwrite:
            raise InvalidArgumentError(f"{dst}: already exists (use -f to replace it)")
        if os.path.islink(dst) or not os.path.isdir(dst):
            raise InvalidArgumentError(f"{dst}: exists and is not a directory; refusing to replace it with one")
