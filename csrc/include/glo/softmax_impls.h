// Device-independent glue of the softmax family: argument checks, layout, allocation, temperature, statistics and the
// loss reduction, written once and instantiated with a device's softmax kernel set K (CpuSoftmaxKernels in
// cpu/softmax_cpu.cpp, CudaSoftmaxKernels in cuda/softmax.cu). The contract is docs/softmax_contract.md. K supplies:
//   K::softmax_forward(x, y, geom, temp, log)            y = softmax((x - max) * inv_t) per row (log: log-softmax)
//   K::softmax_backward(grad, y, dx, geom, temp, log)   dx = y (dy - sum dy y) inv_t  /  (dy - exp(y) sum dy) inv_t
//     (y, and dx, may have a dtype other than x's, grad's: a fused pair, fused_dtype_pair(x, y) / (dx, grad))
//   K::grouped_softmax_forward(x, y, geom, offsets, temp)       one softmax per group of each row
//   K::grouped_softmax_backward(grad, y, dx, geom, offsets, temp)
//   K::distill_forward(s, t, stats, loss_none, rows, cols, T)   stats [rows, 5]; loss_none undefined or [rows, cols]
//   K::distill_backward(grad, s, t, stats, ds, dt, rows, cols, T, none, scale)   dt undefined: no teacher gradient
// All data tensors handed to K are contiguous, non-empty, on one device, of one floating dtype (but for the fused
// dtype pairs of softmax_forward / softmax_backward above). `temp` is a
// Temperature: its value, or (tensor defined) a 1-element opmath tensor on the data's device holding T, read by the
// kernel (no host synchronization). `offsets` is an int64 tensor on the host (CPU): 0, g0, g0+g1, ..., size; a device
// backend keeps its own device copy (csrc/cuda/softmax.cu: cached per device and group list).
#pragma once

#include "glo/isa.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "glo/op_impls.h"
#include "glo/softmax.h"

