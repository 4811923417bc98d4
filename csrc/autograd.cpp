// Autograd kernels in C++ for the forward operators of both operator namespaces, glo_kernels (the CPU and CUDA
// backends) and glo_kernels_triton (the Triton backend): relu, leaky_relu, elu, softplus, the GLO_UNARY_OPS,
// GLO_GATED_OPS and GLO_BIAS_OPS of glo/op_list.h, prelu, pelu, maxout, softmax, log_softmax, grouped_softmax,
// distillation_loss. (The in-place forms keep their torch.autograd.Function in glo_kernels/functional.py.) Each
// Function is a template on the namespace Ns.
//
// Why C++: torch.library.register_autograd installs a Python kernel at the Autograd key, which runs on every call,
// grad or no grad (on the 2-core CI machine, torch.ops.glo_kernels.relu on 1024 floats took 5.0 us without grad and
// 10.8 us with it, torch.relu 0.9 / 1.6 us). Here a call costs one C++ custom Function.
// Each backward calls the backward operator through the dispatcher: its own autograd (Python, glo_kernels/library.py)
// gives the double backward.
// Each forward runs the device kernel below the autograd keys, as PyTorch's generated VariableType kernels do.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "glo/op_impls.h"
#include "glo/op_list.h"

namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::Function;
using torch::autograd::variable_list;

// The operator namespaces.
struct CppNs {
  static constexpr const char* kName = "glo_kernels";
};
struct TritonNs {
  static constexpr const char* kName = "glo_kernels_triton";
};

std::string qualified(const char* ns, const char* name) { return std::string(ns) + "::" + name; }

// The typed handle of Ns::NAME (Ns: the template parameter in scope), looked up once per call site and namespace.
#define GLO_OP(NAME, SIG)                                                                                      \
  ([]() -> const c10::TypedOperatorHandle<SIG>& {                                                              \
    static const auto handle =                                                                                 \
        c10::Dispatcher::singleton().findSchemaOrThrow(qualified(Ns::kName, NAME).c_str(), "").template typed<SIG>(); \
    return handle;                                                                                             \
  }())

// A backward operator called from a backward: through its own autograd only when a graph of the backward is being
// recorded (create_graph, GradMode on); otherwise straight to the device kernel, as its Python autograd kernel would
// do after checking the grad mode (a few µs of Python saved per call).
template <class Sig, class... Args>
decltype(auto) call_backward(const c10::TypedOperatorHandle<Sig>& op, Args&&... args) {
  if (at::GradMode::is_enabled()) return op.call(std::forward<Args>(args)...);
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(std::forward<Args>(args)...);
}

using MaskFwd = std::tuple<Tensor, Tensor>(const Tensor&, bool);
using LeakyFwd = std::tuple<Tensor, Tensor>(const Tensor&, double, bool);
using Unary = Tensor(const Tensor&);
using UnaryBwd = Tensor(const Tensor&, const Tensor&);

void save_format(AutogradContext* ctx, const Tensor& x) {
  ctx->saved_data["format"] = static_cast<int64_t>(glo::dense_format(x));
}
// The upstream gradient in the format of the saved mask's bits (the forward input's dense_format).
Tensor grad_in_format(AutogradContext* ctx, const Tensor& grad) {
  return grad.contiguous(static_cast<at::MemoryFormat>(ctx->saved_data["format"].toInt()));
}

// ---- ReLU / Leaky ReLU: save the 1-bit mask (non-differentiable output) ----
template <class Ns>
struct ReluFn : Function<ReluFn<Ns>> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, bool save_mask) {
    Tensor y, mask;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(y, mask) = GLO_OP("relu", MaskFwd).call(x, save_mask);
    }
    ctx->set_materialize_grads(false);  // the mask gets no gradient: no zero tensor built for it
    save_format(ctx, x);
    ctx->save_for_backward({mask});
    ctx->mark_non_differentiable({mask});
    return {y, mask};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {Tensor(), Tensor()};
    const Tensor mask = ctx->get_saved_variables()[0];
    return {call_backward(GLO_OP("relu_backward", UnaryBwd), grad_in_format(ctx, grads[0]), mask), Tensor()};
  }
};

