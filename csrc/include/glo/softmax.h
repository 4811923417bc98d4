// Element math of the softmax family (softmax, log-softmax, grouped softmax, distillation loss), written once for the
// CPU loops and the CUDA kernels. The contract every backend follows (special values, formulas, statistics saved for
// backward) is docs/softmax_contract.md; the Triton kernels (glo_kernels/triton/softmax_kernels.py) and the reference
// (glo_kernels/reference.py) mirror it.
//
// Temperature: every kernel computes (x - max) * inv_t with inv_t = 1 / T rounded once to opmath; T is never applied
// to x itself, so huge logits (1e4) and tiny temperatures (1e-3) stay finite until the exponent.
#pragma once

#include "glo/isa.h"

#include <cstdint>

#include "glo/activations.h"

namespace glo {
GLO_ISA_BEGIN

// x (contiguous) seen as [outer, size, inner] around the softmax dim; a row is `size` elements of stride `inner`.
struct SoftmaxGeometry {
  int64_t outer;
  int64_t size;
  int64_t inner;
};

// Per-row statistics of the distillation loss, as saved in `stats` ([rows, 5], opmath dtype).
enum DistillStat : int { kMaxS = 0, kLogZS = 1, kMaxT = 2, kLogZT = 3, kKL = 4, kDistillStats = 5 };

// The probabilities and log-ratio of one element of a distillation row, from the logits and the row's statistics:
//   log q = (s - m_s) inv_t - logZ_s,  log p = (t - m_t) inv_t - logZ_t,  r = log p - log q.
template <class T>
struct DistillRow {
  T m_s, logz_s, m_t, logz_t, kl, inv_t;

  // A row from its one-pass sums (docs/softmax_contract.md): Z_t = sum e_j and A = sum e_j (t_j - s_j) over the
  // e_j = exp((t_j - m_t) inv_t) > 0, and the logs of Z_s, Z_t (NaN for a row of only -inf: the caller's log).
  //   kl = A inv_t / Z_t - (m_t - m_s) inv_t - logZ_t + logZ_s
  GLO_HD static DistillRow from_sums(T m_s, T logz_s, T m_t, T logz_t, T z_t, T a, T inv_t) {
    return {m_s, logz_s, m_t, logz_t, a * inv_t / z_t - (m_t - m_s) * inv_t - logz_t + logz_s, inv_t};
  }
  // The row's kDistillStats saved statistics (`stats` of the forward), read and written.
  GLO_HD static DistillRow load(const T* st, T inv_t) {
    return {st[kMaxS], st[kLogZS], st[kMaxT], st[kLogZT], st[kKL], inv_t};
  }
  GLO_HD void store(T* st) const {
    st[kMaxS] = m_s;
    st[kLogZS] = logz_s;
    st[kMaxT] = m_t;
    st[kLogZT] = logz_t;
    st[kKL] = kl;
  }

  GLO_HD T log_q(T s) const { return (s - m_s) * inv_t - logz_s; }
  GLO_HD T log_p(T t) const { return (t - m_t) * inv_t - logz_t; }
  // (t - m_t) - (s - m_s) is formed before scaling: t = s + c gives r = 0 up to rounding of the statistics.
  GLO_HD T ratio(T s, T t) const { return ((t - m_t) - (s - m_s)) * inv_t - logz_t + logz_s; }

  // The value of a term whose teacher probability p is 0 (docs/softmax_contract.md): 0 (as xlogy), except in a
  // student row holding NaN or +inf (or only -inf), whose logZ_s is NaN: there every term is NaN (NaN propagates).
  GLO_HD T zero_term() const { return logz_s == logz_s ? T(0) : logz_s; }

  // Gradients of a reduced loss (G = upstream gradient * T^2 * reduction factor):
  //   ds = G inv_t (q - p),  dt = G inv_t p (r - kl)   (dt = zero_term() where p == 0)
  GLO_HD void reduced_grads(T s, T t, T g, T& ds, T& dt) const {
    const T q = gexp(log_q(s));
    const T p = gexp(log_p(t));
    ds = g * inv_t * (q - p);
    dt = p == T(0) ? zero_term() : g * inv_t * p * (ratio(s, t) - kl);
  }
  // Pointwise loss of reduction "none" without the T^2 factor: p r (zero_term() where p == 0).
  GLO_HD T pointwise(T s, T t) const {
    const T p = gexp(log_p(t));
    return p == T(0) ? zero_term() : p * ratio(s, t);
  }
};

GLO_ISA_END
}  // namespace glo
