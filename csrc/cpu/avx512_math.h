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
#pragma once

#if defined(__AVX512F__) && !defined(__CUDA_ARCH__)
#include <immintrin.h>

#include <climits>
#include <cstdint>

#define GLO_CPU_AVX512 1

namespace glo {
namespace avx512 {


inline __m512 neg(__m512 v) {  // -v: flips the sign bit, of NaN too, as scalar negation does
  return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN)));
}

// max, min and scalef through their masked forms with every lane set (the same instructions): the unmasked
// intrinsics pass _mm512_undefined_ps(), on which GCC 12 warns -Wmaybe-uninitialized wherever they are inlined.
constexpr __mmask16 kAll = 0xFFFF;

inline __m512 exp_f32(__m512 x) {
  // max returns its second operand for a NaN x: NaN is computed on -104, and x is returned as is at the end.
  const __m512 lo = _mm512_mask_max_ps(x, kAll, x, _mm512_set1_ps(-104.0f));
  const __m512 xc = _mm512_mask_min_ps(lo, kAll, lo, _mm512_set1_ps(89.0f));
  const __m512 shifter = _mm512_set1_ps(12582912.0f);
  const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), shifter), shifter);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), xc);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 em1 = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  const __m512 p1 = _mm512_add_ps(em1, _mm512_set1_ps(1.0f));
  const __m512 y = _mm512_mask_scalef_ps(p1, kAll, p1, n);
  return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, x, _CMP_ORD_Q), y);
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
// db = dy * silu(a)), on float or bfloat16 (uint16_t) storage.
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

// BiasAct<SiLU>::backward over a run of cnt channels of one row: u = x + bias, dx = SiLU<float>::backward(dy, u),
// which is also the bias's term: acc[j] += (double)dx[j] (the CPU channel kernel's per-channel double sums).
// On float or bfloat16 (uint16_t) storage; dx is summed as computed in float, before its rounding to storage.
template <typename S>
inline void bias_silu_backward(const S* xs, const S* gs, const float* bias, S* ds, double* acc, int64_t cnt) {
  auto step = [&](int64_t j, __mmask16 m) {
    const __m512 u = _mm512_add_ps(load(xs + j, m), _mm512_maskz_loadu_ps(m, bias + j));
    __m512 y, dx;
    silu_value_and_grad(u, load(gs + j, m), y, dx);
    store(ds + j, m, dx);
    const __mmask8 lo = static_cast<__mmask8>(m), hi = static_cast<__mmask8>(m >> 8);
    const __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(dx));
    const __m512d d1 = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(dx), 1)));
    _mm512_mask_storeu_pd(acc + j, lo, _mm512_add_pd(_mm512_maskz_loadu_pd(lo, acc + j), d0));
    _mm512_mask_storeu_pd(acc + j + 8, hi, _mm512_add_pd(_mm512_maskz_loadu_pd(hi, acc + j + 8), d1));
  };
  int64_t j = 0;
  for (; j + 16 <= cnt; j += 16) step(j, 0xFFFF);
  if (j < cnt) step(j, static_cast<__mmask16>((1u << (cnt - j)) - 1u));
}

}  // namespace avx512
}  // namespace glo

#endif  // __AVX512F__
