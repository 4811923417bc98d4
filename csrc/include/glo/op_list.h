// The operator list: one line per op. Everything C++ registers for an op is generated from these lines: its schemas
// in both operator namespaces (glo_kernels: the CPU and CUDA kernels; glo_kernels_triton: the Triton kernels, behind
// the same glue), its device implementations (Ops<K> / SoftmaxOps<K> of every kernel set K) and its C++ autograd.
// The Python side (fakes, double backward, the functional API, modules, tests, benchmarks) follows from the op's spec
// in glo_kernels/ops/ (docs/adding_an_op.md).
//
// This header includes nothing: it is a list of macros.
#pragma once

// ---- Element-wise ops without arguments whose backward reads one saved tensor: the input x or the output y ----
//   X(name, Functor, saved)   glo::Functor<T> of glo/activations.h: forward(x) -> y, backward(dy, saved) -> dx;
//                             saved is x (the input) or y (the output)
// Each line defines three operators and their autograd:
//   name(Tensor x) -> Tensor                          (autograd saves `saved`)
//   name_(Tensor(a!) x) -> ()                         (in place; glo_kernels/functional.py records it)
//   name_backward(Tensor grad, Tensor <saved>) -> Tensor
#define GLO_UNARY_OPS(X)         \
  X(sigmoid, Sigmoid, y)         \
  X(tanh, Tanh, y)               \
  X(silu, SiLU, x)               \
  X(mish, Mish, x)               \
  X(hardsigmoid, Hardsigmoid, x) \
  X(hardswish, Hardswish, x)     \
  X(gelu, GELU, x)               \
  X(gelu_tanh, GELUTanh, x)

// ---- Gated linear units: y = act(a) * b (SwiGLU, GeGLU, ReGLU) ----
//   X(name, Functor, act)   glo::Functor<T> of glo/activations.h: the activation of the gate, forward(a) and
//                           backward(dy, a) (glo::Gated<T, Functor<T>> makes the unit); act names its element function
//                           (glo_kernels/triton/math.py's pair act_forward / act_backward)
// Each line defines four operators, and the autograd of the two forwards:
//   name(Tensor x) -> Tensor                         x = [..., 2h]: the gate a = x[..., :h], b = x[..., h:];
//                                                    y = [..., h] (autograd saves x)
//   name_backward(Tensor grad, Tensor x) -> Tensor   dx = [..., 2h]: da and db side by side
//   name_pair(Tensor a, Tensor b) -> Tensor          a and b of one shape (autograd saves both)
//   name_pair_backward(Tensor grad, Tensor a, Tensor b) -> (Tensor, Tensor)   (da, db)
#define GLO_GATED_OPS(X)                 \
  X(swiglu, SiLU, silu)                  \
  X(geglu, GELU, gelu)                   \
  X(geglu_tanh, GELUTanh, gelu_tanh)     \
  X(reglu, ReLUOfInput, relu)

// ---- Bias + activation: y = act(x + bias), one bias per element of the last dim (Apex's fused bias-GELU) ----
//   X(name, Functor, act)   glo::Functor<T>: the activation (glo::BiasAct<T, Functor<T>> makes the op); act names its
//                           element function (glo_kernels/triton/math.py's pair act_forward / act_backward)
// Each line defines two operators and the autograd of the first:
//   name(Tensor x, Tensor bias) -> Tensor                              (autograd saves x and bias)
//   name_backward(Tensor grad, Tensor x, Tensor bias) -> (Tensor, Tensor)   (dx, dbias): dbias, the sum of dx over
//                                                                      the rows, reduced in the same pass
#define GLO_BIAS_OPS(X)                    \
  X(bias_gelu, GELU, gelu)                 \
  X(bias_gelu_tanh, GELUTanh, gelu_tanh)   \
  X(bias_silu, SiLU, silu)

