// CUDA kernels: the functors of glo/activations.h applied element-wise, with packed 1-bit masks for ReLU / Leaky ReLU
// and a deterministic per-channel reduction for the PReLU weight gradient.
//
// Conventions of every kernel here:
//  * all tensors are contiguous; sizes and indices are int64_t (tensors over 2^31 elements are right);
//  * loads are scalar_t, math is opmath (float for half/bfloat16/float, double for double), stores are scalar_t;
//  * element-wise kernels use grid-stride loops, so any grid is correct; the reductions use tile sizes that depend
//    only on the shape (never on the device), and sum in a fixed order: dweight is bitwise reproducible from run to
//    run and from GPU to GPU. No atomics.
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
#include <climits>
#include <cstdint>

#include "glo/op_impls.h"

namespace glo {
namespace {

constexpr int kThreads = 256;                     // threads per block of every kernel
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int64_t kMaxGrid = int64_t{1} << 20;    // grid cap of grid-stride kernels (any value is correct)

// PReLU backward tiling (shape-only constants; see CudaKernels::prelu_backward).
constexpr int64_t kPlaneMaxInner = 256;           // inner < this: "plane" mode, else "rows" mode
constexpr int64_t kPlaneMinWidth = 1024;          // plane mode: whole outer rows grouped until >= this many elements
constexpr int64_t kPlaneMinRows = 16;             // plane mode: >= this many super-rows summed per thread
constexpr int64_t kPlaneTargetThreads = int64_t{1} << 19;  // plane mode: about this many threads in total
constexpr int64_t kRowChunk = 4096;               // rows mode: elements of one (n, c) row reduced by one block
constexpr int64_t kReduceThreadMaxTerms = 64;     // dweight reduce: one thread per channel up to this many terms,
constexpr int64_t kReduceWarpMaxTerms = 4096;     // one warp per channel up to this many, else one block per channel

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
// PReLU forward: y = PReLU.forward(x, w[c]), c = (i / S) % C for element i of x seen as [N, C, S].
//
// Mapping. Thread-level grid-stride loops.
//  1. Vector part (nvec = n / VEC when x and y are 16-byte aligned, else 0): thread handles elements v*VEC + [0, VEC);
//     the channel of the first element is found by division, the next ones by stepping (s, c) along the row.
//  2. Scalar tail, elements [nvec * VEC, n): one element per thread and step.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) prelu_forward_kernel(
    const scalar_t* __restrict__ x,  // [N, C, S] = [n]
    const scalar_t* __restrict__ w,  // [C]
    scalar_t* __restrict__ y,        // [n]
    int64_t n, int64_t C, int64_t S,
    int64_t nvec) {                  // vectors of VEC elements done by the vector part (0 if unaligned)
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  const PReLU<T> f;
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
    T wc = static_cast<T>(w[c]);
    const V xv = *reinterpret_cast<const V*>(x + i);
    V yv;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      yv.val[j] = static_cast<scalar_t>(f.forward(static_cast<T>(xv.val[j]), wc));
      if (C > 1 && ++s == S) {  // the next element starts the next channel's row
        s = 0;
        if (++c == C) c = 0;
        wc = static_cast<T>(w[c]);
      }
    }
    *reinterpret_cast<V*>(y + i) = yv;
  }
  for (int64_t i = nvec * VEC + tid; i < n; i += stride) {
    const int64_t c = C > 1 ? imod(idiv(i, S), C) : 0;
    y[i] = static_cast<scalar_t>(f.forward(static_cast<T>(x[i]), static_cast<T>(w[c])));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// PReLU backward, "plane" mode (inner S < kPlaneMaxInner). The input is seen as NR super-rows of W contiguous
// elements (W = R * C * S: R whole outer rows; the last super-row may end early at numel). Position q in [0, W) has
// the fixed channel (q % (C*S)) / S. Block b handles tile t = b / blocks_per_tile (super-rows [t*TN, t*TN + TN)) and
// positions q = (b % blocks_per_tile) * kThreads + threadIdx.x; the thread loops over its tile's super-rows, touching
// element sr*W + q (consecutive threads -> consecutive elements: coalesced), writes dx and stores the sum of
// backward_weight over those elements, in increasing order, to partial[t, q]. Every slot of partial [NT, W] is
// written (threads whose rows all lie past numel store 0).
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) prelu_backward_plane_kernel(
    const scalar_t* __restrict__ grad,  // [numel]
    const scalar_t* __restrict__ x,     // [numel] = [N, C, S]
    const scalar_t* __restrict__ w,     // [C]
    scalar_t* __restrict__ dx,          // [numel]
    acc_t* __restrict__ partial,        // [NT, W]
    int64_t numel, int64_t C, int64_t S, int64_t W, int64_t NR, int64_t TN, int64_t blocks_per_tile) {
  using T = at::opmath_type<scalar_t>;
  const PReLU<T> f;
  const int64_t tile = static_cast<int64_t>(blockIdx.x) / blocks_per_tile;
  const int64_t q = (static_cast<int64_t>(blockIdx.x) - tile * blocks_per_tile) * kThreads + threadIdx.x;
  if (q >= W) return;  // no block- or warp-collective operations in this kernel
  const int64_t c = idiv(imod(q, C * S), S);
  const T wc = static_cast<T>(w[c]);
  const int64_t sr0 = tile * TN;
  const int64_t e_end = imin(numel, imin(NR, sr0 + TN) * W);  // element bound of this tile (and of the tensor)
  acc_t acc = 0;
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
      const T xv = static_cast<T>(xs[u]), gv = static_cast<T>(gs[u]);
      dx[e + u * W] = static_cast<scalar_t>(f.backward_input(xv, wc, gv));
      acc += static_cast<acc_t>(f.backward_weight(xv, gv));
    }
  }
  for (; e < e_end; e += W) {
    const T xv = static_cast<T>(x[e]), gv = static_cast<T>(grad[e]);
    dx[e] = static_cast<scalar_t>(f.backward_input(xv, wc, gv));
    acc += static_cast<acc_t>(f.backward_weight(xv, gv));
  }
  partial[tile * W + q] = acc;
}

