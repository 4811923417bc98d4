// CUDA kernels: the functors of glo/activations.h applied element-wise, with packed 1-bit masks for ReLU / Leaky ReLU,
// a deterministic per-channel reduction for the gradients of per-channel parameters (PReLU, PELU), and Maxout.
//
// Conventions of every kernel here:
//  * all tensors are contiguous; sizes and indices are int64_t (tensors over 2^31 elements are right);
//  * loads are scalar_t, math is opmath (float for half/bfloat16/float, double for double), stores are scalar_t;
//  * element-wise kernels use grid-stride loops, so any grid is correct; the reductions use tile sizes that depend
//    only on the shape (never on the device), and sum in a fixed order: parameter gradients are bitwise reproducible
//    from run to run and from GPU to GPU. No atomics.
//  * blocks have kThreads (a multiple of 32) threads; warp-collective operations (__shfl_*_sync, __ballot_sync) are
//    only reached inside loops whose trip count is uniform across the warp (or block, for __syncthreads), so every
//    lane of the full mask is present.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>

#include "glo/op_impls.h"

namespace glo {
namespace {

constexpr int kThreads = 256;                     // threads per block of every kernel
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int64_t kMaxGrid = int64_t{1} << 20;    // grid cap of grid-stride kernels (any value is correct)

// Channel backward tiling (shape-only constants; see CudaKernels::channel_backward).
constexpr int64_t kPlaneMaxInner = 256;           // inner < this: "plane" mode, else "rows" mode
constexpr int64_t kPlaneMinWidth = 1024;          // plane mode: whole outer rows grouped until >= this many elements
constexpr int64_t kPlaneMinRows = 16;             // plane mode: >= this many super-rows summed per thread
constexpr int64_t kPlaneTargetThreads = int64_t{1} << 19;  // plane mode: about this many threads in total
constexpr int64_t kRowChunk = 4096;               // rows mode: elements of one (n, c) row reduced by one block
constexpr int64_t kReduceThreadMaxTerms = 64;     // param reduce: one thread per slot up to this many terms,
constexpr int64_t kReduceWarpMaxTerms = 4096;     // one warp per slot up to this many, else one block per slot

constexpr unsigned kFullMask = 0xffffffffu;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid of a grid-stride kernel doing `work` units, `per_block` units per block and pass.
inline unsigned grid_for(int64_t work, int64_t per_block) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(ceil_div(work, per_block), kMaxGrid)));
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// 16 bytes of consecutive elements, loaded / stored as one vector access.
template <typename scalar_t>
struct alignas(16) Vec16 {
  static constexpr int kSize = 16 / static_cast<int>(sizeof(scalar_t));
  scalar_t val[kSize];
};

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// a / b for a >= 0, b > 0, with the cheaper 32-bit division when both fit.
__device__ __forceinline__ int64_t idiv(int64_t a, int64_t b) {
  if (((a | b) >> 32) == 0) return static_cast<int64_t>(static_cast<uint32_t>(a) / static_cast<uint32_t>(b));
  return a / b;
}

// a % b for a >= 0, b > 0.
__device__ __forceinline__ int64_t imod(int64_t a, int64_t b) { return a - idiv(a, b) * b; }

// Sum over the 32 lanes of a warp in a fixed tree order; the result is valid in lane 0. All 32 lanes must call it.
template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(kFullMask, v, offset);
  return v;
}

// Sum over the kThreads threads of a block in a fixed order (warp trees, then a tree over the warp sums); the result
// is valid in thread 0. Every thread of the block must call it. `smem` holds kWarpsPerBlock values; the leading
// __syncthreads() makes repeated calls with the same smem safe (the previous call's reads are complete).
template <typename acc_t>
__device__ __forceinline__ acc_t block_sum(acc_t v, acc_t* smem) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarpsPerBlock ? smem[lane] : acc_t(0);
    v = warp_sum(v);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------------------
