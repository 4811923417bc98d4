// Element math of every activation, written once for the CPU loops and the CUDA kernels.
//
// Each functor computes in "opmath" (float for float/half/bfloat16 inputs, double for double) and holds its scalar
// parameters as members. Conventions follow PyTorch's own kernels exactly (sign of zero, NaN propagation, the value of
// the derivative at 0), because glo_kernels is a drop-in replacement: tests compare against torch.nn bit for bit where
// torch is exact. The Triton kernels (glo_kernels/triton/kernels.py) and the reference (glo_kernels/reference.py)
// mirror these formulas; keep the three in step.
//
// This header includes no torch headers so that it stays cheap to compile and usable from plain C++ or CUDA.
#pragma once

#include "glo/isa.h"

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define GLO_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define GLO_HD inline __attribute__((always_inline))  // inlined into the CPU loops, so that they vectorize
#else
#define GLO_HD inline
#endif

namespace glo {
GLO_ISA_BEGIN

// ---------------------------------------------------------------------------------------------------------------
// Transcendentals in opmath, one overload per precision. Device code uses CUDA's built-ins; host code uses, for
// float, the branch-free versions below, which GCC vectorizes (libm calls do not vectorize: a loop of expf would run
// 4x slower than PyTorch's vectorized kernels), and libm for double. Accuracy of the float versions, measured over
// dense sweeps of their ranges (see the closing notes of the ELU/PELU issue): within about 2 ulp.
// ---------------------------------------------------------------------------------------------------------------
namespace detail {

GLO_HD float fma_f(float a, float b, float c) {
#if defined(__CUDA_ARCH__) || defined(__FMA__)
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}

GLO_HD float bits_to_float(int32_t i) {
  float f;
  __builtin_memcpy(&f, &i, 4);
  return f;
}

// Shared core of exp and expm1 for a finite, clamped x: n = round(x / ln2), r = x - n ln2 (Cody-Waite, two
// constants), and exp(r) - 1 from Cephes' degree-6 polynomial on |r| <= ln2 / 2 (no cancellation near 0).
GLO_HD float exp_core(float xc, float& n) {
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  n = (xc * 1.44269504088896341f + shifter) - shifter;
  float r = fma_f(n, -0.693359375f, xc);
  r = fma_f(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fma_f(p, r, 1.3981999507e-3f);
  p = fma_f(p, r, 8.3334519073e-3f);
  p = fma_f(p, r, 4.1665795894e-2f);
  p = fma_f(p, r, 1.6666665459e-1f);
  p = fma_f(p, r, 5.0000001201e-1f);
  return fma_f(p, r * r, r);
}

// exp(x) = (1 + (exp(r) - 1)) * 2^n, scaled in two steps (both factors normal, so results down to subnormals round
// once). x is clamped to [-104, 89], beyond which the result is 0 or inf anyway; NaN is returned as is.
GLO_HD float exp_f32(float x) {
  // (Two one-sided clamps and an arithmetic shift rather than nested selects and ni / 2: GCC's vector code of the
  // nested form spent most of the loop on blends, and / 2 on signed ints needs a rounding fix-up; the split of n
  // differs for odd negative n, but p * 2^n1 is exact either way, so the result is the same single rounding: same
  // bits for all 2^32 inputs, AVX2 and AVX-512 code alike. Sigmoid / SiLU loops 2x faster at x86-64-v4.)
  float xc = x < -104.0f ? -104.0f : x;
  xc = xc > 89.0f ? 89.0f : xc;
  xc = x == x ? xc : 0.0f;  // NaN: computed on 0, the input is returned below
  float n;
  const float p = exp_core(xc, n) + 1.0f;
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni >> 1;  // floor(n / 2)
  const int32_t n2 = ni - n1;
  const float y = p * bits_to_float((n1 + 127) << 23) * bits_to_float((n2 + 127) << 23);
  return x == x ? y : x;
}

// expm1(x) = 2^n (exp(r) - 1) + (2^n - 1): exact near 0 (n = 0 there). Computed as 2 * (h (exp(r) - 1) + (h - 1/2))
// with h = 2^(n-1), which stays a normal float for every n used: x is clamped to [-87, 88.8], below which the result
// rounds to -1 and above which it overflows to inf anyway.
GLO_HD float expm1_f32(float x) {
  float xc = x < -87.0f ? -87.0f : (x > 88.8f ? 88.8f : x);
  xc = xc == xc ? xc : 0.0f;
  float n;
  const float em1 = exp_core(xc, n);
  const float h = bits_to_float((static_cast<int32_t>(n) + 126) << 23);  // 2^(n-1), n in [-126, 128]
  const float y = 2.0f * fma_f(h, em1, h - 0.5f);
  // expm1 keeps x's sign. Without an FMA unit (the default CPU level) a tiny negative x rounds h * em1 to -0.0 first,
  // and -0.0 + (h - 0.5) = +0.0: the sign restores it (elu(-1e-45) = -0.0, as at the levels with FMA).
  return x == x ? __builtin_copysignf(y, x) : x;
}

// tanh(x): Cephes' odd polynomial for |x| < 0.625, else sign(x) * (1 - 2 / (exp(2|x|) + 1)).
GLO_HD float tanh_f32(float x) {
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = fma_f(p, z, 2.06390887954e-2f);
  p = fma_f(p, z, -5.37397155531e-2f);
  p = fma_f(p, z, 1.33314422036e-1f);
  p = fma_f(p, z, -3.33332819422e-1f);
  const float small = x == 0.0f ? x : fma_f(p * z, x, x);  // keeps the sign of -0.0
  const float ax = x < 0.0f ? -x : x;
  const float big = 1.0f - 2.0f / (exp_f32(2.0f * ax) + 1.0f);
  const float large = x < 0.0f ? -big : big;
  return ax < 0.625f ? small : large;  // NaN: large is NaN
}

}  // namespace detail

#if defined(__CUDA_ARCH__)
GLO_HD float gexp(float x) { return ::expf(x); }
GLO_HD float gexpm1(float x) { return ::expm1f(x); }
GLO_HD float gtanh(float x) { return ::tanhf(x); }
#else
GLO_HD float gexp(float x) { return detail::exp_f32(x); }
GLO_HD float gexpm1(float x) { return detail::expm1_f32(x); }
GLO_HD float gtanh(float x) { return detail::tanh_f32(x); }
#endif
GLO_HD double gexp(double x) { return ::exp(x); }
GLO_HD double gexpm1(double x) { return ::expm1(x); }
GLO_HD double gtanh(double x) { return ::tanh(x); }

// ---------------------------------------------------------------------------------------------------------------
// Device math for 16-bit storage ("fast16"). A bfloat16 / float16 result keeps 8 / 11 significant bits, so its float
// opmath need not be within 2 ulp of float: CUDA's expm1f (about 27 instructions) and the IEEE divide (about 10, and
// a slow-path branch) cost the 16-bit kernels half of their H100 issue budget (bench/sass_report.py). The functors
// with a `Fast` template parameter (ELU, Sigmoid, PELU, SiLU, Mish, the hard activations) use, when Fast is true AND in device code, the functions
// below instead; the CUDA dispatch makes them Fast for Half / BFloat16 storage only (fast16_variant, at the end of
// this header; device_functor in cuda/activations.cu). Float32 and float64 kernels, the CPU loops (host code: Fast
// changes nothing there) and exp itself (CUDA's expf: 8 instructions, within 2 ulp, subnormal results right) keep
// the full-accuracy path. The Triton kernels have their own 16-bit forms on a GPU (glo_kernels/triton/kernels.py,
// _fast16), with their own bounds; the reference keeps plain torch formulas.
//
// Accuracy (relative error of the float result before its rounding to 16 bits; u = 2^-24, a float ulp <= 2u |y|):
//  * rcp(d), d in [1, 2] (sigmoid's 1 / (1 + e)): PTX rcp.approx.ftz.f32, within 1 ulp over its whole range (PTX
//    ISA, rcp.approx): <= 2u = 1.2e-7. No subnormal or special operand arises on [1, 2]; NaN gives NaN. Sigmoid:
//    1 / (1 + e) <= 5u (the sum, rcp, e's 2 ulp through it), e / (1 + e) <= 10u = 6e-7.
//  * expm1_from_exp(x, e), e an approximation of exp(x) with relative error <= eps_e:
//      |x| < kExpm1Poly (0.3): x (1 + x q(x)), q a degree-3 minimax fit of (expm1(x) - x) / x^2 on [-0.3, 0.3].
//        Relative error: the fit, with its float coefficients, 2.2e-7 (in exact arithmetic, over a dense sweep);
//        its evaluation, 4 FMAs and a product (each rounding u relative, the inner ones scaled by |x| <= 0.3,
//        over p = 1 + x q >= 0.86): <= 2.6u = 1.5e-7. Together <= 3.8e-7 (tests/test_accuracy.py::
//        test_fast16_expm1_host_sweep, the host build of this code: 3.3e-7 reached). -0.0 gives -0.0.
//      otherwise: e - 1. Its relative error is eps_e e / |e - 1| (+ u where e - 1 rounds: e < 1/2 or e > 2), largest
//        at the threshold: e / (1 - e) = 2.86 at x = -0.3, e / (e - 1) = 3.86 at x = 0.3, <= 1 for x <= -ln 2.
//        NaN gives NaN, -inf -1, +inf +inf.
//  * expm1(x) = expm1_from_exp(x, ex2.approx.ftz(fl(x log2 e))): ex2.approx is within 2 ulp (2^-22 relative; CUDA
//    Programming Guide: __expf, which is ex2.approx of x log2 e, is within 2 + floor(|1.173 x|) ulp); fl(x log2 e)
//    rounds the argument by |x| 1.05e-7 (the product's rounding and log2 e's own in float), which makes 2^t off by
//    |x| 7.3e-8 relative: eps_e = 2.4e-7 + 7.3e-8 |x|. Flushing a subnormal e (x < -87.3) to 0 changes nothing:
//    e - 1 rounds to -1 either way. So, relative error of expm1(x):
//      x <= -0.3 (what ELU and PELU, with b > 0, use):  <= 7.5e-7;
//      |x| < 0.3:                                        <= 3.8e-7;
//      x >= 0.3:                                         <= 1.0e-6 + 7.3e-8 x (1.8e-6 at float16's largest
//        argument, 11.1; 7.5e-6 at float's, 88.7: far below a bfloat16 ulp, 2^-8).
//    ELU's forward multiplies by alpha (rounded to float: u) and rounds the product (u): <= 8.7e-7 on x < 0.
//  * PELU's backward has E = exp(u) (expf, 2 ulp: eps_e = 2^-22) and takes expm1(u) = expm1_from_exp(u, E):
//    <= 6.8e-7 for u <= -0.3, 9.2e-7 for u >= 0.3, 3.8e-7 between.
// Every one of these is below 1e-6 where the ops use it, under 2^-8 (bfloat16) and 2^-11 (float16) by factors of
// 4000 and 500: a 16-bit result is the correctly rounded value of the float64 result except when that lies within
// 1e-6 relative of a rounding tie, and is never more than 1 ulp (16-bit) from it.
namespace fast16 {

constexpr float kExpm1Poly = 0.3f;  // |x| below this: the polynomial; above: e - 1

GLO_HD float expm1_from_exp(float x, float e) {
  // __builtin_fmaf: FFMA on the device; on the host (only tests/test_accuracy.py's harness runs this there) libm's
  // exact fmaf, so that the host sweep evaluates what the device does.
  float p = 8.33698176e-3f;
  p = __builtin_fmaf(p, x, 4.18212153e-2f);
  p = __builtin_fmaf(p, x, 1.66667581e-1f);
  p = __builtin_fmaf(p, x, 4.99996632e-1f);
  p = __builtin_fmaf(p, x, 1.0f);
  const float small = p * x;  // x (1 + x q(x)): the sign of a zero x is kept
  const float big = e - 1.0f;
  return __builtin_fabsf(x) < kExpm1Poly ? small : big;  // NaN: big, NaN
}

#if defined(__CUDA_ARCH__)
__device__ __forceinline__ float ex2_approx_ftz(float t) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(t));
  return r;
}

__device__ __forceinline__ float rcp_approx_ftz(float d) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(d));
  return r;
}

