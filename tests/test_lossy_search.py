"""The step searches behind --bits and --snr (`bslz.bits_target`, `bslz.lossy`): the solver, the floor of
--bits, the --snr search."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bslz.bits_target import ZERO_CHUNK_BITS
from bslz.codec.dq import dequantize_dq, quantize_dq
from bslz.codec.expgolomb import signed_to_unsigned
from bslz.codec.rate import symbols_rate_bits
from bslz.codec.streams import DEFAULT_CHUNK_SIZE
from bslz.errors import InvalidArgumentError
from bslz.formats import reconstruction, tensor_codec
from bslz.formats.checksums import crc32
from bslz.formats.dtypes import from_float32, lookup, to_float32
from bslz.lossy import (
    ROUNDING_SHARE_CAP,
    SNR_MAX_TOLERANCE_DB,
    _solve,
    dq_quantize_for_snr,
    snr_guess_step,
)


def counted(fn):
    calls = []

    def wrapped(x):
        calls.append(x)
        return fn(x)

    return wrapped, calls


@pytest.mark.small
@given(
    root=st.floats(-12, 2),
    true_slope=st.floats(0.5, 2.0),
    curvature=st.floats(-0.2, 0.2),
    start=st.floats(-3, 3),
)
def test_lands_in_the_accept_interval_in_a_few_evaluations(root, true_slope, curvature, start):
    """Rates and SNRs are close to linear in log(step), with a slope the model knows to within 2x."""
    slope = 1000.0

    def fall(x):  # decreasing: slope between 0.3x and 2.4x the model's
        d = x - root
        return -slope * true_slope * (d + curvature * math.tanh(d))

    for accept in ((-1.0, 0.0), (0.0, 1.0)):
        fn, calls = counted(fall)
        x = _solve(fn, root + start, slope, accept)
        assert accept[0] <= fall(x) <= accept[1]
        assert len(calls) <= 12


@pytest.mark.small
def test_infinite_values_step_up():
    """SNR margin is +inf while the step is so small that nothing is lost."""

    def margin(x):
        return math.inf if x < -8 else -8.7 * (x + 5.0)

    x = _solve(margin, -20.0, 8.7, (0.0, 0.02))
    assert 0.0 <= margin(x) <= 0.02


@pytest.mark.small
@pytest.mark.parametrize("accept, safe", [((-0.5, 0.0), lambda v: v <= 0), ((0.0, 0.5), lambda v: v >= 0)])
def test_an_interval_it_cannot_land_in_gives_the_safe_side(accept, safe):
    """A jump over the interval (a rate that moves in whole steps): the closest point on the side
    that meets the target."""

    def jump(x):
        return 10.0 if x < 1.0 else -10.0

    x = _solve(jump, 0.0, 5.0, accept)
    assert safe(jump(x)) and abs(x - 1.0) < 1e-6


@pytest.mark.small
@pytest.mark.parametrize("start", [0.3, -0.2, 0.01])
def test_a_widening_interval_ends_the_search_on_a_jittery_function(start):
    """An SNR that moves in jumps past the first interval (bf16 rounding): with `widest` the search
    takes the first point within the widened interval, still on the target's side; with the fixed
    interval it bisects down to the bracket's end, dozens of evaluations."""

    def stairs(x):  # values 0.07 apart: never within [0, 0.02], 0.03 within [0, 0.04]
        return 0.07 * math.floor(-8.7 * x / 0.07 + 0.5) + 0.03

    widened, widened_calls = counted(stairs)
    assert stairs(_solve(widened, start, 8.7, (0.0, 0.02), 0.2)) == pytest.approx(0.03)
    fixed, fixed_calls = counted(stairs)
    assert stairs(_solve(fixed, start, 8.7, (0.0, 0.02))) == pytest.approx(0.03)
    assert len(widened_calls) <= 3 and len(fixed_calls) > 20


@pytest.mark.small
def test_a_flat_stretch_is_left_in_growing_steps():
    """--bits at steps too fine for any tensor: every one lossless, the file's size flat. Model
    steps from there crawled (a mixed f32/f64 file just under its lossless size: 60 evaluations, each a file)."""

    def fall(x):  # flat 100 over the interval below x = -5, then falling
        return 100.0 if x < -5 else -1000.0 * (x + 4.9)

    fn, calls = counted(fall)
    x = _solve(fn, -20.0, 1000.0, (-1.0, 0.0))
    assert -1.0 <= fall(x) <= 0.0 and len(calls) <= 15