namespace glo {
GLO_ISA_BEGIN

struct Temperature {
  double value;      // T (when tensor is undefined)
  at::Tensor tensor; // defined: 1 element of opmath dtype on the data's device holding T
};

inline at::ScalarType opmath_type(const Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// softmax / log_softmax with an output dtype (torch.softmax(x, dim, dtype=...)): the result is softmax(x.to(dtype)) in
// dtype. The kernels of the pairs below read one dtype and write the other (forward: x in `in`, y in `out`; backward:
// dy and y in `out`, dx in `in`), with no separate cast pass: the mixed-precision idiom, 16-bit logits in and float32
// probabilities out, and its gradient back in 16 bits. Both sides of a pair share the opmath type (float), so a fused
// call computes exactly what the cast and the op would. Any other pair is an explicit cast, then the op (torch's own
// semantics): downcasts, float32 -> float64, ... .
inline bool fused_dtype_pair(at::ScalarType in, at::ScalarType out) {
  return out == at::kFloat && (in == at::kBFloat16 || in == at::kHalf);
}

// The dtype named by an optional ScalarType argument (`like`'s when absent): one of the four floating dtypes.
inline at::ScalarType resolve_dtype(const Tensor& like, const c10::optional<at::ScalarType>& dtype, const char* op,
                                    const char* arg) {
  if (!dtype.has_value()) return like.scalar_type();
  const at::ScalarType st = *dtype;
  TORCH_CHECK(st == at::kDouble || st == at::kFloat || st == at::kBFloat16 || st == at::kHalf, "glo_kernels.", op,
              ": argument '", arg, "' must be a floating-point dtype (float64, float32, bfloat16 or float16), got ",
              st);
  return st;
}

inline void check_temperature_value(double t, const char* op) {
  TORCH_CHECK(std::isfinite(t) && t > 0, "glo_kernels.", op, ": argument 'temperature' must be a finite number > 0, got ",
              t);
}

inline Temperature make_temperature(const Tensor& x, double t, const c10::optional<Tensor>& tt, const char* op) {
  if (!tt.has_value() || !tt->defined()) {
    check_temperature_value(t, op);
    return {t, Tensor()};
  }
  const Tensor& v = *tt;
  TORCH_CHECK(v.numel() == 1 && v.is_floating_point() && (v.device() == x.device() || v.device().is_cpu()),
              "glo_kernels.", op, ": argument 'temperature_tensor' must be a floating-point tensor of one element on ",
              x.device(), " or the CPU, got ", v.scalar_type(), " of shape ", v.sizes(), " on ", v.device());
  if (v.device().is_cpu()) {
    const double value = v.to(at::kDouble).data_ptr<double>()[0];
    check_temperature_value(value, op);
    return {value, Tensor()};
  }
  return {t, v.to(opmath_type(x)).reshape({1}).contiguous()};
}

inline int64_t wrap_softmax_dim(int64_t dim, const Tensor& t, const char* op) {
  const int64_t nd = std::max<int64_t>(t.dim(), 1);
  TORCH_CHECK(dim >= -nd && dim < nd, "glo_kernels.", op, ": argument 'dim' (", dim, ") is out of range for a ",
              t.dim(), "-d tensor");
  return dim < 0 ? dim + nd : dim;
}

inline SoftmaxGeometry softmax_geometry(const Tensor& t, int64_t dim) {
  if (t.dim() == 0) return {1, 1, 1};
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= t.size(d);
  for (int64_t d = dim + 1; d < t.dim(); ++d) inner *= t.size(d);
  return {outer, t.size(dim), inner};
}

enum class Reduction { kNone, kMean, kSum, kBatchMean };

inline Reduction parse_reduction(const std::string& r, const char* op) {
  if (r == "none") return Reduction::kNone;
  if (r == "mean") return Reduction::kMean;
  if (r == "sum") return Reduction::kSum;
  TORCH_CHECK(r == "batchmean", "glo_kernels.", op, ": argument 'reduction' must be one of 'none', 'mean', 'sum', ",
              "'batchmean', got '", r, "'");
  return Reduction::kBatchMean;
}

// T^2 times the reduction's factor: 1 (sum), 1/numel (mean), 1/size(0) (batchmean); T^2 for none.
inline double loss_scale(Reduction r, const Tensor& s, double t) {
  const double t2 = t * t;
  switch (r) {
    case Reduction::kMean: return t2 / static_cast<double>(s.numel());
    case Reduction::kBatchMean: return t2 / static_cast<double>(s.size(0));
    default: return t2;
  }
}

template <class K>
struct SoftmaxOps {
  static void check_like(const Tensor& grad, const Tensor& other, const char* op, const char* name) {
    check_same_device(grad, other, op, "grad", name);
    TORCH_CHECK(other.sizes() == grad.sizes() && other.scalar_type() == grad.scalar_type(), "glo_kernels.", op,
                ": argument '", name, "' (", other.scalar_type(), " ", other.sizes(),
                ") must have the shape and dtype of 'grad' (", grad.scalar_type(), " ", grad.sizes(), ")");
  }

  // y in `dtype` (x's when absent): fused_dtype_pair, or x cast to dtype (one copy, contiguous) and the op.
  static Tensor forward(const Tensor& x, int64_t dim, double t, const c10::optional<Tensor>& tt,
                        const c10::optional<at::ScalarType>& dtype, bool log, const char* op) {
    check_floating(x, op, "x");
    const at::ScalarType out = resolve_dtype(x, dtype, op, "dtype");
    dim = wrap_softmax_dim(dim, x, op);
    const bool fused = out == x.scalar_type() || fused_dtype_pair(x.scalar_type(), out);
    const Tensor xc = fused ? x.contiguous()
                            : x.to(x.options().dtype(out), /*non_blocking=*/false, /*copy=*/false,
                                   at::MemoryFormat::Contiguous);
    const Temperature temp = make_temperature(xc, t, tt, op);
    Tensor y = at::empty(xc.sizes(), xc.options().dtype(out));
    if (xc.numel() > 0) K::softmax_forward(xc, y, softmax_geometry(xc, dim), temp, log);
    return y;
  }

  // dx in `input_dtype` (grad's when absent) from grad and y (the forward's output dtype): fused_dtype_pair, or dx in
  // grad's dtype cast to input_dtype (the backward of the forward's cast).
  static Tensor backward(const Tensor& grad, const Tensor& y, int64_t dim, double t, const c10::optional<Tensor>& tt,
                         const c10::optional<at::ScalarType>& input_dtype, bool log, const char* op) {
    check_floating(grad, op, "grad");
    check_like(grad, y, op, "y");
    const at::ScalarType in = resolve_dtype(grad, input_dtype, op, "input_dtype");
    dim = wrap_softmax_dim(dim, grad, op);
    const Temperature temp = make_temperature(grad, t, tt, op);
    const Tensor gc = grad.contiguous();
    const bool fused = fused_dtype_pair(in, gc.scalar_type());
    Tensor dx = at::empty(gc.sizes(), gc.options().dtype(fused ? in : gc.scalar_type()));
    if (gc.numel() > 0) K::softmax_backward(gc, y.contiguous(), dx, softmax_geometry(gc, dim), temp, log);
    return dx.scalar_type() == in ? dx : dx.to(in);
  }

  static Tensor softmax(const Tensor& x, int64_t dim, double t, const c10::optional<Tensor>& tt,
                        c10::optional<at::ScalarType> dtype) {
    return forward(x, dim, t, tt, dtype, false, "softmax");
  }
  static Tensor log_softmax(const Tensor& x, int64_t dim, double t, const c10::optional<Tensor>& tt,
                            c10::optional<at::ScalarType> dtype) {
    return forward(x, dim, t, tt, dtype, true, "log_softmax");
  }
  static Tensor softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim, double t,
                                 const c10::optional<Tensor>& tt, c10::optional<at::ScalarType> input_dtype) {
    return backward(grad, y, dim, t, tt, input_dtype, false, "softmax_backward");
  }
  static Tensor log_softmax_backward(const Tensor& grad, const Tensor& y, int64_t dim, double t,
                                     const c10::optional<Tensor>& tt, c10::optional<at::ScalarType> input_dtype) {
    return backward(grad, y, dim, t, tt, input_dtype, true, "log_softmax_backward");
  }

  // ---- grouped softmax: consecutive groups of `group_sizes` along dim, each its own softmax ----
  static Tensor group_offsets(const Tensor& x, at::IntArrayRef sizes, const SoftmaxGeometry& g, int64_t dim,
                              const char* op) {
    int64_t total = 0;
    bool ok = !sizes.empty();
    for (int64_t s : sizes) {
      ok = ok && s >= 1;
      total += s;
    }
    TORCH_CHECK(ok && total == g.size, "glo_kernels.", op,
                ": argument 'group_sizes' must be positive sizes summing to the size of dim ", dim, " (", g.size,
                "), got ", sizes);
    Tensor offsets =
        at::empty({static_cast<int64_t>(sizes.size()) + 1}, at::TensorOptions().dtype(at::kLong).device(at::kCPU));
    int64_t* o = offsets.data_ptr<int64_t>();
    o[0] = 0;
    for (size_t k = 0; k < sizes.size(); ++k) o[k + 1] = o[k] + sizes[k];
    return offsets;  // on the host: a device backend keeps its own copy (the CUDA kernels cache it per device)
  }

  static Tensor grouped_softmax(const Tensor& x, at::IntArrayRef group_sizes, int64_t dim, double t,
                                const c10::optional<Tensor>& tt) {
    const char* op = "grouped_softmax";
    check_floating(x, op, "x");
    dim = wrap_softmax_dim(dim, x, op);
    const Temperature temp = make_temperature(x, t, tt, op);
    const Tensor xc = x.contiguous();
    const SoftmaxGeometry g = softmax_geometry(xc, dim);
    const Tensor offsets = group_offsets(xc, group_sizes, g, dim, op);
    Tensor y = at::empty(xc.sizes(), xc.options());
    if (xc.numel() > 0) K::grouped_softmax_forward(xc, y, g, offsets, temp);
    return y;
  }

  static Tensor grouped_softmax_backward(const Tensor& grad, const Tensor& y, at::IntArrayRef group_sizes, int64_t dim,
                                         double t, const c10::optional<Tensor>& tt) {
    const char* op = "grouped_softmax_backward";
    check_floating(grad, op, "grad");
    check_like(grad, y, op, "y");
    dim = wrap_softmax_dim(dim, grad, op);
    const Temperature temp = make_temperature(grad, t, tt, op);
    const Tensor gc = grad.contiguous();
    const SoftmaxGeometry g = softmax_geometry(gc, dim);
    const Tensor offsets = group_offsets(gc, group_sizes, g, dim, op);
    Tensor dx = at::empty(gc.sizes(), gc.options());
    if (gc.numel() > 0) K::grouped_softmax_backward(gc, y.contiguous(), dx, g, offsets, temp);
    return dx;
  }

  // ---- distillation loss: T^2 KL(softmax(t/T) || softmax(s/T)) over the last dim, reduced ----
  static int64_t leading_rows(const Tensor& s) {
    int64_t n = 1;
    for (int64_t d = 0; d + 1 < s.dim(); ++d) n *= s.size(d);
    return n;
  }

  static void check_pair(const Tensor& s, const Tensor& t, const char* op) {
    check_floating(s, op, "student");
    check_floating(t, op, "teacher");
    check_same_device(s, t, op, "student", "teacher");
    TORCH_CHECK(s.sizes() == t.sizes() && s.scalar_type() == t.scalar_type(), "glo_kernels.", op,
                ": argument 'teacher' (", t.scalar_type(), " ", t.sizes(), ") must have the shape and dtype of ",
                "'student' (", s.scalar_type(), " ", s.sizes(), ")");
    TORCH_CHECK(s.dim() >= 1, "glo_kernels.", op, ": argument 'student' must have at least one dimension");
  }

  // T^2 * factor * sum of the rows' KL, in an order that depends only on the number of rows: sequential in double on
  // the CPU (torch's CPU sum splits by thread count, which changes the rounding); torch's sum on a GPU, reproducible
  // for a given shape.
  static Tensor reduce_rows(const Tensor& kl, Reduction r, const Tensor& s, double t) {
    const double scale = loss_scale(r, s, t);
    if (kl.device().is_cpu()) {
      const Tensor k = kl.to(at::kDouble).contiguous();
      const double* p = k.const_data_ptr<double>();
      double acc = 0;
      for (int64_t i = 0; i < k.numel(); ++i) acc += p[i];
      Tensor out = at::empty({}, s.options().dtype(at::kDouble));
      out.mutable_data_ptr<double>()[0] = acc * scale;
      return out.to(s.scalar_type());
    }
    return kl.sum().mul(scale).to(s.scalar_type());
  }

  static std::tuple<Tensor, Tensor> distillation_loss(const Tensor& student, const Tensor& teacher, double t,
                                                      c10::string_view reduction) {
    const char* op = "distillation_loss";
    check_pair(student, teacher, op);
    check_temperature_value(t, op);
    const Reduction r = parse_reduction(std::string(reduction), op);
    const Tensor s = student.contiguous(), tc = teacher.contiguous();
    const int64_t cols = s.size(-1);
    const int64_t rows = leading_rows(s);
    // K::distill_forward writes every row's statistics; rows of no columns (no launch) keep zeros.
    Tensor stats = s.numel() > 0 ? at::empty({rows, kDistillStats}, s.options().dtype(opmath_type(s)))
                                 : at::zeros({rows, kDistillStats}, s.options().dtype(opmath_type(s)));
    Tensor loss_none = r == Reduction::kNone ? at::empty(s.sizes(), s.options()) : Tensor();
    if (s.numel() > 0) K::distill_forward(s, tc, stats, loss_none, rows, cols, t);
    if (r == Reduction::kNone) return {loss_none, stats};
    return {reduce_rows(stats.select(1, kKL), r, s, t), stats};
  }

  static std::tuple<Tensor, Tensor> distillation_loss_backward(const Tensor& grad, const Tensor& student,
                                                               const Tensor& teacher, const Tensor& stats, double t,
                                                               c10::string_view reduction, bool teacher_grad) {
    const char* op = "distillation_loss_backward";
    check_pair(student, teacher, op);
    check_temperature_value(t, op);
    const Reduction r = parse_reduction(std::string(reduction), op);
    check_floating(grad, op, "grad");
    check_same_device(student, grad, op, "student", "grad");
    check_same_device(student, stats, op, "student", "stats");
    const Tensor s = student.contiguous(), tc = teacher.contiguous();
    const int64_t cols = s.size(-1);
    const int64_t rows = leading_rows(s);
    TORCH_CHECK(stats.dim() == 2 && stats.size(1) == kDistillStats && stats.scalar_type() == opmath_type(s) &&
                    stats.size(0) == rows,
                "glo_kernels.", op, ": argument 'stats' must be the [", rows, ", ", int(kDistillStats), "] ",
                opmath_type(s), " statistics saved by distillation_loss, got ", stats.scalar_type(), " of shape ",
                stats.sizes());
    if (r == Reduction::kNone) {
      TORCH_CHECK(grad.sizes() == s.sizes(), "glo_kernels.", op, ": argument 'grad' must have the shape of 'student' ",
                  s.sizes(), " for reduction 'none', got ", grad.sizes());
    } else {
      TORCH_CHECK(grad.numel() == 1 && grad.dim() == 0, "glo_kernels.", op,
                  ": argument 'grad' must be 0-d for a reduced loss, got shape ", grad.sizes());
    }
    Tensor ds = at::empty(s.sizes(), s.options());
    Tensor dt = teacher_grad ? at::empty(s.sizes(), s.options()) : at::empty({0}, s.options());
    if (s.numel() > 0) {
      const bool none = r == Reduction::kNone;
      const Tensor g = none ? grad.to(s.scalar_type()).contiguous()
                            : grad.to(opmath_type(s)).reshape({1}).contiguous();
      K::distill_backward(g, s, tc, stats.contiguous(), ds, teacher_grad ? dt : Tensor(), rows, cols, t, none,
                          loss_scale(r, s, t));
    }
    return {ds, dt};
  }
};

// Registers the softmax family of glo/op_list.h (GLO_SOFTMAX_OPS) with the kernel set K for one dispatch key.
#define GLO_IMPL_SOFTMAX_OP_(NAME, SCHEMA) m_.impl(#NAME, &::glo::SoftmaxOps<GloK_>::NAME);
#define GLO_REGISTER_SOFTMAX_OPS(m, K)          \
  do {                                          \
    using GloK_ = K;                            \
    auto& m_ = (m);                             \
    GLO_SOFTMAX_OPS(GLO_IMPL_SOFTMAX_OP_)       \
  } while (false)

GLO_ISA_END
}  // namespace glo
