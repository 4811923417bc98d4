"""The AVX-512 loops of the CPU kernels (csrc/cpu/avx512_math.h) give bitwise the results of the scalar functors.

On a host whose build targets AVX-512 the CPU kernels of sigmoid, tanh, SiLU (forward and backward), SwiGLU,
Hardsigmoid, Hardswish, Softplus, ReGLU, GELU's tanh form and GeGLU's (forward and backward) and bias_silu and
bias_gelu_tanh (the backward with its per-channel sums) run hand-written intrinsics (on float32 data, and on bfloat16
and float16 data converted in registers) instead of GCC's vectorization of glo/activations.h. Those functors stay
the definition of the math (and the accuracy tests measure them on the other hosts), so the intrinsics must
reproduce them bit for bit: a reordered product or a contracted FMA would be a difference no tolerance test
sees. This compiles both with the build's flags and compares their bits over every 61st float32 bit pattern (70
million inputs, every exponent, NaN payloads and both zeros included), the second and third operands (dy, b) drawn
from the same sweep shifted. A NaN result matches any NaN: of a product of two NaNs x86 returns the first operand's,
and which operand comes first is the compiler's choice (C++ leaves it open; GCC's scalar and vector code of x * s
differ there), as is the sign a NaN carries. On bfloat16 storage every one of the 65536 patterns is an input, against
the kernels' chunk path (widen, the functor, round to nearest even); on float16 storage every pattern, against the
float loop on the widened inputs, rounded by vcvtps2ph (the chunk path's conversion).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from torch.utils.cpp_extension import include_paths

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_GXX = shutil.which("g++")


def _host_has_avx512() -> bool:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512f" in flags


_HARNESS = r"""
#include "glo/activations.h"
#include "glo/cpu_convert.h"
#include "avx512_math.h"
#include <cstdio>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <vector>

static float from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static uint32_t to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

