// The operators of the Triton backend, torch.ops.glo_kernels_triton.*: the glue of glo/op_impls.h and
// glo/softmax_impls.h (argument checks and their error texts, layout, allocation, empty tensors, in-place fallbacks),
// the same code as the C++ backends', instantiated with a kernel set that hands every kernel call to a launch operator
// of namespace glo_triton_launch (schemas in glo/op_list.h), implemented in Python by glo_kernels/triton/launch.py.
// So the Triton ops check and lay out their arguments exactly as the C++ ops do, and nothing of that is written twice.
//
// Registered for CUDA tensors and for CPU tensors (the Triton interpreter, TRITON_INTERPRET=1, runs the kernels on
// them); glo_kernels.backends says when Triton can run. The kernel calls run below autograd (the glue's tensors are
// its own: contiguous copies, fresh outputs).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <vector>

#include "glo/op_impls.h"
#include "glo/softmax_impls.h"

namespace glo {
namespace {

// The typed handle of glo_triton_launch::NAME, looked up once per call site. (Without its Python implementation,
// registered when glo_kernels imports with triton importable, the dispatcher says the op has no kernel for the
// tensors' device; glo_kernels.available_backends() reports Triton unavailable before that.)
#define GLO_LAUNCH(NAME, SIG)                                                                                      \
  ([]() -> const c10::TypedOperatorHandle<SIG>& {                                                                \
    static const auto handle =                                                                                   \
        c10::Dispatcher::singleton().findSchemaOrThrow("glo_triton_launch::" NAME, "").typed<SIG>();             \
    return handle;                                                                                               \
  }())

std::optional<Tensor> optional_tensor(const Tensor& t) {
  return t.defined() ? std::optional<Tensor>(t) : std::nullopt;
}

template <size_t NP>
std::vector<Tensor> as_vector(const std::array<Tensor, NP>& ts) {
  return std::vector<Tensor>(ts.begin(), ts.end());
}

using Scalars = c10::ArrayRef<double>;
using Str = c10::string_view;

struct TritonKernels {
  template <class Factory>
  static void mask_forward(const Tensor& x, const Tensor& y, const Tensor& mask, Factory factory) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const std::vector<double> s = factory.scalars();
    GLO_LAUNCH("mask_forward", void(const Tensor&, const Tensor&, const Tensor&, Str, Scalars))
        .call(x, y, mask, factory.name(), s);
  }
  template <class Factory>
  static void mask_backward(const Tensor& grad, const Tensor& mask, const Tensor& dx, Factory factory) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const std::vector<double> s = factory.scalars();
    GLO_LAUNCH("mask_backward", void(const Tensor&, const Tensor&, const Tensor&, Str, Scalars))
        .call(grad, mask, dx, factory.name(), s);
  }
  template <class Factory>
  static void unary_forward(const Tensor& x, const Tensor& y, Factory factory) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const std::vector<double> s = factory.scalars();
    GLO_LAUNCH("unary_forward", void(const Tensor&, const Tensor&, Str, Scalars)).call(x, y, factory.name(), s);
  }
  template <class Factory>
  static void unary_backward(const Tensor& grad, const Tensor& saved, const Tensor& dx, Factory factory) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const std::vector<double> s = factory.scalars();
    GLO_LAUNCH("unary_backward", void(const Tensor&, const Tensor&, const Tensor&, Str, Scalars))
        .call(grad, saved, dx, factory.name(), s);
  }
  template <size_t NP, class Factory>
  static void channel_forward(const Tensor& x, const std::array<Tensor, NP>& params, const Tensor& y,
                              ChannelGeometry g, Factory factory) {
    at::AutoDispatchBelowADInplaceOrView guard;
    using Sig = void(const Tensor&, at::TensorList, const Tensor&, int64_t, int64_t, int64_t, Str);
    GLO_LAUNCH("channel_forward", Sig).call(x, as_vector(params), y, g.outer, g.channels, g.inner, factory.name());
  }
  template <size_t NP, class Factory>
  static void channel_backward(const Tensor& grad, const Tensor& x, const std::array<Tensor, NP>& params,
                               const Tensor& dx, const std::array<Tensor, NP>& dparams, ChannelGeometry g,
                               Factory factory) {
    at::AutoDispatchBelowADInplaceOrView guard;
    using Sig = void(const Tensor&, const Tensor&, at::TensorList, const Tensor&, at::TensorList, int64_t, int64_t,
                     int64_t, Str);
    GLO_LAUNCH("channel_backward", Sig)
        .call(grad, x, as_vector(params), dx, as_vector(dparams), g.outer, g.channels, g.inner, factory.name());
  }
  template <class Factory>
  static void gated_forward(const Tensor& a, const Tensor& b, const Tensor& y, Factory factory) {
    at::AutoDispatchBelowADInplaceOrView guard;
    GLO_LAUNCH("gated_forward", void(const Tensor&, const Tensor&, const Tensor&, Str)).call(a, b, y, factory.name());
  }
  template <class Factory>
  static void gated_backward(const Tensor& grad, const Tensor& a, const Tensor& b, const Tensor& da, const Tensor& db,
                             Factory factory) {
    at::AutoDispatchBelowADInplaceOrView guard;
    using Sig = void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, Str);
    GLO_LAUNCH("gated_backward", Sig).call(grad, a, b, da, db, factory.name());
  }
  static void maxout_forward(const Tensor& x, const Tensor& y, const Tensor& indices, MaxoutGeometry g) {
    at::AutoDispatchBelowADInplaceOrView guard;
    using Sig = void(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t, int64_t);
    GLO_LAUNCH("maxout_forward", Sig).call(x, y, indices, g.outer, g.groups, g.pieces, g.inner);
  }
  static void maxout_backward(const Tensor& grad, const Tensor& indices, const Tensor& dx, MaxoutGeometry g) {
    at::AutoDispatchBelowADInplaceOrView guard;
    using Sig = void(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t, int64_t);
    GLO_LAUNCH("maxout_backward", Sig).call(grad, indices, dx, g.outer, g.groups, g.pieces, g.inner);
  }
};

