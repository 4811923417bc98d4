// Softmax / log-softmax along a strided dim (inner > 1): tiles held in shared memory (x read once), or one thread
// per column for long dims and grouped softmax. Paths and plans: csrc/cuda/softmax.cu.
#pragma once

#include "softmax_device.cuh"

namespace glo {
namespace {

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

}  // namespace
}  // namespace glo