// ---- The other element-wise ops: X(name, schema), implemented by hand in Ops<K> (glo/op_impls.h) ----
// relu: (y, mask); mask is the packed int32 bit mask of x > 0 for backward, empty unless save_mask. relu_: in place,
// returns the mask. relu_backward: dx from the upstream gradient and the mask.
// leaky_relu: as relu, with the slope for x <= 0 (in place too: the mask gives any slope a right backward).
// elu: alpha * expm1(x) for x < 0, x otherwise; elu_ in place (its backward then reads the output); elu_backward reads
// the saved input (is_result=False) or output (is_result=True).
// softplus: x where x * beta > threshold, else log(1 + exp(x * beta)) / beta (F.softplus); its backward reads the
// saved input.
// prelu: a weight of 1 or C (= x.size(1)) elements; prelu_backward: (dx, dweight) in one pass, dweight reduced
// deterministically. pelu: parameters a, b (1 or C elements each); pelu_backward: (dx, da, db) likewise.
// maxout: max over groups of `pieces` along `dim`: (y, uint8 index of each group's winner, empty unless save_indices);
// maxout_backward: the upstream gradient routed to each group's winner.
#define GLO_ELEMENTWISE_OPS(X)                                                                    \
  X(relu, "(Tensor x, bool save_mask) -> (Tensor, Tensor)")                                       \
  X(relu_, "(Tensor(a!) x, bool save_mask) -> Tensor")                                            \
  X(relu_backward, "(Tensor grad, Tensor mask) -> Tensor")                                        \
  X(leaky_relu, "(Tensor x, float negative_slope, bool save_mask) -> (Tensor, Tensor)")           \
  X(leaky_relu_, "(Tensor(a!) x, float negative_slope, bool save_mask) -> Tensor")                \
  X(leaky_relu_backward, "(Tensor grad, Tensor mask, float negative_slope) -> Tensor")            \
  X(elu, "(Tensor x, float alpha) -> Tensor")                                                     \
  X(elu_, "(Tensor(a!) x, float alpha) -> ()")                                                    \
  X(elu_backward, "(Tensor grad, Tensor saved, float alpha, bool is_result) -> Tensor")           \
  X(softplus, "(Tensor x, float beta, float threshold) -> Tensor")                                \
  X(softplus_backward, "(Tensor grad, Tensor x, float beta, float threshold) -> Tensor")           \
  X(prelu, "(Tensor x, Tensor weight) -> Tensor")                                                 \
  X(prelu_backward, "(Tensor grad, Tensor x, Tensor weight) -> (Tensor, Tensor)")                 \
  X(pelu, "(Tensor x, Tensor a, Tensor b) -> Tensor")                                             \
  X(pelu_backward, "(Tensor grad, Tensor x, Tensor a, Tensor b) -> (Tensor, Tensor, Tensor)")     \
  X(maxout, "(Tensor x, int pieces, int dim, bool save_indices) -> (Tensor, Tensor)")             \
  X(maxout_backward, "(Tensor grad, Tensor indices, int pieces, int dim) -> Tensor")

// ---- The softmax family (docs/softmax_contract.md): X(name, schema), implemented in SoftmaxOps<K>
// (glo/softmax_impls.h) ----
// The temperature is `temperature`, or the one value of `temperature_tensor` when given (a learned temperature: read
// on the device, no host synchronization).
// softmax: softmax((x - max) / T) along dim, in `dtype` (x's when None: softmax(x.to(dtype)), as torch.softmax's
// dtype; the pairs bfloat16/float16 -> float32 are fused, see fused_dtype_pair in glo/softmax_impls.h); its backward
// reads the output y and gives dx in `input_dtype` (grad's when None). log_softmax: log_softmax(x / T), likewise.
// grouped_softmax: one softmax per consecutive group of `group_sizes` elements along dim (YOLO9000's WordTree).
// distillation_loss: Hinton's T^2 KL(softmax(teacher/T) || softmax(student/T)) over the last dim, reduced as F.kl_div:
// (loss, per-row statistics [rows, 5] for backward); its backward gives (d student, d teacher), d teacher empty unless
// teacher_grad.
#define GLO_SOFTMAX_OPS(X)                                                                                      \
  X(softmax, "(Tensor x, int dim, float temperature, Tensor? temperature_tensor, ScalarType? dtype=None) -> Tensor") \
  X(softmax_backward, "(Tensor grad, Tensor y, int dim, float temperature, Tensor? temperature_tensor, "          \
                      "ScalarType? input_dtype=None) -> Tensor")                                                \
  X(log_softmax, "(Tensor x, int dim, float temperature, Tensor? temperature_tensor, ScalarType? dtype=None) "   \
                 "-> Tensor")                                                                                   \
  X(log_softmax_backward, "(Tensor grad, Tensor y, int dim, float temperature, Tensor? temperature_tensor, "      \
                          "ScalarType? input_dtype=None) -> Tensor")                                            \
  X(grouped_softmax, "(Tensor x, int[] group_sizes, int dim, float temperature, Tensor? temperature_tensor) "    \
                     "-> Tensor")                                                                               \
  X(grouped_softmax_backward, "(Tensor grad, Tensor y, int[] group_sizes, int dim, float temperature, "           \
                              "Tensor? temperature_tensor) -> Tensor")                                          \
  X(distillation_loss, "(Tensor student, Tensor teacher, float temperature, str reduction) -> (Tensor, Tensor)") \
  X(distillation_loss_backward, "(Tensor grad, Tensor student, Tensor teacher, Tensor stats, float temperature, " \
                                "str reduction, bool teacher_grad) -> (Tensor, Tensor)")

