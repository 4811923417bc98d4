// Element math of every activation, written once for the CPU loops and the CUDA kernels.
//
// Each functor computes in "opmath" (float for float/half/bfloat16 inputs, double for double) and holds its scalar
// parameters as members. Conventions follow PyTorch's own kernels exactly (sign of zero, NaN propagation, the value of
// the derivative at 0), because glo_kernels is a drop-in replacement: tests compare against torch.nn bit for bit where
// torch is exact. The Triton kernels (glo_kernels/triton/kernels.py) and the reference (glo_kernels/reference.py)
// mirror these formulas; keep the three in step.
//
// This header includes no torch headers so that it stays cheap to compile and usable from plain C++ or CUDA.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define GLO_HD __host__ __device__ __forceinline__
#else
#define GLO_HD inline
#endif

namespace glo {

// ---------------------------------------------------------------------------------------------------------------
// Activations whose backward needs only one bit per element ("keep": does the gradient pass with slope 1?).
// forward(x) -> y; keep(x) -> bit saved for backward; backward(dy, bit) -> dx.
// ---------------------------------------------------------------------------------------------------------------

// ReLU (Nair & Hinton 2010): y = max(x, 0) with NaN propagated and -0.0 kept (as torch.relu).
// dx = dy where !(x <= 0) (so NaN passes the gradient, as torch's threshold_backward on the output), else 0.
template <typename T>
struct ReLU {
  GLO_HD T forward(T x) const { return x < T(0) ? T(0) : x; }
  GLO_HD bool keep(T x) const { return !(x <= T(0)); }
  GLO_HD T backward(T dy, bool keep) const { return keep ? dy : T(0); }
};

// Leaky ReLU (Maas et al. 2013; He et al. 2015): y = x for x > 0, slope * x otherwise (NaN propagates through x*slope).
// dx = dy for x > 0, slope * dy otherwise (at 0 and for NaN the slope applies, as torch.nn.functional.leaky_relu).
//
// Both sides of every select are computed before choosing: the result is the same, and the CPU loops vectorize
// (a compiler may not speculate a multiply that sits inside a branch).
template <typename T>
struct LeakyReLU {
  T slope;
  GLO_HD T forward(T x) const {
    const T neg = x * slope;
    return x > T(0) ? x : neg;
  }
  GLO_HD bool keep(T x) const { return x > T(0); }
  GLO_HD T backward(T dy, bool keep) const {
    const T neg = dy * slope;
    return keep ? dy : neg;
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Activations with a learned per-channel parameter: the functor takes the channel's parameter as an argument.
// ---------------------------------------------------------------------------------------------------------------

// PReLU (He et al. 2015): y = x for x > 0, w * x otherwise.
// dx = dy for x > 0, w * dy otherwise;  dw (before the per-channel sum) = 0 for x > 0, x * dy otherwise.
template <typename T>
struct PReLU {
  GLO_HD T forward(T x, T w) const {
    const T neg = w * x;
    return x > T(0) ? x : neg;
  }
  GLO_HD T backward_input(T x, T w, T dy) const {
    const T neg = w * dy;
    return x > T(0) ? dy : neg;
  }
  GLO_HD T backward_weight(T x, T dy) const {
    const T neg = x * dy;
    return x > T(0) ? T(0) : neg;
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Packed 1-bit masks: bit j of word w belongs to element 32*w + j of the input in row-major (contiguous) order.
// ---------------------------------------------------------------------------------------------------------------
constexpr int64_t kMaskBits = 32;
GLO_HD int64_t mask_words(int64_t numel) { return (numel + kMaskBits - 1) / kMaskBits; }
GLO_HD bool mask_bit(const int32_t* mask, int64_t i) {
  return (static_cast<uint32_t>(mask[i >> 5]) >> (i & 31)) & 1u;
}

// ---------------------------------------------------------------------------------------------------------------
// Per-channel geometry: a contiguous input seen as [outer, channels, inner]; element i belongs to channel
// (i / inner) % channels. With a single shared parameter the whole tensor is one channel.
// ---------------------------------------------------------------------------------------------------------------
struct ChannelGeometry {
  int64_t outer;
  int64_t channels;
  int64_t inner;
};

}  // namespace glo
