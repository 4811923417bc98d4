// CPU kernels: loops over the functors of glo/activations.h, split across threads with at::parallel_for.
// Work goes in chunks of kChunk elements: 16-bit inputs are converted to float in a small buffer, the element math
// runs on opmath arrays (loops GCC vectorizes: fixed trip counts, no float reductions across iterations), and results
// are converted back. Reductions use a fixed tiling that depends only on the shape, so results are bitwise
// reproducible whatever the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>
#include "glo/cpu_convert.h"
#include "glo/op_impls.h"
#include "avx512_math.h"
#include "cpu_dispatch.h"

namespace glo {
GLO_ISA_BEGIN
namespace {

using cpu::kChunk;
using cpu::opmath_t;

constexpr int64_t kChunkWords = kChunk / kMaskBits;
constexpr int64_t kGrainChunks = 8;           // 32K elements per parallel task, as PyTorch's own grain size
constexpr int64_t kTile = int64_t{1} << 15;   // elements per reduction tile
constexpr int64_t kRun = 512;                 // contiguous elements a reduction tile should at least span

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Runs body(chunk, base, cnt) for every chunk of kChunk elements of [0, n), chunks split across threads. Bodies
// copy their functor into a local first: then stores to outputs cannot alias its parameters, and loops vectorize.
template <class Body>
void for_each_chunk(int64_t n, const Body& body) {
  at::parallel_for(0, ceil_div(n, kChunk), kGrainChunks, [&](int64_t c0, int64_t c1) {
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      const int64_t base = chunk * kChunk;
      body(chunk, base, std::min(kChunk, n - base));
    }
  });
}

// Runs body(r, s0, cnt) for every piece [s0, s0 + cnt) of at most kChunk elements of each of `rows` rows of h
// elements (rows of a [rows, h] view), pieces split across threads (about kGrainChunks * kChunk elements per task).
template <class Body>
void for_each_row_piece(int64_t rows, int64_t h, const Body& body) {
  const int64_t per_row = ceil_div(h, kChunk);
  const int64_t grain = std::max<int64_t>(1, kGrainChunks * kChunk / std::min(h, kChunk));
  at::parallel_for(0, rows * per_row, grain, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r = per_row == 1 ? p : p / per_row;
      const int64_t s0 = per_row == 1 ? 0 : (p % per_row) * kChunk;
      body(r, s0, std::min(kChunk, h - s0));
    }
  });
}

// Hand-written loops for some functors, straight on the tensors' storage (float32, or bfloat16 / float16 converted in
// registers instead of the chunk's buffer passes; an output may be an input's memory: each vector is read before it
// is written). Each returns false where none exists: the kernel then runs its chunk loops over the functor.
template <class F, typename S>
inline bool forward_storage(const F&, const S*, S*, int64_t) {
  return false;
}
template <class F, typename S>
inline bool backward_storage(const F&, const S*, const S*, S*, int64_t) {
  return false;
}
template <class F, typename S>
inline bool gated_forward_storage(const F&, const S*, const S*, S*, int64_t) {
  return false;
}
template <class F, typename S>
inline bool gated_backward_storage(const F&, const S*, const S*, const S*, S*, S*, int64_t) {
  return false;
}
// The channel kernel's backward over a run of channels of one row (channels innermost, one parameter): dx and the
// parameter's per-channel double sums in one fused loop.
template <class F, typename S>
inline bool channel_inner_backward_fused(const F&, const S*, const S*, const opmath_t<S>*, S*, double*, int64_t) {
  return false;
}
// The channel kernel's forward over a run of channels of one row (channels innermost, one per-channel constant).
template <class F, typename S>
inline bool channel_inner_forward_storage(const F&, const S*, const opmath_t<S>*, S*, int64_t) {
  return false;
}

// The AVX-512 loops of avx512_math.h (bitwise the functors' own results; GELU's erf form: its own table form) where
// the build targets AVX-512, on float, bfloat16 and float16 storage (raw: the bits avx512_math.h takes).
#if defined(GLO_CPU_AVX512)
using BF16 = c10::BFloat16;
inline const float* raw(const float* p) { return p; }
inline float* raw(float* p) { return p; }
inline const uint16_t* raw(const BF16* p) { return reinterpret_cast<const uint16_t*>(p); }
inline uint16_t* raw(BF16* p) { return reinterpret_cast<uint16_t*>(p); }
inline const avx512::Half16* raw(const c10::Half* p) { return reinterpret_cast<const avx512::Half16*>(p); }
inline avx512::Half16* raw(c10::Half* p) { return reinterpret_cast<avx512::Half16*>(p); }
template <typename S>
constexpr bool kAvx512Storage =
    std::is_same_v<S, float> || std::is_same_v<S, BF16> || std::is_same_v<S, c10::Half>;

