"""The reference update as one fused pass over a float32 CPU tensor (numba).

torch spends seven passes over memory on p - s * sign(p) * (|p| + eps)^(nu - 1) (abs, add, pow,
copysign, compare, fill, add) and its pow alone costs as much as four; this kernel reads and writes
each weight once. The power is exp(m * ln a) with short polynomials that LLVM vectorizes (numba's
`math.pow` is a scalar libm call: 16 ns an element, measured). Its relative error against float64
is below 1e-6 for eps = 1 and below 2e-5 in the worst case (eps = 0 and tiny weights, where
|m * ln a| is large), far under float32's spacing of the weight the update is added to.

`error_model="numpy"`: with numba's default Python error model, a float division checks for zero
and the loop does not vectorize (7x slower, measured).
"""

import math

import numba
import numpy as np

F = np.float32
LN2 = F(math.log(2.0))
INV_LN2 = F(1.0 / math.log(2.0))
SQRT2 = F(math.sqrt(2.0))
ROUND_MAGIC = F(1.5 * 2.0**23)  # z + ROUND_MAGIC holds round(z) in its low mantissa bits
ROUND_MAGIC_BITS = np.int32(ROUND_MAGIC.view(np.int32))
ZERO, HALF, ONE, TWO = F(0.0), F(0.5), F(1.0), F(2.0)
# exp(z) clamped so that 2^n stays a normal float32 (n in -126..127); below, the power is taken as 0
Z_MIN, Z_MAX = F(-126.4 * math.log(2.0)), F(127.4 * math.log(2.0))
# ln f = 2 atanh(t), t = (f - 1) / (f + 1), |t| <= 0.172 for f in [sqrt(1/2), sqrt(2)]
L3, L5, L7, L9 = F(1 / 3), F(1 / 5), F(1 / 7), F(1 / 9)
# exp r, |r| <= ln(2) / 2
E2, E3, E4, E5, E6, E7 = F(1 / 2), F(1 / 6), F(1 / 24), F(1 / 120), F(1 / 720), F(1 / 5040)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def rate_step_range(p, lo, hi, m, scale, eps, floor):
    """p[lo:hi] <- p - scale * sign(p) * max(|p| + eps, floor)^m, exact zeros left at zero."""
    m, scale, eps, floor = F(m), F(scale), F(eps), F(floor)
    q = p[lo:hi]  # a slice and range(size): an index known >= 0 keeps the loop vectorized
    for i in range(q.size):
        x = q[i]
        a = max(abs(x) + eps, floor)
        # ln a = e ln 2 + ln f, with a = 2^e f and f in [sqrt(1/2), sqrt(2))
        bits = F(a).view(np.int32)
        e = F(((bits >> 23) & 0xFF) - 127)
        f = np.int32((bits & 0x7FFFFF) | 0x3F800000).view(np.float32)
        big = f > SQRT2
        f = f * HALF if big else f
        e = e + ONE if big else e
        t = (f - ONE) / (f + ONE)
        t2 = t * t
        ln_f = TWO * t * (ONE + t2 * (L3 + t2 * (L5 + t2 * (L7 + t2 * L9))))
        z_exact = m * (e * LN2 + ln_f)
        z = min(max(z_exact, Z_MIN), Z_MAX)
        # exp z = 2^n exp r, n = round(z / ln 2)
        n_magic = z * INV_LN2 + ROUND_MAGIC
        r = z - (n_magic - ROUND_MAGIC) * LN2
        exp_r = ONE + r * (ONE + r * (E2 + r * (E3 + r * (E4 + r * (E5 + r * (E6 + r * E7))))))
        two_n = np.int32((F(n_magic).view(np.int32) - ROUND_MAGIC_BITS + 127) << 23).view(np.float32)
        power = exp_r * two_n if z_exact >= Z_MIN else ZERO  # below float32's normal range: 0
        step = scale * F(math.copysign(power, x))
        q[i] = x - step if x != ZERO else x