@pytest.mark.small
@pytest.mark.parametrize("start", [-3.0, 0.9, 5.0])
def test_a_jump_over_the_interval_ends_at_the_narrowest_bracket(start):
    """A size that jumps over the tolerance (a tensor turned lossless, bf16 jitter): bisection down
    to `narrowest`, then the side that meets the target; without it, down to 1e-12."""

    def jump(x):
        return 5000.0 if x < 1.0 else -5000.0 - 1000.0 * (x - 1.0)

    narrow, narrow_calls = counted(jump)
    x = _solve(narrow, start, 1000.0, (-1.0, 0.0), narrowest=1e-3)
    assert jump(x) <= 0 and 0 <= x - 1.0 < 1e-3
    fine, fine_calls = counted(jump)
    assert abs(_solve(fine, start, 1000.0, (-1.0, 0.0)) - 1.0) < 1e-9
    assert len(narrow_calls) <= 16 < len(fine_calls)


@pytest.mark.small
def test_no_point_meets_the_target():
    with pytest.raises(InvalidArgumentError):
        _solve(lambda x: 1.0, 0.0, 1.0, (-0.1, 0.0))


@pytest.mark.small
def test_a_huge_step_quantizes_everything_to_zero():
    """The --bits search costs its floor (every index zero) without quantizing: that is what the
    trellis gives at steps of 4 max|w| and beyond."""
    import numpy as np

    from bslz.codec.dq import quantize_dq

    rng = np.random.default_rng(3)
    for x in (rng.laplace(0, 1.0, 5000), rng.normal(0, 0.01, 777), np.array([0.0, -3.0, 3.0])):
        top = float(np.abs(x).max())
        for factor in (4.0, 10.0, 1e6):
            assert not quantize_dq(x, factor * top, block=64).any()


