// CPU kernels of the softmax family (docs/softmax_contract.md), split across threads with at::parallel_for: one
// thread owns whole rows (or whole column tiles), so every sum has a fixed order and results are bitwise reproducible
// whatever the number of threads.
//
// Rows along a contiguous dim (inner == 1) are read once from memory: an online pass over chunks of kChunk elements
// (in L1) keeps the running (max, sum) and stores exp((x - chunk max) / T) in the output (float32, float64) or a float
// row buffer (16-bit types); a second pass over the row, now in L2, rescales each chunk by exp((chunk max - max) / T)
// / sum. Softmax over a strided dim (inner > 1) walks tiles of kColTile columns, vectorized across columns.
// Reductions keep kLanes partial results, so that GCC vectorizes them without reassociating a single accumulator.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "glo/cpu_convert.h"
#include "glo/softmax_impls.h"
#include "cpu_dispatch.h"

namespace glo {
GLO_ISA_BEGIN
namespace {

using cpu::kChunk;
using cpu::opmath_t;

constexpr int kLanes = 16;             // partial results of a vectorized reduction
constexpr int64_t kColTile = 64;       // columns of a strided-softmax tile
constexpr int64_t kGrainElems = 1 << 15;

template <class T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// max that skips NaN (one vmaxps): a NaN never becomes the maximum, but it still reaches the sum of exponentials,
// exp(NaN - m) = NaN, which makes its whole row NaN. Only a chunk whose maximum is -inf (nothing but -inf and NaN)
// skips the sum; has_nan() then decides.
template <class T>
GLO_HD T max_skip_nan(T acc, T v) {
  return v > acc ? v : acc;
}

template <class T>
T chunk_max(const T* __restrict x, int64_t n) {
  T acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = kNegInf<T>;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] = max_skip_nan(acc[l], x[j + l]);
  }
  T m = kNegInf<T>;
  for (; j < n; ++j) m = max_skip_nan(m, x[j]);
  for (int l = 0; l < kLanes; ++l) m = max_skip_nan(m, acc[l]);
  return m;
}

template <class T>
bool has_nan(const T* x, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    if (x[j] != x[j]) return true;
  }
  return false;
}

// sum_j a[j] * b[j] (b == nullptr: sum_j a[j]) with kLanes partial sums.
template <class T>
T chunk_dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  T acc[kLanes] = {};
  int64_t j = 0;
  if (b != nullptr) {
    for (; j + kLanes <= n; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) acc[l] += a[j + l] * b[j + l];
    }
  } else {
    for (; j + kLanes <= n; j += kLanes) {
      for (int l = 0; l < kLanes; ++l) acc[l] += a[j + l];
    }
  }
  T s = 0;
  for (; j < n; ++j) s += b != nullptr ? a[j] * b[j] : a[j];
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}

template <class T>
T inv_temperature(const Temperature& temp) {
  const double t = temp.tensor.defined() ? temp.tensor.to(at::kDouble).data_ptr<double>()[0] : temp.value;
  return T(1) / static_cast<T>(t);
}

// ---- one contiguous row (or group) of n elements ----
// in_t: the forward's input dtype (and the backward's dx); out_t: the forward's output dtype (and the backward's dy and
// y). Equal, or a fused widening pair (bfloat16 / float16 -> float: softmax_impls.h fused_dtype_pair), which share
// the opmath type: the kernels load one dtype and store the other, with no separate cast pass.
template <typename in_t, typename out_t = in_t>
struct RowKernels {
  using T = opmath_t<in_t>;
  static_assert(std::is_same_v<T, opmath_t<out_t>>, "a fused dtype pair shares its opmath type");
  static inline volatile T sink_ = 0;  // keeps loads that only bring data into cache