// One overload per functor and direction: FUNCTOR's loop is avx512::LOOP on the raw storage.
#define GLO_AVX512_FORWARD(FUNCTOR, LOOP)                                               \
  template <typename S, std::enable_if_t<kAvx512Storage<S>, int> = 0>                   \
  inline bool forward_storage(const FUNCTOR&, const S* x, S* y, int64_t cnt) {         \
    avx512::LOOP(raw(x), raw(y), cnt);                                                   \
    return true;                                                                         \
  }
#define GLO_AVX512_BACKWARD(FUNCTOR, LOOP)                                              \
  template <typename S, std::enable_if_t<kAvx512Storage<S>, int> = 0>                   \
  inline bool backward_storage(const FUNCTOR&, const S* g, const S* x, S* d, int64_t cnt) { \
    avx512::LOOP(raw(g), raw(x), raw(d), cnt);                                           \
    return true;                                                                         \
  }
#define GLO_AVX512_GATED(ACT, FORWARD, BACKWARD)                                                                   \
  template <typename S, std::enable_if_t<kAvx512Storage<S>, int> = 0>                                              \
  inline bool gated_forward_storage(const Gated<float, ACT>&, const S* a, const S* b, S* y, int64_t cnt) {        \
    avx512::FORWARD(raw(a), raw(b), raw(y), cnt);                                                                   \
    return true;                                                                                                    \
  }                                                                                                                 \
  template <typename S, std::enable_if_t<kAvx512Storage<S>, int> = 0>                                              \
  inline bool gated_backward_storage(const Gated<float, ACT>&, const S* g, const S* a, const S* b, S* da, S* db,  \
                                     int64_t cnt) {                                                                 \
    avx512::BACKWARD(raw(g), raw(a), raw(b), raw(da), raw(db), cnt);                                                \
    return true;                                                                                                    \
  }
GLO_AVX512_FORWARD(Sigmoid<float>, sigmoid_forward)
GLO_AVX512_FORWARD(Tanh<float>, tanh_forward)
GLO_AVX512_FORWARD(SiLU<float>, silu_forward)
GLO_AVX512_BACKWARD(SiLU<float>, silu_backward)
GLO_AVX512_FORWARD(GELU<float>, gelu_forward)
GLO_AVX512_BACKWARD(GELU<float>, gelu_backward)
GLO_AVX512_FORWARD(GELUTanh<float>, gelu_tanh_forward)
GLO_AVX512_BACKWARD(GELUTanh<float>, gelu_tanh_backward)
GLO_AVX512_FORWARD(Hardsigmoid<float>, hardsigmoid_forward)
GLO_AVX512_BACKWARD(Hardsigmoid<float>, hardsigmoid_backward)
GLO_AVX512_FORWARD(Hardswish<float>, hardswish_forward)
GLO_AVX512_BACKWARD(Hardswish<float>, hardswish_backward)
GLO_AVX512_GATED(SiLU<float>, swiglu_forward, swiglu_backward)
GLO_AVX512_GATED(GELU<float>, geglu_forward, geglu_backward)
GLO_AVX512_GATED(GELUTanh<float>, geglu_tanh_forward, geglu_tanh_backward)
GLO_AVX512_GATED(ReLUOfInput<float>, reglu_forward, reglu_backward)
#undef GLO_AVX512_FORWARD
#undef GLO_AVX512_BACKWARD
#undef GLO_AVX512_GATED
// Softplus: its loops take the functor's constants.
template <typename S, std::enable_if_t<kAvx512Storage<S>, int> = 0>
inline bool forward_storage(const Softplus<float>& f, const S* x, S* y, int64_t cnt) {
  avx512::softplus_forward({f.beta, f.threshold, f.inv_beta}, raw(x), raw(y), cnt);
  return true;
}
template <typename S, std::enable_if_t<kAvx512Storage<S>, int> = 0>
inline bool backward_storage(const Softplus<float>& f, const S* g, const S* x, S* d, int64_t cnt) {
  avx512::softplus_backward({f.beta, f.threshold, f.inv_beta}, raw(g), raw(x), raw(d), cnt);
  return true;
}
// BiasAct<SiLU>, BiasAct<GELU> and BiasAct<GELUTanh>, forward and fused backward.
template <class Act>
constexpr bool kAvx512Bias =
    std::is_same_v<Act, SiLU<float>> || std::is_same_v<Act, GELU<float>> || std::is_same_v<Act, GELUTanh<float>>;
