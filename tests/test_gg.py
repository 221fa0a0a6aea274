"""Generalized-Gaussian fit and bin centroids, checked against scipy (a test-only dependency)."""

import math

import numpy as np
import pytest
from scipy import special, stats

from bslz.codec import gg
from bslz.errors import InvalidArgumentError

mp = pytest.importorskip("mpmath")  # comes with sympy, which torch (a dev dependency) requires


@pytest.mark.parametrize("nu", [0.5, 1.0, 1.5, 2.0])
def test_fit_recovers_gennorm_shape_and_scale(nu):
    beta = 0.03
    x = stats.gennorm.rvs(nu, scale=beta, size=1_000_000, random_state=np.random.default_rng(int(nu * 10)))
    nu_hat, beta_hat = gg.fit_generalized_gaussian(x.astype(np.float32))
    assert abs(nu_hat - nu) <= 0.03 * nu
    assert abs(beta_hat - beta) <= 0.03 * beta


def test_moment_ratio_known_values():
    assert gg.gg_moment_ratio(1.0) == pytest.approx(2.0, rel=1e-13)
    assert gg.gg_moment_ratio(2.0) == pytest.approx(math.pi / 2, rel=1e-13)
    nus = np.linspace(gg.NU_MIN, gg.NU_MAX, 50)
    assert np.all(np.diff([gg.gg_moment_ratio(n) for n in nus]) < 0)  # bisection relies on this


def test_shape_from_moment_ratio_inverts_and_clamps():
    for nu in (0.3, 0.77, 1.0, 2.0, 2.9):
        assert gg.shape_from_moment_ratio(gg.gg_moment_ratio(nu)) == pytest.approx(nu, abs=1e-9)
    assert gg.shape_from_moment_ratio(1e9) == gg.NU_MIN
    assert gg.shape_from_moment_ratio(1.0) == gg.NU_MAX


def test_fit_clamps_at_both_ends():
    sparse = np.zeros(100_000, dtype=np.float32)
    sparse[7] = 1.0  # rho = n: far heavier-tailed than nu = 0.1
    assert gg.fit_generalized_gaussian(sparse)[0] == gg.NU_MIN
    two_point = np.array([-1.0, 1.0] * 50, dtype=np.float32)  # rho = 1: flatter than nu = 3
    nu, beta = gg.fit_generalized_gaussian(two_point)
    assert nu == gg.NU_MAX
    assert beta == pytest.approx(math.sqrt(math.exp(math.lgamma(1 / 3) - math.lgamma(1.0))))


def test_fit_float16_does_not_overflow_and_matches_float64():
    x = (np.random.default_rng(1).laplace(size=10_000) * 20_000).clip(-65_000, 65_000).astype(np.float16)
    assert gg.fit_generalized_gaussian(x) == pytest.approx(gg.fit_generalized_gaussian(x.astype(np.float64)), rel=1e-12)


def test_fit_huge_float64_values():
    x = np.random.default_rng(2).standard_normal(1000)
    nu, beta = gg.fit_generalized_gaussian(x)
    nu_big, beta_big = gg.fit_generalized_gaussian(x * 1e200)  # squares overflow float64
    assert nu_big == pytest.approx(nu, rel=1e-9)
    assert beta_big == pytest.approx(beta * 1e200, rel=1e-9)


@pytest.mark.small
def test_fit_streams_blocks_like_one_pass(monkeypatch):
    x = np.random.default_rng(3).standard_normal(10_007).astype(np.float32)
    whole = gg.fit_generalized_gaussian(x)
    monkeypatch.setattr(gg, "FIT_BLOCK_ELEMENTS", 1000)
    assert gg.fit_generalized_gaussian(x.reshape(1, -1)) == pytest.approx(whole, rel=1e-12)


@pytest.mark.small
def test_fit_all_zero_is_documented_point_mass():
    assert gg.fit_generalized_gaussian(np.zeros((3, 4), dtype=np.float16)) == gg.ALL_ZERO_FIT


@pytest.mark.parametrize(
    "bad", [np.zeros(0), np.array([1.0, np.nan]), np.array([np.inf, 1.0], dtype=np.float32), np.array(["a"])]
)
def test_fit_rejects_empty_non_finite_and_non_numeric(bad):
    with pytest.raises(InvalidArgumentError):
        gg.fit_generalized_gaussian(bad)


