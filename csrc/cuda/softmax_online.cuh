// Softmax / log-softmax along a contiguous dim, online (max, sum) pass then write pass: rows too long to cache, and
// grouped softmax (a row group per (row, group)). Paths and plans: csrc/cuda/softmax.cu.
#pragma once

#include "softmax_device.cuh"

namespace glo {
namespace {

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

}  // namespace
}  // namespace glo
