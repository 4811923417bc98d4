// What every CUDA kernel file shares (activations.cu, softmax.cu): the full warp mask, 16-byte vectors and their
// alignment test, and device integer division. Host launch arithmetic (ceil_div, grid_cap) is glo/launch.h.
#pragma once

#include <cstdint>

#include "glo/launch.h"

namespace glo {

constexpr unsigned kFullMask = 0xffffffffu;  // every lane of a warp (the __shfl_*_sync / __ballot_sync mask)

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// 16 bytes of consecutive elements, loaded / stored as one vector access.
template <typename scalar_t>
struct alignas(16) Vec16 {
  static constexpr int kSize = 16 / static_cast<int>(sizeof(scalar_t));
  scalar_t val[kSize];
};

// a / b for a >= 0, b > 0, with the cheaper 32-bit division when both fit.
__device__ __forceinline__ int64_t idiv(int64_t a, int64_t b) {
  if (((a | b) >> 32) == 0) return static_cast<int64_t>(static_cast<uint32_t>(a) / static_cast<uint32_t>(b));
  return a / b;
}

__device__ __forceinline__ int64_t ceil_div_dev(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace glo
