// CUDA kernels of the softmax family: softmax / log-softmax with a temperature, their backward, grouped softmax and the
// distillation loss. The contract (formulas, special values, statistics) is docs/softmax_contract.md; the glue that
// checks arguments, allocates outputs and reduces the loss is glo/softmax_impls.h (SoftmaxOps<CudaSoftmaxKernels>).
// This file plans and launches; the kernels are in the headers it includes (one translation unit):
// softmax_device.cuh (limits, reductions, cluster exchange, row groups, cached chunks), softmax_rows.cuh,
// softmax_online.cuh, softmax_strided.cuh (strided and tiles kernels) and distillation.cuh.
//
// Conventions (as csrc/cuda/activations.cu): contiguous tensors, int64 indices, loads in the data dtype, math in opmath
// (float for half/bfloat16/float, double for double), 16-byte vector accesses when every pointer is 16-byte aligned
// and a row is a whole number of vectors, scalar accesses otherwise. Every sum is taken in a fixed order that depends
// only on the shape and the launch plan (itself a function of the shape and the device's cluster support): results
// are reproducible run to run. No atomics.
//
// Collectives: the threads of a row group (G lanes of one warp, G a power of two <= 32, or a whole block of G = a
// multiple of 32 threads, or the C blocks of a thread-block cluster) reach group_reduce() in loops whose trip count
// is uniform across the block (and the cluster), so every __shfl_xor_sync sees all 32 lanes of the warp, every
// __syncthreads every thread of the block and every cluster barrier every block of the cluster. Element loops with
// per-thread trip counts hold no collective.
//
// Paths of a softmax along a contiguous dim (inner == 1), with VEC = 16 / sizeof(scalar_t) elements per 16-byte
// vector; the plan is plan_softmax of glo/softmax_plan.h (a pure host function, tested on the CPU with the properties
// of an H100, H200 and A100), its device inputs queried once per device (device_state):
//  * rows kernels, the row cached on chip so that x is read from memory once: each thread of a row group holds
//    fwd_vpt chunks of 16 bytes in registers (4 for 16-bit types, 3 float32, 2 float64; backward: kBwdVPT = 2 of dy
//    and of y) and, for longer rows, VS more chunks in dynamic shared memory. Row groups: G = 1..32 lanes of a warp
//    (256-thread blocks of 256 / G rows) up to 32 threads, then one block of G <= 512 threads per row (registers only
//    up to fp32 6144 elements, then with <= 96 KiB of shared memory up to fp32 30720: two blocks per SM), then
//    G <= 1024 with <= 200 KiB (on an H100: fp32 61440; backward fp32 4096 / 16384 / 32768). On sm_90+ longer rows
//    use a thread-block cluster of C = 2, 4, 8 or 16 such blocks per row (16: the non-portable size), the fewest that
//    hold the row, the partial maxima and sums exchanged through distributed shared memory (on an H100 every row up
//    to 262144 elements, float32 or 16-bit, forward and backward).
//  * online kernels (longer rows, or no clusters): one block of 1024 threads per row; pass 1 keeps a running
//    (max, sum) per thread with rescaling, pass 2 (in reverse order, so that the row's tail is still in L2) writes y.
// Along a strided dim (inner > 1), plan_strided of glo/softmax_plan.h: tiles kernels, a block per tile of all `size`
// rows times W * VEC columns, held in shared memory (x read once; 16-byte cp.async when inner % VEC == 0; on an H100
// every dim up to 12,800 elements forward, 6,400 backward, whatever inner); a longer dim: one thread per
// (outer, inner) column, online pass + write pass, consecutive threads reading consecutive addresses. Grouped
// softmax uses the online kernels with one warp per (row, group) (inner == 1) and the strided kernels with one thread
// per (outer, group, inner) column. Backward: the same shapes, one sum per row
// (dot(dy, y), or sum(dy) for log-softmax). Distillation: a row group per row (G = 1..32 lanes or a block of <= 1024
// threads, about 8 vectors per thread), one online pass over s and t for the statistics, a second pass for the
// pointwise loss; its backward is element-wise (reduced) or a row group per row (A, B sums, then the write pass).
//
// Output dtypes (softmax / log-softmax with dtype=, fused_dtype_pair of glo/softmax_impls.h): the forward kernels read
// x in scalar_t and write y in out_t, the backward kernels read dy and y in scalar_t and write dx in dx_t; equal
// types, or a fused widening pair (bfloat16 / float16 x, float y and dy), which share the opmath type float. Chunks
// are sized by the type read (16-byte loads); their outputs are stored as vectors of the same number of elements
// (store_vec: one 16-byte store per 16 bytes, or one 8-byte store for 4 half-size elements).
//
// Special values: the maximum skips NaN (fmax), but a NaN reaches the sum (exp(NaN - m) = NaN); +inf gives
// exp(inf - inf) = NaN; a row of -inf gives m = -inf and x - m = NaN in the write pass. The online (max, sum) keeps
// the sum relative to the "safe" max (0 while the max is -inf), so a leading run of -inf never creates a NaN, and
// rescales with exp((old max - new safe max) * inv_t), which is 0 for an old max of -inf and keeps a NaN sum NaN.
// Padding lanes of the cached rows hold -inf (forward) or 0 (backward): they add exactly 0.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cooperative_groups.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "distillation.cuh"
#include "glo/softmax_impls.h"
#include "glo/softmax_plan.h"
#include "softmax_online.cuh"
#include "softmax_rows.cuh"
#include "softmax_strided.cuh"