  // softmax / log-softmax of x[0, n) into y; rowbuf: n floats for a 16-bit output (unused otherwise).
  static void forward(const in_t* x, out_t* y, int64_t n, T inv_t, bool log, T* rowbuf, T* chunk_max_buf) {
    alignas(64) T xbuf[kChunk];
    alignas(64) T ebuf[kChunk];
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    T m = kNegInf<T>, s = 0;
    bool nan_row = false;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t base = c * kChunk, cnt = std::min(kChunk, n - base);
      const T* xs = cpu::load_chunk(x + base, xbuf, cnt);
      const T mn = max_skip_nan(m, chunk_max(xs, cnt));
      T* es = log ? ebuf : (cpu::kIsOpmath<out_t> ? reinterpret_cast<T*>(y + base) : rowbuf + base);
      chunk_max_buf[c] = mn;
      if (mn == kNegInf<T>) {  // only -inf (and NaN) so far: no contribution; the row is NaN if it stays so
        if (!log) std::fill(es, es + cnt, T(0));
        nan_row = nan_row || has_nan(xs, cnt);
        m = mn;
        continue;
      }
      s = m == kNegInf<T> ? T(0) : s * gexp((m - mn) * inv_t);
      m = mn;
      // Computed in a local buffer (no possible aliasing with x: the loop vectorizes), then kept for the rescale.
      for (int64_t j = 0; j < cnt; ++j) ebuf[j] = gexp((xs[j] - mn) * inv_t);
      s += chunk_dot<T>(ebuf, nullptr, cnt);
      if (!log) std::memcpy(es, ebuf, static_cast<size_t>(cnt) * sizeof(T));
    }
    if (m == kNegInf<T> || nan_row) {  // a row of -inf, or with NaN: NaN, as torch.softmax
      std::fill(y, y + n, static_cast<out_t>(std::numeric_limits<T>::quiet_NaN()));
      return;
    }
    if (log) {
      const T shift = std::log(s);
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t base = c * kChunk, cnt = std::min(kChunk, n - base);
        const T* xs = cpu::load_chunk(x + base, xbuf, cnt);
        T* ys = cpu::out_chunk(y + base, ebuf, x + base);
        for (int64_t j = 0; j < cnt; ++j) ys[j] = (xs[j] - m) * inv_t - shift;
        cpu::store_chunk(ys, y + base, cnt);
      }
      return;
    }
    const T inv_s = T(1) / s;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t base = c * kChunk, cnt = std::min(kChunk, n - base);
      const T cm = chunk_max_buf[c];
      const T f = (cm == kNegInf<T> ? T(0) : gexp((cm - m) * inv_t)) * inv_s;
      if constexpr (cpu::kIsOpmath<out_t>) {
        T* ys = reinterpret_cast<T*>(y + base);
        for (int64_t j = 0; j < cnt; ++j) ys[j] *= f;
      } else {
        T* es = rowbuf + base;
        for (int64_t j = 0; j < cnt; ++j) es[j] *= f;
        cpu::from_opmath(es, y + base, cnt);
      }
    }
  }

  // softmax: dx = y (dy - sum dy y) inv_t;  log-softmax: dx = (dy - exp(y) sum dy) inv_t. dy, y: out_t; dx: in_t.
  static void backward(const out_t* g, const out_t* y, in_t* dx, int64_t n, T inv_t, bool log) {
    alignas(64) T gbuf[kChunk];
    alignas(64) T ybuf[kChunk];
    alignas(64) T dbuf[kChunk];
    T acc = 0, touched = 0;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t base = c * kChunk, cnt = std::min(kChunk, n - base);
      const T* gs = cpu::load_chunk(g + base, gbuf, cnt);
      const T* ys = cpu::load_chunk(y + base, ybuf, cnt);
      if (log) {
        acc += chunk_dot<T>(gs, nullptr, cnt);
        touched += chunk_dot<T>(ys, nullptr, cnt);  // y streams in now, with dy: the second pass finds both in cache
      } else {
        acc += chunk_dot<T>(gs, ys, cnt);
      }
    }
    sink_ = touched;
    // Second pass from the row's end, which the first pass left in the closest cache.
    for (int64_t c = chunks - 1; c >= 0; --c) {
      const int64_t base = c * kChunk, cnt = std::min(kChunk, n - base);
      const T* gs = cpu::load_chunk(g + base, gbuf, cnt);
      const T* ys = cpu::load_chunk(y + base, ybuf, cnt);
      T* ds = dbuf;  // a local buffer: the loops below vectorize without alias checks
      if (log) {
        for (int64_t j = 0; j < cnt; ++j) ds[j] = (gs[j] - gexp(ys[j]) * acc) * inv_t;
      } else {
        for (int64_t j = 0; j < cnt; ++j) ds[j] = ys[j] * (gs[j] - acc) * inv_t;
      }
      cpu::store_chunk(ds, dx + base, cnt);
    }
  }
};

