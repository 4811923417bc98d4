// The schemas of every operator, from the list in glo/op_list.h. Device kernels are registered beside their code
// (cpu/*.cpp, cuda/*.cu, triton_ops.cpp); autograd of the forward ops in autograd.cpp, of the backward ops (double
// backward) and fake (meta) kernels in glo_kernels/library.py.
// Importing glo_kernels._C runs these static registrations; the module itself is empty (no pybind).
#include <Python.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

#include "glo/op_list.h"
#include "glo/softmax_plan.h"

namespace {

// The schemas of glo/op_list.h, defined in each operator namespace.
#define GLO_DEF_OP_(NAME, SCHEMA) m.def(#NAME SCHEMA);
#define GLO_DEF_UNARY_OP_(NAME, FUNCTOR, SAVED)      \
  m.def(#NAME "(Tensor x) -> Tensor");               \
  m.def(#NAME "_(Tensor(a!) x) -> ()");              \
  m.def(#NAME "_backward(Tensor grad, Tensor " #SAVED ") -> Tensor");

#define GLO_DEF_GATED_OP_(NAME, FUNCTOR, ACT)                                \
  m.def(#NAME "(Tensor x) -> Tensor");                                       \
  m.def(#NAME "_backward(Tensor grad, Tensor x) -> Tensor");                 \
  m.def(#NAME "_pair(Tensor a, Tensor b) -> Tensor");                        \
  m.def(#NAME "_pair_backward(Tensor grad, Tensor a, Tensor b) -> (Tensor, Tensor)");

#define GLO_DEF_BIAS_OP_(NAME, FUNCTOR, ACT)                  \
  m.def(#NAME "(Tensor x, Tensor bias) -> Tensor");           \
  m.def(#NAME "_backward(Tensor grad, Tensor x, Tensor bias) -> (Tensor, Tensor)");

void define_ops(torch::Library& m) {
  GLO_ELEMENTWISE_OPS(GLO_DEF_OP_)
  GLO_UNARY_OPS(GLO_DEF_UNARY_OP_)
  GLO_GATED_OPS(GLO_DEF_GATED_OP_)
  GLO_BIAS_OPS(GLO_DEF_BIAS_OP_)
  GLO_SOFTMAX_OPS(GLO_DEF_OP_)
}

}  // namespace

// The C++ kernels (CPU: cpu/*.cpp; CUDA: cuda/*.cu).
TORCH_LIBRARY(glo_kernels, m) { define_ops(m); }
// The Triton kernels behind the same glue (triton_ops.cpp), and the launch operators that glue calls.
TORCH_LIBRARY(glo_kernels_triton, m) { define_ops(m); }
TORCH_LIBRARY(glo_triton_launch, m) { GLO_TRITON_LAUNCH_OPS(GLO_DEF_OP_) }

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