namespace glo {
namespace {

// Launch-plan constants and helpers: pure host code in glo/softmax_plan.h, unit-tested on the CPU.
using namespace ::glo::softmax_plan;

// ---------------------------------------------------------------------------------------------------------------
// Host side: launch plans.
// ---------------------------------------------------------------------------------------------------------------
// Probe for the device's cluster properties: whether this file's code for the device was compiled for sm_90+
// (ptxVersion >= 90: the cluster code is compiled in) and the largest cluster of 1024-thread blocks with the full
// shared-memory budget that can be co-scheduled (the rows kernels' worst case: one block per SM).
__global__ void __launch_bounds__(kMaxBlock, 1) cluster_probe_kernel() {}

// Plan inputs of a device, queried once per device (std::call_once), never changed afterwards: a launch never feeds
// back into a plan, so a failed launch throws and the next call plans (and sums) exactly as before.
//   GLO_SOFTMAX_CLUSTERS=0        no clusters (tests of the cluster-free paths)
//   GLO_SOFTMAX_MAX_CLUSTER=N     clusters of at most N blocks (rounded down to a power of two)
//   GLO_SOFTMAX_EXCHANGE=sync|mbarrier   how the blocks of a cluster exchange their partial results (default
//                                 mbarrier: DSMEM stores with mbarriers, see cluster_exchange; sync: cluster barriers)
// Both are read when the device is first used.
constexpr int kMaxDevices = 64;

struct DeviceState {
  std::once_flag once;
  SoftmaxDeviceProps props;
  SoftmaxPlanOptions opts;
};
DeviceState g_devices[kMaxDevices];

void query_device(int device, DeviceState& st) {
  SoftmaxDeviceProps d;
  SoftmaxPlanOptions o;
  int v = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device));
  d.sm_count = v;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  d.smem_optin = v;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrClusterLaunch, device));
  cudaFuncAttributes fa{};
  C10_CUDA_CHECK(cudaFuncGetAttributes(&fa, cluster_probe_kernel));
  d.cluster_launch = v != 0 && fa.ptxVersion >= 90;
  const char* env = std::getenv("GLO_SOFTMAX_CLUSTERS");
  o.allow_clusters = env == nullptr || std::strcmp(env, "0") != 0;
  if (const char* ex = std::getenv("GLO_SOFTMAX_EXCHANGE")) {
    TORCH_CHECK(std::strcmp(ex, "sync") == 0 || std::strcmp(ex, "mbarrier") == 0,
                "glo_kernels: softmax: GLO_SOFTMAX_EXCHANGE must be 'sync' or 'mbarrier', got '", ex, "'");
    o.exchange = std::strcmp(ex, "mbarrier") == 0 ? SoftmaxExchange::kMbarrier : SoftmaxExchange::kSync;
  }
  if (const char* mc = std::getenv("GLO_SOFTMAX_MAX_CLUSTER")) {
    const int n = std::atoi(mc);
    TORCH_CHECK(n >= 1, "glo_kernels: softmax: GLO_SOFTMAX_MAX_CLUSTER must be a positive integer, got '", mc, "'");
    o.max_cluster = n;
  }
  if (d.cluster_launch) {
    d.max_cluster_portable = 8;
    d.max_cluster_nonportable = kMaxClusterLimit;
    const int smem = static_cast<int>(smem_budget_one_block(d));
    C10_CUDA_CHECK(cudaFuncSetAttribute(cluster_probe_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    C10_CUDA_CHECK(cudaFuncSetAttribute(cluster_probe_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(kMaxClusterLimit, 1, 1);
    cfg.blockDim = dim3(kMaxBlock, 1, 1);
    cfg.dynamicSmemBytes = static_cast<size_t>(smem);
    int c = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxPotentialClusterSize(&c, cluster_probe_kernel, &cfg));
    d.max_cluster_active = std::max(1, c);
  }
  st.props = d;
  st.opts = o;
}

const DeviceState& device_state(int device) {
  TORCH_CHECK(device >= 0 && device < kMaxDevices, "glo_kernels: softmax: device index ", device, " out of range");
  DeviceState& st = g_devices[device];
  std::call_once(st.once, [&] { query_device(device, st); });  // an exception leaves the flag unset: retried
  return st;
}

SoftmaxPlan plan_for(int device, int64_t rows, int64_t size, int elem_bytes, bool backward) {
  const DeviceState& st = device_state(device);
  return plan_softmax(rows, size, elem_bytes, backward, st.props, st.opts);
}

StridedPlan strided_plan_for(int device, const SoftmaxGeometry& g, int elem_bytes, bool backward) {
  return plan_strided(g.outer, g.size, g.inner, elem_bytes, backward, device_state(device).props);
}

// The kernel attributes a cached-rows kernel needs on a device, set once per (kernel, device) (`once` is the calling
// instantiation's own flags): the shared-memory limit raised to the plans' budget, and clusters above the portable size
// allowed when the device's plans use them.
// Tiles kernels: the limit is smem_budget_tiles() (their static shared memory is larger) and clusters are not used.
template <typename... KArgs>
void prepare_kernel(void (*kernel)(KArgs...), std::once_flag (&once)[kMaxDevices], int device, bool tiles = false) {
  const DeviceState& st = device_state(device);
  std::call_once(once[device], [&] {
    const int smem = static_cast<int>(tiles ? smem_budget_tiles(st.props) : smem_budget_one_block(st.props));
    if (smem > 48 * 1024) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    }
    if (!tiles && max_cluster_for(st.props, st.opts) > st.props.max_cluster_portable) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    }
  });
}

