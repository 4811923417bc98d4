// CUDA kernels of the softmax family: softmax / log-softmax with a temperature, their backward, grouped softmax and the
// distillation loss. The contract (formulas, special values, statistics) is docs/softmax_contract.md; the glue that
// checks arguments, allocates outputs and reduces the loss is glo/softmax_impls.h (SoftmaxOps<CudaSoftmaxKernels>).
//
// Conventions (as csrc/cuda/activations.cu): contiguous tensors, int64 indices, loads in the data dtype, math in opmath
// (float for half/bfloat16/float, double for double), 16-byte vector accesses when every pointer is 16-byte aligned
// and a row is a whole number of vectors, scalar accesses otherwise. Every sum is taken in a fixed order that depends
// only on the shape and the launch plan (itself a function of the shape and the device's cluster support): results
// are reproducible run to run. No atomics.
//
// Collectives: the threads of a row group (G lanes of one warp, G a power of two <= 32, or a whole block of G = a
// multiple of 32 threads, or the C blocks of a thread-block cluster) reach group_reduce() in loops whose trip count
// is uniform across the block (and the cluster), so every __shfl_xor_sync sees all 32 lanes of the warp, every
// __syncthreads every thread of the block and every cluster barrier every block of the cluster. Element loops with
// per-thread trip counts hold no collective.
//
// Paths of a softmax along a contiguous dim (inner == 1), with VEC = 16 / sizeof(scalar_t) elements per 16-byte
// vector; the plan is plan_softmax of glo/softmax_plan.h (a pure host function, tested on the CPU with the properties
// of an H100, H200 and A100), its device inputs queried once per device (device_state):
//  * rows kernels, the row cached on chip so that x is read from memory once: each thread of a row group holds
//    fwd_vpt chunks of 16 bytes in registers (4 for 16-bit types, 3 float32, 2 float64; backward: kBwdVPT = 2 of dy
//    and of y) and, for longer rows, VS more chunks in dynamic shared memory. Row groups: G = 1..32 lanes of a warp
//    (256-thread blocks of 256 / G rows) up to 32 threads, then one block of G <= 512 threads per row (registers only
//    up to fp32 6144 elements, then with <= 96 KiB of shared memory up to fp32 30720: two blocks per SM), then
//    G <= 1024 with <= 200 KiB (on an H100: fp32 61440; backward fp32 4096 / 16384 / 32768). On sm_90+ longer rows
//    use a thread-block cluster of C = 2, 4, 8 or 16 such blocks per row (16: the non-portable size), the fewest that
//    hold the row, the partial maxima and sums exchanged through distributed shared memory (on an H100 every row up
//    to 262144 elements, float32 or 16-bit, forward and backward).
//  * online kernels (longer rows, or no clusters): one block of 1024 threads per row; pass 1 keeps a running
//    (max, sum) per thread with rescaling, pass 2 (in reverse order, so that the row's tail is still in L2) writes y.
// Along a strided dim (inner > 1), plan_strided of glo/softmax_plan.h: tiles kernels, a block per tile of all `size`
// rows times W * VEC columns, held in shared memory (x read once; 16-byte cp.async when inner % VEC == 0; on an H100
// every dim up to 12,800 elements forward, 6,400 backward, whatever inner); a longer dim: one thread per
// (outer, inner) column, online pass + write pass, consecutive threads reading consecutive addresses. Grouped
// softmax uses the online kernels with one warp per (row, group) (inner == 1) and the strided kernels with one thread
// per (outer, group, inner) column. Backward: the same shapes, one sum per row
// (dot(dy, y), or sum(dy) for log-softmax). Distillation: a row group per row (G = 1..32 lanes or a block of <= 1024
// threads, about 8 vectors per thread), one online pass over s and t for the statistics, a second pass for the
// pointwise loss; its backward is element-wise (reduced) or a row group per row (A, B sums, then the write pass).
//
// Output dtypes (softmax / log-softmax with dtype=, fused_dtype_pair of glo/softmax_impls.h): the forward kernels read
// x in scalar_t and write y in out_t, the backward kernels read dy and y in scalar_t and write dx in dx_t; equal
// types, or a fused widening pair (bfloat16 / float16 x, float y and dy), which share the opmath type float. Chunks
// are sized by the type read (16-byte loads); their outputs are stored as vectors of the same number of elements
// (store_vec: one 16-byte store per 16 bytes, or one 8-byte store for 4 half-size elements).
//
// Special values: the maximum skips NaN (fmax), but a NaN reaches the sum (exp(NaN - m) = NaN); +inf gives
// exp(inf - inf) = NaN; a row of -inf gives m = -inf and x - m = NaN in the write pass. The online (max, sum) keeps
// the sum relative to the "safe" max (0 while the max is -inf), so a leading run of -inf never creates a NaN, and
// rescales with exp((old max - new safe max) * inv_t), which is 0 for an old max of -inf and keeps a NaN sum NaN.
// Padding lanes of the cached rows hold -inf (forward) or 0 (backward): they add exactly 0.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cooperative_groups.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "glo/softmax_impls.h"
#include "glo/softmax_plan.h"

namespace glo {
namespace {

namespace cg = cooperative_groups;

// Launch-plan constants and helpers (kThreads, kMaxBlock, fwd_vpt, kBwdVPT, ceil_div, grid_cap, RowPlan, plan_rows,
// plan_softmax): pure host code in glo/softmax_plan.h, unit-tested on the CPU.
using namespace ::glo::softmax_plan;

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kDistillUnitsPerThread = 8;  // distillation row loops: a row group has about units / 8 threads

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

template <typename T>
struct Lim;
template <>
struct Lim<float> {
  __device__ __forceinline__ static float neg_inf() { return -__int_as_float(0x7f800000); }
  __device__ __forceinline__ static float nan() { return __int_as_float(0x7fc00000); }
};
template <>
struct Lim<double> {
  __device__ __forceinline__ static double neg_inf() { return -__longlong_as_double(0x7ff0000000000000LL); }
  __device__ __forceinline__ static double nan() { return __longlong_as_double(0x7ff8000000000000LL); }
};

// max skipping NaN (fmax): a running max that starts at -inf is never NaN.
__device__ __forceinline__ float gmax(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double gmax(double a, double b) { return fmax(a, b); }
__device__ __forceinline__ float glog(float x) { return ::logf(x); }
__device__ __forceinline__ double glog(double x) { return ::log(x); }

struct MaxOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return gmax(a, b); }
};
struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};

// 1 / T: read from a 1-element opmath tensor on the device (no host synchronization), or computed on the host.
template <typename T>
struct InvTemp {
  const T* ptr;  // nullptr: use value
  T value;
  __device__ __forceinline__ T get() const { return ptr != nullptr ? T(1) / *ptr : value; }
};

template <typename T>
InvTemp<T> make_inv_temp(const Temperature& temp) {
  if (temp.tensor.defined()) return {temp.tensor.const_data_ptr<T>(), T(0)};
  return {nullptr, T(1) / static_cast<T>(temp.value)};
}

__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cg::this_cluster().sync();
#else
  __trap();  // never launched with clusters below sm_90 (see query_device)
#endif
}

// Reduction over a row group, the same value (bitwise) returned to every thread of the group:
//  1. G <= 32 lanes (an aligned power-of-two slice of a warp) or a whole warp: xor butterfly (each step combines the
//     same two values in both lanes, and op is commutative, so all lanes agree);
//  2. G > 32 (G == blockDim.x): the warps' values through shared memory, combined by every thread in warp order;
//  3. C > 1 (a cluster of C blocks per row, G == blockDim.x): block 0..C-1's values through distributed shared
//     memory, combined in rank order by every thread of every block. `slot` must not be rewritten before the
//     cluster_sync() that ends the row (each reduction of a row uses its own slot).
// All 32 lanes of each warp, all threads of the block (G > 32) and all blocks of the cluster (C > 1) must call it.
template <typename T, class Op>
__device__ __forceinline__ T group_reduce(T v, int G, int C, T* warp_smem, T* slot, Op op) {
  const int width = G < 32 ? G : 32;
  for (int off = 1; off < width; off <<= 1) v = op(v, __shfl_xor_sync(kFullMask, v, off));
  if (G > 32) {
    if ((threadIdx.x & 31) == 0) warp_smem[threadIdx.x >> 5] = v;
    __syncthreads();
    v = warp_smem[0];
    for (int w = 1; w < (G >> 5); ++w) v = op(v, warp_smem[w]);
    __syncthreads();  // warp_smem may be rewritten by the next call
  }
  if (C > 1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    cg::cluster_group cluster = cg::this_cluster();
    if (threadIdx.x == 0) *slot = v;
    cluster.sync();
    T r = *cluster.map_shared_rank(slot, 0);
    for (int k = 1; k < C; ++k) r = op(r, *cluster.map_shared_rank(slot, k));
    v = r;
#else
    __trap();
#endif
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------------------
// Cluster exchange through DSMEM with mbarriers (plan exchange kMbarrier; GLO_SOFTMAX_EXCHANGE=mbarrier), in place of
// the cluster barriers of group_reduce (cluster.sync: MEMBAR.ALL.GPU, a cluster barrier and an L1 invalidate, three
// per row). The pattern of CUTLASS's ClusterTransactionBarrier and quack's cluster reductions:
//  * each block holds, per reduction r of a row (forward: max, sum; backward: one sum) and per buffer b (rows
//    alternate: b = it & 1, it the row-loop iteration, the same in every block of the cluster), C slots and one
//    mbarrier initialized once, before the row loop, with an arrival count of 1;
//  * thread 0 of each block arrives on its own barrier expecting C * sizeof(T) bytes, then stores its block's value
//    into slot [rank] of every block of the cluster (itself included) with st.async, which completes those bytes on
//    the receiving block's barrier;
//  * every thread waits for the barrier's phase: the k-th use of buffer b (k = it >> 1) completes phase k, so the
//    parity to wait for is (it >> 1) & 1; it then combines slots 0..C-1 in rank order, as group_reduce does: both
//    exchanges give the same bits.
// Reuse of a buffer: a block stores into buffer b of row it + 2 only after it has the values of row it + 1 of every
// block, and a block sends its value of row it + 1 only after the __syncthreads of that reduction (G > 32: C > 1
// always has G == blockDim.x > 32), which every thread reaches after reading the slots of row it. So no store of row
// it + 2 lands before the slots of row it are read, and no bytes of use k + 1 reach a barrier before phase k completes.
// Arrivals per phase and barrier: 1 (thread 0, with expect_tx C * sizeof(T)); bytes: C stores of sizeof(T).
// ---------------------------------------------------------------------------------------------------------------
constexpr int kXchgSync = 0;
constexpr int kXchgMbarrier = 1;

template <typename T, int R>
struct ClusterXchg {
  T slot[R][2][kMaxClusterLimit];
  uint64_t bar[R][2];
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
#endif

// Once per kernel, before the row loop, by every thread of every block of the cluster (C > 1).
template <typename T, int R>
__device__ __forceinline__ void cluster_xchg_init(ClusterXchg<T, R>& xs) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (threadIdx.x == 0) {
    for (int r = 0; r < R; ++r) {
      for (int b = 0; b < 2; ++b) {
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(smem_u32(&xs.bar[r][b])) : "memory");
      }
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  // every barrier of the cluster initialized before any block stores into it
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
  asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}

// Once per kernel, after the row loop: no block exits while a store of another block may still target it.
__device__ __forceinline__ void cluster_xchg_end() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
  asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}

template <typename T>
__device__ __forceinline__ void st_async_remote(unsigned local_slot, T v, unsigned local_bar, int rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  unsigned slot, bar;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(slot) : "r"(local_slot), "r"(rank));
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(bar) : "r"(local_bar), "r"(rank));
  if constexpr (sizeof(T) == 4) {
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];\n"
                 ::"r"(slot), "r"(__float_as_uint(v)), "r"(bar) : "memory");
  } else {
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b64 [%0], %1, [%2];\n"
                 ::"r"(slot), "l"(__double_as_longlong(v)), "r"(bar) : "memory");
  }
