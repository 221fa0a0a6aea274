"""What a chunked symbol stream is, apart from its symbols (`streams` plans, codes and decodes it):
its plan, with the exact size it gives, and the plan with its payload.
"""

import dataclasses

import numpy as np

U64 = np.uint64
CHUNK_TABLE_BITS = 64
ORDER_BITS = 8


@dataclasses.dataclass(frozen=True)
class StreamPlan:
    """Everything that decides the bits of a stream, except the symbols themselves."""

    mode: str
    count: int
    chunk_size: int
    block_size: int
    orders: np.ndarray  # uint8: one k per block ("eg", or a single k), (k_run, k_val), or none ("rans")
    chunk_bits: np.ndarray  # uint64: exact payload bits of each chunk
    # rANS chunks made while planning (their size is only known by coding them), reused by encode_stream
    coded_chunks: tuple | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def num_chunks(self):
        return len(self.chunk_bits)

    def chunk_word_starts(self):
        """First payload word of each chunk, and the total word count at the end."""
        return chunk_word_starts(self.chunk_bits)

    def size_bits(self):
        """Stream size in bits: word-padded payload plus chunk table plus orders."""
        payload_words = int(self.chunk_word_starts()[-1])
        return payload_words * 64 + CHUNK_TABLE_BITS * self.num_chunks + ORDER_BITS * len(self.orders)


@dataclasses.dataclass(frozen=True)
class EncodedStream:
    plan: StreamPlan
    payload: np.ndarray  # uint8, big-endian words: each chunk a standard MSB-first EG stream

    def size_bits(self):
        return self.plan.size_bits()


def chunk_word_starts(chunk_bits):
    words = (np.asarray(chunk_bits, dtype=np.uint64) + U64(63)) // U64(64)
    starts = np.zeros(len(words) + 1, dtype=np.uint64)
    np.cumsum(words, out=starts[1:])
    return starts