__device__ __forceinline__ float expm1(float x) { return expm1_from_exp(x, ex2_approx_ftz(x * 1.44269504f)); }

// exp(x) as __expf without flushing: ex2.approx.f32 (subnormal results kept) of fl(x log2 e), within
// 2 + floor(|1.173 x|) float ulps (CUDA Programming Guide, __expf): 1.4e-5 relative at x = -100, where Mish's result
// x e is still a normal bfloat16; below a 16-bit ulp by a factor of 35 or more wherever exp's result is not 0.
__device__ __forceinline__ float exp_approx(float x) {
  float r;
  asm("ex2.approx.f32 %0, %1;" : "=f"(r) : "f"(x * 1.44269504f));
  return r;
}
#endif

}  // namespace fast16

// What a functor's Fast parameter selects: the fast16 functions in device code for float when Fast, else the
// full-accuracy ones (host code, double, Fast = false: the same code as before Fast existed).
template <bool Fast>
GLO_HD float fexpm1(float x) {
#if defined(__CUDA_ARCH__)
  if constexpr (Fast) return fast16::expm1(x);
  else
#endif
    return gexpm1(x);
}
template <bool Fast>
GLO_HD double fexpm1(double x) {
  return gexpm1(x);
}

// expm1(x) where e = gexp(x) is already computed.
template <bool Fast>
GLO_HD float fexpm1_given_exp(float x, [[maybe_unused]] float e) {
#if defined(__CUDA_ARCH__)
  if constexpr (Fast) return fast16::expm1_from_exp(x, e);
  else
#endif
    return gexpm1(x);
}
template <bool Fast>
GLO_HD double fexpm1_given_exp(double x, double) {
  return gexpm1(x);
}

// 1 / d for d in [1, 2].
template <bool Fast>
GLO_HD float frcp12(float d) {
#if defined(__CUDA_ARCH__)
  if constexpr (Fast) return fast16::rcp_approx_ftz(d);
  else
#endif
    return 1.0f / d;
}
template <bool Fast>
GLO_HD double frcp12(double d) {
  return 1.0 / d;
}

// exp(x): (Fast, device) fast16::exp_approx, else gexp.
template <bool Fast>
GLO_HD float fexp(float x) {
#if defined(__CUDA_ARCH__)
  if constexpr (Fast) return fast16::exp_approx(x);
  else
#endif
    return gexp(x);
}
template <bool Fast>
GLO_HD double fexp(double x) {
  return gexp(x);
}

// 1 / d for d in [1, 2^126] (a normal result: rcp.approx.ftz is within 1 ulp there, as on [1, 2]).
template <bool Fast>
GLO_HD float frcp_ge1(float d) {
  return frcp12<Fast>(d);
}
template <bool Fast>
GLO_HD double frcp_ge1(double d) {
  return 1.0 / d;
}

