"""Outputs appear whole or not at all: write to a temporary file beside the destination, flush and
fsync it, then rename it into place. A failure or Ctrl-C leaves no output and never touches the
input."""

import contextlib
import os
import tempfile

from bslz.errors import InvalidArgumentError


def check_paths(src, dst, overwrite):
    """Refuse to write onto the source, or over an existing file without `overwrite`."""
    src, dst = os.fspath(src), os.fspath(dst)
    if not os.path.exists(src):
        raise FileNotFoundError(f"{src}: no such file or directory")
    same = os.path.samefile(src, dst) if os.path.exists(dst) else os.path.abspath(src) == os.path.abspath(dst)
    if same:
        raise InvalidArgumentError(f"{dst}: the output would overwrite the input")
    check_output(dst, overwrite)


def check_output(dst, overwrite):
    """Refuse to write over an existing file without `overwrite` (an output with no input file: one
    read from standard input)."""
    if os.path.exists(dst) and not overwrite:
        raise InvalidArgumentError(f"{dst}: already exists (use -f / overwrite=True to replace it)")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(dst):
    """Yield a binary file opened in dst's directory; on success it replaces `dst`, else it is removed."""
    dst = os.fspath(dst)
    directory = os.path.dirname(os.path.abspath(dst))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dst)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: give the file what open() would
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