// Launches a cached-rows kernel with plan p (args: the kernel's arguments before (G, C, VS)): plainly, or with a
// cluster of C blocks along x. Any error throws; nothing is remembered (the next call makes the same plan).
template <typename... KArgs, typename... Args>
void launch_cached(void (*kernel)(KArgs...), std::once_flag (&once)[kMaxDevices], const SoftmaxPlan& p, int device,
                   cudaStream_t stream, Args... args) {
  prepare_kernel(kernel, once, device);
  if (p.C == 1) {
    kernel<<<p.grid, p.block, static_cast<size_t>(p.smem), stream>>>(args..., p.G, p.C, p.vs);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(p.grid, 1, 1);
  cfg.blockDim = dim3(p.block, 1, 1);
  cfg.dynamicSmemBytes = static_cast<size_t>(p.smem);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = static_cast<unsigned>(p.C);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  C10_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args..., p.G, p.C, p.vs));
}

unsigned strided_grid(int64_t n) { return grid_cap(ceil_div(n, kThreads)); }

// x in scalar_t, y in out_t (a dtype, or a fused pair of fused_dtype_pair).
template <typename scalar_t, typename out_t>
void softmax_forward_typed(const at::Tensor& x, at::Tensor& y, SoftmaxGeometry g, const Temperature& temp, bool log,
                           int device, cudaStream_t stream) {
  using T = at::opmath_type<scalar_t>;
  constexpr int VEC = Vec16<scalar_t>::kSize;  // (chunks sized by the type read)
  const InvTemp<T> it = make_inv_temp<T>(temp);
  const scalar_t* xp = x.const_data_ptr<scalar_t>();
  out_t* yp = y.mutable_data_ptr<out_t>();
  if (g.inner == 1) {
    const int64_t rows = g.outer, size = g.size;
    const bool vec = aligned16(xp) && aligned16(yp) && size % VEC == 0;
    const SoftmaxPlan p = plan_for(device, rows, size, static_cast<int>(sizeof(scalar_t)), false);
    if (p.path == SoftmaxPath::kCachedRows) {
      constexpr int VPT = fwd_vpt(sizeof(scalar_t));
      if (p.exchange == SoftmaxExchange::kMbarrier) {
        static std::once_flag once[kMaxDevices];
        launch_cached(softmax_rows_forward_kernel<scalar_t, out_t, VPT, kXchgMbarrier>, once, p, device, stream, xp,
                      yp, rows, size, vec, log, it);
      } else {
        static std::once_flag once[kMaxDevices];
        launch_cached(softmax_rows_forward_kernel<scalar_t, out_t, VPT, kXchgSync>, once, p, device, stream, xp, yp,
                      rows, size, vec, log, it);
      }
      return;
    }
    // rows longer than any cached plan: one 1024-thread block per row, two reads
    softmax_online_forward_kernel<scalar_t, out_t><<<p.grid, p.block, 0, stream>>>(
        xp, yp, rows, size, nullptr, 1, p.G, vec, log, it);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else {
    const StridedPlan p = strided_plan_for(device, g, static_cast<int>(sizeof(scalar_t)), false);
    if (p.path == SoftmaxPath::kTiles) {  // x read once
      const bool vec = aligned16(xp) && aligned16(yp) && g.inner % VEC == 0;
      static std::once_flag once[kMaxDevices];
      prepare_kernel(softmax_tiles_forward_kernel<scalar_t, out_t>, once, device, true);
      softmax_tiles_forward_kernel<scalar_t, out_t><<<p.grid, p.block, static_cast<size_t>(p.smem), stream>>>(
          xp, yp, g.outer, static_cast<int>(g.size), static_cast<int>(g.inner), vec, log, it, p.W);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    // a dim too long for a tile: one thread per column, two reads
    softmax_strided_forward_kernel<scalar_t, out_t><<<p.grid, p.block, 0, stream>>>(
        xp, yp, g.outer, g.size, g.inner, nullptr, 1, log, it);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

// grad and y in scalar_t (the forward's output dtype), dx in dx_t (its input dtype).
template <typename scalar_t, typename dx_t>
void softmax_backward_typed(const at::Tensor& grad, const at::Tensor& y, at::Tensor& dx, SoftmaxGeometry g,
                            const Temperature& temp, bool log, int device, cudaStream_t stream) {
  using T = at::opmath_type<scalar_t>;
  constexpr int VEC = Vec16<scalar_t>::kSize;
  const InvTemp<T> it = make_inv_temp<T>(temp);
  const scalar_t* gp = grad.const_data_ptr<scalar_t>();
  const scalar_t* yp = y.const_data_ptr<scalar_t>();
  dx_t* dp = dx.mutable_data_ptr<dx_t>();
  if (g.inner == 1) {
    const int64_t rows = g.outer, size = g.size;
    const bool vec = aligned16(gp) && aligned16(yp) && aligned16(dp) && size % VEC == 0;
    const SoftmaxPlan p = plan_for(device, rows, size, static_cast<int>(sizeof(scalar_t)), true);
    if (p.path == SoftmaxPath::kCachedRows) {
      if (p.exchange == SoftmaxExchange::kMbarrier) {
        static std::once_flag once[kMaxDevices];
        launch_cached(softmax_rows_backward_kernel<scalar_t, dx_t, kBwdVPT, kXchgMbarrier>, once, p, device, stream,
                      gp, yp, dp, rows, size, vec, log, it);
      } else {
        static std::once_flag once[kMaxDevices];
        launch_cached(softmax_rows_backward_kernel<scalar_t, dx_t, kBwdVPT, kXchgSync>, once, p, device, stream, gp,
                      yp, dp, rows, size, vec, log, it);
      }
      return;
    }
    // rows longer than any cached plan: one 1024-thread block per row, two reads
    softmax_online_backward_kernel<scalar_t, dx_t><<<p.grid, p.block, 0, stream>>>(
        gp, yp, dp, rows, size, nullptr, 1, p.G, vec, log, it);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else {
    const StridedPlan p = strided_plan_for(device, g, static_cast<int>(sizeof(scalar_t)), true);
    if (p.path == SoftmaxPath::kTiles) {  // dy and y read once
      const bool vec = aligned16(gp) && aligned16(yp) && aligned16(dp) && g.inner % VEC == 0;
      static std::once_flag once[kMaxDevices];
      prepare_kernel(softmax_tiles_backward_kernel<scalar_t, dx_t>, once, device, true);
      softmax_tiles_backward_kernel<scalar_t, dx_t><<<p.grid, p.block, static_cast<size_t>(p.smem), stream>>>(
          gp, yp, dp, g.outer, static_cast<int>(g.size), static_cast<int>(g.inner), vec, log, it, p.W);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    // a dim too long for a tile: one thread per column, two reads
    softmax_strided_backward_kernel<scalar_t, dx_t><<<p.grid, p.block, 0, stream>>>(
        gp, yp, dp, g.outer, g.size, g.inner, nullptr, 1, log, it);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

// f(in_t{}, out_t{}) for a softmax dtype pair (forward: x in `in`, y in `out`; backward: dx in `in`, dy and y in
// `out`): one dtype, or a fused widening pair (fused_dtype_pair of glo/softmax_impls.h).
template <class F>
void dispatch_dtype_pair(at::ScalarType in, at::ScalarType out, const F& f) {
  if (in == out) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in, "glo_softmax_cuda",
                                    [&] { f(scalar_t{}, scalar_t{}); });
  } else if (in == at::kBFloat16 && out == at::kFloat) {
    f(c10::BFloat16{}, float{});
  } else if (in == at::kHalf && out == at::kFloat) {
    f(c10::Half{}, float{});
  } else {
    TORCH_CHECK(false, "glo_kernels: softmax: no fused CUDA kernel for ", in, " -> ", out,
                " (softmax_impls.h casts first)");
  }
}

// Grouped softmax offsets (0, g0, g0 + g1, ..., size) on the device, cached per (device, offsets) for the life of the
// process: the first call with a group list copies it to the device (one synchronous copy), every later call finds it,
// so there is no host synchronization per call and calls can be captured in a CUDA graph (after one call outside the
// capture). At most kMaxCachedGroupLists lists are kept; beyond that a list is copied on each call (as before the
// cache), on the current stream.
constexpr size_t kMaxCachedGroupLists = 1024;

at::Tensor device_offsets(const at::Tensor& host_offsets, const c10::Device& device, const char* op) {
  static std::mutex mu;
  // Never destroyed (device memory must not be freed during static destruction, after the CUDA runtime is gone).
  static auto& cache = *new std::map<std::pair<int, std::vector<int64_t>>, at::Tensor>();
  const int64_t* h = host_offsets.const_data_ptr<int64_t>();
  std::pair<int, std::vector<int64_t>> key(device.index(), std::vector<int64_t>(h, h + host_offsets.numel()));
  {
    const std::lock_guard<std::mutex> lock(mu);
    const auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  TORCH_CHECK(c10::cuda::currentStreamCaptureStatusMayInitCtx() == c10::cuda::CaptureStatus::None, "glo_kernels.", op,
              ": the first call with a new 'group_sizes' copies the group offsets to the device, which cannot be done "
              "while a CUDA graph is captured: call it once with these group sizes before the capture");
  at::Tensor d = host_offsets.to(device);  // synchronous: complete before any stream reads it
  const std::lock_guard<std::mutex> lock(mu);
  if (cache.size() < kMaxCachedGroupLists) cache.emplace(std::move(key), d);  // (a concurrent twin is kept instead)
  return d;
}

struct CudaSoftmaxKernels {
  static void softmax_forward(const at::Tensor& x, at::Tensor& y, SoftmaxGeometry g, const Temperature& temp,
                              bool log) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    const int device = x.device().index();
    dispatch_dtype_pair(x.scalar_type(), y.scalar_type(), [&](auto in, auto out) {
      softmax_forward_typed<decltype(in), decltype(out)>(x, y, g, temp, log, device, stream);
    });
  }

  static void softmax_backward(const at::Tensor& grad, const at::Tensor& y, at::Tensor& dx, SoftmaxGeometry g,
                               const Temperature& temp, bool log) {
    const c10::cuda::CUDAGuard guard(grad.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    const int device = grad.device().index();
    dispatch_dtype_pair(dx.scalar_type(), grad.scalar_type(), [&](auto in, auto out) {
      softmax_backward_typed<decltype(out), decltype(in)>(grad, y, dx, g, temp, log, device, stream);
    });
  }

  static void grouped_softmax_forward(const at::Tensor& x, at::Tensor& y, SoftmaxGeometry g,
                                      const at::Tensor& offsets, const Temperature& temp) {
    const c10::cuda::CUDAGuard guard(x.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    const int64_t ngroups = offsets.numel() - 1;
    const at::Tensor dev_offsets = device_offsets(offsets, x.device(), "grouped_softmax");
    const int64_t* op = dev_offsets.const_data_ptr<int64_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_grouped_softmax_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      const InvTemp<T> it = make_inv_temp<T>(temp);
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      if (g.inner == 1) {
        RowPlan p;
        plan_rows(g.outer * ngroups, 32, p);  // one warp per (row, group)
        softmax_online_forward_kernel<scalar_t, scalar_t><<<p.grid, p.block, 0, stream>>>(
            xp, yp, g.outer, g.size, op, ngroups, p.G, false, false, it);
      } else {
        const int64_t n = g.outer * ngroups * g.inner;
        softmax_strided_forward_kernel<scalar_t, scalar_t><<<strided_grid(n), kThreads, 0, stream>>>(
            xp, yp, g.outer, g.size, g.inner, op, ngroups, false, it);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static void grouped_softmax_backward(const at::Tensor& grad, const at::Tensor& y, at::Tensor& dx, SoftmaxGeometry g,
                                       const at::Tensor& offsets, const Temperature& temp) {
    const c10::cuda::CUDAGuard guard(grad.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    const int64_t ngroups = offsets.numel() - 1;
    const at::Tensor dev_offsets = device_offsets(offsets, grad.device(), "grouped_softmax_backward");
    const int64_t* op = dev_offsets.const_data_ptr<int64_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "glo_grouped_softmax_backward_cuda",
                                    [&] {
      using T = at::opmath_type<scalar_t>;
      const InvTemp<T> it = make_inv_temp<T>(temp);
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const scalar_t* yp = y.const_data_ptr<scalar_t>();
      scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
      if (g.inner == 1) {
        RowPlan p;
        plan_rows(g.outer * ngroups, 32, p);
        softmax_online_backward_kernel<scalar_t, scalar_t><<<p.grid, p.block, 0, stream>>>(
            gp, yp, dp, g.outer, g.size, op, ngroups, p.G, false, false, it);
      } else {
        const int64_t n = g.outer * ngroups * g.inner;
        softmax_strided_backward_kernel<scalar_t, scalar_t><<<strided_grid(n), kThreads, 0, stream>>>(
            gp, yp, dp, g.outer, g.size, g.inner, op, ngroups, false, it);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static void distill_forward(const at::Tensor& s, const at::Tensor& t, at::Tensor& stats, at::Tensor& loss_none,
                              int64_t rows, int64_t cols, double temperature) {
    const c10::cuda::CUDAGuard guard(s.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "glo_distillation_loss_cuda", [&] {
      using T = at::opmath_type<scalar_t>;
      constexpr int VEC = Vec16<scalar_t>::kSize;
      const T inv_t = T(1) / static_cast<T>(temperature);
      const T t2 = static_cast<T>(temperature * temperature);
      const scalar_t* sp = s.const_data_ptr<scalar_t>();
      const scalar_t* tp = t.const_data_ptr<scalar_t>();
      scalar_t* lp = loss_none.defined() ? loss_none.mutable_data_ptr<scalar_t>() : nullptr;
      const bool vec = aligned16(sp) && aligned16(tp) && (lp == nullptr || aligned16(lp)) && cols % VEC == 0;
      const int64_t units = vec ? cols / VEC : cols;
      RowPlan p;
      plan_rows(rows, std::min<int64_t>(ceil_div(units, kDistillUnitsPerThread), kMaxBlock), p);
      distill_forward_kernel<scalar_t><<<p.grid, p.block, 0, stream>>>(
          sp, tp, stats.mutable_data_ptr<T>(), lp, rows, cols, p.G, vec, inv_t, t2);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }

  static void distill_backward(const at::Tensor& grad, const at::Tensor& s, const at::Tensor& t,
                               const at::Tensor& stats, at::Tensor& ds, const at::Tensor& dt_or_undefined,
                               int64_t rows, int64_t cols, double temperature, bool none, double scale) {
    const c10::cuda::CUDAGuard guard(s.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "glo_distillation_loss_backward_cuda",
                                    [&] {
      using T = at::opmath_type<scalar_t>;
      constexpr int VEC = Vec16<scalar_t>::kSize;
      const T inv_t = T(1) / static_cast<T>(temperature);
      const scalar_t* sp = s.const_data_ptr<scalar_t>();
      const scalar_t* tp = t.const_data_ptr<scalar_t>();
      const T* stp = stats.const_data_ptr<T>();
      scalar_t* dsp = ds.mutable_data_ptr<scalar_t>();
      scalar_t* dtp = dt_or_undefined.defined() ? dt_or_undefined.mutable_data_ptr<scalar_t>() : nullptr;
      const bool aligned = aligned16(sp) && aligned16(tp) && aligned16(dsp) && (dtp == nullptr || aligned16(dtp));
      if (none) {
        const scalar_t* gp = grad.const_data_ptr<scalar_t>();
        const bool vec = aligned && aligned16(gp) && cols % VEC == 0;
        const int64_t units = vec ? cols / VEC : cols;
        RowPlan p;
        plan_rows(rows, std::min<int64_t>(ceil_div(units, kDistillUnitsPerThread), kMaxBlock), p);
        distill_backward_none_kernel<scalar_t><<<p.grid, p.block, 0, stream>>>(
            gp, sp, tp, stp, dsp, dtp, rows, cols, p.G, vec, static_cast<T>(scale), inv_t);
      } else {
        const int64_t n = rows * cols;
        const int64_t nvec = aligned && cols % VEC == 0 ? n / VEC : 0;
        distill_backward_reduced_kernel<scalar_t>
            <<<grid_cap(ceil_div(std::max(nvec, n - nvec * VEC), kThreads)), kThreads, 0, stream>>>(
                grad.const_data_ptr<T>(), sp, tp, stp, dsp, dtp, n, cols, nvec, scale, inv_t);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
};

}  // namespace
}  // namespace glo

TORCH_LIBRARY_IMPL(glo_kernels, CUDA, m) { GLO_REGISTER_SOFTMAX_OPS(m, ::glo::CudaSoftmaxKernels); }

namespace {
// Debugging hook: the plan inputs of a CUDA device as this file queried them (tests/test_cuda.py feeds them to
// glo_kernels_debug::softmax_plan): [sm_count, smem_optin, cluster_launch, max_cluster_portable,
// max_cluster_nonportable, max_cluster_active, allow_clusters, max_cluster, exchange (0 sync, 1 mbarrier)].
std::vector<int64_t> softmax_device_props_hook(int64_t device) {
  const int count = static_cast<int>(c10::cuda::device_count());
  TORCH_CHECK(device >= 0 && device < count, "glo_kernels_debug.softmax_device_props: argument 'device' must be a CUDA "
              "device index below ", count, ", got ", device);
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const ::glo::DeviceState& st = ::glo::device_state(static_cast<int>(device));
  const auto& d = st.props;
  return {d.sm_count, d.smem_optin, d.cluster_launch, d.max_cluster_portable, d.max_cluster_nonportable,
          d.max_cluster_active, st.opts.allow_clusters, st.opts.max_cluster, static_cast<int64_t>(st.opts.exchange)};
}
}  // namespace

TORCH_LIBRARY_FRAGMENT(glo_kernels_debug, m) {
  m.def("softmax_device_props(int device) -> int[]", &softmax_device_props_hook);
}