template <class Ns>
struct LeakyReluFn : Function<LeakyReluFn<Ns>> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, double slope, bool save_mask) {
    Tensor y, mask;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(y, mask) = GLO_OP("leaky_relu", LeakyFwd).call(x, slope, save_mask);
    }
    ctx->set_materialize_grads(false);
    save_format(ctx, x);
    ctx->saved_data["slope"] = slope;
    ctx->save_for_backward({mask});
    ctx->mark_non_differentiable({mask});
    return {y, mask};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor()};
    const Tensor mask = ctx->get_saved_variables()[0];
    const double slope = ctx->saved_data["slope"].toDouble();
    using Sig = Tensor(const Tensor&, const Tensor&, double);
    const Tensor dx = call_backward(GLO_OP("leaky_relu_backward", Sig), grad_in_format(ctx, grads[0]), mask, slope);
    return {dx, Tensor(), Tensor()};
  }
};

// ---- ELU saves its input; sigmoid and tanh their output ----
template <class Ns>
struct EluFn : Function<EluFn<Ns>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, double alpha) {
    Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = GLO_OP("elu", Tensor(const Tensor&, double)).call(x, alpha);
    }
    ctx->saved_data["alpha"] = alpha;
    ctx->save_for_backward({x});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor x = ctx->get_saved_variables()[0];
    using Sig = Tensor(const Tensor&, const Tensor&, double, bool);
    const double alpha = ctx->saved_data["alpha"].toDouble();
    return {call_backward(GLO_OP("elu_backward", Sig), grads[0], x, alpha, false), Tensor()};
  }
};

// ---- Softplus saves its input ----
template <class Ns>
struct SoftplusFn : Function<SoftplusFn<Ns>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, double beta, double threshold) {
    Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = GLO_OP("softplus", Tensor(const Tensor&, double, double)).call(x, beta, threshold);
    }
    ctx->saved_data["beta"] = beta;
    ctx->saved_data["threshold"] = threshold;
    ctx->save_for_backward({x});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor x = ctx->get_saved_variables()[0];
    using Sig = Tensor(const Tensor&, const Tensor&, double, double);
    return {call_backward(GLO_OP("softplus_backward", Sig), grads[0], x, ctx->saved_data["beta"].toDouble(),
                          ctx->saved_data["threshold"].toDouble()),
            Tensor(), Tensor()};
  }
};

// ---- the GLO_UNARY_OPS of glo/op_list.h: the backward reads the saved input or output ----
constexpr bool kSavesOutput_x = false;
constexpr bool kSavesOutput_y = true;
#define GLO_UNARY_TRAITS_(NAME, FUNCTOR, SAVED)                  \
  struct NAME##_op {                                             \
    static constexpr const char* kName = #NAME;                  \
    static constexpr const char* kBackward = #NAME "_backward";  \
    static constexpr bool kSavedOutput = kSavesOutput_##SAVED;   \
  };
GLO_UNARY_OPS(GLO_UNARY_TRAITS_)
#undef GLO_UNARY_TRAITS_

template <class Ns, class Op>
struct UnaryFn : Function<UnaryFn<Ns, Op>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x) {
    Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = GLO_OP(Op::kName, Unary).call(x);
    }
    ctx->save_for_backward({Op::kSavedOutput ? y : x});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {call_backward(GLO_OP(Op::kBackward, UnaryBwd), grads[0], ctx->get_saved_variables()[0])};
  }
};

// ---- ops of two tensor inputs whose backward op gives both gradients from them (saved): PReLU (x, weight), the gated
// units' pair form (a, b), bias + activation (x, bias). Op: kName, kBackward ----
template <class Ns, class Op>
struct BinaryFn : Function<BinaryFn<Ns, Op>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& a, const Tensor& b) {
    Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = GLO_OP(Op::kName, UnaryBwd).call(a, b);
    }
    ctx->save_for_backward({a, b});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    using Sig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&);
    auto [da, db] = call_backward(GLO_OP(Op::kBackward, Sig), grads[0], saved[0], saved[1]);
    return {da, db};
  }
};

