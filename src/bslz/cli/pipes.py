"""`-` for SRC or -o in `compress` and `decompress`: standard input or output, as zstd takes them.

A model file is read at random, so standard input is read whole, into memory; binary data is never
read from or written to a terminal; when standard output carries the data, the summary goes to
stderr. Errors are bslz errors, which the command group shows as one line."""

import contextlib
import os
import sys

import click

from bslz.api import compress_stream
from bslz.cli import output
from bslz.cli.paths import ensure_exists
from bslz.decompression import decompress_stream
from bslz.errors import InvalidArgumentError
from bslz.formats.atomic import atomic_output, check_output

STDIO = "-"
STDIN_NAME, STDOUT_NAME = "<stdin>", "<stdout>"


def compress(src, dst, options, force, quiet, verbose, as_json):
    """`bslz compress` with SRC or DST `-`."""
    source, name = _source(src, "a safetensors file")
    with _output(dst, force, "a .bslz container") as f, output.Progress(1, enabled=not quiet) as progress:
        report = compress_stream(source, f, progress=progress.callback(1), name=name, **options)
    report.source, report.destination = name, _name(dst)
    if as_json or not quiet:
        output.echo_report(report, verbose, as_json, err=dst == STDIO)


def decompress(src, dst, force, quiet):
    """`bslz decompress` with SRC or DST `-` (the tensors stream out in order)."""
    source, name = _source(src, "a .bslz container")
    with _output(dst, force, "a safetensors file") as f, output.Progress(1, enabled=not quiet) as progress:
        written = decompress_stream(source, f, progress=progress.callback(1), name=name)
    if not quiet:
        before = len(source) if src == STDIO else os.path.getsize(src)
        click.echo(output.sizes_line(name, _name(dst), before, written), err=dst == STDIO)


def _name(path):
    return STDOUT_NAME if path == STDIO else path


def _binary_stream(name):
    """The binary side of sys.stdin or sys.stdout (the ones click's test runner puts in place)."""
    return getattr(sys, name).buffer


def _source(src, what):
    """(what the stream API takes, its name in messages) for SRC `-` (standard input, whole: a
    model file is read at random) or a file's path."""
    if src == STDIO:
        stream = _binary_stream("stdin")
        if stream.isatty():
            raise InvalidArgumentError(f"refusing to read {what} from a terminal: pipe it in, or name a file")
        return stream.read(), STDIN_NAME
    ensure_exists(src)
    if os.path.isdir(src):
        raise click.UsageError(f"{src}: a directory cannot be read from or written to a pipe")
    return src, src


def _output(dst, force, what):
    """A binary file for `dst`: standard output (never a terminal), or a file that appears whole or
    not at all (not replacing one without -f)."""
    if dst == STDIO:
        stream = _binary_stream("stdout")
        if stream.isatty():
            raise InvalidArgumentError(f"refusing to write {what} to a terminal: redirect it, or give -o FILE")
        return contextlib.nullcontext(stream)
    check_output(dst, force)
    return atomic_output(dst)
