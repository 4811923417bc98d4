// Device building blocks of the softmax family's CUDA kernels: limits and NaN-skipping max, 1 / T, row-group
// reductions (warp butterfly, block, thread-block cluster), the mbarrier cluster exchange, row groups, cached-row
// chunks and vector stores. The kernels are softmax_rows.cuh, softmax_online.cuh, softmax_strided.cuh and
// distillation.cuh; csrc/cuda/softmax.cu (their one translation unit) plans and launches them.
#pragma once

#include <ATen/OpMathType.h>
#include <cooperative_groups.h>

#include <cstdint>

#include "common.cuh"
#include "glo/softmax.h"
#include "glo/softmax_impls.h"
#include "glo/softmax_plan.h"

namespace glo {
namespace {

namespace cg = cooperative_groups;

// Launch-plan constants and helpers (kThreads, kMaxBlock, fwd_vpt, kBwdVPT, RowPlan, plan_rows,
// plan_softmax): pure host code in glo/softmax_plan.h, unit-tested on the CPU.
using namespace ::glo::softmax_plan;


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

}  // namespace
}  // namespace glo
