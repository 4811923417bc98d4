// Float element math with AVX-512 intrinsics for the CPU kernels (csrc/cpu/activations_cpu.cpp), on hosts whose
// build targets AVX-512 (setup.py: -march=x86-64-v4). About 1.6-1.8x faster per element in L1 than GCC's
// vectorization of the scalar definitions: that spends its instructions on exp_f32's clamp (per-lane blends) and on
// the two-step 2^n scaling; here the clamp is one max and one min, and the scaling one vscalefps, which multiplies by
// 2^n with a single rounding, subnormal results and overflow included: the same result as exp_f32's exact first step
// and rounding second step.
//
// Each function does the operations of its functor in glo/activations.h (detail::exp_f32, detail::tanh_f32,
// Sigmoid, Tanh, SiLU, Gated<SiLU>), in the same order and with the same roundings (no contraction into FMAs where
// the functor has none), so its results are bitwise those of the scalar definitions, which stay the definition of
// the math: tests/test_cpu_avx512.py compiles both and compares their bits over a sweep of float32 bit patterns
// (NaN payloads and specials included).
//
// One exception, GELU's erf form (gelu_parts): its functor (GELU<float>, shared with the device) spends two
// divisions and a degree-10 polynomial, and a same-bits port of it ran only 5% faster; here Phi comes from a table of
// 32 polynomial pieces picked by vpermt2ps instead, about 2.5x faster per element and as accurate (a few ulp:
// tests/test_cpu_avx512.py sweeps it against float64, values and derivatives). Its results differ from the
// functor's (and from the AVX2 builds') in the last bits.
#pragma once

#include "glo/isa.h"

#if defined(__AVX512F__) && !defined(__CUDA_ARCH__)
#include <immintrin.h>

#include <climits>
#include <cstdint>

#include "glo/activations.h"

#define GLO_CPU_AVX512 1

namespace glo {
GLO_ISA_BEGIN
namespace avx512 {


inline __m512 neg(__m512 v) {  // -v: flips the sign bit, of NaN too, as scalar negation does
  return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN)));
}

// max, min and scalef through their masked forms with every lane set (the same instructions): the unmasked
// intrinsics pass _mm512_undefined_ps(), on which GCC 12 warns -Wmaybe-uninitialized wherever they are inlined.
constexpr __mmask16 kAll = 0xFFFF;

// exp(xc (+ lo)) for xc in [-105.2, 89], not NaN: n = round(xc / ln 2), r = xc - n ln 2 (two parts), plus lo where
// WithLo (a small correction of the argument, added to r), and (1 + (exp(r) - 1)) * 2^n by one vscalefps.
template <bool WithLo>
inline __m512 exp_reduced(__m512 xc, __m512 lo) {
  const __m512 shifter = _mm512_set1_ps(12582912.0f);
  const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), shifter), shifter);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), xc);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  if constexpr (WithLo) r = _mm512_add_ps(r, lo);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 em1 = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  const __m512 p1 = _mm512_add_ps(em1, _mm512_set1_ps(1.0f));
  return _mm512_mask_scalef_ps(p1, kAll, p1, n);
}

inline __m512 exp_f32(__m512 x) {
  // max returns its second operand for a NaN x: NaN is computed on -104, and x is returned as is at the end.
  const __m512 lo = _mm512_mask_max_ps(x, kAll, x, _mm512_set1_ps(-104.0f));
  const __m512 xc = _mm512_mask_min_ps(lo, kAll, lo, _mm512_set1_ps(89.0f));
  return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, x, _CMP_ORD_Q), exp_reduced<false>(xc, xc));
}

inline __m512 sigmoid(__m512 x) {
  const __mmask16 lt0 = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 e = exp_f32(_mm512_mask_mov_ps(neg(x), lt0, x));
  const __m512 pos = _mm512_div_ps(one, _mm512_add_ps(one, e));
  return _mm512_mask_mul_ps(pos, lt0, e, pos);
}

inline __m512 tanh(__m512 x) {
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
  const __m512 zero = _mm512_setzero_ps();
  // x == 0: x itself (keeps the sign of -0.0)
  const __m512 small = _mm512_mask3_fmadd_ps(_mm512_mul_ps(p, z), x, x, _mm512_cmp_ps_mask(x, zero, _CMP_NEQ_UQ));
  const __mmask16 lt0 = _mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ);
  const __m512 ax = _mm512_mask_mov_ps(x, lt0, neg(x));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 two = _mm512_set1_ps(2.0f);
  const __m512 big = _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(exp_f32(_mm512_mul_ps(two, ax)), one)));
  const __m512 large = _mm512_mask_mov_ps(big, lt0, neg(big));
  return _mm512_mask_mov_ps(large, _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ), small);
}

// SiLU<float>::forward: x * sigmoid(x).
inline __m512 silu(__m512 x) { return _mm512_mul_ps(x, sigmoid(x)); }

// SiLU<float>::value_and_backward: from e = exp(-|x|) and r = 1 / (1 + e), y = x * (x < 0 ? e * r : r) and
// dx = dy * s * (1 + x * sn), s = sigmoid(x) and sn = sigmoid(-x) being e / (1 + e) (a division) and r by x's sign.
inline void silu_value_and_grad(__m512 x, __m512 dy, __m512& y, __m512& dx) {
  const __mmask16 lt0 = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 e = exp_f32(_mm512_mask_mov_ps(neg(x), lt0, x));
  const __m512 d = _mm512_add_ps(one, e);
  const __m512 r = _mm512_div_ps(one, d);
  const __m512 er = _mm512_div_ps(e, d);
  y = _mm512_mul_ps(x, _mm512_mask_mul_ps(r, lt0, e, r));
  const __m512 s = _mm512_mask_mov_ps(r, lt0, er);
  const __m512 sn = _mm512_mask_mov_ps(er, lt0, r);
  dx = _mm512_mul_ps(_mm512_mul_ps(dy, s), _mm512_add_ps(one, _mm512_mul_ps(x, sn)));
}