// ---- a tile of w <= kColTile columns of a strided softmax: element (r, c) at p[r * stride + c], r < n ----
// (in_t, out_t as RowKernels)
template <typename in_t, typename out_t = in_t>
struct ColKernels {
  using T = opmath_t<in_t>;
  static_assert(std::is_same_v<T, opmath_t<out_t>>, "a fused dtype pair shares its opmath type");

  template <typename scalar_t>
  static void load(const scalar_t* p, T* dst, int64_t w) { cpu::to_opmath(p, dst, w); }

  static void forward(const in_t* x, out_t* y, int64_t n, int64_t stride, int64_t w, T inv_t, bool log) {
    alignas(64) T m[kColTile], s[kColTile], v[kColTile], o[kColTile];
    std::fill(m, m + w, kNegInf<T>);
    std::fill(s, s + w, T(0));
    for (int64_t r = 0; r < n; ++r) {
      load(x + r * stride, v, w);
      for (int64_t c = 0; c < w; ++c) m[c] = max_skip_nan(m[c], v[c]);  // NaN reaches the sum below
    }
    for (int64_t r = 0; r < n; ++r) {
      load(x + r * stride, v, w);
      for (int64_t c = 0; c < w; ++c) s[c] += gexp((v[c] - m[c]) * inv_t);
    }
    for (int64_t c = 0; c < w; ++c) s[c] = log ? std::log(s[c]) : T(1) / s[c];
    for (int64_t r = 0; r < n; ++r) {
      load(x + r * stride, v, w);
      if (log) {
        for (int64_t c = 0; c < w; ++c) o[c] = (v[c] - m[c]) * inv_t - s[c];
      } else {
        for (int64_t c = 0; c < w; ++c) o[c] = gexp((v[c] - m[c]) * inv_t) * s[c];
      }
      cpu::from_opmath(o, y + r * stride, w);
    }
  }

  static void backward(const out_t* g, const out_t* y, in_t* dx, int64_t n, int64_t stride, int64_t w,
                       T inv_t, bool log) {
    alignas(64) T acc[kColTile], gv[kColTile], yv[kColTile], o[kColTile];
    std::fill(acc, acc + w, T(0));
    for (int64_t r = 0; r < n; ++r) {
      load(g + r * stride, gv, w);
      if (log) {
        for (int64_t c = 0; c < w; ++c) acc[c] += gv[c];
      } else {
        load(y + r * stride, yv, w);
        for (int64_t c = 0; c < w; ++c) acc[c] += gv[c] * yv[c];
      }
    }
    for (int64_t r = 0; r < n; ++r) {
      load(g + r * stride, gv, w);
      load(y + r * stride, yv, w);
      if (log) {
        for (int64_t c = 0; c < w; ++c) o[c] = (gv[c] - gexp(yv[c]) * acc[c]) * inv_t;
      } else {
        for (int64_t c = 0; c < w; ++c) o[c] = yv[c] * (gv[c] - acc[c]) * inv_t;
      }
      cpu::from_opmath(o, dx + r * stride, w);
    }
  }
};

