// Device-independent glue of every operator: argument checks, layout, allocation, geometry. Written once and
// instantiated with a device's kernel set K (CpuKernels in cpu/activations_cpu.cpp, CudaKernels in
// cuda/activations.cu), which supplies:
//   K::mask_forward(x, y, mask, factory)        y = f(x), mask bits = f.keep(x), then kMaskPad zero words (mask may
//                                               be empty: not saved)
//   K::mask_backward(grad, mask, dx, factory)   dx = f.backward(grad, bit)
//   K::unary_forward(x, y, factory)            y = f.forward(x) (y may be x: in place)
//   K::unary_backward(grad, saved, dx, factory) dx = f.backward(grad, saved)
//   K::channel_forward(x, params, y, geom, factory)   y = f.forward(x, p) with p the element's channel parameters
//   K::channel_backward(grad, x, params, dx, dparams, geom, factory)
//                                                 dx and the per-channel sums of every parameter's gradient terms in
//                                                 one pass + a deterministic reduction (params, dparams: std::array
//                                                 of f's kParams tensors of 1 or `channels` elements; every dparam slot written)
//   K::maxout_forward(x, y, indices, geom)        y = max over each group; uint8 index of the winner (indices may
//                                                 be empty: not saved)
//   K::maxout_backward(grad, indices, dx, geom)   dx = grad at the winner, 0 elsewhere
//   K::gated_forward(a, b, y, factory)            y = f.forward(a) * b with f = factory's activation (glo::Gated);
//                                                 a, b: [rows, h] with unit column stride and any row stride (views
//                                                 of one x: the halves of its rows); y: [rows, h] contiguous
//   K::gated_backward(grad, a, b, da, db, factory)  (da, db) = Gated's backward: f.backward(grad * b, a) and
//                                                 grad * f.forward(a); grad
//                                                 contiguous [rows, h], a, b, da, db as a, b above
// All tensors handed to K are dense in one memory format (contiguous; for the element-wise mask, unary and channel
// ops also channels_last / channels_last_3d, see dense_format: the kernels read and write the storage linearly; a
// channel op's geometry then describes the storage, see storage_geometry), on one
// device, non-empty, of one floating dtype (mask: int32).
// `factory(T{})` returns the functor of glo/activations.h computing in opmath type T; `factory.name()` names its
// element function and `factory.scalars()` lists its scalar parameters (what the Triton kernel set hands to Python).
#pragma once

#include "glo/isa.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <array>
#include <tuple>
#include <vector>

#include "glo/activations.h"
#include "glo/op_list.h"

namespace glo {
GLO_ISA_BEGIN

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
  TORCH_CHECK(mask.scalar_type() == at::kInt && mask.dim() == 1 && mask.numel() == mask_length(grad.numel()), "glo_kernels.",
              op, ": argument 'mask' must be the int32 mask of ", mask_length(grad.numel()),
              " words saved by the forward for ", grad.numel(), " elements; got ", mask.scalar_type(), " of shape ",
              mask.sizes(), " (was the forward called with save_mask=False?)");
}

// The mask a forward returns: empty when not saved; else mask_length(numel) words, whose bits K::mask_forward writes
// and whose kMaskPad last words it zeroes (an empty x launches no kernel: its mask is zeros).
// The memory format the element-wise ops (mask, unary and channel ops) keep: channels_last (4-d) or channels_last_3d (5-d) when
// x is dense in it and not contiguous, else contiguous (a strided x is read through one contiguous copy). Outputs get
// the format of their input, and the kernels process x's storage linearly, without a copy, as PyTorch's own
// element-wise ops do; a saved mask's bits follow that storage order (its backward must get grad in the same format:
// glo_kernels/library.py's autograd formulas convert it). glo_kernels/_layout.py dense_format is the same rule in Python.
inline at::MemoryFormat dense_format(const Tensor& x) {
  if (x.is_contiguous()) return at::MemoryFormat::Contiguous;
  if (x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast)) return at::MemoryFormat::ChannelsLast;
  if (x.dim() == 5 && x.is_contiguous(at::MemoryFormat::ChannelsLast3d)) return at::MemoryFormat::ChannelsLast3d;
  return at::MemoryFormat::Contiguous;
}

inline Tensor empty_in(const Tensor& like, at::MemoryFormat fmt) {
  return at::empty(like.sizes(), like.options().memory_format(fmt));
}

