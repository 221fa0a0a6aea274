"""The step searches behind --bits and --snr (`bslz.lossy`): the solver, and the floor of --bits."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bslz.codec.rate import symbols_rate_bits
from bslz.codec.streams import DEFAULT_CHUNK_SIZE
from bslz.errors import InvalidArgumentError
from bslz.lossy import ZERO_CHUNK_BITS, _solve


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
    report = bslz.compress_file(src, tmp_path / "m.bslz", bits=0.05)
    assert report.bits_per_float_param <= 0.05
