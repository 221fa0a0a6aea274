"""The `bslz` command line: a thin click layer over `bslz.api` (run `bslz --help`)."""

from bslz.cli.commands import main

__all__ = ["main"]
