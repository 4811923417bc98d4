// The schemas of every glo_kernels operator. Device kernels are registered beside their code
// (cpu/activations_cpu.cpp, cuda/activations.cu); autograd of the forward ops in autograd.cpp, of the backward ops
// (double backward) and fake (meta) kernels in glo_kernels/ops.py.
// Importing glo_kernels._C runs these static registrations; the module itself is empty (no pybind).
#include <Python.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

#include "glo/softmax_plan.h"

TORCH_LIBRARY(glo_kernels, m) {
  // ReLU: returns (y, mask); mask is the packed int32 bit mask of x > 0 for backward, empty unless save_mask.
  m.def("relu(Tensor x, bool save_mask) -> (Tensor, Tensor)");
  // In-place ReLU on x; returns the mask.
  m.def("relu_(Tensor(a!) x, bool save_mask) -> Tensor");
  // dx from the upstream gradient and the forward's mask.
  m.def("relu_backward(Tensor grad, Tensor mask) -> Tensor");
  // Leaky ReLU: as relu, with the slope for x <= 0.
  m.def("leaky_relu(Tensor x, float negative_slope, bool save_mask) -> (Tensor, Tensor)");
  // In-place Leaky ReLU; returns the mask (so any slope, negative too, has a right backward).
  m.def("leaky_relu_(Tensor(a!) x, float negative_slope, bool save_mask) -> Tensor");
  // dx from the upstream gradient, the mask and the slope.
  m.def("leaky_relu_backward(Tensor grad, Tensor mask, float negative_slope) -> Tensor");
  // ELU: alpha * expm1(x) for x < 0, x otherwise.
  m.def("elu(Tensor x, float alpha) -> Tensor");
  // In-place ELU (its backward then reads the output: elu_backward(..., is_result=True)).
  m.def("elu_(Tensor(a!) x, float alpha) -> ()");
  // dx from the upstream gradient and the saved input (is_result=False) or output (is_result=True).
  m.def("elu_backward(Tensor grad, Tensor saved, float alpha, bool is_result) -> Tensor");
  // Logistic sigmoid; its backward reads the output y.
  m.def("sigmoid(Tensor x) -> Tensor");
  // In-place sigmoid on x (its backward reads the output, which x then holds: sigmoid_backward(grad, x)).
  m.def("sigmoid_(Tensor(a!) x) -> ()");
  m.def("sigmoid_backward(Tensor grad, Tensor y) -> Tensor");
  // tanh; its backward reads the output y.
  m.def("tanh(Tensor x) -> Tensor");
  // In-place tanh on x (backward: tanh_backward(grad, x)).
  m.def("tanh_(Tensor(a!) x) -> ()");
  m.def("tanh_backward(Tensor grad, Tensor y) -> Tensor");
  // PReLU with a weight of 1 or C (= x.size(1)) elements.
  m.def("prelu(Tensor x, Tensor weight) -> Tensor");
  // (dx, dweight) in one pass over x and grad, dweight reduced deterministically.
  m.def("prelu_backward(Tensor grad, Tensor x, Tensor weight) -> (Tensor, Tensor)");
  // PELU with parameters a, b (1 or C elements each, the same number).
  m.def("pelu(Tensor x, Tensor a, Tensor b) -> Tensor");
  // (dx, da, db) in one pass over x and grad, da and db reduced deterministically.
  m.def("pelu_backward(Tensor grad, Tensor x, Tensor a, Tensor b) -> (Tensor, Tensor, Tensor)");
  // Maxout over groups of `pieces` along `dim`: (y, uint8 index of each group's winner, empty unless save_indices).
  m.def("maxout(Tensor x, int pieces, int dim, bool save_indices) -> (Tensor, Tensor)");
  // dx: the upstream gradient routed to each group's winner.
  m.def("maxout_backward(Tensor grad, Tensor indices, int pieces, int dim) -> Tensor");

  // Softmax family (docs/softmax_contract.md). The temperature is `temperature`, or the one value of
  // `temperature_tensor` when given (a learned temperature: read on the device, no host synchronization).
  // softmax((x - max) / T) along dim, in `dtype` (x's when None: softmax(x.to(dtype)), as torch.softmax's dtype; the
  // pairs bfloat16/float16 -> float32 are fused, see fused_dtype_pair in glo/softmax_impls.h); its backward reads the
  // output y and gives dx in `input_dtype` (grad's when None).
  m.def("softmax(Tensor x, int dim, float temperature, Tensor? temperature_tensor, ScalarType? dtype=None) -> Tensor");
  m.def("softmax_backward(Tensor grad, Tensor y, int dim, float temperature, Tensor? temperature_tensor, "
        "ScalarType? input_dtype=None) -> Tensor");
  // log_softmax(x / T) along dim (dtype as softmax); its backward reads the output y.
  m.def("log_softmax(Tensor x, int dim, float temperature, Tensor? temperature_tensor, ScalarType? dtype=None) "
        "-> Tensor");
  m.def("log_softmax_backward(Tensor grad, Tensor y, int dim, float temperature, Tensor? temperature_tensor, "
        "ScalarType? input_dtype=None) -> Tensor");
  // One softmax per consecutive group of `group_sizes` elements along dim (YOLO9000's WordTree).
  m.def("grouped_softmax(Tensor x, int[] group_sizes, int dim, float temperature, Tensor? temperature_tensor) -> Tensor");
  m.def("grouped_softmax_backward(Tensor grad, Tensor y, int[] group_sizes, int dim, float temperature, "
        "Tensor? temperature_tensor) -> Tensor");
  // Hinton's distillation loss T^2 KL(softmax(teacher/T) || softmax(student/T)) over the last dim, reduced as
  // F.kl_div: (loss, per-row statistics [rows, 5] for backward).
  m.def("distillation_loss(Tensor student, Tensor teacher, float temperature, str reduction) -> (Tensor, Tensor)");
  // (d student, d teacher) from the logits and the statistics; d teacher is empty unless teacher_grad.
  m.def("distillation_loss_backward(Tensor grad, Tensor student, Tensor teacher, Tensor stats, float temperature, "
        "str reduction, bool teacher_grad) -> (Tensor, Tensor)");
}