// n / d for d in [1, 2^126]. Device: n * rcp.approx(d) (Fast), or that refined by one Newton step, within 1 ulp
// without the IEEE division's slow path (about 12 instructions fewer); host: the division.
template <bool Fast>
GLO_HD float fdiv_ge1(float n, float d) {
#if defined(__CUDA_ARCH__)
  const float r = fast16::rcp_approx_ftz(d);
  const float q = n * r;
  if constexpr (Fast) return q;
  else return __builtin_fmaf(__builtin_fmaf(-d, q, n), r, q);
#else
  return n / d;
#endif
}
template <bool Fast>
GLO_HD double fdiv_ge1(double n, double d) {
  return n / d;
}

namespace detail {
// log1p(t) for t in [0, 1] or NaN (what softplus needs: t = exp(-|u|)): u = fl(1 + t) = 2^k m with k in {0, 1} and
// m in [sqrt(1/2), sqrt(2)), log(m) = f - f^2 / 2 + f^3 P(f) with f = m - 1 (exact) and Cephes' logf polynomial, k ln 2
// in two parts, plus the rounding of 1 + t, (t - (u - 1)) / u. Branch-free (vectorizes).
GLO_HD float log1p01_f32(float t) {
  const float u = 1.0f + t;
  const bool hi = u > 1.41421356f;
  const float m = hi ? 0.5f * u : u;
  const float k = hi ? 1.0f : 0.0f;
  const float f = m - 1.0f;
  const float c = fdiv_ge1<false>(t - (u - 1.0f), u);  // (no IEEE division call on the device)
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = fma_f(p, f, -1.1514610310e-1f);
  p = fma_f(p, f, 1.1676998740e-1f);
  p = fma_f(p, f, -1.2420140846e-1f);
  p = fma_f(p, f, 1.4249322787e-1f);
  p = fma_f(p, f, -1.6668057665e-1f);
  p = fma_f(p, f, 2.0000714765e-1f);
  p = fma_f(p, f, -2.4999993993e-1f);
  p = fma_f(p, f, 3.3333331174e-1f);
  float y = f * (z * p);
  y = fma_f(k, -2.12194440e-4f, y);
  y = fma_f(-0.5f, z, y);
  float r = f + (y + c);
  return fma_f(k, 0.693359375f, r);
}

}  // namespace detail

// log1p(t), t in [0, 1]: detail::log1p01_f32 on the host and the device alike (CUDA's log1pf: about 15 instructions
// more), libm's for double.
GLO_HD float glog1p01(float t) { return detail::log1p01_f32(t); }
GLO_HD double glog1p01(double t) { return ::log1p(t); }

// v / 6, or (Fast) v * fl(1/6) as PyTorch's CUDA kernels of the hard activations compute it: within a float ulp of
// v / 6 (two roundings instead of one), far below a 16-bit ulp.
template <bool Fast, typename T>
GLO_HD T fdiv6(T v) {
#if defined(__CUDA_ARCH__)
  if constexpr (Fast) return v * (T(1) / T(6));
  else
#endif
    return v / T(6);
}

// ---------------------------------------------------------------------------------------------------------------
// Activations whose backward needs only one bit per element ("keep": does the gradient pass with slope 1?).
// forward(x) -> y; keep(x) -> bit saved for backward; backward(dy, bit) -> dx.
// ---------------------------------------------------------------------------------------------------------------

// ReLU (Nair & Hinton 2010): y = max(x, 0) with NaN propagated and -0.0 kept (as torch.relu).
// dx = dy where !(x <= 0) (so NaN passes the gradient, as torch's threshold_backward on the output), else 0.
template <typename T>
struct ReLU {
  GLO_HD T forward(T x) const { return x < T(0) ? T(0) : x; }
  GLO_HD bool keep(T x) const { return !(x <= T(0)); }
  GLO_HD T backward(T dy, bool keep) const { return keep ? dy : T(0); }
};

