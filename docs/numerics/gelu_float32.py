"""GELU (erf form) in float32 without erf: the design of GELU<float> (csrc/include/glo/activations.h), fitted and
checked here. The functor uses these p and P (the erf polynomial for a < 0.75 and x > -0.35), and for 16-bit device
storage a degree-6 p (fit_erfc_p(6): 7.8e-6 relative) without the erf polynomial; tests/test_accuracy.py sweeps the
built kernels.

    python docs/numerics/gelu_float32.py          (numpy, mpmath; about a minute)
    python docs/numerics/gelu_float32.py --table  (the AVX-512 loops' tables, as C++: csrc/cpu/avx512_math.h)

The CPU kernels on AVX-512 hosts use another form, without division (fit_table, below): tables of 32 polynomial
pieces of |x| picked per lane by vpermt2ps, of Phi(-|x|) and the derivative at -|x| for |x| < 4 (no exp at all), and
of erfc(|x| / sqrt 2) exp(x^2 / 2) / 2 for the other lanes, times exp(-x^2 / 2). tests/test_cpu_avx512.py sweeps
those kernels against float64.

gelu(x) = x Phi(x), Phi the standard normal CDF. torch's float32 kernel forms 1 + erf(x / sqrt(2)), which cancels for
x < 0 (gelu(-6) is -0.0 there; the true value is -5.9e-9) and gives NaN at +inf. The form below is accurate to a few
float32 ulp everywhere, vectorizes (one exp, two divisions, FMAs), and needs no libm erf:

  * |x| small and x > -0.35 (a = |x| / sqrt 2 < 0.75): Phi = 1/2 + 1/2 erf(a sign x), erf(a) = a P(a^2), P of degree 5
    (fitted below, 0.02 u);
  * otherwise erfc(a) = exp(-a^2) R(a), R(a) = (1 + p(q)) / (1 + 2a), q = (a - 2) / (a + 2) in [-1, 0.67] (a <= 10.06,
    past which erfc(a) < 2^-149), p of degree 10 (fitted below, 0.16 u of 1 + p): Phi = erfc(a) / 2 for x < 0,
    1 - erfc(a) / 2 for x > 0. exp(-a^2) is exp(-x^2 / 2) from x * x and its FMA residual (never from a rounded a,
    whose error exp would multiply by 2 a^2);
  * for x < 0 the products are ordered so that exp(-x^2/2) comes last: y = ((x / 2) R) E, dy/dx = (R / 2 + x c) E
    (c = 1 / sqrt(2 pi)), so subnormal results lose no more than their own rounding.

Measured here (float32 arithmetic emulated; exp correctly rounded; the CPU's exp_f32 adds about 1 ulp): gelu within
4 ulp on [-14.5, 10]; its derivative within 5.6 ulp for normal results, except on [-2, -0.5] around its zero
(x = -0.7518), where the error is a few ulp of the derivative's O(1) terms (up to 20 ulp of the result), as for
SiLU's.
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 30
F32 = np.float32
A_MAX = 10.06  # erfc(a) underflows float32 beyond
A_SMALL = 0.75  # the erf polynomial below this a (and x > -0.35)
C = 1 / np.sqrt(2 * np.pi)


def _cheb(lo, hi, n):
    k = np.arange(n)
    return lo + (hi - lo) * (1 - np.cos(np.pi * (k + 0.5) / n)) / 2


def fit_erfc_p(deg=10):
    """p with (1 + 2a) exp(a^2) erfc(a) = 1 + p(q), least squares in the relative error of 1 + p."""
    q_max = (A_MAX - 2) / (A_MAX + 2)
    qs = _cheb(-1.0, q_max, 600)
    a = 2 * (1 + qs) / (1 - qs)
    ys = np.array([float((1 + 2 * mp.mpf(v)) * mp.exp(mp.mpf(v) ** 2) * mp.erfc(mp.mpf(v)) - 1) for v in a])
    w = 1 / (1 + ys)
    c, *_ = np.linalg.lstsq(np.vander(qs, deg + 1) * w[:, None], ys * w, rcond=None)
    return c


def fit_erf_small(deg=5):
    """P with erf(a) = a P(a^2) on [0, A_SMALL], least squares in the relative error."""
    t = _cheb(0.0, A_SMALL**2, 400)
    ys = np.array([float(mp.erf(mp.sqrt(v)) / mp.sqrt(v)) for v in t])
    c, *_ = np.linalg.lstsq(np.vander(t, deg + 1) / ys[:, None], np.ones_like(ys), rcond=None)
    return c


def _fma(a, b, c):
    return (a.astype(np.float64) * b.astype(np.float64) + np.asarray(c, dtype=np.float64)).astype(F32)


def _horner(coeffs, t):
    p = np.full_like(t, coeffs[0])
    for ck in coeffs[1:]:
        p = _fma(p, t, ck)
    return p


def gelu_f32(x, cp, cs):
    """(gelu(x), gelu'(x)) in emulated float32, as the functor will compute them."""
    x = x.astype(F32)
    a = np.abs(x) * F32(1 / np.sqrt(2))
    small = (a < F32(A_SMALL)) & (x > F32(-0.35))
    # erf path
    a0 = x * F32(1 / np.sqrt(2))
    half_erf = (F32(0.5) * a0) * _horner(cs, a0 * a0)
    # erfc path
    q = (a - F32(2)) / (a + F32(2))
    r = (F32(1) + _horner(cp, q)) / _fma(np.full_like(a, F32(2)), a, F32(1))
    s = x * x
    lo = _fma(x, x, -s)
    e = np.exp(-(s * F32(0.5)).astype(np.float64)).astype(F32)
    e = _fma(e, -(lo * F32(0.5)), e)  # exp(-x^2/2)
    tail = a <= F32(A_MAX)
    h = np.where(tail, (F32(0.5) * e) * r, F32(0))  # Phi(-|x|)
    cdf = np.where(small, F32(0.5) + half_erf, np.where(x < 0, h, F32(1) - h))
    y = np.where(small, _fma(x, half_erf, F32(0.5) * x),
                 np.where(x < 0, np.where(tail, ((F32(0.5) * x) * r) * e, x * F32(0)), x * cdf))
    xc = x * F32(C)
    dy = np.where((x < 0) & ~small, (F32(0.5) * r + xc) * e, _fma(xc, e, cdf))
    dy = np.where(tail, dy, np.where(x < 0, x * F32(0), F32(1) + x * F32(0)))  # NaN at +-inf, as torch's
    return y, dy


# ---- The AVX-512 loops' form (csrc/cpu/avx512_math.h, glo::avx512::gelu_table) ----
# A function of |x| in 32 pieces of t = |x| k centred on the integers (piece 0: t in [0, 1/2], piece i:
# [i - 1/2, i + 1/2]; |x| clamped below x_max, k the largest float with x_max k < 31.5), each a polynomial of degree 5
# in v = t - i (|v| <= 1/2) whose constant term is a float pair c0 + c0_lo: evaluated with FMAs, the last step
# s = fma(p, v, c0_lo), then c0 + s; the coefficients picked from two registers by vpermt2ps (no division, no
# gather). A table's rows: c5, c4, c3, c2, c1, c0, c0_lo. The wide form's H(|x|) = erfc(|x| / sqrt 2) exp(x^2 / 2) / 2
# (so that Phi(-|x|) = H exp(-x^2 / 2)) up to TABLE_X.
TABLE_PIECES, TABLE_DEG = 32, 5
TABLE_X = F32(14.5)  # exp(-x^2 / 2) rounds to 0 in float32 beyond (x^2 / 2 > 104.9)


def _table_k_for(x_max):
    """The largest float k with x_max * k (rounded) below 31.5: the pieces' scale."""
    k = F32((TABLE_PIECES - 0.5) / float(x_max))
    while F32(F32(x_max) * k) >= TABLE_PIECES - 0.5:
        k = np.nextafter(k, F32(0))
    return k


TABLE_K = _table_k_for(TABLE_X)


def _half_erfcx(ax):
    return np.array([float(mp.erfc(mp.mpf(float(v)) / mp.sqrt(2)) * mp.exp(mp.mpf(float(v)) ** 2 / 2) / 2)
                     for v in ax])


# The fast form, for vectors whose |x| are all below FAST_X: the same 32 pieces over [0, FAST_X] of Phi(-|x|) itself
# (P) and of the derivative at -|x|, D = Phi(-|x|) - |x| phi(x) (so that the derivative is D for x < 0 and 1 - D for
# x > 0: d(x) + d(-x) = 1), no exp at all. D crosses zero at |x| = 0.7518: it is fitted in the error relative to its
# terms' magnitude P + |x| phi, which is what bounds the derivative's error anyway.
FAST_X = F32(4.0)


FAST_K = _table_k_for(FAST_X)


def _phi_minus(ax):
    return np.array([float(mp.ncdf(-mp.mpf(float(v)))) for v in ax])


def _d_minus(ax):
    return np.array([float(mp.ncdf(-mp.mpf(float(v))) - mp.mpf(float(v)) * mp.npdf(mp.mpf(float(v)))) for v in ax])


def _d_scale(ax):
    return np.array([float(mp.ncdf(-mp.mpf(float(v))) + mp.mpf(float(v)) * mp.npdf(mp.mpf(float(v)))) for v in ax])


def fit_table(fun, k, scale=None):
    """[7, 32] float32: per piece of t = |x| k, a least-squares fit in the error relative to scale (default: the
    function itself), its coefficients rounded to float32 from the highest power down, the lower ones refitted after
    each rounding; c0 kept as a float pair."""
    rows = np.zeros((TABLE_DEG + 2, TABLE_PIECES), dtype=F32)
    for i in range(TABLE_PIECES):
        v = _cheb(0.0 if i == 0 else -0.5, 0.5, 200)
        ax = (i + v) / float(k)
        y = fun(ax)
        w = 1 / np.abs(scale(ax) if scale else y)
        c, *_ = np.linalg.lstsq(np.vander(v, TABLE_DEG + 1) * w[:, None], y * w, rcond=None)
        for j in range(TABLE_DEG):
            rows[j, i] = F32(c[j])
            rest = y - np.polyval(np.concatenate([rows[: j + 1, i].astype(np.float64), np.zeros(TABLE_DEG - j)]), v)
            c[j + 1:], *_ = np.linalg.lstsq(np.vander(v, TABLE_DEG - j) * w[:, None], rest * w, rcond=None)
        rows[TABLE_DEG, i] = F32(c[TABLE_DEG])
        rows[TABLE_DEG + 1, i] = F32(c[TABLE_DEG] - np.float64(rows[TABLE_DEG, i]))
    return rows


def fit_erfc_table():
    return fit_table(_half_erfcx, TABLE_K)


def table_eval(rows, k, x_max, x):
    """A table's function of |x| in emulated float32, as avx512_math.h computes it."""
    axc = np.minimum(np.abs(x.astype(F32)), F32(x_max))
    n = np.rint(axc.astype(np.float64) * np.float64(k))  # fma(axc, k, 1.5 2^23): the exact product, rounded
    idx = n.astype(np.int64)
    v = (axc.astype(np.float64) * np.float64(k) - n).astype(F32)  # fmsub: exact, rounded once
    p = rows[0, idx]
    for j in range(1, TABLE_DEG):
        p = _fma(p, v, rows[j, idx])
    return rows[TABLE_DEG, idx] + _fma(p, v, rows[TABLE_DEG + 1, idx])


def _print_rows(name, rows, k, x_max, fun, scale=None):
    xs = np.linspace(0, float(x_max), 4001).astype(F32)
    ref = fun(xs.astype(np.float64))
    got = table_eval(rows, k, x_max, xs).astype(np.float64)
    unit = np.spacing(np.abs(scale(xs.astype(np.float64)) if scale else ref).astype(F32)).astype(np.float64)
    err = (np.abs(got - ref) / unit).max()
    print(f"// {name}: k = {float(k)!r}, |x| <= {float(x_max)}; within {err:.2f} ulp"
          f"{' of P + |x| phi' if scale else ''} at {len(xs)} points")
    print(f"alignas(64) inline constexpr float {name}[{TABLE_DEG + 2}][{TABLE_PIECES}] = {{")
    for row in rows:
        vals = [f"{float(c):.9e}f" for c in row]
        lines = [", ".join(vals[i:i + 4]) for i in range(0, len(vals), 4)]
        print("    {" + ",\n     ".join(lines) + "},")
    print("};")


def print_table():
    print("// generated by docs/numerics/gelu_float32.py --table")
    _print_rows("kGeluTableH", fit_erfc_table(), TABLE_K, TABLE_X, _half_erfcx)
    _print_rows("kGeluTableP", fit_table(_phi_minus, FAST_K), FAST_K, FAST_X, _phi_minus)
    _print_rows("kGeluTableD", fit_table(_d_minus, FAST_K, _d_scale), FAST_K, FAST_X, _d_minus, _d_scale)


def main():
    cp, cs = fit_erfc_p(), fit_erf_small()
    print("p (erfc, in q), highest power first:", [float(F32(v)) for v in cp])
    print("P (erf, in a^2), highest power first:", [float(F32(v)) for v in cs])
    rng = np.random.default_rng(0)
    xs = np.concatenate([np.linspace(-14.5, 10, 20001), rng.uniform(-14.5, 10, 10000), -np.logspace(-30, 1.16, 2000),
                         np.logspace(-30, 1, 2000)]).astype(F32)
    y, dy = gelu_f32(xs, cp.astype(F32), cs.astype(F32))
    ref = np.array([(float(mp.mpf(float(v)) * mp.ncdf(float(v))),
                     float(mp.ncdf(float(v)) + mp.mpf(float(v)) * mp.npdf(float(v)))) for v in xs])

    def ulps(ours, r):
        ulp = np.maximum(np.spacing(np.abs(r.astype(F32))).astype(np.float64), 2.0**-149)
        return np.abs(ours.astype(np.float64) - r) / ulp

    uy, ud = ulps(y, ref[:, 0]), ulps(dy, ref[:, 1])
    normal = np.abs(ref[:, 1]) > 2.0**-126
    for lo, hi in ((-14.5, -10), (-10, -5), (-5, -2), (-2, -0.5), (-0.5, 0), (0, 0.5), (0.5, 2), (2, 5), (5, 10)):
        m = (xs >= lo) & (xs < hi)
        away = m & normal & (np.abs(xs + 0.7518) > 0.05)
        print(f"x in [{lo}, {hi}): gelu within {uy[m].max():.2f} ulp, gelu' within {ud[away].max():.2f} ulp")


if __name__ == "__main__":
    import sys

    print_table() if "--table" in sys.argv[1:] else main()