struct prelu_op {
  static constexpr const char* kName = "prelu";
  static constexpr const char* kBackward = "prelu_backward";
};
// The gated units (GLO_GATED_OPS): the one-tensor form saves x (UnaryFn), the pair form a and b (BinaryFn).
#define GLO_GATED_TRAITS_(NAME, FUNCTOR, ACT)                           \
  struct NAME##_gated {                                                 \
    static constexpr const char* kName = #NAME;                         \
    static constexpr const char* kBackward = #NAME "_backward";         \
    static constexpr bool kSavedOutput = false;                         \
  };                                                                    \
  struct NAME##_gated_pair {                                            \
    static constexpr const char* kName = #NAME "_pair";                 \
    static constexpr const char* kBackward = #NAME "_pair_backward";    \
  };
GLO_GATED_OPS(GLO_GATED_TRAITS_)
#undef GLO_GATED_TRAITS_
// Bias + activation (GLO_BIAS_OPS) saves x and the bias (BinaryFn).
#define GLO_BIAS_TRAITS_(NAME, FUNCTOR, ACT)                     \
  struct NAME##_bias {                                           \
    static constexpr const char* kName = #NAME;                  \
    static constexpr const char* kBackward = #NAME "_backward";  \
  };
GLO_BIAS_OPS(GLO_BIAS_TRAITS_)
#undef GLO_BIAS_TRAITS_

// ---- PELU saves x, a and b ----
template <class Ns>
struct PELUFn : Function<PELUFn<Ns>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& a, const Tensor& b) {
    Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = GLO_OP("pelu", Tensor(const Tensor&, const Tensor&, const Tensor&)).call(x, a, b);
    }
    ctx->save_for_backward({x, a, b});
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    using Sig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const Tensor&);
    auto [dx, da, db] = call_backward(GLO_OP("pelu_backward", Sig), grads[0], saved[0], saved[1], saved[2]);
    return {dx, da, db};
  }
};

// ---- Maxout saves the uint8 winner indices (non-differentiable output) ----
template <class Ns>
struct MaxoutFn : Function<MaxoutFn<Ns>> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, int64_t pieces, int64_t dim, bool save) {
    Tensor y, idx;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      using Sig = std::tuple<Tensor, Tensor>(const Tensor&, int64_t, int64_t, bool);
      std::tie(y, idx) = GLO_OP("maxout", Sig).call(x, pieces, dim, save);
    }
    ctx->set_materialize_grads(false);
    ctx->saved_data["pieces"] = pieces;
    ctx->saved_data["dim"] = dim;
    ctx->save_for_backward({idx});
    ctx->mark_non_differentiable({idx});
    return {y, idx};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor(), Tensor()};
    using Sig = Tensor(const Tensor&, const Tensor&, int64_t, int64_t);
    const int64_t pieces = ctx->saved_data["pieces"].toInt(), dim = ctx->saved_data["dim"].toInt();
    const Tensor idx = ctx->get_saved_variables()[0];
    const Tensor dx = call_backward(GLO_OP("maxout_backward", Sig), grads[0], idx, pieces, dim);
    return {dx, Tensor(), Tensor(), Tensor()};
  }
};

// ---- softmax family (docs/softmax_contract.md): save the output; with a temperature tensor that requires grad, x
// too, for dL/dT = -sum(dx * x) / T ----
at::ScalarType opmath_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

constexpr int64_t kSumBlock = 1024;

