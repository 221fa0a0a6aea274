"""The library API's decompression: a `.bslz` container back to its safetensors file, into a file,
a stream or memory (compression: `bslz.api`)."""

import os
from functools import partial

import numpy as np

from bslz.codec._parallel import map_tensors_in_order, map_tensors_side_by_side
from bslz.errors import FormatError, InvalidArgumentError
from bslz.formats.atomic import atomic_output, check_paths
from bslz.formats.background import Background
from bslz.formats.buffers import IN_MEMORY
from bslz.formats.container import ContainerReader
from bslz.formats.safetensors_io import build_header, layout_tensors, parse_header
from bslz.formats.small_tensors import decode_many


def decompress_file(src, dst, *, overwrite=False, progress=None):
    """Restore a safetensors file from a `.bslz` file (byte-identical when it was compressed losslessly)."""
    check_paths(src, dst, overwrite)
    reader = ContainerReader(src)
    try:
        with atomic_output(dst) as f:
            _decompress(reader, f, progress)
    finally:
        reader.close()


def decompress_stream(src, out, *, progress=None, name=IN_MEMORY):
    """Restore the safetensors file held by `src` (a `.bslz` file's path, or a container's bytes,
    called `name` in error messages) into the binary file object `out`, in order: a pipe will do,
    and peak memory stays near the largest tensor (of a path; bytes are held whole by the caller).
    Returns the bytes written."""
    reader = ContainerReader(src, name=name)
    try:
        written = _decompress(reader, out, progress)
        out.flush()
        return written
    finally:
        reader.close()


def decompress_bytes(data):
    """`decompress_file` in memory: the bytes of the safetensors file restored from the bytes of a
    `.bslz` container (any bytes-like object; its payloads are decoded in place, not copied), as a
    writable memoryview (bytes-like: write it, hash it, compare it, or `bytes()` it). Each tensor is
    decoded straight into its place, in memory numpy allocates: on Linux it asks for huge pages,
    where a bytearray's first touch cost 7x as much (45 MB: 31.7 ms against 4.1, best of 5)."""
    if isinstance(data, (str, os.PathLike)):
        raise InvalidArgumentError("decompress_bytes takes the container's bytes: for a file, use decompress_file")
    return memoryview(_decompress_into(ContainerReader(data), np.empty))


def _decompress_into(reader, allocate):
    """The safetensors file that `reader` holds, decoded into `allocate(nbytes, dtype=np.uint8)`
    (`np.empty`; benchmarks/bench_gil_waits.py passes memory written before, to time what fresh
    memory costs). The tensors are decoded side by side, in any order (`map_tensors_side_by_side`);
    a stored safetensors header is checked beside them (0.3 ms of MiniLM bf16's 19, the pool idle)."""
    header, check = _safetensors_header(reader)
    start = 8 + len(header)
    view = allocate(start + sum(e["nbytes"] for e in reader.entries), dtype=np.uint8)
    view[:start] = np.frombuffer(len(header).to_bytes(8, "little") + header, dtype=np.uint8)
    places = {}
    for e in reader.entries:
        places[e["name"]] = view[start : start + e["nbytes"]]
        start += e["nbytes"]
    map_tensors_side_by_side(
        lambda e: reader.decode_raw(e["name"], out=places[e["name"]]),
        reader.entries,
        lambda e: e["numel"],
        lambda entries: decode_many(reader, [e["name"] for e in entries], [places[e["name"]] for e in entries]),
        beside=check,
    )
    return view


def _safetensors_header(reader):
    """(the safetensors header to restore, its check): the stored one and a call that checks it
    against the entries (raising FormatError), or, when the file is lossy, one made for the
    entries, in their order, and None."""
    header = reader.source_header
    if header is None:
        infos = layout_tensors([(e["name"], e["dtype"], e["shape"], e["nbytes"]) for e in reader.entries])
        return build_header(infos, reader.metadata), None
    return header, partial(_check_source_header, reader, header, sum(e["nbytes"] for e in reader.entries))


def _decompress(reader, f, progress):
    """Write the safetensors file that `reader` holds to the binary file `f`; returns its size."""
    total = sum(e["nbytes"] for e in reader.entries)
    header, check = _safetensors_header(reader)
    if check is not None:
        check()
    done = 0
    with Background() as background:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        decoded = map_tensors_in_order(
            lambda e: reader.decode_raw(e["name"], check_decoded=False), reader.entries, lambda e: e["numel"]
        )
        for e, raw in decoded:
            # the checksum and the write overlap the next tensor's decoding; a failed checksum
            # raises from the next submit or wait, and the partial output is removed
            background.submit(_check_and_write, reader, e["name"], raw, f, nbytes=raw.nbytes)
            del raw  # the writing thread's alone now (see _write_tensors)
            done += e["nbytes"]
            if progress is not None:
                progress(done, total, e["name"])
    return 8 + len(header) + total


def _check_and_write(reader, name, raw, f):
    if not reader.checks_while_decoding(name):  # else decode_raw checked them already
        reader.check_decoded(name, raw)
    f.write(memoryview(raw))


def _check_source_header(reader, header, total):
    """The stored safetensors header must describe exactly the tensors the entries hold, in their
    order: otherwise decompression would write a file that is not the one compressed."""
    tensors, metadata = parse_header(f"{reader.path} (stored safetensors header)", header, total)
    described = [(t.name, t.dtype, list(t.shape), t.nbytes) for t in sorted(tensors, key=lambda t: t.begin)]
    held = [(e["name"], e["dtype"], e["shape"], e["nbytes"]) for e in reader.entries]
    if described != held or metadata != reader.metadata:
        raise FormatError(f"{reader.path}: the stored safetensors header does not match the tensor entries")
