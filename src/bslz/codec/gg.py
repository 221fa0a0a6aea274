"""Generalized Gaussian (GG) model of a weight tensor: shape fit and bin centroids.

Density, shape nu > 0, scale beta > 0:  p(x) = nu / (2 beta Gamma(1/nu)) * exp(-(|x|/beta)**nu).

The fit is the moment-ratio estimate of DESIGN.md. Centroids (conditional means of X over a bin)
come from regularized incomplete gamma functions written here with `math.lgamma`, so that
scipy stays a test-only dependency. Everything is computed in log space: bins far in the tail
(probability below 1e-308) still get a centroid inside the bin.
"""

import math

import numpy as np

from bslz.codec._jit import njit
from bslz.errors import InvalidArgumentError

NU_MIN = 0.1
NU_MAX = 3.0
FIT_BLOCK_ELEMENTS = 1 << 20  # float64 scratch per block: 8 MiB, however big the tensor
ALL_ZERO_FIT = (2.0, 0.0)  # (nu, beta) returned for an all-zero tensor: a point mass at 0

_GAMMA_EPS = 1e-15  # relative tolerance of the series and the continued fraction
_GAMMA_MAX_ITER = 100_000  # s <= 20 here, so the series needs far fewer; a safety bound only
_TINY = 1e-300  # Lentz's guard against division by zero


def gg_moment_ratio(nu):
    """rho(nu) = Gamma(1/nu) Gamma(3/nu) / Gamma(2/nu)**2 = E[x^2] / E[|x|]^2 of a GG of shape nu."""
    return math.exp(math.lgamma(1.0 / nu) + math.lgamma(3.0 / nu) - 2.0 * math.lgamma(2.0 / nu))


@njit
def _abs_and_square_sums_kernel(flat):
    sum_abs = 0.0
    sum_sq = 0.0
    for i in range(flat.size):
        v = np.float64(flat[i])
        sum_abs += abs(v)
        sum_sq += v * v
    return sum_abs, sum_sq


def _abs_and_square_sums(flat):
    """(sum |x|, sum x^2) in float64, without a float64 copy of x."""
    if flat.dtype in (np.float32, np.float64):  # one pass in a kernel; other dtypes block by block
        return _abs_and_square_sums_kernel(np.ascontiguousarray(flat))
    sum_abs = 0.0
    sum_sq = 0.0
    for start in range(0, flat.size, FIT_BLOCK_ELEMENTS):
        block = flat[start : start + FIT_BLOCK_ELEMENTS].astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # the caller checks the sums
            sum_abs += float(np.sum(np.abs(block)))
            sum_sq += float(np.dot(block, block))
    return sum_abs, sum_sq


def _as_real_flat(x):
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise InvalidArgumentError(f"expected a real numeric array, got dtype {arr.dtype}")
    if arr.size == 0:
        raise InvalidArgumentError("cannot fit a generalized Gaussian to an empty tensor")
    return arr.reshape(-1)


def _scaled_moments(x):
    """(E[|x/scale|], E[(x/scale)^2], scale), accumulated in float64 block by block.

    scale is 1.0 unless squares overflow float64 (values beyond ~1e154); then it is max |x|.
    Raises InvalidArgumentError on empty input or any NaN / infinity.
    """
    flat = _as_real_flat(x)
    sum_abs, sum_sq = _abs_and_square_sums(flat)
    scale = 1.0
    if not (math.isfinite(sum_abs) and math.isfinite(sum_sq)):
        if flat.dtype.kind == "f" and not bool(np.all(np.isfinite(flat))):
            raise InvalidArgumentError("tensor holds NaN or infinity")
        scale = float(np.max(np.abs(flat)))
        sum_abs, sum_sq = _abs_and_square_sums(flat / scale)
    return sum_abs / flat.size, sum_sq / flat.size, scale


