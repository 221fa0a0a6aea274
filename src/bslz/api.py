"""The library API's compression: files, bytes or streams (decompression: `bslz.decompression`;
lazy reading: `bslz.reader`; reports: `bslz.reports`)."""

import math
import os

import numpy as np

from bslz.bits_target import SEARCH_PASSES, write_for_bits
from bslz.codec._parallel import map_tensors_in_order
from bslz.codec.dq import step_fits
from bslz.codec.measure import max_abs_and_signal, max_abs_of_bfloat16_words, signal_and_noise
from bslz.errors import InvalidArgumentError, StepTooFineError
from bslz.formats.atomic import atomic_output, check_paths
from bslz.formats.background import Background
from bslz.formats.buffers import IN_MEMORY, MemoryFile
from bslz.formats.checksums import crc32
from bslz.formats.container import align
from bslz.formats.container_writer import ContainerWriter, header_bound
from bslz.formats.dtypes import lookup, to_float32, to_float32_and_top
from bslz.formats.reconstruction import quantize_dq
from bslz.formats.safetensors_io import read_safetensors, read_safetensors_buffer
from bslz.formats.tensor_codec import encode_lossless, encode_quantized
from bslz.lossy import (
    LossyOptions,
    dq_quantize_for_snr,
    is_float,
    lossless_may_be_smaller,
    mantissa_bits,
    plan_steps,
)
from bslz.reports import CompressReport, TensorReport


def compress_file(
    src, dst, *, bits=None, snr=None, step=None, exclude=(), min_lossy_elements=None, overwrite=False, progress=None
):
    """Compress a safetensors file `src` into a `.bslz` file `dst`; returns a `CompressReport`.

    Lossless by default. At most one lossy target: `bits` (average bits per float parameter over
    the whole file), `snr` (dB, every quantized tensor), `step` (quantizer step). Float tensors
    smaller than `min_lossy_elements` (default 4096) or matching a glob in `exclude` stay lossless.
    `progress(done, total_bytes, tensor_name)` is called after each tensor, and as a `bits` / `snr`
    target's step search goes (it takes the first part of `done`, in proportion to its passes).
    """
    options = LossyOptions(bits, snr, step, tuple(exclude), min_lossy_elements or LossyOptions.min_elements)
    check_paths(src, dst, overwrite)
    source = read_safetensors(src)
    with atomic_output(dst) as f:
        report = _compress(source, f, options, progress)
    report.source, report.destination = os.fspath(src), os.fspath(dst)
    return report


def compress_bytes(data, *, bits=None, snr=None, step=None, exclude=(), min_lossy_elements=None):
    """`compress_file` in memory: the bytes of a `.bslz` container made from the bytes of a
    safetensors file (any bytes-like object; it is read in place, not copied), as a memoryview
    (bytes-like: write it, hash it, compare it, or `bytes()` it) of memory of its own."""
    options = LossyOptions(bits, snr, step, tuple(exclude), min_lossy_elements or LossyOptions.min_elements)
    if isinstance(data, (str, os.PathLike)):
        raise InvalidArgumentError("compress_bytes takes a safetensors file's bytes: for a file, use compress_file")
    return _compress_in_memory(read_safetensors_buffer(data), options, None)[0]


def compress_stream(
    src, out, *, bits=None, snr=None, step=None, exclude=(), min_lossy_elements=None, progress=None, name=IN_MEMORY
):
    """Compress `src` (a safetensors file's path, or its bytes, called `name` in error messages)
    and write the `.bslz` container to the binary file object `out` (a pipe will do: the container
    is assembled in memory, then written in one pass); returns the `CompressReport`. Options as
    `compress_file`'s."""
    options = LossyOptions(bits, snr, step, tuple(exclude), min_lossy_elements or LossyOptions.min_elements)
    from_file = isinstance(src, (str, os.PathLike))
    source = read_safetensors(src) if from_file else read_safetensors_buffer(src, name)
    packed, report = _compress_in_memory(source, options, progress)
    out.write(packed)
    out.flush()
    if from_file:
        report.source = os.fspath(src)
    return report