@pytest.mark.small
@pytest.mark.parametrize("n", [64, 1000, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_SIZE + 1, 3 * DEFAULT_CHUNK_SIZE + 5])
def test_a_stream_of_zeros_costs_at_most_the_bound_a_chunk(n):
    assert symbols_rate_bits(np.zeros(n, np.int32)) <= ZERO_CHUNK_BITS * -(-n // DEFAULT_CHUNK_SIZE)


def test_a_budget_below_every_index_at_zero_is_refused(tmp_path):
    """--bits under what the file costs with every quantized index zero: a clear error, no file;
    just above it, a file within the budget."""
    from safetensors.numpy import save_file

    import bslz

    x = np.random.default_rng(3).normal(0, 0.02, (300, 400)).astype(np.float32)
    src = tmp_path / "m.safetensors"
    save_file({"w": x}, str(src))
    with pytest.raises(InvalidArgumentError, match="every quantized value at zero"):
        bslz.compress_file(src, tmp_path / "m.bslz", bits=0.001)
    assert not (tmp_path / "m.bslz").exists()
    # every index zero: a step of many times max |w|; the header is most of that file
    zeros = bslz.compress_file(src, tmp_path / "zeros.bslz", step=1.0).bits_per_float_param
    report = bslz.compress_file(src, tmp_path / "m.bslz", bits=zeros + 0.02)
    assert zeros < report.bits_per_float_param <= zeros + 0.02


@pytest.mark.parametrize("guess_factor", [None, 1.0, 0.3, 3.0])
def test_the_snr_search_gives_its_step_and_the_indices_at_it(guess_factor):
    """Whatever the first guess, the step lands within the tolerance above the target, and the
    symbols returned are those of the trellis's indices at that step (the writer codes them as they are)."""
    values = np.random.default_rng(3).laplace(0, 0.02, 50_000).astype(np.float32)
    target = 30.0
    signal = float(np.sum(values.astype(np.float64) ** 2))
    guess = None if guess_factor is None else guess_factor * snr_guess_step(signal, values.size, target)
    step, symbols = dq_quantize_for_snr(values, target, guess)
    indices = quantize_dq(values, step)
    assert symbols is not None and np.array_equal(symbols, signed_to_unsigned(indices, narrow=True))
    noise = float(np.sum((values.astype(np.float64) - dequantize_dq(indices, step, dtype=np.float64)) ** 2))
    assert 0.0 <= 10 * math.log10(signal / noise) - target <= SNR_MAX_TOLERANCE_DB + 1e-9


def test_the_guess_leaves_room_for_the_formats_rounding():
    """A bf16 tensor's values decode rounded to 7 mantissa bits: the first guess is a finer step
    than for float32, by the rounding's share of the noise, which never takes more than ROUNDING_SHARE_CAP of it."""
    signal, n = 100.0, 10_000
    for target in (20.0, 30.0, 40.0, 50.0, 60.0):
        f32, bf16 = snr_guess_step(signal, n, target, 23), snr_guess_step(signal, n, target, 7)
        rounding_share = 2.0**-15 / 12 / 10 ** (-target / 10)  # of the target's noise
        assert bf16 < f32 <= snr_guess_step(signal, n, target)
        assert (bf16 / f32) ** 2 == pytest.approx(1 - min(rounding_share, ROUNDING_SHARE_CAP), rel=1e-6)


def test_the_snr_search_on_zeros_needs_no_step():
    assert dq_quantize_for_snr(np.zeros(100, np.float32), 30.0) == (1.0, None)
    assert snr_guess_step(0.0, 100, 30.0) == 1.0


@pytest.mark.parametrize("dtype_name", ["F32", "BF16", "F16"])
def test_encoding_given_what_a_search_computed_is_encoding_without_it(dtype_name):
    values = np.random.default_rng(4).laplace(0, 0.02, 70_000).astype(np.float32)
    raw = from_float32(values, lookup(dtype_name)).view(np.uint8)
    values = to_float32(raw.view(lookup(dtype_name).word_dtype), lookup(dtype_name))
    symbols = signed_to_unsigned(quantize_dq(values, 0.004), narrow=True)
    reconstructed = reconstruction.reconstruct_dq(symbols, 0.004, dtype_name, values)
    computed = tensor_codec.encode_quantized(raw, dtype_name, 0.004, reconstruction="dq")
    for passed in (
        tensor_codec.encode_quantized(raw, dtype_name, 0.004, reconstruction="dq", symbols=symbols),
        tensor_codec.encode_quantized(
            raw, dtype_name, 0.004, reconstruction="dq", symbols=symbols, reconstructed=reconstructed
        ),
        tensor_codec.encode_quantized(raw, dtype_name, 0.004, reconstruction="dq", values=values.copy()),
    ):
        assert passed[0] == computed[0] and bytes(passed[1]) == bytes(computed[1])
        assert passed[2].tobytes() == computed[2].tobytes() and passed[3:] == computed[3:]
    # the decoded bytes' checksum in their place, taken as soon as they exist
    for reconstructed_given in (None, reconstructed):
        checked = tensor_codec.encode_quantized(
            raw, dtype_name, 0.004, reconstruction="dq", symbols=symbols, reconstructed=reconstructed_given,
            decoded_as=crc32,
        )  # fmt: skip
        assert checked[0] == computed[0] and bytes(checked[1]) == bytes(computed[1])
        assert checked[2] == crc32(computed[2]) and checked[3:] == computed[3:]


def test_the_snr_search_reads_bfloat16_words_as_their_values():
    """The writer's --snr search of a bfloat16 tensor reads its words (with the sum of squares of
    their values given): the step and symbols found on the float32 values."""
    from bslz.codec.measure import max_abs_and_signal

    raw = from_float32(np.random.default_rng(6).laplace(0, 0.02, 150_000).astype(np.float32), lookup("BF16"))
    values = to_float32(raw, lookup("BF16"))

    def search(words_read):
        def run(x, step):
            symbols, (_, signal, noise, _) = tensor_codec.quantize_dq(x, step, "BF16", bfloat16_words=words_read)
            return symbols, signal, noise

        return run

    expected = dq_quantize_for_snr(values, 33.0, search=search(False), mantissa_bits=8)
    signal = max_abs_and_signal(raw, widen=lambda piece: to_float32(piece, lookup("BF16")))[1]
    found = dq_quantize_for_snr(raw, 33.0, search=search(True), mantissa_bits=8, signal=signal)
    assert found[0] == expected[0]
    np.testing.assert_array_equal(found[1], expected[1])


@pytest.mark.parametrize("dtype_name", ["F32", "BF16"])
def test_dq_payload_records_the_gg_fit_of_the_values(dtype_name):
    """The informative GG fit of a dependent-quantization entry is taken from the sums of the
    reconstruction pass: the fit of the values themselves, to float64 rounding."""
    from bslz.codec.gg import fit_generalized_gaussian

    values = np.random.default_rng(5).laplace(0, 0.02, 3 * 2**20 + 5).astype(np.float32)  # several pieces
    raw = from_float32(values, lookup(dtype_name)).view(np.uint8)
    values = to_float32(raw.view(lookup(dtype_name).word_dtype), lookup(dtype_name))
    fields = tensor_codec.encode_quantized(raw, dtype_name, 0.004, reconstruction="dq")[0]
    assert fields["gg"] == pytest.approx(list(fit_generalized_gaussian(values)), rel=1e-9)


def test_the_sampled_slope_is_the_files():
    """`--bits`' slope measured on 1/16 of each tensor (runs across it, payloads scaled with the
    values, tables with the chunks) matches the exact size change of the whole tensors."""
    from types import SimpleNamespace

    from bslz.bits_target import _sampled_slope
    from bslz.codec.dq import quantize_dq_symbols
    from bslz.codec.streams import stream_size_bits

    rng = np.random.default_rng(11)
    tensors = {
        "a": (rng.laplace(size=1 << 20) * 0.02).astype(np.float32),
        "b": (rng.standard_normal(3 << 18) * np.linspace(0.01, 0.05, 3 << 18)).astype(np.float32),  # not stationary
        **{f"small{i}": (rng.standard_normal(147456) * 0.05).astype(np.float32) for i in range(8)},  # one chunk each
    }
    source = SimpleNamespace(tensor_bytes=lambda info: tensors[info.name].view(np.uint8))
    infos = [SimpleNamespace(name=n, numel=v.size, dtype="F32") for n, v in tensors.items()]
    x0, x1 = math.log(0.002), math.log(0.0021)
    exact = sum(
        stream_size_bits(quantize_dq_symbols(v, math.exp(x0))) - stream_size_bits(quantize_dq_symbols(v, math.exp(x1)))
        for v in tensors.values()
    ) / (x1 - x0)
    assert _sampled_slope(source, infos, x0, x1) == pytest.approx(exact, rel=0.01)
    assert _sampled_slope(source, infos, x0, x0) is None


def test_the_bits_search_looks_for_max_abs_once(monkeypatch, tmp_path):
    """--bits knows every candidate's max |w| from its first pass: the files it writes take it from
    there (a bfloat16 tensor's words were scanned for it again, 2 % of a compression), and the file
    is the one written when they look for it."""
    torch = pytest.importorskip("torch")
    import safetensors.torch

    import bslz
    from bslz.codec import dq

    gen = torch.Generator().manual_seed(12)
    tensors = {"w": (torch.randn(300, 400, generator=gen) * 0.02).to(torch.bfloat16), "b": torch.zeros(64)}
    src = tmp_path / "m.safetensors"
    safetensors.torch.save_file(tensors, src)
    looked = bslz.compress_file(src, tmp_path / "looked.bslz", bits=5)

    def scanned(words):
        raise AssertionError("max |w| looked for again")

    monkeypatch.setattr(dq, "max_abs_of_bfloat16_words", scanned)
    known = bslz.compress_file(src, tmp_path / "known.bslz", bits=5)
    assert [t.coding for t in known.tensors] == [t.coding for t in looked.tensors]
    assert "quantized" in {t.coding for t in known.tensors}
    assert (tmp_path / "known.bslz").read_bytes() == (tmp_path / "looked.bslz").read_bytes()


def test_a_missed_file_is_brought_in_by_its_last_tensors(monkeypatch, tmp_path):
    """A first file that misses the tolerance (here: a prediction 0.05 % too large) is brought into
    it by the step of the last tensor(s) in file order: only those are coded again, their step a
    little way from the others', and the file is the one a compression at those steps writes whole."""
    from safetensors.numpy import save_file

    import bslz
    import bslz.api
    import bslz.bits_target as bits_target

    rng = np.random.default_rng(13)
    tensors = {f"w{i:02d}": (rng.laplace(size=(400, 400)) * 0.02 * (1 + i / 12)).astype(np.float32) for i in range(12)}
    src = tmp_path / "m.safetensors"
    save_file(tensors, str(src))
    real_prediction = bits_target.predicted_size_bits
    monkeypatch.setattr(bits_target, "predicted_size_bits", lambda *a: real_prediction(*a) * 1.0005)
    coded = []
    real_encode = bslz.api._encode_tensor
    monkeypatch.setattr(bslz.api, "_encode_tensor", lambda info, *a: coded.append(info.name) or real_encode(info, *a))
    report = bslz.compress_file(src, tmp_path / "bits.bslz", bits=5.0)
    quantized = sum(v.size for v in tensors.values())
    assert -bits_target.BITS_TOLERANCE * quantized <= 8 * report.compressed_bytes - 5.0 * quantized <= 0
    steps = [t.step for t in report.tensors]  # file order
    tail = [name for name, step in zip(tensors, steps) if step != steps[0]]
    assert tail == list(tensors)[len(tensors) - len(tail) :] and 0 < len(tail) < len(tensors) / 2
    assert abs(math.log(steps[-1] / steps[0])) <= bits_target.TAIL_MAX_LOG_STEP
    # the first file codes every tensor (side by side: in any order), later tries the tail alone
    assert sorted(coded[: len(tensors)]) == list(tensors) and set(coded[len(tensors) :]) == set(tail)
    monkeypatch.setattr(bslz.api, "plan_steps", lambda source, options: {t.name: t.step for t in report.tensors})
    bslz.compress_file(src, tmp_path / "whole.bslz", step=1.0)  # at those steps
    assert (tmp_path / "whole.bslz").read_bytes() == (tmp_path / "bits.bslz").read_bytes()


def test_a_tail_whose_step_would_stray_gives_way_to_every_tensors(monkeypatch, tmp_path):
    """Should the tail's step have to move more than TAIL_MAX_LOG_STEP from the others' (here: a
    tail of the last tensor alone, for a prediction 0.5 % too large), every tensor's step is
    searched again: one step for all of them, the file within the tolerance."""
    from safetensors.numpy import save_file

    import bslz
    import bslz.bits_target as bits_target

    rng = np.random.default_rng(14)
    tensors = {f"w{i:02d}": (rng.laplace(size=(400, 400)) * 0.02).astype(np.float32) for i in range(12)}
    src = tmp_path / "m.safetensors"
    save_file(tensors, str(src))
    real_prediction = bits_target.predicted_size_bits
    monkeypatch.setattr(bits_target, "predicted_size_bits", lambda *a: real_prediction(*a) * 1.005)
    monkeypatch.setattr(bits_target, "_tail", lambda candidates, *a: {candidates[-1].name})
    report = bslz.compress_file(src, tmp_path / "bits.bslz", bits=5.0)
    quantized = sum(v.size for v in tensors.values())
    assert -bits_target.BITS_TOLERANCE * quantized <= 8 * report.compressed_bytes - 5.0 * quantized <= 0
    assert len({t.step for t in report.tensors}) == 1


def test_the_bits_search_codes_small_lossless_tensors_once(monkeypatch, tmp_path):
    """The estimate's lossless encodings of small tensors (norms, biases) are the ones its files take:
    each coded once, where a large one (past SMALL_LOSSLESS_BYTES) is coded again by the first file
    (the tail's, written again here, keeps what lies ahead of it); the same file as when they are
    all coded again."""
    from safetensors.numpy import save_file

    import bslz
    import bslz.api
    import bslz.bits_target as bits_target

    rng = np.random.default_rng(14)
    tensors = {f"w{i:02d}": (rng.laplace(size=(400, 400)) * 0.02).astype(np.float32) for i in range(6)}
    tensors |= {f"norm{i}": (1 + rng.normal(size=384) * 0.1).astype(np.float32) for i in range(5)}
    tensors["ids"] = np.arange(20_000, dtype=np.int64)  # 160 KB: past the size kept
    src = tmp_path / "m.safetensors"
    save_file(tensors, str(src))
    real_prediction = bits_target.predicted_size_bits
    monkeypatch.setattr(bits_target, "predicted_size_bits", lambda *a: real_prediction(*a) * 1.0005)  # a tail
    coded = []
    real_encode = bslz.api.encode_lossless
    monkeypatch.setattr(
        bslz.api,
        "encode_lossless",
        lambda raw, dtype, shape: coded.append(tuple(shape)) or real_encode(raw, dtype, shape),
    )
    report = bslz.compress_file(src, tmp_path / "kept.bslz", bits=5.0)
    writes = len({t.step for t in report.tensors if t.step is not None})  # the first file and the tail's
    assert writes == 2 and coded.count((384,)) == 5 and coded.count((20_000,)) == 2
    monkeypatch.setattr(bslz.api, "SMALL_LOSSLESS_BYTES", 0)
    coded.clear()
    bslz.compress_file(src, tmp_path / "coded.bslz", bits=5.0)
    assert coded.count((384,)) == 10 and coded.count((20_000,)) == 2
    assert (tmp_path / "coded.bslz").read_bytes() == (tmp_path / "kept.bslz").read_bytes()