def shape_from_moment_ratio(rho, tolerance=1e-12):
    """nu in [NU_MIN, NU_MAX] with gg_moment_ratio(nu) = rho, by bisection; clamped at the ends."""
    if not rho > 0:
        raise InvalidArgumentError(f"moment ratio must be positive, got {rho}")
    if rho >= gg_moment_ratio(NU_MIN):
        return NU_MIN
    if rho <= gg_moment_ratio(NU_MAX):
        return NU_MAX
    lo, hi = NU_MIN, NU_MAX  # rho(nu) decreases: rho(lo) > rho > rho(hi)
    while hi - lo > tolerance:
        mid = 0.5 * (lo + hi)
        if gg_moment_ratio(mid) > rho:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def fit_generalized_gaussian(x):
    """Fit (nu, beta) to the values of x by the uncentred moment ratio E[x^2] / E[|x|]^2.

    x: any real array (float16/32/64 or integers); moments accumulate in float64.
    Returns (nu, beta) as Python floats, nu clamped to [NU_MIN, NU_MAX]; beta in the units of x.
    An all-zero tensor has no shape: it returns ALL_ZERO_FIT = (2.0, 0.0), a point mass at 0,
    for which every bin centroid is taken as the bin midpoint (see gg_bin_centroids).
    Raises InvalidArgumentError on empty input or any NaN / infinity.
    """
    mean_abs, mean_sq, scale = _scaled_moments(x)
    return _fit_from_moments(mean_abs, mean_sq, scale)


def fit_from_sums(count, sum_abs, sum_sq):
    """`fit_generalized_gaussian` of `count` values whose sum |x| and sum x^2 (float64) a caller
    has already taken in a pass of its own; None if the sums are not finite (squares past float64:
    fit the values themselves)."""
    if count <= 0:
        raise InvalidArgumentError("cannot fit a generalized Gaussian to an empty tensor")
    if not (math.isfinite(sum_abs) and math.isfinite(sum_sq)):
        return None
    return _fit_from_moments(sum_abs / count, sum_sq / count, 1.0)


def _fit_from_moments(mean_abs, mean_sq, scale):
    if mean_sq == 0.0:
        return ALL_ZERO_FIT
    nu = shape_from_moment_ratio(mean_sq / (mean_abs * mean_abs))
    beta = scale * math.sqrt(mean_sq) * math.exp(0.5 * (math.lgamma(1.0 / nu) - math.lgamma(3.0 / nu)))
    return nu, beta


# ---- regularized incomplete gamma, in log space -------------------------------------------------


@njit
def _log_gamma_p_series(s, x):
    """log P(s, x) by the power series; accurate for x < s + 1 (x > 0)."""
    term = 1.0 / s
    total = term
    n = 1.0
    for _ in range(_GAMMA_MAX_ITER):
        term *= x / (s + n)
        total += term
        if term < total * _GAMMA_EPS:
            break
        n += 1.0
    return -x + s * math.log(x) - math.lgamma(s) + math.log(total)


@njit
def _log_gamma_q_fraction(s, x):
    """log Q(s, x) by the continued fraction (modified Lentz); accurate for x >= s + 1."""
    b = x + 1.0 - s
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _GAMMA_MAX_ITER):
        an = -i * (i - s)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _GAMMA_EPS:
            break
    return -x + s * math.log(x) - math.lgamma(s) + math.log(h)


@njit
def log_gamma_p_and_q(s, x):
    """(log P(s, x), log Q(s, x)), regularized lower / upper incomplete gamma, s > 0, x >= 0."""
    if x <= 0.0:
        return -np.inf, 0.0
    if x == np.inf:
        return 0.0, -np.inf
    if x < s + 1.0:
        log_p = _log_gamma_p_series(s, x)
        return log_p, math.log1p(-math.exp(log_p))
    log_q = _log_gamma_q_fraction(s, x)
    return math.log1p(-math.exp(log_q)), log_q


@njit
def _log_gamma_mass(s, t_lo, t_hi):
    """log(P(s, t_hi) - P(s, t_lo)) for 0 <= t_lo < t_hi, without cancellation in the tails."""
    log_p_lo, log_q_lo = log_gamma_p_and_q(s, t_lo)
    log_p_hi, log_q_hi = log_gamma_p_and_q(s, t_hi)
    if t_lo >= s:  # both in the upper tail: Q(lo) - Q(hi), factored by Q(lo)
        return log_q_lo + math.log(-math.expm1(log_q_hi - log_q_lo))
    if t_hi <= s:  # both in the lower part: P(hi) - P(lo), factored by P(hi)
        return log_p_hi + math.log(-math.expm1(log_p_lo - log_p_hi))
    mass = 1.0 - math.exp(log_p_lo) - math.exp(log_q_hi)  # straddles the bulk: no tail to lose
    return math.log(mass) if mass > 0.0 else -np.inf