#endif
}

// The block's value v (the same in every thread) combined with the other blocks' of the cluster, in rank order.
template <typename T, class Op>
__device__ __forceinline__ T cluster_exchange(T v, int C, T* slots, uint64_t* bar, unsigned parity, Op op) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned b = smem_u32(bar);
  if (threadIdx.x == 0) {
    unsigned rank;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n"
                 ::"r"(b), "r"(static_cast<unsigned>(C * sizeof(T))) : "memory");
    for (int k = 0; k < C; ++k) st_async_remote(smem_u32(&slots[rank]), v, b, k);
  }
  // A wait that never ends would be a bug of this protocol (the blocks of a cluster run together): after kMaxPolls
  // polls (each may suspend the thread for a while; >= 0.1 s in all) the kernel traps, an error instead of a hang.
  constexpr unsigned kMaxPolls = 1u << 24;
  unsigned done = 0;
  for (unsigned polls = 0;; ++polls) {
    asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2;\n"
                 " selp.u32 %0, 1, 0, p;\n}\n" : "=r"(done) : "r"(b), "r"(parity) : "memory");
    if (done != 0) break;
    if (polls == kMaxPolls) __trap();
  }
  T r = slots[0];
  for (int k = 1; k < C; ++k) r = op(r, slots[k]);
  return r;
#else
  __trap();
  return v;
#endif
}

// group_reduce of a cached-rows kernel, the cluster part by cluster barriers (kXchgSync: `slot`, reused after the
// cluster_sync() ending the row) or by the mbarrier exchange (kXchgMbarrier: reduction r of row iteration it).
template <int XCHG, typename T, int R, class Op>
__device__ __forceinline__ T row_reduce(T v, int G, int C, T* warp_smem, T* slot, ClusterXchg<T, R>& xs, int r, int it,
                                        Op op) {
  if constexpr (XCHG == kXchgMbarrier) {
    v = group_reduce(v, G, 1, warp_smem, slot, op);
    if (C > 1) {
      v = cluster_exchange(v, C, xs.slot[r][it & 1], &xs.bar[r][it & 1], static_cast<unsigned>(it >> 1) & 1u, op);
    }
    return v;
  } else {
    return group_reduce(v, G, C, warp_smem, slot, op);
  }
}

// Position of a thread in the row groups of its block: G <= 32: blockDim.x / G groups of G lanes; G > 32: the block.
struct RowGroup {
  int tg;    // thread index in the group
  int sub;   // group index in the block
  int rpb;   // groups (rows) per block
  int rank;  // block rank in the cluster (0 without clusters)
  __device__ __forceinline__ RowGroup(int G, int C)
      : tg(static_cast<int>(threadIdx.x) % G),
        sub(static_cast<int>(threadIdx.x) / G),
        rpb(static_cast<int>(blockDim.x) / G),
        rank(static_cast<int>(blockIdx.x) % C) {}
};

// ---------------------------------------------------------------------------------------------------------------
// Cached rows. Thread tg of a row group holds K = VPT + VS chunks of VEC consecutive elements: chunk k is the row's
// elements e_k + [0, VEC), e_k = e0 + k * step, e0 = (rank * K * G + tg) * VEC, step = G * VEC (a block's K * G * VEC
// elements form one contiguous span; the C blocks of a cluster hold consecutive spans). Chunks k < VPT live in
// registers, chunks VPT + k' (k' < VS) in dynamic shared memory, slot [k'][threadIdx.x] (each thread reads only its
// own slots: no block barrier; the copies are cp.async, waited for by the thread itself). With vec, one 16-byte
// access per chunk; without, VEC scalar accesses (the VEC loads of a warp share their lines, which then hit L1).
// A row of n elements (n = 0 for a row past the end) fits when C * K * G * VEC >= n; elements past n hold `pad`.
// Cached rows are short (< 2^21 elements), so offsets within a row are int.
// ---------------------------------------------------------------------------------------------------------------
__device__ __forceinline__ void cp_async16(void* smem_ptr, const void* gmem_ptr) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem_ptr));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem_ptr) : "memory");
#else
  *reinterpret_cast<uint4*>(smem_ptr) = *reinterpret_cast<const uint4*>(gmem_ptr);
#endif
}

__device__ __forceinline__ void cp_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

template <typename scalar_t, int VPT>
__device__ __forceinline__ void load_cached(Vec16<scalar_t> (&c)[VPT], const scalar_t* __restrict__ p, int n, int e0,
                                            int step, bool vec, scalar_t pad) {
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  if (vec) {
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      const int e = e0 + k * step;
      if (e < n) {
        c[k] = *reinterpret_cast<const V*>(p + e);
      } else {
#pragma unroll
        for (int j = 0; j < VEC; ++j) c[k].val[j] = pad;
      }
    }
  } else {
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      const int e = e0 + k * step;
#pragma unroll
      for (int j = 0; j < VEC; ++j) c[k].val[j] = e + j < n ? p[e + j] : pad;
    }
  }
}

// Shared-memory chunks k < vs of a thread: slot sc[k * blockDim.x], elements e + k * step + [0, VEC).
template <typename scalar_t>
__device__ __forceinline__ void load_smem_chunks(Vec16<scalar_t>* sc, const scalar_t* __restrict__ p, int n, int e,
                                                 int step, int vs, bool vec, scalar_t pad) {
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  for (int k = 0; k < vs; ++k, e += step) {
    V* dst = sc + k * static_cast<int>(blockDim.x);
    if (vec && e < n) {
      cp_async16(dst, p + e);
    } else {
      V v;
#pragma unroll
      for (int j = 0; j < VEC; ++j) v.val[j] = !vec && e + j < n ? p[e + j] : pad;
      *dst = v;
    }
  }
}

// N consecutive elements of type o_t, stored as vectors of at most 16 bytes (VecN aligned to its size).
template <typename o_t, int N>
struct alignas(N * sizeof(o_t) >= 16 ? 16 : N * sizeof(o_t)) VecN {
  o_t val[N];
};

// o[0, N) to p[0, N), p aligned to min(16, N * sizeof(o_t)) bytes: one vector store per 16 bytes (a chunk of the
// type read holds 16 bytes; written in a dtype twice as wide it takes two stores, half as wide one 8-byte store).
template <typename o_t, int N>
__device__ __forceinline__ void store_vec(o_t* __restrict__ p, const o_t (&o)[N]) {
  constexpr int kPiece = N * static_cast<int>(sizeof(o_t)) > 16 ? 16 / static_cast<int>(sizeof(o_t)) : N;
#pragma unroll
  for (int k = 0; k < N; k += kPiece) {
    VecN<o_t, kPiece> piece;
#pragma unroll
    for (int j = 0; j < kPiece; ++j) piece.val[j] = o[k + j];
    *reinterpret_cast<VecN<o_t, kPiece>*>(p + k) = piece;
  }
}

// An output chunk o (elements e + [0, N) of a row of n): vector stores (vec), or the elements below n one by one.
template <typename o_t, int N>
__device__ __forceinline__ void store_chunk(o_t* __restrict__ p, const o_t (&o)[N], int n, int e, bool vec) {
  if (vec) {
    if (e < n) store_vec(p + e, o);
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) {
      if (e + j < n) p[e + j] = o[j];
    }
  }
}

// Writes the N outputs value(j), j < N, of the chunk at element e (as store_chunk), computed and stored 16 bytes of
// output at a time: an output twice as wide as the chunk read (a fused pair's float y of a 16-bit x) never holds the
// whole chunk's outputs in registers at once.
template <typename o_t, int N, class F>
__device__ __forceinline__ void write_chunk(o_t* __restrict__ p, int n, int e, bool vec, const F& value) {
  constexpr int kPiece = N * static_cast<int>(sizeof(o_t)) > 16 ? 16 / static_cast<int>(sizeof(o_t)) : N;
#pragma unroll
  for (int k = 0; k < N; k += kPiece) {
    o_t o[kPiece];
#pragma unroll
    for (int j = 0; j < kPiece; ++j) o[j] = value(k + j);
    store_chunk(p, o, n, e + k, vec);
  }
}

// Online (max, sum) update with N new values: s = sum exp((x - ms) * inv_t) relative to ms = (m == -inf ? 0 : m).
template <typename T, int N>
__device__ __forceinline__ void online_update(T& m, T& s, const T (&v)[N], T inv_t) {
  T cm = v[0];
#pragma unroll
  for (int j = 1; j < N; ++j) cm = gmax(cm, v[j]);
  const T mn = gmax(m, cm);
  const T ms = mn == Lim<T>::neg_inf() ? T(0) : mn;
  // m == mn: the factor would be 1 (finite m), 0 on s in {0, NaN} (m = -inf) or NaN on s = NaN (m = +inf): skip.
  if (mn != m) s *= gexp((m - ms) * inv_t);
  m = mn;
#pragma unroll
  for (int j = 0; j < N; ++j) s += gexp((v[j] - ms) * inv_t);
}

