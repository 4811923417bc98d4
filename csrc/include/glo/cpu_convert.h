// CPU helpers for the kernel loops: chunked conversion between a tensor's dtype and its opmath type, written so that
// GCC vectorizes them (bit-exact round-to-nearest-even as c10::BFloat16 and c10::Half). Element math then runs on
// opmath arrays in loops without conversions, which vectorize too.
#pragma once

#include "glo/isa.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <cstring>
#if defined(__AVX2__) || (defined(__F16C__) && defined(__AVX__))
#include <immintrin.h>
#endif
#include <type_traits>

namespace glo {
GLO_ISA_BEGIN
namespace cpu {

constexpr int64_t kChunk = 4096;  // elements per chunk (a multiple of 32: whole mask words)

template <typename scalar_t>
using opmath_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

template <typename scalar_t>
constexpr bool kIsOpmath = std::is_same_v<scalar_t, opmath_t<scalar_t>>;

inline float bf16_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t float_to_bf16(float f) {  // round to nearest even; NaN -> canonical quiet NaN (as c10)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return f != f ? uint16_t{0x7FC0} : static_cast<uint16_t>(rounded);
}

template <typename scalar_t>
inline void to_opmath(const scalar_t* __restrict src, opmath_t<scalar_t>* __restrict dst, int64_t n) {
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]);
  } else if constexpr (std::is_same_v<scalar_t, c10::Half>) {
#if defined(__F16C__) && defined(__AVX__)
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    }
    for (; i < n; ++i) dst[i] = static_cast<float>(src[i]);
#else
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
#endif
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<opmath_t<scalar_t>>(src[i]);
  }
}

template <typename scalar_t>
inline void from_opmath(const opmath_t<scalar_t>* __restrict src, scalar_t* __restrict dst, int64_t n) {
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
    uint16_t* d = reinterpret_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(src[i]);
  } else if constexpr (std::is_same_v<scalar_t, c10::Half>) {
#if defined(__F16C__) && defined(__AVX__)
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; ++i) dst[i] = static_cast<c10::Half>(src[i]);
#else
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<c10::Half>(src[i]);
#endif
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<scalar_t>(src[i]);
  }
}

// An input chunk as opmath: the tensor's own memory when it already is opmath, else converted into `buf`.
template <typename scalar_t>
inline const opmath_t<scalar_t>* load_chunk(const scalar_t* src, opmath_t<scalar_t>* buf, int64_t n) {
  if constexpr (kIsOpmath<scalar_t>) {
    (void)buf;
    (void)n;
    return src;
  } else {
    to_opmath(src, buf, n);
    return buf;
  }
}

// Where to compute an output chunk: straight into the tensor when it is opmath and distinct from `avoid` (an input
// being read in the same loop), else into `buf`, to be written back with store_chunk.
template <typename scalar_t>
inline opmath_t<scalar_t>* out_chunk(scalar_t* dst, opmath_t<scalar_t>* buf, const void* avoid) {
  if constexpr (kIsOpmath<scalar_t>) {
    if (static_cast<const void*>(dst) != avoid) return dst;
  }
  return buf;
}

template <typename scalar_t>
inline void store_chunk(const opmath_t<scalar_t>* out, scalar_t* dst, int64_t n) {
  if (static_cast<const void*>(out) == static_cast<const void*>(dst)) return;
  if constexpr (kIsOpmath<scalar_t>) {
    std::memcpy(dst, out, static_cast<size_t>(n) * sizeof(scalar_t));
  } else {
    from_opmath(out, dst, n);
  }
}

// Packs 32 flags (each 0 or 0xFF) into one word: bit j = flags[j] != 0.
inline uint32_t pack_bits32(const uint8_t* flags) {
#if defined(__AVX2__)
  return static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(flags))));
#else
  uint32_t bits = 0;
  for (int j = 0; j < 32; ++j) bits |= static_cast<uint32_t>(flags[j] & 1u) << j;
  return bits;
#endif
}

}  // namespace cpu
GLO_ISA_END
}  // namespace glo
