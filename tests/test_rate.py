import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bslz.codec import rate, streams
from bslz.codec.quantize import quantize
from bslz.codec.stream_plan import CHUNK_TABLE_BITS, ORDER_BITS


def laplacian(n, seed=0, sparsity=0.0):
    rng = np.random.default_rng(seed)
    x = rng.laplace(0, 0.02, n).astype(np.float32)
    x[rng.random(n) < sparsity] = 0
    return x


@pytest.mark.parametrize("mode", ["auto", "eg", "zero_run"])
@given(
    n=st.integers(1, 3000),
    step=st.floats(1e-3, 0.1),
    dead_zone=st.floats(0.2, 0.5),
    sparsity=st.sampled_from([0.0, 0.5, 0.95]),
    seed=st.integers(0, 100),
)
def test_rate_equals_the_bits_the_encoder_writes(mode, n, step, dead_zone, sparsity, seed):
    x = laplacian(n, seed, sparsity)
    options = dict(mode=mode, chunk_size=512, block_size=64)
    predicted = rate.tensor_rate_bits(x, step, dead_zone, **options)
    enc = streams.encode_stream(rate.unsigned_symbols(quantize(x, step, dead_zone)), **options)
    plan = enc.plan
    written = enc.payload.size * 8 + CHUNK_TABLE_BITS * plan.num_chunks + ORDER_BITS * len(plan.orders)
    assert predicted == written
    np.testing.assert_array_equal(
        streams.decode_stream(enc), rate.unsigned_symbols(quantize(x, step, dead_zone)).astype(np.uint64)
    )


@pytest.mark.small
def test_rate_falls_as_the_step_grows():
    x = laplacian(20000)
    bits = [rate.bits_per_parameter(x, step) for step in (0.001, 0.004, 0.016, 0.064)]
    assert bits == sorted(bits, reverse=True) and bits[-1] < 1.5 < bits[0]