// ---------------------------------------------------------------------------------------------------------------
// Softmax forward, rows cached in registers and shared memory (inner == 1). Launch: G <= 32: kThreads threads per
// block, rpb = 256 / G rows per block, VS = 0; G > 32: G threads per block, one row per block (C == 1) or per cluster
// of C blocks, VS * G * 16 bytes of dynamic shared memory. Grid: row blocks (times C), capped; the row-block loop is
// uniform across the block and the cluster.
// ---------------------------------------------------------------------------------------------------------------
template <typename scalar_t, typename out_t, int VPT, int XCHG>
__global__ void __launch_bounds__(kMaxBlock, 1) softmax_rows_forward_kernel(
    const scalar_t* __restrict__ x,  // [rows, size]
    out_t* __restrict__ y,           // [rows, size]
    int64_t rows, int64_t size,
    bool vec,                        // 16-byte accesses (x, y aligned, size % VEC == 0)
    bool log, InvTemp<at::opmath_type<scalar_t>> temp,
    int G, int C, int VS) {          // row group threads, cluster blocks per row, shared-memory chunks per thread
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  extern __shared__ __align__(16) unsigned char dyn_smem[];
  __shared__ T red_warp[32];
  __shared__ T red_slot[2];
  __shared__ ClusterXchg<T, XCHG == kXchgMbarrier ? 2 : 1> xs;  // (unused by kXchgSync)
  V* sc = reinterpret_cast<V*>(dyn_smem) + threadIdx.x;
  const int bd = static_cast<int>(blockDim.x);
  const T inv_t = temp.get();
  const RowGroup grp(G, C);
  const scalar_t pad = static_cast<scalar_t>(Lim<T>::neg_inf());
  const int step = G * VEC;
  const int e0 = (grp.rank * (VPT + VS) * G + grp.tg) * VEC;
  const int es = e0 + VPT * step;  // first shared-memory chunk
  const int64_t nrb = ceil_div_dev(rows, grp.rpb);
  if (XCHG == kXchgMbarrier && C > 1) cluster_xchg_init(xs);
  int it = 0;  // row-loop iteration (the same in every block of a cluster)
  for (int64_t rb = blockIdx.x / C; rb < nrb; rb += gridDim.x / C, ++it) {
    const int64_t row = rb * grp.rpb + grp.sub;
    const bool valid = row < rows;
    const int64_t off = valid ? row * size : 0;
    const int n = valid ? static_cast<int>(size) : 0;
    const scalar_t* xr = x + off;
    V cache[VPT];
    load_smem_chunks(sc, xr, n, es, step, VS, vec, pad);
    load_cached<scalar_t, VPT>(cache, xr, n, e0, step, vec, pad);
    cp_async_wait_all();
    T m = Lim<T>::neg_inf();
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) m = gmax(m, static_cast<T>(cache[k].val[j]));
    }
    for (int k = 0; k < VS; ++k) {
      const V v = sc[k * bd];
#pragma unroll
      for (int j = 0; j < VEC; ++j) m = gmax(m, static_cast<T>(v.val[j]));
    }
    m = row_reduce<XCHG>(m, G, C, red_warp, &red_slot[0], xs, 0, it, MaxOp()) + T(0);  // + 0: one sign for +-0
    T s = 0;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) s += gexp((static_cast<T>(cache[k].val[j]) - m) * inv_t);
    }
    for (int k = 0; k < VS; ++k) {
      const V v = sc[k * bd];
#pragma unroll
      for (int j = 0; j < VEC; ++j) s += gexp((static_cast<T>(v.val[j]) - m) * inv_t);
    }
    s = row_reduce<XCHG>(s, G, C, red_warp, &red_slot[1], xs, XCHG == kXchgMbarrier ? 1 : 0, it, SumOp());
    out_t* yr = y + off;
    // log: y = (x - m) inv_t - log(s); else y = exp((x - m) inv_t) * (1 / s)
    const T shift = log ? glog(s) : T(1) / s;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      write_chunk<out_t, VEC>(yr, n, e0 + k * step, vec, [&](int j) {
        const T d = (static_cast<T>(cache[k].val[j]) - m) * inv_t;
        return static_cast<out_t>(log ? d - shift : gexp(d) * shift);
      });
    }
    for (int k = 0; k < VS; ++k) {
      const V v = sc[k * bd];
      write_chunk<out_t, VEC>(yr, n, es + k * step, vec, [&](int j) {
        const T d = (static_cast<T>(v.val[j]) - m) * inv_t;
        return static_cast<out_t>(log ? d - shift : gexp(d) * shift);
      });
    }
    // the slots are reused by the next row; no block leaves while others read its slots
    if (XCHG == kXchgSync && C > 1) cluster_sync();
  }
  if (XCHG == kXchgMbarrier && C > 1) cluster_xchg_end();
}

// Softmax backward, dy and y cached (VPT register chunks and VS shared-memory chunks of each; shared memory holds
// [2][VS][blockDim.x] vectors, dy then y); same launch shapes as the forward. dx in dx_t (the forward's input dtype).
//   softmax: dx = y (dy - sum dy y) inv_t;  log-softmax: dx = (dy - exp(y) sum dy) inv_t.
template <typename scalar_t, typename dx_t, int VPT, int XCHG>
__global__ void __launch_bounds__(kMaxBlock, 1) softmax_rows_backward_kernel(
    const scalar_t* __restrict__ grad,  // [rows, size]
    const scalar_t* __restrict__ y,     // [rows, size]
    dx_t* __restrict__ dx,              // [rows, size]
    int64_t rows, int64_t size,
    bool vec,                           // 16-byte accesses (grad, y, dx aligned, size % VEC == 0)
    bool log, InvTemp<at::opmath_type<scalar_t>> temp,
    int G, int C, int VS) {             // row group threads, cluster blocks per row, shared-memory chunks per thread
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  extern __shared__ __align__(16) unsigned char dyn_smem[];
  __shared__ T red_warp[32];
  __shared__ T red_slot[1];
  __shared__ ClusterXchg<T, 1> xs;  // (unused by kXchgSync)
  const int bd = static_cast<int>(blockDim.x);
  V* gs = reinterpret_cast<V*>(dyn_smem) + threadIdx.x;
  V* ys = gs + VS * bd;
  const T inv_t = temp.get();
  const RowGroup grp(G, C);
  const scalar_t zero = static_cast<scalar_t>(T(0));
  const int step = G * VEC;
  const int e0 = (grp.rank * (VPT + VS) * G + grp.tg) * VEC;
  const int es = e0 + VPT * step;
  const int64_t nrb = ceil_div_dev(rows, grp.rpb);
  if (XCHG == kXchgMbarrier && C > 1) cluster_xchg_init(xs);
  int it = 0;
  for (int64_t rb = blockIdx.x / C; rb < nrb; rb += gridDim.x / C, ++it) {
    const int64_t row = rb * grp.rpb + grp.sub;
    const bool valid = row < rows;
    const int64_t off = valid ? row * size : 0;
    const int n = valid ? static_cast<int>(size) : 0;
    V gc[VPT], yc[VPT];
    load_smem_chunks(gs, grad + off, n, es, step, VS, vec, zero);
    load_smem_chunks(ys, y + off, n, es, step, VS, vec, zero);
    load_cached<scalar_t, VPT>(gc, grad + off, n, e0, step, vec, zero);
    load_cached<scalar_t, VPT>(yc, y + off, n, e0, step, vec, zero);
    cp_async_wait_all();
    T acc = 0;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const T dy = static_cast<T>(gc[k].val[j]);
        acc += log ? dy : dy * static_cast<T>(yc[k].val[j]);
      }
    }
    for (int k = 0; k < VS; ++k) {
      const V gv = gs[k * bd];
      const V yv = ys[k * bd];
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const T dy = static_cast<T>(gv.val[j]);
        acc += log ? dy : dy * static_cast<T>(yv.val[j]);
      }
    }
    acc = row_reduce<XCHG>(acc, G, C, red_warp, &red_slot[0], xs, 0, it, SumOp());
    dx_t* dr = dx + off;
#pragma unroll
    for (int k = 0; k < VPT; ++k) {
      dx_t o[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const T dy = static_cast<T>(gc[k].val[j]);
        const T yv = static_cast<T>(yc[k].val[j]);
        o[j] = static_cast<dx_t>(log ? (dy - gexp(yv) * acc) * inv_t : yv * (dy - acc) * inv_t);
      }
      store_chunk(dr, o, n, e0 + k * step, vec);
    }
    for (int k = 0; k < VS; ++k) {
      const V gv = gs[k * bd];
      const V yv = ys[k * bd];
      dx_t o[VEC];
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const T dy = static_cast<T>(gv.val[j]);
        const T yy = static_cast<T>(yv.val[j]);
        o[j] = static_cast<dx_t>(log ? (dy - gexp(yy) * acc) * inv_t : yy * (dy - acc) * inv_t);
      }
      store_chunk(dr, o, n, es + k * step, vec);
    }
    if (XCHG == kXchgSync && C > 1) cluster_sync();
  }
  if (XCHG == kXchgMbarrier && C > 1) cluster_xchg_end();
}

// ---------------------------------------------------------------------------------------------------------------
// Online kernels (inner == 1): work item = (row, group), items = rows * ngroups, group [a, b) of the row from
// `offsets` (nullptr: one group [0, size)). A row group of G threads per item (G <= 32: 256-thread blocks with 256 / G
// items; G > 32: G == blockDim.x). Pass 1: per-thread online (max, sum) over the thread's vectors v = tg, tg + G, ...
// (vec: one group, size % VEC == 0) or elements; merge; pass 2 walks the thread's elements backwards.
// ---------------------------------------------------------------------------------------------------------------
struct ItemRange {
  int64_t base;  // offset of the group's first element in the tensor
  int64_t len;   // elements in the group (0 for an invalid item)
};

__device__ __forceinline__ ItemRange item_range(int64_t item, int64_t items, int64_t size,
                                                const int64_t* __restrict__ offsets, int64_t ngroups) {
  if (item >= items) return {0, 0};
  if (offsets == nullptr) return {item * size, size};
  const int64_t row = idiv(item, ngroups);
  const int64_t gi = item - row * ngroups;
  const int64_t a = offsets[gi];
  return {row * size + a, offsets[gi + 1] - a};
}

// Last index of the sequence tg, tg + G, ... below n, or -1.
__device__ __forceinline__ int64_t last_index(int64_t tg, int64_t n, int G) {
  return tg < n ? tg + ((n - 1 - tg) / G) * G : -1;
}