// ---- Hardsigmoid, Hardswish, ReLU (ReGLU's gate), Softplus: their functors' operations, in order ----
inline __m512 set(float v) { return _mm512_set1_ps(v); }
inline __m512 relu6_of_x_plus_3(__m512 x) {  // x + 3 clamped to [0, 6], NaN kept
  const __m512 c = _mm512_add_ps(x, set(3.0f));
  const __m512 lo = _mm512_mask_mov_ps(c, _mm512_cmp_ps_mask(c, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
  return _mm512_mask_mov_ps(lo, _mm512_cmp_ps_mask(lo, set(6.0f), _CMP_GT_OQ), set(6.0f));
}
inline __m512 hardsigmoid(__m512 x) { return _mm512_div_ps(relu6_of_x_plus_3(x), set(6.0f)); }
inline __m512 hardsigmoid_grad(__m512 x, __m512 dy) {  // dy * fl(1/6) for -3 < x < 3, else +0.0
  const __mmask16 mid = _mm512_cmp_ps_mask(x, set(-3.0f), _CMP_GT_OQ) & _mm512_cmp_ps_mask(x, set(3.0f), _CMP_LT_OQ);
  return _mm512_maskz_mov_ps(mid, _mm512_mul_ps(dy, set(1.0f / 6.0f)));
}
inline __m512 hardswish(__m512 x) { return _mm512_div_ps(_mm512_mul_ps(x, relu6_of_x_plus_3(x)), set(6.0f)); }
inline __m512 hardswish_grad(__m512 x, __m512 dy) {  // 0 for x <= -3, dy for x >= 3, else dy (x / 3 + 1/2)
  const __m512 mid = _mm512_mul_ps(dy, _mm512_add_ps(_mm512_div_ps(x, set(3.0f)), set(0.5f)));
  const __m512 r = _mm512_mask_mov_ps(mid, _mm512_cmp_ps_mask(x, set(3.0f), _CMP_GE_OQ), dy);
  return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, set(-3.0f), _CMP_LE_OQ), _mm512_setzero_ps());
}
inline __m512 relu(__m512 x) {  // x < 0 ? 0 : x (NaN and -0.0 kept)
  return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
}
inline __m512 relu_grad(__m512 x, __m512 dy) {  // dy where !(x <= 0), else +0.0
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NLE_UQ), dy);
}
// detail::log1p01_f32: log1p(t) for t in [0, 1] or NaN
inline __m512 log1p01(__m512 t) {
  const __m512 one = set(1.0f);
  const __m512 u = _mm512_add_ps(one, t);
  const __mmask16 hi = _mm512_cmp_ps_mask(u, set(1.41421356f), _CMP_GT_OQ);
  const __m512 m = _mm512_mask_mul_ps(u, hi, set(0.5f), u);
  const __m512 k = _mm512_maskz_mov_ps(hi, one);
  const __m512 f = _mm512_sub_ps(m, one);
  const __m512 c = _mm512_div_ps(_mm512_sub_ps(t, _mm512_sub_ps(u, one)), u);
  const __m512 z = _mm512_mul_ps(f, f);
  __m512 p = set(7.0376836292e-2f);
  p = _mm512_fmadd_ps(p, f, set(-1.1514610310e-1f));
  p = _mm512_fmadd_ps(p, f, set(1.1676998740e-1f));
  p = _mm512_fmadd_ps(p, f, set(-1.2420140846e-1f));
  p = _mm512_fmadd_ps(p, f, set(1.4249322787e-1f));
  p = _mm512_fmadd_ps(p, f, set(-1.6668057665e-1f));
  p = _mm512_fmadd_ps(p, f, set(2.0000714765e-1f));
  p = _mm512_fmadd_ps(p, f, set(-2.4999993993e-1f));
  p = _mm512_fmadd_ps(p, f, set(3.3333331174e-1f));
  __m512 y = _mm512_mul_ps(f, _mm512_mul_ps(z, p));
  y = _mm512_fmadd_ps(k, set(-2.12194440e-4f), y);
  y = _mm512_fmadd_ps(set(-0.5f), z, y);
  const __m512 r = _mm512_add_ps(f, _mm512_add_ps(y, c));
  return _mm512_fmadd_ps(k, set(0.693359375f), r);
}
// Softplus<float>: u = x beta; forward (max(u, 0) + log1p(exp(-|u|))) inv_beta, x where u > threshold; backward
// dy sigmoid(u) from exp(-|u|), dy where u > threshold.
struct SoftplusParams {
  float beta, threshold, inv_beta;
};
inline __m512 softplus(__m512 x, const SoftplusParams& q) {
  const __m512 u = _mm512_mul_ps(x, set(q.beta));
  const __m512 au = _mm512_mask_mov_ps(u, _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ), neg(u));
  const __m512 t = exp_f32(neg(au));
  const __m512 up = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_GT_OQ), u);
  const __m512 sp = _mm512_mul_ps(_mm512_add_ps(up, log1p01(t)), set(q.inv_beta));
  return _mm512_mask_mov_ps(sp, _mm512_cmp_ps_mask(u, set(q.threshold), _CMP_GT_OQ), x);
}
inline __m512 softplus_grad(__m512 x, __m512 dy, const SoftplusParams& q) {
  const __m512 u = _mm512_mul_ps(x, set(q.beta));
  const __mmask16 lt0 = _mm512_cmp_ps_mask(u, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 t = exp_f32(_mm512_mask_mov_ps(neg(u), lt0, u));
  const __m512 r = _mm512_div_ps(set(1.0f), _mm512_add_ps(set(1.0f), t));
  const __m512 sg = _mm512_mask_mul_ps(r, lt0, t, r);
  return _mm512_mask_mov_ps(_mm512_mul_ps(dy, sg), _mm512_cmp_ps_mask(u, set(q.threshold), _CMP_GT_OQ), dy);
}

// ---- GELUTanh<float>: x sigmoid(z), z = 2 sqrt(2/pi) (x + 0.044715 x^3) as hi + lo (detail::gelu_tanh_z), the
// functor's operations in order (fma where it calls fma_exact) ----
struct GeluTanhParts {
  __m512 s, sn, zp, sc;
};
inline GeluTanhParts gelu_tanh_parts(__m512 x) {
  using C = detail::GeluConsts<float>;
  const __m512 zero = _mm512_setzero_ps();
  const __m512 hi_c = _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, set(-C::clamp), _CMP_LT_OQ), set(-C::clamp));
  const __m512 xc = _mm512_mask_mov_ps(hi_c, _mm512_cmp_ps_mask(x, set(C::clamp), _CMP_GT_OQ), set(C::clamp));
  // detail::gelu_tanh_z(xc, hi, lo)
  const __m512 a = _mm512_mul_ps(set(C::k1), xc);
  const __m512 a_lo = _mm512_add_ps(_mm512_fmsub_ps(set(C::k1), xc, a), _mm512_mul_ps(set(C::k1_lo), xc));
  const __m512 x2 = _mm512_mul_ps(xc, xc);
  const __m512 x2_lo = _mm512_fmsub_ps(xc, xc, x2);
  const __m512 x3 = _mm512_mul_ps(x2, xc);
  const __m512 x3_lo = _mm512_add_ps(_mm512_fmsub_ps(x2, xc, x3), _mm512_mul_ps(x2_lo, xc));
  const __m512 b = _mm512_mul_ps(set(C::k3), x3);
  const __m512 b_lo = _mm512_add_ps(_mm512_fmsub_ps(set(C::k3), x3, b),
                                    _mm512_add_ps(_mm512_mul_ps(set(C::k3_lo), x3), _mm512_mul_ps(set(C::k3), x3_lo)));
  const __m512 hi = _mm512_add_ps(a, b);
  const __m512 bb = _mm512_sub_ps(hi, a);
  const __m512 err = _mm512_add_ps(_mm512_sub_ps(a, _mm512_sub_ps(hi, bb)), _mm512_sub_ps(b, bb));
  const __m512 lo = _mm512_add_ps(_mm512_add_ps(a_lo, b_lo), err);
  // parts
  const __mmask16 negz = _mm512_cmp_ps_mask(hi, zero, _CMP_LT_OQ);
  __m512 m = _mm512_mask_mov_ps(neg(hi), negz, hi);
  __m512 ml = _mm512_mask_mov_ps(neg(lo), negz, lo);
  const __mmask16 tiny = _mm512_cmp_ps_mask(hi, set(C::tiny_m), _CMP_LT_OQ);
  const __m512 t = _mm512_add_ps(m, set(C::ln2k));
  const __m512 t_lo =
      _mm512_add_ps(_mm512_add_ps(_mm512_sub_ps(m, t), set(C::ln2k)), _mm512_add_ps(ml, set(C::ln2k_lo)));
  m = _mm512_mask_mov_ps(m, tiny, t);
  ml = _mm512_mask_mov_ps(ml, tiny, t_lo);
  __m512 e = exp_f32(m);
  e = _mm512_add_ps(e, _mm512_mul_ps(e, ml));
  e = _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(x, set(-C::clamp), _CMP_LT_OQ), zero);
  const __m512 d = _mm512_add_ps(set(1.0f), _mm512_mask_mov_ps(e, tiny, zero));
  const __m512 r = _mm512_div_ps(set(1.0f), d);
  const __m512 er = _mm512_div_ps(e, d);
  GeluTanhParts p;
  p.s = _mm512_mask_mov_ps(r, negz, er);
  p.sn = _mm512_mask_mov_ps(er, negz, r);
  p.sc = _mm512_mask_mov_ps(set(1.0f), tiny, set(C::scale));
  p.zp = _mm512_add_ps(_mm512_mul_ps(set(3.0f * C::k3), _mm512_mul_ps(xc, xc)), set(C::k1));
  return p;
}
inline __m512 gelu_tanh_value(__m512 x, const GeluTanhParts& p) { return _mm512_mul_ps(_mm512_mul_ps(x, p.s), p.sc); }
inline __m512 gelu_tanh_grad(__m512 x, __m512 dy, const GeluTanhParts& p) {
  const __m512 d = _mm512_add_ps(p.s, _mm512_mul_ps(x, _mm512_mul_ps(_mm512_mul_ps(p.s, p.sn), p.zp)));
  const __m512 dd = _mm512_mask_mov_ps(d, _mm512_cmp_ps_mask(p.s, _mm512_setzero_ps(), _CMP_EQ_OQ),
                                       _mm512_mul_ps(x, _mm512_setzero_ps()));
  return _mm512_mul_ps(_mm512_mul_ps(dy, dd), p.sc);
}
inline __m512 gelu_tanh(__m512 x) { return gelu_tanh_value(x, gelu_tanh_parts(x)); }
inline __m512 gelu_tanh_grad(__m512 x, __m512 dy) { return gelu_tanh_grad(x, dy, gelu_tanh_parts(x)); }

