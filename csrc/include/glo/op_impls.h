// Device-independent glue of every operator: argument checks, layout, allocation, geometry. Written once and
// instantiated with a device's kernel set K (CpuKernels in cpu/activations_cpu.cpp, CudaKernels in
// cuda/activations.cu), which supplies:
//   K::mask_forward(x, y, mask, factory)        y = f(x), mask bits = f.keep(x) (mask may be empty: not saved)
//   K::mask_backward(grad, mask, dx, factory)   dx = f.backward(grad, bit)
//   K::prelu_forward(x, w, y, geom)
//   K::prelu_backward(grad, x, w, dx, dw, geom)  dx and the per-channel sum dw in one pass + a deterministic reduction
// All tensors handed to K are contiguous, on one device, non-empty, of one floating dtype (mask: int32).
// `factory(T{})` returns the functor of glo/activations.h computing in opmath type T.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <tuple>

#include "glo/activations.h"

namespace glo {

using at::Tensor;

inline void check_floating(const Tensor& t, const char* op, const char* arg) {
  TORCH_CHECK(t.is_floating_point(), "glo_kernels.", op, ": argument '", arg,
              "' must be a floating-point tensor (float64, float32, bfloat16 or float16), got ", t.scalar_type());
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kDouble || st == at::kFloat || st == at::kBFloat16 || st == at::kHalf, "glo_kernels.", op,
              ": argument '", arg, "' has unsupported dtype ", st);
}

inline void check_same_device(const Tensor& a, const Tensor& b, const char* op, const char* arg_a, const char* arg_b) {
  TORCH_CHECK(a.device() == b.device(), "glo_kernels.", op, ": argument '", arg_b, "' is on ", b.device(),
              " but '", arg_a, "' is on ", a.device(), "; they must be on the same device");
}

inline void check_mask(const Tensor& grad, const Tensor& mask, const char* op) {
  check_same_device(grad, mask, op, "grad", "mask");
  TORCH_CHECK(mask.scalar_type() == at::kInt && mask.dim() == 1 && mask.numel() == mask_words(grad.numel()), "glo_kernels.",
              op, ": argument 'mask' must be the int32 mask of ", mask_words(grad.numel()),
              " words saved by the forward for ", grad.numel(), " elements; got ", mask.scalar_type(), " of shape ",
              mask.sizes(), " (was the forward called with save_mask=False?)");
}

inline Tensor new_mask(const Tensor& x, bool save) {
  return at::empty({save ? mask_words(x.numel()) : 0}, x.options().dtype(at::kInt));
}

// [outer, channels, inner] of x for a PReLU-like parameter: one element (shared) or one per channel (dim 1).
// The rules are torch.nn.functional.prelu's: 1-D inputs have a single channel.
inline ChannelGeometry channel_geometry(const Tensor& x, const Tensor& w, const char* op, const char* arg) {
  check_same_device(x, w, op, "x", arg);
  TORCH_CHECK(w.scalar_type() == x.scalar_type(), "glo_kernels.", op, ": argument '", arg, "' has dtype ",
              w.scalar_type(), " but 'x' has dtype ", x.scalar_type(), "; they must match");
  TORCH_CHECK(w.dim() <= 1, "glo_kernels.", op, ": argument '", arg, "' must be a scalar or a 1-D tensor, got ",
              w.dim(), " dimensions");
  if (w.numel() == 1) return {1, 1, x.numel()};
  const int64_t channels = x.dim() >= 2 ? x.size(1) : 1;
  TORCH_CHECK(x.dim() >= 1 && w.numel() == channels, "glo_kernels.", op, ": argument '", arg, "' has ", w.numel(),
              " elements; it must have 1 or as many as the channels of 'x' (size of dim 1 = ",
              x.dim() >= 2 ? x.size(1) : 1, ", input shape ", x.sizes(), ")");
  int64_t inner = 1;
  for (int64_t d = 2; d < x.dim(); ++d) inner *= x.size(d);
  return {x.size(0), channels, inner};
}

template <class K>
struct Ops {
  template <class Factory>
  static std::tuple<Tensor, Tensor> mask_op(const Tensor& x, bool save_mask, const char* op, Factory factory) {
    check_floating(x, op, "x");
    const Tensor xc = x.contiguous();
    Tensor y = at::empty(xc.sizes(), xc.options());
    Tensor mask = new_mask(xc, save_mask);
    if (xc.numel() > 0) K::mask_forward(xc, y, mask, factory);
    return {y, mask};
  }