template <class Act, typename S, std::enable_if_t<kAvx512Storage<S> && kAvx512Bias<Act>, int> = 0>
inline bool channel_inner_forward_storage(const BiasAct<float, Act>&, const S* xs, const float* bias, S* ys,
                                          int64_t cnt) {
  if constexpr (std::is_same_v<Act, SiLU<float>>) {
    avx512::bias_forward(avx512::SiluValue{}, raw(xs), bias, raw(ys), cnt);
  } else if constexpr (std::is_same_v<Act, GELUTanh<float>>) {
    avx512::bias_forward(avx512::GeluTanhValue{}, raw(xs), bias, raw(ys), cnt);
  } else {
    avx512::bias_forward(avx512::GeluValueOp{}, raw(xs), bias, raw(ys), cnt);
  }
  return true;
}
template <class Act, typename S, std::enable_if_t<kAvx512Storage<S> && kAvx512Bias<Act>, int> = 0>
inline bool channel_inner_backward_fused(const BiasAct<float, Act>&, const S* xs, const S* gs, const float* bias,
                                         S* ds, double* acc, int64_t cnt) {
  if constexpr (std::is_same_v<Act, SiLU<float>>) {
    avx512::bias_backward(avx512::SiluGrad{}, raw(xs), raw(gs), bias, raw(ds), acc, cnt);
  } else if constexpr (std::is_same_v<Act, GELUTanh<float>>) {
    avx512::bias_backward(avx512::GeluTanhGrad{}, raw(xs), raw(gs), bias, raw(ds), acc, cnt);
  } else {
    avx512::bias_backward(avx512::GeluGradOp{}, raw(xs), raw(gs), bias, raw(ds), acc, cnt);
  }
  return true;
}
#endif

// y = f.forward(x) and (if mask) the packed keep bits, over elements [0, n); x and y may be the same memory.
template <typename scalar_t, typename F>
void mask_forward_loop(const scalar_t* x, scalar_t* y, int32_t* mask, int64_t n, const F functor) {
  using T = opmath_t<scalar_t>;
  for_each_chunk(n, [&](int64_t chunk, int64_t base, int64_t cnt) {
    const F f = functor;
    alignas(64) T xbuf[kChunk];
    alignas(64) T ybuf[kChunk];
    alignas(64) uint8_t keep[kChunk];
    const T* xs = cpu::load_chunk(x + base, xbuf, cnt);
    T* ys = cpu::out_chunk(y + base, ybuf, x + base);
    if (mask == nullptr) {
      for (int64_t j = 0; j < cnt; ++j) ys[j] = f.forward(xs[j]);
    } else {
      for (int64_t j = 0; j < cnt; ++j) {
        const T v = xs[j];
        keep[j] = f.keep(v) ? uint8_t{0xFF} : uint8_t{0};
        ys[j] = f.forward(v);
      }
      for (int64_t j = cnt; j < kChunk; ++j) keep[j] = 0;
      const int64_t words = std::min(kChunkWords, mask_words(n) - chunk * kChunkWords);
      for (int64_t w = 0; w < words; ++w) {
        mask[chunk * kChunkWords + w] = static_cast<int32_t>(cpu::pack_bits32(keep + w * 32));
      }
    }
    cpu::store_chunk(ys, y + base, cnt);
  });
}