using OptT = const std::optional<Tensor>&;

struct TritonSoftmaxKernels {
  static void softmax_forward(const Tensor& x, Tensor& y, SoftmaxGeometry g, const Temperature& temp, bool log) {
    at::AutoDispatchBelowADInplaceOrView guard;
    using Sig = void(const Tensor&, const Tensor&, int64_t, int64_t, int64_t, double, OptT, bool);
    GLO_LAUNCH("softmax_forward", Sig)
        .call(x, y, g.outer, g.size, g.inner, temp.value, optional_tensor(temp.tensor), log);
  }
  static void softmax_backward(const Tensor& grad, const Tensor& y, Tensor& dx, SoftmaxGeometry g,
                               const Temperature& temp, bool log) {
    at::AutoDispatchBelowADInplaceOrView guard;
    using Sig = void(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t, double, OptT, bool);
    GLO_LAUNCH("softmax_backward", Sig)
        .call(grad, y, dx, g.outer, g.size, g.inner, temp.value, optional_tensor(temp.tensor), log);
  }
  static void grouped_softmax_forward(const Tensor& x, Tensor& y, SoftmaxGeometry g, const Tensor& offsets,
                                      const Temperature& temp) {
    at::AutoDispatchBelowADInplaceOrView guard;
    using Sig = void(const Tensor&, const Tensor&, int64_t, int64_t, int64_t, const Tensor&, double, OptT);
    GLO_LAUNCH("grouped_softmax_forward", Sig)
        .call(x, y, g.outer, g.size, g.inner, offsets, temp.value, optional_tensor(temp.tensor));
  }
  static void grouped_softmax_backward(const Tensor& grad, const Tensor& y, Tensor& dx, SoftmaxGeometry g,
                                       const Tensor& offsets, const Temperature& temp) {
    at::AutoDispatchBelowADInplaceOrView guard;
    using Sig = void(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, int64_t, const Tensor&, double,
                     OptT);
    GLO_LAUNCH("grouped_softmax_backward", Sig)
        .call(grad, y, dx, g.outer, g.size, g.inner, offsets, temp.value, optional_tensor(temp.tensor));
  }
  static void distill_forward(const Tensor& s, const Tensor& t, Tensor& stats, Tensor& loss_none, int64_t rows,
                              int64_t cols, double temperature) {
    at::AutoDispatchBelowADInplaceOrView guard;
    using Sig = void(const Tensor&, const Tensor&, const Tensor&, OptT, int64_t, int64_t, double);
    GLO_LAUNCH("distill_forward", Sig).call(s, t, stats, optional_tensor(loss_none), rows, cols, temperature);
  }
  static void distill_backward(const Tensor& grad, const Tensor& s, const Tensor& t, const Tensor& stats, Tensor& ds,
                               const Tensor& dt, int64_t rows, int64_t cols, double temperature, bool none,
                               double scale) {
    at::AutoDispatchBelowADInplaceOrView guard;
    using Sig = void(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, OptT, int64_t, int64_t,
                     double, bool, double);
    GLO_LAUNCH("distill_backward", Sig)
        .call(grad, s, t, stats, ds, optional_tensor(dt), rows, cols, temperature, none, scale);
  }
};

}  // namespace
}  // namespace glo

TORCH_LIBRARY_IMPL(glo_kernels_triton, CUDA, m) {
  GLO_REGISTER_OPS(m, ::glo::TritonKernels);
  GLO_REGISTER_SOFTMAX_OPS(m, ::glo::TritonSoftmaxKernels);
}
// (CPU tensors: the Triton interpreter.)
TORCH_LIBRARY_IMPL(glo_kernels_triton, CPU, m) {
  GLO_REGISTER_OPS(m, ::glo::TritonKernels);
  GLO_REGISTER_SOFTMAX_OPS(m, ::glo::TritonSoftmaxKernels);
}
