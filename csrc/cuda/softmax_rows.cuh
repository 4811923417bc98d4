// Softmax / log-softmax along a contiguous dim with the row cached on chip (registers, shared memory, a cluster's
// distributed shared memory): x read from memory once. Paths and plans: csrc/cuda/softmax.cu.
#pragma once

#include "softmax_device.cuh"

namespace glo {
namespace {

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

}  // namespace
}  // namespace glo
