"""Element math of the Triton kernels: one @triton.jit forward / backward pair per activation, and the transcendentals
they are written with. Each pair mirrors a functor of csrc/include/glo/activations.h (named beside it); keep the three
implementations (C++ functors, these, glo_kernels/reference.py) in step.

The element-wise kernels of glo_kernels/triton/kernels.py take a pair as tl.constexpr arguments (FWD, BWD) and call it
on opmath values:
    <name>_forward(x, a, a2, OPMATH, LIBDEVICE, FAST16) -> y
    <name>_backward(dy, saved, a, a2, OPMATH, LIBDEVICE) -> dx
where `a` and `a2` are the op's scalar parameters in opmath (ELU's alpha; Softplus's beta and threshold; 0 where the
op has none), `saved` the tensor the op's
backward reads (its input or its output: GLO_UNARY_OPS of csrc/include/glo/op_list.h says which), LIBDEVICE whether
libdevice is there (a GPU, not the interpreter) and FAST16 whether the result is stored in 16 bits on an NVIDIA GPU
(the cheaper forms below may then be used). `<name>` is the element function the C++ glue names (Factory::name() in
csrc/include/glo/op_impls.h: the op's name, or elu_from_result); unary_pair(name) finds the pair by these names.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice


# ---------------------------------------------------------------------------------------------------------------
# Scalar parameters.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _slope(slope, OPMATH: tl.constexpr, NEG_ZERO: tl.constexpr):
    """A scalar argument (a slope, ELU's alpha) in opmath. NEG_ZERO: the value is -0.0, made from its bits (a float argument of value 0 becomes the
    constant +0.0 in the Triton interpreter, and x * -0.0 differs from x * 0.0 in the sign of zero)."""
    if NEG_ZERO:
        s = tl.full([], -2147483648, tl.int32).to(tl.float32, bitcast=True).to(OPMATH)
    else:
        s = tl.full([], slope, OPMATH)
    return s


# ---------------------------------------------------------------------------------------------------------------
# Transcendentals. The functors call expf/expm1f/tanhf (exp/expm1/tanh for double); here exp is _exp, and expm1 and
# tanh are written with it, as below.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _exp(x, LIBDEVICE: tl.constexpr):
    """exp(x): the GPU backend's libdevice exp (accurate, as C++'s expf/exp), or tl.exp in the interpreter."""
    if LIBDEVICE:
        r = libdevice.exp(x)
    else:
        r = tl.exp(x)
    return r


@triton.jit
def _div(a, b, OPMATH: tl.constexpr):
    """a / b rounded to nearest (float32 '/' may be approximate on a GPU; float64 '/' is IEEE)."""
    if OPMATH == tl.float32:
        r = tl.math.div_rn(a, b)
    else:
        r = a / b
    return r


@triton.jit
def _expm1_series(x, N: tl.constexpr, OPMATH: tl.constexpr):
    """x * (1 + x/2 * (1 + x/3 * (... * (1 + x/N)))): expm1(x) to N terms; the constants 1/k in OPMATH (a bare
    Python float would be rounded to float32 first, also in float64 math)."""
    p = tl.full(x.shape, 1.0, OPMATH)
    for k in tl.static_range(N, 1, -1):
        p = 1.0 + x * p * tl.full([], 1.0 / k, OPMATH)
    return x * p


@triton.jit
def _expm1(x, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """expm1(x) for every x (+-0.0, +-inf and NaN included), within ~2 ulp of the exact value.

    On a GPU (LIBDEVICE): libdevice's expm1, as C++'s expm1f / expm1. In the interpreter (no libdevice):
    exp(x) - 1 cancels for small |x| (it is 0 for |x| below 2^-25 resp. 2^-54), so for |x| < 0.7,
    expm1(x) = x * (1 + x/2 * (1 + x/3 * (1 + ... (1 + x/N)))), its Taylor series cut where the rest is below half an
    ulp (N = 10 for float32, 16 for float64; 0.7^(N+1) / (N+1)! < 2^-31 resp. 2^-56). For x <= -0.7, exp(x) <= 0.4966
    and exp(x) - 1 is accurate (the error of exp(x) shrinks by exp(x) / (1 - exp(x)) < 1 relative to the result); for
    x >= 0.7, exp(x) >= 2.01 and it grows by exp(x) / (exp(x) - 1) < 2 at most. +-0.0 gives itself, NaN NaN.
    """
    if LIBDEVICE:
        r = libdevice.expm1(x)  # on a GPU: libdevice's expm1f / expm1 (1 ulp), as the C++ functors' expm1f
    else:
        if OPMATH == tl.float32:
            small = _expm1_series(x, 10, OPMATH)
        else:
            small = _expm1_series(x, 16, OPMATH)
        big = _exp(x, LIBDEVICE) - 1.0
        r = tl.where(tl.abs(x) < 0.7, small, big)
    return r


@triton.jit
def _tanh(x, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """tanh(x): libdevice's on a GPU (LIBDEVICE); in the interpreter
    sign(x) * -t / (t + 2) with t = expm1(-2|x|), within ~2 ulp for all x: tanh(x) ~ x for tiny |x|
    (t = -2|x| exactly), +-1 for large |x| (t = -1); +-0.0 and NaN give x."""
    if LIBDEVICE:
        out = libdevice.tanh(x)  # on a GPU: libdevice's tanhf / tanh (2 ulp), as the C++ functors' tanhf
    else:
        t = _expm1(-2.0 * tl.abs(x), OPMATH, LIBDEVICE)
        r = _div(-t, t + 2.0, OPMATH)
        out = tl.where(x < 0.0, -r, tl.where(x > 0.0, r, x))
    return out


# ---------------------------------------------------------------------------------------------------------------
# Cheaper float32 forms for 16-bit results, on a GPU only (FAST16 below: LIBDEVICE and a bfloat16/float16 output).
# Each is within 1.2e-6 relative of the exact value (bounds below), far below half an ulp of bfloat16 (2^-9) or
# float16 (2^-11), where libdevice's 1-2 ulp of float32 cost 2-3x more instructions. The float32 and float64 kernels
# and the interpreter keep the forms above. Every exp argument is <= 0 or NaN (the callers pass -|x|, min(x, 0)): no
# overflow, exp's result lies in [0, 1] (PELU's forward also passes u = x / b of x >= 0, whose results it does not
# select). PTX approximations used (max errors from the PTX ISA): ex2.approx.f32 2 ulp
# (the "2" of CUDA's __expf bound 2 + floor(1.173 |x|) ulp; the second term is the rounding of t = x log2(e)),
# div.approx.f32 2 ulp for divisors in [2^-126, 2^126] (ours are in [1, 2]).
#   exp, precise (_exp16(x, True); sigmoid, PELU's backward, where exp(x) itself is the result's factor, down to
#     bfloat16's subnormals at x ~ -92): t = x log2(e) split as t_hi = fl(x * LOG2E_HI) and its remainder
#     c = (x LOG2E_HI - t_hi) + x LOG2E_LO (an FMA gives the first term exactly), exp(x) = ex2(t_hi) (1 + c ln2),
#     ex2 without flush to zero (subnormal results such as exp(-90) = 8.2e-40 are kept); x is first clamped to >= -104
#     keeping NaN (max.NaN: exp(-104) < 2^-150 rounds to 0 anyway, and c of x = -inf would be inf - inf). Relative
#     error <= 2 ulp + 2^-24 (c's own error, |c| < 2^-17, and the last FMA) < 3e-7.
#   exp, plain (_exp16(x, False); expm1 and tanh, which use exp(x) only where it is <= e^-1/4 and where its relative
#     error reaches the result scaled by <= 3.52, see below): ex2.approx.ftz(fl(x * LOG2E_HI)); the rounding of t
#     adds ln2 |t| 2^-24 relative, at most 0.88 * 1.45 ln2 2^-24 < 6e-8 after that scaling (|x| e^x / (1 - e^x) is
#     largest at x = -1/4); results below 2^-126 flush to 0, which changes neither exp(x) - 1 nor (1 - E) / (1 + E).
#   expm1 (x <= 0): exp(x) - 1 for x <= -EXPM1_T (exact subtraction when exp(x) >= 1/2; exp's relative error is
#     scaled by exp(x) / (1 - exp(x)) <= 3.52 at x = -1/4: 3.52 * 3e-7 + a rounding < 1.2e-6); above,
#     x + x^2 (c2 + c3 x + c4 x^2 + c5 x^3) (EXPM1_COEFFS: near-minimax for the relative error on [-1/4, 0], fitted
#     by Lawson's iteration on 4000 Chebyshev points, 2.9e-9 in exact arithmetic; Taylor's 1/2, 1/6, 1/24, 1/120
#     would leave (1/4)^5 / 6! = 1.4e-6 and need a 6th degree for 5e-8), plus ~3 float32 roundings: < 3e-7.
#     -0.0 gives -0.0, -inf -1, NaN NaN.
#   tanh: sign(x) (1 - E) / (1 + E), E = exp(-2|x|), for |x| >= TANH_T: 1 - E carries exp's relative error scaled by
#     E / (1 - E) <= 1.54 at |x| = 1/4, then 1 + E and the division (2 ulp): < 1e-6; below, x + x^3 (-1/3 + x^2
#     (2/15 - x^2 17/315)) (TANH_COEFFS, its Taylor series to x^7): alternating, decreasing terms, so the rest is
#     below the first omitted one, 62/2835 x^9 <= 3.4e-7 |x|, plus ~3 roundings: < 6e-7. +-0.0 give themselves,
#     +-inf +-1, NaN NaN.
#   sigmoid: 1 / (1 + e) with e = exp(-|x|) precise and div.approx (2 ulp): < 6e-7; e * that for x < 0: < 9e-7.
# tests/test_triton_kernels.py evaluates the polynomials (in float32, from the constants below) against float64 over
# their intervals.
# ---------------------------------------------------------------------------------------------------------------
LOG2E_HI = tl.constexpr(1.4426950216293335)  # float32(log2(e))
LOG2E_LO = tl.constexpr(1.925963033500011e-08)  # float32(log2(e) - LOG2E_HI)
LN2 = tl.constexpr(0.6931471824645996)  # float32(ln 2)
EXP_MIN = tl.constexpr(-104.0)
FAST16_REL_ERROR = 1.2e-6  # the largest of the bounds above (tests: the op error of 16-bit results on a GPU)
EXPM1_T = tl.constexpr(0.25)
# x^2 .. x^5 of expm1(x) ~ x + x^2 (c2 + c3 x + c4 x^2 + c5 x^3) on [-1/4, 0] (float32 values)
EXPM1_COEFFS = (0.49999964237213135, 0.1666528880596161, 0.04150013253092766, 0.007530173286795616)
TANH_T = tl.constexpr(0.25)
TANH_COEFFS = (-1 / 3, 2 / 15, -17 / 315)  # x^3, x^5, x^7 of tanh(x), as float32 in the kernel
_E2 = tl.constexpr(EXPM1_COEFFS[0])
_E3 = tl.constexpr(EXPM1_COEFFS[1])
_E4 = tl.constexpr(EXPM1_COEFFS[2])
_E5 = tl.constexpr(EXPM1_COEFFS[3])
_T3 = tl.constexpr(TANH_COEFFS[0])
_T5 = tl.constexpr(TANH_COEFFS[1])
_T7 = tl.constexpr(TANH_COEFFS[2])


PTX = tl.constexpr(torch.version.hip is None)  # (the forms below use PTX instructions: NVIDIA GPUs only)


@triton.jit
def _fast16(DTYPE: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Whether the cheaper forms above apply: compiled for an NVIDIA GPU and a 16-bit result."""
    return LIBDEVICE and PTX and (DTYPE == tl.bfloat16 or DTYPE == tl.float16)


