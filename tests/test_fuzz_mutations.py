"""Mutated valid files (bit flips, byte noise, truncation, splices, hostile header fields), driven by
hypothesis: every input gives a `BslzError` or exactly the bytes that were written, never another
exception. The default profile keeps this to a few seconds; HYPOTHESIS_PROFILE=ci / expensive run
more. Longer, coverage-guided runs: tests/fuzz/harness.py. Inputs the fuzzers found are replayed
from tests/fuzz/regressions/.
"""

import pathlib
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bslz import BslzError
from fuzz import corpus

REGRESSIONS = pathlib.Path(__file__).parent / "fuzz" / "regressions"
SEEDS = corpus.seed_files()
GROUPS = sorted(SEEDS)
EXPECTED = {name: data for _, expected in SEEDS.values() for name, data in expected.items()}
# Examples per test: a multiple of the profile's count (60 by default, more under ci / expensive).
SCALE = 10


def scaled(factor=SCALE):
    return settings(
        max_examples=settings().max_examples * factor,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as d:
        yield pathlib.Path(d) / "input.bslz"


def check(path, blob):
    path.write_bytes(blob)
    corpus.check_container(path, EXPECTED)


@scaled()
@given(group=st.sampled_from(GROUPS), data=st.data())
def test_bit_flips(scratch, group, data):
    blob = bytearray(SEEDS[group][0])
    for bit in data.draw(st.lists(st.integers(0, 8 * len(blob) - 1), min_size=1, max_size=4)):
        blob[bit // 8] ^= 0x80 >> (bit % 8)
    fix = data.draw(st.booleans())
    check(scratch, corpus.fix_checksums(bytes(blob)) if fix else bytes(blob))


@scaled()
@given(group=st.sampled_from(GROUPS), data=st.data())
def test_byte_noise(scratch, group, data):
    blob = bytearray(SEEDS[group][0])
    pos = data.draw(st.integers(0, len(blob) - 1))
    noise = data.draw(st.binary(min_size=1, max_size=32))
    blob[pos : pos + len(noise)] = noise
    check(scratch, corpus.fix_checksums(bytes(blob)) if data.draw(st.booleans()) else bytes(blob))


@scaled()
@given(group=st.sampled_from(GROUPS), data=st.data())
def test_truncation_at_random_points(scratch, group, data):
    """Any proper prefix: refused on open as truncated (the tiling leaves no slack)."""
    from bslz import TruncatedError
    from bslz.formats.container import ContainerReader

    blob = SEEDS[group][0]
    cut = data.draw(st.integers(0, len(blob) - 1))
    scratch.write_bytes(blob[:cut])
    with pytest.raises(TruncatedError):
        ContainerReader(scratch)


@scaled()
@given(a=st.sampled_from(GROUPS), b=st.sampled_from(GROUPS), data=st.data())
def test_splices(scratch, a, b, data):
    first, second = SEEDS[a][0], SEEDS[b][0]
    cut_a = data.draw(st.integers(0, len(first)))
    cut_b = data.draw(st.integers(0, len(second)))
    blob = first[:cut_a] + second[cut_b:]
    check(scratch, corpus.fix_checksums(blob) if data.draw(st.booleans()) else blob)


@scaled()
@given(group=st.sampled_from(GROUPS), seed=st.integers(0, 2**64 - 1))
def test_structured_mutations(scratch, group, seed):
    """The fuzz harness's mutation stack (hostile header values, checksums fixed half the time)."""
    rng = np.random.default_rng(seed)
    other = SEEDS[GROUPS[int(rng.integers(len(GROUPS)))]][0]
    check(scratch, corpus.mutate(SEEDS[group][0], rng, other))


@scaled(2)
@given(blob=st.binary(max_size=512))
def test_arbitrary_bytes(scratch, blob):
    check(scratch, blob)
    check(scratch, corpus.PREFIX.pack(corpus.MAGIC, 1, 0, 0, len(blob)) + blob)


@scaled(2)
@given(blob=st.binary(max_size=256))
def test_arbitrary_safetensors(scratch, blob):
    """The compressor's input parser on hostile bytes, with a plausible length prefix or without."""
    path = scratch.with_suffix(".safetensors")
    for candidate in (blob, len(blob).to_bytes(8, "little") + blob):
        path.write_bytes(candidate)
        corpus.check_safetensors(path)


REGRESSION_FILES = sorted(REGRESSIONS.glob("*.bslz")) + sorted(REGRESSIONS.glob("*.safetensors"))


@pytest.mark.small
@pytest.mark.parametrize("path", REGRESSION_FILES, ids=[p.name for p in REGRESSION_FILES])
def test_regressions(path, tmp_path):
    """Inputs a fuzzer once found a bug with: each now a BslzError or a correct decode."""
    target = tmp_path / path.name
    target.write_bytes(path.read_bytes())
    if path.suffix == ".bslz":
        corpus.check_container(target, EXPECTED)
    else:
        corpus.check_safetensors(target)


def test_seed_files_decode():
    """The seeds themselves are valid and cover every coding and stream mode."""
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "f.bslz"
        for blob, expected in SEEDS.values():
            path.write_bytes(blob)
            assert corpus.check_container(path, expected) == len(expected)
    tensors = corpus.seed_tensors()
    kinds = {(t[3]["coding"], t[3].get("mode"), t[3].get("reconstruction")) for t in tensors}
    for want in [("raw", None, None), ("float", None, None), ("int", "eg", None), ("int", "zero_run", None)]:
        assert want in kinds
    assert {("int", "rans", None), ("quantized", "eg", "midpoint"), ("quantized", "eg", "gg")} <= kinds
    assert {("quantized", "zero_run", "gg"), ("quantized", "rans", "gg")} <= kinds
    try:
        corpus.check_container(pathlib.Path("/nonexistent/never.bslz"))
    except (BslzError, OSError):
        pass
