"""Directories: a (sharded) safetensors checkpoint in, a directory of `.bslz` files out, and back.

Compressing a directory codes every top-level `*.safetensors` file to `*.bslz` (shards one by one),
keeps each `X.safetensors.index.json` byte for byte and writes beside it `X.bslz.index.json`, the same
JSON with the `weight_map` values renamed to the `.bslz` shards. Every other entry (config.json,
tokenizer files, subdirectories) is copied unchanged. Decompressing reverses this: each `*.bslz` file
becomes `*.safetensors` again and the rewritten indexes are dropped, so the original set of files comes
back (byte-identical shards when they were coded losslessly).

The output is built in a temporary directory beside the destination and renamed into place, so a
failure leaves no half-written output.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile

from bslz.cli.paths import BSLZ_INDEX_SUFFIX, BSLZ_SUFFIX, INDEX_SUFFIX, SAFETENSORS_SUFFIX, check_dir_paths
from bslz.errors import InvalidArgumentError


@dataclasses.dataclass
class DirPlan:
    """What to do with each top-level entry of the input directory."""

    coded: list  # (input name, output name): files to compress or decompress
    written: list  # (output name, text): files written by bslz (rewritten indexes)
    copied: list  # names copied unchanged


def _entries(src):
    return sorted(os.listdir(src))


def _is_file(src, name):
    path = os.path.join(src, name)
    return os.path.isfile(path) and not os.path.islink(path)


def plan_compress(src):
    names = _entries(src)
    present = set(names)
    tensors = [n for n in names if n.endswith(SAFETENSORS_SUFFIX) and _is_file(src, n)]
    if not tensors:
        raise InvalidArgumentError(f"{src}: no .safetensors files in this directory")
    coded = [(n, n[: -len(SAFETENSORS_SUFFIX)] + BSLZ_SUFFIX) for n in tensors]
    for n, out in coded:
        if out in present:
            raise InvalidArgumentError(f"{src}: holds both {n} and {out}; refusing to guess which is which")
    written = []
    for n in names:
        if n.endswith(INDEX_SUFFIX) and _is_file(src, n):
            out = n[: -len(INDEX_SUFFIX)] + BSLZ_INDEX_SUFFIX
            if out in present:
                raise InvalidArgumentError(f"{src}: already holds {out}, the name bslz gives the rewritten {n}")
            written.append((out, _rewrite_index(os.path.join(src, n), set(tensors))))
    coded_names = {n for n, _ in coded}
    return DirPlan(coded, written, [n for n in names if n not in coded_names])


def _rewrite_index(path, shards):
    """The index JSON with its weight_map values renamed from `.safetensors` shards to `.bslz` ones."""
    index = _load_index(path)
    weight_map = {}
    for tensor, shard in index["weight_map"].items():
        if shard not in shards:
            raise InvalidArgumentError(f"{path}: names shard {shard!r}, which is not a .safetensors file beside it")
        weight_map[tensor] = shard[: -len(SAFETENSORS_SUFFIX)] + BSLZ_SUFFIX
    index["weight_map"] = weight_map
    return json.dumps(index, indent=2, ensure_ascii=False) + "\n"


def _load_index(path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        index = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidArgumentError(f"{path}: not a valid index file: {exc}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise InvalidArgumentError(f"{path}: index has no weight_map of tensor name -> shard file")
    return index


def plan_decompress(src):
    names = _entries(src)
    present = set(names)
    coded = [
        (n, n[: -len(BSLZ_SUFFIX)] + SAFETENSORS_SUFFIX) for n in names if n.endswith(BSLZ_SUFFIX) and _is_file(src, n)
    ]
    if not coded:
        raise InvalidArgumentError(f"{src}: no .bslz files in this directory")
    for n, out in coded:
        if out in present:
            raise InvalidArgumentError(f"{src}: holds both {n} and {out}; refusing to guess which is which")
    written, ours = [], set()
    for n in names:
        if n.endswith(BSLZ_INDEX_SUFFIX) and _is_file(src, n):
            ours.add(n)
            original = n[: -len(BSLZ_INDEX_SUFFIX)] + INDEX_SUFFIX
            if original not in present:  # the kept original is gone: rebuild one from the rewritten index
                index = _load_index(os.path.join(src, n))
                index["weight_map"] = {k: _restored_shard(v) for k, v in index["weight_map"].items()}
                written.append((original, json.dumps(index, indent=2, ensure_ascii=False) + "\n"))
    coded_names = {n for n, _ in coded}
    return DirPlan(coded, written, [n for n in names if n not in coded_names and n not in ours])


def _restored_shard(name):
    return name[: -len(BSLZ_SUFFIX)] + SAFETENSORS_SUFFIX if name.endswith(BSLZ_SUFFIX) else name


def run_plan(src, dst, plan, code_file, *, overwrite=False):
    """Carry out `plan` from directory `src` into directory `dst`, atomically.

    `code_file(input path, output path, output name)` codes one file and returns its report.
    Returns the list of reports, in plan order.
    """
    check_dir_paths(src, dst, overwrite)
    parent = os.path.dirname(os.path.abspath(dst))
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(dst))}.", suffix=".tmp", dir=parent)
    try:
        shutil.copymode(src, tmp)  # mkdtemp makes it 0700: give the output the input's permissions
        reports = [code_file(os.path.join(src, n), os.path.join(tmp, out), out) for n, out in plan.coded]
        for name, text in plan.written:
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        for name in plan.copied:
            path = os.path.join(src, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.copytree(path, os.path.join(tmp, name), symlinks=True)
            else:
                shutil.copy2(path, os.path.join(tmp, name), follow_symlinks=False)
        _commit(tmp, dst, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return reports


def _commit(tmp, dst, overwrite):
    if not os.path.lexists(dst):
        os.rename(tmp, dst)
        return
    if not overwrite:  # appeared while we worked
        raise InvalidArgumentError(f"{dst}: already exists (use -f to replace it)")
    old = tmp + ".old"
    os.rename(dst, old)
    try:
        os.rename(tmp, dst)
    except BaseException:
        os.rename(old, dst)
        raise
    with contextlib.suppress(OSError):
        shutil.rmtree(old)
