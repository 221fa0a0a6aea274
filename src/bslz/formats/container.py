"""The `.bslz` container, format 1.3: its layout and validating reader (the writer:
`container_writer`). FORMAT.md is the normative spec.

    magic (8) | major u16 | minor u16 | reserved u32 = 0 | header length u64 | header (UTF-8 JSON,
    padded with spaces) | zero bytes to a 64-byte boundary | payloads, each 64-byte aligned

All integers are little-endian. Payloads tile the data section: the first starts at 0, each next
one at the first 64-byte boundary after the previous one's end, and the file ends with the last.
"""

import os
import struct
import threading
from functools import partial

import numpy as np

from bslz.codec._parallel import parallel_map, pieces_per_core
from bslz.errors import FormatError, InvalidArgumentError, TruncatedError, UnsupportedVersionError
from bslz.formats.buffers import IN_MEMORY, contiguous_bytes, regular_file_size, sequential_reader
from bslz.formats.checksums import CAN_COMBINE, CRC_PIECE_BYTES, PieceCrcs, crc32
from bslz.formats.dtypes import lookup
from bslz.formats.json_object import is_uint, parse_json_object
from bslz.formats.piece_checksums import PiecesRead, check_piece_fields, corrupt_payload
from bslz.formats.tensor_codec import (
    CODINGS,
    RANGED_CODINGS,
    decode_tensor,
    decode_tensor_range,
    range_head_bytes,
    range_payload_span,
)

MAGIC = b"\x89BSLZ\r\n\x1a"
FORMAT_MAJOR = 1
FORMAT_MINOR = 3
PREFIX = struct.Struct("<8sHHIQ")
ALIGN = 64
MAX_HEADER_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_DECODED_BYTES = 16 * 1024**3  # per tensor; adjustable for bigger models
READ_PIECE_BYTES = CRC_PIECE_BYTES  # a payload is read in pieces of at least this, side by side
_ENTRY_KEYS = {"name", "dtype", "shape", "offset", "length", "crc32", "decoded_crc32", "coding"}


def align(n):
    return n + (-n % ALIGN)