def _compress_in_memory(source, options, progress):
    """(the container, as a memoryview of memory of its own; its `CompressReport`)."""
    # room for what a container may reach (each payload at most its tensor's bytes and a table): it
    # is written once, in place; pages never touched take no memory
    f = MemoryFile(source.file_size + 4096 * (len(source.tensors) + 1) + (1 << 20))
    report = _compress(source, f, options, progress)
    return f.getbuffer(), report


# A `bits` search keeps the lossless encodings it made of tensors up to this size (norms, biases),
# up to a total of their original bytes: each file it writes takes them rather than coding them
# again (MiniLM: 65 tensors, ~5 ms a file on one thread)
SMALL_LOSSLESS_BYTES = 1 << 16
SMALL_LOSSLESS_TOTAL = 1 << 26


def _compress(source, f, options, progress):
    """Write the container of `source` (a SafetensorsFile) to the binary file `f`, open for writing
    and seeking; returns the CompressReport (paths left empty)."""
    order = sorted(source.tensors, key=lambda t: t.begin)  # data order: decompression streams it back

    kind_of_quantized = "dq" if options.target is not None else "uniform"
    # no payload outgrows its tensor by more than a table and some padding (raw is the fallback)
    max_payload_bytes = sum(t.nbytes for t in order) + 4096 * (len(order) + 1)

    def declared(quantized_names):
        """(name, dtype, shape, kind) to size the header: the widest entry each tensor may get."""
        return [(t.name, t.dtype, t.shape, _entry_kind(t, quantized_names, kind_of_quantized)) for t in order]

    def kept_header(quantized_names):
        """The original safetensors header, kept only when the file will be lossless: it is there so
        that decompression rebuilds the original file byte for byte, which a lossy file cannot be
        (decompression then writes a fresh header for the same tensors, order and metadata)."""
        return None if quantized_names else source.header_bytes

    small_lossless = {}  # name: encode_lossless result of a small tensor the `bits` estimate coded

    def lossless_bits(quantized_names):
        """Exact bits of the lossless part of the file, for the `bits` target; the small tensors'
        encodings are kept for the files written after it (see SMALL_LOSSLESS_BYTES)."""
        header = header_bound(
            declared(quantized_names), source.metadata, kept_header(quantized_names), max_payload_bytes
        )
        payload = kept = 0
        for t in order:
            if t.name not in quantized_names:
                encoded = encode_lossless(source.tensor_bytes(t), t.dtype, t.shape)
                payload += align(len(encoded[1]))
                if t.nbytes <= SMALL_LOSSLESS_BYTES and kept + t.nbytes <= SMALL_LOSSLESS_TOTAL:
                    small_lossless[t.name] = encoded
                    kept += t.nbytes
        return 8 * (align(header + 24) + payload)

    total = sum(t.nbytes for t in order)
    # a `bits` search estimates sizes first, a pass over the tensors: it takes the first part of the
    # progress (in proportion to its passes), the writing the rest
    searched = SEARCH_PASSES if options.bits is not None else 0.0
    share = searched / (searched + 1.0)
    shown = [0]  # the progress never goes back (a `bits` search may write the file twice)

    def show(done, name):
        shown[0] = max(shown[0], done)
        if progress is not None:
            progress(shown[0], total, name)

    def search_progress(fraction, name):
        show(int(share * total * fraction), f"{name} [step search]")

    def write_progress(done, name):
        show(int(share * total + (1.0 - share) * done), name)

    last = {}  # the last file written: its writer, steps and tensors' results

    def write(steps, tops=None):
        """(file bits, report): the whole container at these steps, written over f. The tensors
        ahead of the first whose step differs from the last file's stay as that file wrote them
        (a `bits` search that moves the last tensors' step codes only those again)."""
        kept = 0
        entries = declared(steps)
        if last and last["declared"] == entries:  # the same header room: payloads where they were
            writer = last["writer"]
            while kept < len(order) and _same_plan(order[kept].name, steps, last["steps"]):
                kept += 1
            writer.keep(kept)
        else:
            writer = ContainerWriter(
                f,
                entries,
                metadata=source.metadata,
                source_header=kept_header(steps),
                max_payload_bytes=max_payload_bytes,
            )
        report, results = _write_tensors(
            writer,
            source,
            order,
            steps,
            options,
            write_progress,
            tops or {},
            last.get("results", [])[:kept],
            small_lossless,
        )
        last.update(writer=writer, declared=entries, steps=dict(steps), results=results)
        return 8 * report.compressed_bytes, report

    if options.bits is not None:
        return write_for_bits(source, options, lossless_bits, write, search_progress)
    steps = plan_steps(source, options)
    report = write(steps)[1]
    if steps and report.lossless:  # every tensor ended lossless (steps too fine): the lossless file,
        report = write({})[1]  # whose kept header makes decompression byte-identical
    return report