@triton.jit
def _div_approx(a, b):
    """a / b in float32 within 2 ulp for |b| in [2^-126, 2^126] (PTX div.approx.ftz.f32; GPU only)."""
    return tl.inline_asm_elementwise("div.approx.ftz.f32 $0, $1, $2;", "=r,r,r", [a, b], dtype=tl.float32,
                                     is_pure=True, pack=1)


@triton.jit
def _exp16(x, PRECISE: tl.constexpr):
    """exp(x) in float32 for x <= 0 or NaN (GPU only): PRECISE within 3e-7 relative down to subnormal results;
    else ex2.approx.ftz of x log2(e) (see above)."""
    if PRECISE:
        xc = tl.maximum(x, EXP_MIN, propagate_nan=tl.PropagateNan.ALL)
        t = xc * LOG2E_HI
        c = tl.fma(xc, LOG2E_HI, -t)
        c = tl.fma(xc, LOG2E_LO, c)
        e = tl.math.exp2(t)  # (ex2.approx.f32, subnormal results kept)
        r = tl.fma(e, c * LN2, e)
    else:
        r = tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=r,r", [x * LOG2E_HI], dtype=tl.float32,
                                      is_pure=True, pack=1)
    return r


@triton.jit
def _expm1_16(x, e):
    """expm1(x) in float32 for x <= 0 or NaN, given e = _exp16(x, ...), within 1.2e-6 relative (see above)."""
    p = tl.fma(tl.fma(tl.fma(_E5, x, _E4), x, _E3), x, _E2)
    small = tl.fma(p, x * x, x)
    return tl.where(x > -EXPM1_T, small, e - 1.0)


