"""Piece checksums (format 1.3, optional): the CRC-32 of each `piece_bytes`-byte piece of a
payload, so that a reader of part of a tensor reads and checks only the pieces it needs. The
reader's side: the fields' checks and `PiecesRead` (the writer's choice of pieces:
`container_writer`)."""

from bslz.codec._parallel import parallel_map
from bslz.errors import FormatError
from bslz.formats.checksums import crc32
from bslz.formats.json_object import is_uint

MIN_PIECE_BYTES = 4096  # the smallest piece the format allows


def check_piece_fields(path, e):
    """An entry's piece fields, where it has either: both, a power-of-two piece size of at least
    MIN_PIECE_BYTES, and one CRC-32 a piece."""
    if "piece_bytes" not in e and "piece_crc32" not in e:
        return
    size, crcs = e.get("piece_bytes"), e.get("piece_crc32")
    if not is_uint(size) or size < MIN_PIECE_BYTES or size > 1 << 62 or size & (size - 1):
        raise FormatError(
            f"{path}: tensor {e['name']!r} piece_bytes must be a power of two from {MIN_PIECE_BYTES}, got {size!r}"
        )
    if not isinstance(crcs, list) or len(crcs) != -(-e["length"] // size):
        raise FormatError(f"{path}: tensor {e['name']!r} needs one piece_crc32 for each of its pieces")
    if not all(is_uint(c) and c < 1 << 32 for c in crcs):
        raise FormatError(f"{path}: tensor {e['name']!r} piece_crc32 must hold CRC-32 values")


def corrupt_payload(path, name):
    """The error of a payload whose bytes fail a checksum, whole or a piece."""
    return FormatError(f"{path}: tensor {name!r} payload fails its checksum (the file is corrupt)")


class PiecesRead:
    """A payload read piece by piece, each piece checked as it is read: from a file into memory of
    its own whose other bytes are left as they are (np.empty), or, held in memory, checked in
    place. Decoding part of a tensor reads the bytes `tensor_codec.range_payload_span` names, from
    the same tables, and no others (tests/test_piece_checksums.py fills the rest with noise):
    clearing them took longer than reading the part (np.zeros of MiniLM's 15 MB embedding payload:
    0.6 ms; fresh zero pages of a mapping, faulted in, 1.3 ms more)."""

    def __init__(self, entry, path, payload, read=None):
        """`payload`: the array the pieces are read into, as long as the payload, or the payload
        itself when it is in memory (`read` None); read(out, lo, hi): payload bytes lo..hi - 1
        into out[lo:hi]."""
        self.entry, self.path, self.payload, self._read = entry, path, payload, read
        self.size = entry["piece_bytes"]
        self.done = set()

    def read(self, lo, hi):
        """Read and check every piece holding bytes lo..hi - 1 that is not yet read."""
        length, size = self.entry["length"], self.size
        todo = [i for i in range(lo // size, -(-min(hi, length) // size)) if i not in self.done]
        if not todo:
            return
        if self._read is not None:
            for first, last in _runs(todo):
                self._read(self.payload, first * size, min(length, (last + 1) * size))

        def check(i):
            if crc32(self.payload[i * size : (i + 1) * size]) != self.entry["piece_crc32"][i]:
                raise corrupt_payload(self.path, self.entry["name"])

        parallel_map(check, todo)
        self.done.update(todo)


def _runs(indices):
    """(first, last) of each run of consecutive integers in the sorted list `indices`."""
    runs = []
    for i in indices:
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs
