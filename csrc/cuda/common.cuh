// What every CUDA kernel file shares (activations.cu, softmax.cu): the full warp mask, 16-byte vectors and their
// alignment test, device integer division and the element-wise grid-stride loops. Host launch arithmetic (ceil_div,
// grid_cap) is glo/launch.h.
#pragma once

#include <algorithm>
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

// The grid-stride loops of an element-wise kernel launched with THREADS threads per block (0: read blockDim.x; any
// grid is correct):
// vector_body(i) for the vectors i = v * VEC of the vector part, v < nvec (nvec = 0 where the pointers are not 16-byte
// aligned), then scalar_body(i) for the tail elements i in [nvec * VEC, n).
template <int VEC, int THREADS, class VectorBody, class ScalarBody>
__device__ __forceinline__ void vec_loop(int64_t n, int64_t nvec, const VectorBody& vector_body,
                                         const ScalarBody& scalar_body) {
  const int64_t block = THREADS > 0 ? THREADS : blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * block + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * block;
  for (int64_t v = tid; v < nvec; v += stride) vector_body(v * VEC);
  for (int64_t i = nvec * VEC + tid; i < n; i += stride) scalar_body(i);
}


// The launch of vec_loop over n elements: its vector part (nvec = n / VEC where every pointer is 16-byte aligned, else
// 0; a null pointer counts as aligned) and a grid of THREADS-thread blocks for the longer of its two loops.
struct VecLaunch {
  int64_t nvec;
  unsigned grid;
};

template <int VEC, int THREADS, class... P>
inline VecLaunch vec_launch(int64_t n, const P*... ptrs) {
  const int64_t nvec = (aligned16(ptrs) && ...) ? n / VEC : 0;
  return {nvec, grid_cap(ceil_div(std::max(nvec, n - nvec * VEC), THREADS))};
}

}  // namespace glo
