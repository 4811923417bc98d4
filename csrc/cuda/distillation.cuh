// Distillation loss kernels: one online pass over student and teacher for the row statistics (and the pointwise
// loss of reduction "none"), and the backward, element-wise (reduced) or a row group per row ("none").
// The math per element is DistillRow (glo/softmax.h); the contract docs/softmax_contract.md.
#pragma once

#include "softmax_device.cuh"

namespace glo {
namespace {

constexpr int kDistillUnitsPerThread = 8;  // distillation row loops: a row group has about units / 8 threads

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
    const DistillRow<T> dr = DistillRow<T>::from_sums(ms, logzs, mt, logzt, zt, a, inv_t);
    if (valid && grp.tg == 0) dr.store(stats + row * kDistillStats);
    if (loss != nullptr && valid) {
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
  vec_loop<VEC, 0>(n, nvec, [&](int64_t i) {
    const DistillRow<T> dr = DistillRow<T>::load(stats + idiv(i, cols) * kDistillStats, inv_t);
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
  }, [&](int64_t i) {
    const DistillRow<T> dr = DistillRow<T>::load(stats + idiv(i, cols) * kDistillStats, inv_t);
    T a, b;
    dr.reduced_grads(static_cast<T>(s[i]), static_cast<T>(t[i]), g, a, b);
    ds[i] = static_cast<scalar_t>(a);
    if (dt != nullptr) dt[i] = static_cast<scalar_t>(b);
  });
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
    if (valid) dr = DistillRow<T>::load(stats + row * kDistillStats, inv_t);
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

}  // namespace
}  // namespace glo