// ---- GELU, erf form: y = x Phi(x), dy/dx = Phi(x) + x phi(x) ----
// Two forms, both from tables of 32 polynomial pieces of |x| (no division): each piece a degree-5 polynomial in
// v = t - round(t) (t = |x| k, |v| <= 1/2) whose constant term is a float pair, the coefficients fitted by
// docs/numerics/gelu_float32.py (--table prints the tables below) and picked per lane from two registers by
// vpermt2ps (index: round(t)'s low bits, from the 1.5 * 2^23 shifter).
//  * fast, for |x| below 4: P = Phi(-|x|) (y = x P for x <= 0, x (1 - P) for x > 0) and
//    D = Phi(-|x|) - |x| phi(x), the derivative at -|x| (D for x < 0, 1 - D for x > 0, since d(x) + d(-x) = 1);
//  * wide, for the other lanes (+-inf and NaN included; run only for vectors that have some): with e = exp(-x^2 / 2)
//    and H = erfc(|x| / sqrt 2) exp(x^2 / 2) / 2, Phi(-|x|) = H e (for x < 0: no cancellation) and Phi(|x|) =
//    1 - H e. H is smooth on [0, 14.5] (1/2 at 0, about 1 / (|x| sqrt(2 pi)) far out); e from x^2 as a sum hi + lo
//    (error-free: the FMA residual), the lo added into exp's reduced argument (exp multiplies an argument's error by
//    x^2 / 2). |x| is clamped to 14.5, where e rounds to 0 (so +-inf and huge x take the limits, NaN is carried by
//    the products with x).
// Each table is within about 1 ulp (of P, H; of D's terms P + |x| phi); tests/test_cpu_avx512.py sweeps the results.
// generated by docs/numerics/gelu_float32.py --table
// kGeluTableH: k = 2.1724135875701904, |x| <= 14.5; within 1.07 ulp at 4001 points
alignas(64) inline constexpr float kGeluTableH[7][32] = {
    {-4.212712520e-04f, -1.966471318e-04f, -7.666822057e-05f, -3.242996900e-05f,
     -1.475201589e-05f, -7.158435437e-06f, -3.678564781e-06f, -1.988884151e-06f,
     -1.124915116e-06f, -6.622531714e-07f, -4.040300325e-07f, -2.544633446e-07f,
     -1.648959937e-07f, -1.096241462e-07f, -7.457829554e-08f, -5.180436702e-08f,
     -3.667118165e-08f, -2.640869745e-08f, -1.931879190e-08f, -1.433662700e-08f,
     -1.078044409e-08f, -8.205293334e-09f, -6.315583168e-09f, -4.911699936e-09f,
     -3.856767350e-09f, -3.055584452e-09f, -2.441073788e-09f, -1.965359209e-09f,
     -1.593900567e-09f, -1.301489805e-09f, -1.069547118e-09f, -8.842533927e-10f},
    {2.737072529e-03f, 1.117989537e-03f, 4.808235099e-04f, 2.238600864e-04f,
     1.117559368e-04f, 5.931268970e-05f, 3.321378972e-05f, 1.949433135e-05f,
     1.192409582e-05f, 7.563459803e-06f, 4.953872576e-06f, 3.338178203e-06f,
     2.307002660e-06f, 1.630734459e-06f, 1.176246315e-06f, 8.639974567e-07f,
     6.451493277e-07f, 4.889607794e-07f, 3.756376827e-07f, 2.921675559e-07f,
     2.298314712e-07f, 1.826840332e-07f, 1.466050890e-07f, 1.186962990e-07f,
     9.689044589e-08f, 7.969396876e-08f, 6.601479186e-08f, 5.504542244e-08f,
     4.618253513e-08f, 3.897092427e-08f, 3.306396934e-08f, 2.819546552e-08f},
    {-1.295300853e-02f, -5.723581184e-03f, -2.753886627e-03f, -1.428634394e-03f,
     -7.910444401e-04f, -4.633700009e-04f, -2.849497541e-04f, -1.827562228e-04f,
     -1.215681477e-04f, -8.347642142e-05f, -5.893500565e-05f, -4.263671144e-05f,
     -3.151755664e-05f, -2.374776523e-05f, -1.820082980e-05f, -1.416390660e-05f,
     -1.117456668e-05f, -8.925984730e-06f, -7.210356216e-06f, -5.884282473e-06f,
     -4.847091986e-06f, -4.026991064e-06f, -3.372030733e-06f, -2.844116352e-06f,
     -2.414962864e-06f, -2.063328338e-06f, -1.773087774e-06f, -1.531878411e-06f,
     -1.330133955e-06f, -1.160387114e-06f, -1.016761644e-06f, -8.945977470e-07f},
    {5.297099054e-02f, 2.659874223e-02f, 1.450280193e-02f, 8.480220102e-03f,
     5.260675214e-03f, 3.430648940e-03f, 2.333907643e-03f, 1.645905315e-03f,
     1.196911326e-03f, 8.936662925e-04f, 6.826384924e-04f, 5.318855401e-04f,
     4.216790840e-04f, 3.394537489e-04f, 2.769831626e-04f, 2.287469833e-04f,
     1.909572748e-04f, 1.609620958e-04f, 1.368705416e-04f, 1.173118144e-04f,
     1.012769280e-04f, 8.801283548e-05f, 7.695030217e-05f, 6.765393482e-05f,
     5.978707850e-05f, 5.308680920e-05f, 4.734583854e-05f, 4.239934424e-05f,
     3.811517672e-05f, 3.438659405e-05f, 3.112677223e-05f, 2.826459422e-05f},
    {-1.836400330e-01f, -1.076336205e-01f, -6.799599528e-02f, -4.566786811e-02f,
     -3.224266693e-02f, -2.371384762e-02f, -1.803788915e-02f, -1.410887484e-02f,
     -1.129649952e-02f, -9.224886075e-03f, -7.660806645e-03f, -6.454404909e-03f,
     -5.506384186e-03f, -4.749126267e-03f, -4.135456868e-03f, -3.631741041e-03f,
     -3.213528777e-03f, -2.862731693e-03f, -2.565755742e-03f, -2.312235534e-03f,
     -2.094164724e-03f, -1.905284589e-03f, -1.740648528e-03f, -1.596308080e-03f,
     -1.469081384e-03f, -1.356383204e-03f, -1.256095595e-03f, -1.166470931e-03f,
     -1.086057164e-03f, -1.013640198e-03f, -9.481986635e-04f, -8.888682933e-04f},
    {5.000000000e-01f, 3.587035239e-01f, 2.728843093e-01f, 2.170478553e-01f,
     1.786255538e-01f, 1.509505957e-01f, 1.302566677e-01f, 1.142974943e-01f,
     1.016693935e-01f, 9.145909548e-02f, 8.305133879e-02f, 7.601880282e-02f,
     7.005674392e-02f, 6.494266540e-02f, 6.051077321e-02f, 5.663520470e-02f,
     5.321886018e-02f, 5.018572509e-02f, 4.747549072e-02f, 4.503975436e-02f,
     4.283922166e-02f, 4.084170982e-02f, 3.902058303e-02f, 3.735365346e-02f,
     3.582226858e-02f, 3.441065550e-02f, 3.310536966e-02f, 3.189491108e-02f,
     3.076936118e-02f, 2.972013317e-02f, 2.873975784e-02f, 2.782170102e-02f},
    {1.210186840e-09f, 3.796027048e-09f, -1.594693710e-09f, 3.807167914e-09f,
     -3.122291314e-09f, -4.689502120e-09f, -6.798394292e-09f, 2.575122782e-09f,
     -1.167844293e-10f, 2.310464930e-09f, -1.994139298e-09f, 3.783669766e-10f,
     -1.669384853e-09f, 3.419654337e-09f, 7.599830765e-10f, -5.729579033e-10f,
     1.296595470e-10f, -1.030855845e-09f, 1.077624989e-09f, -1.163019014e-09f,
     1.834000174e-09f, -1.856905629e-09f, 9.306118653e-10f, 6.759036109e-10f,
     1.258372295e-09f, -1.826870766e-09f, 1.010288520e-09f, 4.107347795e-10f,
     1.939261252e-12f, 4.965447498e-10f, -4.971970058e-10f, -2.937194099e-10f},
};
// kGeluTableP: k = 7.874999523162842, |x| <= 4.0; within 0.81 ulp at 4001 points
alignas(64) inline constexpr float kGeluTableP[7][32] = {
    {-3.284000911e-07f, -3.158318123e-07f, -2.778210444e-07f, -2.191775650e-07f,
     -1.462098851e-07f, -6.648542694e-08f, 1.217148604e-08f, 8.265425322e-08f,
     1.393762687e-07f, 1.787929023e-07f, 1.995935577e-07f, 2.025722665e-07f,
     1.902367899e-07f, 1.662503735e-07f, 1.348127938e-07f, 1.000803991e-07f,
     6.570066091e-08f, 3.450512409e-08f, 8.371151772e-09f, -1.176532471e-08f,
     -2.578283009e-08f, -3.417851602e-08f, -3.784783686e-08f, -3.787615910e-08f,
     -3.536693072e-08f, -3.131876269e-08f, -2.655284170e-08f, -2.168450308e-08f,
     -1.712828990e-08f, -1.312468090e-08f, -9.777524568e-09f, -7.093608811e-09f},
    {-6.811970987e-10f, -1.622893592e-06f, -3.116909511e-06f, -4.367422207e-06f,
     -5.286293799e-06f, -5.820428214e-06f, -5.955590041e-06f, -5.715224233e-06f,
     -5.154786777e-06f, -4.352727501e-06f, -3.399677325e-06f, -2.387492032e-06f,
     -1.399616394e-06f, -5.038612585e-07f, 2.518400208e-07f, 8.406448160e-07f,
     1.255376674e-06f, 1.505157115e-06f, 1.610922709e-06f, 1.600636438e-06f,
     1.504861871e-06f, 1.353158154e-06f, 1.171532290e-06f, 9.809721178e-07f,
     7.969388776e-07f, 6.295996968e-07f, 4.845486501e-07f, 3.637787529e-07f,
     2.667085255e-07f, 1.911258636e-07f, 1.339679159e-07f, 9.190620887e-08f},
    {1.361469331e-04f, 1.328756771e-04f, 1.233232178e-04f, 1.082421004e-04f,
     8.879470988e-05f, 6.642832159e-05f, 4.272536535e-05f, 1.924848038e-05f,
     -2.600413836e-06f, -2.169112122e-05f, -3.723589907e-05f, -4.881601126e-05f,
     -5.636661444e-05f, -6.012758968e-05f, -6.057135033e-05f, -5.831976159e-05f,
     -5.406176570e-05f, -4.848084791e-05f, -4.219853872e-05f, -3.573677532e-05f,
     -2.949886766e-05f, -2.376670454e-05f, -1.871026689e-05f, -1.440519009e-05f,
     -1.085417080e-05f, -8.008851182e-06f, -5.789690931e-06f, -4.102371804e-06f,
     -2.850135388e-06f, -1.942146127e-06f, -1.298379289e-06f, -8.517799301e-07f},
    {-2.947221286e-11f, 4.051602155e-04f, 7.909560227e-04f, 1.139557222e-03f,
     1.436033053e-03f, 1.669402351e-03f, 1.833267626e-03f, 1.925986609e-03f,
     1.950396225e-03f, 1.913154381e-03f, 1.823808183e-03f, 1.693715691e-03f,
     1.534951851e-03f, 1.359313377e-03f, 1.177508268e-03f, 9.985824581e-04f,
     8.295954904e-04f, 6.755322102e-04f, 5.394080072e-04f, 4.225160810e-04f,
     3.247591667e-04f, 2.450131869e-04f, 1.814799471e-04f, 1.319977600e-04f,
     9.429306374e-05f, 6.616605970e-05f, 4.561339301e-05f, 3.089609163e-05f,
     2.056437734e-05f, 1.345148667e-05f, 8.647793038e-06f, 5.464550668e-06f},
    {-5.065933987e-02f, -5.025254190e-02f, -4.905164242e-02f, -4.711357877e-02f,
     -4.452825338e-02f, -4.141161963e-02f, -3.789708391e-02f, -3.412607685e-02f,
     -3.023876064e-02f, -2.636565827e-02f, -2.262091823e-02f, -1.909760386e-02f,
     -1.586516388e-02f, -1.296902262e-02f, -1.043198444e-02f, -8.257025853e-03f,
     -6.430983078e-03f, -4.928651266e-03f, -3.716856940e-03f, -2.758167451e-03f,
     -2.014013473e-03f, -1.447108807e-03f, -1.023144578e-03f, -7.118193898e-04f,
     -4.873036232e-04f, -3.282664402e-04f, -2.175957343e-04f, -1.419290347e-04f,
     -9.109386883e-05f, -5.753128062e-05f, -3.575328446e-05f, -2.186376150e-05f},
    {5.000000000e-01f, 4.494764805e-01f, 3.997600377e-01f, 3.516192734e-01f,
     3.057489395e-01f, 2.627400756e-01f, 2.230584174e-01f, 1.870313883e-01f,
     1.548449099e-01f, 1.265489459e-01f, 1.020705774e-01f, 8.123303205e-02f,
     6.377813965e-02f, 4.939034954e-02f, 3.772016987e-02f, 2.840550616e-02f,
     2.108968049e-02f, 1.543554850e-02f, 1.113548502e-02f, 7.917454466e-03f,
     5.547653884e-03f, 3.830378642e-03f, 2.605834743e-03f, 1.746593509e-03f,
     1.153309946e-03f, 7.502071676e-04f, 4.806967045e-04f, 3.033831890e-04f,
     1.885904639e-04f, 1.154608544e-04f, 6.961728650e-05f, 4.133790208e-05f},
    {-9.861739203e-11f, -2.695289769e-09f, -1.704609121e-09f, 9.722785244e-09f,
     -1.486274925e-08f, 1.018986118e-09f, -7.320564155e-09f, -4.050742408e-09f,
     5.531292757e-09f, -5.768986622e-09f, -2.807114319e-09f, -3.236415358e-09f,
     -1.279044093e-09f, -1.214344514e-09f, 1.095300739e-09f, 3.038477803e-10f,
     -9.754121122e-11f, 2.214414763e-10f, 4.024758860e-10f, 4.206319459e-10f,
     1.161700944e-10f, 8.617065395e-11f, 1.065757829e-10f, 2.800956862e-11f,
     4.495804423e-11f, 2.828207633e-11f, 9.748079080e-12f, 2.467143460e-12f,
     -2.758266488e-12f, -1.009071516e-12f, -2.128359555e-12f, 5.986836461e-13f},
};
// kGeluTableD: k = 7.874999523162842, |x| <= 4.0; within 0.72 ulp of P + |x| phi at 4001 points
alignas(64) inline constexpr float kGeluTableD[7][32] = {
    {-1.968641982e-06f, -1.868801860e-06f, -1.568871426e-06f, -1.114923862e-06f,
     -5.677561035e-07f, 2.136540944e-09f, 5.256980558e-07f, 9.455121130e-07f,
     1.223298909e-06f, 1.343604708e-06f, 1.313414032e-06f, 1.158219675e-06f,
     9.156908050e-07f, 6.283768244e-07f, 3.368458863e-07f, 7.435217242e-08f,
     -1.363506925e-07f, -2.839379931e-07f, -3.675045264e-07f, -3.942154478e-07f,
     -3.763173879e-07f, -3.281547549e-07f, -2.636721490e-07f, -1.946712871e-07f,
     -1.298868852e-07f, -7.478567454e-08f, -3.189883913e-08f, -1.466494814e-09f,
     1.780841785e-08f, 2.805012045e-08f, 3.163727413e-08f, 3.080515043e-08f},
    {-5.386907809e-09f, -9.690415027e-06f, -1.835743205e-05f, -2.511875209e-05f,
     -2.935038174e-05f, -3.076087160e-05f, -2.941188541e-05f, -2.568473974e-05f,
     -2.020215652e-05f, -1.372182669e-05f, -7.021803412e-06f, -7.970000411e-07f,
     4.418160643e-06f, 8.292504390e-06f, 1.070500275e-05f, 1.172086377e-05f,
     1.154618622e-05f, 1.047234946e-05f, 8.820776202e-06f, 6.896310879e-06f,
     4.954199085e-06f, 3.182194860e-06f, 1.696522418e-06f, 5.485019301e-07f,
     -2.621503654e-07f, -7.712548609e-07f, -1.034498382e-06f, -1.114279030e-06f,
     -1.070110784e-06f, -9.527328189e-07f, -8.014523587e-07f, -6.439218510e-07f},
    {5.445884890e-04f, 5.250045797e-04f, 4.683330480e-04f, 3.805092711e-04f,
     2.705207153e-04f, 1.492044103e-04f, 2.785409561e-05f, -8.314478328e-05f,
     -1.754515979e-04f, -2.435303759e-04f, -2.849596203e-04f, -3.002993762e-04f,
     -2.925916051e-04f, -2.666188811e-04f, -2.280644112e-04f, -1.827089291e-04f,
     -1.357704605e-04f, -9.145012154e-05f, -5.270346082e-05f, -2.121797843e-05f,
     2.448742862e-06f, 1.862914723e-05f, 2.826286982e-05f, 3.262052269e-05f,
     3.306891085e-05f, 3.089636084e-05f, 2.720254270e-05f, 2.284657603e-05f,
     1.844079270e-05f, 1.437543688e-05f, 1.086016982e-05f, 7.971008017e-06f},
    {-2.022639417e-10f, 1.614107052e-03f, 3.112806240e-03f, 4.392849281e-03f,
     5.373634864e-03f, 6.004631054e-03f, 6.268859375e-03f, 6.182178389e-03f,
     5.788779352e-03f, 5.153803620e-03f, 4.354347941e-03f, 3.470218973e-03f,
     2.575657330e-03f, 1.732962904e-03f, 9.885265026e-04f, 3.713557962e-04f,
     -1.061808653e-04f, -4.459291522e-04f, -6.604994414e-04f, -7.694499218e-04f,
     -7.956561167e-04f, -7.622637204e-04f, -6.904382026e-04f, -5.979647394e-04f,
     -4.986205604e-04f, -4.021647910e-04f, -3.147547250e-04f, -2.396027558e-04f,
     -1.777171710e-04f, -1.286112529e-04f, -9.090988169e-05f, -6.282114191e-05f},
    {-1.013186797e-01f, -9.969476610e-02f, -9.493946284e-02f, -8.738981187e-02f,
     -7.756823301e-02f, -6.612920761e-02f, -5.379495025e-02f, -4.128833860e-02f,
     -2.927117795e-02f, -1.829453371e-02f, -8.765673265e-03f, -9.334636852e-04f,
     5.108515266e-03f, 9.404097684e-03f, 1.210625749e-02f, 1.344341505e-02f,
     1.368508302e-02f, 1.311078668e-02f, 1.198496949e-02f, 1.053927280e-02f,
     8.962336928e-03f, 7.396335248e-03f, 5.938827991e-03f, 4.648258444e-03f,
     3.551460570e-03f, 2.651771298e-03f, 1.936706482e-03f, 1.384532428e-03f,
     9.694188484e-04f, 6.651249132e-04f, 4.473620502e-04f, 2.950754424e-04f},
    {5.000000000e-01f, 3.992239237e-01f, 3.016567528e-01f, 2.102785408e-01f,
     1.276359111e-01f, 5.568198115e-02f, -4.324090201e-03f, -5.185116082e-02f,
     -8.706516773e-02f, -1.107419804e-01f, -1.241386160e-01f, -1.288406253e-01f,
     -1.266038269e-01f, -1.192069426e-01f, -1.083276123e-01f, -9.544987977e-02f,
     -8.180604875e-02f, -6.835152209e-02f, -5.576793849e-02f, -4.448772594e-02f,
     -3.473261744e-02f, -2.655890584e-02f, -1.990334503e-02f, -1.462525222e-02f,
     -1.054197736e-02f, -7.456453983e-03f, -5.176792387e-03f, -3.528700676e-03f,
     -2.362037776e-03f, -1.552946283e-03f, -1.002981327e-03f, -6.364387227e-04f},
    {-1.907868863e-10f, 1.195017241e-08f, -2.693107515e-09f, 6.252862672e-09f,
     6.585159973e-09f, 1.047402498e-09f, 5.765030814e-11f, -1.503956848e-09f,
     -2.083182737e-09f, 1.302248753e-09f, 4.936623332e-10f, 4.507785256e-09f,
     -2.038444413e-10f, 3.230800072e-10f, 6.268655595e-10f, -1.559209151e-10f,
     1.219313095e-09f, -2.107675146e-09f, -1.311559639e-09f, 1.263617100e-09f,
     1.123118057e-10f, -2.549223055e-10f, -7.655759360e-11f, -2.094192875e-10f,
     1.304551189e-10f, -1.108580380e-10f, 1.550461842e-10f, -3.626975803e-11f,
     -4.249995841e-11f, -2.186714698e-11f, 1.724222327e-11f, -1.767488760e-11f},
};

