// Launch plans of the CUDA softmax kernels along a contiguous dim (csrc/cuda/softmax.cu), as pure host functions: no
// CUDA runtime call, no CUDA header. The device enters only through SoftmaxDeviceProps (queried once per device by
// softmax.cu), so the plans are unit-tested on the CPU with the properties of an H100, H200 or A100
// (glo_kernels_debug::softmax_plan, registered in csrc/registration.cpp; tests/test_softmax_plan.py).
//
// A plan is a function of (rows, row length, element size, forward/backward, device properties, options) only: never
// of a past launch. Two calls with the same arguments give the same plan, so the same summation tree and the same bits.
#pragma once

#include "glo/isa.h"

#include <algorithm>
#include <cstdint>

#include "glo/launch.h"

namespace glo {
GLO_ISA_BEGIN
namespace softmax_plan {

constexpr int kThreads = 256;                   // block of the sub-warp / warp row groups
constexpr int kMaxBlock = 1024;                 // largest block (one row group)

// Cached rows: 16-byte chunks per thread held in registers, per cached tensor (template arguments of the kernels).
// Forward: x, 48 bytes of registers per thread for 16-bit types and float32, 32 for float64 (the kernels are capped at
// 64 registers by __launch_bounds__(1024, 1); 4 chunks spilled to local memory: float32 and float64, and 16-bit types
// with the mbarrier exchange). Backward: dy and y, 2 x 32 bytes.
constexpr int fwd_vpt(int elem_bytes) { return elem_bytes <= 4 ? 3 : 2; }
constexpr int kBwdVPT = 2;

// Shared memory of a cached-rows block: at most kMaxSmemOneBlock bytes of row cache (one block per SM), or, for the
// 512-thread blocks of which two share an SM, at most kMaxSmemTwoBlocks bytes (and half of the SM). kSmemReserve is
// kept free for the kernels' static shared memory (reduction slots, exchange slots and barriers: < 1 KiB) and the
// 1 KiB per block the hardware reserves.
constexpr int64_t kMaxSmemOneBlock = 200 * 1024;
constexpr int64_t kMaxSmemTwoBlocks = 96 * 1024;
constexpr int64_t kSmemReserve = 2 * 1024;

constexpr int kMaxClusterLimit = 16;  // largest cluster any plan uses (the non-portable limit of sm_90)

inline int next_pow2(int64_t v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}

inline int prev_pow2(int64_t v) {  // largest power of two <= v (v >= 1), 0 for v < 1
  if (v < 1) return 0;
  int p = 1;
  while (int64_t{p} * 2 <= v) p <<= 1;
  return p;
}

inline int round_up32(int64_t v) { return static_cast<int>(ceil_div(v, 32) * 32); }

// What a plan needs to know about the device (softmax.cu fills it once per device; tests write it by hand).
struct SoftmaxDeviceProps {
  int sm_count = 0;
  int64_t smem_optin = 48 * 1024;  // cudaDevAttrMaxSharedMemoryPerBlockOptin (bytes)
  bool cluster_launch = false;     // cudaDevAttrClusterLaunch, and the cluster code compiled in (sm_90+ code)
  int max_cluster_portable = 1;    // 8 on sm_90
  int max_cluster_nonportable = 1; // 16 on sm_90 (cudaFuncAttributeNonPortableClusterSizeAllowed)
  // Largest cluster size that can be co-scheduled (cudaOccupancyMaxActiveClusters >= 1 for a 1024-thread block with
  // the full shared-memory budget), queried once per device; 0: not known, taken as max_cluster_nonportable.
  int max_cluster_active = 0;
};

// How the C > 1 blocks of a cluster exchange their partial maxima and sums (softmax.cu, cluster_exchange):
// kSync: cluster barriers (cluster.sync(), 2-3 per row); kMbarrier: stores into the other blocks' shared memory
// (st.async) completing on their mbarriers, no cluster barrier in the row loop. Both combine the blocks' values in
// rank order: the same bits. The default is kMbarrier (no MEMBAR.ALL.GPU in a row loop); kSync, the simpler one, stays
// selectable (GLO_SOFTMAX_EXCHANGE=sync), and tests/test_cuda.py::test_softmax_cluster_exchanges_agree compares both
// bit for bit on a GPU. Neither has run on a GPU yet.
enum class SoftmaxExchange : int { kSync = 0, kMbarrier = 1 };

// Choices of path, for tests and for the environment switches of softmax.cu (GLO_SOFTMAX_CLUSTERS,
// GLO_SOFTMAX_MAX_CLUSTER, GLO_SOFTMAX_EXCHANGE).
struct SoftmaxPlanOptions {
  bool allow_clusters = true;
  int max_cluster = kMaxClusterLimit;  // rounded down to a power of two
  SoftmaxExchange exchange = SoftmaxExchange::kMbarrier;
};

// Launch plan of a row-group kernel: G threads per row (group), C blocks per row (cluster), block and grid sizes.
struct RowPlan {
  int G = 32;
  int C = 1;
  unsigned block = kThreads;
  unsigned grid = 1;
};

// Row groups for a row needing `threads` threads (at most kMaxBlock): a power of two <= 32 (256 / G rows per
// 256-thread block), else one block of a multiple of 32 threads per row.
inline void plan_rows(int64_t rows, int64_t threads, RowPlan& p) {
  threads = std::min<int64_t>(std::max<int64_t>(threads, 1), kMaxBlock);
  p.C = 1;
  if (threads <= 32) {
    p.G = next_pow2(threads);
    p.block = kThreads;
    p.grid = grid_cap(ceil_div(rows, kThreads / p.G));
  } else {
    p.G = round_up32(threads);
    p.block = static_cast<unsigned>(p.G);
    p.grid = grid_cap(rows);
  }
}

enum class SoftmaxPath : int {
  kCachedRows = 0,  // the row held on chip (registers, shared memory, a cluster's shared memory): x read once
  kOnline = 1,      // one 1024-thread block per row, an online (max, sum) pass then a write pass: x read twice
  kTiles = 2,       // along a strided dim: tiles of [size, W * VEC] held in shared memory: x read once
  kColumns = 3,     // along a strided dim: one thread per column, an online pass then a write pass: x read twice
};

struct SoftmaxPlan : RowPlan {
  SoftmaxPath path = SoftmaxPath::kOnline;
  int vpt = 0;           // register chunks (16 bytes) per thread and cached tensor (cached rows)
  int vs = 0;            // shared-memory chunks per thread and cached tensor (cached rows)
  int64_t smem = 0;      // dynamic shared memory per block (bytes)
  int reads = 2;         // times each input element is read from global memory
  bool nonportable = false;  // C above the portable cluster size (needs NonPortableClusterSizeAllowed)
  SoftmaxExchange exchange = SoftmaxExchange::kMbarrier;  // the options' choice for cached rows (used when C > 1)
};

// Shared-memory budgets of a cached-rows block on a device: one block per SM (1024 threads) or two (512 threads).
inline int64_t smem_budget_one_block(const SoftmaxDeviceProps& d) {
  return std::max<int64_t>(0, std::min(kMaxSmemOneBlock, d.smem_optin - kSmemReserve));
}
inline int64_t smem_budget_two_blocks(const SoftmaxDeviceProps& d) {
  // The SM holds smem_optin + 1 KiB; two blocks each keep kSmemReserve free.
  return std::max<int64_t>(0, std::min(kMaxSmemTwoBlocks, (d.smem_optin + 1024) / 2 - kSmemReserve));
}

// Largest cluster size (a power of two) a plan may use on the device with the options: 1 without clusters.
inline int max_cluster_for(const SoftmaxDeviceProps& d, const SoftmaxPlanOptions& o) {
  if (!o.allow_clusters || !d.cluster_launch) return 1;
  int64_t c = std::min<int64_t>(
      {int64_t{o.max_cluster}, int64_t{d.max_cluster_nonportable}, int64_t{kMaxClusterLimit}});
  if (d.max_cluster_active > 0) c = std::min<int64_t>(c, d.max_cluster_active);
  return std::max(1, prev_pow2(c));
}

// Plan of softmax (backward: its backward) along a contiguous dim: `rows` rows of `size` elements of `elem_bytes`
// bytes (the dtype read: x forward, dy and y backward).
//  * Cached rows, the row read once: 16-byte chunks, vpt in registers and vs in dynamic shared memory per thread and
//    cached tensor (forward: x; backward: dy and y).
//      - registers alone while <= 512 threads hold the row (G <= 32: several rows per 256-thread block);
//      - else a cluster of C blocks per row, C = 1, 2, 4, ... up to max_cluster_for(): the fewest blocks (so the most
//        bytes in flight per SM), each block of 512 threads with at most smem_budget_two_blocks() bytes (two blocks per
//        SM), or of 1024 threads with at most smem_budget_one_block(); the C blocks hold consecutive spans.
//  * Else (no plan holds the row): the online kernels, two reads.
inline SoftmaxPlan plan_softmax(int64_t rows, int64_t size, int elem_bytes, bool backward, const SoftmaxDeviceProps& d,
                                const SoftmaxPlanOptions& o) {
  SoftmaxPlan p;
  const int vec = 16 / std::max(1, elem_bytes);
  const int64_t nvec = ceil_div(std::max<int64_t>(size, 1), vec);
  const int vpt = backward ? kBwdVPT : fwd_vpt(elem_bytes);
  const int tensors = backward ? 2 : 1;
  const int64_t threads = ceil_div(nvec, vpt);
  if (threads <= kMaxBlock / 2) {
    plan_rows(rows, threads, p);
    p.path = SoftmaxPath::kCachedRows;
    p.vpt = vpt;
    p.reads = 1;
    p.exchange = o.exchange;
    return p;
  }
  const int cmax = max_cluster_for(d, o);
  const struct {
    int64_t g;
    int64_t budget;
  } tiers[2] = {{kMaxBlock / 2, smem_budget_two_blocks(d)}, {kMaxBlock, smem_budget_one_block(d)}};
  for (int c = 1; c <= cmax; c *= 2) {
    const int64_t per_block = ceil_div(nvec, c);  // vectors held by one block
    for (const auto& t : tiers) {
      const int64_t vs = std::max<int64_t>(0, ceil_div(per_block, t.g) - vpt);
      if (tensors * vs * t.g * 16 > t.budget) continue;
      p.path = SoftmaxPath::kCachedRows;
      p.vpt = vpt;
      p.vs = static_cast<int>(vs);
      p.C = c;
      p.G = round_up32(ceil_div(per_block, vpt + vs));  // <= t.g; C * G * (vpt + vs) >= nvec
      p.block = static_cast<unsigned>(p.G);
      p.grid = grid_cap(rows) * static_cast<unsigned>(c);
      p.smem = int64_t{tensors} * p.vs * p.G * 16;
      p.reads = 1;
      p.nonportable = c > d.max_cluster_portable;
      p.exchange = o.exchange;
      return p;
    }
  }
  plan_rows(rows, kMaxBlock, p);
  p.path = SoftmaxPath::kOnline;
  p.reads = 2;
  return p;
}

// ---------------------------------------------------------------------------------------------------------------
// Softmax along a strided dim (inner > 1: x viewed as [outer, size, inner], the dim of `size` elements with stride
// inner). Tiles: a block of kThreads threads takes the tile x[o, :, i0 : i0 + W * VEC] (VEC = 16 / elem_bytes), as
// W vector lanes along the inner dim times R = kThreads / W threads along the softmax dim, and holds it in dynamic
// shared memory (size * W chunks of 16 bytes per cached tensor: forward x, backward dy and y), so x is read once; a
// warp reads 32 / W rows' W * 16 contiguous bytes each (at least a 32-byte sector per row for W >= 2, and a whole
// contiguous span when W * VEC >= inner). W is the smallest power of two whose W * VEC columns cover inner (at most
// 256), halved while its tile takes more than kTilePreferredSmem (several blocks per SM, so that one block's loads
// overlap another's arithmetic); W = 1 may take up to smem_budget_tiles(). A dim too long for that: columns.
// ---------------------------------------------------------------------------------------------------------------
constexpr int64_t kTilePreferredSmem = 32 * 1024;
// Static shared memory of a tiles block: the reduction slots, kThreads * VEC values of the opmath type (<= 8 KiB).
constexpr int64_t kTileStaticSmem = 8 * 1024;

inline int64_t smem_budget_tiles(const SoftmaxDeviceProps& d) {
  return std::max<int64_t>(0, std::min(kMaxSmemOneBlock, d.smem_optin - kSmemReserve - kTileStaticSmem));
}

struct StridedPlan {
  SoftmaxPath path = SoftmaxPath::kColumns;
  int W = 0;            // vector lanes along the inner dim (tiles); R = kThreads / W
  int64_t smem = 0;     // dynamic shared memory per block (bytes)
  unsigned block = kThreads;
  unsigned grid = 1;
  int reads = 2;
};

inline StridedPlan plan_strided(int64_t outer, int64_t size, int64_t inner, int elem_bytes, bool backward,
                                const SoftmaxDeviceProps& d) {
  StridedPlan p;
  const int vec = 16 / std::max(1, elem_bytes);
  const int64_t tensors = backward ? 2 : 1;
  const int64_t lane_bytes = tensors * std::max<int64_t>(size, 1) * 16;  // one vector lane's chunks, whole dim
  const bool int_sized = size <= INT32_MAX && inner <= INT32_MAX - kThreads * 16;  // tile offsets as int
  if (inner > 1 && int_sized && lane_bytes <= smem_budget_tiles(d)) {
    int64_t w = std::min<int64_t>(next_pow2(ceil_div(inner, vec)), kThreads);
    while (w > 1 && w * lane_bytes > kTilePreferredSmem) w /= 2;
    p.path = SoftmaxPath::kTiles;
    p.W = static_cast<int>(w);
    p.smem = w * lane_bytes;
    p.grid = grid_cap(outer * ceil_div(inner, w * vec));
    p.reads = 1;
    return p;
  }
  p.grid = grid_cap(ceil_div(outer * inner, kThreads));
  return p;
}

}  // namespace softmax_plan
GLO_ISA_END
}  // namespace glo
