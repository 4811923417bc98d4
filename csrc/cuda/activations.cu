// CUDA kernels: the functors of glo/activations.h applied element-wise, with packed 1-bit masks for ReLU / Leaky ReLU,
// a deterministic per-channel reduction for the gradients of per-channel parameters (PReLU, PELU), Maxout and the
// gated units (SwiGLU, GeGLU, ReGLU).
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
#include <type_traits>

#include "common.cuh"
#include "glo/op_impls.h"

namespace glo {
namespace {

constexpr int kThreads = 256;                     // threads per block of every kernel
constexpr int kWarpsPerBlock = kThreads / 32;

// Channel backward tiling (shape-only constants; see CudaKernels::channel_backward).
constexpr int64_t kPlaneMaxInner = 256;           // inner < this: "plane" mode, else "rows" mode
constexpr int64_t kPlaneMinWidth = 1024;          // plane mode: whole outer rows grouped until >= this many elements
constexpr int64_t kPlaneMinRows = 16;             // plane mode: >= this many super-rows summed per thread
constexpr int64_t kPlaneTargetThreads = int64_t{1} << 19;  // plane mode: about this many threads in total
constexpr int64_t kRowChunk = 4096;               // rows mode: elements of one (n, c) row reduced by one block
constexpr int64_t kReduceThreadMaxTerms = 64;     // param reduce: one thread per slot up to this many terms,
constexpr int64_t kReduceWarpMaxTerms = 4096;     // one warp per slot up to this many, else one block per slot

// Grid of a grid-stride kernel doing `work` units, `per_block` units per block and pass.
inline unsigned grid_for(int64_t work, int64_t per_block) {
  return grid_cap(ceil_div(work, per_block));
}

// Stores a 16-byte vector. store_vec: a plain store of a uint4, which ptxas usually emits as one STG.E.128 but may
// split into 32-bit pieces when the four values do not sit in an aligned register quad (seen in the unrolled loops of
// the mask and plane kernels: bench/sass_report.py, tests/test_sass.py). store_vec_pinned: one st.global.v4.b32 that
// ptxas cannot split, at the price of scheduling freedom (an asm volatile is not moved across other volatile ones),
// so it is used only where the split was seen. The caller guarantees 16-byte alignment. The asm has no memory
// clobber: no kernel here reads, after the store, memory the store may write (in place, each element is loaded
// before it is stored, and the stored value depends on the load). Other widths (kV == 1): a plain store.
template <typename VT>
__device__ __forceinline__ void store_vec(void* p, const VT& v) {
  if constexpr (sizeof(VT) == 16) {
    uint4 u;
    __builtin_memcpy(&u, &v, 16);
    *reinterpret_cast<uint4*>(p) = u;
  } else {
    *reinterpret_cast<VT*>(p) = v;
  }
}

template <typename VT>
__device__ __forceinline__ void store_vec_pinned(void* p, const VT& v) {
  if constexpr (sizeof(VT) == 16) {
    uint4 u;
    __builtin_memcpy(&u, &v, 16);
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(u.x), "r"(u.y), "r"(u.z), "r"(u.w));
  } else {
    *reinterpret_cast<VT*>(p) = v;
  }
}

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// a % b for a >= 0, b > 0.
__device__ __forceinline__ int64_t imod(int64_t a, int64_t b) { return a - idiv(a, b) * b; }

// ---------------------------------------------------------------------------------------------------------------
// Division by a run-time constant d >= 1 without a divide instruction (Granlund & Montgomery 1994, as PyTorch's
// IntDivider, here for 64-bit dividends): with l = ceil(log2 d) and m = floor(2^64 (2^l - d) / d) + 1 (< 2^64),
// n / d = (umulhi64(n, m) + n) >> l for every 0 <= n < 2^63 (t = umulhi64(n, m) <= n, so t + n does not overflow).
// d = 2^l gives m = 1, t = 0: a shift.
// ---------------------------------------------------------------------------------------------------------------
struct FastDiv {
  uint64_t d;
  uint64_t m;
  uint32_t l;

