// Host arithmetic of every CUDA launch (csrc/cuda/*.cu and the softmax plans of glo/softmax_plan.h): pure host code,
// no CUDA header, so the plans that use it stay testable on the CPU.
#pragma once

#include "glo/isa.h"

#include <algorithm>
#include <cstdint>

namespace glo {
GLO_ISA_BEGIN

constexpr int64_t kMaxGrid = int64_t{1} << 20;  // grid cap of grid-stride loops (any value is correct)

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks of a grid-stride launch: at least 1, at most kMaxGrid.
inline unsigned grid_cap(int64_t blocks) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks, kMaxGrid)));
}

GLO_ISA_END
}  // namespace glo