struct GeluPiece {
  __m512i idx;  // round(|x| k) (low 5 bits)
  __m512 v;     // |x| k - round(|x| k)
};
inline GeluPiece gelu_piece(__m512 ax, float k) {
  const __m512 kv = _mm512_set1_ps(k);
  const __m512 shifter = _mm512_set1_ps(12582912.0f);  // 1.5 * 2^23
  const __m512 ts = _mm512_fmadd_ps(ax, kv, shifter);  // round(t) in the low mantissa bits
  return {_mm512_castps_si512(ts), _mm512_fmsub_ps(ax, kv, _mm512_sub_ps(ts, shifter))};
}
inline __m512 gelu_table(const float (&tab)[7][32], const GeluPiece& pc) {
  auto coef = [&](int j) {
    return _mm512_permutex2var_ps(_mm512_load_ps(tab[j]), pc.idx, _mm512_load_ps(tab[j] + 16));
  };
  __m512 p = coef(0);
  for (int j = 1; j < 5; ++j) p = _mm512_fmadd_ps(p, pc.v, coef(j));
  return _mm512_add_ps(coef(5), _mm512_fmadd_ps(p, pc.v, coef(6)));
}
inline __m512 abs(__m512 x) {
  return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MAX)));
}
// The lanes the wide form serves: |x| >= 4 or NaN. Each lane's result depends on its own x only (the fast form's
// for |x| < 4, the wide form's otherwise, whatever the other lanes hold), so a tensor's elements do not depend on
// their neighbours or alignment; the wide form runs only for vectors with such a lane.
inline __mmask16 gelu_wide_lanes(__m512 ax) { return _mm512_cmp_ps_mask(ax, _mm512_set1_ps(4.0f), _CMP_NLT_UQ); }

