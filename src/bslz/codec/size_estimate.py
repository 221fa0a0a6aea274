"""Quick estimates of a symbol stream's size (`streams.stream_size_bits`), for searches that only
need to know where to look next: the rANS chunks' sizes from their histograms, without coding them
or costing exp-Golomb (which loses to rANS on quantized weights; where it would not, this is high).
"""

import math

from bslz.codec import _expgolomb_kernels as K
from bslz.codec._parallel import parallel_map
from bslz.codec.expgolomb import as_symbols, best_order, code_length
from bslz.codec.rans import MAX_ALPHABET, histogram, rans_table
from bslz.codec.rans_escape import LENGTH_BYTES, clipped, excesses
from bslz.codec.stream_plan import CHUNK_TABLE_BITS
from bslz.codec.streams import DEFAULT_CHUNK_SIZE, RANS_MIN_SYMBOLS, stream_size_bits

# A rANS chunk codes in about its table's lower bound (`RansTable.min_bytes`) plus this many bytes:
# the four final states, less what their start values carry (measured on MiniLM's quantized weight
# matrices at three steps: 19-30 bytes a chunk, 24 on average)
RANS_BYTES_OVER_BOUND = 24


def estimate_size_bits(values, chunk_size=DEFAULT_CHUNK_SIZE):
    """About `stream_size_bits(values)` (within ~100 bits a chunk: the bytes over the bound vary by
    +-6, and the padding to whole words may round the other way) at a quarter of its cost or less
    (MiniLM's quantized tensors at three steps: 14-27 ms against 64-108). Symbols from 4096 up are
    sized as "rans_escape" codes them (their exp-Golomb escapes exactly). Exact for streams too
    short for rANS."""
    arr = as_symbols(values)
    if arr.size < RANS_MIN_SYMBOLS:
        return stream_size_bits(arr, chunk_size=chunk_size)
    escaped = int(K.max_value(arr)) >= MAX_ALPHABET
    k = best_order(excesses(arr)) if escaped else 0

    def chunk_bits(lo):
        chunk = arr[lo : lo + chunk_size]
        symbols = clipped(chunk) if escaped or chunk.dtype.itemsize > 4 else chunk  # uint32 symbols: no copy
        return chunk_bits_of_histogram(histogram(symbols), code_length(excesses(chunk), k) if escaped else None)

    return sum(parallel_map(chunk_bits, range(0, arr.size, chunk_size))) + (8 if escaped else 0)


def chunk_bits_of_histogram(hist, escape_bits=None):
    """`estimate_size_bits` of one rANS chunk (at least RANS_MIN_SYMBOLS symbols) from the histogram
    of its symbols as rANS codes them (`clipped`), and, in a stream with escapes, the bits of its
    escapes' exp-Golomb codes: its bytes padded to whole words, and its chunk-table entry."""
    table = rans_table(hist)
    size = table.min_bytes() + (RANS_BYTES_OVER_BOUND if table.freqs is not None else 0)
    if escape_bits is not None:
        size += LENGTH_BYTES + math.ceil(escape_bits / 8)
    return 64 * math.ceil(size / 8) + CHUNK_TABLE_BITS