struct CpuKernels {
  template <class Factory>
  static void mask_forward(const Tensor& x, const Tensor& y, const Tensor& mask, Factory factory) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_mask_forward_cpu", [&] {
      const auto f = factory(opmath_t<scalar_t>{});
      int32_t* mp = mask.numel() > 0 ? mask.mutable_data_ptr<int32_t>() : nullptr;
      mask_forward_loop(x.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(), mp, x.numel(), f);
      if (mp != nullptr) std::fill_n(mp + mask_words(x.numel()), kMaskPad, 0);
    });
  }

  template <class Factory>
  static void mask_backward(const Tensor& grad, const Tensor& mask, const Tensor& dx, Factory factory) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "glo_mask_backward_cpu", [&] {
      using T = opmath_t<scalar_t>;
      const auto f = factory(T{});
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const int32_t* mp = mask.const_data_ptr<int32_t>();
      scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
      for_each_chunk(grad.numel(), [&](int64_t chunk, int64_t base, int64_t cnt) {
        const auto fl = f;
        alignas(64) T gbuf[kChunk];
        alignas(64) T dbuf[kChunk];
        alignas(64) uint32_t keep[kChunk];
        const int64_t words = ceil_div(cnt, kMaskBits);
        for (int64_t w = 0; w < words; ++w) {
          const uint32_t bits = static_cast<uint32_t>(mp[chunk * kChunkWords + w]);
          for (int b = 0; b < 32; ++b) keep[w * 32 + b] = (bits >> b) & 1u;
        }
        const T* gs = cpu::load_chunk(gp + base, gbuf, cnt);
        T* ds = cpu::out_chunk(dp + base, dbuf, gp + base);
        for (int64_t j = 0; j < cnt; ++j) ds[j] = fl.backward(gs[j], keep[j] != 0u);
        cpu::store_chunk(ds, dp + base, cnt);
      });
    });
  }

  template <class Factory>
  static void unary_forward(const Tensor& x, const Tensor& y, Factory factory) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_unary_forward_cpu", [&] {
      using T = opmath_t<scalar_t>;
      const auto f = factory(T{});
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      for_each_chunk(x.numel(), [&](int64_t, int64_t base, int64_t cnt) {
        const auto fl = f;
        if (forward_storage(fl, xp + base, yp + base, cnt)) return;
        alignas(64) T xbuf[kChunk];
        alignas(64) T ybuf[kChunk];
        const T* xs = cpu::load_chunk(xp + base, xbuf, cnt);
        T* ys = cpu::out_chunk(yp + base, ybuf, xp + base);
        for (int64_t j = 0; j < cnt; ++j) ys[j] = fl.forward(xs[j]);
        cpu::store_chunk(ys, yp + base, cnt);
      });
    });
  }

  template <class Factory>
  static void unary_backward(const Tensor& grad, const Tensor& saved, const Tensor& dx, Factory factory) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "glo_unary_backward_cpu", [&] {
      using T = opmath_t<scalar_t>;
      const auto f = factory(T{});
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const scalar_t* sp = saved.const_data_ptr<scalar_t>();
      scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
      for_each_chunk(grad.numel(), [&](int64_t, int64_t base, int64_t cnt) {
        const auto fl = f;
        if (backward_storage(fl, gp + base, sp + base, dp + base, cnt)) return;
        alignas(64) T gbuf[kChunk];
        alignas(64) T sbuf[kChunk];
        alignas(64) T dbuf[kChunk];
        const T* gs = cpu::load_chunk(gp + base, gbuf, cnt);
        const T* ss = cpu::load_chunk(sp + base, sbuf, cnt);
        T* ds = cpu::out_chunk(dp + base, dbuf, gp + base);
        for (int64_t j = 0; j < cnt; ++j) ds[j] = fl.backward(gs[j], ss[j]);
        cpu::store_chunk(ds, dp + base, cnt);
      });
    });
  }

  // Gated units: a, b (and da, db) are [rows, h] views with unit column stride (see glo/op_impls.h).
  template <class Factory>
  static void gated_forward(const Tensor& a, const Tensor& b, const Tensor& y, Factory factory) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "glo_gated_forward_cpu", [&] {
      using T = opmath_t<scalar_t>;
      const auto f = gated<T>(factory(T{}));
      const scalar_t* ap = a.const_data_ptr<scalar_t>();
      const scalar_t* bp = b.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      const int64_t h = y.size(1), sa = a.stride(0), sb = b.stride(0);
      for_each_row_piece(y.size(0), h, [&](int64_t r, int64_t s0, int64_t cnt) {
        const auto fl = f;
        if (gated_forward_storage(fl, ap + r * sa + s0, bp + r * sb + s0, yp + r * h + s0, cnt)) return;
        alignas(64) T abuf[kChunk];
        alignas(64) T bbuf[kChunk];
        alignas(64) T ybuf[kChunk];
        const T* as = cpu::load_chunk(ap + r * sa + s0, abuf, cnt);
        const T* bs = cpu::load_chunk(bp + r * sb + s0, bbuf, cnt);
        T* ys = cpu::out_chunk(yp + r * h + s0, ybuf, nullptr);
        for (int64_t j = 0; j < cnt; ++j) ys[j] = fl.forward(as[j], bs[j]);
        cpu::store_chunk(ys, yp + r * h + s0, cnt);
      });
    });
  }

  template <class Factory>
  static void gated_backward(const Tensor& grad, const Tensor& a, const Tensor& b, const Tensor& da, const Tensor& db,
                             Factory factory) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "glo_gated_backward_cpu", [&] {
      using T = opmath_t<scalar_t>;
      const auto f = gated<T>(factory(T{}));
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const scalar_t* ap = a.const_data_ptr<scalar_t>();
      const scalar_t* bp = b.const_data_ptr<scalar_t>();
      scalar_t* dap = da.mutable_data_ptr<scalar_t>();
      scalar_t* dbp = db.mutable_data_ptr<scalar_t>();
      const int64_t h = grad.size(1), sa = a.stride(0), sb = b.stride(0), sda = da.stride(0), sdb = db.stride(0);
      for_each_row_piece(grad.size(0), h, [&](int64_t r, int64_t s0, int64_t cnt) {
        const auto fl = f;
        if (gated_backward_storage(fl, gp + r * h + s0, ap + r * sa + s0, bp + r * sb + s0, dap + r * sda + s0,
                                   dbp + r * sdb + s0, cnt)) {
          return;
        }
        alignas(64) T gbuf[kChunk];
        alignas(64) T abuf[kChunk];
        alignas(64) T bbuf[kChunk];
        alignas(64) T dabuf[kChunk];
        alignas(64) T dbbuf[kChunk];
        const T* gs = cpu::load_chunk(gp + r * h + s0, gbuf, cnt);
        const T* as = cpu::load_chunk(ap + r * sa + s0, abuf, cnt);
        const T* bs = cpu::load_chunk(bp + r * sb + s0, bbuf, cnt);
        T* das = cpu::out_chunk(dap + r * sda + s0, dabuf, nullptr);
        T* dbs = cpu::out_chunk(dbp + r * sdb + s0, dbbuf, nullptr);
        for (int64_t j = 0; j < cnt; ++j) fl.backward(gs[j], as[j], bs[j], das[j], dbs[j]);
        cpu::store_chunk(das, dap + r * sda + s0, cnt);
        cpu::store_chunk(dbs, dbp + r * sdb + s0, cnt);
      });
    });
  }

  // The channel parameters as opmath, parameter-major: [k * C + c].
  template <typename scalar_t, size_t NP>
  static std::vector<opmath_t<scalar_t>> params_opmath(const std::array<Tensor, NP>& params, int64_t C) {
    std::vector<opmath_t<scalar_t>> pv(NP * static_cast<size_t>(C));
    for (size_t k = 0; k < NP; ++k) cpu::to_opmath(params[k].template const_data_ptr<scalar_t>(), pv.data() + k * C, C);
    return pv;
  }

  // The functor's per-channel constants, [F::kConsts][C] (F::prepare on each channel's raw parameters).
  template <typename scalar_t, size_t NP, class F>
  static std::vector<opmath_t<scalar_t>> consts_opmath(const F& f, const std::array<Tensor, NP>& params, int64_t C) {
    using T = opmath_t<scalar_t>;
    constexpr int NK = F::kConsts;
    const std::vector<T> pv = params_opmath<scalar_t>(params, C);
    std::vector<T> kv(NK * static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) {
      T p[NP], k[NK];
      for (size_t j = 0; j < NP; ++j) p[j] = pv[j * C + c];
      f.prepare(p, k);
      for (int j = 0; j < NK; ++j) kv[j * C + c] = k[j];
    }
    return kv;
  }

  template <size_t NP, class Factory>
  static void channel_forward(const Tensor& x, const std::array<Tensor, NP>& params, const Tensor& y,
                              ChannelGeometry g, Factory factory) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_channel_forward_cpu", [&] {
      using T = opmath_t<scalar_t>;
      const auto f = factory(T{});
      static_assert(decltype(f)::kParams == NP, "parameter count");
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      const int64_t C = g.channels, S = g.inner;
      const std::vector<T> pv = consts_opmath<scalar_t>(f, params, C);  // [NK][C]
      constexpr int NK = std::remove_cv_t<decltype(f)>::kConsts;
      // Rows of `len` elements: with S == 1 a row is [C] (parameters vary per element), else [S] of one channel.
      const bool channel_innermost = (S == 1 && C > 1);
      const int64_t len = channel_innermost ? C : S;
      const int64_t rows = x.numel() / len;
      at::parallel_for(0, rows, std::max<int64_t>(1, kTile / len), [&](int64_t r0, int64_t r1) {
        const auto fl = f;
        alignas(64) T xbuf[kChunk];
        alignas(64) T ybuf[kChunk];
        for (int64_t r = r0; r < r1; ++r) {
          T pc[NK];
          for (int k = 0; k < NK; ++k) pc[k] = pv[k * C + (channel_innermost ? 0 : r % C)];
          for (int64_t s0 = 0; s0 < len; s0 += kChunk) {
            const int64_t cnt = std::min(kChunk, len - s0);
            const int64_t base = r * len + s0;
            if (channel_innermost && NK == 1 && channel_inner_forward_storage(fl, xp + base, pv.data() + s0,
                                                                              yp + base, cnt)) {
              continue;  // (straight on the storage: y may be x's memory, each vector is read first)
            }
            const T* xs = cpu::load_chunk(xp + base, xbuf, cnt);
            T* ys = cpu::out_chunk(yp + base, ybuf, xp + base);
            if (channel_innermost) {
              for (int64_t j = 0; j < cnt; ++j) {
                T pj[NK];
                for (int k = 0; k < NK; ++k) pj[k] = pv[k * C + s0 + j];
                ys[j] = fl.forward(xs[j], pj);
              }
            } else {
              for (int64_t j = 0; j < cnt; ++j) ys[j] = fl.forward(xs[j], pc);
            }
            cpu::store_chunk(ys, yp + base, cnt);
          }
        }
      });
    });
  }

  // One pass over x and grad: dx written, each parameter's gradient terms summed per tile of [outer, channels,
  // inner] into a small partial buffer [NP][tiles over outer x tiles over inner][channels] (double), then summed per
  // channel in a fixed order. Tile sizes depend on the shape only: results are bitwise reproducible.
  template <size_t NP, class Factory>
  static void channel_backward(const Tensor& grad, const Tensor& x, const std::array<Tensor, NP>& params,
                               const Tensor& dx, const std::array<Tensor, NP>& dparams, ChannelGeometry g,
                               Factory factory) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_channel_backward_cpu", [&] {
      using T = opmath_t<scalar_t>;
      using acc_t = double;
      const auto f = factory(T{});
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
      const int64_t N = g.outer, C = g.channels, S = g.inner;
      const std::vector<T> pv = consts_opmath<scalar_t>(f, params, C);  // [NK][C]
      constexpr int NK = std::remove_cv_t<decltype(f)>::kConsts;
      const int64_t sb = std::min(S, kTile);
      // (channels innermost, S == 1: tiles of whole rows up to kTile channels, so that x, dy and dx stream, 8 kTile
      // elements each, so that the partial sums stay few; runs of kRun channels made 2 KB strided reads)
      const int64_t cb = S == 1 ? std::min(C, kTile) : std::min(C, std::max<int64_t>(1, kRun / sb));
      const int64_t nb = std::min(N, std::max<int64_t>(1, (S == 1 ? 8 * kTile : kTile) / (cb * sb)));
      const int64_t nt = ceil_div(N, nb), ct = ceil_div(C, cb), st = ceil_div(S, sb);
      const int64_t rows = nt * st;
      std::vector<acc_t> partial(NP * static_cast<size_t>(rows * C));
      at::parallel_for(0, nt * ct * st, 1, [&](int64_t t0, int64_t t1) {
        const auto fl = f;
        alignas(64) T xbuf[kChunk];
        alignas(64) T gbuf[kChunk];
        alignas(64) T dbuf[kChunk];
        alignas(64) T terms[NP][kChunk];
        std::vector<acc_t> acc(NP * static_cast<size_t>(cb));
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t it = t / (ct * st), ic = (t / st) % ct, is = t % st;
          const int64_t n0 = it * nb, n1 = std::min(N, n0 + nb);
          const int64_t c0 = ic * cb, c1 = std::min(C, c0 + cb);
          const int64_t s0 = is * sb, s1 = std::min(S, s0 + sb);
          std::fill(acc.begin(), acc.end(), acc_t(0));
          for (int64_t n = n0; n < n1; ++n) {
            if (S == 1) {  // channel innermost: a run of channels [c0, c1) is contiguous, one term per channel
              for (int64_t q0 = c0; q0 < c1; q0 += kChunk) {
                const int64_t cnt = std::min(kChunk, c1 - q0);
                const int64_t base = n * C + q0;
                if (channel_inner_backward_fused(fl, xp + base, gp + base, pv.data() + q0, dxp + base,
                                                 acc.data() + (q0 - c0), cnt)) {
                  continue;  // (straight on the storage: dx may be grad's memory, each vector is read first)
                }
                const T* xs = cpu::load_chunk(xp + base, xbuf, cnt);
                const T* gs = cpu::load_chunk(gp + base, gbuf, cnt);
                T* ds = cpu::out_chunk(dxp + base, dbuf, gp + base);
                for (int64_t j = 0; j < cnt; ++j) {
                  T pj[NK], dpj[NP];
                  for (int k = 0; k < NK; ++k) pj[k] = pv[k * C + q0 + j];
                  ds[j] = fl.backward(xs[j], gs[j], pj, dpj);
                  for (size_t k = 0; k < NP; ++k) terms[k][j] = dpj[k];
                }
                for (size_t k = 0; k < NP; ++k) {
                  acc_t* a = acc.data() + k * cb + (q0 - c0);
                  for (int64_t j = 0; j < cnt; ++j) a[j] += static_cast<acc_t>(terms[k][j]);
                }
                cpu::store_chunk(ds, dxp + base, cnt);
              }
            } else {  // rows of S elements of one channel: 8-lane sums per parameter
              for (int64_t c = c0; c < c1; ++c) {
                T pc[NK];
                for (int k = 0; k < NK; ++k) pc[k] = pv[k * C + c];
                acc_t lanes[NP][8] = {};
                for (int64_t q0 = s0; q0 < s1; q0 += kChunk) {
                  const int64_t cnt = std::min(kChunk, s1 - q0);
                  const int64_t base = (n * C + c) * S + q0;
                  const T* xs = cpu::load_chunk(xp + base, xbuf, cnt);
                  const T* gs = cpu::load_chunk(gp + base, gbuf, cnt);
                  T* ds = cpu::out_chunk(dxp + base, dbuf, gp + base);
                  for (int64_t j = 0; j < cnt; ++j) {
                    T dpj[NP];
                    ds[j] = fl.backward(xs[j], gs[j], pc, dpj);
                    for (size_t k = 0; k < NP; ++k) terms[k][j] = dpj[k];
                  }
                  for (size_t k = 0; k < NP; ++k) {
                    int64_t j = 0;
                    for (; j + 8 <= cnt; j += 8) {
                      for (int l = 0; l < 8; ++l) lanes[k][l] += static_cast<acc_t>(terms[k][j + l]);
                    }
                    for (int l = 0; j < cnt; ++j, ++l) lanes[k][l] += static_cast<acc_t>(terms[k][j]);
                  }
                  cpu::store_chunk(ds, dxp + base, cnt);
                }
                for (size_t k = 0; k < NP; ++k) {
                  const acc_t* l = lanes[k];
                  acc[k * cb + (c - c0)] += ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
                }
              }
            }
          }
          for (size_t k = 0; k < NP; ++k) {
            acc_t* out = partial.data() + (k * rows + it * st + is) * C;
            for (int64_t c = c0; c < c1; ++c) out[c] = acc[k * cb + (c - c0)];
          }
        }
      });
      // Per-channel sums of the partials, rows in a fixed order.
      std::vector<T> sums(static_cast<size_t>(C));
      for (size_t k = 0; k < NP; ++k) {
        const acc_t* pk = partial.data() + k * rows * C;
        at::parallel_for(0, C, 4096, [&](int64_t q0, int64_t q1) {
          for (int64_t c = q0; c < q1; ++c) {
            acc_t sum = 0;
            for (int64_t r = 0; r < rows; ++r) sum += pk[r * C + c];
            sums[c] = static_cast<T>(sum);
          }
        });
        cpu::from_opmath(sums.data(), dparams[k].template mutable_data_ptr<scalar_t>(), C);
      }
    });
  }

  // Maxout: parallel over [outer, groups] rows; each row's S inner positions are contiguous in x (per piece) and y.
  static void maxout_forward(const Tensor& x, const Tensor& y, const Tensor& indices, MaxoutGeometry g) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "glo_maxout_forward_cpu", [&] {
      using T = opmath_t<scalar_t>;
      const scalar_t* xp = x.const_data_ptr<scalar_t>();
      scalar_t* yp = y.mutable_data_ptr<scalar_t>();
      uint8_t* ip = indices.numel() > 0 ? indices.mutable_data_ptr<uint8_t>() : nullptr;
      const int64_t P = g.pieces, S = g.inner;
      if (S < 16) {  // short rows (e.g. 2-D inputs with dim=1): blocks of whole groups, converted once, in L1
        const int64_t rows_per_block = std::max<int64_t>(1, kChunk / (P * S));
        at::parallel_for(0, g.outer * g.groups, std::max<int64_t>(rows_per_block, kTile / (P * S)),
                         [&](int64_t r0, int64_t r1) {
          alignas(64) T xbuf[kChunk];
          alignas(64) T ybuf[kChunk];
          alignas(64) T best[kChunk];
          alignas(64) uint8_t arg[kChunk];
          for (int64_t rb = r0; rb < r1; rb += rows_per_block) {
            const int64_t nr = std::min(rows_per_block, r1 - rb);
            if (nr * P * S > kChunk) {  // a single group larger than a chunk: convert element by element
              for (int64_t s = 0; s < S; ++s) {
                const scalar_t* xr = xp + rb * P * S + s;
                T b = static_cast<T>(xr[0]);
                uint8_t a = 0;
                for (int64_t p = 1; p < P; ++p) {
                  const T v = static_cast<T>(xr[p * S]);
                  const bool take = maxout_better(v, b);
                  b = take ? v : b;
                  a = take ? static_cast<uint8_t>(p) : a;
                }
                yp[rb * S + s] = static_cast<scalar_t>(b);
                if (ip != nullptr) ip[rb * S + s] = a;
              }
              continue;
            }
            const T* xs = cpu::load_chunk(xp + rb * P * S, xbuf, nr * P * S);
            // Pieces outermost, groups innermost: independent iterations the CPU overlaps (or vectorizes).
            const int64_t stride = P * S;
            for (int64_t s = 0; s < S; ++s) {
              for (int64_t lr = 0; lr < nr; ++lr) {
                best[lr] = xs[lr * stride + s];
                arg[lr] = 0;
              }
              for (int64_t p = 1; p < P; ++p) {
                const T* xp_ = xs + p * S + s;
                for (int64_t lr = 0; lr < nr; ++lr) {
                  const T v = xp_[lr * stride];
                  const bool take = maxout_better(v, best[lr]);
                  best[lr] = take ? v : best[lr];
                  arg[lr] = take ? static_cast<uint8_t>(p) : arg[lr];
                }
              }
              for (int64_t lr = 0; lr < nr; ++lr) ybuf[lr * S + s] = best[lr];
              if (ip != nullptr) {
                for (int64_t lr = 0; lr < nr; ++lr) ip[(rb + lr) * S + s] = arg[lr];
              }
            }
            cpu::from_opmath(ybuf, yp + rb * S, nr * S);
          }
        });
        return;
      }
      at::parallel_for(0, g.outer * g.groups, std::max<int64_t>(1, kTile / (P * S)), [&](int64_t r0, int64_t r1) {
        alignas(64) T best[kChunk];
        alignas(64) T cur[kChunk];
        alignas(64) uint8_t arg[kChunk];
        for (int64_t r = r0; r < r1; ++r) {  // r = o * groups + j; its pieces are rows r*P .. r*P+P-1 of length S
          for (int64_t s0 = 0; s0 < S; s0 += kChunk) {
            const int64_t cnt = std::min(kChunk, S - s0);
            const scalar_t* x0 = xp + (r * P) * S + s0;
            cpu::to_opmath(x0, best, cnt);
            for (int64_t j = 0; j < cnt; ++j) arg[j] = 0;
            for (int64_t p = 1; p < P; ++p) {
              cpu::to_opmath(x0 + p * S, cur, cnt);
              for (int64_t j = 0; j < cnt; ++j) {
                const bool take = maxout_better(cur[j], best[j]);
                best[j] = take ? cur[j] : best[j];
                arg[j] = take ? static_cast<uint8_t>(p) : arg[j];
              }
            }
            cpu::from_opmath(best, yp + r * S + s0, cnt);
            if (ip != nullptr) std::memcpy(ip + r * S + s0, arg, static_cast<size_t>(cnt));
          }
        }
      });
    });
  }

  static void maxout_backward(const Tensor& grad, const Tensor& indices, const Tensor& dx, MaxoutGeometry g) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "glo_maxout_backward_cpu", [&] {
      const scalar_t* gp = grad.const_data_ptr<scalar_t>();
      const uint8_t* ip = indices.const_data_ptr<uint8_t>();
      scalar_t* dp = dx.mutable_data_ptr<scalar_t>();
      const int64_t P = g.pieces, S = g.inner;
      const scalar_t zero(0);
      at::parallel_for(0, g.outer * g.groups, std::max<int64_t>(1, kTile / (P * S)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const scalar_t* gr = gp + r * S;
          const uint8_t* ir = ip + r * S;
          for (int64_t p = 0; p < P; ++p) {
            scalar_t* dr = dp + (r * P + p) * S;
            for (int64_t s = 0; s < S; ++s) dr[s] = ir[s] == p ? gr[s] : zero;
          }
        }
      });
    });
  }
};

}  // namespace
GLO_ISA_END
}  // namespace glo

