"""Files past 4 GiB and tensors past 2**31 elements (issue 6): offsets and element counts that do
not fit 32 bits survive compression and decompression.

The source is a sparse safetensors file written by streaming its header and seeking past its data
(no tensor is built in memory): a 4 GiB tensor of a dtype bslz does not know (kept raw, so that the
`.bslz` file itself passes 4 GiB), then 2**31 + 5 float8 zeros whose data starts past 4 GiB in both
files, then a small float32 tensor at the very end. Compression and decompression run in child
processes so that their peak memory can be read. Slow (a minute or two, most of it disk I/O, about
11 GiB written): it runs only with `-m slow` or BSLZ_LARGE_TESTS=1.
"""

import hashlib
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import bslz
from bslz.formats.container import ContainerReader

GIB = 1 << 30
RAW_BYTES = 4 * GIB + 64
BIG_ELEMENTS = (1 << 31) + 5
TAIL = np.linspace(-1, 1, 1000, dtype=np.float32)
SRC_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def write_sparse_safetensors(path):
    """Header, then a hole for the zeros, then the tail tensor's bytes: nothing large in memory."""
    big_begin = RAW_BYTES
    tail_begin = big_begin + BIG_ELEMENTS
    header = {
        "__metadata__": {"test": "past 4 GiB"},
        "opaque": {"dtype": "Q4_OPAQUE", "shape": [RAW_BYTES], "data_offsets": [0, RAW_BYTES]},
        "big": {"dtype": "F8_E4M3", "shape": [BIG_ELEMENTS], "data_offsets": [big_begin, tail_begin]},
        "tail": {"dtype": "F32", "shape": [TAIL.size], "data_offsets": [tail_begin, tail_begin + TAIL.nbytes]},
    }
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.seek(8 + len(text) + tail_begin)
        f.write(TAIL.tobytes())
    return 8 + len(text)


def run_child(code, *args):
    """Run `code` in a child Python; returns (seconds, peak resident set in bytes)."""
    script = (
        "import resource, sys\n"
        f"sys.path.insert(0, {SRC_ROOT!r})\n"
        "import bslz\n"
        f"{code}\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return time.monotonic() - start, int(out.stdout.split()[-1]) * 1024


def chunked_sha256(path, limit=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(64 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.slow
def test_file_past_4gib_with_a_tensor_past_2_31_elements(tmp_path, request):
    if "slow" not in (request.config.getoption("markexpr") or "") and os.environ.get("BSLZ_LARGE_TESTS") != "1":
        pytest.skip("about 100 s and 11 GiB of disk writes: run with -m slow or BSLZ_LARGE_TESTS=1")
    if shutil.disk_usage(tmp_path).free < 16 * GIB:
        pytest.skip("needs 16 GiB of free disk")
    src, packed, back = tmp_path / "big.safetensors", tmp_path / "big.bslz", tmp_path / "back.safetensors"
    data_start = write_sparse_safetensors(src)
    assert os.path.getsize(src) > 6 * GIB

    t_compress, rss_compress = run_child("bslz.compress_file(sys.argv[1], sys.argv[2])", src, packed)
    assert os.path.getsize(packed) > 4 * GIB
    reader = ContainerReader(packed)
    try:
        entries = {e["name"]: e for e in reader.entries}
        assert entries["opaque"]["coding"] == "raw"
        assert entries["big"]["coding"] == "float" and entries["big"]["numel"] == BIG_ELEMENTS
        assert entries["big"]["offset"] > 4 * GIB and entries["tail"]["offset"] > 4 * GIB
        assert entries["big"]["length"] < 1 << 20  # zeros: constant segments
    finally:
        reader.close()

    with bslz.safe_open(packed, framework="np") as f:
        assert f.get_tensor("tail").tobytes() == TAIL.tobytes()
        big = f.reader.decode_raw("big")
        assert big.size == BIG_ELEMENTS and not big.any()
        del big

    t_decompress, rss_decompress = run_child("bslz.decompress_file(sys.argv[1], sys.argv[2])", packed, back)
    assert os.path.getsize(back) == os.path.getsize(src)
    with open(back, "rb") as a, open(src, "rb") as b:
        assert a.read(data_start) == b.read(data_start)  # the header, byte for byte
        a.seek(-TAIL.nbytes - 64, os.SEEK_END)
        b.seek(-TAIL.nbytes - 64, os.SEEK_END)
        assert a.read() == b.read()
    assert chunked_sha256(back) == chunked_sha256(src)
    print(
        f"\ncompress {t_compress:.1f} s, peak RSS {rss_compress / GIB:.2f} GiB;"
        f" decompress {t_decompress:.1f} s, peak RSS {rss_decompress / GIB:.2f} GiB"
    )
    # The largest tensor is the 4 GiB raw one: decoding holds it once (plus mapped file pages).
    assert rss_decompress < 9 * GIB and rss_compress < 9 * GIB
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < 6 * GIB