// sum(t) in an order that depends only on t's size: blocks of 1024 elements (each reduced by one thread, below torch's
// parallel grain), then blocks of the block sums; torch's CPU sum splits by thread count, which changes the rounding
// (CUDA sums are already reproducible for a given shape).
Tensor fixed_order_sum(const Tensor& t) {
  // (Symbolic sizes when traced by torch.compile / torch.export: SymInt arithmetic.)
  Tensor v = t.reshape({-1});
  if (!v.device().is_cpu()) return v.sum();
  while (v.sym_numel() > kSumBlock) {
    const c10::SymInt pad = (kSumBlock - v.sym_numel() % kSumBlock) % kSumBlock;
    if (pad != 0) v = at::cat({v, v.new_zeros_symint({pad})});
    v = v.view_symint({c10::SymInt(-1), c10::SymInt(kSumBlock)}).sum(1);
  }
  return v.sum();
}

Tensor temperature_grad(const Tensor& dx, const Tensor& x, const Tensor& tt) {
  const auto acc = opmath_type(x.scalar_type());
  const Tensor t = tt.to(x.device(), acc).reshape({});
  const Tensor g = fixed_order_sum(dx.to(acc).mul(x.to(acc))).neg().div(t);
  return g.to(tt.device(), tt.scalar_type()).reshape(tt.sizes());
}

using SoftmaxSig = Tensor(const Tensor&, int64_t, double, const std::optional<Tensor>&, std::optional<at::ScalarType>);
using SoftmaxBwdSig = Tensor(const Tensor&, const Tensor&, int64_t, double, const std::optional<Tensor>&,
                             std::optional<at::ScalarType>);
using GroupedSig = Tensor(const Tensor&, c10::IntArrayRef, int64_t, double, const std::optional<Tensor>&);
using GroupedBwdSig = Tensor(const Tensor&, const Tensor&, c10::IntArrayRef, int64_t, double,
                             const std::optional<Tensor>&);

void save_softmax(AutogradContext* ctx, const Tensor& x, const Tensor& y, int64_t dim, double t,
                  const std::optional<Tensor>& tt) {
  const bool tt_grad = tt.has_value() && tt->defined() && tt->requires_grad();
  ctx->saved_data["tt_grad"] = tt_grad;
  ctx->saved_data["dim"] = dim;
  ctx->saved_data["t"] = t;
  ctx->save_for_backward({y, tt_grad ? x : Tensor(), tt.has_value() ? *tt : Tensor()});
}
struct SoftmaxSaved {  // what save_softmax kept: saved = {y, x or undefined, temperature tensor or undefined}
  variable_list saved;
  int64_t dim;
  double t;
};
SoftmaxSaved load_softmax(AutogradContext* ctx) {
  return {ctx->get_saved_variables(), ctx->saved_data["dim"].toInt(), ctx->saved_data["t"].toDouble()};
}
std::optional<Tensor> saved_tt(const variable_list& saved) {
  return saved[2].defined() ? std::optional<Tensor>(saved[2]) : std::nullopt;
}
Tensor maybe_temperature_grad(AutogradContext* ctx, const variable_list& saved, const Tensor& dx) {
  return ctx->saved_data["tt_grad"].toBool() ? temperature_grad(dx, saved[1], saved[2]) : Tensor();
}

// With an output dtype other than x's, the backward op gives dx in x's dtype (input_dtype); dL/dT is then formed from
// that dx, as for a 16-bit x without a dtype.
template <class Ns, bool kLog>
struct SoftmaxFn : Function<SoftmaxFn<Ns, kLog>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, int64_t dim, double t, const std::optional<Tensor>& tt,
                        std::optional<at::ScalarType> dtype) {
    Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = (kLog ? GLO_OP("log_softmax", SoftmaxSig) : GLO_OP("softmax", SoftmaxSig)).call(x, dim, t, tt, dtype);
    }
    save_softmax(ctx, x, y, dim, t, tt);
    // (-1: dx in grad's dtype, as without a dtype)
    ctx->saved_data["in_dtype"] = y.scalar_type() != x.scalar_type() ? static_cast<int64_t>(x.scalar_type()) : -1;
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const SoftmaxSaved k = load_softmax(ctx);
    const int64_t in = ctx->saved_data["in_dtype"].toInt();
    const std::optional<at::ScalarType> input_dtype =
        in < 0 ? std::nullopt : std::optional<at::ScalarType>(static_cast<at::ScalarType>(in));
    const auto& op = kLog ? GLO_OP("log_softmax_backward", SoftmaxBwdSig) : GLO_OP("softmax_backward", SoftmaxBwdSig);
    const Tensor dx = call_backward(op, grads[0], k.saved[0], k.dim, k.t, saved_tt(k.saved), input_dtype);
    return {dx, Tensor(), Tensor(), maybe_temperature_grad(ctx, k.saved, dx), Tensor()};
  }
};

