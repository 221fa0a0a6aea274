"""What the CLI prints: summary lines, tables, JSON, and the progress bar on stderr."""

import json
import math
import sys

import click

from bslz.errors import BslzError
from bslz.formats.container import ContainerReader
from bslz.formats.dtypes import lookup
from bslz.formats.safetensors_io import build_header, layout_tensors
from bslz.formats.stream_payload import unpack_stream


def human_bytes(n):
    """`n` bytes as `123 B`, `1.50 KiB`, `74.40 MiB`..."""
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.2f} {unit}"


def finite_or_none(value):
    """JSON has no inf or NaN: replace them (recursively) with null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def echo_json(value, err=False):
    click.echo(json.dumps(finite_or_none(value), indent=2, allow_nan=False), err=err)


def table(rows, headers):
    """Left-aligned text columns, two spaces apart."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]


def _ratio(a, b):
    return a / b if b else math.inf


def _snr_text(db):
    return "inf dB" if db is None or math.isinf(db) else f"{db:.2f} dB"


# ---- compress / decompress -----------------------------------------------------------------


def sizes_line(source, destination, before, after):
    """`source -> destination: before -> after`, sizes in human units."""
    return f"{source} -> {destination}: {human_bytes(before)} -> {human_bytes(after)}"


def compress_line(source, destination, original, compressed, float_params, lossless, snr_db, quantized=0, total=0):
    """One line: sizes, ratio, bits per float parameter, and the aggregate SNR when lossy."""
    parts = [sizes_line(source, destination, original, compressed)]
    parts.append(f"ratio {_ratio(original, compressed):.3f}")
    if float_params:
        parts.append(f"{8 * compressed / float_params:.3f} bits/param")
    parts.append("lossless" if lossless else f"SNR {_snr_text(snr_db)} ({quantized} of {total} tensors quantized)")
    return ", ".join(parts)


def echo_report(report, verbose=False, as_json=False, err=False):
    """A file's `CompressReport`: as JSON, or its line (and with `verbose` a line per tensor)."""
    if as_json:
        echo_json(report.to_dict(), err=err)
        return
    click.echo(report_line(report), err=err)
    if verbose:
        click.echo("\n".join(tensor_lines(report)), err=err)


def report_line(report):
    quantized = sum(t.coding == "quantized" for t in report.tensors)
    return compress_line(
        report.source,
        report.destination,
        report.original_bytes,
        report.compressed_bytes,
        report.float_params,
        report.lossless,
        report.aggregate_snr_db,
        quantized,
        len(report.tensors),
    )


def tensor_lines(report):
    """Per-tensor lines for -v."""
    rows = []
    for t in report.tensors:
        lossy = t.coding == "quantized"
        rows.append(
            [
                t.name,
                t.dtype,
                _shape(t.shape),
                t.coding,
                f"{t.bits_per_param:.3f}",
                f"{t.ratio:.3f}",
                _snr_text(t.snr_db) if lossy else "-",
                f"{t.step:.4g}" if lossy and t.step is not None else "-",
            ]
        )
    headers = ["  tensor", "dtype", "shape", "coding", "bits/param", "ratio", "SNR", "step"]
    return table([["  " + r[0]] + r[1:] for r in rows], headers)


