"""Small tensors decoded together: the lossless float tensors of one chunk (norms, biases) of a
float format, in one kernel call (`_float_chunks.decode_one_chunk_tensors`).

One by one, each took ~18 us of Python around its kernel call (MiniLM bf16's 65 norms and biases:
1.2 ms), and a thread running them held the GIL for most of that time: the thread decoding the
word embeddings beside it waited for the GIL after each run of chunks, and `decompress_bytes` took
1.8-2 ms more than without them.
"""

import numpy as np

from bslz.codec import _float_chunks as FC
from bslz.codec import expgolomb as eg
from bslz.codec.float_layouts import get_layout, kernel_args
from bslz.formats.dtypes import lookup


def decode_many(reader, names, outs):
    """[reader.decode_raw(name, out=out) for each name and out] (out: uint8, the tensor's nbytes),
    checked as decode_raw checks them: the lossless float tensors of one chunk decoded together, a
    kernel call per float format; the others, and any the kernel declines, one by one (the long
    way names what is wrong)."""
    groups = {}
    outs = list(outs)
    for name, out in zip(names, outs):
        e = reader.entry(name)
        layout = _one_chunk_layout(e)
        if layout is None or not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != (e["nbytes"],):
            reader.decode_raw(name, out=out)  # (which refuses an out of another kind)
        else:
            groups.setdefault(layout, []).append((e, out))
    for layout, members in groups.items():
        _decode_together(reader, get_layout(layout), members)
    return outs


def _one_chunk_layout(e):
    """The float layout name of a lossless float tensor of one chunk (and at least one value), else None."""
    dtype = lookup(e["dtype"])
    chunk_size = e.get("chunk_size")
    if e["coding"] != "float" or dtype is None or dtype.kind != "float":
        return None
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or not 1 <= chunk_size <= 1 << 30:
        return None  # decode_raw refuses it
    if not 1 <= e["numel"] <= chunk_size or e["nbytes"] != e["numel"] * dtype.itemsize:
        return None
    return dtype.float_layout


def _decode_together(reader, layout, members):
    payloads = [reader.payload(e) for e, _ in members]
    bounds = np.zeros(len(members) + 1, dtype=np.int64)
    np.cumsum([p.size for p in payloads], out=bounds[1:])
    word_bounds = np.zeros(len(members) + 1, dtype=np.int64)
    np.cumsum([e["numel"] for e, _ in members], out=word_bounds[1:])
    words = np.empty(int(word_bounds[-1]), dtype=layout.word_dtype)
    heads = words if words.dtype == np.uint16 else np.empty(0, dtype=np.uint16)  # see FC.decode_chunk
    widths, shifts, sign_pos, low_bits = kernel_args(layout)
    decoded = np.zeros(len(members), dtype=np.bool_)
    joined = np.concatenate(payloads)
    FC.decode_one_chunk_tensors(
        joined, bounds, words, heads, word_bounds, sign_pos, low_bits, widths, shifts, eg.decode_tables(),
        eg.MAX_ORDER, decoded,
    )  # fmt: skip
    raw = words.view(np.uint8)
    itemsize = words.itemsize
    for t, ((e, out), payload) in enumerate(zip(members, payloads)):
        if not decoded[t]:
            reader.decode_raw(e["name"], out=out)
            continue
        tensor = raw[itemsize * word_bounds[t] : itemsize * word_bounds[t + 1]]
        reader.check_decoded(e["name"], tensor, payload=payload)  # (and the payload's, if it fails: as decode_raw)
        out[:] = tensor
