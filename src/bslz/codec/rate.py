"""The rate function: exactly how many bits a tensor costs under given coding parameters.

One definition serves the encoder, the size report (`bslz info`) and the training hook, so that
what training predicts is what the file costs. The size is that of the chunked exp-Golomb stream
(`stream_plan.StreamPlan.size_bits`: word-padded payload, chunk table and orders) of the se(v)-mapped
symbols of `quantize(x, step, dead_zone)`.
"""

import numpy as np

from bslz.codec.expgolomb import signed_to_unsigned
from bslz.codec.quantize import quantize
from bslz.codec.streams import DEFAULT_BLOCK_SIZE, DEFAULT_CHUNK_SIZE, plan_stream


def unsigned_symbols(symbols):
    """The se(v) mapping of signed quantizer symbols, flattened: what the stream codes."""
    return signed_to_unsigned(np.ascontiguousarray(symbols).reshape(-1), narrow=True)


def symbols_rate_bits(symbols, *, mode="auto", chunk_size=DEFAULT_CHUNK_SIZE, block_size=DEFAULT_BLOCK_SIZE):
    """Exact bits of the coded stream of signed integer `symbols` (any shape).

    `mode`: "auto", "eg" (one k or k per block, whichever is smaller) or "zero_run".
    """
    return plan_stream(unsigned_symbols(symbols), mode=mode, chunk_size=chunk_size, block_size=block_size).size_bits()


def tensor_rate_bits(x, step, dead_zone=0.5, **stream_options):
    """Exact bits of tensor `x` quantized with `step` and `dead_zone`, then coded (see `symbols_rate_bits`)."""
    return symbols_rate_bits(quantize(x, step, dead_zone), **stream_options)


def bits_per_parameter(x, step, dead_zone=0.5, **stream_options):
    """`tensor_rate_bits` divided by the number of elements of `x`."""
    size = np.size(x)
    return tensor_rate_bits(x, step, dead_zone, **stream_options) / size if size else 0.0