@triton.jit
def _tanh16(x):
    """tanh(x) in float32 within 1e-6 relative (see above; GPU only): tanh(|x|) with x's sign bit OR-ed in (so -0.0
    gives -0.0, which x + x^3 p(x^2) of x = -0.0 would not: -0.0 + +0.0 is +0.0)."""
    ax = tl.abs(x)
    x2 = ax * ax
    small = tl.fma(tl.fma(tl.fma(_T7, x2, _T5), x2, _T3), x2 * ax, ax)
    e = _exp16(-2.0 * ax, False)
    big = _div_approx(1.0 - e, 1.0 + e)
    r = tl.where(ax < TANH_T, small, big)
    sign = x.to(tl.uint32, bitcast=True) & 0x80000000
    return (r.to(tl.uint32, bitcast=True) | sign).to(tl.float32, bitcast=True)


# ---------------------------------------------------------------------------------------------------------------
# Activations whose backward reads one saved tensor (the unary kernels): forward / backward pairs.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def elu_forward(x, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """ELU<T>: forward(x) = x < 0 ? expm1(x) * alpha : x   (-0.0 and NaN give x)."""
    xn = tl.where(x < 0.0, x, 0.0)
    if FAST16:
        em1 = _expm1_16(xn, _exp16(xn, False))
    else:
        em1 = _expm1(xn, OPMATH, LIBDEVICE)
    return tl.where(x < 0.0, em1 * a, x)