// Runs body(segment_offset, segment_size) over every softmax segment of a [outer, size, inner] tensor: each row
// (inner == 1) or column tile (inner > 1) split at the group offsets (one group [0, size) for a plain softmax).
// body_row(row_ptr_offset, n) for inner == 1; body_cols(ptr_offset, n, w) for inner > 1.
template <class RowBody, class ColBody>
void for_each_segment(const SoftmaxGeometry& g, const int64_t* offsets, int64_t groups, const RowBody& body_row,
                      const ColBody& body_cols) {
  if (g.inner == 1) {
    const int64_t grain = std::max<int64_t>(1, kGrainElems / std::max<int64_t>(g.size, 1));
    at::parallel_for(0, g.outer, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t k = 0; k < groups; ++k) body_row(r * g.size + offsets[k], offsets[k + 1] - offsets[k]);
      }
    });
    return;
  }
  const int64_t tiles = (g.inner + kColTile - 1) / kColTile;
  const int64_t grain = std::max<int64_t>(1, kGrainElems / std::max<int64_t>(g.size * kColTile, 1));
  at::parallel_for(0, g.outer * tiles, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t o = t / tiles, c0 = (t % tiles) * kColTile;
      const int64_t w = std::min(kColTile, g.inner - c0);
      for (int64_t k = 0; k < groups; ++k) {
        body_cols((o * g.size + offsets[k]) * g.inner + c0, offsets[k + 1] - offsets[k], w);
      }
    }
  });
}

template <typename in_t, typename out_t = in_t>
void softmax_forward_impl(const Tensor& x, const Tensor& y, const SoftmaxGeometry& g, const int64_t* offsets,
                          int64_t groups, const Temperature& temp, bool log) {
  using T = opmath_t<in_t>;
  const T inv_t = inv_temperature<T>(temp);
  const in_t* xp = x.const_data_ptr<in_t>();
  out_t* yp = y.mutable_data_ptr<out_t>();
  int64_t longest = 0;
  for (int64_t k = 0; k < groups; ++k) longest = std::max(longest, offsets[k + 1] - offsets[k]);
  for_each_segment(
      g, offsets, groups,
      [&](int64_t off, int64_t n) {
        // Per-thread buffers, reused across the rows of a task.
        thread_local std::vector<T> rowbuf, maxbuf;
        if (!cpu::kIsOpmath<out_t> && static_cast<int64_t>(rowbuf.size()) < longest) rowbuf.resize(longest);
        const int64_t chunks = (longest + kChunk - 1) / kChunk;
        if (static_cast<int64_t>(maxbuf.size()) < chunks) maxbuf.resize(chunks);
        RowKernels<in_t, out_t>::forward(xp + off, yp + off, n, inv_t, log, rowbuf.data(), maxbuf.data());
      },
      [&](int64_t off, int64_t n, int64_t w) {
        ColKernels<in_t, out_t>::forward(xp + off, yp + off, n, g.inner, w, inv_t, log);
      });
}

// grad, y: out_t; dx: in_t (the forward's input dtype).
template <typename in_t, typename out_t = in_t>
void softmax_backward_impl(const Tensor& grad, const Tensor& y, const Tensor& dx, const SoftmaxGeometry& g,
                           const int64_t* offsets, int64_t groups, const Temperature& temp, bool log) {
  using T = opmath_t<in_t>;
  const T inv_t = inv_temperature<T>(temp);
  const out_t* gp = grad.const_data_ptr<out_t>();
  const out_t* yp = y.const_data_ptr<out_t>();
  in_t* dp = dx.mutable_data_ptr<in_t>();
  for_each_segment(
      g, offsets, groups,
      [&](int64_t off, int64_t n) {
        RowKernels<in_t, out_t>::backward(gp + off, yp + off, dp + off, n, inv_t, log);
      },
      [&](int64_t off, int64_t n, int64_t w) {
        ColKernels<in_t, out_t>::backward(gp + off, yp + off, dp + off, n, g.inner, w, inv_t, log);
      });
}

