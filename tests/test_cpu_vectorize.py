"""Static check of the CPU kernels' element math: GCC vectorizes the float loop of every functor's forward and backward.

The CPU kernels are plain loops over glo/activations.h's functors, which GCC turns into SIMD code only when every
operation of the inlined functor has a vector form. One construct that does not (a struct with bool members returned
from a helper, a bool formed from two comparisons of different types) leaves the whole loop scalar: the float GELU ran
5x slower than PyTorch's that way, and no accuracy test notices. Each functor's loops are compiled here with the build's
optimization flags at the AVX2 level (x86-64-v3, the level every supported x86 host has) and GCC's vectorizer report
must list them; so must it the gated units' loops (glo::Gated over each gate activation).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INCLUDE = os.path.join(_ROOT, "csrc", "include")
_GXX = shutil.which("g++")

# Functors with scalar members: their constructor arguments (the others are built with {}).
_ARGS = {"ELU": "{1.0f}", "LeakyReLU": "{0.01f}", "Softplus": "{1.0f, 20.0f, 1.0f}"}


def _unary_functors() -> list[str]:
    """The functors of GLO_UNARY_OPS (csrc/include/glo/op_list.h), then ELU and Softplus (written by hand)."""
    text = open(os.path.join(_INCLUDE, "glo", "op_list.h")).read()
    block = text[text.index("#define GLO_UNARY_OPS(X)"):]
    block = block[:block.index("\n\n")]
    return re.findall(r"X\(\w+, (\w+), [xy]\)", block) + ["ELU", "Softplus"]


def _gated_activations() -> list[str]:
    """The gate activations of GLO_GATED_OPS (glo::Gated<float, glo::<Functor><float>>)."""
    text = open(os.path.join(_INCLUDE, "glo", "op_list.h")).read()
    block = text[text.index("#define GLO_GATED_OPS(X)"):]
    block = block[:block.index("\n\n")]
    return re.findall(r"X\(\w+, (\w+), \w+\)", block)


@pytest.mark.skipif(_GXX is None, reason="g++ is not on PATH (the CPU kernels' compiler): nothing to check with")
def test_every_functor_loop_vectorizes(tmp_path):
    functors = _unary_functors()
    assert "GELU" in functors and "Sigmoid" in functors, functors
    gated = _gated_activations()
    assert "SiLU" in gated and "ReLUOfInput" in gated, gated
    lines, loops = ['#include "glo/activations.h"'], {}
    for k, name in enumerate(gated):  # the gated units' loops (cpu/activations_cpu.cpp's gated_forward / _backward)
        make = f"glo::Gated<float, glo::{name}<float>>{{}}"
        lines.append(f"void gfwd_{k}(const float* __restrict a, const float* __restrict b, float* __restrict y, "
                     "long n) {")
        lines.append(f"  const auto f = {make};")
        lines.append("  for (long i = 0; i < n; ++i) y[i] = f.forward(a[i], b[i]);")
        loops[(f"Gated<{name}>", "forward")] = len(lines)
        lines.append("}")
        lines.append(f"void gbwd_{k}(const float* __restrict g, const float* __restrict a, const float* __restrict b, "
                     "float* __restrict da, float* __restrict db, long n) {")
        lines.append(f"  const auto f = {make};")
        lines.append("  for (long i = 0; i < n; ++i) f.backward(g[i], a[i], b[i], da[i], db[i]);")
        loops[(f"Gated<{name}>", "backward")] = len(lines)
        lines.append("}")
    for k, name in enumerate(functors):
        make = f"glo::{name}<float>{_ARGS.get(name, '{}')}"
        lines.append(f"void fwd_{k}(const float* __restrict x, float* __restrict y, long n) {{")
        lines.append(f"  const auto f = {make};")
        lines.append("  for (long i = 0; i < n; ++i) y[i] = f.forward(x[i]);")
        loops[(name, "forward")] = len(lines)
        lines.append("}")
        lines.append(f"void bwd_{k}(const float* __restrict g, const float* __restrict x, float* __restrict d, "
                     "long n) {")
        lines.append(f"  const auto f = {make};")
        lines.append("  for (long i = 0; i < n; ++i) d[i] = f.backward(g[i], x[i]);")
        loops[(name, "backward")] = len(lines)
        lines.append("}")
    src = tmp_path / "loops.cpp"
    src.write_text("\n".join(lines) + "\n")
    out = subprocess.run([_GXX, "-std=c++20", "-O3", "-DNDEBUG", "-fno-trapping-math", "-ffp-contract=off",
                          "-march=x86-64-v3", f"-I{_INCLUDE}", "-fopt-info-vec-optimized", "-c", str(src), "-o", str(tmp_path / "l.o")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    vectorized = {int(m) for m in re.findall(r"loops\.cpp:(\d+):\d+: optimized: loop vectorized", out.stderr)}
    scalar = [f"{name}::{what}" for (name, what), line in loops.items() if line not in vectorized]
    assert scalar == [], f"loops GCC left scalar: {scalar}"