@pytest.mark.small
@pytest.mark.parametrize("s", [1 / 3, 0.5, 1.0, 2.0, 6.5, 20.0])
def test_incomplete_gamma_matches_scipy(s):
    for x in (1e-12, 1e-3, 0.2, s, s + 1.0, 3 * s + 5.0, 60.0, 600.0):
        log_p, log_q = gg.log_gamma_p_and_q(s, x)
        assert math.exp(log_p) == pytest.approx(special.gammainc(s, x), rel=1e-12, abs=1e-300)
        assert math.exp(log_q) == pytest.approx(special.gammaincc(s, x), rel=1e-11, abs=1e-300)
    assert gg.log_gamma_p_and_q(s, 0.0) == (-np.inf, 0.0)
    assert gg.log_gamma_p_and_q(s, np.inf) == (0.0, -np.inf)


def _reference_bin(a, b, nu, beta):
    """Centroid and log probability from mpmath's incomplete gamma at 40 digits (tails included)."""
    mp.mp.dps = 40
    t_lo = (mp.mpf(a) / beta) ** nu
    t_hi = (mp.mpf(b) / beta) ** nu if b < np.inf else mp.inf
    mass = mp.gammainc(1 / mp.mpf(nu), t_lo, t_hi, regularized=True)
    mean = beta * mp.gammainc(2 / mp.mpf(nu), t_lo, t_hi) / mp.gammainc(1 / mp.mpf(nu), t_lo, t_hi)
    return float(mean), float(mp.log(mass / 2))


@pytest.mark.small
@pytest.mark.parametrize("nu", [0.5, 1.0, 1.5, 2.0, 3.0])
def test_bin_centroids_and_probabilities_match_reference(nu):
    beta = 0.7
    lower = np.array([0.0, 0.1, 0.35, 1.0, 2.5, 7.0, 0.5, 30.0])
    upper = np.array([0.1, 0.35, 1.0, 2.5, 7.0, 30.0, np.inf, 31.0])
    centroids, log_p = gg.gg_bins(lower, upper, nu, beta)
    for i, (a, b) in enumerate(zip(lower, upper, strict=True)):
        ref_mean, ref_log_p = _reference_bin(a, b, nu, beta)
        assert centroids[i] == pytest.approx(ref_mean, rel=1e-10), (a, b)
        assert log_p[i] == pytest.approx(ref_log_p, rel=1e-10), (a, b)
    gennorm = stats.gennorm(nu, scale=beta)  # scipy's own cdf where it is accurate
    assert np.exp(log_p[:3]) == pytest.approx(gennorm.cdf(upper[:3]) - gennorm.cdf(lower[:3]), rel=1e-10)
    for i in range(3):
        ref = gennorm.expect(lambda x: x, lb=lower[i], ub=upper[i], conditional=True)
        assert centroids[i] == pytest.approx(ref, rel=1e-8)


@pytest.mark.small
def test_centroid_of_whole_half_line_is_mean_abs():
    nu, beta = 1.3, 2.0
    mean_abs = beta * math.exp(math.lgamma(2 / nu) - math.lgamma(1 / nu))
    assert gg.gg_bin_centroids([0.0], [np.inf], nu, beta)[0] == pytest.approx(mean_abs, rel=1e-13)


@pytest.mark.small
def test_far_tail_bins_stay_finite_and_inside():
    centroids, log_p = gg.gg_bins([100.0, 1e4], [101.0, 1e4 + 5.0], 2.0, 1.0)
    assert centroids[0] == pytest.approx(100.0 + 1 / 200, rel=1e-6)  # exponential-like tail: a + 1/(2a)
    assert 1e4 < centroids[1] < 1e4 + 5.0
    assert np.all(np.isfinite(log_p)) and np.all(log_p < -700)


@pytest.mark.small
def test_centroids_are_scale_equivariant():
    lower, upper = np.array([0.2, 1.0]), np.array([1.0, 3.0])
    base = gg.gg_bin_centroids(lower, upper, 0.8, 1.0)
    assert gg.gg_bin_centroids(lower * 1e-3, upper * 1e-3, 0.8, 1e-3) == pytest.approx(base * 1e-3, rel=1e-12)


@pytest.mark.small
def test_zero_scale_gives_midpoints():
    assert list(gg.gg_bin_centroids([0.0, 1.0], [2.0, np.inf], 2.0, 0.0)) == [1.0, 1.0]


@pytest.mark.parametrize(
    "lower, upper, nu, beta",
    [
        ([-1.0], [1.0], 1.0, 1.0),
        ([1.0], [1.0], 1.0, 1.0),
        ([2.0], [1.0], 1.0, 1.0),
        ([np.nan], [1.0], 1.0, 1.0),
        ([0.0, 1.0], [1.0], 1.0, 1.0),
        ([0.0], [1.0], 0.0, 1.0),
        ([0.0], [1.0], 1.0, -1.0),
        ([0.0], [1.0], 1.0, np.inf),
    ],
)
def test_bins_reject_bad_arguments(lower, upper, nu, beta):
    with pytest.raises(InvalidArgumentError):
        gg.gg_bins(lower, upper, nu, beta)