@njit
def _gg_bins_kernel(lower, upper, nu, beta, centroids, log_probabilities):
    """Centroid and log probability of each half-line bin [lower[i], upper[i]) of GG(nu, beta)."""
    s1 = 1.0 / nu
    s2 = 2.0 / nu
    # E[X | a <= X < b] = beta Gamma(2/nu)/Gamma(1/nu) * dP(2/nu) / dP(1/nu), with t = (x/beta)^nu
    log_mean_scale = math.log(beta) + math.lgamma(s2) - math.lgamma(s1)
    for i in range(lower.size):
        a = lower[i]
        b = upper[i]
        t_lo = (a / beta) ** nu
        t_hi = (b / beta) ** nu if b < np.inf else np.inf
        log_m1 = -np.inf
        if t_hi > t_lo:
            log_m1 = _log_gamma_mass(s1, t_lo, t_hi)
        log_probabilities[i] = math.log(0.5) + log_m1  # half the mass lives on this side
        mean = np.nan
        if log_m1 > -np.inf:
            mean = math.exp(log_mean_scale + _log_gamma_mass(s2, t_lo, t_hi) - log_m1)
        if not (mean >= a and mean <= b):  # rounding at a razor-thin bin, or beta = 0
            mean = 0.5 * (a + b) if b < np.inf else a
        centroids[i] = mean


def _check_gg_params(nu, beta):
    if not (math.isfinite(nu) and nu > 0):
        raise InvalidArgumentError(f"GG shape nu must be finite and positive, got {nu}")
    if not (math.isfinite(beta) and beta >= 0):
        raise InvalidArgumentError(f"GG scale beta must be finite and >= 0, got {beta}")


def _check_bins(lower, upper):
    lower = np.ascontiguousarray(lower, dtype=np.float64).reshape(-1)
    upper = np.ascontiguousarray(upper, dtype=np.float64).reshape(-1)
    if lower.shape != upper.shape:
        raise InvalidArgumentError("lower and upper bin edges must have the same length")
    if np.any(np.isnan(lower)) or np.any(np.isnan(upper)):
        raise InvalidArgumentError("bin edges must not be NaN")
    if np.any(lower < 0) or np.any(~(upper > lower)) or np.any(np.isinf(lower)):
        raise InvalidArgumentError("bins must satisfy 0 <= lower < upper <= inf, lower finite")
    return lower, upper


def gg_bins(lower, upper, nu, beta):
    """Centroids and probabilities of half-line bins [lower, upper) under GG(nu, beta).

    lower, upper: 1-D arrays, 0 <= lower < upper <= inf (the GG is symmetric: mirror the result
    for negative bins). Returns (centroids, log_probabilities), float64 arrays of the same length:
    E[X | lower <= X < upper] and log P(lower <= X < upper) (natural log; the mass on x >= 0 is 1/2).
    With beta = 0 (an all-zero fit) each centroid is the bin midpoint and each probability 0.
    """
    _check_gg_params(nu, beta)
    lower, upper = _check_bins(lower, upper)
    centroids = np.empty(lower.size, dtype=np.float64)
    log_probabilities = np.full(lower.size, -np.inf, dtype=np.float64)
    if beta == 0.0:
        centroids[:] = np.where(np.isinf(upper), lower, 0.5 * (lower + upper))
        return centroids, log_probabilities
    _gg_bins_kernel(lower, upper, float(nu), float(beta), centroids, log_probabilities)
    return centroids, log_probabilities


def gg_bin_centroids(lower, upper, nu, beta):
    """E[X | lower <= X < upper] under GG(nu, beta) for each half-line bin; see gg_bins."""
    return gg_bins(lower, upper, nu, beta)[0]