template <typename scalar_t, typename out_t>
__global__ void __launch_bounds__(kMaxBlock, 1) softmax_online_forward_kernel(
    const scalar_t* __restrict__ x,          // [rows, size]
    out_t* __restrict__ y,                   // [rows, size]
    int64_t rows, int64_t size,
    const int64_t* __restrict__ offsets,     // [ngroups + 1] or nullptr
    int64_t ngroups, int G,
    bool vec,                                // 16-byte accesses (offsets == nullptr, aligned, size % VEC == 0)
    bool log, InvTemp<at::opmath_type<scalar_t>> temp) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  __shared__ T red_warp[32];
  const T inv_t = temp.get();
  const RowGroup grp(G, 1);
  const int64_t items = rows * ngroups;
  const int64_t nib = ceil_div_dev(items, grp.rpb);
  for (int64_t ib = blockIdx.x; ib < nib; ib += gridDim.x) {
    const ItemRange r = item_range(ib * grp.rpb + grp.sub, items, size, offsets, ngroups);
    const scalar_t* xr = x + r.base;
    out_t* yr = y + r.base;
    T m = Lim<T>::neg_inf(), s = 0;
    if (vec) {
      const int64_t nv = r.len / VEC;
      for (int64_t v = grp.tg; v < nv; v += G) {
        const V xv = *reinterpret_cast<const V*>(xr + v * VEC);
        T vals[VEC];
#pragma unroll
        for (int j = 0; j < VEC; ++j) vals[j] = static_cast<T>(xv.val[j]);
        online_update(m, s, vals, inv_t);
      }
    } else {
      for (int64_t i = grp.tg; i < r.len; i += G) {
        const T vals[1] = {static_cast<T>(xr[i])};
        online_update(m, s, vals, inv_t);
      }
    }
    const T mx = group_reduce(m, G, 1, red_warp, red_warp, MaxOp()) + T(0);
    const T safe = mx == Lim<T>::neg_inf() ? T(0) : mx;
    // s is relative to the thread's safe max: rescale to the group's (factor 1 when m == mx finite, 0 when m = -inf)
    s *= gexp((m - safe) * inv_t);
    s = group_reduce(s, G, 1, red_warp, red_warp, SumOp());
    const T shift = log ? glog(s) : T(1) / s;
    if (vec) {
      for (int64_t v = last_index(grp.tg, r.len / VEC, G); v >= 0; v -= G) {
        const V xv = *reinterpret_cast<const V*>(xr + v * VEC);
        out_t o[VEC];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const T d = (static_cast<T>(xv.val[j]) - mx) * inv_t;
          o[j] = static_cast<out_t>(log ? d - shift : gexp(d) * shift);
        }
        store_vec(yr + v * VEC, o);
      }
    } else {
      for (int64_t i = last_index(grp.tg, r.len, G); i >= 0; i -= G) {
        const T d = (static_cast<T>(xr[i]) - mx) * inv_t;
        yr[i] = static_cast<out_t>(log ? d - shift : gexp(d) * shift);
      }
    }
  }
}