  explicit FastDiv(int64_t divisor) : d(static_cast<uint64_t>(divisor)), m(1), l(0) {
    TORCH_INTERNAL_ASSERT(divisor >= 1, "glo_kernels: FastDiv needs a positive divisor");
    while (l < 63 && (uint64_t{1} << l) < d) ++l;
    const unsigned __int128 num = (static_cast<unsigned __int128>(1) << 64) * ((uint64_t{1} << l) - d);
    m = static_cast<uint64_t>(num / d) + 1;
  }
  __device__ __forceinline__ int64_t div(int64_t n) const {
    const uint64_t un = static_cast<uint64_t>(n);
    return static_cast<int64_t>((__umul64hi(un, m) + un) >> l);
  }
};

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
    int32_t* mask,       // [ceil(n / 32) + kMaskPad], or nullptr when the mask is not saved
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
  // The mask's kMaskPad padding words (op_impls.h new_mask) are zeroed here, not by a separate memset.
  if (mask != nullptr && blockIdx.x == 0 && threadIdx.x < kMaskPad) mask[mask_words(n) + threadIdx.x] = 0;

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
    store_vec_pinned(y + base, yv);
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
  vec_loop<VEC, kThreads>(n, nvec, [&](int64_t i) {
    const uint32_t bits = static_cast<uint32_t>(mask[i >> 5]) >> (i & 31);
    const V gv = *reinterpret_cast<const V*>(grad + i);
    V out;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      out.val[j] = static_cast<scalar_t>(f.backward(static_cast<T>(gv.val[j]), ((bits >> j) & 1u) != 0));
    }
    store_vec(dx + i, out);
  }, [&](int64_t i) {
    dx[i] = static_cast<scalar_t>(f.backward(static_cast<T>(grad[i]), mask_bit(mask, i)));
  });
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
  vec_loop<VEC, kThreads>(n, nvec, [&](int64_t i) {
    const V xv = *reinterpret_cast<const V*>(x + i);
    V out;
#pragma unroll
    for (int j = 0; j < VEC; ++j) out.val[j] = static_cast<scalar_t>(f.forward(static_cast<T>(xv.val[j])));
    store_vec(y + i, out);
  }, [&](int64_t i) { y[i] = static_cast<scalar_t>(f.forward(static_cast<T>(x[i]))); });
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
  vec_loop<VEC, kThreads>(n, nvec, [&](int64_t i) {
    const V gv = *reinterpret_cast<const V*>(grad + i);
    const V sv = *reinterpret_cast<const V*>(saved + i);
    V out;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      out.val[j] = static_cast<scalar_t>(f.backward(static_cast<T>(gv.val[j]), static_cast<T>(sv.val[j])));
    }
    store_vec(dx + i, out);
  }, [&](int64_t i) {
    dx[i] = static_cast<scalar_t>(f.backward(static_cast<T>(grad[i]), static_cast<T>(saved[i])));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Gated units (glo::Gated: y = act(a) * b) over [rows, h] views: a and b (da and db) with unit column stride and
// row strides sa, sb (sda, sdb): the two halves of the rows of one x [rows, 2h], or one run each (rows = 1); y and
// grad contiguous [rows, h].
//
// Mapping (both kernels). A block's kThreads threads are [kThreads / TX rows, TX columns], TX = 2^tx_log2 (32 to
// kThreads, about the row's vector count, so that short rows still fill the block); thread (ty, tx) handles the
// vectors v = blockIdx.x * TX + tx (+ multiples of gridDim.x * TX) of rows blockIdx.y * TY + ty (+ multiples of
// gridDim.y * TY): elements v*VEC + [0, VEC) of the row. VEC = 16 / sizeof(scalar_t) when every pointer is 16-byte
// aligned and h and every row stride are multiples of VEC, else 1 (scalar accesses). Grid-stride in both
// dimensions: any grid is correct. In and out never alias (fresh outputs), hence __restrict__.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, int VEC>
struct alignas(sizeof(scalar_t) * VEC) VecN {
  scalar_t val[VEC];
};

struct GatedShape {
  int64_t rows, h;
  int64_t sa, sb;    // row strides of a and b (elements)
  int64_t sda, sdb;  // row strides of da and db (backward)
  int tx_log2;
};

// body(r, c) for the vectors (elements c .. c + VEC) of the rows this thread visits (the mapping above).
template <int VEC, class Body>
__device__ __forceinline__ void for_each_row_vector(const GatedShape& s, const Body& body) {
  const int tx = threadIdx.x & ((1 << s.tx_log2) - 1);
  const int64_t TX = int64_t{1} << s.tx_log2, TY = kThreads >> s.tx_log2;
  const int64_t hv = s.h / VEC;
  for (int64_t r = blockIdx.y * TY + (threadIdx.x >> s.tx_log2); r < s.rows; r += gridDim.y * TY) {
    for (int64_t v = blockIdx.x * TX + tx; v < hv; v += gridDim.x * TX) body(r, v * VEC);
  }
}

template <typename scalar_t, int VEC, typename G>
__global__ void __launch_bounds__(kThreads) gated_forward_kernel(
    const scalar_t* __restrict__ a,  // [rows, h], row stride sa
    const scalar_t* __restrict__ b,  // [rows, h], row stride sb
    scalar_t* __restrict__ y,        // [rows, h]
    GatedShape s, G g) {
  using T = at::opmath_type<scalar_t>;
  using V = VecN<scalar_t, VEC>;
  for_each_row_vector<VEC>(s, [&](int64_t r, int64_t c) {
    const V av = *reinterpret_cast<const V*>(a + r * s.sa + c);
    const V bv = *reinterpret_cast<const V*>(b + r * s.sb + c);
    V out;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      out.val[j] = static_cast<scalar_t>(g.forward(static_cast<T>(av.val[j]), static_cast<T>(bv.val[j])));
    }
    store_vec_pinned(y + r * s.h + c, out);  // (ReGLU's float store was split into four without the pin)
  });
}

template <typename scalar_t, int VEC, typename G>
__global__ void __launch_bounds__(kThreads) gated_backward_kernel(
    const scalar_t* __restrict__ grad,  // [rows, h]
    const scalar_t* __restrict__ a,     // [rows, h], row stride sa
    const scalar_t* __restrict__ b,     // [rows, h], row stride sb
    scalar_t* __restrict__ da,          // [rows, h], row stride sda
    scalar_t* __restrict__ db,          // [rows, h], row stride sdb
    GatedShape s, G g) {
  using T = at::opmath_type<scalar_t>;
  using V = VecN<scalar_t, VEC>;
  for_each_row_vector<VEC>(s, [&](int64_t r, int64_t c) {
    const V gv = *reinterpret_cast<const V*>(grad + r * s.h + c);
    const V av = *reinterpret_cast<const V*>(a + r * s.sa + c);
    const V bv = *reinterpret_cast<const V*>(b + r * s.sb + c);
    V oa, ob;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      T da_j, db_j;
      g.backward(static_cast<T>(gv.val[j]), static_cast<T>(av.val[j]), static_cast<T>(bv.val[j]), da_j, db_j);
      oa.val[j] = static_cast<scalar_t>(da_j);
      ob.val[j] = static_cast<scalar_t>(db_j);
    }
    store_vec(da + r * s.sda + c, oa);
    store_vec(db + r * s.sdb + c, ob);
  });
}