int main() {
  const long n = 1 << 16;
  std::vector<float> x(n), g(n), b(n), v(n), w(n), s(n), t(n);
  long bad[7] = {0, 0, 0, 0, 0, 0, 0};
  const char* names[7] = {"sigmoid", "tanh", "silu", "silu_backward", "swiglu", "swiglu_backward",
                          "hardsigmoid / hardswish / softplus / reglu / gelu_tanh"};
  const uint64_t stride = 61;
  for (uint64_t base = 0; base < (uint64_t{1} << 32); base += stride * n) {
    for (long i = 0; i < n; ++i) {
      const uint64_t k = base + stride * i;
      x[i] = from_bits(static_cast<uint32_t>(k));
      g[i] = from_bits(static_cast<uint32_t>(k * 2654435761u + 12345u));
      b[i] = from_bits(static_cast<uint32_t>(k * 40503u + 977u));
    }
    const long cnt = n - static_cast<long>(base % 13);  // a partial last vector too
    const glo::Sigmoid<float> sig{};
    const glo::Tanh<float> th{};
    const glo::SiLU<float> si{};
    const auto gated = glo::gated<float>(si);
    auto compare = [&](int which, const std::vector<float>& p, const std::vector<float>& q) {
      for (long i = 0; i < cnt; ++i) {
        if (to_bits(p[i]) != to_bits(q[i]) && !(p[i] != p[i] && q[i] != q[i])) {
          if (bad[which]++ < 3)
            std::printf("%s differs at x=%a dy=%a b=%a: %a vs %a\n", names[which], x[i], g[i], b[i], p[i], q[i]);
        }
      }
    };
    for (long i = 0; i < cnt; ++i) v[i] = sig.forward(x[i]);
    glo::avx512::sigmoid_forward(x.data(), w.data(), cnt);
    compare(0, v, w);
    for (long i = 0; i < cnt; ++i) v[i] = th.forward(x[i]);
    glo::avx512::tanh_forward(x.data(), w.data(), cnt);
    compare(1, v, w);
    for (long i = 0; i < cnt; ++i) v[i] = si.forward(x[i]);
    glo::avx512::silu_forward(x.data(), w.data(), cnt);
    compare(2, v, w);
    for (long i = 0; i < cnt; ++i) v[i] = si.backward(g[i], x[i]);
    glo::avx512::silu_backward(g.data(), x.data(), w.data(), cnt);
    compare(3, v, w);
    for (long i = 0; i < cnt; ++i) v[i] = gated.forward(x[i], b[i]);
    glo::avx512::swiglu_forward(x.data(), b.data(), w.data(), cnt);
    compare(4, v, w);
    for (long i = 0; i < cnt; ++i) gated.backward(g[i], x[i], b[i], v[i], s[i]);
    glo::avx512::swiglu_backward(g.data(), x.data(), b.data(), w.data(), t.data(), cnt);
    compare(5, v, w);
    compare(5, s, t);
    {  // the ports of Hardsigmoid, Hardswish, Softplus (beta 1.5, threshold 20), GELU's tanh form, ReGLU and GeGLU-tanh
      const glo::Hardsigmoid<float> hs{};
      const glo::Hardswish<float> hw{};
      const glo::Softplus<float> sp{1.5f, 20.0f, 1.0f / 1.5f};
      const glo::avx512::SoftplusParams q{sp.beta, sp.threshold, sp.inv_beta};
      const glo::GELUTanh<float> gt{};
      auto unary = [&](const auto& f, auto fwd, auto bwd) {
        for (long i = 0; i < cnt; ++i) v[i] = f.forward(x[i]);
        fwd(x.data(), w.data(), cnt);
        compare(6, v, w);
        for (long i = 0; i < cnt; ++i) v[i] = f.backward(g[i], x[i]);
        bwd(g.data(), x.data(), w.data(), cnt);
        compare(6, v, w);
      };
      unary(hs, [](auto... a) { glo::avx512::hardsigmoid_forward(a...); },
            [](auto... a) { glo::avx512::hardsigmoid_backward(a...); });
      unary(hw, [](auto... a) { glo::avx512::hardswish_forward(a...); },
            [](auto... a) { glo::avx512::hardswish_backward(a...); });
      unary(sp, [&](auto... a) { glo::avx512::softplus_forward(q, a...); },
            [&](auto... a) { glo::avx512::softplus_backward(q, a...); });
      unary(gt, [](auto... a) { glo::avx512::gelu_tanh_forward(a...); },
            [](auto... a) { glo::avx512::gelu_tanh_backward(a...); });
      auto gated_unit = [&](const auto& f, auto fwd, auto bwd) {
        for (long i = 0; i < cnt; ++i) v[i] = f.forward(x[i], b[i]);
        fwd(x.data(), b.data(), w.data(), cnt);
        compare(6, v, w);
        for (long i = 0; i < cnt; ++i) f.backward(g[i], x[i], b[i], v[i], s[i]);
        bwd(g.data(), x.data(), b.data(), w.data(), t.data(), cnt);
        compare(6, v, w);
        compare(6, s, t);
      };
      gated_unit(glo::gated<float>(glo::ReLUOfInput<float>{}), [](auto... a) { glo::avx512::reglu_forward(a...); },
                 [](auto... a) { glo::avx512::reglu_backward(a...); });
      gated_unit(glo::gated<float>(gt), [](auto... a) { glo::avx512::geglu_tanh_forward(a...); },
                 [](auto... a) { glo::avx512::geglu_tanh_backward(a...); });
    }
    {  // BiasAct<SiLU>'s backward and its per-channel double sums, over rows of this block's values (made finite:
       // a NaN would make every later sum NaN)
      const glo::BiasAct<float, glo::SiLU<float>> ba{};
      const long c = 1000;  // (not a multiple of 16: a partial last vector)
      std::vector<double> acc1(c, 0.0), acc2(c, 0.0);
      std::vector<float> xf(n), d1(c), d2(c);
      for (long i = 0; i < n; ++i) xf[i] = std::isfinite(x[i]) ? x[i] : static_cast<float>(i % 97) - 48.0f;
      for (long row = 0; row + 2 * c <= n; row += 2 * c) {
        const float* xs = xf.data() + row;
        const float* gs = xf.data() + row + c;
        const float* bias = xf.data() + (n - c - row / 2);
        for (long j = 0; j < c; ++j) {
          float dp[1];
          d1[j] = ba.backward(xs[j], gs[j], bias + j, dp);
          acc1[j] += static_cast<double>(dp[0]);
        }
        glo::avx512::bias_backward(glo::avx512::SiluGrad{}, xs, gs, bias, d2.data(), acc2.data(), c);
        for (long j = 0; j < c; ++j) {
          if (to_bits(d1[j]) != to_bits(d2[j]) && !(d1[j] != d1[j] && d2[j] != d2[j]) && bad[6]++ < 3)
            std::printf("bias_silu_backward differs at x=%a dy=%a: %a vs %a\n", xs[j], gs[j], d1[j], d2[j]);
        }
        const glo::BiasAct<float, glo::GELUTanh<float>> bt{};  // (bias_gelu_tanh: its terms, not summed here)
        std::vector<double> scratch(c, 0.0);
        for (long j = 0; j < c; ++j) {
          float dp[1];
          d1[j] = bt.backward(xs[j], gs[j], bias + j, dp);
        }
        glo::avx512::bias_backward(glo::avx512::GeluTanhGrad{}, xs, gs, bias, d2.data(), scratch.data(), c);
        for (long j = 0; j < c; ++j) {
          if (to_bits(d1[j]) != to_bits(d2[j]) && !(d1[j] != d1[j] && d2[j] != d2[j]) && bad[6]++ < 3)
            std::printf("bias_gelu_tanh_backward differs at x=%a dy=%a: %a vs %a\n", xs[j], gs[j], d1[j], d2[j]);
        }
      }
      for (long j = 0; j < c; ++j) {
        if (std::memcmp(&acc1[j], &acc2[j], 8) != 0 && !(acc1[j] != acc1[j] && acc2[j] != acc2[j]) && bad[6]++ < 3)
          std::printf("bias_silu_backward's sum differs at %ld: %a vs %a\n", j, acc1[j], acc2[j]);
      }
    }
  }
  {  // bfloat16 storage, converted in registers: every bfloat16 pattern as x (dy and b: the patterns permuted), against
     // the kernels' chunk path (cpu::bf16_to_float, the functor, cpu::float_to_bf16; NaN -> 0x7FC0 in both)
    const long m = 1 << 16, cnt = m - 5;
    std::vector<uint16_t> xb(m), gb(m), bb(m), p1(m), p2(m), q1(m), q2(m);
    for (long i = 0; i < m; ++i) {
      xb[i] = static_cast<uint16_t>(i);
      gb[i] = static_cast<uint16_t>((i * 40503u + 977u) & 0xFFFFu);
      bb[i] = static_cast<uint16_t>((i * 25173u + 13849u) & 0xFFFFu);
    }
    using glo::cpu::bf16_to_float;
    using glo::cpu::float_to_bf16;
    const glo::Sigmoid<float> sig{};
    const glo::Tanh<float> th{};
    const glo::SiLU<float> si{};
    const auto gated = glo::gated<float>(si);
    auto compare16 = [&](const char* what, const std::vector<uint16_t>& p, const std::vector<uint16_t>& q) {
      for (long i = 0; i < cnt; ++i) {
        if (p[i] != q[i] && bad[6]++ < 3)
          std::printf("bfloat16 %s differs at x=0x%04x dy=0x%04x b=0x%04x: 0x%04x vs 0x%04x\n", what, xb[i], gb[i],
                      bb[i], p[i], q[i]);
      }
    };
    for (long i = 0; i < cnt; ++i) p1[i] = float_to_bf16(sig.forward(bf16_to_float(xb[i])));
    glo::avx512::sigmoid_forward(xb.data(), p2.data(), cnt);
    compare16("sigmoid", p1, p2);
    for (long i = 0; i < cnt; ++i) p1[i] = float_to_bf16(th.forward(bf16_to_float(xb[i])));
    glo::avx512::tanh_forward(xb.data(), p2.data(), cnt);
    compare16("tanh", p1, p2);
    for (long i = 0; i < cnt; ++i) p1[i] = float_to_bf16(si.forward(bf16_to_float(xb[i])));
    glo::avx512::silu_forward(xb.data(), p2.data(), cnt);
    compare16("silu", p1, p2);
    for (long i = 0; i < cnt; ++i) p1[i] = float_to_bf16(si.backward(bf16_to_float(gb[i]), bf16_to_float(xb[i])));
    glo::avx512::silu_backward(gb.data(), xb.data(), p2.data(), cnt);
    compare16("silu_backward", p1, p2);
    auto gated16 = [&](const char* what, const auto& f, auto fwd, auto bwd) {
      for (long i = 0; i < cnt; ++i) p1[i] = float_to_bf16(f.forward(bf16_to_float(xb[i]), bf16_to_float(bb[i])));
      fwd(xb.data(), bb.data(), p2.data(), cnt);
      compare16(what, p1, p2);
      for (long i = 0; i < cnt; ++i) {
        float da, db;
        f.backward(bf16_to_float(gb[i]), bf16_to_float(xb[i]), bf16_to_float(bb[i]), da, db);
        p1[i] = float_to_bf16(da);
        q1[i] = float_to_bf16(db);
      }
      bwd(gb.data(), xb.data(), bb.data(), p2.data(), q2.data(), cnt);
      compare16(what, p1, p2);
      compare16(what, q1, q2);
    };
    gated16("swiglu", gated, [](auto... a) { glo::avx512::swiglu_forward(a...); },
            [](auto... a) { glo::avx512::swiglu_backward(a...); });
    {  // the ports of Hardsigmoid, Hardswish, Softplus, ReGLU, GELU's tanh form and GeGLU-tanh
      const glo::Hardsigmoid<float> hs{};
      const glo::Hardswish<float> hw{};
      const glo::Softplus<float> sp{1.5f, 20.0f, 1.0f / 1.5f};
      const glo::avx512::SoftplusParams q{sp.beta, sp.threshold, sp.inv_beta};
      const auto rg = glo::gated<float>(glo::ReLUOfInput<float>{});
      auto unary = [&](const char* what, auto fwd, auto loop) {
        for (long i = 0; i < cnt; ++i) p1[i] = float_to_bf16(fwd(bf16_to_float(xb[i])));
        loop(xb.data(), p2.data(), cnt);
        compare16(what, p1, p2);
      };
      auto unary_bwd = [&](const char* what, auto bwd, auto loop) {
        for (long i = 0; i < cnt; ++i) p1[i] = float_to_bf16(bwd(bf16_to_float(gb[i]), bf16_to_float(xb[i])));
        loop(gb.data(), xb.data(), p2.data(), cnt);
        compare16(what, p1, p2);
      };
      unary("hardsigmoid", [&](float v) { return hs.forward(v); },
            [](auto... a) { glo::avx512::hardsigmoid_forward(a...); });
      unary_bwd("hardsigmoid_backward", [&](float d, float v) { return hs.backward(d, v); },
                [](auto... a) { glo::avx512::hardsigmoid_backward(a...); });
      unary("hardswish", [&](float v) { return hw.forward(v); },
            [](auto... a) { glo::avx512::hardswish_forward(a...); });
      unary_bwd("hardswish_backward", [&](float d, float v) { return hw.backward(d, v); },
                [](auto... a) { glo::avx512::hardswish_backward(a...); });
      unary("softplus", [&](float v) { return sp.forward(v); },
            [&](auto... a) { glo::avx512::softplus_forward(q, a...); });
      unary_bwd("softplus_backward", [&](float d, float v) { return sp.backward(d, v); },
                [&](auto... a) { glo::avx512::softplus_backward(q, a...); });
      gated16("reglu", rg, [](auto... a) { glo::avx512::reglu_forward(a...); },
              [](auto... a) { glo::avx512::reglu_backward(a...); });
      const glo::GELUTanh<float> gt{};
      unary("gelu_tanh", [&](float v) { return gt.forward(v); },
            [](auto... a) { glo::avx512::gelu_tanh_forward(a...); });
      unary_bwd("gelu_tanh_backward", [&](float d, float v) { return gt.backward(d, v); },
                [](auto... a) { glo::avx512::gelu_tanh_backward(a...); });
      gated16("geglu_tanh", glo::gated<float>(gt), [](auto... a) { glo::avx512::geglu_tanh_forward(a...); },
              [](auto... a) { glo::avx512::geglu_tanh_backward(a...); });
    }
    {  // bias_silu's backward: dx rounded to storage, the sums of the float dx (finite values: NaN would spread)
      const glo::BiasAct<float, glo::SiLU<float>> ba{};
      const long c = 1000;
      std::vector<float> bias(c);
      std::vector<double> acc1(c, 0.0), acc2(c, 0.0);
      std::vector<uint16_t> xf(m);
      for (long i = 0; i < m; ++i) {
        xf[i] = std::isfinite(bf16_to_float(xb[i])) ? xb[i] : static_cast<uint16_t>(i & 0x3FFF);
      }
      for (long j = 0; j < c; ++j) bias[j] = bf16_to_float(xf[(j * 7919) % m]);
      for (long row = 0; row + 2 * c <= m; row += 2 * c) {
        const uint16_t* xs = xf.data() + row;
        const uint16_t* gs = xf.data() + row + c;
        for (long j = 0; j < c; ++j) {
          float dp[1];
          p1[j] = float_to_bf16(ba.backward(bf16_to_float(xs[j]), bf16_to_float(gs[j]), bias.data() + j, dp));
          acc1[j] += static_cast<double>(dp[0]);
        }
        glo::avx512::bias_backward(glo::avx512::SiluGrad{}, xs, gs, bias.data(), p2.data(), acc2.data(), c);
        for (long j = 0; j < c; ++j) {
          if (p1[j] != p2[j] && bad[6]++ < 3)
            std::printf("bfloat16 bias_silu_backward differs at x=0x%04x: 0x%04x vs 0x%04x\n", xs[j], p1[j], p2[j]);
        }
      }
      for (long j = 0; j < c; ++j) {
        if (std::memcmp(&acc1[j], &acc2[j], 8) != 0 && !(acc1[j] != acc1[j] && acc2[j] != acc2[j]) && bad[6]++ < 3)
          std::printf("bfloat16 bias_silu_backward's sum differs at %ld: %a vs %a\n", j, acc1[j], acc2[j]);
      }
    }
  }
  {  // float16 storage (vcvtph2ps / vcvtps2ph, the chunk path's conversions): every pattern as x, against the float
     // loop (itself bitwise the functor) on the widened inputs, its results rounded to nearest even
    using glo::avx512::Half16;
    const long m = 1 << 16, cnt = m - 5;
    std::vector<uint16_t> h[3];
    std::vector<float> f[3];
    for (int k = 0; k < 3; ++k) {
      h[k].resize(m);
      f[k].resize(m);
      for (long i = 0; i < m; ++i) {
        h[k][i] = static_cast<uint16_t>(k == 0 ? i : (i * (k == 1 ? 40503u : 25173u) + 977u * k) & 0xFFFFu);
        f[k][i] = _cvtsh_ss(h[k][i]);
      }
    }
    std::vector<uint16_t> ho[2] = {std::vector<uint16_t>(m), std::vector<uint16_t>(m)};
    std::vector<float> fo[2] = {std::vector<float>(m), std::vector<float>(m)};
    auto hp = [](std::vector<uint16_t>& v) { return reinterpret_cast<Half16*>(v.data()); };
    // ni inputs (x, or dy x, or a b, or dy a b), no outputs; half_loop / float_loop take (inputs..., outputs..., cnt)
    auto check = [&](const char* what, int no, auto half_loop, auto float_loop) {
      half_loop(hp(h[0]), hp(h[1]), hp(h[2]), hp(ho[0]), hp(ho[1]), cnt);
      float_loop(f[0].data(), f[1].data(), f[2].data(), fo[0].data(), fo[1].data(), cnt);
      for (int o = 0; o < no; ++o) {
        for (long i = 0; i < cnt; ++i) {
          const uint16_t want = _cvtss_sh(fo[o][i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
          if (ho[o][i] != want && bad[6]++ < 3)
            std::printf("float16 %s differs at 0x%04x: 0x%04x vs 0x%04x\n", what, h[0][i], ho[o][i], want);
        }
      }
    };
    namespace a5 = glo::avx512;
    const a5::SoftplusParams q{1.5f, 20.0f, 1.0f / 1.5f};
#define GLO_F16_UNARY(LOOP)                                                                                  \
    check(#LOOP, 1, [](auto x, auto, auto, auto y, auto, long c) { a5::LOOP(x, y, c); },                    \
          [](auto x, auto, auto, auto y, auto, long c) { a5::LOOP(x, y, c); });
#define GLO_F16_BINARY(LOOP)                                                                                 \
    check(#LOOP, 1, [](auto x, auto w, auto, auto y, auto, long c) { a5::LOOP(x, w, y, c); },               \
          [](auto x, auto w, auto, auto y, auto, long c) { a5::LOOP(x, w, y, c); });
#define GLO_F16_GATED_BACKWARD(LOOP)                                                                         \
    check(#LOOP, 2, [](auto g, auto a, auto b, auto da, auto db, long c) { a5::LOOP(g, a, b, da, db, c); }, \
          [](auto g, auto a, auto b, auto da, auto db, long c) { a5::LOOP(g, a, b, da, db, c); });
    GLO_F16_UNARY(sigmoid_forward)
    GLO_F16_UNARY(tanh_forward)
    GLO_F16_UNARY(silu_forward)
    GLO_F16_UNARY(gelu_forward)
    GLO_F16_UNARY(gelu_tanh_forward)
    GLO_F16_UNARY(hardsigmoid_forward)
    GLO_F16_UNARY(hardswish_forward)
    GLO_F16_BINARY(silu_backward)
    GLO_F16_BINARY(gelu_backward)
    GLO_F16_BINARY(gelu_tanh_backward)
    GLO_F16_BINARY(hardsigmoid_backward)
    GLO_F16_BINARY(hardswish_backward)
    GLO_F16_BINARY(swiglu_forward)
    GLO_F16_BINARY(geglu_forward)
    GLO_F16_BINARY(geglu_tanh_forward)
    GLO_F16_BINARY(reglu_forward)
    GLO_F16_GATED_BACKWARD(swiglu_backward)
    GLO_F16_GATED_BACKWARD(geglu_backward)
    GLO_F16_GATED_BACKWARD(geglu_tanh_backward)
    GLO_F16_GATED_BACKWARD(reglu_backward)
    check("softplus_forward", 1, [&](auto x, auto, auto, auto y, auto, long c) { a5::softplus_forward(q, x, y, c); },
          [&](auto x, auto, auto, auto y, auto, long c) { a5::softplus_forward(q, x, y, c); });
    check("softplus_backward", 1,
          [&](auto g, auto x, auto, auto y, auto, long c) { a5::softplus_backward(q, g, x, y, c); },
          [&](auto g, auto x, auto, auto y, auto, long c) { a5::softplus_backward(q, g, x, y, c); });
#undef GLO_F16_UNARY
#undef GLO_F16_BINARY
#undef GLO_F16_GATED_BACKWARD
  }
  long total = 0;
  for (int k = 0; k < 7; ++k) total += bad[k];
  std::printf("differences: %ld\n", total);
  return total == 0 ? 0 : 1;
}
"""


def _compile_and_run(tmp_path, name, source):
    """Compiles source with the build's flags for the CPU kernels on an AVX-512 host (setup.py), runs it: its
    output, and the lines that start with a name and a number as {name: number}."""
    src = tmp_path / f"{name}.cpp"
    src.write_text(source)
    exe = tmp_path / name
    out = subprocess.run([_GXX, "-std=c++20", "-O3", "-DNDEBUG", "-fno-trapping-math", "-ffp-contract=off",
                          "-march=x86-64-v4", "-mprefer-vector-width=512",
                          f"-I{os.path.join(_ROOT, 'csrc', 'include')}", f"-I{os.path.join(_ROOT, 'csrc', 'cpu')}",
                          *(f"-I{d}" for d in include_paths()),
                          str(src), "-o", str(exe)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    numbers = {}
    for line in run.stdout.splitlines():
        words = line.split()
        if len(words) >= 2 and re.fullmatch(r"[-+0-9.eE]+", words[1]):
            numbers[words[0]] = float(words[1])
    return run.stdout, numbers


@pytest.mark.skipif(_GXX is None, reason="g++ is not on PATH (the CPU kernels' compiler): nothing to compile with")
@pytest.mark.skipif(not _host_has_avx512(), reason="this host has no AVX-512F: the AVX-512 loops are not built here")
def test_avx512_loops_are_bitwise_the_functors(tmp_path):
    out, _ = _compile_and_run(tmp_path, "avx512_bits", _HARNESS)
    assert "differences: 0" in out


# ---------------------------------------------------------------------------------------------------------------
# GELU (erf form): the AVX-512 loops use their own table forms (avx512_math.h: fast for |x| < 4, wide beyond), not
# the functor's bits, so here they are measured against float64 instead: every 61st float32 pattern with |x| < 16
# (36 million inputs, every exponent; beyond, e is 0 and the results are the limits, which tests/test_fuzz.py
# checks); each element's bits do not depend on its neighbours in the vector; the bfloat16 loop against the float
# one on all 65536 patterns.
#
# Error bound: the tables are within about 1 ulp (P and H of themselves, D of its terms P + |x| phi;
# docs/numerics/gelu_float32.py --table prints them). Fast: y = x P or x (1 - P) (with P <= 1/2, P's error is at most
# half as many ulp of 1 - P): two roundings more, <= 2.5 ulp. Wide: e = exp(hi + lo) within 0.75 ulp (hi + lo is
# -x^2 / 2 exactly; exp_f32's polynomial and its one rounding), y = (x H) e within 1.1 + 0.75 + 1 ulp (x <= 0), or
# x (1 - H e): 1.5 + 1. GELU's ulps (4) bound both, for normal results; subnormal ones (x < -13) within 4 units of
# the smallest subnormal (the products' roundings there are absolute). The derivative Phi + x phi has terms up to
# |x| phi, and cancels near its zero (x = -0.75): its error is bounded by a few ulp of the terms' magnitude, max(Phi,
# |x| phi), not of the result (the test_ops gradients' |dy| scale).
# ---------------------------------------------------------------------------------------------------------------
_GELU_HARNESS = r"""
#include "avx512_math.h"
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <vector>

static float from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static double ulp_of(double r) {
  const float f = std::fabs(static_cast<float>(r));
  return static_cast<double>(std::nextafter(f, INFINITY)) - f;
}

int main() {
  std::vector<float> xs;
  for (uint64_t k = 0; k < (uint64_t{1} << 32); k += 61) {
    const float x = from_bits(static_cast<uint32_t>(k));
    if (std::fabs(x) < 16.0f) xs.push_back(x);
  }
  while (xs.size() % 16) xs.push_back(0.0f);
  const size_t n = xs.size();
  std::vector<float> y(n), d(n), y2(n), d2(n), one(n, 1.0f);
  glo::avx512::gelu_forward(xs.data(), y.data(), static_cast<int64_t>(n));
  glo::avx512::gelu_backward(one.data(), xs.data(), d.data(), static_cast<int64_t>(n));
  // geglu's backward with dy = b = 1 gives da = gelu'(a), db = gelu(a): the same bits as the two loops
  glo::avx512::geglu_backward(one.data(), xs.data(), one.data(), d2.data(), y2.data(), static_cast<int64_t>(n));
  double wy = 0, wsub = 0, wd = 0;
  float xy = 0, xsub = 0, xd = 0;
  long mismatch = 0;
  for (size_t i = 0; i < n; ++i) {
    const double x = xs[i];
    const double c = 0.5 * std::erfc(-x * 0.70710678118654752);
    const double p = std::exp(-0.5 * x * x) * 0.3989422804014327;
    const double ry = x * c, rd = c + x * p;
    if (std::memcmp(&y[i], &y2[i], 4) != 0 || std::memcmp(&d[i], &d2[i], 4) != 0) ++mismatch;
    if (i % 7 == 0) {  // alone in its vector (16 copies): the same bits as among its neighbours
      float y1[16], d1[16];
      _mm512_storeu_ps(y1, glo::avx512::gelu(_mm512_set1_ps(xs[i])));
      _mm512_storeu_ps(d1, glo::avx512::gelu_grad(_mm512_set1_ps(xs[i]), _mm512_set1_ps(1.0f)));
      if (std::memcmp(&y[i], y1, 4) != 0 || std::memcmp(&d[i], d1, 4) != 0) ++mismatch;
    }
    const double ey = std::fabs(y[i] - ry);
    if (std::fabs(ry) >= 0x1p-126) {
      if (ey / ulp_of(ry) > wy) { wy = ey / ulp_of(ry); xy = xs[i]; }
    } else if (ey / 0x1p-149 > wsub) {
      wsub = ey / 0x1p-149; xsub = xs[i];
    }
    const double scale = std::fmax(ulp_of(rd), std::fmax(ulp_of(c), ulp_of(std::fabs(x) * p)));
    if (scale >= 0x1p-126 && std::fabs(d[i] - rd) / scale > wd) { wd = std::fabs(d[i] - rd) / scale; xd = xs[i]; }
  }
  // shuffled (vectors of mixed forms, the wide lanes gathered and scattered back), in place, with a tail
  {
    const size_t m = n - 5;
    std::vector<float> sx(m), sy, sd(m), sg(m, 1.0f);
    std::vector<size_t> at(m);
    for (size_t i = 0; i < m; ++i) at[i] = (i * 7919) % m;  // (a permutation: m is not a multiple of 7919)
    for (size_t i = 0; i < m; ++i) sx[i] = xs[at[i]];
    sy = sx;
    glo::avx512::gelu_forward(sy.data(), sy.data(), static_cast<int64_t>(m));
    glo::avx512::gelu_backward(sg.data(), sx.data(), sd.data(), static_cast<int64_t>(m));
    for (size_t i = 0; i < m; ++i) {
      if (std::memcmp(&sy[i], &y[at[i]], 4) != 0 || std::memcmp(&sd[i], &d[at[i]], 4) != 0) ++mismatch;
    }
  }
  std::printf("inputs %zu\nvalue %.3f ulp at %a\nsubnormal %.3f at %a\nderivative %.3f at %a\nmismatch %ld\n",
              n, wy, xy, wsub, xsub, wd, xd, mismatch);
  // bfloat16 storage: the float results rounded (each pattern as x, dy = 1)
  std::vector<uint16_t> bx(65536), by(65536), bd(65536), bone(65536, 0x3F80);
  for (int i = 0; i < 65536; ++i) bx[i] = static_cast<uint16_t>((i * 40503) & 0xFFFF);  // shuffled: mixed forms
  glo::avx512::gelu_forward(bx.data(), by.data(), 65536);
  glo::avx512::gelu_backward(bone.data(), bx.data(), bd.data(), 65536);
  long bad16 = 0;
  for (int i = 0; i < 65536; ++i) {
    const __m512 xv = _mm512_set1_ps(from_bits(static_cast<uint32_t>(bx[i]) << 16));
    uint16_t ey[16], ed[16];
    glo::avx512::store(ey, 0xFFFF, glo::avx512::gelu(xv));
    glo::avx512::store(ed, 0xFFFF, glo::avx512::gelu_grad(xv, _mm512_set1_ps(1.0f)));
    if (ey[0] != by[i] || ed[0] != bd[i]) ++bad16;
  }
  std::printf("bfloat16_differences %ld\n", bad16);
  return 0;
}
"""


@pytest.mark.skipif(_GXX is None, reason="g++ is not on PATH (the CPU kernels' compiler): nothing to compile with")
@pytest.mark.skipif(not _host_has_avx512(), reason="this host has no AVX-512F: the AVX-512 loops are not built here")
def test_avx512_gelu_within_its_bound(tmp_path):
    from glo_kernels.ops.unary import UNARY_BY_NAME

    out, r = _compile_and_run(tmp_path, "avx512_gelu", _GELU_HARNESS)
    ulps = UNARY_BY_NAME["gelu"].ulps
    assert r["inputs"] > 30_000_000, out
    assert r["value"] <= ulps, out
    assert r["subnormal"] <= 4.0, out
    assert r["derivative"] <= ulps, out
    assert r["mismatch"] == 0, out
    assert r["bfloat16_differences"] == 0, out