def _same_plan(name, steps, other):
    """Whether a tensor is coded the same under two plans: lossless in both, or at one step."""
    return (name in steps) == (name in other) and steps.get(name) == other.get(name)


def _write_tensors(writer, source, order, steps, options, progress, tops, kept=(), lossless_known=None):
    """Code every tensor of `source` (in file `order`) into `writer` and close it: the tensors named
    in `steps` quantized at theirs (None: searched for the `snr` target). Returns the CompressReport
    (paths left empty) and each tensor's (TensorReport, signal, noise) in order; progress(done_bytes,
    name) after each tensor. `tops`: {name: max |value|} of the tensors whose largest magnitude the
    caller knows (a `bits` search: not looked for again). `kept`: the results of the first tensors,
    whose entries the writer holds already (written at these steps before). `lossless_known`:
    {name: `encode_lossless` result} of tensors coded already, taken for those stored lossless."""
    report = CompressReport("", "", source.file_size, 0, [], sum(t.numel for t in order if is_float(t)))
    results = list(kept)
    for tensor, signal, noise in results:  # the sums in tensor order, as a file written whole adds them
        report.signal += signal
        report.noise += noise
        report.tensors.append(tensor)
    done = sum(t.nbytes for t in order[: len(results)])
    with Background() as background:

        def encode(info):
            raw = source.tensor_bytes(info)
            if info.name not in steps and info.name in (lossless_known or {}):
                return raw, _lossless_encoding(raw, info, lossless_known[info.name])
            planned = steps.get(info.name)
            return raw, _encode_tensor(info, raw, info.name in steps, planned, options, tops.get(info.name))

        for info, (raw, encoded) in map_tensors_in_order(encode, order[len(results) :], lambda info: info.numel):
            fields, payload, decoded_crc, step, signal, noise = encoded
            # checksums and the write overlap the next tensor's encoding
            background.submit(
                _add_tensor, writer, info, fields, payload, raw, decoded_crc, nbytes=raw.nbytes + _nbytes(payload)
            )
            snr_db = 10 * math.log10(signal / noise) if step is not None and noise > 0 and signal > 0 else None
            tensor = TensorReport(
                info.name, info.dtype, info.shape, fields["coding"], info.nbytes, _nbytes(payload), snr_db, step
            )
            # the aggregate SNR counts every float tensor's signal
            sums = (
                (signal if step is not None else _signal(raw, info.dtype), noise)
                if steps and is_float(info)
                else (0.0, 0.0)
            )
            report.signal += sums[0]
            report.noise += sums[1]
            report.tensors.append(tensor)
            results.append((tensor, *sums))
            done += info.nbytes
            progress(done, info.name)
            # only the writing thread may hold this tensor's bytes now: it lets them go once written,
            # rather than as the next tensor is encoded (measured: one large tensor less at the peak)
            del raw, encoded, payload
        background.wait()
    report.compressed_bytes = writer.close()
    return report, results


def _add_tensor(writer, info, fields, payload, raw, decoded_crc):
    """Write one tensor's payload and entry; decoded_crc None: the tensor is lossless, its decoded
    bytes are `raw`."""
    writer.add(info.name, info.dtype, info.shape, fields, payload, crc32(raw) if decoded_crc is None else decoded_crc)


def _nbytes(payload):
    return payload.nbytes if isinstance(payload, np.ndarray) else len(payload)


