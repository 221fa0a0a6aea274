"""rANS chunks of dependent-quantization symbols decoded straight into a dtype's words, in one loop.

The rANS decoder (`_rans_kernels.make_state_decoder`) hands its symbols four at a time to a sink
that runs the quantizer state chain on them (`dq`: one lookup a round, `STEP4`) and writes each
value as a lookup in a table of the dtype's words for every (symbol, quantizer) of the chunk's
alphabet. The table is made by the decoder's own arithmetic (level times the step in float64,
rounded to the dtype as `dq`'s decoder rounds it), so the words are those of decoding the symbols
and then dequantizing them; no array of symbols is written and read back, and the per-value
arithmetic becomes a lookup (MiniLM's embedding, one 262144-value chunk on one thread: 3.60 ->
2.84 ns a value, `bench_dq.py`'s last table).
"""

import numpy as np

from bslz.codec import rans
from bslz.codec._bits import as_uint8
from bslz.codec._dq_machine import NUM_STATES, QUANTIZER, TRANSITIONS
from bslz.codec._jit import njit, njit_inline
from bslz.codec._rans_kernels import make_state_decoder

U64 = np.uint64
_STATE_BITS = U64(3)  # the carry between calls: values left in the block << 3 | state


def _four_step_table():
    """STEP4[8 state + parities of the next four indices (bit j: index j)]: the state after them
    (bits 0-2) and the quantizer of each of the four (bit 3 + j)."""
    table = np.zeros(NUM_STATES * 16, dtype=np.uint8)
    for state in range(NUM_STATES):
        for parities in range(16):
            s, quantizers = state, 0
            for j in range(4):
                quantizers |= int(QUANTIZER[s]) << j
                s = int(TRANSITIONS[s, (parities >> j) & 1])
            table[16 * state + parities] = s | quantizers << 3
    return table


STEP4 = _four_step_table()
_QUANTIZER = QUANTIZER.astype(np.uint64)
_TRANSITIONS = TRANSITIONS.astype(np.uint64)


@njit_inline
def _parity(u):
    """The parity of the index whose se(v) mapping is u (|k| = (u + 1) >> 1)."""
    return ((U64(u) + U64(1)) >> U64(1)) & U64(1)


@njit_inline
def _start_of_block(carry, block):
    """(state, values left in the block) from the carry (values left << 3 | state): state 0 and a
    whole block where the last one ended (the carry starts at 0: so does the first block)."""
    left = carry >> _STATE_BITS
    if left == U64(0):
        return U64(0), U64(block)
    return carry & U64(7), left


@njit_inline
def _put_levels4(out, i, s0, s1, s2, s3, context, carry):
    table, block = context
    state, left = _start_of_block(carry, block)
    parities = _parity(s0) | _parity(s1) << U64(1) | _parity(s2) << U64(2) | _parity(s3) << U64(3)
    step = U64(STEP4[(state << U64(4)) | parities])
    out[i] = table[(U64(s0) << U64(1)) | ((step >> U64(3)) & U64(1))]
    out[i + U64(1)] = table[(U64(s1) << U64(1)) | ((step >> U64(4)) & U64(1))]
    out[i + U64(2)] = table[(U64(s2) << U64(1)) | ((step >> U64(5)) & U64(1))]
    out[i + U64(3)] = table[(U64(s3) << U64(1)) | ((step >> U64(6)) & U64(1))]
    return ((left - U64(4)) << _STATE_BITS) | (step & U64(7))


@njit_inline
def _put_level1(out, i, s, context, carry):
    table, block = context
    state, left = _start_of_block(carry, block)
    out[i] = table[(U64(s) << U64(1)) | _QUANTIZER[state]]
    return ((left - U64(1)) << _STATE_BITS) | _TRANSITIONS[state, _parity(s)]


_decode_levels_closure = make_state_decoder(_put_levels4, _put_level1)


@njit
def _decode_levels(words, slot_sym, freqs, starts, out, context):
    """`make_state_decoder`'s decode into level words, context = (table, block) -> status; module-level
    so that numba finds it in its cache (see `_dq_search`'s `quantize_blocks_float32`)."""
    return _decode_levels_closure(words, slot_sym, freqs, starts, out, context)


def level_words(max_symbol, step, compute, to_words):
    """The table of words: entry 2 u + q is the word of the level of symbol u under quantizer q
    (2k - q sgn k, `dq._level`) times `step` in float64, cast to `compute` (float32 or float64) and
    turned into the dtype's words by `to_words`, as the decoder does for each value."""
    u = np.arange(max_symbol + 1, dtype=np.int64)
    levels = np.empty(2 * u.size, dtype=np.float64)
    odd = (u & 1) == 1
    for q in (0, 1):
        levels[q::2] = np.where(odd, u + 1 - q, q * (u > 0) - u)
    return np.ascontiguousarray(to_words((levels * float(step)).astype(compute)))


class LevelTables:
    """The `level_words` of every chunk of one step and dtype (a tensor's; with `--bits`, a whole
    file's), made once for them all: an entry does not depend on the chunk, so one table up to the
    largest symbol met so far serves every chunk: one of MiniLM bf16's embedding chunks (262144
    values, one thread) decodes in 485-488 us with it, in 506-514 with a table made for the chunk
    (`benchmarks/bench_gil_waits.py`). Threads decoding side by side share it: a table is only
    ever replaced by a larger one, and any table large enough gives the same words."""

    def __init__(self, step, compute, to_words):
        self.to_words = to_words
        self._make = lambda max_symbol: level_words(max_symbol, step, compute, to_words)
        self.table = None

    def covering(self, max_symbol):
        """A table with an entry for every symbol up to max_symbol, kept for the next chunks (with
        room for larger ones: a chunk's largest symbol varies a little)."""
        table = self.table
        if table is None or table.size < 2 * (max_symbol + 1):
            table = self._make(min(rans.MAX_ALPHABET - 1, max_symbol + max_symbol // 8))
            if self.table is None or self.table.size < table.size:
                self.table = table
        return table


def decode_chunk(chunk, step, block, compute, to_words, out, tables=None):
    """Decode one rANS chunk (bytes of `rans.encode_rans`) of the se(v) symbols of dependent-
    quantization indices, blocks of `block` values from its start, into `out` (the dtype's words,
    one a symbol: `dq.dequantize_dq_symbols` of them, rounded by `to_words` from `compute`).
    `tables`: a `LevelTables` for these step, compute and to_words, shared with other chunks.
    Returns False, having written nothing, for chunks this path leaves to the general one: a
    stream of one symbol, an empty buffer, blocks not a multiple of four values. Raises as
    `rans.decode_rans` does on a bad payload."""
    if block % 4 or len(chunk) == 0:
        return False
    data = as_uint8(chunk)
    max_symbol, freqs, header_bytes = rans.read_header(data)
    if freqs is None:
        return False
    tables = LevelTables(step, compute, to_words) if tables is None else tables
    context = (tables.covering(max_symbol), U64(block))
    rans.decode_payload(_decode_levels, data[header_bytes:], freqs, out, context)
    return True