template <class Ns>
struct GroupedSoftmaxFn : Function<GroupedSoftmaxFn<Ns>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, c10::IntArrayRef sizes, int64_t dim, double t,
                        const std::optional<Tensor>& tt) {
    Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      y = GLO_OP("grouped_softmax", GroupedSig).call(x, sizes, dim, t, tt);
    }
    ctx->saved_data["sizes"] = sizes.vec();
    save_softmax(ctx, x, y, dim, t, tt);
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const SoftmaxSaved k = load_softmax(ctx);
    const std::vector<int64_t> sizes = ctx->saved_data["sizes"].toIntVector();
    const auto& op = GLO_OP("grouped_softmax_backward", GroupedBwdSig);
    const Tensor dx = call_backward(op, grads[0], k.saved[0], sizes, k.dim, k.t, saved_tt(k.saved));
    return {dx, Tensor(), Tensor(), Tensor(), maybe_temperature_grad(ctx, k.saved, dx)};
  }
};

// ---- distillation loss: saves both logits and the per-row statistics (non-differentiable output) ----
template <class Ns>
struct DistillationFn : Function<DistillationFn<Ns>> {
  static variable_list forward(AutogradContext* ctx, const Tensor& student, const Tensor& teacher, double t,
                               c10::string_view reduction) {
    Tensor loss, stats;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      using Sig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, double, c10::string_view);
      std::tie(loss, stats) = GLO_OP("distillation_loss", Sig).call(student, teacher, t, reduction);
    }
    ctx->set_materialize_grads(false);
    ctx->mark_non_differentiable({stats});
    ctx->saved_data["t"] = t;
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->saved_data["teacher_grad"] = teacher.requires_grad();
    ctx->save_for_backward({student, teacher, stats});
    return {loss, stats};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {Tensor(), Tensor(), Tensor(), Tensor()};
    const auto saved = ctx->get_saved_variables();
    const bool teacher_grad = ctx->saved_data["teacher_grad"].toBool();
    using Sig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double,
                                           c10::string_view, bool);
    const std::string reduction = ctx->saved_data["reduction"].toStringRef();
    const double t = ctx->saved_data["t"].toDouble();
    auto [ds, dt] = call_backward(GLO_OP("distillation_loss_backward", Sig), grads[0], saved[0], saved[1], saved[2], t,
                                  reduction, teacher_grad);
    return {ds, teacher_grad ? dt : Tensor(), Tensor(), Tensor()};
  }
};

template <class Ns>
std::tuple<Tensor, Tensor> relu_autograd(const Tensor& x, bool save_mask) {
  auto out = ReluFn<Ns>::apply(x, save_mask);
  return {out[0], out[1]};
}
template <class Ns>
std::tuple<Tensor, Tensor> leaky_relu_autograd(const Tensor& x, double slope, bool save_mask) {
  auto out = LeakyReluFn<Ns>::apply(x, slope, save_mask);
  return {out[0], out[1]};
}
template <class Ns>
Tensor elu_autograd(const Tensor& x, double alpha) { return EluFn<Ns>::apply(x, alpha); }
template <class Ns>
Tensor softplus_autograd(const Tensor& x, double beta, double threshold) {
  return SoftplusFn<Ns>::apply(x, beta, threshold);
}
template <class Ns>
Tensor pelu_autograd(const Tensor& x, const Tensor& a, const Tensor& b) { return PELUFn<Ns>::apply(x, a, b); }
template <class Ns>
std::tuple<Tensor, Tensor> maxout_autograd(const Tensor& x, int64_t pieces, int64_t dim, bool save) {
  auto out = MaxoutFn<Ns>::apply(x, pieces, dim, save);
  return {out[0], out[1]};
}

