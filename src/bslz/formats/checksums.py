"""The container's checksums: zlib's CRC-32 of a tensor's payload and of its decoded bytes."""

import numpy as np

try:  # zlib-ng: the same CRC-32 as zlib's, 5x faster (SIMD: 37 against 7 GB/s, measured); it releases the GIL too
    from zlib_ng.zlib_ng import crc32 as _crc32
    from zlib_ng.zlib_ng import crc32_combine as _crc32_combine
except ImportError:  # a platform without its wheel
    from zlib import crc32 as _crc32

    _crc32_combine = None

from bslz.codec._parallel import default_workers, parallel_map, split_range

# A reader checks a large tensor's checksum in pieces of at least this many bytes, side by side, and
# combines the pieces' CRCs (zlib-ng's crc32_combine): on one thread it left the other cores idle
# while the payload and decoded bytes of MiniLM bf16's embedding were checked, before and after
# decoding it (in-memory decoding of the file, 25 paired rounds: 5 % faster, 18 wins). Writers and the
# decompressing writer thread check theirs on one thread, alongside the coding of other tensors.
CRC_PIECE_BYTES = 1 << 22


# Without crc32_combine (no zlib-ng wheel) a tensor's checksums are taken whole, not chunk by chunk
CAN_COMBINE = _crc32_combine is not None


def crc32(data, side_by_side=False):
    """zlib's CRC-32 of the bytes of an array (or bytes-like); `side_by_side`: in pieces on every
    core when it is large (see CRC_PIECE_BYTES)."""
    view = _bytes_view(data)
    parts = len(view) // CRC_PIECE_BYTES if side_by_side and CAN_COMBINE else 1
    if parts > 1:  # (only then: reading the environment takes longer than a small CRC)
        parts = min(default_workers(), parts)
    if parts < 2:
        return _crc32(view)
    pieces = split_range(len(view), parts)
    crcs = PieceCrcs()
    parallel_map(lambda j: crcs.take(j, view[pieces[j][0] : pieces[j][1]]), range(len(pieces)))
    return crcs.combined()


def _bytes_view(data):
    """The bytes of an array (made contiguous) or of a bytes-like object (numpy would take `bytes`
    for one string: b"" would become a zero byte)."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data)
    return memoryview(data).cast("B")


def crc32_of_pieces(data, piece_bytes):
    """(the CRC-32s of the consecutive `piece_bytes`-byte pieces of `data`, the last one shorter;
    that of the whole): the whole's combined from the pieces' (zlib-ng), or taken again without it."""
    view = _bytes_view(data)
    crcs = [_crc32(view[lo : lo + piece_bytes]) for lo in range(0, len(view), piece_bytes)]
    if not CAN_COMBINE:
        return crcs, _crc32(view)
    whole = 0
    for lo, crc in zip(range(0, len(view), piece_bytes), crcs):
        whole = _crc32_combine(whole, crc, min(piece_bytes, len(view) - lo))
    return crcs, whole


class PieceCrcs:
    """The CRC-32 of a buffer from those of its consecutive pieces, which threads take in any order:
    each while its piece is in its cache (a float tensor's chunks, as each is decoded). Needs zlib-ng's
    crc32_combine (CAN_COMBINE)."""

    def __init__(self):
        self._pieces = {}  # index: (crc, bytes); threads add distinct indices

    def take(self, index, data):
        view = _bytes_view(data)
        self._pieces[index] = (_crc32(view), len(view))

    def total_bytes(self):
        return sum(n for _, n in self._pieces.values())

    def combined(self, crc=0):
        """The CRC-32 of the pieces in index order, after bytes whose CRC-32 is `crc`; None if an
        index from 0 up is missing."""
        for index in range(len(self._pieces)):
            if index not in self._pieces:
                return None
            piece_crc, n = self._pieces[index]
            crc = _crc32_combine(crc, piece_crc, n)
        return crc
