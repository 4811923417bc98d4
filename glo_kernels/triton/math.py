"""Element math of the Triton kernels: one @triton.jit forward / backward pair per activation, and the transcendentals
they are written with. Each pair mirrors a functor of csrc/include/glo/activations.h (named beside it); keep the three
implementations (C++ functors, these, glo_kernels/reference.py) in step.

The element-wise kernels of glo_kernels/triton/kernels.py take a pair as tl.constexpr arguments (FWD, BWD) and call it
on opmath values:
    <name>_forward(x, a, OPMATH, LIBDEVICE, FAST16) -> y
    <name>_backward(dy, saved, a, OPMATH, LIBDEVICE) -> dx
where `a` is the op's scalar parameter in opmath (ELU's alpha; 0 for ops without one), `saved` the tensor the op's
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
def elu_forward(x, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """ELU<T>: forward(x) = x < 0 ? expm1(x) * alpha : x   (-0.0 and NaN give x)."""
    xn = tl.where(x < 0.0, x, 0.0)
    if FAST16:
        em1 = _expm1_16(xn, _exp16(xn, False))
    else:
        em1 = _expm1(xn, OPMATH, LIBDEVICE)
    return tl.where(x < 0.0, em1 * a, x)


@triton.jit
def elu_backward(g, s, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """ELU<T>: backward(dy, x) = x > 0 ? dy : dy * alpha * exp(x)   (a NaN x gives NaN)."""
    return tl.where(s > 0.0, g, g * a * _exp(tl.where(s > 0.0, 0.0, s), LIBDEVICE))


elu_from_result_forward = elu_forward  # ELUFromResult<T>: ELU's forward


@triton.jit
def elu_from_result_backward(g, s, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """ELUFromResult<T>: backward(dy, y) = y > 0 ? dy : dy * (y + alpha)   (a NaN y gives NaN)."""
    return tl.where(s > 0.0, g, g * (s + a))


@triton.jit
def sigmoid_forward(x, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """Sigmoid<T>: e = exp(-|x|) (NaN stays NaN), pos = 1 / (1 + e); forward(x) = x < 0 ? e * pos : pos."""
    if FAST16:
        e = _exp16(tl.where(x < 0.0, x, -x), True)
        pos = _div_approx(tl.full(x.shape, 1.0, OPMATH), 1.0 + e)
    else:
        e = _exp(tl.where(x < 0.0, x, -x), LIBDEVICE)
        pos = _div(tl.full(x.shape, 1.0, OPMATH), 1.0 + e, OPMATH)
    return tl.where(x < 0.0, e * pos, pos)


@triton.jit
def sigmoid_backward(g, s, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Sigmoid<T>: backward(dy, y) = dy * (1 - y) * y."""
    return g * (1.0 - s) * s


@triton.jit
def tanh_forward(x, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """Tanh<T>: forward(x) = tanh(x)."""
    if FAST16:
        y = _tanh16(x)
    else:
        y = _tanh(x, OPMATH, LIBDEVICE)
    return y


@triton.jit
def tanh_backward(g, s, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Tanh<T>: backward(dy, y) = dy * (1 - y * y)."""
    return g * (1.0 - s * s)


@triton.jit
def silu_forward(x, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """SiLU<T>: forward(x) = x * sigmoid(x), sigmoid as sigmoid_forward."""
    return x * sigmoid_forward(x, a, OPMATH, LIBDEVICE, FAST16)


@triton.jit
def silu_backward(g, s, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """SiLU<T>: backward(dy, x) = dy * sig * (1 + x * sig(-x)), sig(x) and sig(-x) from the same e = exp(-|x|)."""
    e = _exp(tl.where(s < 0.0, s, -s), LIBDEVICE)
    r = _div(tl.full(s.shape, 1.0, OPMATH), 1.0 + e, OPMATH)
    er = _div(e, 1.0 + e, OPMATH)
    sig = tl.where(s < 0.0, er, r)
    sig_neg = tl.where(s < 0.0, r, er)
    return g * sig * (1.0 + s * sig_neg)


@triton.jit
def mish_forward(x, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """Mish<T>: e = exp(x), w = e (e + 2), forward(x) = x * (x < 20 ? w / (w + 2) : 1)   (NaN takes the 1)."""
    big = ~(x < 20.0)
    e = _exp(tl.where(big, 0.0, x), LIBDEVICE)
    w = e * (e + 2.0)
    return x * tl.where(big, 1.0, _div(w, w + 2.0, OPMATH))


@triton.jit
def mish_backward(g, s, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
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
def hardsigmoid_forward(x, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """Hardsigmoid<T>: forward(x) = min(max(x + 3, 0), 6) / 6 (an IEEE division, as the functor's)."""
    return _div(_relu6_of_x_plus_3(x), tl.full(x.shape, 6.0, OPMATH), OPMATH)


@triton.jit
def hardsigmoid_backward(g, s, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Hardsigmoid<T>: backward(dy, x) = -3 < x < 3 ? dy * (1/6 rounded to opmath) : 0."""
    sixth = _div(tl.full(s.shape, 1.0, OPMATH), tl.full(s.shape, 6.0, OPMATH), OPMATH)
    return tl.where((s > -3.0) & (s < 3.0), g * sixth, 0.0)


@triton.jit
def hardswish_forward(x, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, FAST16: tl.constexpr):
    """Hardswish<T>: forward(x) = x * min(max(x + 3, 0), 6) / 6, in that order."""
    return _div(x * _relu6_of_x_plus_3(x), tl.full(x.shape, 6.0, OPMATH), OPMATH)


@triton.jit
def hardswish_backward(g, s, a, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr):
    """Hardswish<T>: backward(dy, x) = x <= -3 ? 0 : x >= 3 ? dy : dy * (x / 3 + 0.5)   (NaN propagates)."""
    mid = g * (_div(s, tl.full(s.shape, 3.0, OPMATH), OPMATH) + 0.5)
    return tl.where(s <= -3.0, 0.0, tl.where(s >= 3.0, g, mid))


def unary_pair(name: str):
    """(forward, backward) of the element function `name`, found by the names <name>_forward / <name>_backward."""
    fwd, bwd = globals().get(name + "_forward"), globals().get(name + "_backward")
    if fwd is None or bwd is None:
        raise RuntimeError(f"glo_kernels_triton: no Triton element function {name!r} (expected {name}_forward and "
                           f"{name}_backward in glo_kernels/triton/math.py)")
    return fwd, bwd