// ---- The launch operators of the Triton backend (namespace glo_triton_launch): the kernel set K of the
// glo_kernels_triton operators (csrc/triton_ops.cpp) hands each kernel call to one of these, implemented in Python by
// glo_kernels/triton/launch.py. `fn` names the element function (the op, or elu_from_result), `scalars` its scalar
// parameters; geometries are spelled out as ints. ----
#define GLO_TRITON_LAUNCH_OPS(X)                                                                                 \
  X(mask_forward, "(Tensor x, Tensor(a!) y, Tensor(b!) mask, str fn, float[] scalars) -> ()")                    \
  X(mask_backward, "(Tensor grad, Tensor mask, Tensor(a!) dx, str fn, float[] scalars) -> ()")                    \
  X(unary_forward, "(Tensor x, Tensor(a!) y, str fn, float[] scalars) -> ()")                                    \
  X(unary_backward, "(Tensor grad, Tensor saved, Tensor(a!) dx, str fn, float[] scalars) -> ()")                 \
  X(channel_forward, "(Tensor x, Tensor[] params, Tensor(a!) y, int outer, int channels, int inner, str fn) -> ()") \
  X(channel_backward, "(Tensor grad, Tensor x, Tensor[] params, Tensor(a!) dx, Tensor(b!)[] dparams, int outer, " \
                      "int channels, int inner, str fn) -> ()")                                                  \
  X(maxout_forward, "(Tensor x, Tensor(a!) y, Tensor(b!) indices, int outer, int groups, int pieces, int inner) -> ()") \
  X(maxout_backward, "(Tensor grad, Tensor indices, Tensor(a!) dx, int outer, int groups, int pieces, int inner) " \
                     "-> ()")                                                                                    \
  X(gated_forward, "(Tensor a, Tensor b, Tensor(a!) y, str fn) -> ()")                                          \
  X(gated_backward, "(Tensor grad, Tensor a, Tensor b, Tensor(a!) da, Tensor(b!) db, str fn) -> ()")             \
  X(softmax_forward, "(Tensor x, Tensor(a!) y, int outer, int size, int inner, float temperature, "              \
                     "Tensor? temperature_tensor, bool log) -> ()")                                              \
  X(softmax_backward, "(Tensor grad, Tensor y, Tensor(a!) dx, int outer, int size, int inner, float temperature, " \
                      "Tensor? temperature_tensor, bool log) -> ()")                                             \
  X(grouped_softmax_forward, "(Tensor x, Tensor(a!) y, int outer, int size, int inner, Tensor offsets, "         \
                             "float temperature, Tensor? temperature_tensor) -> ()")                             \
  X(grouped_softmax_backward, "(Tensor grad, Tensor y, Tensor(a!) dx, int outer, int size, int inner, "          \
                              "Tensor offsets, float temperature, Tensor? temperature_tensor) -> ()")            \
  X(distill_forward, "(Tensor s, Tensor t, Tensor(a!) stats, Tensor(b!)? loss_none, int rows, int cols, "        \
                     "float temperature) -> ()")                                                                 \
  X(distill_backward, "(Tensor grad, Tensor s, Tensor t, Tensor stats, Tensor(a!) ds, Tensor(b!)? dt, int rows, " \
                      "int cols, float temperature, bool none, float scale) -> ()")