// ---- distillation loss over rows of `cols` elements ----
template <typename scalar_t>
void distill_forward_impl(const Tensor& s, const Tensor& t, const Tensor& stats, const Tensor& loss_none, int64_t rows,
                          int64_t cols, double temperature) {
  using T = opmath_t<scalar_t>;
  const T inv_t = T(1) / static_cast<T>(temperature);
  const T t2 = static_cast<T>(temperature * temperature);
  const scalar_t* sp = s.const_data_ptr<scalar_t>();
  const scalar_t* tp = t.const_data_ptr<scalar_t>();
  T* st = stats.mutable_data_ptr<T>();
  scalar_t* lp = loss_none.defined() ? loss_none.mutable_data_ptr<scalar_t>() : nullptr;
  const int64_t grain = std::max<int64_t>(1, kGrainElems / std::max<int64_t>(cols, 1));
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    alignas(64) T sbuf[kChunk], tbuf[kChunk], es[kChunk], et[kChunk], d[kChunk];
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* srow = sp + r * cols;
      const scalar_t* trow = tp + r * cols;
      // Online statistics: Z_s = sum exp((s - m_s) inv_t), Z_t likewise, A = sum e_t (t - s) (e_t > 0 terms).
      T ms = kNegInf<T>, mt = kNegInf<T>, zs = 0, zt = 0, a = 0;
      bool nan_row = false;
      for (int64_t base = 0; base < cols; base += kChunk) {
        const int64_t cnt = std::min(kChunk, cols - base);
        const T* sv = cpu::load_chunk(srow + base, sbuf, cnt);
        const T* tv = cpu::load_chunk(trow + base, tbuf, cnt);
        const T msn = max_skip_nan(ms, chunk_max(sv, cnt));
        const T mtn = max_skip_nan(mt, chunk_max(tv, cnt));
        if (msn != kNegInf<T>) {
          zs = ms == kNegInf<T> ? T(0) : zs * gexp((ms - msn) * inv_t);
          ms = msn;
          for (int64_t j = 0; j < cnt; ++j) es[j] = gexp((sv[j] - ms) * inv_t);
          zs += chunk_dot<T>(es, nullptr, cnt);
        } else {
          nan_row = nan_row || has_nan(sv, cnt);
          ms = msn;
        }
        if (mtn != kNegInf<T>) {
          const T f = mt == kNegInf<T> ? T(0) : gexp((mt - mtn) * inv_t);
          zt *= f;
          a = f == T(0) ? T(0) : a * f;  // terms whose e_j becomes 0 drop out (an inf term must not give 0 * inf)
          mt = mtn;
          for (int64_t j = 0; j < cnt; ++j) {
            const T e = gexp((tv[j] - mt) * inv_t);
            et[j] = e;
            d[j] = e == T(0) ? T(0) : e * (tv[j] - sv[j]);
          }
          zt += chunk_dot<T>(et, nullptr, cnt);
          a += chunk_dot<T>(d, nullptr, cnt);
        } else {
          nan_row = nan_row || has_nan(tv, cnt);
          mt = mtn;
        }
      }
      // Rows of only -inf give NaN (softmax of such a row is NaN).
      const T nan = std::numeric_limits<T>::quiet_NaN();
      const T logzs = ms == kNegInf<T> || nan_row ? nan : std::log(zs);
      const T logzt = mt == kNegInf<T> || nan_row ? nan : std::log(zt);
      const DistillRow<T> dr = DistillRow<T>::from_sums(ms, logzs, mt, logzt, zt, a, inv_t);
      dr.store(st + r * kDistillStats);
      if (lp != nullptr) {
        for (int64_t base = 0; base < cols; base += kChunk) {
          const int64_t cnt = std::min(kChunk, cols - base);
          const T* sv = cpu::load_chunk(srow + base, sbuf, cnt);
          const T* tv = cpu::load_chunk(trow + base, tbuf, cnt);
          T* out = d;
          for (int64_t j = 0; j < cnt; ++j) out[j] = t2 * dr.pointwise(sv[j], tv[j]);
          cpu::store_chunk(out, lp + r * cols + base, cnt);
        }
      }
    }
  });
}