inline Tensor new_mask(const Tensor& x, bool save) {
  const auto options = x.options().dtype(at::kInt);
  if (!save) return at::empty({0}, options);
  return x.numel() == 0 ? at::zeros({kMaskPad}, options) : at::empty({mask_length(x.numel())}, options);
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
    const at::MemoryFormat fmt = dense_format(x);
    const Tensor xc = x.contiguous(fmt);
    Tensor y = empty_in(xc, fmt);
    Tensor mask = new_mask(xc, save_mask);
    if (xc.numel() > 0) K::mask_forward(xc, y, mask, factory);
    return {y, mask};
  }

  template <class Factory>
  static Tensor mask_op_(Tensor& x, bool save_mask, const char* op, Factory factory) {
    check_floating(x, op, "x");
    Tensor mask = new_mask(x, save_mask);
    if (x.numel() == 0) return mask;
    const at::MemoryFormat fmt = dense_format(x);
    if (x.is_contiguous(fmt)) {
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
    const at::MemoryFormat fmt = dense_format(grad);  // (the mask's bit order: see dense_format)
    const Tensor gc = grad.contiguous(fmt);
    Tensor dx = empty_in(gc, fmt);
    if (gc.numel() > 0) K::mask_backward(gc, mask.contiguous(), dx, factory);
    return dx;
  }

  // ---- ReLU ----
  struct ReLUFactory {
    template <class T>
    ReLU<T> operator()(T) const { return {}; }
    static const char* name() { return "relu"; }
    std::vector<double> scalars() const { return {}; }
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
    static const char* name() { return "leaky_relu"; }
    std::vector<double> scalars() const { return {slope}; }
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

  // ---- ops whose backward reads the saved input or output ----
  template <class Factory>
  static Tensor unary_op(const Tensor& x, const char* op, Factory factory) {
    check_floating(x, op, "x");
    const at::MemoryFormat fmt = dense_format(x);
    const Tensor xc = x.contiguous(fmt);
    Tensor y = empty_in(xc, fmt);
    if (xc.numel() > 0) K::unary_forward(xc, y, factory);
    return y;
  }

  template <class Factory>
  static void unary_op_(Tensor& x, const char* op, Factory factory) {
    check_floating(x, op, "x");
    if (x.numel() == 0) return;
    if (x.is_contiguous(dense_format(x))) {
      K::unary_forward(x, x, factory);
    } else {
      Tensor tmp = x.contiguous();
      K::unary_forward(tmp, tmp, factory);
      x.copy_(tmp);
    }
  }

  template <class Factory>
  static Tensor unary_backward(const Tensor& grad, const Tensor& saved, const char* op, const char* saved_name,
                               Factory factory) {
    check_floating(grad, op, "grad");
    check_same_device(grad, saved, op, "grad", saved_name);
    TORCH_CHECK(saved.sizes() == grad.sizes() && saved.scalar_type() == grad.scalar_type(), "glo_kernels.", op,
                ": argument '", saved_name, "' (", saved.scalar_type(), " ", saved.sizes(),
                ") must have the shape and dtype of 'grad' (", grad.scalar_type(), " ", grad.sizes(), ")");
    const at::MemoryFormat fmt = dense_format(saved);  // grad follows the saved tensor's format (one copy if not)
    const Tensor gc = grad.contiguous(fmt);
    Tensor dx = empty_in(gc, fmt);
    if (gc.numel() > 0) K::unary_backward(gc, saved.contiguous(fmt), dx, factory);
    return dx;
  }

  struct ELUFactory {
    double alpha;
    template <class T>
    ELU<T> operator()(T) const { return {static_cast<T>(alpha)}; }
    static const char* name() { return "elu"; }
    std::vector<double> scalars() const { return {alpha}; }
  };
  struct ELUFromResultFactory {
    double alpha;
    template <class T>
    ELUFromResult<T> operator()(T) const { return {static_cast<T>(alpha)}; }
    static const char* name() { return "elu_from_result"; }
    std::vector<double> scalars() const { return {alpha}; }
  };

  static Tensor elu(const Tensor& x, double alpha) { return unary_op(x, "elu", ELUFactory{alpha}); }
  static void elu_(Tensor& x, double alpha) { unary_op_(x, "elu_", ELUFactory{alpha}); }
  static Tensor elu_backward(const Tensor& grad, const Tensor& saved, double alpha, bool is_result) {
    if (is_result) {
      TORCH_CHECK(alpha >= 0, "glo_kernels.elu_backward: argument 'alpha' must be >= 0 when the backward is computed "
                  "from the output (is_result=True), got ", alpha);
      return unary_backward(grad, saved, "elu_backward", "saved", ELUFromResultFactory{alpha});
    }
    return unary_backward(grad, saved, "elu_backward", "saved", ELUFactory{alpha});
  }

  struct SoftplusFactory {
    double beta, threshold;
    template <class T>
    Softplus<T> operator()(T) const {
      return {static_cast<T>(beta), static_cast<T>(threshold), static_cast<T>(1.0 / beta)};
    }
    static const char* name() { return "softplus"; }
    std::vector<double> scalars() const { return {beta, threshold}; }
  };
  static Tensor softplus(const Tensor& x, double beta, double threshold) {
    return unary_op(x, "softplus", SoftplusFactory{beta, threshold});
  }
  static Tensor softplus_backward(const Tensor& grad, const Tensor& x, double beta, double threshold) {
    return unary_backward(grad, x, "softplus_backward", "x", SoftplusFactory{beta, threshold});
  }

  // ---- the ops of GLO_UNARY_OPS (glo/op_list.h): name, name_ and name_backward of each line ----
#define GLO_UNARY_MEMBERS(NAME, FUNCTOR, SAVED)                                                     \
  struct NAME##_factory {                                                                         \
    template <class T>                                                                            \
    FUNCTOR<T> operator()(T) const { return {}; }                                                 \
    static const char* name() { return #NAME; }                                                  \
    std::vector<double> scalars() const { return {}; }                                            \
  };                                                                                              \
  static Tensor NAME(const Tensor& x) { return unary_op(x, #NAME, NAME##_factory{}); }           \
  static void NAME##_(Tensor& x) { unary_op_(x, #NAME "_", NAME##_factory{}); }                  \
  static Tensor NAME##_backward(const Tensor& grad, const Tensor& saved) {                        \
    return unary_backward(grad, saved, #NAME "_backward", #SAVED, NAME##_factory{});              \
  }
  GLO_UNARY_OPS(GLO_UNARY_MEMBERS)
#undef GLO_UNARY_MEMBERS

  // ---- ops with learned per-channel parameters (PReLU: weight; PELU: a, b) ----
  // All parameters follow torch.nn.functional.prelu's rule (1 element, or one per channel of dim 1) and have the same
  // number of elements.
  template <size_t NP>
  static ChannelGeometry param_geometry(const Tensor& x, const std::array<Tensor, NP>& params,
                                        const std::array<const char*, NP>& names, const char* op) {
    ChannelGeometry g = channel_geometry(x, params[0], op, names[0]);
    for (size_t k = 1; k < NP; ++k) {
      channel_geometry(x, params[k], op, names[k]);
      TORCH_CHECK(params[k].numel() == params[0].numel(), "glo_kernels.", op, ": argument '", names[k], "' has ",
                  params[k].numel(), " elements but '", names[0], "' has ", params[0].numel(), "; they must match");
    }
    return g;
  }

  // The geometry of x's storage in memory format fmt (dense_format(x)): channels_last stores [outer, spatial...,
  // channels], i.e. [numel / C, C, 1], channels innermost, a layout every channel kernel handles (it is a 2-D input's).
  // A shared parameter (C == 1) sees the storage as one run, whatever the format.
  static ChannelGeometry storage_geometry(const Tensor& x, ChannelGeometry g, at::MemoryFormat fmt) {
    if (fmt == at::MemoryFormat::Contiguous || g.channels == 1) return g;
    return {x.numel() / g.channels, g.channels, 1};
  }

  template <size_t NP>
  static std::array<Tensor, NP> contiguous(const std::array<Tensor, NP>& ts) {
    std::array<Tensor, NP> out;
    for (size_t k = 0; k < NP; ++k) out[k] = ts[k].contiguous();
    return out;
  }

  template <size_t NP, class Factory>
  static Tensor channel_op(const Tensor& x, const std::array<Tensor, NP>& params,
                           const std::array<const char*, NP>& names, const char* op, Factory factory) {
    check_floating(x, op, "x");
    const at::MemoryFormat fmt = dense_format(x);
    const ChannelGeometry g = storage_geometry(x, param_geometry(x, params, names, op), fmt);
    const Tensor xc = x.contiguous(fmt);
    Tensor y = empty_in(xc, fmt);
    if (xc.numel() > 0) K::channel_forward(xc, contiguous(params), y, g, factory);
    return y;
  }

  // (dx, dparam...) in one pass over x and grad.
  template <size_t NP, class Factory>
  static std::array<Tensor, NP + 1> channel_backward(const Tensor& grad, const Tensor& x,
                                                     const std::array<Tensor, NP>& params,
                                                     const std::array<const char*, NP>& names, const char* op,
                                                     Factory factory) {
    check_floating(grad, op, "grad");
    check_floating(x, op, "x");
    check_same_device(x, grad, op, "x", "grad");
    TORCH_CHECK(grad.sizes() == x.sizes(), "glo_kernels.", op, ": argument 'grad' has shape ", grad.sizes(),
                " but 'x' has shape ", x.sizes());
    TORCH_CHECK(grad.scalar_type() == x.scalar_type(), "glo_kernels.", op, ": argument 'grad' has dtype ",
                grad.scalar_type(), " but 'x' has dtype ", x.scalar_type());
    const at::MemoryFormat fmt = dense_format(x);  // grad follows x's format (one copy if not)
    const ChannelGeometry g = storage_geometry(x, param_geometry(x, params, names, op), fmt);
    const Tensor xc = x.contiguous(fmt);
    std::array<Tensor, NP + 1> out;
    out[0] = empty_in(xc, fmt);
    std::array<Tensor, NP> dparams;
    // K::channel_backward writes every slot of every dparam; an empty x launches nothing: its gradients are zeros.
    for (size_t k = 0; k < NP; ++k) {
      dparams[k] = out[k + 1] = xc.numel() > 0 ? at::empty(params[k].sizes(), params[k].options())
                                               : at::zeros(params[k].sizes(), params[k].options());
    }
    if (xc.numel() > 0) {
      K::channel_backward(grad.contiguous(fmt), xc, contiguous(params), out[0], dparams, g, factory);
    }
    return out;
  }

  struct PReLUFactory {
    template <class T>
    PReLU<T> operator()(T) const { return {}; }
    static const char* name() { return "prelu"; }
    std::vector<double> scalars() const { return {}; }
  };
  struct PELUFactory {
    template <class T>
    PELU<T> operator()(T) const { return {}; }
    static const char* name() { return "pelu"; }
    std::vector<double> scalars() const { return {}; }
  };

  static Tensor prelu(const Tensor& x, const Tensor& weight) {
    return channel_op<1>(x, {weight}, {"weight"}, "prelu", PReLUFactory{});
  }
  static std::tuple<Tensor, Tensor> prelu_backward(const Tensor& grad, const Tensor& x, const Tensor& weight) {
    auto r = channel_backward<1>(grad, x, {weight}, {"weight"}, "prelu_backward", PReLUFactory{});
    return {r[0], r[1]};
  }
  static Tensor pelu(const Tensor& x, const Tensor& a, const Tensor& b) {
    return channel_op<2>(x, {a, b}, {"a", "b"}, "pelu", PELUFactory{});
  }
  static std::tuple<Tensor, Tensor, Tensor> pelu_backward(const Tensor& grad, const Tensor& x, const Tensor& a,
                                                          const Tensor& b) {
    auto r = channel_backward<2>(grad, x, {a, b}, {"a", "b"}, "pelu_backward", PELUFactory{});
    return {r[0], r[1], r[2]};
  }

  // ---- Maxout: max over groups of `pieces` consecutive elements along `dim`; uint8 index of the winner saved ----
  static MaxoutGeometry maxout_geometry(const Tensor& x_like, int64_t size_of_dim, int64_t pieces, int64_t dim,
                                        const char* op) {
    TORCH_CHECK(pieces >= 1 && pieces <= 256, "glo_kernels.", op, ": argument 'pieces' must be in [1, 256], got ",
                pieces);
    TORCH_CHECK(size_of_dim % pieces == 0, "glo_kernels.", op, ": argument 'pieces' (", pieces,
                ") must divide the size of dim ", dim, " (", size_of_dim, ")");
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < dim; ++d) outer *= x_like.size(d);
    for (int64_t d = dim + 1; d < x_like.dim(); ++d) inner *= x_like.size(d);
    return {outer, size_of_dim / pieces, pieces, inner};
  }

  // The memory format Maxout keeps: a channels_last / channels_last_3d x (dense_format) when it runs over the
  // channels (dim 1), whose groups of pieces are then consecutive in storage, [outer = numel / C, C / pieces, pieces,
  // 1]; else contiguous. y and the indices come out in that format; the backward reads it off the indices.
  static at::MemoryFormat maxout_format(const Tensor& t, int64_t dim) {
    return dim == 1 ? dense_format(t) : at::MemoryFormat::Contiguous;
  }
  static MaxoutGeometry maxout_storage_geometry(MaxoutGeometry g, at::MemoryFormat fmt) {
    if (fmt == at::MemoryFormat::Contiguous) return g;
    return {g.outer * g.inner, g.groups, g.pieces, 1};
  }

  static int64_t wrap_dim(int64_t dim, const Tensor& t, const char* op) {
    const int64_t nd = std::max<int64_t>(t.dim(), 1);
    TORCH_CHECK(t.dim() >= 1, "glo_kernels.", op, ": argument 'x' must have at least one dimension");
    TORCH_CHECK(dim >= -nd && dim < nd, "glo_kernels.", op, ": argument 'dim' (", dim, ") is out of range for a ",
                t.dim(), "-d tensor");
    return dim < 0 ? dim + nd : dim;
  }

  static std::tuple<Tensor, Tensor> maxout(const Tensor& x, int64_t pieces, int64_t dim, bool save_indices) {
    check_floating(x, "maxout", "x");
    dim = wrap_dim(dim, x, "maxout");
    const at::MemoryFormat fmt = maxout_format(x, dim);
    const MaxoutGeometry g = maxout_storage_geometry(maxout_geometry(x, x.size(dim), pieces, dim, "maxout"), fmt);
    const Tensor xc = x.contiguous(fmt);
    std::vector<int64_t> out_sizes(x.sizes().begin(), x.sizes().end());
    out_sizes[dim] /= pieces;
    Tensor y = at::empty(out_sizes, xc.options().memory_format(fmt));
    Tensor idx = save_indices ? at::empty(out_sizes, xc.options().dtype(at::kByte).memory_format(fmt))
                              : at::empty({0}, xc.options().dtype(at::kByte));
    if (y.numel() > 0) K::maxout_forward(xc, y, idx, g);
    return {y, idx};
  }

  static Tensor maxout_backward(const Tensor& grad, const Tensor& indices, int64_t pieces, int64_t dim) {
    check_floating(grad, "maxout_backward", "grad");
    check_same_device(grad, indices, "maxout_backward", "grad", "indices");
    dim = wrap_dim(dim, grad, "maxout_backward");
    TORCH_CHECK(indices.scalar_type() == at::kByte && indices.sizes() == grad.sizes(),
                "glo_kernels.maxout_backward: argument 'indices' must be the uint8 indices saved by the forward, of "
                "the shape of 'grad' ", grad.sizes(), "; got ", indices.scalar_type(), " of shape ", indices.sizes(),
                " (was the forward called with save_indices=False?)");
    TORCH_CHECK(pieces >= 1 && pieces <= 256, "glo_kernels.maxout_backward: argument 'pieces' must be in [1, 256], got ",
                pieces);
    const at::MemoryFormat fmt = maxout_format(indices, dim);  // the forward's storage order
    const MaxoutGeometry g =
        maxout_storage_geometry(maxout_geometry(grad, grad.size(dim) * pieces, pieces, dim, "maxout_backward"), fmt);
    std::vector<int64_t> in_sizes(grad.sizes().begin(), grad.sizes().end());
    in_sizes[dim] *= pieces;
    Tensor dx = at::empty(in_sizes, grad.options().memory_format(fmt));
    if (dx.numel() > 0) K::maxout_backward(grad.contiguous(fmt), indices.contiguous(fmt), dx, g);
    return dx;
  }

  // ---- gated linear units (GLO_GATED_OPS of glo/op_list.h): y = act(a) * b ----
  // The one-tensor form splits x's last dim: a = x[..., :h] (the gate), b = x[..., h:], both read in place as
  // [rows, h] views of (a contiguous) x with row stride 2h; its backward writes da and db into one dx of x's shape.
  static int64_t gated_half(const Tensor& x, const char* op) {
    TORCH_CHECK(x.dim() >= 1, "glo_kernels.", op, ": argument 'x' must have at least one dimension (its last dim ",
                "holds the gate and the value side by side), got a 0-d tensor");
    TORCH_CHECK(x.size(-1) % 2 == 0, "glo_kernels.", op, ": argument 'x' must have an even last dim (the gate is ",
                "its first half, the value its second), got shape ", x.sizes());
    return x.size(-1) / 2;
  }

  static std::array<Tensor, 2> gated_halves(const Tensor& x2, int64_t h) {
    return {x2.narrow(1, 0, h), x2.narrow(1, h, h)};
  }

  template <class Factory>
  static Tensor gated_op(const Tensor& x, const char* op, Factory factory) {
    check_floating(x, op, "x");
    const int64_t h = gated_half(x, op);
    std::vector<int64_t> sizes(x.sizes().begin(), x.sizes().end());
    sizes.back() = h;
    Tensor y = at::empty(sizes, x.options());
    if (y.numel() > 0) {
      const auto ab = gated_halves(x.contiguous().view({-1, 2 * h}), h);
      K::gated_forward(ab[0], ab[1], y.view({-1, h}), factory);
    }
    return y;
  }

  template <class Factory>
  static Tensor gated_backward(const Tensor& grad, const Tensor& x, const char* op, Factory factory) {
    check_floating(grad, op, "grad");
    check_floating(x, op, "x");
    check_same_device(grad, x, op, "grad", "x");
    const int64_t h = gated_half(x, op);
    std::vector<int64_t> sizes(x.sizes().begin(), x.sizes().end());
    sizes.back() = h;
    TORCH_CHECK(grad.sizes() == c10::IntArrayRef(sizes) && grad.scalar_type() == x.scalar_type(), "glo_kernels.", op,
                ": argument 'grad' (", grad.scalar_type(), " ", grad.sizes(), ") must have the dtype of 'x' and its ",
                "shape with the last dim halved (", x.scalar_type(), " ", c10::IntArrayRef(sizes), ")");
    Tensor dx = at::empty(x.sizes(), x.options());
    if (grad.numel() > 0) {
      const auto ab = gated_halves(x.contiguous().view({-1, 2 * h}), h);
      const auto d = gated_halves(dx.view({-1, 2 * h}), h);
      K::gated_backward(grad.contiguous().view({-1, h}), ab[0], ab[1], d[0], d[1], factory);
    }
    return dx;
  }

  // The two-tensor form: a and b of one shape, read as one run each in their common dense format (see dense_format:
  // outputs keep a's channels_last).
  static void check_pair(const Tensor& a, const Tensor& b, const char* op, const char* name_a, const char* name_b) {
    check_floating(a, op, name_a);
    check_floating(b, op, name_b);
    check_same_device(a, b, op, name_a, name_b);
    TORCH_CHECK(a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type(), "glo_kernels.", op, ": argument '",
                name_b, "' (", b.scalar_type(), " ", b.sizes(), ") must have the shape and dtype of '", name_a, "' (",
                a.scalar_type(), " ", a.sizes(), ")");
  }

  // A tensor dense in some memory format (its storage one run) as one row [1, numel] of that storage.
  static Tensor flat_rows(const Tensor& t) { return t.as_strided({1, t.numel()}, {t.numel(), 1}); }

  // t as [rows, last dim] at one row stride with unit column stride, not overlapping (what x.chunk(2, -1)'s halves
  // and other slices of the last dim are), or an undefined tensor where its layout is not that. The kernels read
  // such rows in place (their row strides are arguments): the two-tensor form of a chunked x then copies nothing.
  static Tensor as_rows(const Tensor& t) {
    if (t.dim() < 1 || t.numel() == 0) return Tensor();
    const int64_t h = t.size(-1);
    if (h > 1 && t.stride(-1) != 1) return Tensor();
    int64_t rows = 1, row_stride = h, next = -1;
    for (int64_t i = t.dim() - 2; i >= 0; --i) {
      if (t.size(i) == 1) continue;
      if (next < 0) {
        row_stride = t.stride(i);
      } else if (t.stride(i) != next) {
        return Tensor();
      }
      next = t.stride(i) * t.size(i);
      rows *= t.size(i);
    }
    if (rows > 1 && row_stride < h) return Tensor();  // (overlapping or broadcast rows)
    return t.as_strided({rows, h}, {rows > 1 ? row_stride : h, 1});
  }

  template <class Factory>
  static Tensor gated_pair(const Tensor& a, const Tensor& b, const char* op, Factory factory) {
    check_pair(a, b, op, "a", "b");
    const at::MemoryFormat fmt = dense_format(a);
    Tensor y = empty_in(a, fmt);
    if (y.numel() == 0) return y;
    if (!(a.is_contiguous(fmt) && b.is_contiguous(fmt))) {
      const Tensor ra = as_rows(a), rb = as_rows(b);
      if (ra.defined() && rb.defined() && fmt == at::MemoryFormat::Contiguous) {
        K::gated_forward(ra, rb, y.view({ra.size(0), ra.size(1)}), factory);
        return y;
      }
    }
    K::gated_forward(flat_rows(a.contiguous(fmt)), flat_rows(b.contiguous(fmt)), flat_rows(y), factory);
    return y;
  }

  template <class Factory>
  static std::tuple<Tensor, Tensor> gated_pair_backward(const Tensor& grad, const Tensor& a, const Tensor& b,
                                                        const char* op, Factory factory) {
    check_pair(a, b, op, "a", "b");
    check_pair(a, grad, op, "a", "grad");
    const at::MemoryFormat fmt = dense_format(a);
    Tensor da = empty_in(a, fmt), db = empty_in(a, fmt);
    if (a.numel() == 0) return {da, db};
    if (!(a.is_contiguous(fmt) && b.is_contiguous(fmt))) {
      const Tensor ra = as_rows(a), rb = as_rows(b);
      if (ra.defined() && rb.defined() && fmt == at::MemoryFormat::Contiguous) {
        const int64_t rows = ra.size(0), h = ra.size(1);
        K::gated_backward(grad.contiguous().view({rows, h}), ra, rb, da.view({rows, h}), db.view({rows, h}),
                          factory);
        return {da, db};
      }
    }
    K::gated_backward(flat_rows(grad.contiguous(fmt)), flat_rows(a.contiguous(fmt)), flat_rows(b.contiguous(fmt)),
                      flat_rows(da), flat_rows(db), factory);
    return {da, db};
  }

  // ---- bias + activation (GLO_BIAS_OPS of glo/op_list.h): y = act(x + bias), bias over the last dim; through the
  // channel kernels with x (contiguous) seen as [rows, channels = last dim, 1] ----
  static ChannelGeometry bias_geometry(const Tensor& x, const Tensor& bias, const char* op) {
    check_same_device(x, bias, op, "x", "bias");
    TORCH_CHECK(bias.scalar_type() == x.scalar_type(), "glo_kernels.", op, ": argument 'bias' has dtype ",
                bias.scalar_type(), " but 'x' has dtype ", x.scalar_type(), "; they must match");
    TORCH_CHECK(x.dim() >= 1, "glo_kernels.", op, ": argument 'x' must have at least one dimension (the bias runs ",
                "over its last dim), got a 0-d tensor");
    TORCH_CHECK(bias.dim() == 1 && bias.size(0) == x.size(-1), "glo_kernels.", op, ": argument 'bias' must be a ",
                "1-D tensor of the size of x's last dim (", x.size(-1), "), got shape ", bias.sizes());
    const int64_t c = x.size(-1);
    if (c <= 1) return {1, 1, x.numel()};  // (one bias for every element: a shared parameter)
    return {x.numel() / c, c, 1};
  }

  template <class Factory>
  static Tensor bias_op(const Tensor& x, const Tensor& bias, const char* op, Factory factory) {
    check_floating(x, op, "x");
    check_floating(bias, op, "bias");
    const ChannelGeometry g = bias_geometry(x, bias, op);
    const Tensor xc = x.contiguous();
    Tensor y = at::empty(x.sizes(), x.options());
    if (xc.numel() > 0) K::channel_forward(xc, std::array<Tensor, 1>{bias.contiguous()}, y, g, factory);
    return y;
  }

  template <class Factory>
  static std::tuple<Tensor, Tensor> bias_backward(const Tensor& grad, const Tensor& x, const Tensor& bias,
                                                  const char* op, Factory factory) {
    check_floating(grad, op, "grad");
    check_floating(x, op, "x");
    check_floating(bias, op, "bias");
    check_same_device(x, grad, op, "x", "grad");
    TORCH_CHECK(grad.sizes() == x.sizes() && grad.scalar_type() == x.scalar_type(), "glo_kernels.", op,
                ": argument 'grad' (", grad.scalar_type(), " ", grad.sizes(), ") must have the shape and dtype of ",
                "'x' (", x.scalar_type(), " ", x.sizes(), ")");
    const ChannelGeometry g = bias_geometry(x, bias, op);
    const Tensor xc = x.contiguous();
    Tensor dx = at::empty(x.sizes(), x.options());
    // K::channel_backward writes every element of dbias; an empty x launches nothing: its gradient is zeros.
    Tensor dbias = xc.numel() > 0 ? at::empty(bias.sizes(), bias.options()) : at::zeros(bias.sizes(), bias.options());
    if (xc.numel() > 0) {
      K::channel_backward(grad.contiguous(), xc, std::array<Tensor, 1>{bias.contiguous()}, dx,
                          std::array<Tensor, 1>{dbias}, g, factory);
    }
    return {dx, dbias};
  }

#define GLO_BIAS_MEMBERS(NAME, FUNCTOR, ACT)                                                             \
  struct NAME##_factory {                                                                             \
    template <class T>                                                                                \
    BiasAct<T, FUNCTOR<T>> operator()(T) const { return {}; }                                         \
    static const char* name() { return #NAME; }                                                      \
    std::vector<double> scalars() const { return {}; }                                                \
  };                                                                                                  \
  static Tensor NAME(const Tensor& x, const Tensor& bias) { return bias_op(x, bias, #NAME, NAME##_factory{}); } \
  static std::tuple<Tensor, Tensor> NAME##_backward(const Tensor& grad, const Tensor& x, const Tensor& bias) { \
    return bias_backward(grad, x, bias, #NAME "_backward", NAME##_factory{});                         \
  }
  GLO_BIAS_OPS(GLO_BIAS_MEMBERS)
#undef GLO_BIAS_MEMBERS

#define GLO_GATED_MEMBERS(NAME, FUNCTOR, ACT)                                                            \
  struct NAME##_factory {                                                                             \
    template <class T>                                                                                \
    FUNCTOR<T> operator()(T) const { return {}; }                                                     \
    static const char* name() { return #ACT; }                                                       \
    std::vector<double> scalars() const { return {}; }                                                \
  };                                                                                                  \
  static Tensor NAME(const Tensor& x) { return gated_op(x, #NAME, NAME##_factory{}); }               \
  static Tensor NAME##_backward(const Tensor& grad, const Tensor& x) {                                \
    return gated_backward(grad, x, #NAME "_backward", NAME##_factory{});                              \
  }                                                                                                   \
  static Tensor NAME##_pair(const Tensor& a, const Tensor& b) {                                       \
    return gated_pair(a, b, #NAME "_pair", NAME##_factory{});                                         \
  }                                                                                                   \
  static std::tuple<Tensor, Tensor> NAME##_pair_backward(const Tensor& grad, const Tensor& a, const Tensor& b) { \
    return gated_pair_backward(grad, a, b, #NAME "_pair_backward", NAME##_factory{});                 \
  }
  GLO_GATED_OPS(GLO_GATED_MEMBERS)
#undef GLO_GATED_MEMBERS
};

// Registers every element-wise operator of glo/op_list.h (GLO_ELEMENTWISE_OPS, GLO_UNARY_OPS, GLO_GATED_OPS and
// GLO_BIAS_OPS) with the kernel set K for one dispatch key: `GLO_REGISTER_OPS(m, K);` in a TORCH_LIBRARY_IMPL block.
#define GLO_IMPL_OP_(NAME, SCHEMA) m_.impl(#NAME, &::glo::Ops<GloK_>::NAME);
#define GLO_IMPL_UNARY_OP_(NAME, FUNCTOR, SAVED) \
  GLO_IMPL_OP_(NAME, ) GLO_IMPL_OP_(NAME##_, ) GLO_IMPL_OP_(NAME##_backward, )
#define GLO_IMPL_GATED_OP_(NAME, FUNCTOR, ACT) \
  GLO_IMPL_OP_(NAME, ) GLO_IMPL_OP_(NAME##_backward, ) GLO_IMPL_OP_(NAME##_pair, ) GLO_IMPL_OP_(NAME##_pair_backward, )
#define GLO_IMPL_BIAS_OP_(NAME, FUNCTOR, ACT) GLO_IMPL_OP_(NAME, ) GLO_IMPL_OP_(NAME##_backward, )
#define GLO_REGISTER_OPS(m, K)                \
  do {                                        \
    using GloK_ = K;                          \
    auto& m_ = (m);                           \
    GLO_ELEMENTWISE_OPS(GLO_IMPL_OP_)         \
    GLO_UNARY_OPS(GLO_IMPL_UNARY_OP_)         \
    GLO_GATED_OPS(GLO_IMPL_GATED_OP_)         \
    GLO_BIAS_OPS(GLO_IMPL_BIAS_OP_)           \
  } while (false)

GLO_ISA_END
}  // namespace glo