  template <class Factory>
  static Tensor mask_op_(Tensor& x, bool save_mask, const char* op, Factory factory) {
    check_floating(x, op, "x");
    Tensor mask = new_mask(x, save_mask);
    if (x.numel() == 0) return mask;
    if (x.is_contiguous()) {
      K::mask_forward(x, x, mask, factory);
    } else {
      Tensor tmp = x.contiguous();
      K::mask_forward(tmp, tmp, mask, factory);
      x.copy_(tmp);
    }
    return mask;
  }

  template <class Factory>
  static Tensor mask_backward(const Tensor& grad, const Tensor& mask, const char* op, Factory factory) {
    check_floating(grad, op, "grad");
    check_mask(grad, mask, op);
    const Tensor gc = grad.contiguous();
    Tensor dx = at::empty(gc.sizes(), gc.options());
    if (gc.numel() > 0) K::mask_backward(gc, mask.contiguous(), dx, factory);
    return dx;
  }

  // ---- ReLU ----
  struct ReLUFactory {
    template <class T>
    ReLU<T> operator()(T) const { return {}; }
  };
  static std::tuple<Tensor, Tensor> relu(const Tensor& x, bool save_mask) {
    return mask_op(x, save_mask, "relu", ReLUFactory{});
  }
  static Tensor relu_(Tensor& x, bool save_mask) { return mask_op_(x, save_mask, "relu_", ReLUFactory{}); }
  static Tensor relu_backward(const Tensor& grad, const Tensor& mask) {
    return mask_backward(grad, mask, "relu_backward", ReLUFactory{});
  }

  // ---- Leaky ReLU ----
  struct LeakyReLUFactory {
    double slope;
    template <class T>
    LeakyReLU<T> operator()(T) const { return {static_cast<T>(slope)}; }
  };
  static std::tuple<Tensor, Tensor> leaky_relu(const Tensor& x, double negative_slope, bool save_mask) {
    return mask_op(x, save_mask, "leaky_relu", LeakyReLUFactory{negative_slope});
  }
  static Tensor leaky_relu_(Tensor& x, double negative_slope, bool save_mask) {
    return mask_op_(x, save_mask, "leaky_relu_", LeakyReLUFactory{negative_slope});
  }
  static Tensor leaky_relu_backward(const Tensor& grad, const Tensor& mask, double negative_slope) {
    return mask_backward(grad, mask, "leaky_relu_backward", LeakyReLUFactory{negative_slope});
  }

  // ---- PReLU ----
  static Tensor prelu(const Tensor& x, const Tensor& weight) {
    check_floating(x, "prelu", "x");
    const ChannelGeometry g = channel_geometry(x, weight, "prelu", "weight");
    const Tensor xc = x.contiguous();
    Tensor y = at::empty(xc.sizes(), xc.options());
    if (xc.numel() > 0) K::prelu_forward(xc, weight.contiguous(), y, g);
    return y;
  }
  static std::tuple<Tensor, Tensor> prelu_backward(const Tensor& grad, const Tensor& x, const Tensor& weight) {
    check_floating(grad, "prelu_backward", "grad");
    check_floating(x, "prelu_backward", "x");
    check_same_device(x, grad, "prelu_backward", "x", "grad");
    TORCH_CHECK(grad.sizes() == x.sizes(), "glo_kernels.prelu_backward: argument 'grad' has shape ", grad.sizes(),
                " but 'x' has shape ", x.sizes());
    TORCH_CHECK(grad.scalar_type() == x.scalar_type(), "glo_kernels.prelu_backward: argument 'grad' has dtype ",
                grad.scalar_type(), " but 'x' has dtype ", x.scalar_type());
    const ChannelGeometry g = channel_geometry(x, weight, "prelu_backward", "weight");
    const Tensor xc = x.contiguous();
    Tensor dx = at::empty(xc.sizes(), xc.options());
    Tensor dw = at::zeros(weight.sizes(), weight.options());
    if (xc.numel() > 0) K::prelu_backward(grad.contiguous(), xc, weight.contiguous(), dx, dw, g);
    return {dx, dw};
  }
};

// Registers every operator of the table for one dispatch key; used by each device's translation unit.
#define GLO_REGISTER_OPS(m, K)                                   \
  m.impl("relu", &::glo::Ops<K>::relu);                         \
  m.impl("relu_", &::glo::Ops<K>::relu_);                       \
  m.impl("relu_backward", &::glo::Ops<K>::relu_backward);       \
  m.impl("leaky_relu", &::glo::Ops<K>::leaky_relu);             \
  m.impl("leaky_relu_", &::glo::Ops<K>::leaky_relu_);           \
  m.impl("leaky_relu_backward", &::glo::Ops<K>::leaky_relu_backward); \
  m.impl("prelu", &::glo::Ops<K>::prelu);                       \
  m.impl("prelu_backward", &::glo::Ops<K>::prelu_backward)

}  // namespace glo