template <typename scalar_t, typename dx_t>
__global__ void __launch_bounds__(kMaxBlock, 1) softmax_online_backward_kernel(
    const scalar_t* __restrict__ grad,       // [rows, size]
    const scalar_t* __restrict__ y,          // [rows, size]
    dx_t* __restrict__ dx,                   // [rows, size]
    int64_t rows, int64_t size,
    const int64_t* __restrict__ offsets,     // [ngroups + 1] or nullptr
    int64_t ngroups, int G,
    bool vec,                                // 16-byte accesses (offsets == nullptr, aligned, size % VEC == 0)
    bool log, InvTemp<at::opmath_type<scalar_t>> temp) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  __shared__ T red_warp[32];
  const T inv_t = temp.get();
  const RowGroup grp(G, 1);
  const int64_t items = rows * ngroups;
  const int64_t nib = ceil_div_dev(items, grp.rpb);
  for (int64_t ib = blockIdx.x; ib < nib; ib += gridDim.x) {
    const ItemRange r = item_range(ib * grp.rpb + grp.sub, items, size, offsets, ngroups);
    const scalar_t* gr = grad + r.base;
    const scalar_t* yr = y + r.base;
    dx_t* dr = dx + r.base;
    T acc = 0;
    if (vec) {
      const int64_t nv = r.len / VEC;
      for (int64_t v = grp.tg; v < nv; v += G) {
        const V gv = *reinterpret_cast<const V*>(gr + v * VEC);
        if (log) {
#pragma unroll
          for (int j = 0; j < VEC; ++j) acc += static_cast<T>(gv.val[j]);
        } else {
          const V yv = *reinterpret_cast<const V*>(yr + v * VEC);
#pragma unroll
          for (int j = 0; j < VEC; ++j) acc += static_cast<T>(gv.val[j]) * static_cast<T>(yv.val[j]);
        }
      }
    } else {
      for (int64_t i = grp.tg; i < r.len; i += G) {
        acc += log ? static_cast<T>(gr[i]) : static_cast<T>(gr[i]) * static_cast<T>(yr[i]);
      }
    }
    acc = group_reduce(acc, G, 1, red_warp, red_warp, SumOp());
    if (vec) {
      for (int64_t v = last_index(grp.tg, r.len / VEC, G); v >= 0; v -= G) {
        const V gv = *reinterpret_cast<const V*>(gr + v * VEC);
        const V yv = *reinterpret_cast<const V*>(yr + v * VEC);
        dx_t o[VEC];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const T dy = static_cast<T>(gv.val[j]);
          const T yy = static_cast<T>(yv.val[j]);
          o[j] = static_cast<dx_t>(log ? (dy - gexp(yy) * acc) * inv_t : yy * (dy - acc) * inv_t);
        }
        store_vec(dr + v * VEC, o);
      }
    } else {
      for (int64_t i = last_index(grp.tg, r.len, G); i >= 0; i -= G) {
        const T dy = static_cast<T>(gr[i]);
        const T yy = static_cast<T>(yr[i]);
        dr[i] = static_cast<dx_t>(log ? (dy - gexp(yy) * acc) * inv_t : yy * (dy - acc) * inv_t);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Strided kernels (inner > 1): one thread per column (o, group, i), thread-level grid-stride loop over
// idx = (o * ngroups + group) * inner + i (consecutive threads: consecutive i, coalesced); the column is
// x[((o * size) + a + j) * inner + i], j < b - a. No collectives.
// ---------------------------------------------------------------------------------------------------------------
struct Column {
  int64_t base;  // offset of the column's first element
  int64_t len;
};

__device__ __forceinline__ Column strided_column(int64_t idx, int64_t size, int64_t inner,
                                                 const int64_t* __restrict__ offsets, int64_t ngroups) {
  const int64_t q = idiv(idx, inner);  // o * ngroups + group
  const int64_t i = idx - q * inner;
  if (offsets == nullptr) return {q * size * inner + i, size};
  const int64_t o = idiv(q, ngroups);
  const int64_t gi = q - o * ngroups;
  const int64_t a = offsets[gi];
  return {(o * size + a) * inner + i, offsets[gi + 1] - a};
}

template <typename scalar_t, typename out_t>
__global__ void __launch_bounds__(kThreads, 4) softmax_strided_forward_kernel(
    const scalar_t* __restrict__ x,       // [outer, size, inner]
    out_t* __restrict__ y,                // [outer, size, inner]
    int64_t outer, int64_t size, int64_t inner,
    const int64_t* __restrict__ offsets,  // [ngroups + 1] or nullptr
    int64_t ngroups, bool log, InvTemp<at::opmath_type<scalar_t>> temp) {
  using T = at::opmath_type<scalar_t>;
  const T inv_t = temp.get();
  const int64_t n = outer * ngroups * inner;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += stride) {
    const Column c = strided_column(idx, size, inner, offsets, ngroups);
    const scalar_t* xc = x + c.base;
    out_t* yc = y + c.base;
    T m = Lim<T>::neg_inf(), s = 0;  // s relative to m (finite m); m = -inf: s in {0, NaN}, the write pass gives NaN
    for (int64_t j = 0; j < c.len; ++j) {
      const T vals[1] = {static_cast<T>(xc[j * inner])};
      online_update(m, s, vals, inv_t);
    }
    const T shift = log ? glog(s) : T(1) / s;
    for (int64_t j = 0; j < c.len; ++j) {
      const T d = (static_cast<T>(xc[j * inner]) - m) * inv_t;
      yc[j * inner] = static_cast<out_t>(log ? d - shift : gexp(d) * shift);
    }
  }
}

template <typename scalar_t, typename dx_t>
__global__ void __launch_bounds__(kThreads, 4) softmax_strided_backward_kernel(
    const scalar_t* __restrict__ grad,    // [outer, size, inner]
    const scalar_t* __restrict__ y,       // [outer, size, inner]
    dx_t* __restrict__ dx,                // [outer, size, inner]
    int64_t outer, int64_t size, int64_t inner,
    const int64_t* __restrict__ offsets,  // [ngroups + 1] or nullptr
    int64_t ngroups, bool log, InvTemp<at::opmath_type<scalar_t>> temp) {
  using T = at::opmath_type<scalar_t>;
  const T inv_t = temp.get();
  const int64_t n = outer * ngroups * inner;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += stride) {
    const Column c = strided_column(idx, size, inner, offsets, ngroups);
    const scalar_t* gc = grad + c.base;
    const scalar_t* yc = y + c.base;
    dx_t* dc = dx + c.base;
    T acc = 0;
    for (int64_t j = 0; j < c.len; ++j) {
      acc += log ? static_cast<T>(gc[j * inner]) : static_cast<T>(gc[j * inner]) * static_cast<T>(yc[j * inner]);
    }
    for (int64_t j = 0; j < c.len; ++j) {
      const T dy = static_cast<T>(gc[j * inner]);
      const T yy = static_cast<T>(yc[j * inner]);
      dc[j * inner] = static_cast<dx_t>(log ? (dy - gexp(yy) * acc) * inv_t : yy * (dy - acc) * inv_t);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Tiles kernels (inner > 1, no groups; plan_strided of glo/softmax_plan.h): work item = (o, tile), tile t of
// ntiles = ceil(inner / (W * VEC)) covering the columns [t * W * VEC, (t + 1) * W * VEC) of x[o] ([size, inner]).
// Thread tid = r * W + w (R = kThreads / W) holds the chunks (rows j = r, r + R, ... ; columns c + [0, VEC),
// c = t * W * VEC + w * VEC) in dynamic shared memory, slot tile[j * W + w], loaded once (cp.async, 16 bytes, when
// vec: x and y 16-byte aligned and inner % VEC == 0; else VEC scalar loads, the columns past inner padded). Every
// thread touches only its own slots, so the tile needs no block barrier. The per-column reductions (max, then sum;
// backward: one sum) run over the R threads of a lane: each thread's rows in order, then tile_reduce. The item loop
// is uniform across the block (tile_reduce's barriers). A lane whose chunk lies past inner loads and stores nothing.
// ---------------------------------------------------------------------------------------------------------------
// Combines v[k] (k < N: the VEC columns of lane w) over the R = kThreads / W threads of the lane, the same bits in
// each: xor butterfly over the lanes of a warp with the same w (W < 32: 32 / W of them), then the S = max(W, 32)
// -strided representatives q * S + w (q < kThreads / S) through red ([N][kThreads] values), combined in q order.
template <typename T, int N, class Op>
__device__ __forceinline__ void tile_reduce(T (&v)[N], T* red, int W, int w, Op op) {
#pragma unroll
  for (int k = 0; k < N; ++k) {
    for (int off = W; off < 32; off <<= 1) v[k] = op(v[k], __shfl_xor_sync(kFullMask, v[k], off));
  }
  const int S = W < 32 ? 32 : W;
  const int Q = kThreads / S;
  if (Q == 1) return;
  if (static_cast<int>(threadIdx.x) % S == w) {
#pragma unroll
    for (int k = 0; k < N; ++k) red[k * kThreads + threadIdx.x] = v[k];
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < N; ++k) {
    T a = red[k * kThreads + w];
    for (int q = 1; q < Q; ++q) a = op(a, red[k * kThreads + q * S + w]);
    v[k] = a;
  }
  __syncthreads();  // red is rewritten by the next call
}

// A thread's place in the tiles of a block: lane w of W along inner, r of R = kThreads / W along the dim; item
// (o, t) gives its chunks' first column c, the first of its rows j0 (size for a lane past inner: no rows) and the
// offset of x[o] (row j at slab + j * inner).
struct TileLane {
  int w, r, R;
  int64_t ntiles;  // tiles per x[o]
  int c = 0, j0 = 0;
  int64_t slab = 0;
  __device__ __forceinline__ TileLane(int W, int inner, int vec)
      : w(static_cast<int>(threadIdx.x) % W),
        r(static_cast<int>(threadIdx.x) / W),
        R(kThreads / W),
        ntiles(ceil_div_dev(inner, static_cast<int64_t>(W) * vec)) {}
  __device__ __forceinline__ void at(int64_t item, int W, int vec, int size, int inner) {
    const int64_t o = idiv(item, ntiles);
    c = static_cast<int>((item - o * ntiles) * W * vec) + w * vec;
    j0 = c < inner ? r : size;
    slab = o * size * static_cast<int64_t>(inner);
  }
};

// The chunk of row j at column c (c < inner) into slot dst: one 16-byte cp.async (vec), or VEC scalar loads with
// the columns past inner set to pad.
template <typename scalar_t>
__device__ __forceinline__ void load_tile_chunk(Vec16<scalar_t>* dst, const scalar_t* __restrict__ p, int inner,
                                                int c, bool vec, scalar_t pad) {
  using V = Vec16<scalar_t>;
  if (vec) {
    cp_async16(dst, p);
  } else {
    V v;
#pragma unroll
    for (int k = 0; k < V::kSize; ++k) v.val[k] = c + k < inner ? p[k] : pad;
    *dst = v;
  }
}

template <typename scalar_t, typename out_t>
__global__ void __launch_bounds__(kThreads) softmax_tiles_forward_kernel(
    const scalar_t* __restrict__ x,  // [outer, size, inner]
    out_t* __restrict__ y,           // [outer, size, inner]
    int64_t outer, int size, int inner,
    bool vec,                        // 16-byte accesses (x, y aligned, inner % VEC == 0)
    bool log, InvTemp<at::opmath_type<scalar_t>> temp,
    int W) {                         // vector lanes along inner (a power of two <= kThreads)
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  extern __shared__ __align__(16) unsigned char dyn_smem[];
  __shared__ T red[VEC * kThreads];
  V* tile = reinterpret_cast<V*>(dyn_smem);
  const T inv_t = temp.get();
  const scalar_t pad = static_cast<scalar_t>(Lim<T>::neg_inf());
  TileLane L(W, inner, VEC);
  for (int64_t item = blockIdx.x; item < outer * L.ntiles; item += gridDim.x) {
    L.at(item, W, VEC, size, inner);
    for (int j = L.j0; j < size; j += L.R) {
      load_tile_chunk(tile + j * W + L.w, x + L.slab + int64_t{j} * inner + L.c, inner, L.c, vec, pad);
    }
    cp_async_wait_all();
    T m[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) m[k] = Lim<T>::neg_inf();
    for (int j = L.j0; j < size; j += L.R) {
      const V v = tile[j * W + L.w];
#pragma unroll
      for (int k = 0; k < VEC; ++k) m[k] = gmax(m[k], static_cast<T>(v.val[k]));
    }
    tile_reduce(m, red, W, L.w, MaxOp());
    T s[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      m[k] = m[k] + T(0);  // one sign for +-0
      s[k] = 0;
    }
    for (int j = L.j0; j < size; j += L.R) {
      const V v = tile[j * W + L.w];
#pragma unroll
      for (int k = 0; k < VEC; ++k) s[k] += gexp((static_cast<T>(v.val[k]) - m[k]) * inv_t);
    }
    tile_reduce(s, red, W, L.w, SumOp());
    // log: y = (x - m) inv_t - log(s); else y = exp((x - m) inv_t) * (1 / s)
    T shift[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) shift[k] = log ? glog(s[k]) : T(1) / s[k];
    for (int j = L.j0; j < size; j += L.R) {
      const V v = tile[j * W + L.w];
      write_chunk<out_t, VEC>(y + L.slab + int64_t{j} * inner, inner, L.c, vec, [&](int k) {
        const T d = (static_cast<T>(v.val[k]) - m[k]) * inv_t;
        return static_cast<out_t>(log ? d - shift[k] : gexp(d) * shift[k]);
      });
    }
  }
}

// Backward of the tiles kernels: dy and y cached (shared memory [2][size * W] chunks), one sum per column.
//   softmax: dx = y (dy - sum dy y) inv_t;  log-softmax: dx = (dy - exp(y) sum dy) inv_t.
template <typename scalar_t, typename dx_t>
__global__ void __launch_bounds__(kThreads) softmax_tiles_backward_kernel(
    const scalar_t* __restrict__ grad,  // [outer, size, inner]
    const scalar_t* __restrict__ y,     // [outer, size, inner]
    dx_t* __restrict__ dx,              // [outer, size, inner]
    int64_t outer, int size, int inner,
    bool vec,                           // 16-byte accesses (grad, y, dx aligned, inner % VEC == 0)
    bool log, InvTemp<at::opmath_type<scalar_t>> temp,
    int W) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  extern __shared__ __align__(16) unsigned char dyn_smem[];
  __shared__ T red[VEC * kThreads];
  V* gt = reinterpret_cast<V*>(dyn_smem);
  V* yt = gt + static_cast<int64_t>(size) * W;
  const T inv_t = temp.get();
  const scalar_t zero = static_cast<scalar_t>(T(0));
  TileLane L(W, inner, VEC);
  for (int64_t item = blockIdx.x; item < outer * L.ntiles; item += gridDim.x) {
    L.at(item, W, VEC, size, inner);
    for (int j = L.j0; j < size; j += L.R) {
      const int64_t e = L.slab + int64_t{j} * inner + L.c;
      load_tile_chunk(gt + j * W + L.w, grad + e, inner, L.c, vec, zero);
      load_tile_chunk(yt + j * W + L.w, y + e, inner, L.c, vec, zero);
    }
    cp_async_wait_all();
    T acc[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) acc[k] = 0;
    for (int j = L.j0; j < size; j += L.R) {
      const V gv = gt[j * W + L.w];
      const V yv = yt[j * W + L.w];
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const T dy = static_cast<T>(gv.val[k]);
        acc[k] += log ? dy : dy * static_cast<T>(yv.val[k]);
      }
    }
    tile_reduce(acc, red, W, L.w, SumOp());
    for (int j = L.j0; j < size; j += L.R) {
      const V gv = gt[j * W + L.w];
      const V yv = yt[j * W + L.w];
      dx_t out[VEC];
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const T dy = static_cast<T>(gv.val[k]);
        const T yy = static_cast<T>(yv.val[k]);
        out[k] = static_cast<dx_t>(log ? (dy - gexp(yy) * acc[k]) * inv_t : yy * (dy - acc[k]) * inv_t);
      }
      store_chunk(dx + L.slab + int64_t{j} * inner, out, inner, L.c, vec);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Distillation loss. Row kernels use the row groups above (G lanes or a block per row, no clusters) and walk the row in
// units (16-byte vectors when vec, else elements): unit u = tg, tg + G, ...
// ---------------------------------------------------------------------------------------------------------------
// Running statistics of one thread: (ms, zs) for the student, (mt, zt) for the teacher as online (max, sum) pairs,
// and a = sum e_j (t_j - s_j) with e_j = exp((t_j - mt) inv_t), relative to the same safe teacher max as zt.
template <typename T>
struct DistillAcc {
  T ms, zs, mt, zt, a;
};

template <typename T, int N>
__device__ __forceinline__ void distill_update(DistillAcc<T>& d, const T (&sv)[N], const T (&tv)[N], T inv_t) {
  online_update(d.ms, d.zs, sv, inv_t);
  T cm = tv[0];
#pragma unroll
  for (int j = 1; j < N; ++j) cm = gmax(cm, tv[j]);
  const T mn = gmax(d.mt, cm);
  const T safe = mn == Lim<T>::neg_inf() ? T(0) : mn;
  if (mn != d.mt) {
    const T f = gexp((d.mt - safe) * inv_t);
    d.zt *= f;
    d.a = f == T(0) ? T(0) : d.a * f;  // terms whose e_j becomes 0 drop out (an inf term must not give 0 * inf)
  }
  d.mt = mn;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const T e = gexp((tv[j] - safe) * inv_t);
    d.zt += e;
    d.a += e == T(0) ? T(0) : e * (tv[j] - sv[j]);
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kMaxBlock, 1) distill_forward_kernel(
    const scalar_t* __restrict__ s,                  // [rows, cols]
    const scalar_t* __restrict__ t,                  // [rows, cols]
    at::opmath_type<scalar_t>* __restrict__ stats,   // [rows, 5]
    scalar_t* __restrict__ loss,                     // [rows, cols] or nullptr
    int64_t rows, int64_t cols, int G,
    bool vec,                                        // 16-byte accesses (aligned, cols % VEC == 0)
    at::opmath_type<scalar_t> inv_t, at::opmath_type<scalar_t> t2) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  __shared__ T red_warp[32];
  const RowGroup grp(G, 1);
  const T ninf = Lim<T>::neg_inf();
  const int64_t nrb = ceil_div_dev(rows, grp.rpb);
  for (int64_t rb = blockIdx.x; rb < nrb; rb += gridDim.x) {
    const int64_t row = rb * grp.rpb + grp.sub;
    const bool valid = row < rows;
    const int64_t off = valid ? row * cols : 0;
    const scalar_t* sr = s + off;
    const scalar_t* tr = t + off;
    DistillAcc<T> d{ninf, T(0), ninf, T(0), T(0)};
    if (valid) {
      if (vec) {
        for (int64_t v = grp.tg; v < cols / VEC; v += G) {
          const V sv = *reinterpret_cast<const V*>(sr + v * VEC);
          const V tv = *reinterpret_cast<const V*>(tr + v * VEC);
          T a[VEC], b[VEC];
#pragma unroll
          for (int j = 0; j < VEC; ++j) {
            a[j] = static_cast<T>(sv.val[j]);
            b[j] = static_cast<T>(tv.val[j]);
          }
          distill_update(d, a, b, inv_t);
        }
      } else {
        for (int64_t i = grp.tg; i < cols; i += G) {
          const T a[1] = {static_cast<T>(sr[i])};
          const T b[1] = {static_cast<T>(tr[i])};
          distill_update(d, a, b, inv_t);
        }
      }
    }
    // Merge the threads' statistics (every thread of the block, valid or not).
    const T ms = group_reduce(d.ms, G, 1, red_warp, red_warp, MaxOp()) + T(0);
    const T ms_safe = ms == ninf ? T(0) : ms;
    const T zs = group_reduce(d.zs * gexp((d.ms - ms_safe) * inv_t), G, 1, red_warp, red_warp, SumOp());
    const T mt = group_reduce(d.mt, G, 1, red_warp, red_warp, MaxOp()) + T(0);
    const T mt_safe = mt == ninf ? T(0) : mt;
    const T f = gexp((d.mt - mt_safe) * inv_t);
    const T zt = group_reduce(d.zt * f, G, 1, red_warp, red_warp, SumOp());
    const T a = group_reduce(f == T(0) ? T(0) : d.a * f, G, 1, red_warp, red_warp, SumOp());
    // Rows of only -inf give NaN statistics (their softmax is NaN), as the CPU kernels.
    const T logzs = ms == ninf ? Lim<T>::nan() : glog(zs);
    const T logzt = mt == ninf ? Lim<T>::nan() : glog(zt);
    const T kl = a * inv_t / zt - (mt - ms) * inv_t - logzt + logzs;
    if (valid && grp.tg == 0) {
      T* st = stats + row * kDistillStats;
      st[kMaxS] = ms;
      st[kLogZS] = logzs;
      st[kMaxT] = mt;
      st[kLogZT] = logzt;
      st[kKL] = kl;
    }
    if (loss != nullptr && valid) {
      const DistillRow<T> dr{ms, logzs, mt, logzt, kl, inv_t};
      scalar_t* lr = loss + off;
      if (vec) {
        for (int64_t v = grp.tg; v < cols / VEC; v += G) {
          const V sv = *reinterpret_cast<const V*>(sr + v * VEC);
          const V tv = *reinterpret_cast<const V*>(tr + v * VEC);
          V o;
#pragma unroll
          for (int j = 0; j < VEC; ++j) {
            o.val[j] = static_cast<scalar_t>(t2 * dr.pointwise(static_cast<T>(sv.val[j]), static_cast<T>(tv.val[j])));
          }
          *reinterpret_cast<V*>(lr + v * VEC) = o;
        }
      } else {
        for (int64_t i = grp.tg; i < cols; i += G) {
          lr[i] = static_cast<scalar_t>(t2 * dr.pointwise(static_cast<T>(sr[i]), static_cast<T>(tr[i])));
        }
      }
    }
  }
}

// Reduced backward: G = grad[0] * scale (one scalar); ds = G inv_t (q - p), dt = G inv_t p (r - kl).
// Thread-level grid-stride loops: vectors (nvec = n / VEC when aligned and cols % VEC == 0, so that a vector lies in
// one row; else 0), then the scalar tail. No collectives.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) distill_backward_reduced_kernel(
    const at::opmath_type<scalar_t>* __restrict__ grad,   // [1]
    const scalar_t* __restrict__ s,                       // [rows, cols] = [n]
    const scalar_t* __restrict__ t,                       // [n]
    const at::opmath_type<scalar_t>* __restrict__ stats,  // [rows, 5]
    scalar_t* __restrict__ ds,                            // [n]
    scalar_t* __restrict__ dt,                            // [n] or nullptr
    int64_t n, int64_t cols, int64_t nvec, double scale, at::opmath_type<scalar_t> inv_t) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  const T g = static_cast<T>(static_cast<double>(grad[0]) * scale);
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t v = tid; v < nvec; v += stride) {
    const int64_t i = v * VEC;
    const T* rs = stats + idiv(i, cols) * kDistillStats;
    const DistillRow<T> dr{rs[kMaxS], rs[kLogZS], rs[kMaxT], rs[kLogZT], rs[kKL], inv_t};
    const V sv = *reinterpret_cast<const V*>(s + i);
    const V tv = *reinterpret_cast<const V*>(t + i);
    V os, ot;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      T a, b;
      dr.reduced_grads(static_cast<T>(sv.val[j]), static_cast<T>(tv.val[j]), g, a, b);
      os.val[j] = static_cast<scalar_t>(a);
      ot.val[j] = static_cast<scalar_t>(b);
    }
    *reinterpret_cast<V*>(ds + i) = os;
    if (dt != nullptr) *reinterpret_cast<V*>(dt + i) = ot;
  }
  for (int64_t i = nvec * VEC + tid; i < n; i += stride) {
    const T* rs = stats + idiv(i, cols) * kDistillStats;
    const DistillRow<T> dr{rs[kMaxS], rs[kLogZS], rs[kMaxT], rs[kLogZT], rs[kKL], inv_t};
    T a, b;
    dr.reduced_grads(static_cast<T>(s[i]), static_cast<T>(t[i]), g, a, b);
    ds[i] = static_cast<scalar_t>(a);
    if (dt != nullptr) dt[i] = static_cast<scalar_t>(b);
  }
}