template <class Ns>
Tensor softmax_autograd(const Tensor& x, int64_t dim, double t, const std::optional<Tensor>& tt,
                        std::optional<at::ScalarType> dtype) {
  return SoftmaxFn<Ns, false>::apply(x, dim, t, tt, dtype);
}
template <class Ns>
Tensor log_softmax_autograd(const Tensor& x, int64_t dim, double t, const std::optional<Tensor>& tt,
                            std::optional<at::ScalarType> dtype) {
  return SoftmaxFn<Ns, true>::apply(x, dim, t, tt, dtype);
}
template <class Ns>
Tensor grouped_softmax_autograd(const Tensor& x, c10::IntArrayRef sizes, int64_t dim, double t,
                                const std::optional<Tensor>& tt) {
  return GroupedSoftmaxFn<Ns>::apply(x, sizes, dim, t, tt);
}
template <class Ns>
std::tuple<Tensor, Tensor> distillation_loss_autograd(const Tensor& s, const Tensor& te, double t,
                                                      c10::string_view reduction) {
  auto out = DistillationFn<Ns>::apply(s, te, t, reduction);
  return {out[0], out[1]};
}

template <class Ns, class Op>
Tensor unary_autograd(const Tensor& x) {
  return UnaryFn<Ns, Op>::apply(x);
}

template <class Ns, class Op>
Tensor binary_autograd(const Tensor& a, const Tensor& b) {
  return BinaryFn<Ns, Op>::apply(a, b);
}

template <class Ns>
void register_autograd(torch::Library& m) {
  m.impl("relu", &relu_autograd<Ns>);
  m.impl("leaky_relu", &leaky_relu_autograd<Ns>);
  m.impl("elu", &elu_autograd<Ns>);
  m.impl("softplus", &softplus_autograd<Ns>);
#define GLO_UNARY_AUTOGRAD_(NAME, FUNCTOR, SAVED) m.impl(#NAME, &unary_autograd<Ns, NAME##_op>);
  GLO_UNARY_OPS(GLO_UNARY_AUTOGRAD_)
#undef GLO_UNARY_AUTOGRAD_
#define GLO_GATED_AUTOGRAD_(NAME, FUNCTOR, ACT)                     \
  m.impl(#NAME, &unary_autograd<Ns, NAME##_gated>);                 \
  m.impl(#NAME "_pair", &binary_autograd<Ns, NAME##_gated_pair>);
  GLO_GATED_OPS(GLO_GATED_AUTOGRAD_)
#undef GLO_GATED_AUTOGRAD_
#define GLO_BIAS_AUTOGRAD_(NAME, FUNCTOR, ACT) m.impl(#NAME, &binary_autograd<Ns, NAME##_bias>);
  GLO_BIAS_OPS(GLO_BIAS_AUTOGRAD_)
#undef GLO_BIAS_AUTOGRAD_
  m.impl("prelu", &binary_autograd<Ns, prelu_op>);
  m.impl("pelu", &pelu_autograd<Ns>);
  m.impl("maxout", &maxout_autograd<Ns>);
  m.impl("softmax", &softmax_autograd<Ns>);
  m.impl("log_softmax", &log_softmax_autograd<Ns>);
  m.impl("grouped_softmax", &grouped_softmax_autograd<Ns>);
  m.impl("distillation_loss", &distillation_loss_autograd<Ns>);
}

}  // namespace

// (The backward ops' autograd, their double backward, is Python: glo_kernels/library.py.)
TORCH_LIBRARY_IMPL(glo_kernels, Autograd, m) { register_autograd<CppNs>(m); }
TORCH_LIBRARY_IMPL(glo_kernels_triton, Autograd, m) { register_autograd<TritonNs>(m); }