struct GeluParts {
  __m512 h;  // H(|x|)
  __m512 e;  // exp(-x^2 / 2), 0 for |x| >= 14.5
};
inline GeluParts gelu_wide_parts(__m512 ax) {
  const __m512 axc = _mm512_mask_min_ps(ax, kAll, ax, _mm512_set1_ps(14.5f));  // (NaN: 14.5)
  const __m512 h = gelu_table(kGeluTableH, gelu_piece(axc, 2.17241359f));
  // -x^2 / 2 = hi + lo exactly (-axc / 2 is exact: no |x| < 2^-125 reaches a product that matters)
  const __m512 nh = _mm512_mul_ps(axc, _mm512_set1_ps(-0.5f));
  const __m512 hi = _mm512_mul_ps(axc, nh);
  const __m512 lo = _mm512_fmsub_ps(axc, nh, hi);
  // exp(hi + lo) as exp_f32 (hi >= -105.2: no clamp; scalef rounds 2^-152 p to 0)
  return {h, exp_reduced<true>(hi, lo)};
}

// GELU<float>::forward's conventions: x <= 0 (-0.0 included, whose sign it keeps): x Phi(-|x|) (wide: (x H) e, e last
// so that tiny results round once); x > 0: x (1 - Phi(-|x|)) (+inf: +inf). gelu(-inf) = NaN (-inf * 0), NaN
// propagates.
constexpr float kGeluFastK = 7.87499952f;
inline __m512 gelu_value_fast(__m512 x, const GeluPiece& pc) {
  const __m512 p = gelu_table(kGeluTableP, pc);
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ);
  return _mm512_mul_ps(x, _mm512_mask_sub_ps(p, pos, _mm512_set1_ps(1.0f), p));
}
inline __m512 gelu_value_wide(__m512 x, const GeluParts& g) {
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ);
  return _mm512_mask_mov_ps(_mm512_mul_ps(_mm512_mul_ps(x, g.h), g.e), pos,
                            _mm512_mul_ps(x, _mm512_fnmadd_ps(g.h, g.e, _mm512_set1_ps(1.0f))));
}
// The derivative Phi(x) + x phi(x), phi(x) = exp(-x^2 / 2) / sqrt(2 pi): fast, D or 1 - D; wide, x < 0:
// (H + x / sqrt(2 pi)) e, else x e / sqrt(2 pi) + (1 - H e). At +-inf it is NaN (inf * 0), as torch's; where it
// underflows it is -0.0 (x < 0) or 1.
inline __m512 gelu_derivative_fast(__m512 x, const GeluPiece& pc) {
  const __m512 d = gelu_table(kGeluTableD, pc);
  const __mmask16 nonneg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
  return _mm512_mask_sub_ps(d, nonneg, _mm512_set1_ps(1.0f), d);
}
inline __m512 gelu_derivative_wide(__m512 x, const GeluParts& g) {
  const __m512 xc = _mm512_mul_ps(x, _mm512_set1_ps(0.398942292f));
  const __m512 neg = _mm512_mul_ps(_mm512_add_ps(g.h, xc), g.e);
  const __m512 pos = _mm512_fmadd_ps(xc, g.e, _mm512_fnmadd_ps(g.h, g.e, _mm512_set1_ps(1.0f)));
  return _mm512_mask_mov_ps(pos, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), neg);
}