// This level's operators, for the run-time dispatch of cpu/cpu_dispatch.h (entered only on CPUs that have the level).
#define GLO_Y_ GLO_TABLE_ENTRY_
GLO_DEFINE_LEVEL_TABLE(activation_table_, ActivationFamily, ::glo::Ops<::glo::CpuKernels>, GLO_ACTIVATION_OP_NAMES)
#undef GLO_Y_

#if !defined(GLO_CPU_ISA_AVX2) && !defined(GLO_CPU_ISA_AVX512)
// The default level's file (compiled for the baseline, so safe on any CPU) holds the dispatch state, chooses the level
// and registers the trampolines.
namespace glo {
namespace cpu_dispatch {
namespace {

constexpr const char* kLevelNames[kNumLevels] = {"default", "avx2", "avx512"};

int best_level() {
  for (int level = kNumLevels - 1; level > kDefault; --level) {
    if (level_built(level) && level_supported(level)) return level;
  }
  return kDefault;
}

int level_from_name(const std::string& name) {
  for (int level = 0; level < kNumLevels; ++level) {
    if (name == kLevelNames[level]) return level;
  }
  return -1;
}

std::vector<std::string> runnable_levels() {
  std::vector<std::string> out;
  for (int level = 0; level < kNumLevels; ++level) {
    if (level_built(level) && level_supported(level)) out.emplace_back(kLevelNames[level]);
  }
  return out;
}

}  // namespace

const AnyFn* ActivationFamily::tables[kNumLevels] = {};
std::atomic<int> g_level{best_level()};

bool level_built(int level) {
  switch (level) {
    case kDefault:
      return true;
#if defined(GLO_CPU_BUILT_AVX2)
    case kAvx2:
      return true;
#endif
#if defined(GLO_CPU_BUILT_AVX512)
    case kAvx512:
      return true;
#endif
    default:
      return false;
  }
}

bool level_supported(int level) {
  if (level == kDefault) return true;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
  __builtin_cpu_init();  // checks the OS saves the AVX / AVX-512 state too
  if (level == kAvx2) return __builtin_cpu_supports("x86-64-v3");
  if (level == kAvx512) return __builtin_cpu_supports("x86-64-v4");
#elif defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
  if (level == kAvx2) return v3;
  if (level == kAvx512) {
    return v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512cd");
  }
#endif
  return false;
}

}  // namespace cpu_dispatch
}  // namespace glo