// Mask forward: y = f.forward(x), mask bit i = f.keep(x[i]).
//
// Mapping. Warp-level grid-stride loops (warp id = global thread id / 32), every lane of a warp runs the same
// iterations, so the collectives below see all 32 lanes.
//  1. Vector part, elements [0, nchunks * 32 * VEC) (nchunks = 0 when x or y is not 16-byte aligned): a warp step
//     ("chunk") covers 32 * VEC consecutive elements = VEC mask words. Lane t loads/stores the 16-byte vector of
//     elements chunk*32*VEC + t*VEC + [0, VEC); its VEC bits go to word chunk*VEC + t / (32/VEC) at bit offset
//     (t % (32/VEC)) * VEC. The 32/VEC lanes sharing a word are an aligned group; __shfl_xor_sync over offsets
//     1 .. (32/VEC)/2 ORs their pieces, and the group's first lane stores the word.
//  2. Scalar part, words [nchunks * VEC, ceil(n/32)): one word per warp step, lane t handles element 32*w + t; the
//     word is __ballot_sync of the lanes' bits (lanes past n contribute 0, so bits past numel are 0).
// In-place (x == y) is safe: each element is read and then written by the same thread, the two parts are disjoint,
// and no thread reads an element another thread writes. Hence no __restrict__ on x / y.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, typename F>
__global__ void __launch_bounds__(kThreads) mask_forward_kernel(
    const scalar_t* x,   // [n]
    scalar_t* y,         // [n], may alias x
    int32_t* mask,       // [ceil(n / 32)], or nullptr when the mask is not saved
    int64_t n,
    int64_t nchunks,     // chunks of 32 * VEC elements done by the vector part (0 if unaligned)
    F f) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  constexpr int kLanesPerWord = 32 / VEC;
  const int lane = threadIdx.x & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) >> 5;
  const int64_t nwarps = (static_cast<int64_t>(gridDim.x) * kThreads) >> 5;

  for (int64_t chunk = warp; chunk < nchunks; chunk += nwarps) {
    const int64_t base = chunk * (32 * VEC) + lane * VEC;
    const V xv = *reinterpret_cast<const V*>(x + base);
    V yv;
    uint32_t bits = 0;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const T v = static_cast<T>(xv.val[j]);
      bits |= static_cast<uint32_t>(f.keep(v)) << j;
      yv.val[j] = static_cast<scalar_t>(f.forward(v));
    }
    *reinterpret_cast<V*>(y + base) = yv;
    if (mask != nullptr) {  // uniform across the grid
      bits <<= (lane % kLanesPerWord) * VEC;
#pragma unroll
      for (int offset = 1; offset < kLanesPerWord; offset <<= 1) bits |= __shfl_xor_sync(kFullMask, bits, offset);
      if (lane % kLanesPerWord == 0) mask[chunk * VEC + lane / kLanesPerWord] = static_cast<int32_t>(bits);
    }
  }

  const int64_t nwords = mask_words(n);
  for (int64_t w = nchunks * VEC + warp; w < nwords; w += nwarps) {
    const int64_t i = w * 32 + lane;
    bool keep = false;
    if (i < n) {
      const T v = static_cast<T>(x[i]);
      keep = f.keep(v);
      y[i] = static_cast<scalar_t>(f.forward(v));
    }
    const uint32_t word = __ballot_sync(kFullMask, keep);
    if (mask != nullptr && lane == 0) mask[w] = static_cast<int32_t>(word);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Mask backward: dx = f.backward(grad, mask bit).
//
// Mapping. Thread-level grid-stride loops.
//  1. Vector part (nvec = n / VEC when grad and dx are 16-byte aligned, else 0): thread handles vector v, i.e.
//     elements v*VEC + [0, VEC). v*VEC is a multiple of VEC, which divides 32, so the VEC bits lie in one word
//     (v*VEC) / 32 at offsets (v*VEC) % 32 + [0, VEC): the word is read once per vector.
//  2. Scalar tail, elements [nvec * VEC, n): one element per thread and step.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, typename F>
__global__ void __launch_bounds__(kThreads) mask_backward_kernel(
    const scalar_t* __restrict__ grad,  // [n]
    const int32_t* __restrict__ mask,   // [ceil(n / 32)]
    scalar_t* __restrict__ dx,          // [n]
    int64_t n,
    int64_t nvec,                       // vectors of VEC elements done by the vector part (0 if unaligned)
    F f) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;

  for (int64_t v = tid; v < nvec; v += stride) {
    const int64_t i = v * VEC;
    const uint32_t bits = static_cast<uint32_t>(mask[i >> 5]) >> (i & 31);
    const V gv = *reinterpret_cast<const V*>(grad + i);
    V out;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      out.val[j] = static_cast<scalar_t>(f.backward(static_cast<T>(gv.val[j]), ((bits >> j) & 1u) != 0));
    }
    *reinterpret_cast<V*>(dx + i) = out;
  }
  for (int64_t i = nvec * VEC + tid; i < n; i += stride) {
    dx[i] = static_cast<scalar_t>(f.backward(static_cast<T>(grad[i]), mask_bit(mask, i)));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Ops whose backward reads one saved tensor: y = f.forward(x); dx = f.backward(grad, saved).
//
// Mapping (both kernels). Thread-level grid-stride loops.
//  1. Vector part (nvec = n / VEC when every pointer is 16-byte aligned, else 0): thread handles the 16-byte vectors
//     of elements v*VEC + [0, VEC) of each tensor.
//  2. Scalar tail, elements [nvec * VEC, n): one element per thread and step.
// unary_forward may run in place (x == y): each element is read and then written by the same thread.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, typename F>
__global__ void __launch_bounds__(kThreads) unary_forward_kernel(
    const scalar_t* x,  // [n]
    scalar_t* y,        // [n], may alias x
    int64_t n,
    int64_t nvec,       // vectors of VEC elements done by the vector part (0 if unaligned)
    F f) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t v = tid; v < nvec; v += stride) {
    const V xv = *reinterpret_cast<const V*>(x + v * VEC);
    V out;
#pragma unroll
    for (int j = 0; j < VEC; ++j) out.val[j] = static_cast<scalar_t>(f.forward(static_cast<T>(xv.val[j])));
    *reinterpret_cast<V*>(y + v * VEC) = out;
  }
  for (int64_t i = nvec * VEC + tid; i < n; i += stride) {
    y[i] = static_cast<scalar_t>(f.forward(static_cast<T>(x[i])));
  }
}