// The launch shape of the gated kernels over a [rows, h] problem with `vec` elements per access: TX about h / vec
// (32 to kThreads), a grid of column tiles by row groups (y at most 65535). every_column: x covers every vector of a
// row once (channel_inner_forward_kernel), else at most kMaxGrid blocks (grid-stride).
inline dim3 gated_grid(GatedShape& s, int64_t vec, bool every_column = false) {
  const int64_t hv = s.h / vec;
  int tx_log2 = 5;
  while (tx_log2 < 8 && (int64_t{1} << tx_log2) < hv) ++tx_log2;
  s.tx_log2 = tx_log2;
  const int64_t TX = int64_t{1} << tx_log2, TY = kThreads / TX;
  const int64_t gx = every_column ? ceil_div(hv, TX) : grid_cap(ceil_div(hv, TX));
  TORCH_CHECK(gx <= INT_MAX, "glo_kernels: a last dim of ", s.h, " elements is too long for these kernels");
  const int64_t gy = std::min<int64_t>(65535, std::max<int64_t>(1, std::min(ceil_div(s.rows, TY), kMaxGrid / gx)));
  return dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Ops with learned per-channel parameters (PReLU: 1, PELU: 2). The functor's kParams parameter tensors ([C] each,
// C = 1 when shared) travel to channel_consts_kernel by value as an array of pointers; it turns each channel's raw
// values into the functor's kConsts constants (F::prepare: PELU's a/b, 1/b and a, in opmath, each correctly rounded)
// once per call, into consts [kConsts, C]. The element kernels then only load constants (no division anywhere in
// them): an element of channel c gets k[j] = consts[j * C + c].
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, int NP>
struct ChannelParams {
  const scalar_t* p[NP];  // NP pointers to [C]
};

template <typename scalar_t, typename F>
__global__ void __launch_bounds__(kThreads) channel_consts_kernel(
    ChannelParams<scalar_t, F::kParams> params,       // kParams x [C]
    at::opmath_type<scalar_t>* __restrict__ consts,   // [kConsts, C]
    int64_t C,
    F f) {
  using T = at::opmath_type<scalar_t>;
  for (int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; c < C;
       c += static_cast<int64_t>(gridDim.x) * kThreads) {
    T p[F::kParams], k[F::kConsts];
#pragma unroll
    for (int j = 0; j < F::kParams; ++j) p[j] = static_cast<T>(params.p[j][c]);
    f.prepare(p, k);
#pragma unroll
    for (int j = 0; j < F::kConsts; ++j) consts[j * C + c] = k[j];
  }
}

// The constants of channel c.
template <int NK, typename T>
__device__ __forceinline__ void load_consts(const T* __restrict__ consts, int64_t C, int64_t c, T (&kc)[NK]) {
#pragma unroll
  for (int j = 0; j < NK; ++j) kc[j] = consts[j * C + c];
}

// ---------------------------------------------------------------------------------------------------------------
// Channel forward: y = f.forward(x, p(c)), c = (i / S) % C for element i of x seen as [N, C, S].
//
// Mapping. Thread-level grid-stride loops.
//  1. Vector part (nvec = n / VEC when x and y are 16-byte aligned, else 0): thread handles elements v*VEC + [0, VEC);
//     the channel of the first element is found by FastDiv (multiply-shift). kMode (ChannelMode):
//     kRowAligned (C == 1 or S % VEC == 0): the vector lies in one channel's row, its constants are loaded once.
//     kStepping (the rest): the next elements' channels are found by stepping (s, c) along the row.
//  2. Scalar tail, elements [nvec * VEC, n): one element per thread and step.
// (Channels innermost, S == 1 and C > 1, go to channel_inner_forward_kernel below.)
// ---------------------------------------------------------------------------------------------------------------
enum ChannelMode : int { kStepping = 0, kRowAligned = 1 };

template <typename scalar_t, typename F, int kMode>
__global__ void __launch_bounds__(kThreads) channel_forward_kernel(
    const scalar_t* __restrict__ x,                 // [N, C, S] = [n]
    const at::opmath_type<scalar_t>* __restrict__ consts,  // [kConsts, C] (channel_consts_kernel)
    scalar_t* __restrict__ y,                       // [n]
    int64_t n, int64_t C, int64_t S,
    int64_t nvec,                                   // vectors of VEC elements done by the vector part (0 if unaligned)
    FastDiv div_s, FastDiv div_c,                   // by S and by C
    F f) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  constexpr int NK = F::kConsts;
  vec_loop<VEC, kThreads>(n, nvec, [&](int64_t i) {
    int64_t c = 0, s = 0;
    if (C > 1) {
      const int64_t row = div_s.div(i);  // n * C + c
      s = i - row * S;
      c = row - div_c.div(row) * C;
    }
    const V xv = *reinterpret_cast<const V*>(x + i);
    V yv;
    if constexpr (kMode == kRowAligned) {
      T pc[NK];
      load_consts(consts, C, c, pc);
#pragma unroll
      for (int j = 0; j < VEC; ++j) yv.val[j] = static_cast<scalar_t>(f.forward(static_cast<T>(xv.val[j]), pc));
    } else {
      // Each element's channel by stepping (s, c) along the row, then the element math without branches.
      int64_t cj[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        cj[j] = c;
        if (C > 1 && ++s == S) {  // the next element starts the next channel's row
          s = 0;
          c = c + 1 == C ? 0 : c + 1;
        }
      }
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        T pc[NK];
        load_consts(consts, C, cj[j], pc);
        yv.val[j] = static_cast<scalar_t>(f.forward(static_cast<T>(xv.val[j]), pc));
      }
    }
    store_vec(y + i, yv);
  }, [&](int64_t i) {
    int64_t c = 0;
    if (C > 1) {
      const int64_t row = div_s.div(i);
      c = row - div_c.div(row) * C;
    }
    T pc[NK];
    load_consts(consts, C, c, pc);
    y[i] = static_cast<scalar_t>(f.forward(static_cast<T>(x[i]), pc));
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Channel forward with the channels innermost (S == 1, C > 1: channels_last, or a bias over the last dim): x as
// [rows = N, C]. Blocks of [kThreads / TX rows, TX columns] (gated_grid(every_column)); the grid's x covers every
// vector of a row once: thread (ty, tx) of block (bx, by) owns the vector v = bx * TX + tx, elements (channels) c = v*VEC +
// [0, VEC), loads their constants once, and walks the rows by * TY + ty (+ multiples of gridDim.y * TY): the channel
// is the column, no division, no constant reloaded. VEC = 16 / sizeof(scalar_t) when C % VEC == 0 and x and y are
// 16-byte aligned, else 1; a vector's constants are then whole 16-byte vectors too (consts is 16-byte aligned, C and
// c multiples of VEC).
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, typename F, int VEC>
__global__ void __launch_bounds__(kThreads) channel_inner_forward_kernel(
    const scalar_t* __restrict__ x,                        // [rows, C]
    const at::opmath_type<scalar_t>* __restrict__ consts,  // [kConsts, C]
    scalar_t* __restrict__ y,                              // [rows, C]
    GatedShape s,                                          // rows, h = C; gridDim.x * TX >= C / VEC
    F f) {
  using T = at::opmath_type<scalar_t>;
  using V = VecN<scalar_t, VEC>;
  constexpr int NK = F::kConsts;
  constexpr int KV = VEC * sizeof(T) >= 16 ? 16 / static_cast<int>(sizeof(T)) : 1;  // constants per load
  using KVec = VecN<T, KV>;
  const int64_t TX = int64_t{1} << s.tx_log2, TY = kThreads >> s.tx_log2;
  const int64_t C = s.h;
  const int64_t v = blockIdx.x * TX + (threadIdx.x & (TX - 1));
  if (v >= C / VEC) return;  // (no collective operations in this kernel)
  const int64_t c = v * VEC;
  T pcs[NK][VEC];
#pragma unroll
  for (int k = 0; k < NK; ++k) {
#pragma unroll
    for (int j = 0; j < VEC; j += KV) {
      const KVec kv = *reinterpret_cast<const KVec*>(consts + k * C + c + j);
#pragma unroll
      for (int q = 0; q < KV; ++q) pcs[k][j + q] = kv.val[q];
    }
  }
  for (int64_t r = blockIdx.y * TY + (threadIdx.x >> s.tx_log2); r < s.rows; r += gridDim.y * TY) {
    const V xv = *reinterpret_cast<const V*>(x + r * C + c);
    V yv;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      T pc[NK];
#pragma unroll
      for (int k = 0; k < NK; ++k) pc[k] = pcs[k][j];
      yv.val[j] = static_cast<scalar_t>(f.forward(static_cast<T>(xv.val[j]), pc));
    }
    store_vec(y + r * C + c, yv);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Channel backward, "plane" mode (inner S < kPlaneMaxInner). The input is seen as NR super-rows of W contiguous
// elements (W = R * C * S: R whole outer rows; the last super-row may end early at numel). Position q in [0, W) has
// the fixed channel (q % (C*S)) / S. Block b handles tile t = b / blocks_per_tile (super-rows [t*TN, t*TN + TN)) and
// the kV positions q = ((b % blocks_per_tile) * kThreads + threadIdx.x) * kV + [0, kV); the thread loops over its
// tile's super-rows, touching elements sr*W + q (consecutive threads -> consecutive elements: coalesced), writes dx
// and, for each parameter k and position q, stores the sum of the element terms dp[k] over those elements, in
// increasing order of super-row, to partial[k, t, q]. Every slot of partial [NP, NT, W] is written (positions whose
// rows all lie past numel store 0).
// kV = 1: scalar accesses. kV = VEC (W % VEC == 0 and x, grad, dx 16-byte aligned): one 128-bit access per tensor
// and super-row; a vector that straddles numel (only in the tensor's last super-row) falls back to guarded scalar
// accesses. Each position's sum has the same terms in the same order for both kV, so partial, and the parameter
// gradients, are bitwise the same either way.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, typename F, int kV>
// __maxnreg__(80) instead of __launch_bounds__(kThreads): under the launch bound ptxas held the kernel to 64
// registers and spilled (float16 PELU, kV = 8); 80 x kThreads registers still fit 3 blocks per SM.
__global__ void __maxnreg__(80) channel_backward_plane_kernel(
    const scalar_t* __restrict__ grad,                    // [numel]
    const scalar_t* __restrict__ x,                       // [numel] = [N, C, S]
    const at::opmath_type<scalar_t>* __restrict__ consts,  // [kConsts, C] (channel_consts_kernel)
    scalar_t* __restrict__ dx,                            // [numel]
    at::opmath_type<scalar_t>* __restrict__ partial,      // [kParams, NT, W]
    int64_t numel, int64_t C, int64_t S, int64_t W, int64_t NR, int64_t TN, int64_t blocks_per_tile,
    int64_t M,                                            // NT * W: stride of parameter k in partial
    FastDiv div_cs, FastDiv div_s,                        // by C * S and by S
    F f) {
  using T = at::opmath_type<scalar_t>;
  using acc_t = T;
  constexpr int NP = F::kParams;
  constexpr int NK = F::kConsts;
  static_assert(kV == 1 || kV == Vec16<scalar_t>::kSize, "kV: scalar or one 16-byte vector");
  struct alignas(kV * sizeof(scalar_t)) VecT {
    scalar_t val[kV];
  };
  // 32-bit division (inline, no 64-bit division call): the host checks NT * blocks_per_tile <= INT_MAX.
  const int64_t tile = blockIdx.x / static_cast<uint32_t>(blocks_per_tile);
  const int64_t q0 = ((static_cast<int64_t>(blockIdx.x) - tile * blocks_per_tile) * kThreads + threadIdx.x) * kV;
  if (q0 >= W) return;  // W % kV == 0: the thread's kV positions all lie in [0, W). No collectives in this kernel.
  T pc[kV][NK];
  {
    int64_t s = q0 - div_cs.div(q0) * (C * S);
    int64_t c = div_s.div(s);
    s -= c * S;
#pragma unroll
    for (int j = 0; j < kV; ++j) {
      load_consts(consts, C, c, pc[j]);
      if (++s == S) {
        s = 0;
        if (++c == C) c = 0;
      }
    }
  }
  const int64_t sr0 = tile * TN;
  const int64_t e_end = imin(numel, imin(NR, sr0 + TN) * W);  // element bound of this tile (and of the tensor)
  acc_t acc[kV][NP];
#pragma unroll
  for (int j = 0; j < kV; ++j) {
#pragma unroll
    for (int k = 0; k < NP; ++k) acc[j][k] = acc_t(0);
  }
  // Super-rows in flight per step. With vectors, PELU keeps 2 x kV accumulators and 2 x kV constants live: a second
  // super-row in flight made ptxas spill (64 registers, sm_90), so one; PReLU takes two.
  constexpr int kUnroll = kV == 1 ? 4 : (NP > 1 ? 1 : 2);
  int64_t e = sr0 * W + q0;
  for (; e + (kUnroll - 1) * W + kV <= e_end; e += kUnroll * W) {
    VecT xs[kUnroll], gs[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      xs[u] = *reinterpret_cast<const VecT*>(x + e + u * W);
      gs[u] = *reinterpret_cast<const VecT*>(grad + e + u * W);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      VecT out;
#pragma unroll
      for (int j = 0; j < kV; ++j) {
        T dp[NP];
        out.val[j] =
            static_cast<scalar_t>(f.backward(static_cast<T>(xs[u].val[j]), static_cast<T>(gs[u].val[j]), pc[j], dp));
#pragma unroll
        for (int k = 0; k < NP; ++k) acc[j][k] += static_cast<acc_t>(dp[k]);
      }
      store_vec_pinned(dx + e + u * W, out);
    }
  }
  for (; e + kV <= e_end; e += W) {
    const VecT xv = *reinterpret_cast<const VecT*>(x + e);
    const VecT gv = *reinterpret_cast<const VecT*>(grad + e);
    VecT out;
#pragma unroll
    for (int j = 0; j < kV; ++j) {
      T dp[NP];
      out.val[j] = static_cast<scalar_t>(f.backward(static_cast<T>(xv.val[j]), static_cast<T>(gv.val[j]), pc[j], dp));
#pragma unroll
      for (int k = 0; k < NP; ++k) acc[j][k] += static_cast<acc_t>(dp[k]);
    }
    store_vec_pinned(dx + e, out);
  }
  if (kV > 1 && e < e_end) {  // the tensor's last super-row ends inside this vector (e + W > e_end: the last step)
#pragma unroll
    for (int j = 0; j < kV; ++j) {
      if (e + j < e_end) {
        T dp[NP];
        dx[e + j] = static_cast<scalar_t>(f.backward(static_cast<T>(x[e + j]), static_cast<T>(grad[e + j]), pc[j], dp));
#pragma unroll
        for (int k = 0; k < NP; ++k) acc[j][k] += static_cast<acc_t>(dp[k]);
      }
    }
  }
  // tile and q0 again, from fresh reads of the block and thread index (volatile asm: not merged with the reads
  // above), so that they need not stay live across the loops: at 64 registers ptxas spilled one of them (float16
  // PELU). Same values.
  uint32_t bx, tx;
  asm volatile("mov.u32 %0, %%ctaid.x;" : "=r"(bx));
  asm volatile("mov.u32 %0, %%tid.x;" : "=r"(tx));
  const int64_t tile_end = bx / static_cast<uint32_t>(blocks_per_tile);
  const int64_t q_end = ((static_cast<int64_t>(bx) - tile_end * blocks_per_tile) * kThreads + tx) * kV;
  acc_t* out = partial + tile_end * W + q_end;
#pragma unroll
  for (int k = 0; k < NP; ++k) {
#pragma unroll
    for (int j = 0; j < kV; ++j) out[k * M + j] = acc[j][k];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Channel backward, "rows" mode (inner S >= kPlaneMaxInner). Each (n, c) row of S contiguous elements is cut into NCH
// chunks of CH elements; work item b = row * NCH + k (block-level grid-stride loop, uniform across the block) is
// chunk k of row `row` (channel row % C). Thread t sums the terms of elements start + t + j * kThreads, j = 0, 1, ...
// in increasing order (the summation order that defines the result), then one block_sum per parameter (fixed
// order, uniform across the block) gives partial[k, b]: partial is [NP, N, C, NCH], fully written.
// kV = 1: thread t also loads and stores those elements (scalar, coalesced).
// kV = VEC (S % VEC == 0, CH % (kThreads * VEC) == 0, x, grad, dx 16-byte aligned): the chunk is walked in sub-tiles
// of kThreads * VEC elements; thread t loads / stores the 16-byte vector at sub-tile offset t * VEC (128-bit
// accesses), writes its elements' terms to shared memory, and after a barrier adds the terms at offsets
// t + m * kThreads, m = 0 .. VEC-1: the same elements (start + t + j * kThreads, j = sub-tile * VEC + m) in the same
// order as kV = 1. Past the chunk's end a thread adds +0.0, which leaves every sum unchanged (acc starts at +0.0
// and a round-to-nearest sum is never -0.0 unless both addends are, so acc + 0.0 == acc bitwise, NaN and inf
// included): the partials, and the parameter gradients, are bitwise the same for both kV.
// ---------------------------------------------------------------------------------------------------------------
// kV consecutive terms (kV * sizeof(acc_t) is a multiple of 16 bytes) to shared memory as 16-byte stores: a warp
// writes 32 consecutive 16-byte pieces per store, without bank conflicts (scalar stores at stride kV would conflict
// kV-way).
template <int kV, typename acc_t>
__device__ __forceinline__ void store_terms(acc_t* dst, const acc_t (&t)[kV]) {
  static_assert(kV * sizeof(acc_t) % 16 == 0, "whole 16-byte pieces");
#pragma unroll
  for (int h = 0; h < static_cast<int>(kV * sizeof(acc_t) / 16); ++h) {
    uint4 u;
    __builtin_memcpy(&u, reinterpret_cast<const char*>(t) + 16 * h, 16);
    reinterpret_cast<uint4*>(dst)[h] = u;
  }
}

template <typename scalar_t, typename F, int kV>
__global__ void __launch_bounds__(kThreads) channel_backward_rows_kernel(
    const scalar_t* __restrict__ grad,                    // [numel]
    const scalar_t* __restrict__ x,                       // [numel] = [N, C, S]
    const at::opmath_type<scalar_t>* __restrict__ consts,  // [kConsts, C] (channel_consts_kernel)
    scalar_t* __restrict__ dx,                            // [numel]
    at::opmath_type<scalar_t>* __restrict__ partial,      // [kParams, N, C, NCH]
    int64_t rows, int64_t C, int64_t S, int64_t CH, int64_t NCH,
    int64_t M,                                            // rows * NCH: stride of parameter k in partial
    F f) {
  using T = at::opmath_type<scalar_t>;
  using acc_t = T;
  using V = Vec16<scalar_t>;
  constexpr int NP = F::kParams;
  constexpr int NK = F::kConsts;
  static_assert(kV == 1 || kV == V::kSize, "kV: scalar or one 16-byte vector");
  __shared__ acc_t smem[kWarpsPerBlock];
  __shared__ alignas(16) acc_t terms[kV == 1 ? 1 : NP][kV == 1 ? 1 : kThreads * kV];
  const int64_t items = rows * NCH;
  for (int64_t b = blockIdx.x; b < items; b += gridDim.x) {
    const int64_t row = idiv(b, NCH);
    const int64_t chunk = b - row * NCH;
    T pc[NK];
    load_consts(consts, C, imod(row, C), pc);
    const int64_t begin = row * S + chunk * CH;
    const int64_t end = row * S + imin(S, (chunk + 1) * CH);
    acc_t acc[NP];
#pragma unroll
    for (int k = 0; k < NP; ++k) acc[k] = acc_t(0);
    if constexpr (kV == 1) {
      int64_t i = begin + threadIdx.x;
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
    } else {
      // Uniform across the block: every thread runs every sub-tile (the barriers see the whole block).
      for (int64_t sub = begin; sub < end; sub += kThreads * kV) {
        const int64_t i = sub + threadIdx.x * kV;
        if (i < end) {  // end - sub is a multiple of kV: the whole vector is in the chunk
          const V xv = *reinterpret_cast<const V*>(x + i);
          const V gv = *reinterpret_cast<const V*>(grad + i);
          V out;
          acc_t tk[NP][kV];
#pragma unroll
          for (int j = 0; j < kV; ++j) {
            T dp[NP];
            out.val[j] = static_cast<scalar_t>(f.backward(static_cast<T>(xv.val[j]), static_cast<T>(gv.val[j]), pc, dp));
#pragma unroll
            for (int k = 0; k < NP; ++k) tk[k][j] = static_cast<acc_t>(dp[k]);
          }
          store_vec(dx + i, out);
#pragma unroll
          for (int k = 0; k < NP; ++k) store_terms(&terms[k][threadIdx.x * kV], tk[k]);
        } else {
          acc_t tk[kV];
#pragma unroll
          for (int j = 0; j < kV; ++j) tk[j] = acc_t(0);
#pragma unroll
          for (int k = 0; k < NP; ++k) store_terms(&terms[k][threadIdx.x * kV], tk);
        }
        __syncthreads();
#pragma unroll
        for (int m = 0; m < kV; ++m) {
#pragma unroll
          for (int k = 0; k < NP; ++k) acc[k] += terms[k][threadIdx.x + m * kThreads];
        }
        __syncthreads();  // the next sub-tile overwrites terms
      }
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
        const auto step = [&] {
          o += step_o;
          j += step_j;
          if (j >= K) {
            j -= K;
            ++o;
          }
        };
        // kBatch loads issued before their additions (kept loads in flight); the additions stay in order of t.
        constexpr int kBatch = 8;
        int64_t t = rank;
        for (; t + (kBatch - 1) * kTeam < terms; t += kBatch * kTeam) {
          acc_t v[kBatch];
#pragma unroll
          for (int u = 0; u < kBatch; ++u) {
            v[u] = p[o * C * K + j];
            step();
          }
#pragma unroll
          for (int u = 0; u < kBatch; ++u) sum += v[u];
        }
        for (; t < terms; t += kTeam) {
          sum += p[o * C * K + j];
          step();
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

// VEC (= 16 / sizeof(scalar_t): 2, 4 or 8) uint8 maxout indices as one aligned access of VEC bytes.
template <int VEC> struct IdxVec;
template <> struct alignas(2) IdxVec<2> { uint8_t val[2]; };
template <> struct alignas(4) IdxVec<4> { uint8_t val[4]; };
template <> struct alignas(8) IdxVec<8> { uint8_t val[8]; };

// ---------------------------------------------------------------------------------------------------------------
// Maxout forward: x seen as [outer, G * P, S] (G groups of P pieces), y and indices as [outer, G, S].
//
// Mapping. Thread-level grid-stride loops over the output elements e = r*S + s, r = o*G + j (consecutive threads ->
// consecutive s: coalesced loads of each piece and coalesced stores). The thread reads the P pieces
// x[(r*P + p)*S + s], p = 0 .. P-1, keeps the first maximal one (maxout_better, compared in opmath), and stores that
// element unchanged to y[e] and p to indices[e].
//  1. Vector part (nvec = n / VEC when S % VEC == 0 and x, y, indices are 16-byte aligned, else 0): thread handles
//     output vector v, elements e = v*VEC + [0, VEC), all of the same r = v / (S / VEC) (S % VEC == 0): 128-bit
//     loads of each piece, a 128-bit store of y and one VEC-byte store of the indices.
//  2. Scalar tail, elements [nvec * VEC, n): r = e / S.
// Divisions by S / VEC and S are FastDiv (multiply-shift).
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) maxout_forward_kernel(
    const scalar_t* __restrict__ x,  // [outer, G * P, S]
    scalar_t* __restrict__ y,        // [outer, G, S] = [n]
    uint8_t* __restrict__ indices,   // [outer, G, S], or nullptr when the indices are not saved
    int64_t n, int64_t P, int64_t S,
    int64_t nvec,                    // vectors of VEC output elements done by the vector part (0 if not eligible)
    FastDiv div_sv,                  // by S / VEC (vector part; unused when nvec == 0)
    FastDiv div_s) {                 // by S
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t v = tid; v < nvec; v += stride) {
    const int64_t e = v * VEC;
    const int64_t r = div_sv.div(v);
    const int64_t s = e - r * S;
    const scalar_t* xr = x + r * P * S + s;
    V best_raw = *reinterpret_cast<const V*>(xr);
    T best[VEC];
    uint32_t arg[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      best[j] = static_cast<T>(best_raw.val[j]);
      arg[j] = 0;
    }
    for (int64_t p = 1; p < P; ++p) {
      const V raw = *reinterpret_cast<const V*>(xr + p * S);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const T val = static_cast<T>(raw.val[j]);
        const bool better = maxout_better(val, best[j]);
        best[j] = better ? val : best[j];
        best_raw.val[j] = better ? raw.val[j] : best_raw.val[j];
        arg[j] = better ? static_cast<uint32_t>(p) : arg[j];
      }
    }
    store_vec(y + e, best_raw);
    if (indices != nullptr) {  // the VEC index bytes packed into one VEC-byte store (p < 256)
      uint64_t packed = 0;
#pragma unroll
      for (int j = 0; j < VEC; ++j) packed |= static_cast<uint64_t>(arg[j]) << (8 * j);
      IdxVec<VEC> out;
      __builtin_memcpy(&out, &packed, VEC);  // little-endian: byte j is arg[j]
      *reinterpret_cast<IdxVec<VEC>*>(indices + e) = out;
    }
  }
  for (int64_t e = nvec * VEC + tid; e < n; e += stride) {
    const int64_t r = div_s.div(e);  // o * G + j
    const int64_t s = e - r * S;
    const scalar_t* xr = x + r * P * S + s;
    scalar_t best_raw = xr[0];
    T best = static_cast<T>(best_raw);
    int arg = 0;
#pragma unroll 4
    for (int64_t p = 1; p < P; ++p) {
      const scalar_t raw = xr[p * S];
      const T val = static_cast<T>(raw);
      if (maxout_better(val, best)) {
        best = val;
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
// Mapping. One pass over grad: thread-level grid-stride loops over the grad elements e = r*S + s (r = o*G + j); the
// thread reads grad[e] and indices[e] once and writes all P elements dx[(r*P + p)*S + s], p = 0 .. P-1
// (consecutive threads -> consecutive s: coalesced).
//  1. Vector part (nvec = ngrad / VEC when S % VEC == 0 and grad, dx, indices are 16-byte aligned, else 0): thread
//     handles grad vector v, elements v*VEC + [0, VEC), all of the same r = v / (S / VEC): a 128-bit load of grad, a
//     VEC-byte load of indices, P 128-bit stores of dx.
//  2. Scalar tail, elements [nvec * VEC, ngrad): r = e / S.
// Divisions by S / VEC and S are FastDiv (multiply-shift).
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) maxout_backward_kernel(
    const scalar_t* __restrict__ grad,    // [outer, G, S] = [ngrad]
    const uint8_t* __restrict__ indices,  // [outer, G, S]
    scalar_t* __restrict__ dx,            // [outer, G * P, S]
    int64_t ngrad, int64_t P, int64_t S,
    int64_t nvec,                         // vectors of VEC grad elements done by the vector part (0 if not eligible)
    FastDiv div_sv,                       // by S / VEC (vector part; unused when nvec == 0)
    FastDiv div_s) {                      // by S
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const scalar_t zero(0);
  for (int64_t v = tid; v < nvec; v += stride) {
    const int64_t e = v * VEC;
    const int64_t r = div_sv.div(v);
    const int64_t s = e - r * S;
    const V g = *reinterpret_cast<const V*>(grad + e);
    const IdxVec<VEC> idx = *reinterpret_cast<const IdxVec<VEC>*>(indices + e);
    scalar_t* out = dx + r * P * S + s;
    for (int64_t p = 0; p < P; ++p) {
      V o;
#pragma unroll
      for (int j = 0; j < VEC; ++j) o.val[j] = static_cast<int64_t>(idx.val[j]) == p ? g.val[j] : zero;
      store_vec(out + p * S, o);
    }
  }
  for (int64_t e = nvec * VEC + tid; e < ngrad; e += stride) {
    const int64_t r = div_s.div(e);
    const int64_t s = e - r * S;
    const scalar_t g = grad[e];
    const int64_t win = indices[e];
    scalar_t* out = dx + r * P * S + s;
    for (int64_t p = 0; p < P; ++p) out[p * S] = win == p ? g : zero;
  }
}

// The functor the kernels instantiate for storage type scalar_t: the factory's (computing in opmath), or for 16-bit
// storage its fast16 variant (cheaper device expm1 and reciprocal, accurate far beyond a 16-bit rounding; see
// "Device math for 16-bit storage" in glo/activations.h).
template <typename scalar_t, class Factory>
auto device_functor(const Factory& factory) {
  const auto f = factory(at::opmath_type<scalar_t>{});
  if constexpr (std::is_same_v<scalar_t, at::Half> || std::is_same_v<scalar_t, at::BFloat16>) {
    return fast16_variant(f);
  } else {
    return f;
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
      C10_CUDA_KERNEL_LAUNCH_CHECK();  // the kernel also zeroes the mask's padding words
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
      const VecLaunch l = vec_launch<VEC, kThreads>(n, gp, dp);
      mask_backward_kernel<scalar_t>
          <<<l.grid, kThreads, 0, stream>>>(gp, mask.const_data_ptr<int32_t>(), dp, n, l.nvec, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  template <class Factory>
  static void unary_forward(const Tensor& x, const Tensor& y, Factory factory) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_unary_forward_cuda", [&] {
      const auto f = device_functor<scalar_t>(factory);
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      const int64_t n = x.numel();
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      const VecLaunch l = vec_launch<VEC, kThreads>(n, xp, yp);
      unary_forward_kernel<scalar_t><<<l.grid, kThreads, 0, stream>>>(xp, yp, n, l.nvec, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  template <class Factory>
  static void unary_backward(const Tensor& grad, const Tensor& saved, const Tensor& dx, Factory factory) {
    const c10::cuda::CUDAGuard guard(grad.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "glo_unary_backward_cuda", [&] {
      const auto f = device_functor<scalar_t>(factory);
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      const int64_t n = grad.numel();
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const scalar_t* sp = saved.const_data_ptr<scalar_t>();
      scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
      const VecLaunch l = vec_launch<VEC, kThreads>(n, gp, sp, dp);
      unary_backward_kernel<scalar_t><<<l.grid, kThreads, 0, stream>>>(gp, sp, dp, n, l.nvec, f);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  template <typename scalar_t, size_t NP>
  static ChannelParams<scalar_t, static_cast<int>(NP)> channel_params(const std::array<Tensor, NP>& params) {
    ChannelParams<scalar_t, static_cast<int>(NP)> out{};
    for (size_t k = 0; k < NP; ++k) out.p[k] = params[k].template const_data_ptr<scalar_t>();
    return out;
  }

  // F's per-channel constants [F::kConsts, C] in opmath, made on the device by channel_consts_kernel.
  template <typename scalar_t, class F, size_t NP>
  static Tensor channel_consts(const std::array<Tensor, NP>& params, int64_t C, const F& f, const Tensor& like,
                               cudaStream_t stream) {
    using T = at::opmath_type<scalar_t>;
    Tensor consts = at::empty({F::kConsts * C}, like.options().dtype(c10::CppTypeToScalarType<T>::value));
    channel_consts_kernel<scalar_t, F><<<grid_for(C, kThreads), kThreads, 0, stream>>>(
        channel_params<scalar_t>(params), consts.mutable_data_ptr<T>(), C, f);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return consts;
  }

  template <size_t NP, class Factory>
  static void channel_forward(const Tensor& x, const std::array<Tensor, NP>& params, const Tensor& y,
                              ChannelGeometry g, Factory factory) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_channel_forward_cuda", [&] {
      using F = decltype(device_functor<scalar_t>(factory));
      static_assert(F::kParams == static_cast<int>(NP), "parameter count");
      const F f = device_functor<scalar_t>(factory);
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      const int64_t n = x.numel();
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      const VecLaunch l = vec_launch<VEC, kThreads>(n, xp, yp);
      const int64_t nvec = l.nvec;
      const unsigned grid = l.grid;
      const Tensor consts = channel_consts<scalar_t>(params, g.channels, f, x, stream);
      const auto* kp = consts.const_data_ptr<at::opmath_type<scalar_t>>();
      const FastDiv div_s(g.inner), div_c(g.channels);
      if (g.inner == 1 && g.channels > 1) {
        GatedShape s{g.outer, g.channels, 0, 0, 0, 0, 0};
        if (g.channels % VEC == 0 && aligned16(xp) && aligned16(yp)) {
          const dim3 grid2 = gated_grid(s, VEC, true);
          channel_inner_forward_kernel<scalar_t, F, VEC><<<grid2, kThreads, 0, stream>>>(xp, kp, yp, s, f);
        } else {
          const dim3 grid2 = gated_grid(s, 1, true);
          channel_inner_forward_kernel<scalar_t, F, 1><<<grid2, kThreads, 0, stream>>>(xp, kp, yp, s, f);
        }
      } else if (g.channels == 1 || g.inner % VEC == 0) {
        channel_forward_kernel<scalar_t, F, kRowAligned>
            <<<grid, kThreads, 0, stream>>>(xp, kp, yp, n, g.channels, g.inner, nvec, div_s, div_c, f);
      } else if constexpr (requires { F::kChannelsInnermost; }) {
        TORCH_INTERNAL_ASSERT(false, "glo_kernels.channel_forward: a bias geometry with inner > 1");
      } else {  // (not instantiated for a bias, whose geometry never needs it)
        channel_forward_kernel<scalar_t, F, kStepping>
            <<<grid, kThreads, 0, stream>>>(xp, kp, yp, n, g.channels, g.inner, nvec, div_s, div_c, f);
      }
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
      using F = decltype(device_functor<scalar_t>(factory));
      static_assert(F::kParams == static_cast<int>(NP), "parameter count");
      const F f = device_functor<scalar_t>(factory);
      const int64_t numel = x.numel();
      const int64_t N = g.outer, C = g.channels, S = g.inner;
      TORCH_INTERNAL_ASSERT(N * C * S == numel, "glo_kernels.channel_backward: geometry does not match numel");
      for (size_t k = 0; k < NP; ++k) {
        TORCH_INTERNAL_ASSERT(params[k].numel() == C && dparams[k].numel() == C,
                              "glo_kernels.channel_backward: parameter sizes do not match the geometry");
      }
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      const Tensor consts = channel_consts<scalar_t>(params, C, f, x, stream);
      const acc_t* pp = consts.const_data_ptr<acc_t>();
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
        constexpr int64_t VEC = Vec16<scalar_t>::kSize;
        const bool vec = W % VEC == 0 && aligned16(gp) && aligned16(xp) && aligned16(dxp);
        const int64_t per_block = vec ? kThreads * VEC : kThreads;
        const int64_t blocks_per_tile = ceil_div(W, per_block);
        TORCH_CHECK(NT * blocks_per_tile <= INT_MAX, "glo_kernels.channel_backward: input too large (", numel,
                    " elements)");
        M = NT * W;
        partial = at::empty({np * M}, acc_options);
        const unsigned grid = static_cast<unsigned>(NT * blocks_per_tile);
        if (vec) {
          channel_backward_plane_kernel<scalar_t, F, VEC><<<grid, kThreads, 0, stream>>>(
              gp, xp, pp, dxp, partial.mutable_data_ptr<acc_t>(), numel, C, S, W, NR, TN, blocks_per_tile, M,
              FastDiv(C * S), FastDiv(S), f);
        } else {
          channel_backward_plane_kernel<scalar_t, F, 1><<<grid, kThreads, 0, stream>>>(
              gp, xp, pp, dxp, partial.mutable_data_ptr<acc_t>(), numel, C, S, W, NR, TN, blocks_per_tile, M,
              FastDiv(C * S), FastDiv(S), f);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        O = NT * R;
        K = S;
      } else {
        constexpr int64_t VEC = Vec16<scalar_t>::kSize;
        static_assert(kRowChunk % (kThreads * 8) == 0, "row chunks are whole vector sub-tiles");
        const bool vec = S % VEC == 0 && aligned16(gp) && aligned16(xp) && aligned16(dxp);
        const int64_t rows = N * C;
        const int64_t NCH = ceil_div(S, kRowChunk);
        M = rows * NCH;
        partial = at::empty({np * M}, acc_options);
        if (vec) {
          channel_backward_rows_kernel<scalar_t, F, VEC><<<grid_for(M, 1), kThreads, 0, stream>>>(
              gp, xp, pp, dxp, partial.mutable_data_ptr<acc_t>(), rows, C, S, kRowChunk, NCH, M, f);
        } else {
          channel_backward_rows_kernel<scalar_t, F, 1><<<grid_for(M, 1), kThreads, 0, stream>>>(
              gp, xp, pp, dxp, partial.mutable_data_ptr<acc_t>(), rows, C, S, kRowChunk, NCH, M, f);
        }
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

  template <class Factory>
  static void gated_forward(const Tensor& a, const Tensor& b, const Tensor& y, Factory factory) {
    const c10::cuda::CUDAGuard guard(a.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "glo_gated_forward_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      const auto g = gated<T>(device_functor<scalar_t>(factory));
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      GatedShape s{y.size(0), y.size(1), a.stride(0), b.stride(0), 0, 0, 0};
      const scalar_t* ap = a.const_data_ptr<scalar_t>();
      const scalar_t* bp = b.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      const bool vec = (s.h % VEC | s.sa % VEC | s.sb % VEC) == 0 && aligned16(ap) && aligned16(bp) && aligned16(yp);
      if (vec) {
        const dim3 grid = gated_grid(s, VEC);
        gated_forward_kernel<scalar_t, VEC><<<grid, kThreads, 0, stream>>>(ap, bp, yp, s, g);
      } else {
        const dim3 grid = gated_grid(s, 1);
        gated_forward_kernel<scalar_t, 1><<<grid, kThreads, 0, stream>>>(ap, bp, yp, s, g);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  template <class Factory>
  static void gated_backward(const Tensor& grad, const Tensor& a, const Tensor& b, const Tensor& da, const Tensor& db,
                             Factory factory) {
    const c10::cuda::CUDAGuard guard(a.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "glo_gated_backward_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      const auto g = gated<T>(device_functor<scalar_t>(factory));
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      GatedShape s{grad.size(0), grad.size(1), a.stride(0), b.stride(0), da.stride(0), db.stride(0), 0};
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const scalar_t* ap = a.const_data_ptr<scalar_t>();
      const scalar_t* bp = b.const_data_ptr<scalar_t>();
      scalar_t* dap = da.mutable_data_ptr<scalar_t>();
      scalar_t* dbp = db.mutable_data_ptr<scalar_t>();
      const bool vec = (s.h % VEC | s.sa % VEC | s.sb % VEC | s.sda % VEC | s.sdb % VEC) == 0 && aligned16(gp) &&
                       aligned16(ap) && aligned16(bp) && aligned16(dap) && aligned16(dbp);
      if (vec) {
        const dim3 grid = gated_grid(s, VEC);
        gated_backward_kernel<scalar_t, VEC><<<grid, kThreads, 0, stream>>>(gp, ap, bp, dap, dbp, s, g);
      } else {
        const dim3 grid = gated_grid(s, 1);
        gated_backward_kernel<scalar_t, 1><<<grid, kThreads, 0, stream>>>(gp, ap, bp, dap, dbp, s, g);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static void maxout_forward(const Tensor& x, const Tensor& y, const Tensor& indices, MaxoutGeometry g) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_maxout_forward_cuda", [&] {
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      const int64_t n = y.numel();
      TORCH_INTERNAL_ASSERT(n == g.outer * g.groups * g.inner && x.numel() == n * g.pieces,
                            "glo_kernels.maxout: geometry does not match numel");
      TORCH_INTERNAL_ASSERT(indices.numel() == 0 || indices.numel() == n, "glo_kernels.maxout: bad indices size");
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      uint8_t* ip = indices.numel() > 0 ? indices.mutable_data_ptr<uint8_t>() : nullptr;
      const bool vec = g.inner % VEC == 0 && aligned16(xp) && aligned16(yp) && (ip == nullptr || aligned16(ip));
      const int64_t nvec = vec ? n / VEC : 0;
      const FastDiv div_sv(vec ? g.inner / VEC : 1), div_s(g.inner);
      maxout_forward_kernel<scalar_t><<<grid_for(std::max(nvec, n - nvec * VEC), kThreads), kThreads, 0, stream>>>(
          xp, yp, ip, n, g.pieces, g.inner, nvec, div_sv, div_s);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static void maxout_backward(const Tensor& grad, const Tensor& indices, const Tensor& dx, MaxoutGeometry g) {
    const c10::cuda::CUDAGuard guard(grad.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "glo_maxout_backward_cuda", [&] {
      constexpr int64_t VEC = Vec16<scalar_t>::kSize;
      const int64_t n = dx.numel();
      const int64_t ngrad = grad.numel();
      TORCH_INTERNAL_ASSERT(n == g.outer * g.groups * g.pieces * g.inner && ngrad * g.pieces == n &&
                                indices.numel() == ngrad,
                            "glo_kernels.maxout_backward: geometry does not match numel");
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const uint8_t* ip = indices.const_data_ptr<uint8_t>();
      scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
      const bool vec = g.inner % VEC == 0 && aligned16(gp) && aligned16(dp) && aligned16(ip);
      const int64_t nvec = vec ? ngrad / VEC : 0;
      const FastDiv div_sv(vec ? g.inner / VEC : 1), div_s(g.inner);
      maxout_backward_kernel<scalar_t>
          <<<grid_for(std::max(nvec, ngrad - nvec * VEC), kThreads), kThreads, 0, stream>>>(
              gp, ip, dp, ngrad, g.pieces, g.inner, nvec, div_sv, div_s);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
};

}  // namespace
}  // namespace glo

TORCH_LIBRARY_IMPL(glo_kernels, CUDA, m) { GLO_REGISTER_OPS(m, ::glo::CudaKernels); }