template <typename scalar_t>
void distill_backward_impl(const Tensor& grad, const Tensor& s, const Tensor& t, const Tensor& stats, const Tensor& ds,
                           const Tensor& dt, int64_t rows, int64_t cols, double temperature, bool none,
                           double scale) {
  using T = opmath_t<scalar_t>;
  const T inv_t = T(1) / static_cast<T>(temperature);
  const scalar_t* sp = s.const_data_ptr<scalar_t>();
  const scalar_t* tp = t.const_data_ptr<scalar_t>();
  const T* st = stats.const_data_ptr<T>();
  scalar_t* dsp = ds.mutable_data_ptr<scalar_t>();
  scalar_t* dtp = dt.defined() ? dt.mutable_data_ptr<scalar_t>() : nullptr;
  const scalar_t* gp = none ? grad.const_data_ptr<scalar_t>() : nullptr;
  const T g_reduced = none ? T(0) : static_cast<T>(static_cast<double>(grad.const_data_ptr<T>()[0]) * scale);
  const T g_scale = static_cast<T>(scale);
  const int64_t grain = std::max<int64_t>(1, kGrainElems / std::max<int64_t>(cols, 1));
  at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
    alignas(64) T sbuf[kChunk], tbuf[kChunk], gbuf[kChunk], o1[kChunk], o2[kChunk];
    for (int64_t r = r0; r < r1; ++r) {
      const DistillRow<T> dr = DistillRow<T>::load(st + r * kDistillStats, inv_t);
      const int64_t row = r * cols;
      T A = 0, B = 0;
      if (none) {  // A = sum G p, B = sum G p (r + 1), G = grad * T^2
        for (int64_t base = 0; base < cols; base += kChunk) {
          const int64_t cnt = std::min(kChunk, cols - base);
          const T* sv = cpu::load_chunk(sp + row + base, sbuf, cnt);
          const T* tv = cpu::load_chunk(tp + row + base, tbuf, cnt);
          const T* gv = cpu::load_chunk(gp + row + base, gbuf, cnt);
          for (int64_t j = 0; j < cnt; ++j) {
            const T p = gexp(dr.log_p(tv[j]));
            const T gpj = p == T(0) ? dr.zero_term() : gv[j] * g_scale * p;
            o1[j] = gpj;
            o2[j] = p == T(0) ? dr.zero_term() : gpj * (dr.ratio(sv[j], tv[j]) + T(1));
          }
          A += chunk_dot<T>(o1, nullptr, cnt);
          B += chunk_dot<T>(o2, nullptr, cnt);
        }
      }
      for (int64_t base = 0; base < cols; base += kChunk) {
        const int64_t cnt = std::min(kChunk, cols - base);
        const T* sv = cpu::load_chunk(sp + row + base, sbuf, cnt);
        const T* tv = cpu::load_chunk(tp + row + base, tbuf, cnt);
        T* dsv = o1;  // local buffers: the loops below vectorize without alias checks
        T* dtv = o2;
        if (none) {
          const T* gv = cpu::load_chunk(gp + row + base, gbuf, cnt);
          for (int64_t j = 0; j < cnt; ++j) {
            const T q = gexp(dr.log_q(sv[j]));
            const T p = gexp(dr.log_p(tv[j]));
            const T gpj = p == T(0) ? dr.zero_term() : gv[j] * g_scale * p;
            dsv[j] = -inv_t * (gpj - q * A);
            dtv[j] = p == T(0) ? dr.zero_term() : inv_t * (gpj * (dr.ratio(sv[j], tv[j]) + T(1)) - p * B);
          }
        } else {
          for (int64_t j = 0; j < cnt; ++j) dr.reduced_grads(sv[j], tv[j], g_reduced, dsv[j], dtv[j]);
        }
        cpu::store_chunk(dsv, dsp + row + base, cnt);
        if (dtp != nullptr) cpu::store_chunk(dtv, dtp + row + base, cnt);
      }
    }
  });
}

#define GLO_SOFTMAX_DISPATCH(TYPE, NAME, ...) AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

// f(in_t{}, out_t{}) for a dtype pair of a softmax forward (in -> out) or backward (dx in `in`, dy and y in `out`):
// one dtype, or a fused widening pair (fused_dtype_pair of softmax_impls.h).
template <class F>
void dispatch_dtype_pair(at::ScalarType in, at::ScalarType out, const char* name, const F& f) {
  if (in == out) {
    GLO_SOFTMAX_DISPATCH(in, "glo_softmax_cpu", [&] { f(scalar_t{}, scalar_t{}); });
  } else if (in == at::kBFloat16 && out == at::kFloat) {
    f(c10::BFloat16{}, float{});
  } else if (in == at::kHalf && out == at::kFloat) {
    f(c10::Half{}, float{});
  } else {
    TORCH_CHECK(false, "glo_kernels: ", name, ": no fused kernel for ", in, " -> ", out,
                " (softmax_impls.h casts first)");
  }
}