class ContainerReader:
    """A validated view of a `.bslz` file: the header is checked in full on open, payloads are read
    and decoded one tensor at a time, with their checksums checked. Safe to share between threads."""

    def __init__(self, source, *, max_decoded_bytes=DEFAULT_MAX_DECODED_BYTES, name=IN_MEMORY):
        """`source`: a path, or the bytes of a container (any contiguous bytes-like object; its
        payloads are then decoded where they lie, without a copy), called `name` in messages."""
        self.max_decoded_bytes = check_max_decoded_bytes(max_decoded_bytes)
        self._buffer = None
        if isinstance(source, (str, os.PathLike)):
            self.path = os.fspath(source)
            with open(self.path, "rb") as f:
                size = regular_file_size(self.path, f)
                header_bytes = self._read_head(size, f.read)
        else:
            self.path = name
            self._buffer = contiguous_bytes(source, "a bslz container")
            size = self._buffer.size
            header_bytes = self._read_head(size, sequential_reader(self._buffer))
        self.file_size = size
        header = parse_json_object(self.path, header_bytes, "header")
        self.metadata = header.get("metadata")
        if self.metadata is not None and (
            not isinstance(self.metadata, dict) or not all(isinstance(v, str) for v in self.metadata.values())
        ):
            raise FormatError(f"{self.path}: metadata must map strings to strings")
        source = header.get("source")
        self.source_header = _source_header(self.path, source)
        entries = header.get("tensors")
        if not isinstance(entries, list):
            raise FormatError(f"{self.path}: header has no tensor list")
        self.entries = [self._check_entry(e) for e in entries]
        self.by_name = {}
        for e in self.entries:
            if e["name"] in self.by_name:
                raise FormatError(f"{self.path}: tensor name {e['name']!r} appears twice")
            self.by_name[e["name"]] = e
        self._check_tiling(size - self.data_start)
        self._fd = None
        self._fd_lock = threading.Lock()  # threads decoding side by side open the file once

    def _read_head(self, size, read):
        """The header's bytes, after checking the prefix; read(n): the next n bytes (fewer at the
        end). Sets version and data_start."""
        prefix = read(PREFIX.size)
        if len(prefix) < PREFIX.size:
            raise TruncatedError(f"{self.path}: {len(prefix)} bytes is too short for a bslz file")
        magic, major, minor, reserved, header_len = PREFIX.unpack(prefix)
        if magic != MAGIC:
            raise FormatError(f"{self.path}: not a bslz file (bad magic bytes)")
        if major != FORMAT_MAJOR:
            raise UnsupportedVersionError(f"{self.path}: format {major}.{minor}; this bslz reads {FORMAT_MAJOR}.x")
        if reserved != 0:
            raise FormatError(f"{self.path}: reserved prefix field is {reserved}, must be 0")
        if header_len > MAX_HEADER_BYTES:
            raise FormatError(f"{self.path}: header of {header_len} bytes is over the {MAX_HEADER_BYTES}-byte cap")
        self.data_start = align(PREFIX.size + header_len)
        if self.data_start > size:
            raise TruncatedError(f"{self.path}: file ends inside its header")
        self.version = (major, minor)
        return read(header_len)

    def _check_entry(self, e):
        if not isinstance(e, dict) or not _ENTRY_KEYS <= set(e):
            raise FormatError(f"{self.path}: tensor entry lacks some of {sorted(_ENTRY_KEYS)}")
        name, dtype, shape = e["name"], e["dtype"], e["shape"]
        if not isinstance(name, str) or not isinstance(dtype, str):
            raise FormatError(f"{self.path}: tensor name and dtype must be strings")
        if not isinstance(shape, list) or not all(is_uint(d) for d in shape):
            raise FormatError(f"{self.path}: tensor {name!r} has an invalid shape {shape!r}")
        for key in ("offset", "length", "crc32", "decoded_crc32"):
            if not is_uint(e[key]):
                raise FormatError(f"{self.path}: tensor {name!r} field {key} must be a non-negative integer")
        if e["coding"] not in CODINGS:
            raise FormatError(f"{self.path}: tensor {name!r} has unknown coding {e['coding']!r}")
        check_piece_fields(self.path, e)
        numel = bounded_numel(shape)
        known = lookup(dtype)
        if known is None and e["coding"] != "raw":
            raise FormatError(f"{self.path}: tensor {name!r} of unknown dtype {dtype!r} must be raw")
        nbytes = numel * known.itemsize if known is not None else e["length"]
        if nbytes > self.max_decoded_bytes:
            raise FormatError(
                f"{self.path}: tensor {name!r} would decode to {nbytes} bytes,"
                f" over max_decoded_bytes={self.max_decoded_bytes}"
            )
        return dict(e, numel=numel, nbytes=nbytes)

    def _check_tiling(self, data_size):
        expected = 0
        for e in self.entries:
            if e["offset"] != expected:
                raise FormatError(f"{self.path}: tensor {e['name']!r} payload at {e['offset']}, expected {expected}")
            expected = align(e["offset"] + e["length"])
        end = self.entries[-1]["offset"] + self.entries[-1]["length"] if self.entries else 0
        if end != data_size:
            cls = TruncatedError if end > data_size else FormatError
            raise cls(f"{self.path}: payloads end at {end} data bytes, the file holds {data_size}")

    def keys(self):
        return [e["name"] for e in self.entries]

    def entry(self, name):
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"no tensor named {name!r} in {self.path}") from None

    def payload(self, entry):
        """A tensor's payload, read into memory of its own (positional reads: thread-safe, and no
        mapping that would keep the whole file's pages resident); from a buffer, a view of it."""
        if self._buffer is not None:
            return self._buffer[self.data_start + entry["offset"] :][: entry["length"]]
        out = np.empty(entry["length"], dtype=np.uint8)
        self._read_payload_bytes(entry, out, 0, out.size)
        return out

    def _read_payload_bytes(self, entry, out, lo, hi):
        """Read bytes lo..hi - 1 of a tensor's payload (file-backed) into out[lo:hi]."""
        with self._fd_lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            fd = self._fd
        view, start = memoryview(out), self.data_start + entry["offset"]

        def read(bounds):
            pos, end = bounds
            while pos < end:
                n = os.preadv(fd, [view[pos:end]], start + pos)
                if n == 0:
                    raise TruncatedError(f"{self.path}: file ends inside tensor {entry['name']!r}")
                pos += n

        # a large payload in pieces side by side (a copy from the page cache on one thread left the
        # other cores idle), as its checksum is taken
        parallel_map(read, [(lo + a, lo + b) for a, b in pieces_per_core(hi - lo, READ_PIECE_BYTES)])

    def decode_raw(self, name, *, check_decoded=True, out=None):
        """The tensor's raw bytes (uint8 array), checked against their decoded checksum; decoded
        into `out` if given (uint8, the tensor's nbytes). With `check_decoded=False` the caller must
        pass them to `check_decoded` before using them (a writer does so on another thread,
        overlapping the next tensor's decoding), unless `checks_while_decoding` said that this check
        is made here regardless.

        The payload's checksum is checked only when decoding fails or its result fails its own
        checksum, to name a corrupt payload as such: bytes that pass their decoded checksum are
        the tensor, whatever the payload held (the decoders are safe on any bytes), and checking
        both took 8 % of `decompress_bytes`'s time (MiniLM bf16). `verify` checks both."""
        e = self.entry(name)
        return self._decode_payload(e, self.payload(e), check_decoded, out)

    def verify(self, name):
        """`decode_raw(name)`, also checking the payload's checksum first, and its piece checksums
        (format 1.3) where it has them: every checksum of the tensor."""
        e = self.entry(name)
        if "piece_bytes" in e:
            pieces = self._pieces(e)
            pieces.read(0, e["length"])
            payload = pieces.payload
        else:
            payload = self.payload(e)
        self.check_payload(e, payload)
        self._decode_payload(e, payload, True, None)

    def _decode_payload(self, e, payload, check_decoded, out):
        name = e["name"]
        checked_here = self.checks_while_decoding(name)
        try:
            if checked_here:
                raw = self._decode_checking_chunks(e, payload, out)
            else:
                raw = decode_tensor(e, payload, e["dtype"], e["numel"], e["nbytes"], out)
        except FormatError:  # a corrupt payload is named as such
            self.check_payload(e, payload)
            raise
        if raw is payload and self._buffer is not None:  # a raw payload: the caller's own, not a view of the buffer
            raw = raw.copy()
        if raw.size != e["nbytes"]:
            raise FormatError(f"{self.path}: tensor {name!r} decoded to {raw.size} bytes, expected {e['nbytes']}")
        if check_decoded and not checked_here:
            self.check_decoded(name, raw, side_by_side=True, payload=payload)
        return raw

    def decode_range(self, name, start, stop):
        """Raw bytes (uint8 array, memory of its own) of the tensor's elements start..stop - 1, flat
        in row-major order. Part of a lossless float tensor, or of a quantized one whose chunks
        decode one by one (every encoder default), is decoded from the chunks that hold it alone,
        once the payload has passed its checksum: with piece checksums (format 1.3) only the
        pieces holding its tables and those chunks are read and checked (`_payload_for_range`).
        The decoded checksum is of the whole tensor: a part cannot be checked against it. Anything
        else is decoded whole (`decode_raw`, both checks), then cut."""
        e = self.entry(name)
        if not 0 <= start <= stop <= e["numel"]:
            raise InvalidArgumentError(f"elements {start}..{stop} are not a range of tensor {name!r} ({e['numel']})")
        if start == stop:
            return np.empty(0, dtype=np.uint8)
        if e["coding"] in RANGED_CODINGS and stop - start < e["numel"]:
            payload = self._payload_for_range(e, start, stop)
            try:
                part = decode_tensor_range(e, payload, e["dtype"], e["numel"], start, stop)
            except FormatError as exc:
                raise FormatError(f"{self.path}: tensor {name!r}: {exc}") from None
            if part is not None:
                return part.copy() if part.base is not None and part.base.nbytes > part.nbytes else part
        whole = self.decode_raw(name)
        itemsize = e["nbytes"] // e["numel"]
        return whole if stop - start == e["numel"] else whole[start * itemsize : stop * itemsize].copy()

    def _payload_for_range(self, e, start, stop):
        """The payload as `decode_tensor_range` reads it for elements start..stop - 1, checked: with
        piece checksums (format 1.3), only the pieces that hold its tables and those chunks are
        read and checked (`PiecesRead`: the rest is never read); without, all of it."""
        head = range_head_bytes(e, e["dtype"], e["numel"]) if "piece_bytes" in e else None
        if head is None or head > e["length"]:
            payload = self.payload(e)
            self.check_payload(e, payload)
            return payload
        pieces = self._pieces(e)
        pieces.read(0, head)
        span = range_payload_span(e, pieces.payload[:head], e["dtype"], e["numel"], start, stop)
        if span is None or span[1] > e["length"]:  # the decoder will say what is wrong
            span = (0, e["length"])
        pieces.read(*span)
        return pieces.payload

    def _pieces(self, e):
        """A `PiecesRead` of the tensor's payload (which has piece checksums), none of it read yet."""
        if self._buffer is not None:
            return PiecesRead(e, self.path, self.payload(e))
        return PiecesRead(e, self.path, np.empty(e["length"], dtype=np.uint8), partial(self._read_payload_bytes, e))

    def checks_while_decoding(self, name):
        """Whether `decode_raw` checks this tensor's decoded bytes itself, whatever its
        `check_decoded`: piece by piece as it decodes them (chunks, or runs of a few), by the thread
        that decoded each, while in its cache. Checked whole, after decoding, the checksum of a
        tensor of a few chunks ran on one core while the others waited."""
        e = self.entry(name)
        # a tensor of one chunk is checked as well whole, in fewer calls (MiniLM has 65 norms and
        # biases: benchmarks/bench_small_tensors.py); its chunk size is checked by its decoder
        chunk_size = e.get("chunk_size")
        one_chunk = isinstance(chunk_size, int) and e["numel"] <= chunk_size
        return CAN_COMBINE and e["coding"] in ("float", "quantized") and not one_chunk

    def check_payload(self, e, payload):
        """Raise FormatError (a corrupt payload) unless the payload, whole, matches entry e's checksum."""
        if crc32(payload, side_by_side=True) != e["crc32"]:
            raise corrupt_payload(self.path, e["name"])

    def _decode_checking_chunks(self, e, payload, out):
        decoded_crcs = PieceCrcs()
        raw = decode_tensor(
            e, payload, e["dtype"], e["numel"], e["nbytes"], out, lambda c, _, words: decoded_crcs.take(c, words)
        )
        if decoded_crcs.total_bytes():
            decoded = decoded_crcs.combined() if decoded_crcs.total_bytes() == raw.size else None
        else:  # decoded some other way (a quantized stream not in whole trellis blocks, an empty tensor)
            decoded = crc32(raw, side_by_side=True)
        if decoded != e["decoded_crc32"]:
            self._fail_decoded(e, payload)
        return raw

    def check_decoded(self, name, raw, side_by_side=False, payload=None):
        """Raise FormatError unless the decoded bytes match their checksum (`side_by_side`: see
        `checksums.crc32`): a corrupt payload if the payload (`payload`, when the caller holds
        it, else read) fails its own (see `decode_raw`)."""
        e = self.entry(name)
        if crc32(raw, side_by_side) != e["decoded_crc32"]:
            self._fail_decoded(e, self.payload(e) if payload is None else payload)

    def _fail_decoded(self, e, payload):
        """Raise for a tensor whose decoded bytes failed their checksum: its payload is corrupt,
        or else (a payload that passes its checksum) the file's writer coded it wrong."""
        self.check_payload(e, payload)
        raise FormatError(f"{self.path}: tensor {e['name']!r} decodes to bytes that fail their checksum")

    def close(self):
        with self._fd_lock:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None


def bounded_numel(shape):
    """The product of the dimensions, or some number above 2**64 once it passes that: a product of
    millions of huge dimensions costs quadratic time (a hostile header would hang the reader)."""
    if 0 in shape:
        return 0
    n = 1
    for d in shape:
        n *= d
        if n > 1 << 64:
            return n
    return n


def _source_header(path, source):
    if source is None:
        return None
    if (
        not isinstance(source, dict)
        or source.get("format") != "safetensors"
        or not isinstance(source.get("header"), str)
    ):
        raise FormatError(f"{path}: source must be {{'format': 'safetensors', 'header': str}}")
    try:
        return source["header"].encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escaped in the JSON ("\\ud800")
        raise FormatError(f"{path}: source header is not valid Unicode") from None


def check_max_decoded_bytes(value):
    if not is_uint(value):
        raise InvalidArgumentError(f"max_decoded_bytes must be a non-negative integer, got {value!r}")
    return value