def _shape(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def aggregate(reports):
    """Totals over several files' reports (a sharded checkpoint)."""
    signal = sum(r.signal for r in reports)
    noise = sum(r.noise for r in reports)
    snr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    original = sum(r.original_bytes for r in reports)
    compressed = sum(r.compressed_bytes for r in reports)
    float_params = sum(r.float_params for r in reports)
    return {
        "original_bytes": original,
        "compressed_bytes": compressed,
        "ratio": _ratio(original, compressed),
        "bits_per_float_param": 8 * compressed / float_params if float_params else 0.0,
        "float_params": float_params,
        "aggregate_snr_db": snr,
        "lossless": all(r.lossless for r in reports),
        "quantized": sum(t.coding == "quantized" for r in reports for t in r.tensors),
        "tensors": sum(len(r.tensors) for r in reports),
    }


# ---- info ----------------------------------------------------------------------------------


def describe_orders(plan):
    """The exp-Golomb orders k of a stream, as text and as JSON fields."""
    orders = [int(k) for k in plan.orders]
    if plan.mode == "zero_run" and len(orders) == 2:
        return f"run {orders[0]}, val {orders[1]}", {"k_run": orders[0], "k_val": orders[1]}
    if not orders:
        return "-", {}
    lo, hi = min(orders), max(orders)
    fields = {"k_min": lo, "k_max": hi, "num_orders": len(orders)}
    if len(orders) == 1:
        return str(lo), fields
    return (str(lo) if lo == hi else f"{lo}..{hi}") + f" ({len(orders)} blocks)", fields


def inspect_file(path):
    """A JSON-ready description of a `.bslz` file: its tensors and its totals."""
    reader = ContainerReader(path)
    try:
        tensors = []
        for e in reader.entries:
            item = {
                "name": e["name"],
                "dtype": e["dtype"],
                "shape": list(e["shape"]),
                "coding": e["coding"],
                "mode": e.get("mode"),
                "nu": e["gg"][0] if isinstance(e.get("gg"), list) and e["gg"] else None,
                "k": None,
                "original_bytes": e["nbytes"],
                "compressed_bytes": e["length"],
                "bits_per_param": 8 * e["length"] / e["numel"] if e["numel"] else 0.0,
                "ratio": _ratio(e["nbytes"], e["length"]),
                "step": e.get("step"),
            }
            if e["coding"] in ("int", "quantized"):
                try:
                    plan = unpack_stream(e, reader.payload(e), e["numel"]).plan
                except BslzError:
                    item["k"] = "?"
                else:
                    item["mode"] = plan.mode
                    item["k"], orders = describe_orders(plan)
                    item.update(orders)
            tensors.append(item)
        header = reader.source_header
        if header is None:
            specs = [(e["name"], e["dtype"], e["shape"], e["nbytes"]) for e in reader.entries]
            header = build_header(layout_tensors(specs), reader.metadata)
        original = 8 + len(header) + sum(e["nbytes"] for e in reader.entries)
        float_params = sum(e["numel"] for e in reader.entries if _is_float_dtype(e["dtype"]))
        quantized = sum(e["coding"] == "quantized" for e in reader.entries)
        return {
            "path": str(path),
            "format_version": "{}.{}".format(*reader.version),
            "file_bytes": reader.file_size,
            "original_bytes": original,
            "ratio": _ratio(original, reader.file_size),
            "float_params": float_params,
            "bits_per_float_param": 8 * reader.file_size / float_params if float_params else 0.0,
            "tensors_quantized": quantized,
            "lossless": quantized == 0,
            "byte_identical_restore": quantized == 0 and reader.source_header is not None,
            "metadata": reader.metadata,
            "tensors": tensors,
        }
    finally:
        reader.close()


def _is_float_dtype(name):
    dtype = lookup(name)
    return dtype is not None and dtype.kind == "float"


def info_lines(info):
    rows = []
    for t in info["tensors"]:
        rows.append(
            [
                t["name"],
                t["dtype"],
                _shape(t["shape"]),
                t["coding"] + (f"/{t['mode']}" if t["mode"] else ""),
                f"{t['nu']:.3f}" if t["nu"] is not None else "-",
                t["k"] if t["k"] is not None else "-",
                f"{t['bits_per_param']:.3f}",
                f"{t['ratio']:.3f}",
                f"{t['step']:.4g}" if t["step"] is not None else "-",
            ]
        )
    lines = [f"{info['path']}: bslz format {info['format_version']}, {len(info['tensors'])} tensors"]
    lines += table(rows, ["tensor", "dtype", "shape", "coding/mode", "nu", "k", "bits/param", "ratio", "step"])
    kind = "lossless" if info["lossless"] else f"lossy ({info['tensors_quantized']} tensors quantized)"
    total = (
        f"total: {human_bytes(info['file_bytes'])} ({info['file_bytes']} bytes) "
        f"from {human_bytes(info['original_bytes'])}, "
        f"ratio {info['ratio']:.3f}"
    )
    if info["float_params"]:
        total += f", {info['bits_per_float_param']:.3f} bits/param over {info['float_params']} float params"
    lines.append(total + f", {kind}")
    return lines


# ---- progress ------------------------------------------------------------------------------


class Progress:
    """One progress bar with ETA on stderr, over several files, shown only when stderr is a terminal.

    `total` is in any unit (input file bytes); `callback(weight)` returns a `progress(done, total, name)`
    callback for the next file, which spans `weight` units of the bar.
    """

    def __init__(self, total, *, enabled=True, stream=None):
        stream = stream if stream is not None else sys.stderr
        self.bar = None
        if enabled and stream.isatty():
            self.bar = click.progressbar(
                length=max(int(total), 1),
                label="bslz",
                file=stream,
                show_eta=True,
                show_percent=True,
                item_show_func=lambda name: None if name is None else name[-40:],
            )
        self.base = self.position = 0

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def callback(self, weight):
        base, self.base = self.base, self.base + int(weight)

        def progress(done, total, name):
            self._move_to(base + (int(weight) * done // total if total else int(weight)), name)

        return progress

    def _move_to(self, position, name):
        if self.bar is not None and position > self.position:
            self.bar.update(position - self.position, name)
        self.position = max(position, self.position)