// Backward of reduction "none", per row: G_j = grad_j * scale; A = sum G_j p_j, B = sum G_j p_j (r_j + 1) (terms with
// p_j == 0 are 0); ds_j = -inv_t (G_j p_j - q_j A), dt_j = inv_t (G_j p_j (r_j + 1) - p_j B) (0 where p_j == 0).
template <typename T>
struct NoneTerms {
  T gp;   // G p (dr.zero_term() where p == 0)
  T gpr;  // G p (r + 1) (dr.zero_term() where p == 0)
  T p;
};

template <typename T>
__device__ __forceinline__ NoneTerms<T> none_terms(const DistillRow<T>& dr, T s, T t, T g) {
  const T p = gexp(dr.log_p(t));
  if (p == T(0)) return {dr.zero_term(), dr.zero_term(), p};
  const T gp = g * p;
  return {gp, gp * (dr.ratio(s, t) + T(1)), p};
}

template <typename scalar_t>
__global__ void __launch_bounds__(kMaxBlock, 1) distill_backward_none_kernel(
    const scalar_t* __restrict__ grad,                    // [rows, cols]
    const scalar_t* __restrict__ s,                       // [rows, cols]
    const scalar_t* __restrict__ t,                       // [rows, cols]
    const at::opmath_type<scalar_t>* __restrict__ stats,  // [rows, 5]
    scalar_t* __restrict__ ds,                            // [rows, cols]
    scalar_t* __restrict__ dt,                            // [rows, cols] or nullptr
    int64_t rows, int64_t cols, int G,
    bool vec,                                             // 16-byte accesses (aligned, cols % VEC == 0)
    at::opmath_type<scalar_t> g_scale, at::opmath_type<scalar_t> inv_t) {
  using T = at::opmath_type<scalar_t>;
  using V = Vec16<scalar_t>;
  constexpr int VEC = V::kSize;
  __shared__ T red_warp[32];
  const RowGroup grp(G, 1);
  const int64_t nrb = ceil_div_dev(rows, grp.rpb);
  for (int64_t rb = blockIdx.x; rb < nrb; rb += gridDim.x) {
    const int64_t row = rb * grp.rpb + grp.sub;
    const bool valid = row < rows;
    const int64_t off = valid ? row * cols : 0;
    const int64_t units = valid ? (vec ? cols / VEC : cols) : 0;
    const scalar_t* gr = grad + off;
    const scalar_t* sr = s + off;
    const scalar_t* tr = t + off;
    DistillRow<T> dr{T(0), T(0), T(0), T(0), T(0), inv_t};
    if (valid) {
      const T* rs = stats + row * kDistillStats;
      dr = DistillRow<T>{rs[kMaxS], rs[kLogZS], rs[kMaxT], rs[kLogZT], rs[kKL], inv_t};
    }
    T A = 0, B = 0;
    for (int64_t u = grp.tg; u < units; u += G) {
      if (vec) {
        const V gv = *reinterpret_cast<const V*>(gr + u * VEC);
        const V sv = *reinterpret_cast<const V*>(sr + u * VEC);
        const V tv = *reinterpret_cast<const V*>(tr + u * VEC);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const NoneTerms<T> nt = none_terms(dr, static_cast<T>(sv.val[j]), static_cast<T>(tv.val[j]),
                                             static_cast<T>(gv.val[j]) * g_scale);
          A += nt.gp;
          B += nt.gpr;
        }
      } else {
        const NoneTerms<T> nt =
            none_terms(dr, static_cast<T>(sr[u]), static_cast<T>(tr[u]), static_cast<T>(gr[u]) * g_scale);
        A += nt.gp;
        B += nt.gpr;
      }
    }
    A = group_reduce(A, G, 1, red_warp, red_warp, SumOp());
    B = group_reduce(B, G, 1, red_warp, red_warp, SumOp());
    scalar_t* dsr = ds + off;
    scalar_t* dtr = dt != nullptr ? dt + off : nullptr;
    for (int64_t u = grp.tg; u < units; u += G) {
      if (vec) {
        const V gv = *reinterpret_cast<const V*>(gr + u * VEC);
        const V sv = *reinterpret_cast<const V*>(sr + u * VEC);
        const V tv = *reinterpret_cast<const V*>(tr + u * VEC);
        V os, ot;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const T sj = static_cast<T>(sv.val[j]);
          const NoneTerms<T> nt = none_terms(dr, sj, static_cast<T>(tv.val[j]), static_cast<T>(gv.val[j]) * g_scale);
          const T q = gexp(dr.log_q(sj));
          os.val[j] = static_cast<scalar_t>(-inv_t * (nt.gp - q * A));
          ot.val[j] = static_cast<scalar_t>(nt.p == T(0) ? dr.zero_term() : inv_t * (nt.gpr - nt.p * B));
        }
        *reinterpret_cast<V*>(dsr + u * VEC) = os;
        if (dtr != nullptr) *reinterpret_cast<V*>(dtr + u * VEC) = ot;
      } else {
        const T sj = static_cast<T>(sr[u]);
        const NoneTerms<T> nt = none_terms(dr, sj, static_cast<T>(tr[u]), static_cast<T>(gr[u]) * g_scale);
        const T q = gexp(dr.log_q(sj));
        dsr[u] = static_cast<scalar_t>(-inv_t * (nt.gp - q * A));
        if (dtr != nullptr) dtr[u] = static_cast<scalar_t>(nt.p == T(0) ? dr.zero_term() : inv_t * (nt.gpr - nt.p * B));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Host side: launch plans.
// ---------------------------------------------------------------------------------------------------------------
// Probe for the device's cluster properties: whether this file's code for the device was compiled for sm_90+
// (ptxVersion >= 90: the cluster code is compiled in) and the largest cluster of 1024-thread blocks with the full
// shared-memory budget that can be co-scheduled (the rows kernels' worst case: one block per SM).
__global__ void __launch_bounds__(kMaxBlock, 1) cluster_probe_kernel() {}

// Plan inputs of a device, queried once per device (std::call_once), never changed afterwards: a launch never feeds
// back into a plan, so a failed launch throws and the next call plans (and sums) exactly as before.
//   GLO_SOFTMAX_CLUSTERS=0        no clusters (tests of the cluster-free paths)
//   GLO_SOFTMAX_MAX_CLUSTER=N     clusters of at most N blocks (rounded down to a power of two)
//   GLO_SOFTMAX_EXCHANGE=sync|mbarrier   how the blocks of a cluster exchange their partial results (default
//                                 mbarrier: DSMEM stores with mbarriers, see cluster_exchange; sync: cluster barriers)
// Both are read when the device is first used.
constexpr int kMaxDevices = 64;

struct DeviceState {
  std::once_flag once;
  SoftmaxDeviceProps props;
  SoftmaxPlanOptions opts;
};
DeviceState g_devices[kMaxDevices];

void query_device(int device, DeviceState& st) {
  SoftmaxDeviceProps d;
  SoftmaxPlanOptions o;
  int v = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device));
  d.sm_count = v;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  d.smem_optin = v;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrClusterLaunch, device));
  cudaFuncAttributes fa{};
  C10_CUDA_CHECK(cudaFuncGetAttributes(&fa, cluster_probe_kernel));
  d.cluster_launch = v != 0 && fa.ptxVersion >= 90;
  const char* env = std::getenv("GLO_SOFTMAX_CLUSTERS");
  o.allow_clusters = env == nullptr || std::strcmp(env, "0") != 0;
  if (const char* ex = std::getenv("GLO_SOFTMAX_EXCHANGE")) {
    TORCH_CHECK(std::strcmp(ex, "sync") == 0 || std::strcmp(ex, "mbarrier") == 0,
                "glo_kernels: softmax: GLO_SOFTMAX_EXCHANGE must be 'sync' or 'mbarrier', got '", ex, "'");
    o.exchange = std::strcmp(ex, "mbarrier") == 0 ? SoftmaxExchange::kMbarrier : SoftmaxExchange::kSync;
  }
  if (const char* mc = std::getenv("GLO_SOFTMAX_MAX_CLUSTER")) {
    const int n = std::atoi(mc);
    TORCH_CHECK(n >= 1, "glo_kernels: softmax: GLO_SOFTMAX_MAX_CLUSTER must be a positive integer, got '", mc, "'");
    o.max_cluster = n;
  }
  if (d.cluster_launch) {
    d.max_cluster_portable = 8;
    d.max_cluster_nonportable = kMaxClusterLimit;
    const int smem = static_cast<int>(smem_budget_one_block(d));
    C10_CUDA_CHECK(cudaFuncSetAttribute(cluster_probe_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    C10_CUDA_CHECK(cudaFuncSetAttribute(cluster_probe_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(kMaxClusterLimit, 1, 1);
    cfg.blockDim = dim3(kMaxBlock, 1, 1);
    cfg.dynamicSmemBytes = static_cast<size_t>(smem);
    int c = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxPotentialClusterSize(&c, cluster_probe_kernel, &cfg));
    d.max_cluster_active = std::max(1, c);
  }
  st.props = d;
  st.opts = o;
}

const DeviceState& device_state(int device) {
  TORCH_CHECK(device >= 0 && device < kMaxDevices, "glo_kernels: softmax: device index ", device, " out of range");
  DeviceState& st = g_devices[device];
  std::call_once(st.once, [&] { query_device(device, st); });  // an exception leaves the flag unset: retried
  return st;
}

SoftmaxPlan plan_for(int device, int64_t rows, int64_t size, int elem_bytes, bool backward) {
  const DeviceState& st = device_state(device);
  return plan_softmax(rows, size, elem_bytes, backward, st.props, st.opts);
}

StridedPlan strided_plan_for(int device, const SoftmaxGeometry& g, int elem_bytes, bool backward) {
  return plan_strided(g.outer, g.size, g.inner, elem_bytes, backward, device_state(device).props);
}

// The kernel attributes a cached-rows kernel needs on a device, set once per (kernel, device) (`once` is the calling
// instantiation's own flags): the shared-memory limit raised to the plans' budget, and clusters above the portable size
// allowed when the device's plans use them.
// Tiles kernels: the limit is smem_budget_tiles() (their static shared memory is larger) and clusters are not used.
template <typename... KArgs>
void prepare_kernel(void (*kernel)(KArgs...), std::once_flag (&once)[kMaxDevices], int device, bool tiles = false) {
  const DeviceState& st = device_state(device);
  std::call_once(once[device], [&] {
    const int smem = static_cast<int>(tiles ? smem_budget_tiles(st.props) : smem_budget_one_block(st.props));
    if (smem > 48 * 1024) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    }
    if (!tiles && max_cluster_for(st.props, st.opts) > st.props.max_cluster_portable) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    }
  });
}