// GELU's element functions as fast / wide pairs on NI input and NO output vectors: fast(v, w) computes every lane
// by the fast form and returns the lanes that need the wide form (|x| >= 4, NaN); wide(v, w) computes every lane by
// the wide form. split_loop runs the wide form only on those lanes, gathered from many vectors.
struct GeluValueOp {  // x -> gelu(x)
  static constexpr int NI = 1, NO = 1;
  __mmask16 fast(const __m512* v, __m512* w) const {
    const __m512 ax = abs(v[0]);
    w[0] = gelu_value_fast(v[0], gelu_piece(ax, kGeluFastK));
    return gelu_wide_lanes(ax);
  }
  void wide(const __m512* v, __m512* w) const { w[0] = gelu_value_wide(v[0], gelu_wide_parts(abs(v[0]))); }
};
struct GeluGradOp {  // dy, x -> dy gelu'(x)
  static constexpr int NI = 2, NO = 1;
  __mmask16 fast(const __m512* v, __m512* w) const {
    const __m512 ax = abs(v[1]);
    w[0] = _mm512_mul_ps(v[0], gelu_derivative_fast(v[1], gelu_piece(ax, kGeluFastK)));
    return gelu_wide_lanes(ax);
  }
  void wide(const __m512* v, __m512* w) const {
    w[0] = _mm512_mul_ps(v[0], gelu_derivative_wide(v[1], gelu_wide_parts(abs(v[1]))));
  }
};
struct GegluOp {  // a, b -> gelu(a) b
  static constexpr int NI = 2, NO = 1;
  __mmask16 fast(const __m512* v, __m512* w) const {
    const __m512 ax = abs(v[0]);
    w[0] = _mm512_mul_ps(gelu_value_fast(v[0], gelu_piece(ax, kGeluFastK)), v[1]);
    return gelu_wide_lanes(ax);
  }
  void wide(const __m512* v, __m512* w) const {
    w[0] = _mm512_mul_ps(gelu_value_wide(v[0], gelu_wide_parts(abs(v[0]))), v[1]);
  }
};
struct GegluGradOp {  // dy, a, b -> da = (dy b) gelu'(a), db = dy gelu(a) (Gated<GELU>::backward's products)
  static constexpr int NI = 3, NO = 2;
  __mmask16 fast(const __m512* v, __m512* w) const {
    const __m512 ax = abs(v[1]);
    const GeluPiece pc = gelu_piece(ax, kGeluFastK);
    w[0] = _mm512_mul_ps(_mm512_mul_ps(v[0], v[2]), gelu_derivative_fast(v[1], pc));
    w[1] = _mm512_mul_ps(v[0], gelu_value_fast(v[1], pc));
    return gelu_wide_lanes(ax);
  }
  void wide(const __m512* v, __m512* w) const {
    const GeluParts g = gelu_wide_parts(abs(v[1]));
    w[0] = _mm512_mul_ps(_mm512_mul_ps(v[0], v[2]), gelu_derivative_wide(v[1], g));
    w[1] = _mm512_mul_ps(v[0], gelu_value_wide(v[1], g));
  }
};

// One vector of a fast / wide op, each lane by its own form (what split_loop computes, lane for lane).
template <class Op>
inline void split_eval(const Op& op, const __m512* v, __m512* w) {
  const __mmask16 m = op.fast(v, w);
  if (m) {
    __m512 t[Op::NO];
    op.wide(v, t);
    for (int o = 0; o < Op::NO; ++o) w[o] = _mm512_mask_mov_ps(w[o], m, t[o]);
  }
}
inline __m512 gelu(__m512 x) {
  __m512 y;
  split_eval(GeluValueOp{}, &x, &y);
  return y;
}
inline __m512 gelu_grad(__m512 x, __m512 dy) {
  const __m512 v[2] = {dy, x};
  __m512 d;
  split_eval(GeluGradOp{}, v, &d);
  return d;
}