def _encode_tensor(info, raw, quantized, step, options, top=None):
    """(fields, payload, decoded crc32, step, signal, noise) of one tensor. `quantized`: whether the
    plan quantizes it, at `step` (None for --snr: searched here); one holding NaN or infinity stays
    lossless all the same, and so does one whose lossless coding is no larger than its quantized
    one (`lossless_may_be_smaller`) or whose step would be too fine for its values' indices (a
    --step, a recorded step, the step an --snr target asks for). A lossless tensor has step None
    and decoded crc32 None (that of `raw`, left to the writing thread). `top`: max |value|, if known."""
    symbols = values = signal = None
    dtype = lookup(info.dtype)
    # dependent quantization reads bfloat16 words themselves: no float32 copy of the tensor
    words_read = quantized and options.target is not None and dtype.name == "BF16"
    if quantized and options.target != "bits":  # the plan left the values to be checked here
        words = raw.view(dtype.word_dtype)
        if not words_read:
            values, top = to_float32_and_top(words, dtype)
        elif options.snr is not None:  # the search's first guess wants the sum of squares too: one pass
            top, signal = max_abs_and_signal(words, widen=lambda piece: to_float32(piece, dtype))
        else:
            top = max_abs_of_bfloat16_words(words)
        quantized = math.isfinite(top)  # NaN or infinity: a quantizer has no symbol for them
        # a step too fine for the values' indices: lossless, exact, which meets any target
        quantized = quantized and (step is None or step_fits(top, step))
    if not quantized:
        return _lossless_encoding(raw, info)
    latest = {}  # --snr: the latest step measured, {step: reconstruct_dq's result}, for the writer
    if options.snr is not None:  # search the step, and code the symbols found

        def search(x, step):  # the SNR of the values as the file will decode them
            latest.clear()
            symbols, latest[step] = quantize_dq(x, step, info.dtype, top, bfloat16_words=words_read)
            return symbols, latest[step][1], latest[step][2]  # (symbols, signal, noise)

        # bfloat16 words with the sum of squares of their float32 values (the sums `dq_quantize_for_snr`
        # takes of float values, in the same order)
        x = raw.view(dtype.word_dtype) if words_read else values
        snr_mantissa = mantissa_bits(info.dtype)
        try:
            step, symbols = dq_quantize_for_snr(
                x, options.snr, search=search, mantissa_bits=snr_mantissa, signal=signal
            )
        except StepTooFineError:  # the target asks for a step too fine for the values' indices
            return _lossless_encoding(raw, info)
    # targets use dependent quantization; recorded training steps the uniform quantizer they were
    # planned for. (An --snr step meets its target here: the search measured these very sums.)
    reconstruction = "dq" if options.target is not None else None
    fields, payload, decoded_crc, signal, noise = encode_quantized(
        raw,
        info.dtype,
        step,
        reconstruction=reconstruction,
        symbols=symbols,
        # the reconstruction of the symbols' step (the one the search ended on), held by the call
        # alone: it lets the decoded bytes go once they are checksummed
        reconstructed=latest.pop(step, None),
        values=values,
        top=top,
        decoded_as=crc32,
    )
    if lossless_may_be_smaller(info.dtype, 8 * _nbytes(payload), info.numel):
        lossless = _lossless_encoding(raw, info)
        if _nbytes(lossless[1]) <= _nbytes(payload):  # exact, and no larger (any target is met)
            return lossless
    return fields, payload, decoded_crc, step, signal, noise


def _lossless_encoding(raw, info, encoded=None):
    """`_encode_tensor`'s result for a tensor stored lossless; `encoded`: its `encode_lossless`
    result, if made already."""
    fields, payload = encode_lossless(raw, info.dtype, info.shape) if encoded is None else encoded
    return fields, payload, None, None, 0.0, 0.0


def _signal(raw, dtype_name):
    dtype = lookup(dtype_name)
    values = to_float32(raw.view(dtype.word_dtype), dtype)
    return signal_and_noise(values, values)[0] if np.isfinite(values).all() else 0.0


def _entry_kind(info, quantized_names, kind_of_quantized):
    if info.name in quantized_names:
        return kind_of_quantized
    dtype = lookup(info.dtype)
    if dtype is None or info.numel == 0:
        return "raw"
    return "float" if dtype.kind == "float" else "int"