// Debugging hooks, kept out of the glo_kernels namespace (whose ops are all public and opchecked).
namespace {

// The CUDA softmax launch plan (glo/softmax_plan.h) for a shape and a device described by its properties:
// [path (0 cached rows, 1 online), G, C, block, grid, vpt, vs, smem bytes, reads, nonportable, exchange].
std::vector<int64_t> softmax_plan_hook(int64_t rows, int64_t size, int64_t elem_bytes, bool backward, int64_t sm_count,
                                       int64_t smem_optin, bool cluster_launch, int64_t max_cluster_portable,
                                       int64_t max_cluster_nonportable, int64_t max_cluster_active,
                                       bool allow_clusters, int64_t max_cluster, int64_t exchange) {
  namespace sp = ::glo::softmax_plan;
  TORCH_CHECK(rows >= 0 && size >= 0, "glo_kernels_debug.softmax_plan: arguments 'rows' and 'size' must be >= 0, got ",
              rows, " and ", size);
  TORCH_CHECK(elem_bytes == 2 || elem_bytes == 4 || elem_bytes == 8,
              "glo_kernels_debug.softmax_plan: argument 'elem_bytes' must be 2, 4 or 8, got ", elem_bytes);
  sp::SoftmaxDeviceProps d;
  d.sm_count = static_cast<int>(sm_count);
  d.smem_optin = smem_optin;
  d.cluster_launch = cluster_launch;
  d.max_cluster_portable = static_cast<int>(max_cluster_portable);
  d.max_cluster_nonportable = static_cast<int>(max_cluster_nonportable);
  d.max_cluster_active = static_cast<int>(max_cluster_active);
  sp::SoftmaxPlanOptions o;
  o.allow_clusters = allow_clusters;
  o.max_cluster = static_cast<int>(max_cluster);
  TORCH_CHECK(exchange == 0 || exchange == 1,
              "glo_kernels_debug.softmax_plan: argument 'exchange' must be 0 (sync) or 1 (mbarrier), got ", exchange);
  o.exchange = static_cast<sp::SoftmaxExchange>(exchange);
  const sp::SoftmaxPlan p = sp::plan_softmax(rows, size, static_cast<int>(elem_bytes), backward, d, o);
  return {static_cast<int64_t>(p.path), p.G, p.C, p.block, p.grid, p.vpt, p.vs, p.smem, p.reads, p.nonportable,
          static_cast<int64_t>(p.exchange)};
}

// The CUDA plan of a softmax along a strided dim (x as [outer, size, inner]) on a device with sm_count SMs and
// smem_optin bytes of opt-in shared memory per block: [path (2 tiles, 3 columns), W, block, grid, smem bytes, reads].
std::vector<int64_t> softmax_strided_plan_hook(int64_t outer, int64_t size, int64_t inner, int64_t elem_bytes,
                                               bool backward, int64_t sm_count, int64_t smem_optin) {
  namespace sp = ::glo::softmax_plan;
  TORCH_CHECK(outer >= 0 && size >= 0 && inner >= 0,
              "glo_kernels_debug.softmax_strided_plan: arguments 'outer', 'size' and 'inner' must be >= 0, got ", outer,
              ", ", size, " and ", inner);
  TORCH_CHECK(elem_bytes == 2 || elem_bytes == 4 || elem_bytes == 8,
              "glo_kernels_debug.softmax_strided_plan: argument 'elem_bytes' must be 2, 4 or 8, got ", elem_bytes);
  sp::SoftmaxDeviceProps d;
  d.sm_count = static_cast<int>(sm_count);
  d.smem_optin = smem_optin;
  const sp::StridedPlan p = sp::plan_strided(outer, size, inner, static_cast<int>(elem_bytes), backward, d);
  return {static_cast<int64_t>(p.path), p.W, p.block, p.grid, p.smem, p.reads};
}

}  // namespace

TORCH_LIBRARY(glo_kernels_debug, m) {
  m.def("softmax_strided_plan(int outer, int size, int inner, int elem_bytes, bool backward, int sm_count, "
        "int smem_optin) -> int[]",
        &softmax_strided_plan_hook);
  m.def("softmax_plan(int rows, int size, int elem_bytes, bool backward, int sm_count, int smem_optin, "
        "bool cluster_launch, int max_cluster_portable, int max_cluster_nonportable, int max_cluster_active, "
        "bool allow_clusters, int max_cluster, int exchange=1) -> int[]",
        &softmax_plan_hook);
}

// An importable, empty module: `import glo_kernels._C` loads the library and runs the registrations above.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