// 16 lanes of float or bfloat16 storage (uint16_t bits) as float, and back: bfloat16 widened exactly, and rounded to
// nearest even with NaN as the canonical quiet NaN 0x7FC0, the operations of cpu::bf16_to_float / float_to_bf16.
inline __m512 load(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
inline void store(float* p, __mmask16 m, __m512 v) { _mm512_mask_storeu_ps(p, m, v); }
inline void store(uint16_t* p, __mmask16 m, __m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(r));
}
// float16 storage (the bits of c10::Half): vcvtph2ps and vcvtps2ph with round to nearest even, the instructions the
// chunk path's cpu::to_opmath / from_opmath use (F16C) on whole groups of 8.
struct Half16 {
  uint16_t bits;
};
inline __m512 load(const Half16* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
inline void store(Half16* p, __mmask16 m, __m512 v) {
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// op(v, w) on NI input and NO output vectors, over cnt elements of each stream of storage S (float, or bfloat16 as
// uint16_t: converted in registers, no buffer pass); an output may be an input's memory (each vector is loaded
// before it is stored); the last partial vector with masked loads and stores.
template <int NI, int NO, class Op, typename S>
inline void apply(const Op& op, const S* const (&in)[NI], S* const (&out)[NO], int64_t cnt) {
  auto step = [&](int64_t j, __mmask16 m) {
    __m512 v[NI], w[NO];
    for (int i = 0; i < NI; ++i) v[i] = load(in[i] + j, m);
    op(v, w);
    for (int o = 0; o < NO; ++o) store(out[o] + j, m, w[o]);
  };
  int64_t j = 0;
  for (; j + 16 <= cnt; j += 16) step(j, 0xFFFF);
  if (j < cnt) step(j, static_cast<__mmask16>((1u << (cnt - j)) - 1u));
}

// The loops of the functors above (Gated<SiLU>: y = silu(a) * b; da and db from silu_value_and_grad(a, dy * b),
// db = dy * silu(a)), on float, bfloat16 (uint16_t) or float16 (Half16) storage.
template <typename S>
inline void sigmoid_forward(const S* xs, S* ys, int64_t cnt) {
  apply<1, 1>([](const __m512* v, __m512* w) { w[0] = sigmoid(v[0]); }, {xs}, {ys}, cnt);
}
template <typename S>
inline void tanh_forward(const S* xs, S* ys, int64_t cnt) {
  apply<1, 1>([](const __m512* v, __m512* w) { w[0] = tanh(v[0]); }, {xs}, {ys}, cnt);
}
template <typename S>
inline void silu_forward(const S* xs, S* ys, int64_t cnt) {
  apply<1, 1>([](const __m512* v, __m512* w) { w[0] = silu(v[0]); }, {xs}, {ys}, cnt);
}
template <typename S>
inline void silu_backward(const S* gs, const S* xs, S* ds, int64_t cnt) {
  apply<2, 1>([](const __m512* v, __m512* w) { __m512 y; silu_value_and_grad(v[1], v[0], y, w[0]); }, {gs, xs}, {ds},
              cnt);
}
template <typename S>
inline void swiglu_forward(const S* as, const S* bs, S* ys, int64_t cnt) {
  apply<2, 1>([](const __m512* v, __m512* w) { w[0] = _mm512_mul_ps(silu(v[0]), v[1]); }, {as, bs}, {ys}, cnt);
}
template <typename S>
inline void swiglu_backward(const S* gs, const S* as, const S* bs, S* das, S* dbs, int64_t cnt) {
  apply<3, 2>(
      [](const __m512* v, __m512* w) {
        __m512 y;
        silu_value_and_grad(v[1], _mm512_mul_ps(v[0], v[2]), y, w[0]);
        w[1] = _mm512_mul_ps(v[0], y);
      },
      {gs, as, bs}, {das, dbs}, cnt);
}

// Loops of the ports above (ReGLU: y = relu(a) b; da = dy b where !(a <= 0), db = dy relu(a): Gated<ReLUOfInput>).
template <typename S>
inline void hardsigmoid_forward(const S* xs, S* ys, int64_t cnt) {
  apply<1, 1>([](const __m512* v, __m512* w) { w[0] = hardsigmoid(v[0]); }, {xs}, {ys}, cnt);
}
template <typename S>
inline void hardsigmoid_backward(const S* gs, const S* xs, S* ds, int64_t cnt) {
  apply<2, 1>([](const __m512* v, __m512* w) { w[0] = hardsigmoid_grad(v[1], v[0]); }, {gs, xs}, {ds}, cnt);
}
template <typename S>
inline void hardswish_forward(const S* xs, S* ys, int64_t cnt) {
  apply<1, 1>([](const __m512* v, __m512* w) { w[0] = hardswish(v[0]); }, {xs}, {ys}, cnt);
}
template <typename S>
inline void hardswish_backward(const S* gs, const S* xs, S* ds, int64_t cnt) {
  apply<2, 1>([](const __m512* v, __m512* w) { w[0] = hardswish_grad(v[1], v[0]); }, {gs, xs}, {ds}, cnt);
}
template <typename S>
inline void softplus_forward(const SoftplusParams& q, const S* xs, S* ys, int64_t cnt) {
  apply<1, 1>([&](const __m512* v, __m512* w) { w[0] = softplus(v[0], q); }, {xs}, {ys}, cnt);
}
template <typename S>
inline void softplus_backward(const SoftplusParams& q, const S* gs, const S* xs, S* ds, int64_t cnt) {
  apply<2, 1>([&](const __m512* v, __m512* w) { w[0] = softplus_grad(v[1], v[0], q); }, {gs, xs}, {ds}, cnt);
}
template <typename S>
inline void reglu_forward(const S* as, const S* bs, S* ys, int64_t cnt) {
  apply<2, 1>([](const __m512* v, __m512* w) { w[0] = _mm512_mul_ps(relu(v[0]), v[1]); }, {as, bs}, {ys}, cnt);
}
template <typename S>
inline void reglu_backward(const S* gs, const S* as, const S* bs, S* das, S* dbs, int64_t cnt) {
  apply<3, 2>(
      [](const __m512* v, __m512* w) {
        w[0] = relu_grad(v[1], _mm512_mul_ps(v[0], v[2]));
        w[1] = _mm512_mul_ps(v[0], relu(v[1]));
      },
      {gs, as, bs}, {das, dbs}, cnt);
}

// GELUTanh's loops (GeGLU tanh: y = gelu_tanh(a) b; da, y from one evaluation at dy b, db = dy y).
template <typename S>
inline void gelu_tanh_forward(const S* xs, S* ys, int64_t cnt) {
  apply<1, 1>([](const __m512* v, __m512* w) { w[0] = gelu_tanh(v[0]); }, {xs}, {ys}, cnt);
}
template <typename S>
inline void gelu_tanh_backward(const S* gs, const S* xs, S* ds, int64_t cnt) {
  apply<2, 1>([](const __m512* v, __m512* w) { w[0] = gelu_tanh_grad(v[1], v[0]); }, {gs, xs}, {ds}, cnt);
}
template <typename S>
inline void geglu_tanh_forward(const S* as, const S* bs, S* ys, int64_t cnt) {
  apply<2, 1>([](const __m512* v, __m512* w) { w[0] = _mm512_mul_ps(gelu_tanh(v[0]), v[1]); }, {as, bs}, {ys}, cnt);
}
template <typename S>
inline void geglu_tanh_backward(const S* gs, const S* as, const S* bs, S* das, S* dbs, int64_t cnt) {
  apply<3, 2>(
      [](const __m512* v, __m512* w) {
        const GeluTanhParts p = gelu_tanh_parts(v[1]);
        w[0] = gelu_tanh_grad(v[1], _mm512_mul_ps(v[0], v[2]), p);
        w[1] = _mm512_mul_ps(v[0], gelu_tanh_value(v[1], p));
      },
      {gs, as, bs}, {das, dbs}, cnt);
}

// The loop of a fast / wide op over cnt elements, in blocks of 512: load(j, m, v) reads the inputs of elements
// [j, j + 16) (lanes m), put(j, m, fast, w) writes their outputs (lanes m; fast: the lanes the fast form served),
// and put_at(idx, m, w) the outputs of elements idx (lanes m), computed by the wide form once per 16 such lanes,
// their inputs kept aside (vcompressps in registers) in the first pass over the block (so outputs may be inputs'
// memory).
template <class Op, class Load, class Put, class PutAt>
inline void split_loop(const Op& op, int64_t cnt, Load load, Put put, PutAt put_at) {
  constexpr int64_t kBlock = 512;
  alignas(64) float keep[Op::NI][kBlock + 16];
  alignas(64) int32_t keep_idx[kBlock + 16];
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t b0 = 0; b0 < cnt; b0 += kBlock) {
    const int64_t b1 = b0 + kBlock < cnt ? b0 + kBlock : cnt;
    int nw = 0;
    auto step = [&](int64_t j, __mmask16 m) {
      __m512 v[Op::NI], w[Op::NO];
      load(j, m, v);
      const __mmask16 wide = op.fast(v, w) & m;
      put(j, m, static_cast<__mmask16>(m & ~wide), w);
      if (wide) {
        for (int i = 0; i < Op::NI; ++i) _mm512_storeu_ps(keep[i] + nw, _mm512_maskz_compress_ps(wide, v[i]));
        const __m512i idx = _mm512_add_epi32(iota, _mm512_set1_epi32(static_cast<int32_t>(j - b0)));
        _mm512_storeu_si512(keep_idx + nw, _mm512_maskz_compress_epi32(wide, idx));
        nw += __builtin_popcount(wide);
      }
    };
    // (full vectors with the constant mask: plain loads and stores; masked ones on fresh pages were slow)
    int64_t j = b0;
    for (; j + 16 <= b1; j += 16) step(j, kAll);
    if (j < b1) step(j, static_cast<__mmask16>((1u << (b1 - j)) - 1u));
    for (int k = 0; k < nw; k += 16) {
      const __mmask16 m = k + 16 <= nw ? kAll : static_cast<__mmask16>((1u << (nw - k)) - 1u);
      __m512 v[Op::NI], w[Op::NO];
      for (int i = 0; i < Op::NI; ++i) v[i] = _mm512_maskz_loadu_ps(m, keep[i] + k);
      op.wide(v, w);
      put_at(_mm512_add_epi32(_mm512_maskz_loadu_epi32(m, keep_idx + k), _mm512_set1_epi32(static_cast<int32_t>(b0))),
             m, w);
    }
  }
}

// Outputs of elements idx (lanes m) into storage: float by vscatterdps, 16-bit (rounded as store) one by one.
inline void scatter(float* p, __mmask16 m, __m512i idx, __m512 v) { _mm512_mask_i32scatter_ps(p, m, idx, v, 4); }
template <typename S16>  // bfloat16 (uint16_t) or float16 (Half16)
inline void scatter(S16* p, __mmask16 m, __m512i idx, __m512 v) {
  alignas(64) S16 bits[16];
  alignas(64) int32_t at[16];
  store(bits, kAll, v);
  _mm512_store_si512(at, idx);
  for (unsigned mm = m; mm; mm &= mm - 1) {
    const int l = __builtin_ctz(mm);
    p[at[l]] = bits[l];
  }
}

// A fast / wide op over NI input and NO output streams of storage S (as apply).
template <class Op, typename S>
inline void apply_split(const Op& op, const S* const (&in)[Op::NI], S* const (&out)[Op::NO], int64_t cnt) {
  split_loop(
      op, cnt, [&](int64_t j, __mmask16 m, __m512* v) { for (int i = 0; i < Op::NI; ++i) v[i] = load(in[i] + j, m); },
      [&](int64_t j, __mmask16 m, __mmask16, const __m512* w) {
        for (int o = 0; o < Op::NO; ++o) store(out[o] + j, m, w[o]);
      },
      [&](__m512i idx, __mmask16 m, const __m512* w) {
        for (int o = 0; o < Op::NO; ++o) scatter(out[o], m, idx, w[o]);
      });
}

template <typename S>
inline void gelu_forward(const S* xs, S* ys, int64_t cnt) {
  apply_split(GeluValueOp{}, {xs}, {ys}, cnt);
}
template <typename S>
inline void gelu_backward(const S* gs, const S* xs, S* ds, int64_t cnt) {
  apply_split(GeluGradOp{}, {gs, xs}, {ds}, cnt);
}
template <typename S>
inline void geglu_forward(const S* as, const S* bs, S* ys, int64_t cnt) {
  apply_split(GegluOp{}, {as, bs}, {ys}, cnt);
}
template <typename S>
inline void geglu_backward(const S* gs, const S* as, const S* bs, S* das, S* dbs, int64_t cnt) {
  apply_split(GegluGradOp{}, {gs, as, bs}, {das, dbs}, cnt);
}

// The per-channel double sums of the bias family's backward: acc[j .. j + 16) += dx (lanes m), and one by one.
inline void add_terms(double* acc, __mmask16 m, __m512 dx) {
  const __mmask8 lo = static_cast<__mmask8>(m), hi = static_cast<__mmask8>(m >> 8);
  const __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(dx));
  const __m512d d1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(dx), 1)));
  _mm512_mask_storeu_pd(acc, lo, _mm512_add_pd(_mm512_maskz_loadu_pd(lo, acc), d0));
  _mm512_mask_storeu_pd(acc + 8, hi, _mm512_add_pd(_mm512_maskz_loadu_pd(hi, acc + 8), d1));
}
inline void add_terms_at(double* acc, __mmask16 m, __m512i idx, __m512 dx) {
  alignas(64) float d[16];
  alignas(64) int32_t at[16];
  _mm512_store_ps(d, dx);
  _mm512_store_si512(at, idx);
  for (unsigned mm = m; mm; mm &= mm - 1) {
    const int l = __builtin_ctz(mm);
    acc[at[l]] += static_cast<double>(d[l]);
  }
}

