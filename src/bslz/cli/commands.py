"""The click commands: parse options, call `bslz.api`, print results; errors become one line and exit 1."""

import contextlib
import os
import shutil
import sys
from functools import partial

import click

from bslz import __version__
from bslz.api import compress_file
from bslz.cli import output, pipes
from bslz.cli.checkpoint import plan_compress, plan_decompress, run_plan
from bslz.cli.paths import BSLZ_SUFFIX, compressed_name, decompressed_name, ensure_exists
from bslz.cli.pipes import STDIO
from bslz.codec._parallel import map_tensors_in_order
from bslz.decompression import decompress_file
from bslz.errors import BslzError, FormatError
from bslz.formats.container import ContainerReader


class CliError(click.ClickException):
    """An error shown as one line, `bslz: error: ...`, exit status 1."""

    def show(self, file=None):
        click.echo(f"bslz: error: {self.format_message()}", file=file, err=True)


def _os_error_text(exc):
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


class BslzGroup(click.Group):
    """Turns bslz errors and file-system errors into `bslz: error: ...` and exit status 1, without a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # stdout closed early (`bslz info ... | head`): stop quietly
            _silence_stdout()
            raise click.exceptions.Exit(1) from None
        except BslzError as exc:
            raise CliError(str(exc)) from None
        except OSError as exc:
            raise CliError(_os_error_text(exc)) from None


def _silence_stdout():
    with contextlib.suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=BslzGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="bslz")
def main():
    """Compress neural-network model files (safetensors) into .bslz files, and back.

    Lossless by default: `bslz decompress` restores the original file byte for byte. A lossy target
    (--bits, --snr or --step) quantizes the float tensors for much smaller files.

    \b
    Examples:
      bslz compress model.safetensors             # -> model.bslz, lossless
      bslz compress model.safetensors --bits 5    # lossy, 5 bits per float parameter
      bslz decompress model.bslz                  # -> model.safetensors
      bslz info model.bslz                        # what each tensor costs
      bslz verify model.bslz                      # decode everything, check the checksums
      bslz compress ckpt/                         # a sharded checkpoint directory -> ckpt.bslz/

    Exit status: 0 on success, 1 on an error (one line on stderr), 2 on a usage error.
    """


def _quiet_verbose(quiet, verbose):
    if quiet and verbose:
        raise click.UsageError("-q/--quiet and -v/--verbose exclude each other")


@main.command()
@click.argument("src", type=click.Path(dir_okay=True, file_okay=True))
@click.option("-o", "--output", "dst", type=click.Path(), help="Output file (or directory). Default: see above.")
@click.option(
    "--bits",
    type=click.FloatRange(min=0, min_open=True),
    help="Lossy: average bits per float parameter over the file (whole file size x 8 / float parameters).",
)
@click.option("--snr", type=float, help="Lossy: every quantized tensor reaches at least this SNR, in dB.")
@click.option(
    "--step", type=click.FloatRange(min=0, min_open=True), help="Lossy: this quantizer step for every quantized tensor."
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="PATTERN",
    help="Keep tensors whose name matches this glob (e.g. '*embeddings*') lossless. Repeatable.",
)
@click.option(
    "--min-lossy-elements",
    type=click.IntRange(min=0),
    metavar="N",
    help="Float tensors with fewer elements stay lossless (norms, biases). Default 4096.",
)
@click.option("-f", "--force", is_flag=True, help="Replace an existing output.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
@click.option("-v", "--verbose", is_flag=True, help="Also print one line per tensor.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def compress(src, dst, bits, snr, step, exclude, min_lossy_elements, force, quiet, verbose, as_json):
    """Compress SRC, a safetensors file or a checkpoint directory.

    \b
    Modes (at most one target; lossless without one):
      (none)      lossless: every tensor bit-exact, decompress gives a byte-identical file
      --bits B    quantize float tensors to B bits per float parameter on average over the file
                  (one step for all of them: least total squared error for that size; the last
                  tensors' may sit up to 3 % apart, to land the size within the tolerance)
      --snr DB    quantize each float tensor coarsely enough to keep at least DB dB SNR
      --step S    quantize each float tensor with step S
    Integer and bool tensors, float tensors smaller than --min-lossy-elements and those matching
    --exclude are always lossless. Tensors whose step the training hook recorded use that step when
    no target is given. A float tensor is stored lossless where that is no larger than quantized,
    or where the target asks for a step too fine for its values (indices past 2**30), and a --bits
    budget that the lossless file fits gives the lossless file.

    \b
    Output name (zstd's habit), unless -o is given:
      model.safetensors -> model.bslz      (other names get .bslz appended)
      ckpt/             -> ckpt.bslz/      (a directory)
    An existing output is never replaced without -f, the input is never written to, and the output
    appears whole or not at all (written to a temporary file, then renamed).

    \b
    Pipes (zstd's habit): SRC - reads the safetensors file from standard input (whole, into
    memory) and writes the container to standard output unless -o names a file; -o - writes it to
    standard output once it is made, in memory (never to a terminal). The summary then goes to
    stderr.

    \b
    A directory (e.g. a sharded checkpoint: model-0000k-of-0000N.safetensors plus
    model.safetensors.index.json) becomes a directory: every top-level *.safetensors file is
    compressed to *.bslz, shard by shard; model.safetensors.index.json is kept byte for byte and
    model.bslz.index.json is written beside it with weight_map naming the .bslz shards; every other
    file (config.json, tokenizer files, subdirectories) is copied unchanged. With --bits each shard
    gets the target on its own (per shard, not over the whole checkpoint).

    \b
    Prints one summary line per file on stdout: sizes, ratio, bits per float parameter, and the
    aggregate SNR when lossy. A progress bar with ETA goes to stderr when it is a terminal.

    \b
    Examples:
      bslz compress model.safetensors
      bslz compress model.safetensors -o small.bslz --bits 4.5 --exclude '*embeddings*'
      bslz compress model.safetensors --snr 40 -v
      bslz compress Llama-shards/ -o Llama-shards.bslz --json
      curl -sL https://host/model.safetensors | bslz compress - > model.bslz
    """
    _quiet_verbose(quiet, verbose)
    targets = [name for name, value in (("--bits", bits), ("--snr", snr), ("--step", step)) if value is not None]
    if len(targets) > 1:
        raise click.UsageError(f"give at most one of --bits, --snr, --step (got {' and '.join(targets)})")
    options = dict(bits=bits, snr=snr, step=step, exclude=exclude, min_lossy_elements=min_lossy_elements)
    if STDIO in (src, dst):
        pipes.compress(src, STDIO if dst is None else dst, options, force, quiet, verbose, as_json)
        return
    ensure_exists(src)
    is_dir = os.path.isdir(src)
    dst = dst if dst is not None else compressed_name(src)

    if not is_dir:
        with output.Progress(1, enabled=not quiet) as progress:
            report = compress_file(src, dst, overwrite=force, progress=progress.callback(1), **options)
        shutil.copymode(src, dst)
        if as_json or not quiet:
            output.echo_report(report, verbose, as_json)
        return

    plan = plan_compress(src)
    sizes = [os.path.getsize(os.path.join(src, name)) for name, _ in plan.coded]
    with output.Progress(sum(sizes), enabled=not quiet) as progress:
        callbacks = iter([progress.callback(size) for size in sizes])

        def code_file(path, out_path, out_name):
            report = compress_file(path, out_path, progress=next(callbacks), **options)
            shutil.copymode(path, out_path)
            report.destination = os.path.join(dst, out_name)
            return report

        reports = run_plan(src, dst, plan, code_file, overwrite=force)
    _print_dir_compress(src, dst, plan, reports, quiet, verbose, as_json)


def _count(items, word):
    return f"{len(items)} {word}" + ("" if len(items) == 1 else "es" if word.endswith("x") else "s")


def _print_dir_compress(src, dst, plan, reports, quiet, verbose, as_json):
    totals = output.aggregate(reports)
    if as_json:
        output.echo_json(
            dict(
                source=src,
                destination=dst,
                **totals,
                files=[r.to_dict() for r in reports],
                written=[name for name, _ in plan.written],
                copied=plan.copied,
            )
        )
        return
    if quiet:
        return
    for report in reports:
        output.echo_report(report, verbose)
    line = output.compress_line(
        src,
        dst,
        totals["original_bytes"],
        totals["compressed_bytes"],
        totals["float_params"],
        totals["lossless"],
        totals["aggregate_snr_db"],
        totals["quantized"],
        totals["tensors"],
    )
    counts = (
        f"{_count(reports, 'file')} compressed, {_count(plan.written, 'index')} rewritten, {len(plan.copied)} copied"
    )
    click.echo(f"{line}; {counts}")


@main.command()
@click.argument("src", type=click.Path())
@click.option("-o", "--output", "dst", type=click.Path(), help="Output file (or directory). Default: see above.")
@click.option("-f", "--force", is_flag=True, help="Replace an existing output.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def decompress(src, dst, force, quiet):
    """Restore the safetensors file (or checkpoint directory) that SRC was compressed from.

    A file compressed losslessly (the default) comes back byte for byte (same sha256); a lossy one
    comes back with every tensor in its original dtype and shape, holding the quantized values.
    Every tensor's decoded bytes are checked against their checksum on the way (a corrupt payload
    is named as such); `bslz verify` checks every checksum of the file.

    \b
    Output name, unless -o is given:
      model.bslz       -> model.safetensors
      ckpt.bslz/       -> ckpt/   (a directory made by `bslz compress ckpt/`: every *.bslz file
                                   becomes *.safetensors, the rewritten model.bslz.index.json is
                                   dropped, the kept original index and other files are copied)
    A name without the .bslz suffix needs -o. An existing output is never replaced without -f.

    \b
    Pipes (zstd's habit): SRC - reads the container from standard input (whole, into memory) and
    writes the safetensors file to standard output unless -o names a file; -o - writes it to
    standard output (never to a terminal), tensor by tensor. The summary then goes to stderr.

    \b
    Examples:
      bslz decompress model.bslz
      bslz decompress model.bslz -o /tmp/model.safetensors -f
      bslz decompress ckpt.bslz/
      aws s3 cp s3://bucket/model.bslz - | bslz decompress - -o model.safetensors
    """
    if STDIO in (src, dst):
        pipes.decompress(src, STDIO if dst is None else dst, force, quiet)
        return
    ensure_exists(src)
    is_dir = os.path.isdir(src)
    if dst is None:
        dst = decompressed_name(src, is_dir)
        if dst is None:
            raise click.UsageError(f"{src}: name does not end in {BSLZ_SUFFIX}; give the output name with -o")
    if not is_dir:
        with output.Progress(1, enabled=not quiet) as progress:
            decompress_file(src, dst, overwrite=force, progress=progress.callback(1))
        shutil.copymode(src, dst)
        if not quiet:
            click.echo(_decompress_line(src, dst))
        return
    plan = plan_decompress(src)
    sizes = [os.path.getsize(os.path.join(src, name)) for name, _ in plan.coded]
    with output.Progress(sum(sizes), enabled=not quiet) as progress:
        callbacks = iter([progress.callback(size) for size in sizes])

        def code_file(path, out_path, out_name):
            decompress_file(path, out_path, progress=next(callbacks))
            shutil.copymode(path, out_path)
            return (path, os.path.join(dst, out_name), os.path.getsize(path), os.path.getsize(out_path))

        done = run_plan(src, dst, plan, code_file, overwrite=force)
    if quiet:
        return
    for path, out, before, after in done:
        click.echo(output.sizes_line(path, out, before, after))
    before, after = sum(d[2] for d in done), sum(d[3] for d in done)
    click.echo(
        f"{output.sizes_line(src, dst, before, after)}; "
        f"{_count(done, 'file')} decompressed, {len(plan.copied) + len(plan.written)} copied"
    )


def _decompress_line(src, dst):
    return output.sizes_line(src, dst, os.path.getsize(src), os.path.getsize(dst))


def _bslz_files(path):
    """`path` itself, or the top-level .bslz files of a directory."""
    ensure_exists(path)
    if not os.path.isdir(path):
        return [path]
    files = sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(BSLZ_SUFFIX))
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise FileNotFoundError(f"{path}: no .bslz files in this directory")
    return files


@main.command()
@click.argument("file", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON on stdout.")
def info(file, as_json):
    """Describe FILE, a .bslz file (or each .bslz file of a directory), without decoding it.

    \b
    One line per tensor:
      dtype, shape     as in the original file
      coding/mode      raw | float (lossless float coding) | int (exp-Golomb of the integers) |
                       quantized (lossy); the stream mode: eg (exp-Golomb, one order k per block),
                       zero_run (runs of zeros and values, orders k_run and k_val) or rans (rANS)
      nu               shape of the generalized Gaussian fitted to a quantized tensor (2 = Gaussian,
                       1 = Laplacian); its reconstruction points follow that fit
      k                exp-Golomb order(s): one k, a range over blocks, or run/val for zero_run
      bits/param       payload bits per element; ratio: original bytes over payload bytes
      step             quantizer step of a lossy tensor
    then totals: file size, original size, ratio, bits per float parameter (whole file x 8 / float
    parameters). SNR is not stored in the file: `bslz compress -v` prints it.

    \b
    Examples:
      bslz info model.bslz
      bslz info model.bslz --json | jq '.tensors[] | select(.coding == "quantized") | .name'
    """
    infos = [output.inspect_file(f) for f in _bslz_files(file)]
    if as_json:
        output.echo_json(infos[0] if len(infos) == 1 and not os.path.isdir(file) else infos)
        return
    for i, described in enumerate(infos):
        if i:
            click.echo()
        click.echo("\n".join(output.info_lines(described)))


def _decode_error(reader, entry):
    """The FormatError decoding a tensor and checking its checksums raises (a corrupt file), or None."""
    try:
        reader.verify(entry["name"])
    except FormatError as exc:
        return exc
    return None


@main.command()
@click.argument("file", type=click.Path())
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
def verify(file, quiet):
    """Decode every tensor of FILE (or of each .bslz file of a directory) and check both checksums.

    Each tensor carries a CRC-32 of its payload and one of its decoded bytes, and a large one the
    CRC-32s of its payload's pieces (read alone by get_slice); all are checked.
    Prints `FILE: OK` per file on success (exit 0); prints each failing tensor as `bslz: error: ...`
    on stderr and exits 1 otherwise.

    \b
    Examples:
      bslz verify model.bslz
      bslz verify ckpt.bslz/
    """
    failures = 0
    for path in _bslz_files(file):
        reader = ContainerReader(path)
        try:
            bad = 0
            for _, error in map_tensors_in_order(partial(_decode_error, reader), reader.entries, lambda e: e["numel"]):
                if error is not None:
                    click.echo(f"bslz: error: {error}", err=True)
                    bad += 1
            if not bad and not quiet:
                click.echo(f"{path}: OK ({len(reader.entries)} tensors)")
            failures += bad
        finally:
            reader.close()
    if failures:
        raise CliError(f"{file}: {failures} tensor{'s' if failures > 1 else ''} failed verification")