// Launches a cached-rows kernel with plan p (args: the kernel's arguments before (G, C, VS)): plainly, or with a
// cluster of C blocks along x. Any error throws; nothing is remembered (the next call makes the same plan).
template <typename... KArgs, typename... Args>
void launch_cached(void (*kernel)(KArgs...), std::once_flag (&once)[kMaxDevices], const SoftmaxPlan& p, int device,
                   cudaStream_t stream, Args... args) {
  prepare_kernel(kernel, once, device);
  if (p.C == 1) {
    kernel<<<p.grid, p.block, static_cast<size_t>(p.smem), stream>>>(args..., p.G, p.C, p.vs);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(p.grid, 1, 1);
  cfg.blockDim = dim3(p.block, 1, 1);
  cfg.dynamicSmemBytes = static_cast<size_t>(p.smem);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(p.C);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  C10_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args..., p.G, p.C, p.vs));
}

unsigned strided_grid(int64_t n) { return grid_cap(ceil_div(n, kThreads)); }

// x in scalar_t, y in out_t (a dtype, or a fused pair of fused_dtype_pair).
template <typename scalar_t, typename out_t>
void softmax_forward_typed(const at::Tensor& x, at::Tensor& y, SoftmaxGeometry g, const Temperature& temp, bool log,
                           int device, cudaStream_t stream) {
  using T = at::opmath_type<scalar_t>;
  constexpr int VEC = Vec16<scalar_t>::kSize;  // (chunks sized by the type read)
  const InvTemp<T> it = make_inv_temp<T>(temp);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  out_t* yp = y.mutable_data_ptr<out_t>();
  if (g.inner == 1) {
    const int64_t rows = g.outer, size = g.size;
    const bool vec = aligned16(xp) && aligned16(yp) && size % VEC == 0;
    const SoftmaxPlan p = plan_for(device, rows, size, static_cast<int>(sizeof(scalar_t)), false);
    if (p.path == SoftmaxPath::kCachedRows) {
      constexpr int VPT = fwd_vpt(sizeof(scalar_t));
      if (p.exchange == SoftmaxExchange::kMbarrier) {
        static std::once_flag once[kMaxDevices];
        launch_cached(softmax_rows_forward_kernel<scalar_t, out_t, VPT, kXchgMbarrier>, once, p, device, stream, xp,
                      yp, rows, size, vec, log, it);
      } else {
        static std::once_flag once[kMaxDevices];
        launch_cached(softmax_rows_forward_kernel<scalar_t, out_t, VPT, kXchgSync>, once, p, device, stream, xp, yp,
                      rows, size, vec, log, it);
      }
      return;
    }
    // rows longer than any cached plan: one 1024-thread block per row, two reads
    softmax_online_forward_kernel<scalar_t, out_t><<<p.grid, p.block, 0, stream>>>(
        xp, yp, rows, size, nullptr, 1, p.G, vec, log, it);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else {
    const StridedPlan p = strided_plan_for(device, g, static_cast<int>(sizeof(scalar_t)), false);
    if (p.path == SoftmaxPath::kTiles) {  // x read once
      const bool vec = aligned16(xp) && aligned16(yp) && g.inner % VEC == 0;
      static std::once_flag once[kMaxDevices];
      prepare_kernel(softmax_tiles_forward_kernel<scalar_t, out_t>, once, device, true);
      softmax_tiles_forward_kernel<scalar_t, out_t><<<p.grid, p.block, static_cast<size_t>(p.smem), stream>>>(
          xp, yp, g.outer, static_cast<int>(g.size), static_cast<int>(g.inner), vec, log, it, p.W);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    // a dim too long for a tile: one thread per column, two reads
    softmax_strided_forward_kernel<scalar_t, out_t><<<p.grid, p.block, 0, stream>>>(
        xp, yp, g.outer, g.size, g.inner, nullptr, 1, log, it);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

// grad and y in scalar_t (the forward's output dtype), dx in dx_t (its input dtype).
template <typename scalar_t, typename dx_t>
void softmax_backward_typed(const at::Tensor& grad, const at::Tensor& y, at::Tensor& dx, SoftmaxGeometry g,
                            const Temperature& temp, bool log, int device, cudaStream_t stream) {
  using T = at::opmath_type<scalar_t>;
  constexpr int VEC = Vec16<scalar_t>::kSize;
  const InvTemp<T> it = make_inv_temp<T>(temp);
  const scalar_t* gp = grad.const_data_ptr<scalar_t>();
  const scalar_t* yp = y.const_data_ptr<scalar_t>();
  dx_t* dp = dx.mutable_data_ptr<dx_t>();
  if (g.inner == 1) {
    const int64_t rows = g.outer, size = g.size;
    const bool vec = aligned16(gp) && aligned16(yp) && aligned16(dp) && size % VEC == 0;
    const SoftmaxPlan p = plan_for(device, rows, size, static_cast<int>(sizeof(scalar_t)), true);
    if (p.path == SoftmaxPath::kCachedRows) {
      if (p.exchange == SoftmaxExchange::kMbarrier) {
        static std::once_flag once[kMaxDevices];
        launch_cached(softmax_rows_backward_kernel<scalar_t, dx_t, kBwdVPT, kXchgMbarrier>, once, p, device, stream,
                      gp, yp, dp, rows, size, vec, log, it);
      } else {
        static std::once_flag once[kMaxDevices];
        launch_cached(softmax_rows_backward_kernel<scalar_t, dx_t, kBwdVPT, kXchgSync>, once, p, device, stream, gp,
                      yp, dp, rows, size, vec, log, it);
      }
      return;
    }
    // rows longer than any cached plan: one 1024-thread block per row, two reads
    softmax_online_backward_kernel<scalar_t, dx_t><<<p.grid, p.block, 0, stream>>>(
        gp, yp, dp, rows, size, nullptr, 1, p.G, vec, log, it);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else {
    const StridedPlan p = strided_plan_for(device, g, static_cast<int>(sizeof(scalar_t)), true);
    if (p.path == SoftmaxPath::kTiles) {  // dy and y read once
      const bool vec = aligned16(gp) && aligned16(yp) && aligned16(dp) && g.inner % VEC == 0;
      static std::once_flag once[kMaxDevices];
      prepare_kernel(softmax_tiles_backward_kernel<scalar_t, dx_t>, once, device, true);
      softmax_tiles_backward_kernel<scalar_t, dx_t><<<p.grid, p.block, static_cast<size_t>(p.smem), stream>>>(
          gp, yp, dp, g.outer, static_cast<int>(g.size), static_cast<int>(g.inner), vec, log, it, p.W);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    // a dim too long for a tile: one thread per column, two reads
    softmax_strided_backward_kernel<scalar_t, dx_t><<<p.grid, p.block, 0, stream>>>(
        gp, yp, dp, g.outer, g.size, g.inner, nullptr, 1, log, it);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

// f(in_t{}, out_t{}) for a softmax dtype pair (forward: x in `in`, y in `out`; backward: dx in `in`, dy and y in
// `out`): one dtype, or a fused widening pair (fused_dtype_pair of glo/softmax_impls.h).
template <class F>
void dispatch_dtype_pair(at::ScalarType in, at::ScalarType out, const F& f) {
  if (in == out) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in, "glo_softmax_cuda",
                                    [&] { f(scalar_t{}, scalar_t{}); });
  } else if (in == at::kBFloat16 && out == at::kFloat) {
    f(c10::BFloat16{}, float{});
  } else if (in == at::kHalf && out == at::kFloat) {
    f(c10::Half{}, float{});
  } else {
    TORCH_CHECK(false, "glo_kernels: softmax: no fused CUDA kernel for ", in, " -> ", out,
                " (softmax_impls.h casts first)");
  }
}

// Grouped softmax offsets (0, g0, g0 + g1, ..., size) on the device, cached per (device, offsets) for the life of the
// process: the first call with a group list copies it to the device (one synchronous copy), every later call finds it,
// so there is no host synchronization per call and calls can be captured in a CUDA graph (after one call outside the
// capture). At most kMaxCachedGroupLists lists are kept; beyond that a list is copied on each call (as before the
// cache), on the current stream.
constexpr size_t kMaxCachedGroupLists = 1024;

at::Tensor device_offsets(const at::Tensor& host_offsets, const c10::Device& device, const char* op) {
  static std::mutex mu;
  // Never destroyed (device memory must not be freed during static destruction, after the CUDA runtime is gone).
  static auto& cache = *new std::map<std::pair<int, std::vector<int64_t>>, at::Tensor>();
  const int64_t* h = host_offsets.const_data_ptr<int64_t>();
  std::pair<int, std::vector<int64_t>> key(device.index(), std::vector<int64_t>(h, h + host_offsets.numel()));
  {
    const std::lock_guard<std::mutex> lock(mu);
    const auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  TORCH_CHECK(c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None, "glo_kernels.", op,
              ": the first call with a new 'group_sizes' copies the group offsets to the device, which cannot be done "
              "while a CUDA graph is captured: call it once with these group sizes before the capture");
  at::Tensor d = host_offsets.to(device);  // synchronous: complete before any stream reads it
  const std::lock_guard<std::mutex> lock(mu);
  if (cache.size() < kMaxCachedGroupLists) cache.emplace(std::move(key), d);  // (a concurrent twin is kept instead)
  return d;
}

struct CudaSoftmaxKernels {
  static void softmax_forward(const at::Tensor& x, at::Tensor& y, SoftmaxGeometry g, const Temperature& temp,
                              bool log) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    const int device = x.device().index();
    dispatch_dtype_pair(x.scalar_type(), y.scalar_type(), [&](auto in, auto out) {
      softmax_forward_typed<decltype(in), decltype(out)>(x, y, g, temp, log, device, stream);
    });
  }

  static void softmax_backward(const at::Tensor& grad, const at::Tensor& y, at::Tensor& dx, SoftmaxGeometry g,
                               const Temperature& temp, bool log) {
    const c10::cuda::CUDAGuard guard(grad.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    const int device = grad.device().index();
    dispatch_dtype_pair(dx.scalar_type(), grad.scalar_type(), [&](auto in, auto out) {
      softmax_backward_typed<decltype(out), decltype(in)>(grad, y, dx, g, temp, log, device, stream);
    });
  }

  static void grouped_softmax_forward(const at::Tensor& x, at::Tensor& y, SoftmaxGeometry g,
                                      const at::Tensor& offsets, const Temperature& temp) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    const int64_t ngroups = offsets.numel() - 1;
    const at::Tensor dev_offsets = device_offsets(offsets, x.device(), "grouped_softmax");
    const int64_t* op = dev_offsets.const_data_ptr<int64_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_grouped_softmax_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      const InvTemp<T> it = make_inv_temp<T>(temp);
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      if (g.inner == 1) {
        RowPlan p;
        plan_rows(g.outer * ngroups, 32, p);  // one warp per (row, group)
        softmax_online_forward_kernel<scalar_t, scalar_t><<<p.grid, p.block, 0, stream>>>(
            xp, yp, g.outer, g.size, op, ngroups, p.G, false, false, it);
      } else {
        const int64_t n = g.outer * ngroups * g.inner;
        softmax_strided_forward_kernel<scalar_t, scalar_t><<<strided_grid(n), kThreads, 0, stream>>>(
            xp, yp, g.outer, g.size, g.inner, op, ngroups, false, it);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static void grouped_softmax_backward(const at::Tensor& grad, const at::Tensor& y, at::Tensor& dx, SoftmaxGeometry g,
                                       const at::Tensor& offsets, const Temperature& temp) {
    const c10::cuda::CUDAGuard guard(grad.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    const int64_t ngroups = offsets.numel() - 1;
    const at::Tensor dev_offsets = device_offsets(offsets, grad.device(), "grouped_softmax_backward");
    const int64_t* op = dev_offsets.const_data_ptr<int64_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "glo_grouped_softmax_backward_cuda",
                                    [&] {
      using T = at::opmath_type<scalar_t>;
      const InvTemp<T> it = make_inv_temp<T>(temp);
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const scalar_t* yp = y.const_data_ptr<scalar_t>();
      scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
      if (g.inner == 1) {
        RowPlan p;
        plan_rows(g.outer * ngroups, 32, p);
        softmax_online_backward_kernel<scalar_t, scalar_t><<<p.grid, p.block, 0, stream>>>(
            gp, yp, dp, g.outer, g.size, op, ngroups, p.G, false, false, it);
      } else {
        const int64_t n = g.outer * ngroups * g.inner;
        softmax_strided_backward_kernel<scalar_t, scalar_t><<<strided_grid(n), kThreads, 0, stream>>>(
            gp, yp, dp, g.outer, g.size, g.inner, op, ngroups, false, it);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static void distill_forward(const at::Tensor& s, const at::Tensor& t, at::Tensor& stats, at::Tensor& loss_none,
                              int64_t rows, int64_t cols, double temperature) {
    const c10::cuda::CUDAGuard guard(s.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "glo_distillation_loss_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      constexpr int VEC = Vec16<scalar_t>::kSize;
      const T inv_t = T(1) / static_cast<T>(temperature);
      const T t2 = static_cast<T>(temperature * temperature);
      const scalar_t* sp = s.const_data_ptr<scalar_t>();
      const scalar_t* tp = t.const_data_ptr<scalar_t>();
      scalar_t* lp = loss_none.defined() ? loss_none.mutable_data_ptr<scalar_t>() : nullptr;
      const bool vec = aligned16(sp) && aligned16(tp) && (lp == nullptr || aligned16(lp)) && cols % VEC == 0;
      const int64_t units = vec ? cols / VEC : cols;
      RowPlan p;
      plan_rows(rows, std::min<int64_t>(ceil_div(units, kDistillUnitsPerThread), kMaxBlock), p);
      distill_forward_kernel<scalar_t><<<p.grid, p.block, 0, stream>>>(
          sp, tp, stats.mutable_data_ptr<T>(), lp, rows, cols, p.G, vec, inv_t, t2);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static void distill_backward(const at::Tensor& grad, const at::Tensor& s, const at::Tensor& t,
                               const at::Tensor& stats, at::Tensor& ds, const at::Tensor& dt_or_undefined,
                               int64_t rows, int64_t cols, double temperature, bool none, double scale) {
    const c10::cuda::CUDAGuard guard(s.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "glo_distillation_loss_backward_cuda",
                                    [&] {
      using T = at::opmath_type<scalar_t>;
      constexpr int VEC = Vec16<scalar_t>::kSize;
      const T inv_t = T(1) / static_cast<T>(temperature);
      const scalar_t* sp = s.const_data_ptr<scalar_t>();
      const scalar_t* tp = t.const_data_ptr<scalar_t>();
      const T* stp = stats.const_data_ptr<T>();
      scalar_t* dsp = ds.mutable_data_ptr<scalar_t>();
      scalar_t* dtp = dt_or_undefined.defined() ? dt_or_undefined.mutable_data_ptr<scalar_t>() : nullptr;
      const bool aligned = aligned16(sp) && aligned16(tp) && aligned16(dsp) && (dtp == nullptr || aligned16(dtp));
      if (none) {
        const scalar_t* gp = grad.const_data_ptr<scalar_t>();
        const bool vec = aligned && aligned16(gp) && cols % VEC == 0;
        const int64_t units = vec ? cols / VEC : cols;
        RowPlan p;
        plan_rows(rows, std::min<int64_t>(ceil_div(units, kDistillUnitsPerThread), kMaxBlock), p);
        distill_backward_none_kernel<scalar_t><<<p.grid, p.block, 0, stream>>>(
            gp, sp, tp, stp, dsp, dtp, rows, cols, p.G, vec, static_cast<T>(scale), inv_t);
      } else {
        const int64_t n = rows * cols;
        const int64_t nvec = aligned && cols % VEC == 0 ? n / VEC : 0;
        distill_backward_reduced_kernel<scalar_t>
            <<<grid_cap(ceil_div(std::max(nvec, n - nvec * VEC), kThreads)), kThreads, 0, stream>>>(
                grad.const_data_ptr<T>(), sp, tp, stp, dsp, dtp, n, cols, nvec, scale, inv_t);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
};

}  // namespace
}  // namespace glo

TORCH_LIBRARY_IMPL(glo_kernels, CUDA, m) { GLO_REGISTER_SOFTMAX_OPS(m, ::glo::CudaSoftmaxKernels); }

namespace {
// Debugging hook: the plan inputs of a CUDA device as this file queried them (tests/test_cuda.py feeds them to
// glo_kernels_debug::softmax_plan): [sm_count, smem_optin, cluster_launch, max_cluster_portable,
// max_cluster_nonportable, max_cluster_active, allow_clusters, max_cluster, exchange (0 sync, 1 mbarrier)].
std::vector<int64_t> softmax_device_props_hook(int64_t device) {
  const int count = static_cast<int>(c10::cuda::device_count());
  TORCH_CHECK(device >= 0 && device < count, "glo_kernels_debug.softmax_device_props: argument 'device' must be a CUDA "
              "device index below ", count, ", got ", device);
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const ::glo::DeviceState& st = ::glo::device_state(static_cast<int>(device));
  const auto& d = st.props;
  return {d.sm_count, d.smem_optin, d.cluster_launch, d.max_cluster_portable, d.max_cluster_nonportable,
          d.max_cluster_active, st.opts.allow_clusters, st.opts.max_cluster, static_cast<int64_t>(st.opts.exchange)};
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(glo_kernels_debug, m) {
  m.def("softmax_device_props(int device) -> int[]", &softmax_device_props_hook);
}