TORCH_LIBRARY_IMPL(glo_kernels, CPU, m) {
#define GLO_Y_ GLO_TRAMPOLINE_IMPL_
  GLO_REGISTER_TRAMPOLINES(activation_table_, ActivationFamily, ::glo::Ops<::glo::CpuKernels>, GLO_ACTIVATION_OP_NAMES)
#undef GLO_Y_
}

// The level the CPU operators run at (glo_kernels/backends.py wraps these).
TORCH_LIBRARY_FRAGMENT(glo_kernels_debug, m) {
  using namespace ::glo::cpu_dispatch;
  m.def("cpu_capability() -> str", [] { return std::string(kLevelNames[g_level.load()]); });
  m.def("cpu_capabilities() -> str[]", [] { return runnable_levels(); });
  m.def("set_cpu_capability(str name) -> ()", [](const std::string& name) {
    const int level = level_from_name(name);
    TORCH_CHECK(level >= 0, "glo_kernels: unknown CPU capability '", name, "': the levels are default, avx2 and avx512");
    TORCH_CHECK(level_built(level), "glo_kernels: CPU capability '", name,
                "' was not compiled into this build (levels built for x86-64 only); this build runs: ",
                c10::Join(", ", runnable_levels()));
    TORCH_CHECK(level_supported(level), "glo_kernels: CPU capability '", name,
                "' needs instructions this CPU lacks; it runs: ", c10::Join(", ", runnable_levels()));
    g_level.store(level);
  });
}
#endif  // the default level