template <typename scalar_t, typename F>
__global__ void __launch_bounds__(kThreads) unary_backward_kernel(
    const scalar_t* __restrict__ grad,   // [n]
    const scalar_t* __restrict__ saved,  // [n] the forward's input or output
    scalar_t* __restrict__ dx,           // [n]
    int64_t n,
    int64_t nvec,                        // vectors of VEC elements done by the vector part (0 if unaligned)
    F f) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t v = tid; v < nvec; v += stride) {
    const V gv = *reinterpret_cast<const V*>(grad + v * VEC);
    const V sv = *reinterpret_cast<const V*>(saved + v * VEC);
    V out;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      out.val[j] = static_cast<scalar_t>(f.backward(static_cast<T>(gv.val[j]), static_cast<T>(sv.val[j])));
    }
    *reinterpret_cast<V*>(dx + v * VEC) = out;
  }
  for (int64_t i = nvec * VEC + tid; i < n; i += stride) {
    dx[i] = static_cast<scalar_t>(f.backward(static_cast<T>(grad[i]), static_cast<T>(saved[i])));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Ops with learned per-channel parameters (PReLU: 1, PELU: 2). The functor's kParams parameter tensors ([C] each,
// C = 1 when shared) travel to the kernels by value as an array of pointers; an element of channel c gets the values
// p[k] = param_k[c] as opmath.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, int NP>
struct ChannelParams {
  const scalar_t* p[NP];  // NP pointers to [C]
};

template <typename scalar_t, int NP, typename T>
__device__ __forceinline__ void load_params(const ChannelParams<scalar_t, NP>& params, int64_t c, T (&pc)[NP]) {
#pragma unroll
  for (int k = 0; k < NP; ++k) pc[k] = static_cast<T>(params.p[k][c]);
}

// ---------------------------------------------------------------------------------------------------------------
// Channel forward: y = f.forward(x, p(c)), c = (i / S) % C for element i of x seen as [N, C, S].
//
// Mapping. Thread-level grid-stride loops.
//  1. Vector part (nvec = n / VEC when x and y are 16-byte aligned, else 0): thread handles elements v*VEC + [0, VEC);
//     the channel of the first element is found by division, the next ones by stepping (s, c) along the row (the
//     parameters are reloaded when the channel changes).
//  2. Scalar tail, elements [nvec * VEC, n): one element per thread and step.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, typename F>
__global__ void __launch_bounds__(kThreads) channel_forward_kernel(
    const scalar_t* __restrict__ x,                 // [N, C, S] = [n]
    ChannelParams<scalar_t, F::kParams> params,     // kParams x [C]
    scalar_t* __restrict__ y,                       // [n]
    int64_t n, int64_t C, int64_t S,
    int64_t nvec,                                   // vectors of VEC elements done by the vector part (0 if unaligned)
    F f) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  constexpr int NP = F::kParams;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;

  for (int64_t v = tid; v < nvec; v += stride) {
    const int64_t i = v * VEC;
    int64_t c = 0, s = 0;
    if (C > 1) {
      const int64_t row = idiv(i, S);  // n * C + c
      s = i - row * S;
      c = imod(row, C);
    }
    T pc[NP];
    load_params(params, c, pc);
    const V xv = *reinterpret_cast<const V*>(x + i);
    V yv;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      yv.val[j] = static_cast<scalar_t>(f.forward(static_cast<T>(xv.val[j]), pc));
      if (C > 1 && ++s == S) {  // the next element starts the next channel's row
        s = 0;
        if (++c == C) c = 0;
        load_params(params, c, pc);
      }
    }
    *reinterpret_cast<V*>(y + i) = yv;
  }
  for (int64_t i = nvec * VEC + tid; i < n; i += stride) {
    const int64_t c = C > 1 ? imod(idiv(i, S), C) : 0;
    T pc[NP];
    load_params(params, c, pc);
    y[i] = static_cast<scalar_t>(f.forward(static_cast<T>(x[i]), pc));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Channel backward, "plane" mode (inner S < kPlaneMaxInner). The input is seen as NR super-rows of W contiguous
// elements (W = R * C * S: R whole outer rows; the last super-row may end early at numel). Position q in [0, W) has
// the fixed channel (q % (C*S)) / S. Block b handles tile t = b / blocks_per_tile (super-rows [t*TN, t*TN + TN)) and
// positions q = (b % blocks_per_tile) * kThreads + threadIdx.x; the thread loops over its tile's super-rows, touching
// element sr*W + q (consecutive threads -> consecutive elements: coalesced), writes dx and, for each parameter k,
// stores the sum of the element terms dp[k] over those elements, in increasing order, to partial[k, t, q].
// Every slot of partial [NP, NT, W] is written (threads whose rows all lie past numel store 0).
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, typename F>
__global__ void __launch_bounds__(kThreads) channel_backward_plane_kernel(
    const scalar_t* __restrict__ grad,                    // [numel]
    const scalar_t* __restrict__ x,                       // [numel] = [N, C, S]
    ChannelParams<scalar_t, F::kParams> params,           // kParams x [C]
    scalar_t* __restrict__ dx,                            // [numel]
    at::opmath_type<scalar_t>* __restrict__ partial,      // [kParams, NT, W]
    int64_t numel, int64_t C, int64_t S, int64_t W, int64_t NR, int64_t TN, int64_t blocks_per_tile,
    int64_t M,                                            // NT * W: stride of parameter k in partial
    F f) {
  using T = at::opmath_type<scalar_t>;
  using acc_t = T;
  constexpr int NP = F::kParams;
  const int64_t tile = static_cast<int64_t>(blockIdx.x) / blocks_per_tile;
  const int64_t q = (static_cast<int64_t>(blockIdx.x) - tile * blocks_per_tile) * kThreads + threadIdx.x;
  if (q >= W) return;  // no block- or warp-collective operations in this kernel
  const int64_t c = idiv(imod(q, C * S), S);
  T pc[NP];
  load_params(params, c, pc);
  const int64_t sr0 = tile * TN;
  const int64_t e_end = imin(numel, imin(NR, sr0 + TN) * W);  // element bound of this tile (and of the tensor)
  acc_t acc[NP];
#pragma unroll
  for (int k = 0; k < NP; ++k) acc[k] = acc_t(0);
  int64_t e = sr0 * W + q;
  for (; e + 3 * W < e_end; e += 4 * W) {
    scalar_t xs[4], gs[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      xs[u] = x[e + u * W];
      gs[u] = grad[e + u * W];
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      T dp[NP];
      dx[e + u * W] = static_cast<scalar_t>(f.backward(static_cast<T>(xs[u]), static_cast<T>(gs[u]), pc, dp));
#pragma unroll
      for (int k = 0; k < NP; ++k) acc[k] += static_cast<acc_t>(dp[k]);
    }
  }
  for (; e < e_end; e += W) {
    T dp[NP];
    dx[e] = static_cast<scalar_t>(f.backward(static_cast<T>(x[e]), static_cast<T>(grad[e]), pc, dp));
#pragma unroll
    for (int k = 0; k < NP; ++k) acc[k] += static_cast<acc_t>(dp[k]);
  }
#pragma unroll
  for (int k = 0; k < NP; ++k) partial[k * M + tile * W + q] = acc[k];
}

// ---------------------------------------------------------------------------------------------------------------
// Channel backward, "rows" mode (inner S >= kPlaneMaxInner). Each (n, c) row of S contiguous elements is cut into NCH
// chunks of CH elements; work item b = row * NCH + k (block-level grid-stride loop, uniform across the block) is
// chunk k of row `row` (channel row % C). Thread t handles elements start + t + j * kThreads (coalesced), writes dx,
// sums each parameter's terms in increasing order, then one block_sum per parameter (fixed order, uniform across
// the block) gives partial[k, b]: partial is [NP, N, C, NCH], fully written.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, typename F>
__global__ void __launch_bounds__(kThreads) channel_backward_rows_kernel(
    const scalar_t* __restrict__ grad,                    // [numel]
    const scalar_t* __restrict__ x,                       // [numel] = [N, C, S]
    ChannelParams<scalar_t, F::kParams> params,           // kParams x [C]
    scalar_t* __restrict__ dx,                            // [numel]
    at::opmath_type<scalar_t>* __restrict__ partial,      // [kParams, N, C, NCH]
    int64_t rows, int64_t C, int64_t S, int64_t CH, int64_t NCH,
    int64_t M,                                            // rows * NCH: stride of parameter k in partial
    F f) {
  using T = at::opmath_type<scalar_t>;
  using acc_t = T;
  constexpr int NP = F::kParams;
  __shared__ acc_t smem[kWarpsPerBlock];
  const int64_t items = rows * NCH;
  for (int64_t b = blockIdx.x; b < items; b += gridDim.x) {
    const int64_t row = idiv(b, NCH);
    const int64_t chunk = b - row * NCH;
    T pc[NP];
    load_params(params, imod(row, C), pc);
    const int64_t end = row * S + imin(S, (chunk + 1) * CH);
    acc_t acc[NP];
#pragma unroll
    for (int k = 0; k < NP; ++k) acc[k] = acc_t(0);
    int64_t i = row * S + chunk * CH + threadIdx.x;
    for (; i + 3 * kThreads < end; i += 4 * kThreads) {
      scalar_t xs[4], gs[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        xs[u] = x[i + u * kThreads];
        gs[u] = grad[i + u * kThreads];
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        T dp[NP];
        dx[i + u * kThreads] =
            static_cast<scalar_t>(f.backward(static_cast<T>(xs[u]), static_cast<T>(gs[u]), pc, dp));
#pragma unroll
        for (int k = 0; k < NP; ++k) acc[k] += static_cast<acc_t>(dp[k]);
      }
    }
    for (; i < end; i += kThreads) {
      T dp[NP];
      dx[i] = static_cast<scalar_t>(f.backward(static_cast<T>(x[i]), static_cast<T>(grad[i]), pc, dp));
#pragma unroll
      for (int k = 0; k < NP; ++k) acc[k] += static_cast<acc_t>(dp[k]);
    }
#pragma unroll
    for (int k = 0; k < NP; ++k) {
      const acc_t sum = block_sum(acc[k], smem);  // smem reuse is safe: block_sum starts with __syncthreads()
      if (threadIdx.x == 0) partial[k * M + b] = sum;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Parameter-gradient reduce: partial is [nparams, M], parameter k's part [k*M, k*M + M) seen as [O, C, K];
// dp_k[c] = sum over (o, j) of partial[k*M + (o*C + c)*K + j], as the parameters' dtype. One "slot" per (k, c):
// slot = k*C + c, nslots = nparams * C. A team of kTeam threads (1, 32 or kThreads, chosen from the shape) handles one
// slot: team rank r sums terms t = r, r + kTeam, ... (term t = (o, j) = (t / K, t % K)) in increasing order, then the
// team sums its ranks with warp_sum / block_sum (fixed trees). Slots: block-level grid-stride loop over groups of
// kThreads / kTeam slots (uniform across the block, so the collectives see every thread). Independent of the functor
// (one instantiation per dtype and team, shared by every op).
// ---------------------------------------------------------------------------------------------------------------
constexpr int kMaxParams = 4;

template <typename scalar_t>
struct ParamGrads {
  scalar_t* p[kMaxParams];  // nparams pointers to [C]
};

template <int kTeam, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) param_reduce_kernel(
    const acc_t* __restrict__ partial,  // [nparams, O, C, K]
    ParamGrads<scalar_t> out,           // nparams x [C]
    int64_t nparams, int64_t M, int64_t O, int64_t C, int64_t K) {
  static_assert(kTeam == 1 || kTeam == 32 || kTeam == kThreads, "team: a thread, a warp or the block");
  constexpr int kTeamsPerBlock = kThreads / kTeam;
  __shared__ acc_t smem[kWarpsPerBlock];
  const int rank = threadIdx.x % kTeam;
  const int64_t terms = O * K;
  const int64_t nslots = nparams * C;
  for (int64_t slot0 = static_cast<int64_t>(blockIdx.x) * kTeamsPerBlock; slot0 < nslots;
       slot0 += static_cast<int64_t>(gridDim.x) * kTeamsPerBlock) {
    const int64_t slot = slot0 + threadIdx.x / kTeam;
    const int64_t kp = slot < nslots ? idiv(slot, C) : 0;
    const int64_t c = slot - kp * C;
    acc_t sum = 0;
    if (slot < nslots) {
      const acc_t* p = partial + kp * M + c * K;
      if constexpr (kTeam == 1) {
        for (int64_t o = 0; o < O; ++o) {
          const acc_t* po = p + o * C * K;
          for (int64_t j = 0; j < K; ++j) sum += po[j];
        }
      } else {
        // (o, j) of term t, stepped without division: t += kTeam is o += kTeam / K, j += kTeam % K (+ carry).
        const int64_t step_o = idiv(kTeam, K), step_j = kTeam - step_o * K;
        int64_t o = idiv(rank, K), j = rank - o * K;
#pragma unroll 4
        for (int64_t t = rank; t < terms; t += kTeam) {
          sum += p[o * C * K + j];
          o += step_o;
          j += step_j;
          if (j >= K) {
            j -= K;
            ++o;
          }
        }
      }
    }
    if constexpr (kTeam == 32) {
      sum = warp_sum(sum);
    } else if constexpr (kTeam == kThreads) {
      sum = block_sum(sum, smem);
    }
    if (rank == 0 && slot < nslots) {
      scalar_t* dst = out.p[0];
#pragma unroll
      for (int k = 1; k < kMaxParams; ++k) dst = kp == k ? out.p[k] : dst;  // selects: no local copy of `out`
      dst[c] = static_cast<scalar_t>(sum);
    }
  }
}

template <int kTeam, typename scalar_t, typename acc_t>
void launch_param_reduce(const acc_t* partial, ParamGrads<scalar_t> out, int64_t nparams, int64_t M, int64_t O,
                         int64_t C, int64_t K, cudaStream_t stream) {
  param_reduce_kernel<kTeam, scalar_t, acc_t>
      <<<grid_for(nparams * C, kThreads / kTeam), kThreads, 0, stream>>>(partial, out, nparams, M, O, C, K);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// ---------------------------------------------------------------------------------------------------------------
// Maxout forward: x seen as [outer, G * P, S] (G groups of P pieces), y and indices as [outer, G, S].
//
// Mapping. Thread-level grid-stride loop over the output elements e = (o*G + j)*S + s (consecutive threads ->
// consecutive s: coalesced loads of each piece and coalesced stores). The thread reads the P pieces
// x[((o*G + j)*P + p)*S + s], p = 0 .. P-1, keeps the first maximal one (maxout_better, compared in opmath), and stores
// that element unchanged to y[e] and p to indices[e].
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) maxout_forward_kernel(
    const scalar_t* __restrict__ x,  // [outer, G * P, S]
    scalar_t* __restrict__ y,        // [outer, G, S] = [n]
    uint8_t* __restrict__ indices,   // [outer, G, S], or nullptr when the indices are not saved
    int64_t n, int64_t P, int64_t S) {
  using T = at::opmath_type<scalar_t>;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t e = tid; e < n; e += stride) {
    const int64_t r = idiv(e, S);  // o * G + j
    const int64_t s = e - r * S;
    const scalar_t* xr = x + r * P * S + s;
    scalar_t best_raw = xr[0];
    T best = static_cast<T>(best_raw);
    int arg = 0;
#pragma unroll 4
    for (int64_t p = 1; p < P; ++p) {
      const scalar_t raw = xr[p * S];
      const T v = static_cast<T>(raw);
      if (maxout_better(v, best)) {
        best = v;
        best_raw = raw;
        arg = static_cast<int>(p);
      }
    }
    y[e] = best_raw;
    if (indices != nullptr) indices[e] = static_cast<uint8_t>(arg);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Maxout backward: dx [outer, G * P, S] = grad [outer, G, S] at the saved winner piece, 0 elsewhere.
//
// Mapping. Thread-level grid-stride loop over the dx elements i = ((o*G + j)*P + p)*S + s (consecutive threads ->
// consecutive s: coalesced writes); the thread reads indices and grad at e = (o*G + j)*S + s.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) maxout_backward_kernel(
    const scalar_t* __restrict__ grad,    // [outer, G, S]
    const uint8_t* __restrict__ indices,  // [outer, G, S]
    scalar_t* __restrict__ dx,            // [outer, G * P, S] = [n]
    int64_t n, int64_t P, int64_t S) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const scalar_t zero(0);
  for (int64_t i = tid; i < n; i += stride) {
    const int64_t rp = idiv(i, S);  // (o*G + j) * P + p
    const int64_t s = i - rp * S;
    const int64_t r = idiv(rp, P);  // o*G + j
    const int64_t p = rp - r * P;
    const int64_t e = r * S + s;
    dx[i] = static_cast<int64_t>(indices[e]) == p ? grad[e] : zero;
  }
}

struct CudaKernels {
  template <class Factory>
  static void mask_forward(const Tensor& x, const Tensor& y, const Tensor& mask, Factory factory) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_mask_forward_cuda", [&] {
      const auto f = factory(at::opmath_type<scalar_t>{});
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      const int64_t n = x.numel();
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      int32_t* mp = mask.numel() > 0 ? mask.mutable_data_ptr<int32_t>() : nullptr;
      const int64_t nchunks = aligned16(xp) && aligned16(yp) ? n / (32 * VEC) : 0;
      const int64_t tail_words = mask_words(n) - nchunks * VEC;
      const unsigned grid = grid_for(std::max(nchunks, tail_words), kWarpsPerBlock);
      mask_forward_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(xp, yp, mp, n, nchunks, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (mp != nullptr) {  // the padding words (op_impls.h new_mask)
        C10_CUDA_CHECK(cudaMemsetAsync(mp + mask_words(n), 0, kMaskPad * sizeof(int32_t), stream));
      }
    });
  }

  template <class Factory>
  static void mask_backward(const Tensor& grad, const Tensor& mask, const Tensor& dx, Factory factory) {
    const c10::cuda::CUDAGuard guard(grad.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "glo_mask_backward_cuda", [&] {
      const auto f = factory(at::opmath_type<scalar_t>{});
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      const int64_t n = grad.numel();
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
      const int64_t nvec = aligned16(gp) && aligned16(dp) ? n / VEC : 0;
      const int64_t tail = n - nvec * VEC;
      const unsigned grid = grid_for(std::max(nvec, tail), kThreads);
      mask_backward_kernel<scalar_t>
          <<<grid, kThreads, 0, stream>>>(gp, mask.const_data_ptr<int32_t>(), dp, n, nvec, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  template <class Factory>
  static void unary_forward(const Tensor& x, const Tensor& y, Factory factory) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_unary_forward_cuda", [&] {
      const auto f = factory(at::opmath_type<scalar_t>{});
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      const int64_t n = x.numel();
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      const int64_t nvec = aligned16(xp) && aligned16(yp) ? n / VEC : 0;
      const unsigned grid = grid_for(std::max(nvec, n - nvec * VEC), kThreads);
      unary_forward_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(xp, yp, n, nvec, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  template <class Factory>
  static void unary_backward(const Tensor& grad, const Tensor& saved, const Tensor& dx, Factory factory) {
    const c10::cuda::CUDAGuard guard(grad.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "glo_unary_backward_cuda", [&] {
      const auto f = factory(at::opmath_type<scalar_t>{});
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      const int64_t n = grad.numel();
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const scalar_t* sp = saved.const_data_ptr<scalar_t>();
      scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
      const int64_t nvec = aligned16(gp) && aligned16(sp) && aligned16(dp) ? n / VEC : 0;
      const unsigned grid = grid_for(std::max(nvec, n - nvec * VEC), kThreads);
      unary_backward_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(gp, sp, dp, n, nvec, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  template <typename scalar_t, size_t NP>
  static ChannelParams<scalar_t, static_cast<int>(NP)> channel_params(const std::array<Tensor, NP>& params) {
    ChannelParams<scalar_t, static_cast<int>(NP)> out{};
    for (size_t k = 0; k < NP; ++k) out.p[k] = params[k].template const_data_ptr<scalar_t>();
    return out;
  }

  template <size_t NP, class Factory>
  static void channel_forward(const Tensor& x, const std::array<Tensor, NP>& params, const Tensor& y,
                              ChannelGeometry g, Factory factory) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_channel_forward_cuda", [&] {
      using F = decltype(factory(at::opmath_type<scalar_t>{}));
      static_assert(F::kParams == static_cast<int>(NP), "parameter count");
      const F f = factory(at::opmath_type<scalar_t>{});
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      const int64_t n = x.numel();
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      const int64_t nvec = aligned16(xp) && aligned16(yp) ? n / VEC : 0;
      const int64_t tail = n - nvec * VEC;
      const unsigned grid = grid_for(std::max(nvec, tail), kThreads);
      channel_forward_kernel<scalar_t, F><<<grid, kThreads, 0, stream>>>(
          xp, channel_params<scalar_t>(params), yp, n, g.channels, g.inner, nvec, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  // One pass over x and grad writes dx and, for each of the NP parameters, per-tile partial sums of its gradient terms
  // (opmath accumulation) into a small buffer partial [NP, M] (parameter-major: parameter k's partials are the
  // contiguous block [k*M, k*M + M), laid out as in the single-parameter case); a second kernel sums the partials of
  // each (parameter, channel) in a fixed order. All tile sizes come from the shape only, so every dparams[k] is bitwise
  // identical across runs and GPUs.
  //  * plane mode (S < kPlaneMaxInner): R = min(N, max(1, kPlaneMinWidth / (C*S))) outer rows per super-row of
  //    W = R*C*S elements, NR = ceil(N / R) super-rows, TN = max(kPlaneMinRows, ceil(NR*W / kPlaneTargetThreads))
  //    super-rows per tile, NT = ceil(NR / TN) tiles; M = NT*W, each block [NT, W] = [NT*R, C, S], about numel / TN
  //    values.
  //  * rows mode (S >= kPlaneMaxInner): NCH = ceil(S / kRowChunk) chunks per (n, c) row; M = N*C*NCH, each block
  //    [N, C, NCH], at most numel / kPlaneMaxInner + numel / kRowChunk values.
  template <size_t NP, class Factory>
  static void channel_backward(const Tensor& grad, const Tensor& x, const std::array<Tensor, NP>& params,
                               const Tensor& dx, const std::array<Tensor, NP>& dparams, ChannelGeometry g,
                               Factory factory) {
    static_assert(NP >= 1 && NP <= static_cast<size_t>(kMaxParams), "parameter count");
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_channel_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      using F = decltype(factory(acc_t{}));
      static_assert(F::kParams == static_cast<int>(NP), "parameter count");
      const F f = factory(acc_t{});
      const int64_t numel = x.numel();
      const int64_t N = g.outer, C = g.channels, S = g.inner;
      TORCH_INTERNAL_ASSERT(N * C * S == numel, "glo_kernels.channel_backward: geometry does not match numel");
      for (size_t k = 0; k < NP; ++k) {
        TORCH_INTERNAL_ASSERT(params[k].numel() == C && dparams[k].numel() == C,
                              "glo_kernels.channel_backward: parameter sizes do not match the geometry");
      }
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      const auto pp = channel_params<scalar_t>(params);
      scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
      const auto acc_options = x.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
      const int64_t np = static_cast<int64_t>(NP);
      Tensor partial;
      int64_t O = 0, K = 0, M = 0;  // partial viewed as [NP, O, C, K], M = O*C*K
      if (S < kPlaneMaxInner) {
        const int64_t P = C * S;
        const int64_t R = std::min(N, std::max<int64_t>(1, kPlaneMinWidth / P));
        const int64_t W = R * P;
        const int64_t NR = ceil_div(N, R);
        const int64_t TN = std::max(kPlaneMinRows, ceil_div(NR * W, kPlaneTargetThreads));
        const int64_t NT = ceil_div(NR, TN);
        const int64_t blocks_per_tile = ceil_div(W, kThreads);
        TORCH_CHECK(NT * blocks_per_tile <= INT_MAX, "glo_kernels.channel_backward: input too large (", numel,
                    " elements)");
        M = NT * W;
        partial = at::empty({np * M}, acc_options);
        channel_backward_plane_kernel<scalar_t, F>
            <<<static_cast<unsigned>(NT * blocks_per_tile), kThreads, 0, stream>>>(
                gp, xp, pp, dxp, partial.mutable_data_ptr<acc_t>(), numel, C, S, W, NR, TN, blocks_per_tile, M, f);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        O = NT * R;
        K = S;
      } else {
        const int64_t rows = N * C;
        const int64_t NCH = ceil_div(S, kRowChunk);
        M = rows * NCH;
        partial = at::empty({np * M}, acc_options);
        channel_backward_rows_kernel<scalar_t, F><<<grid_for(M, 1), kThreads, 0, stream>>>(
            gp, xp, pp, dxp, partial.mutable_data_ptr<acc_t>(), rows, C, S, kRowChunk, NCH, M, f);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        O = N;
        K = NCH;
      }
      ParamGrads<scalar_t> out{};
      for (size_t k = 0; k < NP; ++k) out.p[k] = dparams[k].template mutable_data_ptr<scalar_t>();
      const acc_t* ppart = partial.const_data_ptr<acc_t>();
      const int64_t terms = O * K;
      if (terms <= kReduceThreadMaxTerms) {
        launch_param_reduce<1>(ppart, out, np, M, O, C, K, stream);
      } else if (terms <= kReduceWarpMaxTerms) {
        launch_param_reduce<32>(ppart, out, np, M, O, C, K, stream);
      } else {
        launch_param_reduce<kThreads>(ppart, out, np, M, O, C, K, stream);
      }
    });
  }

  static void maxout_forward(const Tensor& x, const Tensor& y, const Tensor& indices, MaxoutGeometry g) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_maxout_forward_cuda", [&] {
      const int64_t n = y.numel();
      TORCH_INTERNAL_ASSERT(n == g.outer * g.groups * g.inner && x.numel() == n * g.pieces,
                            "glo_kernels.maxout: geometry does not match numel");
      TORCH_INTERNAL_ASSERT(indices.numel() == 0 || indices.numel() == n, "glo_kernels.maxout: bad indices size");
      uint8_t* ip = indices.numel() > 0 ? indices.mutable_data_ptr<uint8_t>() : nullptr;
      maxout_forward_kernel<scalar_t><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
          x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), ip, n, g.pieces, g.inner);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static void maxout_backward(const Tensor& grad, const Tensor& indices, const Tensor& dx, MaxoutGeometry g) {
    const c10::cuda::CUDAGuard guard(grad.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "glo_maxout_backward_cuda", [&] {
      const int64_t n = dx.numel();
      TORCH_INTERNAL_ASSERT(n == g.outer * g.groups * g.pieces * g.inner && grad.numel() * g.pieces == n &&
                                indices.numel() == grad.numel(),
                            "glo_kernels.maxout_backward: geometry does not match numel");
      maxout_backward_kernel<scalar_t><<<grid_for(n, kThreads), kThreads, 0, stream>>>(
          grad.const_data_ptr<scalar_t>(), indices.const_data_ptr<uint8_t>(), dx.mutable_data_ptr<scalar_t>(), n,
          g.pieces, g.inner);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
};

}  // namespace
}  // namespace glo

TORCH_LIBRARY_IMPL(glo_kernels, CUDA, m) { GLO_REGISTER_OPS(m, ::glo::CudaKernels); }