struct CpuSoftmaxKernels {
  static void softmax_forward(const Tensor& x, Tensor& y, SoftmaxGeometry g, const Temperature& temp, bool log) {
    const int64_t offsets[2] = {0, g.size};
    dispatch_dtype_pair(x.scalar_type(), y.scalar_type(), "glo_softmax_cpu", [&](auto in, auto out) {
      softmax_forward_impl<decltype(in), decltype(out)>(x, y, g, offsets, 1, temp, log);
    });
  }
  static void softmax_backward(const Tensor& grad, const Tensor& y, Tensor& dx, SoftmaxGeometry g,
                               const Temperature& temp, bool log) {
    const int64_t offsets[2] = {0, g.size};
    dispatch_dtype_pair(dx.scalar_type(), grad.scalar_type(), "glo_softmax_backward_cpu", [&](auto in, auto out) {
      softmax_backward_impl<decltype(in), decltype(out)>(grad, y, dx, g, offsets, 1, temp, log);
    });
  }
  static void grouped_softmax_forward(const Tensor& x, Tensor& y, SoftmaxGeometry g, const Tensor& offsets,
                                      const Temperature& temp) {
    const int64_t* o = offsets.const_data_ptr<int64_t>();
    GLO_SOFTMAX_DISPATCH(x.scalar_type(), "glo_grouped_softmax_cpu", [&] {
      softmax_forward_impl<scalar_t>(x, y, g, o, offsets.numel() - 1, temp, false);
    });
  }
  static void grouped_softmax_backward(const Tensor& grad, const Tensor& y, Tensor& dx, SoftmaxGeometry g,
                                       const Tensor& offsets, const Temperature& temp) {
    const int64_t* o = offsets.const_data_ptr<int64_t>();
    GLO_SOFTMAX_DISPATCH(grad.scalar_type(), "glo_grouped_softmax_backward_cpu", [&] {
      softmax_backward_impl<scalar_t>(grad, y, dx, g, o, offsets.numel() - 1, temp, false);
    });
  }
  static void distill_forward(const Tensor& s, const Tensor& t, Tensor& stats, Tensor& loss_none, int64_t rows,
                              int64_t cols, double temperature) {
    GLO_SOFTMAX_DISPATCH(s.scalar_type(), "glo_distill_cpu", [&] {
      distill_forward_impl<scalar_t>(s, t, stats, loss_none, rows, cols, temperature);
    });
  }
  static void distill_backward(const Tensor& grad, const Tensor& s, const Tensor& t, const Tensor& stats, Tensor& ds,
                               const Tensor& dt, int64_t rows, int64_t cols, double temperature, bool none,
                               double scale) {
    GLO_SOFTMAX_DISPATCH(s.scalar_type(), "glo_distill_backward_cpu", [&] {
      distill_backward_impl<scalar_t>(grad, s, t, stats, ds, dt, rows, cols, temperature, none, scale);
    });
  }
};

}  // namespace
GLO_ISA_END
}  // namespace glo

// This level's operators, for the run-time dispatch of cpu/cpu_dispatch.h (entered only on CPUs that have the level).
#define GLO_Y_ GLO_TABLE_ENTRY_
GLO_DEFINE_LEVEL_TABLE(softmax_table_, SoftmaxFamily, ::glo::SoftmaxOps<::glo::CpuSoftmaxKernels>, GLO_SOFTMAX_OP_NAMES)
#undef GLO_Y_

#if !defined(GLO_CPU_ISA_AVX2) && !defined(GLO_CPU_ISA_AVX512)
const glo::cpu_dispatch::AnyFn* glo::cpu_dispatch::SoftmaxFamily::tables[kNumLevels] = {};

TORCH_LIBRARY_IMPL(glo_kernels, CPU, m) {
#define GLO_Y_ GLO_TRAMPOLINE_IMPL_
  GLO_REGISTER_TRAMPOLINES(softmax_table_, SoftmaxFamily, ::glo::SoftmaxOps<::glo::CpuSoftmaxKernels>,
                           GLO_SOFTMAX_OP_NAMES)
#undef GLO_Y_
}
#endif  // the default level