// BiasAct<Act>::forward over a run of cnt channels of one row: y = act(x + bias) (act: a plain vector function, or a
// fast / wide op with one input and one output).
template <class Act, typename S>
inline void bias_forward(const Act& act, const S* xs, const float* bias, S* ys, int64_t cnt) {
  auto in = [&](int64_t j, __mmask16 m, __m512* v) {
    v[0] = _mm512_add_ps(load(xs + j, m), _mm512_maskz_loadu_ps(m, bias + j));
  };
  if constexpr (requires(__m512 u) { act(u); }) {
    auto step = [&](int64_t j, __mmask16 m) {
      __m512 u;
      in(j, m, &u);
      store(ys + j, m, act(u));
    };
    int64_t j = 0;
    for (; j + 16 <= cnt; j += 16) step(j, kAll);
    if (j < cnt) step(j, static_cast<__mmask16>((1u << (cnt - j)) - 1u));
  } else {
    split_loop(
        act, cnt, in, [&](int64_t j, __mmask16 m, __mmask16, const __m512* w) { store(ys + j, m, w[0]); },
        [&](__m512i idx, __mmask16 m, const __m512* w) { scatter(ys, m, idx, w[0]); });
  }
}

// BiasAct<Act>::backward over a run of cnt channels of one row: u = x + bias, dx = Act's backward (grad: a plain
// function of (u, dy), or a fast / wide op of (dy, u)), which is also the bias's term: acc[j] += (double)dx[j] (the
// CPU channel kernel's per-channel double sums, one term per channel and row, so the order of each sum stays the
// rows' order). On float or bfloat16 (uint16_t) storage; dx is summed as computed in float, before its rounding.
template <class Grad, typename S>
inline void bias_backward(const Grad& grad, const S* xs, const S* gs, const float* bias, S* ds, double* acc,
                          int64_t cnt) {
  auto in = [&](int64_t j, __mmask16 m, __m512* v) {
    v[0] = load(gs + j, m);
    v[1] = _mm512_add_ps(load(xs + j, m), _mm512_maskz_loadu_ps(m, bias + j));
  };
  if constexpr (requires(__m512 u) { grad(u, u); }) {
    auto step = [&](int64_t j, __mmask16 m) {
      __m512 v[2];
      in(j, m, v);
      const __m512 dx = grad(v[1], v[0]);
      store(ds + j, m, dx);
      add_terms(acc + j, m, dx);
    };
    int64_t j = 0;
    for (; j + 16 <= cnt; j += 16) step(j, kAll);
    if (j < cnt) step(j, static_cast<__mmask16>((1u << (cnt - j)) - 1u));
  } else {
    split_loop(
        grad, cnt, in,
        [&](int64_t j, __mmask16 m, __mmask16 fast, const __m512* w) {
          store(ds + j, m, w[0]);
          add_terms(acc + j, fast, w[0]);
        },
        [&](__m512i idx, __mmask16 m, const __m512* w) {
          scatter(ds, m, idx, w[0]);
          add_terms_at(acc, m, idx, w[0]);
        });
  }
}
// (SiLU's: silu_value_and_grad's dx, bitwise SiLU<float>::backward)
struct SiluGrad {
  __m512 operator()(__m512 u, __m512 dy) const {
    __m512 y, dx;
    silu_value_and_grad(u, dy, y, dx);
    return dx;
  }
};
struct SiluValue {
  __m512 operator()(__m512 u) const { return silu(u); }
};
struct GeluTanhGrad {
  __m512 operator()(__m512 u, __m512 dy) const { return gelu_tanh_grad(u, dy); }
};
struct GeluTanhValue {
  __m512 operator()(__m512 u) const { return gelu_tanh(u); }
};

}  // namespace avx512
GLO_ISA_END
}  // namespace glo

#endif  // __AVX512F__