@triton.jit
def elu_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """ELU<T>: backward(dy, x) = x > 0 ? dy : dy * alpha * exp(x)   (a NaN x gives NaN)."""
    return tl.where(s > 0.0, g, g * a * _exp(tl.where(s > 0.0, 0.0, s), LIBDEVICE))


elu_from_result_forward = elu_forward  # ELUFromResult<T>: ELU's forward


@triton.jit
def elu_from_result_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """ELUFromResult<T>: backward(dy, y) = y > 0 ? dy : dy * (y + alpha)   (a NaN y gives NaN)."""
    return tl.where(s > 0.0, g, g * (s + a))


@triton.jit
def sigmoid_forward(x, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """Sigmoid<T>: e = exp(-|x|) (NaN stays NaN), pos = 1 / (1 + e); forward(x) = x < 0 ? e * pos : pos."""
    if FAST16:
        e = _exp16(tl.where(x < 0.0, x, -x), True)
        pos = _div_approx(tl.full(x.shape, 1.0, OPMATH), 1.0 + e)
    else:
        e = _exp(tl.where(x < 0.0, x, -x), LIBDEVICE)
        pos = _div(tl.full(x.shape, 1.0, OPMATH), 1.0 + e, OPMATH)
    return tl.where(x < 0.0, e * pos, pos)


@triton.jit
def sigmoid_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Sigmoid<T>: backward(dy, y) = dy * (1 - y) * y."""
    return g * (1.0 - s) * s


@triton.jit
def tanh_forward(x, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """Tanh<T>: forward(x) = tanh(x)."""
    if FAST16:
        y = _tanh16(x)
    else:
        y = _tanh(x, OPMATH, LIBDEVICE)
    return y


@triton.jit
def tanh_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Tanh<T>: backward(dy, y) = dy * (1 - y * y)."""
    return g * (1.0 - s * s)


@triton.jit
def silu_forward(x, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """SiLU<T>: forward(x) = x * sigmoid(x), sigmoid as sigmoid_forward."""
    return x * sigmoid_forward(x, a, a2, OPMATH, LIBDEVICE, FAST16)


@triton.jit
def silu_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """SiLU<T>: backward(dy, x) = dy * sig * (1 + x * sig(-x)), sig(x) and sig(-x) from the same e = exp(-|x|)."""
    e = _exp(tl.where(s < 0.0, s, -s), LIBDEVICE)
    r = _div(tl.full(s.shape, 1.0, OPMATH), 1.0 + e, OPMATH)
    er = _div(e, 1.0 + e, OPMATH)
    sig = tl.where(s < 0.0, er, r)
    sig_neg = tl.where(s < 0.0, r, er)
    return g * sig * (1.0 + s * sig_neg)


@triton.jit
def mish_forward(x, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """Mish<T>: e = exp(x), w = e (e + 2), forward(x) = x * (x < 20 ? w / (w + 2) : 1)   (NaN takes the 1)."""
    big = ~(x < 20.0)
    e = _exp(tl.where(big, 0.0, x), LIBDEVICE)
    w = e * (e + 2.0)
    return x * tl.where(big, 1.0, _div(w, w + 2.0, OPMATH))


@triton.jit
def mish_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Mish<T>: backward(dy, x) = dy * (t + x sig (2 r) (1 + t)), r = 1 / (w + 2), t = w r, sig = e / (1 + e);
    x >= 20 (or NaN): dy * (1 + x * 0)."""
    big = ~(s < 20.0)
    e = _exp(tl.where(big, 0.0, s), LIBDEVICE)
    w = e * (e + 2.0)
    r = _div(tl.full(s.shape, 1.0, OPMATH), w + 2.0, OPMATH)
    t = w * r
    sig = _div(e, 1.0 + e, OPMATH)
    d = t + s * sig * (2.0 * r) * (1.0 + t)
    return g * tl.where(big, 1.0 + s * 0.0, d)


@triton.jit
def _relu6_of_x_plus_3(x):
    """x + 3 clamped to [0, 6], NaN propagating."""
    c = x + 3.0
    lo = tl.where(c < 0.0, 0.0, c)
    return tl.where(lo > 6.0, 6.0, lo)


@triton.jit
def hardsigmoid_forward(x, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """Hardsigmoid<T>: forward(x) = min(max(x + 3, 0), 6) / 6 (an IEEE division, as the functor's)."""
    return _div(_relu6_of_x_plus_3(x), tl.full(x.shape, 6.0, OPMATH), OPMATH)


@triton.jit
def hardsigmoid_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Hardsigmoid<T>: backward(dy, x) = -3 < x < 3 ? dy * (1/6 rounded to opmath) : 0."""
    sixth = _div(tl.full(s.shape, 1.0, OPMATH), tl.full(s.shape, 6.0, OPMATH), OPMATH)
    return tl.where((s > -3.0) & (s < 3.0), g * sixth, 0.0)


@triton.jit
def hardswish_forward(x, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """Hardswish<T>: forward(x) = x * min(max(x + 3, 0), 6) / 6, in that order."""
    return _div(x * _relu6_of_x_plus_3(x), tl.full(x.shape, 6.0, OPMATH), OPMATH)


@triton.jit
def hardswish_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Hardswish<T>: backward(dy, x) = x <= -3 ? 0 : x >= 3 ? dy : dy * (x / 3 + 0.5)   (NaN propagates)."""
    mid = g * (_div(s, tl.full(s.shape, 3.0, OPMATH), OPMATH) + 0.5)
    return tl.where(s <= -3.0, 0.0, tl.where(s >= 3.0, g, mid))


@triton.jit
def softplus_forward(x, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """Softplus<T> (a = beta, a2 = threshold): u = x * beta; u > threshold ? x : (max(u, 0) + log1p(exp(-|u|))) / beta."""
    u = x * a
    t = _exp(-tl.abs(u), LIBDEVICE)
    if LIBDEVICE:
        lp = libdevice.log1p(t)
    else:  # (the interpreter, in float64: log of fl(1 + t), corrected for its rounding; rounded once to opmath)
        t64 = t.to(tl.float64)
        u1 = 1.0 + t64
        lp = (tl.log(u1) - ((u1 - 1.0) - t64) / u1).to(OPMATH)
    sp = (tl.where(u > 0.0, u, 0.0) + lp) / a
    return tl.where(u > a2, x, sp)


@triton.jit
def softplus_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Softplus<T>: backward(dy, x) = u > threshold ? dy : dy * sigmoid(u), sigmoid from t = exp(-|u|)."""
    u = s * a
    t = _exp(tl.where(u < 0.0, u, -u), LIBDEVICE)
    d = 1.0 + t
    sig = tl.where(u < 0.0, _div(t, d, OPMATH), _div(tl.full(s.shape, 1.0, OPMATH), d, OPMATH))
    return tl.where(u > a2, g, g * sig)


# ---- GELU: GELU<T> (erf form) and GELUTanh<T> (tanh form) of activations.h; constants as hi + lo pairs there ----
# (k1, k1_lo, k3, k3_lo, clamp, tiny_m, k ln 2, its lo, 2^-k): GeluConsts<float> / GeluConsts<double>
_GELU_F32 = tl.constexpr((1.59576917, -4.53406805e-8, 0.0713548139, 2.39883247e-9, 12.0, -64.0, 66.5421295,
                          -1.82846819e-7, 2.0**-96))
_GELU_F64 = tl.constexpr((1.5957691216057308, -9.96930880911092e-17, 0.07135481627260025, -6.175149918155315e-19,
                          24.0, -640.0, 354.891356446692, 1.1873519686893054e-14, 2.0**-512))
# erf(a) = a P(a^2) for a < 0.75; (1 + 2a) exp(a^2) erfc(a) = 1 + p(q), q = (a - 2) / (a + 2): highest power first
GELU_ERF_P = (-6.74720795e-4, 5.11401845e-3, -2.68344618e-2, 1.12833731e-1, -3.76126200e-1, 1.12837911)
GELU_ERFC_P = (2.28263398e-5, -3.70543799e-4, -1.25132501e-3, 1.27968122e-3, 8.63859430e-3, -8.04692600e-3,
               -5.42053431e-2, 1.64053500e-1, -1.66031346e-1, -9.27639082e-2, 2.76978403e-1)
_GELU_ERF_P = tl.constexpr(GELU_ERF_P)
_GELU_ERFC_P = tl.constexpr(GELU_ERFC_P)
# degree 6, for 16-bit results (detail::gelu_erfc_poly6): 7.8e-6 relative
_GELU_ERFC_P6 = tl.constexpr((5.38003864e-3, -7.56483013e-3, -5.22852615e-2, 1.64035872e-1, -1.66368261e-1,
                              -9.27646980e-2, 2.76987672e-1))


@triton.jit
def _prod_err(a, b, p, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """a * b - p exactly, p = fl(a * b): an FMA on a GPU; in the interpreter (whose fma rounds twice) float32 in
    float64, float64 by Dekker's product of Veltkamp's halves."""
    if LIBDEVICE:
        r = tl.fma(a, b, -p)
    elif OPMATH == tl.float32:
        r = (a.to(tl.float64) * b.to(tl.float64) - p.to(tl.float64)).to(tl.float32)
    else:
        ca = a * 134217729.0
        ah = ca - (ca - a)
        al = a - ah
        cb = b * 134217729.0
        bh = cb - (cb - b)
        bl = b - bh
        r = (((ah * bh - p) + ah * bl) + al * bh) + al * bl
    return r


# The interpreter's float64 erfc (libdevice is GPU-only): (1 + 2a) exp(a^2) erfc(a) as a Chebyshev series in
# q = (a - 2) / (a + 2), q in [-1, 0.863] (a <= 27.3, past which erfc(a) underflows double), 28 terms, within 2.3 u
# with Clenshaw's recurrence in float64 (fitted with mpmath at 40 digits).
ERFC_CHEB64 = (
    1.1822641079865226, 0.04064500483668497, -0.10429930002768774, 0.03388541070692337, -0.003949354544343356,
    -0.0004031555073536919, 0.00012649650073206682, 1.1391284496538857e-05, -3.995592449372412e-06,
    -6.225295870340115e-07, 1.1011644728511043e-07, 3.6495459342125006e-08, -6.610454469587415e-10,
    -1.7694544542177254e-09, -2.2836147233258582e-10, 5.170453211054251e-11, 2.0875484182027137e-11,
    1.1327496549819578e-12, -9.288168145272879e-13, -2.590521448924813e-13, -2.7144820022526944e-15,
    1.4884856411295486e-14, 3.721274680551894e-15, -1.1047483003137105e-17, -2.408699514806375e-16,
    -6.284708063298496e-17, -1.0035214011112831e-18, 3.881694735113e-18,
)
_ERFC_CHEB64 = tl.constexpr(ERFC_CHEB64)
_ERFC_Q_MAX = tl.constexpr((27.3 - 2) / (27.3 + 2))


@triton.jit
def _erfc64(a):
    """erfc(a) in float64 for the interpreter: 1 - erf(a) below a = 0.5 (no cancellation: erfc(0.5) = 0.48), else
    exp(-a^2) (a^2 as hi + lo) times the Chebyshev series over (1 + 2a); NaN propagates."""
    big = a >= 0.5
    ab = tl.where(big & (a <= 27.3), a, 0.5)
    q = (ab - 2.0) / (ab + 2.0)
    t = (2.0 * q - (_ERFC_Q_MAX - 1.0)) / (_ERFC_Q_MAX + 1.0)  # q in [-1, q_max] -> t in [-1, 1]
    b1 = tl.zeros(a.shape, tl.float64)
    b2 = tl.zeros(a.shape, tl.float64)
    for j in tl.static_range(27, 0, -1):  # (28 terms)
        b1, b2 = 2.0 * t * b1 - b2 + _ERFC_CHEB64[j], b1
    series = t * b1 - b2 + _ERFC_CHEB64[0]
    sq = ab * ab
    sq_lo = _prod_err(ab, ab, sq, tl.float64, False)
    e = tl.exp(-sq)
    tail = tl.where(a <= 27.3, (e - e * sq_lo) * series / (1.0 + 2.0 * ab), 0.0)
    return tl.where(big, tail, 1.0 - tl.erf(a))


@triton.jit
def _erfc_f64(v, LIBDEVICE: tl.constexpr):
    """erfc(v) in float64: libdevice's on a GPU; in the interpreter _erfc64(|v|), or 2 - that for v < 0."""
    if LIBDEVICE:
        r = libdevice.erfc(v)
    else:
        c = _erfc64(tl.abs(v))
        r = tl.where(v < 0.0, 2.0 - c, c)
    return r


@triton.jit
def _gelu_tanh_parts(x, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """GELUTanh<T>::parts: (s, sn, zp, sc) = (sigmoid(z) / sc, sigmoid(-z), z', 1 or 2^-k), z = k1 x + k3 x^3
    carried as hi + lo (detail::gelu_tanh_z; FAST16: one piece), x clamped to +-12 (float) / +-24 (double), NaN
    kept."""
    if OPMATH == tl.float64:
        C: tl.constexpr = _GELU_F64
    else:
        C: tl.constexpr = _GELU_F32
    k1 = tl.full(x.shape, C[0], OPMATH)
    k3 = tl.full(x.shape, C[2], OPMATH)
    xc = tl.where(x > C[4], C[4], tl.where(x < -C[4], -C[4], x))
    if FAST16:
        hi = xc * (k1 + k3 * (xc * xc))
        lo = tl.zeros(x.shape, OPMATH)
    else:
        a = k1 * xc
        a_lo = _prod_err(k1, xc, a, OPMATH, LIBDEVICE) + tl.full(x.shape, C[1], OPMATH) * xc
        x2 = xc * xc
        x2_lo = _prod_err(xc, xc, x2, OPMATH, LIBDEVICE)
        x3 = x2 * xc
        x3_lo = _prod_err(x2, xc, x3, OPMATH, LIBDEVICE) + x2_lo * xc
        b = k3 * x3
        b_lo = _prod_err(k3, x3, b, OPMATH, LIBDEVICE) + (tl.full(x.shape, C[3], OPMATH) * x3 + k3 * x3_lo)
        hi = a + b
        bb = hi - a
        lo = (a_lo + b_lo) + ((a - (hi - bb)) + (b - bb))
    neg = hi < 0.0
    m = tl.where(neg, hi, -hi)
    ml = tl.where(neg, lo, -lo)
    if FAST16:
        e = tl.where(x < -C[4], 0.0, _exp16(m, True))
        r = _div_approx(tl.full(x.shape, 1.0, OPMATH), 1.0 + e)
        er = e * r
        sc = tl.full(x.shape, 1.0, OPMATH)
    else:
        tiny = neg & (m < C[5])  # exp(m) = exp(m + k ln 2) 2^-k: no subnormal exp in the products
        ln2k = tl.full(x.shape, C[6], OPMATH)
        t = m + ln2k
        t_lo = ((m - t) + ln2k) + (ml + tl.full(x.shape, C[7], OPMATH))
        m = tl.where(tiny, t, m)
        ml = tl.where(tiny, t_lo, ml)
        e = _exp(m, LIBDEVICE)
        e = e + e * ml
        e = tl.where(x < -C[4], 0.0, e)  # (sigmoid(z) is 0 there, also scaled)
        d = 1.0 + tl.where(tiny, 0.0, e)
        r = _div(tl.full(x.shape, 1.0, OPMATH), d, OPMATH)
        er = _div(e, d, OPMATH)
        sc = tl.where(tiny, tl.full(x.shape, C[8], OPMATH), 1.0)
    s = tl.where(neg, er, r)
    sn = tl.where(neg, r, er)
    zp = 3.0 * k3 * (xc * xc) + k1
    return s, sn, zp, sc


@triton.jit
def gelu_tanh_forward(x, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """GELUTanh<T>: forward(x) = (x * s) * sc, s = sigmoid(z) / sc."""
    s, sn, zp, sc = _gelu_tanh_parts(x, OPMATH, LIBDEVICE, FAST16)
    return (x * s) * sc


@triton.jit
def gelu_tanh_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """GELUTanh<T>: backward(dy, x) = dy * (sig + x * (sig * sig(-z) * z'))."""
    sig, sn, zp, sc = _gelu_tanh_parts(s, OPMATH, LIBDEVICE, False)
    d = sig + s * (sig * sn * zp)
    return (g * tl.where(sig == 0.0, s * 0.0, d)) * sc  # (an underflowed derivative keeps its sign: -0.0)


@triton.jit
def _horner(t, C: tl.constexpr, N: tl.constexpr):
    """C[0] t^(N-1) + ... + C[N-1] in float32 (C: a tl.constexpr tuple of N coefficients)."""
    p = tl.full(t.shape, C[0], tl.float32)
    for k in tl.static_range(1, N):
        p = p * t + C[k]
    return p


@triton.jit
def _gelu_erf_parts(x, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """detail::gelu_erf_parts (float32): (r, e, tail, small, half_erf); see GELU<float> in activations.h."""
    a = tl.abs(x) * 0.707106769
    tail = a <= 10.2
    at = tl.where(tail, a, 0.0)
    xt = tl.where(tail, x, 0.0)
    if FAST16:
        q = _div_approx(at - 2.0, at + 2.0)
        r = _div_approx(1.0 + _horner(q, _GELU_ERFC_P6, 7), 2.0 * at + 1.0)
    else:
        q = _div(at - 2.0, at + 2.0, tl.float32)
        r = _div(1.0 + _horner(q, _GELU_ERFC_P, 11), 2.0 * at + 1.0, tl.float32)
    sq = xt * xt
    a0 = x * 0.707106769
    if FAST16:
        e = _exp16(-0.5 * sq, True)
        small = x != x  # (all False)
        half_erf = a0 * 0.0
    else:
        e = _exp(-0.5 * sq, LIBDEVICE)
        e = e - e * (0.5 * _prod_err(xt, xt, sq, tl.float32, LIBDEVICE))
        small = (a < 0.75) & (x > -0.35)
        half_erf = (0.5 * a0) * _horner(a0 * a0, _GELU_ERF_P, 6)
    return r, e, tail, small, half_erf


@triton.jit
def _gelu_erfc_exp64(x, LIBDEVICE: tl.constexpr):
    """detail::gelu_erfc_exp_f64: (erfc(-x / sqrt 2), exp(-x^2 / 2)) in float64, the arguments' roundings corrected."""
    c0 = tl.full(x.shape, 0.70710678118654752, tl.float64)
    inside = (x > -40.0) & (x < 40.0)  # beyond, erfc(a) is 0 or 2 and e 0 (also for +-inf, NaN)
    xt = tl.where(inside, x, 0.0)
    at = -xt * c0
    d = _prod_err(-xt, c0, at, tl.float64, LIBDEVICE) + (-xt) * tl.full(x.shape, -4.833646656726457e-17, tl.float64)
    sq = xt * xt
    sq_lo = _prod_err(xt, xt, sq, tl.float64, LIBDEVICE)
    ex = _exp(-0.5 * sq, LIBDEVICE)
    e = tl.where(inside, ex - ex * (0.5 * sq_lo), 0.0)
    return _erfc_f64(-x * c0, LIBDEVICE) - d * tl.full(x.shape, 1.1283791670955126, tl.float64) * e, e


@triton.jit
def gelu_forward(x, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """GELU<T>: float: x Phi(x) from _gelu_erf_parts; double: x / 2 * erfc(-x / sqrt 2)."""
    if OPMATH == tl.float64:
        c, e = _gelu_erfc_exp64(x, LIBDEVICE)
        y = 0.5 * x * c
    else:
        r, e, tail, small, half_erf = _gelu_erf_parts(x, LIBDEVICE, FAST16)
        h = (0.5 * e) * r
        neg = tl.where(tail, ((0.5 * x) * r) * e, x * 0.0)
        pos = x * (1.0 - tl.where(tail, h, 0.0))
        y = tl.where(small, x * (0.5 + half_erf), tl.where(x < 0.0, neg, pos))
    return y


@triton.jit
def gelu_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """GELU<T>: backward(dy, x) = dy * (Phi(x) + x phi(x)) (see gelu_forward)."""
    if OPMATH == tl.float64:
        c, e = _gelu_erfc_exp64(s, LIBDEVICE)
        d = 0.5 * c + s * tl.full(s.shape, 0.3989422804014327, tl.float64) * e
        d = tl.where(d == 0.0, s * 0.0, d)  # (an underflowed derivative keeps its sign: -0.0)
    else:
        r, e, tail, small, half_erf = _gelu_erf_parts(s, LIBDEVICE, False)
        h = tl.where(tail, (0.5 * e) * r, 0.0)
        cdf = tl.where(small, 0.5 + half_erf, 1.0 - h)
        xc = s * 0.398942292
        d = tl.where((s < 0.0) & ~small, (0.5 * r + xc) * e, xc * e + cdf)
        d = tl.where(tail, d, tl.where(s < 0.0, s * 0.0, 1.0 + s * 0.0))
    return g * d


@triton.jit
def relu_forward(x, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """ReLUOfInput<T> (the gate of ReGLU): forward(x) = x < 0 ? 0 : x (NaN and -0.0 kept)."""
    return tl.where(x < 0.0, 0.0, x)


@triton.jit
def relu_backward(g, s, a, a2, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """ReLUOfInput<T>: backward(dy, x) = x <= 0 ? 0 : dy (NaN passes dy)."""
    return tl.where(s <= 0.0, 0.0, g)


def unary_pair(name: str):
    """(forward, backward) of the element function `name`, found by the names <name>_forward / <name>_backward."""
    fwd, bwd = globals().get(name + "_forward"), globals().get(name + "_backward")
    if fwd is None or bwd is None:
        raise RuntimeError(f"glo_kernels_triton: no Triton element function {name!r} (expected {name}_forward and "
                           f"{name}_backward in glo_kernels/triton/math.py)")
    return fwd, bwd