// Leaky ReLU (Maas et al. 2013; He et al. 2015): y = x for x > 0, slope * x otherwise (NaN propagates through x*slope).
// dx = dy for x > 0, slope * dy otherwise (at 0 and for NaN the slope applies, as torch.nn.functional.leaky_relu).
//
// Both sides of every select are computed before choosing: the result is the same, and the CPU loops vectorize
// (a compiler may not speculate a multiply that sits inside a branch).
template <typename T>
struct LeakyReLU {
  T slope;
  GLO_HD T forward(T x) const {
    const T neg = x * slope;
    return x > T(0) ? x : neg;
  }
  GLO_HD bool keep(T x) const { return x > T(0); }
  GLO_HD T backward(T dy, bool keep) const {
    const T neg = dy * slope;
    return keep ? dy : neg;
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Activations whose backward reads one saved tensor, the input or the output ("saved").
// forward(x) -> y; backward(dy, saved) -> dx.
// ---------------------------------------------------------------------------------------------------------------

// ELU (Clevert et al. 2016): y = x for x >= 0 (and -0.0, NaN), alpha * expm1(x) for x < 0 (as torch's ELU kernel).
// Backward from the input: dx = dy for x > 0, dy * alpha * exp(x) otherwise (at 0 too, as torch; a NaN input gives a
// NaN gradient, as torch's vectorized CPU loop — its scalar tail passes dy instead).
template <typename T, bool Fast = false>  // Fast: 16-bit storage on the device (see fast16 above)
struct ELU {
  T alpha;
  GLO_HD T forward(T x) const {
    const T neg = fexpm1<Fast>(x) * alpha;
    return x < T(0) ? neg : x;
  }
  GLO_HD T backward(T dy, T x) const {
    const T neg = dy * alpha * gexp(x);
    return x > T(0) ? dy : neg;
  }
};

// ELU's backward from the output (in place: the input is gone): dx = dy for y > 0, dy * (y + alpha) for y <= 0.
// Right for alpha >= 0, where y <= 0 exactly when x <= 0.
template <typename T>
struct ELUFromResult {
  T alpha;
  GLO_HD T forward(T x) const { return ELU<T>{alpha}.forward(x); }
  GLO_HD T backward(T dy, T y) const {
    const T neg = dy * (y + alpha);
    return y > T(0) ? dy : neg;
  }
};

// Logistic sigmoid: y = 1 / (1 + exp(-x)), computed as e / (1 + e) with e = exp(x) for x < 0 so that tiny results
// keep their precision (PyTorch's float kernel flushes sigmoid(x) to 0 below x = -88.7); one division. Backward from the output:
// dx = dy * (1 - y) * y (torch's order).
template <typename T, bool Fast = false>  // Fast: 16-bit storage on the device (see fast16 above)
struct Sigmoid {
  GLO_HD T forward(T x) const {
    const T e = gexp(x < T(0) ? x : -x);  // exp(-|x|), NaN stays NaN
    const T pos = frcp12<Fast>(T(1) + e);  // 1 / (1 + e), 1 + e in [1, 2]
    const T neg = e * pos;
    return x < T(0) ? neg : pos;
  }
  GLO_HD T backward(T dy, T y) const { return dy * (T(1) - y) * y; }
};

// SiLU / Swish (Elfwing et al. 2018; Ramachandran et al. 2017): y = x * sigmoid(x), with sigmoid as Sigmoid<T> (so
// tiny results keep their precision: torch's x / (1 + exp(-x)) flushes them to -0.0 below x = -88.7 in float).
// Backward from the input: dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x), with 1 - s = sigmoid(-x) formed from the
// same e = exp(-|x|), not by subtraction (for large x torch's 1 - s loses |x| ulps of the result). +-inf give a NaN
// gradient, as torch's (0 * inf); NaN propagates. Fast (16-bit device storage): Sigmoid<T, true>'s bound (<= 10u, see
// fast16 above) and one rounding of the product with x; in the backward rcp.approx's 2u enters s and 1 - s alike.
template <typename T, bool Fast = false>  // Fast: 16-bit storage on the device (see fast16 above)
struct SiLU {
  GLO_HD T forward(T x) const { return x * Sigmoid<T, Fast>{}.forward(x); }
  GLO_HD T backward(T dy, T x) const {
    const T e = gexp(x < T(0) ? x : -x);  // exp(-|x|)
    return grad(dy, x, e, frcp12<Fast>(T(1) + e));
  }
  // forward(x) and backward(dy, x) from one exp, with the operations of each (the same bits as the two calls): the
  // gated units' backward needs both (glo::Gated).
  GLO_HD void value_and_backward(T x, T dy, T& y, T& dx) const {
    const T e = gexp(x < T(0) ? x : -x);
    const T r = frcp12<Fast>(T(1) + e);
    y = x * (x < T(0) ? e * r : r);  // Sigmoid<T, Fast>::forward: e * (1 / (1 + e)) or 1 / (1 + e)
    dx = grad(dy, x, e, r);
  }
  // dx from e = exp(-|x|) and r = frcp12<Fast>(1 + e).
  GLO_HD T grad(T dy, T x, T e, T r) const {
    const T d = T(1) + e;                  // in [1, 2]
    // e / (1 + e): with Fast e * r; else a second IEEE division (one rounding; and on the device, where a division's
    // slow path is a call, two divisions keep the registers free: e * r there made the float kernel save 8 bytes to
    // the stack around that call, tests/test_sass.py::test_no_spills)
    T er;
    if constexpr (Fast) {
      er = e * r;
    } else {
      er = e / d;
    }
    const T s = x < T(0) ? er : r;   // sigmoid(x)
    const T sn = x < T(0) ? r : er;  // sigmoid(-x) = 1 - sigmoid(x)
    return dy * s * (T(1) + x * sn);
  }
};

// tanh; backward from the output: dx = dy * (1 - y * y).
template <typename T>
struct Tanh {
  GLO_HD T forward(T x) const { return gtanh(x); }
  GLO_HD T backward(T dy, T y) const { return dy * (T(1) - y * y); }
};

// Mish (Misra 2019): y = x * tanh(softplus(x)). With e = exp(x) and w = e (e + 2), tanh(log(1 + e)) = w / (w + 2)
// exactly: one exp and one division, no log or tanh, and 1 - tanh = 2 / (w + 2) without cancellation. From x = 20
// (torch's softplus threshold) tanh(softplus(x)) is 1 to within float64's rounding, and e stays finite. Backward from
// the input: dx = dy * (t + x * s * (1 - t^2)), t = tanh(softplus(x)), s = sigmoid(x) = e / (1 + e),
// 1 - t^2 = (1 - t)(1 + t). torch's conventions at the ends: y(-inf) = -inf * 0 = NaN, the gradient at +-inf NaN.
// Fast (16-bit device storage): exp as fast16::exp_approx (1.4e-5 relative at x = -100, 2.4e-6 at x = 20) and the
// divisions as rcp.approx (1 ulp; w + 2 in [2, 2.4e17], 1 + e in [1, 4.9e8]): the results within 3e-5 relative,
// 1/130 of a bfloat16 ulp and 1/16 of a float16 ulp.
template <typename T, bool Fast = false>
struct Mish {
  GLO_HD T forward(T x) const {
    const bool big = !(x < T(20));  // also NaN
    const T e = fexp<Fast>(big ? T(0) : x);
    const T w = e * (e + T(2));
    T t;
    if constexpr (Fast) {
      t = w * frcp_ge1<Fast>(w + T(2));
    } else {
      t = w / (w + T(2));
    }
    return x * (big ? T(1) : t);
  }
  GLO_HD T backward(T dy, T x) const {
    const bool big = !(x < T(20));
    const T e = fexp<Fast>(big ? T(0) : x);
    const T w = e * (e + T(2));
    const T r = frcp_ge1<Fast>(w + T(2));
    const T t = w * r;                                    // tanh(softplus(x))
    T s;                                                  // sigmoid(x)
    if constexpr (Fast) {
      s = e * frcp_ge1<Fast>(T(1) + e);
    } else {
      s = e / (T(1) + e);
    }
    const T d = t + x * s * (T(2) * r) * (T(1) + t);      // t + x s (1 - t) (1 + t)
    return dy * (big ? T(1) + x * T(0) : d);              // (x * 0: NaN at +inf and NaN, as torch's inf * 0)
  }
};

// Softplus (as F.softplus(x, beta, threshold)): y = x where x * beta > threshold (torch's rule, the same product and
// comparison), else log(1 + exp(x * beta)) / beta, computed as (max(u, 0) + log1p(exp(-|u|))) / beta with u = x * beta
// (no overflow; tiny results keep their precision). Backward from the input: dx = dy where u > threshold, else
// dy * sigmoid(u) from the same exp(-|u|). NaN propagates; softplus(-inf) = 0, softplus(+inf) = +inf (as torch).
// The division by beta is a product with 1 / beta rounded to T (inv_beta; one more rounding, no division per
// element). Fast (16-bit device storage): exp as fast16::exp_approx, log1p(t) as t (1 - t (1/2 - t / 3)) below
// t = 1/32 (relative error t^3 / 4 <= 7.6e-6) and lg2.approx(1 + t) ln 2 above (absolute error 1e-7 on a value >=
// 0.03), sigmoid's division as rcp.approx: within 1e-5 relative, 1/400 of a bfloat16 ulp and 1/50 of a float16 ulp.
template <typename T, bool Fast = false>
struct Softplus {
  T beta;
  T threshold;
  T inv_beta;
  GLO_HD T log1p01(T t) const {
#if defined(__CUDA_ARCH__)
    if constexpr (Fast) {
      const float series = t * (1.0f - t * (0.5f - t * 0.333333343f));
      float l2;
      asm("lg2.approx.f32 %0, %1;" : "=f"(l2) : "f"(1.0f + t));
      return t < 0.03125f ? series : l2 * 0.693147182f;
    } else
#endif
      return glog1p01(t);
  }
  GLO_HD T forward(T x) const {
    const T u = x * beta;
    const T au = u < T(0) ? -u : u;  // (NaN stays NaN)
    const T t = fexp<Fast>(-au);
    const T sp = ((u > T(0) ? u : T(0)) + log1p01(t)) * inv_beta;
    return u > threshold ? x : sp;
  }
  GLO_HD T backward(T dy, T x) const {
    const T u = x * beta;
    const T t = gexp(u < T(0) ? u : -u);  // exp(-|u|)
    const T d = T(1) + t;                  // in [1, 2]
    const T r = fdiv_ge1<Fast>(T(1), d);  // (no IEEE division call on the device: it made the float kernel spill)
    const T s = u < T(0) ? t * r : r;      // sigmoid(u)
    return u > threshold ? dy : dy * s;
  }
};

// ---- GELU (Hendrycks & Gimpel 2016): x Phi(x), Phi the standard normal CDF ----
namespace detail {

// a * b + c with one rounding (error-free transforms need it: FFMA / DFMA on the device, the FMA unit on the hosts the
// build targets; libm's exact fma otherwise).
GLO_HD float fma_exact(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
GLO_HD double fma_exact(double a, double b, double c) { return __builtin_fma(a, b, c); }

// Constants as unevaluated pairs hi + lo (hi the value rounded to T, lo the rest).
template <typename T>
struct GeluConsts;
template <>
struct GeluConsts<float> {
  static constexpr float k1 = 1.59576917f, k1_lo = -4.53406805e-8f;      // 2 sqrt(2 / pi)
  static constexpr float k3 = 0.0713548139f, k3_lo = 2.39883247e-9f;     // 2 sqrt(2 / pi) * 0.044715
  static constexpr float clamp = 12.0f;  // |x| beyond: sigmoid(z) is 0 or 1 in float (|z| > 142)
  // exp(m) for m < tiny_m is taken as exp(m + k ln 2) 2^-k (k = 96), so that no subnormal exp enters a product
  static constexpr float tiny_m = -64.0f, ln2k = 66.5421295f, ln2k_lo = -1.82846819e-7f, scale = 0x1p-96f;
};
template <>
struct GeluConsts<double> {
  static constexpr double k1 = 1.5957691216057308, k1_lo = -9.96930880911092e-17;
  static constexpr double k3 = 0.07135481627260025, k3_lo = -6.175149918155315e-19;
  static constexpr double clamp = 24.0;  // |z| > 1025
  static constexpr double tiny_m = -640.0, ln2k = 354.891356446692, ln2k_lo = 1.1873519686893054e-14,
                          scale = 0x1p-512;  // (k = 512)
};

// The tanh form's z = 2 sqrt(2/pi) (x + 0.044715 x^3) (so that 1 + tanh(z / 2) = 2 sigmoid(z)) as hi + lo, to a few
// units of T's rounding of |z| squared: sigmoid(z) for z < 0 is about exp(z), whose relative error is z's absolute
// error, and |z| reaches 142 (float) / 1025 (double) before sigmoid underflows. Error-free products (fma_exact) and
// Knuth's two-sum; the constants' own low parts included (0.044715 is torch's decimal constant, exactly).
template <typename T>
GLO_HD void gelu_tanh_z(T x, T& hi, T& lo) {
  using C = GeluConsts<T>;
  const T a = C::k1 * x;
  const T a_lo = fma_exact(C::k1, x, -a) + C::k1_lo * x;
  const T x2 = x * x;
  const T x2_lo = fma_exact(x, x, -x2);
  const T x3 = x2 * x;
  const T x3_lo = fma_exact(x2, x, -x3) + x2_lo * x;
  const T b = C::k3 * x3;
  const T b_lo = fma_exact(C::k3, x3, -b) + (C::k3_lo * x3 + C::k3 * x3_lo);
  hi = a + b;
  const T bb = hi - a;
  const T err = (a - (hi - bb)) + (b - bb);
  lo = (a_lo + b_lo) + err;
}

// The erf form in float without erf (docs/numerics/gelu_float32.py fits p): with a = |x| / sqrt 2,
// erfc(a) = exp(-x^2 / 2) R, R = (1 + p(q)) / (1 + 2a), q = (a - 2) / (a + 2) (degree 10, 0.16 u), and
// Phi(-|x|) = erfc(a) / 2 (Phi(|x|) = 1 - that: no cancellation, Phi(|x|) >= 1/2); exp(-x^2 / 2) from x * x and its
// residual (never from a rounded a: exp multiplies an argument's error by x^2 / 2); past a = 10.2 (x = 14.4) the
// value and the derivative underflow float. Near 0 (a < 0.75 and x > -0.35) Phi = 1/2 + erf(a sign x) / 2 with
// erf(a) = a P(a^2) (degree 5, 0.02 u), which keeps the value within 2 ulp there (the tail form alone: 4.5); Fast
// (16-bit storage) skips it. The fitted form is within 4 ulp with a correctly rounded exp (tests/test_accuracy.py
// sweeps it); with exp_f32's own error on top, the host functor reached 5.5 ulp at x = -5.60 in a sweep of every 7th
// float pattern (README). The derivative is within 5 ulp away from its zero (x = -0.7518).
// (Only floats: the CPU loops vectorize once the struct is inlined away; bool members kept it in memory, and GCC
// then left the loop scalar, 5x slower than torch. The branch conditions are gelu_erf_tail / gelu_erf_small.)
struct GeluErfParts {
  float r;         // R
  float e;         // exp(-x^2 / 2)
  float half_erf;  // erf(x / sqrt 2) / 2 = (x / 2) P(x^2 / 2) / sqrt 2 (not Fast)
};

// a = |x| / sqrt 2 <= 10.2 (false for +-inf, NaN): the tail form's range
GLO_HD bool gelu_erf_tail(float x) { return __builtin_fabsf(x) * 0.707106769f <= 10.2f; }
// a < 0.75 and x > -0.35, not Fast: Phi = 1/2 + half_erf there
template <bool Fast>
GLO_HD bool gelu_erf_small(float x) { return !Fast && __builtin_fabsf(x) * 0.707106769f < 0.75f && x > -0.35f; }

GLO_HD float gelu_erf_small_poly(float t) {  // P(t), erf(a) = a P(a^2) on [0, 0.75] (degree 5, 0.02 u)
  float p = -6.74720795e-4f;
  p = fma_f(p, t, 5.11401845e-3f);
  p = fma_f(p, t, -2.68344618e-2f);
  p = fma_f(p, t, 1.12833731e-1f);
  p = fma_f(p, t, -3.76126200e-1f);
  return fma_f(p, t, 1.12837911f);
}

// p of degree 6 for 16-bit storage (Fast): 7.8e-6 relative in 1 + p (fitted as the degree-10 one), 1/500 of a
// bfloat16 ulp and 1/60 of a float16 ulp, four FMAs fewer.
GLO_HD float gelu_erfc_poly6(float q) {
  float p = 5.38003864e-3f;
  p = fma_f(p, q, -7.56483013e-3f);
  p = fma_f(p, q, -5.22852615e-2f);
  p = fma_f(p, q, 1.64035872e-1f);
  p = fma_f(p, q, -1.66368261e-1f);
  p = fma_f(p, q, -9.27646980e-2f);
  return fma_f(p, q, 2.76987672e-1f);
}

GLO_HD float gelu_erfc_poly(float q) {  // p(q)
  float p = 2.28263398e-5f;
  p = fma_f(p, q, -3.70543799e-4f);
  p = fma_f(p, q, -1.25132501e-3f);
  p = fma_f(p, q, 1.27968122e-3f);
  p = fma_f(p, q, 8.63859430e-3f);
  p = fma_f(p, q, -8.04692600e-3f);
  p = fma_f(p, q, -5.42053431e-2f);
  p = fma_f(p, q, 1.64053500e-1f);
  p = fma_f(p, q, -1.66031346e-1f);
  p = fma_f(p, q, -9.27639082e-2f);
  return fma_f(p, q, 2.76978403e-1f);
}

}  // namespace detail


namespace detail {
template <bool Fast>
GLO_HD GeluErfParts gelu_erf_parts(float x) {
  GeluErfParts g;
  const float a = __builtin_fabsf(x) * 0.707106769f;
  const bool tail = gelu_erf_tail(x);  // (the derivative, x phi(x), underflows at x = 14.4)
  const float at = tail ? a : 0.0f;  // (inf, NaN: the tail's values are not used)
  const float xt = tail ? x : 0.0f;
  const float q = fdiv_ge1<Fast>(at - 2.0f, at + 2.0f);
  g.r = fdiv_ge1<Fast>(1.0f + (Fast ? gelu_erfc_poly6(q) : gelu_erfc_poly(q)), fma_exact(2.0f, at, 1.0f));
  const float s = xt * xt;
  const float e = fexp<Fast>(-0.5f * s);
  if constexpr (Fast) {
    g.e = e;  // (x^2's rounding: below 6e-6 relative where e is not 0, far below a 16-bit ulp)
    g.half_erf = 0.0f;
  } else {
    g.e = fma_exact(e, -0.5f * fma_exact(xt, xt, -s), e);  // exp(-(s + s_lo) / 2)
    const float a0 = x * 0.707106769f;
    g.half_erf = (0.5f * a0) * gelu_erf_small_poly(a0 * a0);
  }
  return g;
}
}  // namespace detail

// GELU, erf form (as F.gelu(x), approximate="none"): y = x Phi(x). Backward from the input: dx = dy (Phi(x) + x phi(x)),
// phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
//  * float opmath: detail::gelu_erf_parts, accurate for every x (torch forms 1 + erf(x / sqrt 2), which cancels for
//    x < 0: its float gelu(-6) is -0.0, the value -5.9e-9).
//  * double: x / 2 * erfc(-x / sqrt 2) (no cancellation), the derivative erfc(-x / sqrt 2) / 2 + x phi(x), with the
//    rounding of erfc's and exp's arguments corrected (detail::gelu_erfc_exp_f64).
// Conventions: NaN propagates; gelu(-inf) = NaN (-inf * 0, as torch), gelu(+inf) = +inf (torch's float kernels give
// NaN there); the gradient at +-inf is NaN, as torch's; a gradient that underflows (x < -14.4 in float) is -0.0, the
// sign of its value (torch's is +0.0). Fast (16-bit device storage): exp as fast16::exp_approx and the
// two divisions as rcp.approx: within 1e-5 relative wherever the result is a normal bfloat16 or float16.
template <typename T, bool Fast = false>
struct GELU;

template <bool Fast>
struct GELU<float, Fast> {
  GLO_HD float forward(float x) const { return value(x, detail::gelu_erf_parts<Fast>(x)); }
  GLO_HD float backward(float dy, float x) const { return grad(dy, x, detail::gelu_erf_parts<Fast>(x)); }
  // Both from one evaluation of the parts (the same bits as the two calls; for glo::Gated's backward).
  GLO_HD void value_and_backward(float x, float dy, float& y, float& dx) const {
    const detail::GeluErfParts g = detail::gelu_erf_parts<Fast>(x);
    y = value(x, g);
    dx = grad(dy, x, g);
  }
  GLO_HD float value(float x, const detail::GeluErfParts& g) const {
    const bool tail = detail::gelu_erf_tail(x);
    const float h = (0.5f * g.e) * g.r;                              // Phi(-|x|)
    const float neg = tail ? ((0.5f * x) * g.r) * g.e : x * 0.0f;    // exp last: subnormal results round once
    const float pos = x * (1.0f - (tail ? h : 0.0f));
    const float small = x * (0.5f + g.half_erf);  // (Phi > 0: the sign of x, -0.0 and the tiniest x included)
    return detail::gelu_erf_small<Fast>(x) ? small : (x < 0.0f ? neg : pos);
  }
  GLO_HD float grad(float dy, float x, const detail::GeluErfParts& g) const {
    const bool tail = detail::gelu_erf_tail(x);
    const bool is_small = detail::gelu_erf_small<Fast>(x);
    const float h = tail ? (0.5f * g.e) * g.r : 0.0f;
    const float xc = x * 0.398942292f;  // x / sqrt(2 pi)
    const float neg = (0.5f * g.r + xc) * g.e;
    const float cdf = is_small ? 0.5f + g.half_erf : 1.0f - h;
    float d = (x < 0.0f && !is_small) ? neg : detail::fma_f(xc, g.e, cdf);
    d = tail ? d : (x < 0.0f ? x * 0.0f : 1.0f + x * 0.0f);  // -0.0 or 1; NaN at +-inf and NaN, as torch's
    return dy * d;
  }
};

namespace detail {
// (erfc(-x / sqrt 2), exp(-x^2 / 2)) in double, each to a few ulp: a = fl(-x / sqrt 2) is off by d (computed with an
// FMA and sqrt(1/2)'s low part), and erfc(a + d) = erfc(a) - d (2 / sqrt pi) exp(-a^2) to first order (unfixed, the
// argument's rounding costs up to x^2 ulps); exp(-x^2 / 2) from x * x and its residual likewise.
GLO_HD void gelu_erfc_exp_f64(double x, double& c, double& e) {
  const bool in = x > -40.0 && x < 40.0;  // beyond, erfc(a) is 0 or 2 and e 0 (also for +-inf, NaN)
  const double xt = in ? x : 0.0;
  const double a = -x * 0.70710678118654752;
  const double at = -xt * 0.70710678118654752;
  const double d = fma_exact(-xt, 0.70710678118654752, -at) + (-xt) * -4.833646656726457e-17;
  const double s = xt * xt;
  const double s_lo = fma_exact(xt, xt, -s);
  const double ex = ::exp(-0.5 * s);
  e = in ? ex - ex * (0.5 * s_lo) : 0.0;
  c = ::erfc(a) - d * 1.1283791670955126 * e;  // (exp(-a^2) = e to far better than this term needs)
}
}  // namespace detail

template <bool Fast>
struct GELU<double, Fast> {
  GLO_HD double forward(double x) const {
    double c, e;
    detail::gelu_erfc_exp_f64(x, c, e);
    return 0.5 * x * c;
  }
  GLO_HD double backward(double dy, double x) const {
    double c, e;
    detail::gelu_erfc_exp_f64(x, c, e);
    return grad(dy, x, c, e);
  }
  GLO_HD void value_and_backward(double x, double dy, double& y, double& dx) const {
    double c, e;
    detail::gelu_erfc_exp_f64(x, c, e);
    y = 0.5 * x * c;
    dx = grad(dy, x, c, e);
  }
  GLO_HD double grad(double dy, double x, double c, double e) const {
    const double d = 0.5 * c + x * 0.3989422804014327 * e;
    return dy * (d == 0.0 ? x * 0.0 : d);  // (an underflowed derivative keeps its sign: -0.0, as GELU<float>'s)
  }
};

// GELU, tanh form (as F.gelu(x, approximate="tanh")): 0.5 x (1 + tanh(z / 2)) = x sigmoid(z),
// z = 2 sqrt(2/pi) (x + 0.044715 x^3), with sigmoid from e = exp(-|z|) (no cancellation: torch's 1 + tanh loses
// everything for x < -3 in float) and z carried as hi + lo (detail::gelu_tanh_z), e = exp(hi) (1 + lo). Backward
// from the input: dx = dy (s + x s (1 - s) z'), z' = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2), 1 - s = sigmoid(-z) from
// the same e. Conventions are torch's: NaN propagates, gelu(-inf) = NaN, gelu(+inf) = +inf, the gradient at +-inf
// NaN. Fast (16-bit device storage): z in one piece and the division as rcp.approx: z's rounding (|z| u) stays below
// 1e-5 relative wherever the result is a normal 16-bit number.
template <typename T, bool Fast = false>
struct GELUTanh {
  // s = sigmoid(z) / sc, sn = sigmoid(-z), zp = z'; x clamped to +-GeluConsts<T>::clamp (NaN kept), past which s is
  // 0 or 1. sc is 1, or 2^-k where sigmoid(z) = exp(z) would be subnormal (z < tiny_m): the products with s then
  // stay normal and round once, at the final * sc (a subnormal s would carry an absolute error, 2^-150 in float,
  // that x s z' multiplies: 15 ulp of a result just above the smallest normal float).
  GLO_HD void parts(T x, T& s, T& sn, T& zp, T& sc) const {
    using C = detail::GeluConsts<T>;
    const T xc = x > C::clamp ? C::clamp : (x < -C::clamp ? -C::clamp : x);
    T hi, lo;
    if constexpr (Fast) {
      hi = xc * (C::k1 + C::k3 * (xc * xc));
      lo = T(0);
    } else {
      detail::gelu_tanh_z(xc, hi, lo);
    }
    const bool neg = hi < T(0);
    T m = neg ? hi : -hi;  // -|z|
    T ml = neg ? lo : -lo;
    const bool tiny = !Fast && hi < C::tiny_m;  // (m < tiny_m with z < 0; one comparison keeps the CPU loop vector)
    if constexpr (!Fast) {  // m + ml + k ln 2 as hi + lo (|m| > ln2k: the fast two-sum is exact)
      const T t = m + C::ln2k;
      const T t_lo = ((m - t) + C::ln2k) + (ml + C::ln2k_lo);
      m = tiny ? t : m;
      ml = tiny ? t_lo : ml;
    }
    T e = fexp<Fast>(m);
    if constexpr (!Fast) e = e + e * ml;  // exp(m + ml)
    e = x < -C::clamp ? T(0) : e;          // (sigmoid(z) is 0 there, also scaled: x sigmoid(z) is -0.0, NaN at -inf)
    const T d = T(1) + (tiny ? T(0) : e);  // in [1, 2]
    T r, er;
    if constexpr (Fast) {
      r = frcp12<Fast>(d);
      er = e * r;
    } else {
      r = fdiv_ge1<false>(T(1), d);
      er = fdiv_ge1<false>(e, d);
    }
    s = neg ? er : r;
    sn = neg ? r : er;
    sc = tiny ? C::scale : T(1);
    zp = T(3) * C::k3 * (xc * xc) + C::k1;
  }
  GLO_HD T forward(T x) const {
    T s, sn, zp, sc;
    parts(x, s, sn, zp, sc);
    return (x * s) * sc;
  }
  GLO_HD T backward(T dy, T x) const {
    T s, sn, zp, sc;
    parts(x, s, sn, zp, sc);
    return grad(dy, x, s, sn, zp, sc);
  }
  GLO_HD void value_and_backward(T x, T dy, T& y, T& dx) const {
    T s, sn, zp, sc;
    parts(x, s, sn, zp, sc);
    y = (x * s) * sc;
    dx = grad(dy, x, s, sn, zp, sc);
  }
  GLO_HD T grad(T dy, T x, T s, T sn, T zp, T sc) const {
    const T d = s + x * (s * sn * zp);
    return (dy * (s == T(0) ? x * T(0) : d)) * sc;  // (an underflowed derivative keeps its sign: -0.0)
  }
};

// x + 3 clamped to [0, 6], NaN propagating (torch's maximum / minimum): the hard activations' common part.
template <typename T>
GLO_HD T relu6_of_x_plus_3(T x) {
  const T c = x + T(3);
  const T lo = c < T(0) ? T(0) : c;
  return lo > T(6) ? T(6) : lo;
}

// Hardsigmoid (as F.hardsigmoid): y = min(max(x + 3, 0), 6) / 6, torch's operations in torch's order, so the values
// are bitwise torch's. Backward from the input: dx = dy * (1/6) for -3 < x < 3, else 0 (torch's value at the kinks
// and at NaN); 1/6 rounded to T (torch multiplies by the float 1/6 also for float64 data: 3e-8 relative off).
// Fast (16-bit device storage): fdiv6's product, as PyTorch's CUDA kernel.
template <typename T, bool Fast = false>
struct Hardsigmoid {
  GLO_HD T forward(T x) const { return fdiv6<Fast>(relu6_of_x_plus_3(x)); }
  GLO_HD T backward(T dy, T x) const {
    const T mid = dy * (T(1) / T(6));
    return x > T(-3) && x < T(3) ? mid : T(0);
  }
};

// Hardswish (Howard et al. 2019, as F.hardswish): y = x * min(max(x + 3, 0), 6) / 6 in torch's order (bitwise
// torch's). Backward from the input, torch's values at the kinks: dx = 0 for x <= -3, dy for x >= 3, else
// dy * (x / 3 + 1/2); NaN propagates (torch's vectorized loop; its scalar tail passes dy).
// Fast (16-bit device storage): fdiv6's product, as PyTorch's CUDA kernel.
template <typename T, bool Fast = false>
struct Hardswish {
  GLO_HD T forward(T x) const { return fdiv6<Fast>(x * relu6_of_x_plus_3(x)); }
  GLO_HD T backward(T dy, T x) const {
    const T mid = dy * (x / T(3) + T(0.5));
    return x <= T(-3) ? T(0) : (x >= T(3) ? dy : mid);
  }
};

// ReLU with the interface above (forward(x), backward(dy, x)): the gate of ReGLU. Values as ReLU<T>; the backward
// reads the input: dx = dy where !(x <= 0), else 0 (torch's threshold_backward on the output, whose NaN passes dy).
template <typename T>
struct ReLUOfInput {
  GLO_HD T forward(T x) const { return ReLU<T>{}.forward(x); }
  GLO_HD T backward(T dy, T x) const { return ReLU<T>{}.backward(dy, ReLU<T>{}.keep(x)); }
};

// ---------------------------------------------------------------------------------------------------------------
// Gated linear units (Dauphin et al. 2017; Shazeer 2020): y = act(a) * b, `act` a functor of the interface above
// (SwiGLU: SiLU; GeGLU: GELU or GELUTanh; ReGLU: ReLUOfInput). The products and their order are those of torch's
// composite act(a) * b and of its autograd: da = act.backward(dy * b, a) (mul's backward forms dy * b, then act's
// backward takes it), db = dy * act(a); here each in opmath with one rounding to the storage type at the end (the
// composite rounds act(a) and dy * b to 16-bit storage first). No division, so no Fast form of its own: the device
// kernels hand the act's fast16 variant for 16-bit storage.
// ---------------------------------------------------------------------------------------------------------------
template <typename T, class Act>
struct Gated {
  Act act;
  GLO_HD T forward(T a, T b) const { return act.forward(a) * b; }
  // da and db; from one evaluation of act's common parts where it has value_and_backward (the same bits).
  GLO_HD void backward(T dy, T a, T b, T& da, T& db) const {
    if constexpr (requires(T y, T d) { act.value_and_backward(a, dy, y, d); }) {
      T y;
      act.value_and_backward(a, dy * b, y, da);
      db = dy * y;
    } else {
      da = act.backward(dy * b, a);
      db = dy * act.forward(a);
    }
  }
};

template <typename T, class Act>
GLO_HD Gated<T, Act> gated(const Act& act) {
  return {act};
}

// ---------------------------------------------------------------------------------------------------------------
// Activations with learned per-channel parameters (kParams of them, 1 or C elements each). Per channel, the kernels
// turn the channel's raw parameter values p[0 .. kParams) into kConsts constants once (`prepare`: e.g. PELU's a/b and
// 1/b, so that no element pays a division), and hand those constants k to the element functions:
//   prepare(p, k)  k[0 .. kConsts) from p[0 .. kParams)
//   forward(x, k) -> y
//   backward(x, dy, k, dp) -> dx, and writes dp[j] = this element's term of parameter j's gradient (summed per
//   channel by the kernels, deterministically).
// ---------------------------------------------------------------------------------------------------------------

// PReLU (He et al. 2015): y = x for x > 0, w * x otherwise.
// dx = dy for x > 0, w * dy otherwise;  dw term = 0 for x > 0, x * dy otherwise.
template <typename T>
struct PReLU {
  static constexpr int kParams = 1;
  static constexpr int kConsts = 1;  // w
  GLO_HD void prepare(const T* p, T* k) const { k[0] = p[0]; }
  GLO_HD T forward(T x, const T* k) const {
    const T neg = k[0] * x;
    return x > T(0) ? x : neg;
  }
  GLO_HD T backward(T x, T dy, const T* k, T* dp) const {
    const T neg_dw = x * dy;
    const T neg_dx = k[0] * dy;
    dp[0] = x > T(0) ? T(0) : neg_dw;
    return x > T(0) ? dy : neg_dx;
  }
};

// PELU (Trottier et al. 2017), parameters a, b > 0: y = (a/b) x for x >= 0, a (exp(x/b) - 1) otherwise.
// With u = x/b and E = exp(u) on the negative side (1 on the positive side):
//   dx = (a/b) E dy;   da term = (u for x >= 0, expm1(u) otherwise) dy;   db term = -(a/b) u E dy.
// Per channel: k = (a/b, 1/b, a), each correctly rounded; per element u = x * (1/b) (within 1.5 ulp of x/b: one
// rounding of the reciprocal, one of the product) and no division.
// Only the selected side is used, so a huge positive x gives finite gradients (the torch.where composite gives NaN
// there: its unselected exp side overflows and 0 * inf leaks into the gradient).
template <typename T, bool Fast = false>  // Fast: 16-bit storage on the device (see fast16 above)
struct PELU {
  static constexpr int kParams = 2;
  static constexpr int kConsts = 3;  // a/b, 1/b, a
  GLO_HD void prepare(const T* p, T* k) const {
    k[0] = p[0] / p[1];
    k[1] = T(1) / p[1];
    k[2] = p[0];
  }
  GLO_HD T forward(T x, const T* k) const {
    const T pos = k[0] * x;
    const T neg = k[2] * fexpm1<Fast>(x * k[1]);
    return x >= T(0) ? pos : neg;
  }
  GLO_HD T backward(T x, T dy, const T* k, T* dp) const {
    const T r = k[0];
    const T u = x * k[1];
    const bool pos = x >= T(0);
    // E = exp(u) itself, not 1 + expm1(u): for u << 0 the sum's rounding (up to half an ulp of 1) would be larger
    // than E, and dx = r E dy would lose all its relative accuracy (u = -17: E = 4e-8 in float32).
    const T e = gexp(u);
    const T e_dy = dy * e;
    const T ge = pos ? dy : e_dy;  // E dy
    const T neg_da = fexpm1_given_exp<Fast>(u, e) * dy;
    const T pos_da = u * dy;
    dp[0] = pos ? pos_da : neg_da;
    if constexpr (Fast) {  // -u (r E dy): one product fewer per element than -(r u) (E dy), the same two roundings
      const T dx = r * ge;
      dp[1] = -u * dx;
      return dx;
    } else {
      dp[1] = -(r * u) * ge;
      return r * ge;
    }
  }
};

// Bias + activation (Apex's fused bias-GELU; the bias of a Linear layer folded into its activation): y = act(x + bias)
// with one bias per channel (the last dim: the kernels see x as [rows, channels = last dim, 1]); `act` a functor of
// the unary interface above. dx = act.backward(dy, x + bias), which is also the bias's gradient term (summed over the
// rows by the kernels, deterministically). u = x + bias is formed in opmath (torch's composite rounds it to 16-bit
// storage first).
template <typename T, class Act>
struct BiasAct {
  static constexpr int kParams = 1;
  static constexpr int kConsts = 1;  // the bias
  static constexpr bool kChannelsInnermost = true;  // (its geometry: [rows, C, 1] or one channel)
  Act act;
  GLO_HD void prepare(const T* p, T* k) const { k[0] = p[0]; }
  GLO_HD T forward(T x, const T* k) const { return act.forward(x + k[0]); }
  GLO_HD T backward(T x, T dy, const T* k, T* dp) const {
    const T dx = act.backward(dy, x + k[0]);
    dp[0] = dx;
    return dx;
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Maxout (Goodfellow et al. 2013): the max over groups of `pieces` consecutive channels. The winner is the first
// maximal element, or the first NaN (as torch.max): `better(v, best)` says whether v replaces the current best.
// ---------------------------------------------------------------------------------------------------------------
template <typename T>
GLO_HD bool maxout_better(T v, T best) {
  // Bitwise, not short-circuit, operators: no branch (random data would mispredict half of them).
  return static_cast<bool>(static_cast<int>(v > best) | (static_cast<int>(v != v) & static_cast<int>(best == best)));
}

// x seen as [outer, groups * pieces, inner]; y and the saved indices as [outer, groups, inner].
struct MaxoutGeometry {
  int64_t outer;
  int64_t groups;
  int64_t pieces;
  int64_t inner;
};

// ---------------------------------------------------------------------------------------------------------------
// Packed 1-bit masks: bit j of word w belongs to element 32*w + j of the input in row-major (contiguous) order.
// ---------------------------------------------------------------------------------------------------------------
// A saved mask holds mask_words(numel) words of bits and then kMaskPad words of zeros, never read: its length is
// never 0 or 1, so that symbolic-shape tracing (torch.export / torch.compile with a dynamic dim) does not have to
// guard on whether ceil(numel / 32) is below 2 (PyTorch's contiguity check of every traced output asks), which
// would specialize the dynamic dim.
constexpr int64_t kMaskBits = 32;
constexpr int64_t kMaskPad = 2;
GLO_HD int64_t mask_words(int64_t numel) { return (numel + kMaskBits - 1) / kMaskBits; }
GLO_HD int64_t mask_length(int64_t numel) { return mask_words(numel) + kMaskPad; }
GLO_HD bool mask_bit(const int32_t* mask, int64_t i) {
  return (static_cast<uint32_t>(mask[i >> 5]) >> (i & 31)) & 1u;
}

// ---------------------------------------------------------------------------------------------------------------
// Per-channel geometry: a contiguous input seen as [outer, channels, inner]; element i belongs to channel
// (i / inner) % channels. With a single shared parameter the whole tensor is one channel.
// ---------------------------------------------------------------------------------------------------------------
struct ChannelGeometry {
  int64_t outer;
  int64_t channels;
  int64_t inner;
};

// ---------------------------------------------------------------------------------------------------------------
// fast16_variant(f): the functor the CUDA kernels use for 16-bit storage: f's Fast variant where it has one (ELU,
// Sigmoid, PELU), f itself otherwise.
// ---------------------------------------------------------------------------------------------------------------
template <class F>
GLO_HD F fast16_variant(const F& f) {
  return f;
}
template <typename T>
GLO_HD ELU<T, true> fast16_variant(const ELU<T, false>& f) {
  return {f.alpha};
}
template <typename T>
GLO_HD Sigmoid<T, true> fast16_variant(const Sigmoid<T, false>&) {
  return {};
}
template <typename T>
GLO_HD PELU<T, true> fast16_variant(const PELU<T, false>&) {
  return {};
}
template <typename T>
GLO_HD SiLU<T, true> fast16_variant(const SiLU<T, false>&) {
  return {};
}
template <typename T>
GLO_HD Mish<T, true> fast16_variant(const Mish<T, false>&) {
  return {};
}
template <typename T>
GLO_HD Hardsigmoid<T, true> fast16_variant(const Hardsigmoid<T, false>&) {
  return {};
}
template <typename T>
GLO_HD Hardswish<T, true> fast16_variant(const Hardswish<T, false>&) {
  return {};
}
template <typename T>
GLO_HD Softplus<T, true> fast16_variant(const Softplus<T, false>& f) {
  return {f.beta, f.threshold, f.inv_beta};
}
template <typename T>
GLO_HD GELU<T, true> fast16_variant(const GELU<T, false>&) {
  return {};
}
template <typename T>
GLO_HD GELUTanh<T, true> fast16_variant(const GELUTanh<T, false>&) {
  return {};
}
template <typename T, class Act>
GLO_HD auto fast16_variant(const BiasAct<T, Act>& f) {
  const auto act = fast16_variant(f.act);
  return BiasAct<T, decltype(act)>{act};
}

GLO_ISA_END
}  // namespace glo