// ---------------------------------------------------------------------------------------------------------------
// PReLU backward, "rows" mode (inner S >= kPlaneMaxInner). Each (n, c) row of S contiguous elements is cut into NCH
// chunks of CH elements; work item b = row * NCH + k (block-level grid-stride loop, uniform across the block) is
// chunk k of row `row` (channel row % C). Thread t handles elements start + t + j * kThreads (coalesced), writes dx,
// sums backward_weight in increasing order, then block_sum (fixed order) gives partial[b]: partial is
// [N, C, NCH], fully written.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) prelu_backward_rows_kernel(
    const scalar_t* __restrict__ grad,  // [numel]
    const scalar_t* __restrict__ x,     // [numel] = [N, C, S]
    const scalar_t* __restrict__ w,     // [C]
    scalar_t* __restrict__ dx,          // [numel]
    acc_t* __restrict__ partial,        // [N, C, NCH]
    int64_t rows, int64_t C, int64_t S, int64_t CH, int64_t NCH) {
  using T = at::opmath_type<scalar_t>;
  const PReLU<T> f;
  __shared__ acc_t smem[kWarpsPerBlock];
  const int64_t items = rows * NCH;
  for (int64_t b = blockIdx.x; b < items; b += gridDim.x) {
    const int64_t row = idiv(b, NCH);
    const int64_t k = b - row * NCH;
    const int64_t c = imod(row, C);
    const T wc = static_cast<T>(w[c]);
    const int64_t end = row * S + imin(S, (k + 1) * CH);
    acc_t acc = 0;
    int64_t i = row * S + k * CH + threadIdx.x;
    for (; i + 3 * kThreads < end; i += 4 * kThreads) {
      scalar_t xs[4], gs[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        xs[u] = x[i + u * kThreads];
        gs[u] = grad[i + u * kThreads];
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const T xv = static_cast<T>(xs[u]), gv = static_cast<T>(gs[u]);
        dx[i + u * kThreads] = static_cast<scalar_t>(f.backward_input(xv, wc, gv));
        acc += static_cast<acc_t>(f.backward_weight(xv, gv));
      }
    }
    for (; i < end; i += kThreads) {
      const T xv = static_cast<T>(x[i]), gv = static_cast<T>(grad[i]);
      dx[i] = static_cast<scalar_t>(f.backward_input(xv, wc, gv));
      acc += static_cast<acc_t>(f.backward_weight(xv, gv));
    }
    acc = block_sum(acc, smem);
    if (threadIdx.x == 0) partial[b] = acc;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// dweight reduce: partial seen as [O, C, K]; dw[c] = sum over (o, k) of partial[o, c, k], as dw's dtype.
// A team of kTeam threads (1, 32 or kThreads, chosen from the shape) handles one channel: team rank r sums terms
// j = r, r + kTeam, ... (term j = (o, k) = (j / K, j % K)) in increasing order, then the team sums its ranks with
// warp_sum / block_sum (fixed trees). Channels: block-level grid-stride loop over groups of kThreads / kTeam channels
// (uniform across the block, so the collectives see every thread).
// ---------------------------------------------------------------------------------------------------------------
template <int kTeam, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) prelu_dw_reduce_kernel(
    const acc_t* __restrict__ partial,  // [O, C, K]
    scalar_t* __restrict__ dw,          // [C]
    int64_t O, int64_t C, int64_t K) {
  static_assert(kTeam == 1 || kTeam == 32 || kTeam == kThreads, "team: a thread, a warp or the block");
  constexpr int kTeamsPerBlock = kThreads / kTeam;
  __shared__ acc_t smem[kWarpsPerBlock];
  const int rank = threadIdx.x % kTeam;
  const int64_t terms = O * K;
  for (int64_t c0 = static_cast<int64_t>(blockIdx.x) * kTeamsPerBlock; c0 < C;
       c0 += static_cast<int64_t>(gridDim.x) * kTeamsPerBlock) {
    const int64_t c = c0 + threadIdx.x / kTeam;
    acc_t sum = 0;
    if (c < C) {
      if constexpr (kTeam == 1) {
        for (int64_t o = 0; o < O; ++o) {
          const acc_t* p = partial + (o * C + c) * K;
          for (int64_t k = 0; k < K; ++k) sum += p[k];
        }
      } else {
        // (o, k) of term j, stepped without division: j += kTeam is o += kTeam / K, k += kTeam % K (+ carry).
        const int64_t step_o = idiv(kTeam, K), step_k = kTeam - step_o * K;
        int64_t o = idiv(rank, K), k = rank - o * K;
        const acc_t* p = partial + c * K;
#pragma unroll 4
        for (int64_t j = rank; j < terms; j += kTeam) {
          sum += p[o * C * K + k];
          o += step_o;
          k += step_k;
          if (k >= K) {
            k -= K;
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
    if (rank == 0 && c < C) dw[c] = static_cast<scalar_t>(sum);
  }
}

template <int kTeam, typename scalar_t, typename acc_t>
void launch_dw_reduce(const acc_t* partial, scalar_t* dw, int64_t O, int64_t C, int64_t K, cudaStream_t stream) {
  prelu_dw_reduce_kernel<kTeam, scalar_t, acc_t>
      <<<grid_for(C, kThreads / kTeam), kThreads, 0, stream>>>(partial, dw, O, C, K);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
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

  static void prelu_forward(const Tensor& x, const Tensor& w, const Tensor& y, ChannelGeometry g) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_prelu_forward_cuda", [&] {
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      const int64_t n = x.numel();
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      const int64_t nvec = aligned16(xp) && aligned16(yp) ? n / VEC : 0;
      const int64_t tail = n - nvec * VEC;
      const unsigned grid = grid_for(std::max(nvec, tail), kThreads);
      prelu_forward_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(xp, w.const_data_ptr<scalar_t>(), yp, n,
                                                                     g.channels, g.inner, nvec);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  // One pass over x and grad writes dx and per-tile partial sums of the weight gradient (opmath accumulation) into a
  // small buffer; a second kernel sums the partials of each channel in a fixed order. All tile sizes come from the
  // shape only, so dw is bitwise identical across runs and GPUs.
  //  * plane mode (S < kPlaneMaxInner): R = min(N, max(1, kPlaneMinWidth / (C*S))) outer rows per super-row of
  //    W = R*C*S elements, NR = ceil(N / R) super-rows, TN = max(kPlaneMinRows, ceil(NR*W / kPlaneTargetThreads))
  //    super-rows per tile, NT = ceil(NR / TN) tiles; partial [NT, W] = [NT*R, C, S], about numel / TN values.
  //  * rows mode (S >= kPlaneMaxInner): NCH = ceil(S / kRowChunk) chunks per (n, c) row; partial [N, C, NCH], at most
  //    numel / kPlaneMaxInner + numel / kRowChunk values.
  static void prelu_backward(const Tensor& grad, const Tensor& x, const Tensor& w, const Tensor& dx, const Tensor& dw,
                             ChannelGeometry g) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_prelu_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const int64_t numel = x.numel();
      const int64_t N = g.outer, C = g.channels, S = g.inner;
      TORCH_INTERNAL_ASSERT(N * C * S == numel, "glo_kernels.prelu_backward: geometry does not match numel");
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      const scalar_t* wp = w.const_data_ptr<scalar_t>();
      scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
      const auto acc_options = x.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
      Tensor partial;
      int64_t O = 0, K = 0;  // partial viewed as [O, C, K]
      if (S < kPlaneMaxInner) {
        const int64_t P = C * S;
        const int64_t R = std::min(N, std::max<int64_t>(1, kPlaneMinWidth / P));
        const int64_t W = R * P;
        const int64_t NR = ceil_div(N, R);
        const int64_t TN = std::max(kPlaneMinRows, ceil_div(NR * W, kPlaneTargetThreads));
        const int64_t NT = ceil_div(NR, TN);
        const int64_t blocks_per_tile = ceil_div(W, kThreads);
        TORCH_CHECK(NT * blocks_per_tile <= INT_MAX, "glo_kernels.prelu_backward: input too large (", numel,
                    " elements)");
        partial = at::empty({NT * W}, acc_options);
        prelu_backward_plane_kernel<scalar_t, acc_t>
            <<<static_cast<unsigned>(NT * blocks_per_tile), kThreads, 0, stream>>>(
                gp, xp, wp, dxp, partial.mutable_data_ptr<acc_t>(), numel, C, S, W, NR, TN, blocks_per_tile);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        O = NT * R;
        K = S;
      } else {
        const int64_t rows = N * C;
        const int64_t NCH = ceil_div(S, kRowChunk);
        partial = at::empty({rows * NCH}, acc_options);
        prelu_backward_rows_kernel<scalar_t, acc_t><<<grid_for(rows * NCH, 1), kThreads, 0, stream>>>(
            gp, xp, wp, dxp, partial.mutable_data_ptr<acc_t>(), rows, C, S, kRowChunk, NCH);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        O = N;
        K = NCH;
      }
      const acc_t* pp = partial.const_data_ptr<acc_t>();
      scalar_t* dwp = dw.mutable_data_ptr<scalar_t>();
      const int64_t terms = O * K;
      if (terms <= kReduceThreadMaxTerms) {
        launch_dw_reduce<1>(pp, dwp, O, C, K, stream);
      } else if (terms <= kReduceWarpMaxTerms) {
        launch_dw_reduce<32>(pp, dwp, O, C, K, stream);
      } else {
        launch_dw_reduce<kThreads>(pp, dwp, O, C, K, stream);
      }
    });
  }
};

}  // namespace
}  // namespace glo

TORCH_LIBRARY_IMPL(glo_kernels, CUDA, m) { GLO_REGISTER_OPS(m, ::glo::CudaKernels); }
