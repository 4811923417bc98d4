"""Rounding-error bounds that the tests' tolerances come from.

A test that draws fresh random inputs on every run must never fail on a correct build, so each tolerance is an upper
bound of the error of the computation it checks (first-order forward error analysis; Higham, *Accuracy and Stability
of Numerical Algorithms*, 2nd ed., ch. 3-4), not a constant that happened to pass.

Notation: u is the unit roundoff of the type the arithmetic runs in ("opmath": float32 for 16-bit and float32 data,
float64 for float64 data); gamma(k) = k u / (1 - k u) bounds the relative error of k chained roundings. A sum of n
terms computed along any summation tree of depth h (the longest chain of additions one term goes through) satisfies
``|computed - exact| <= gamma(h) * sum |terms|`` (Higham, eq. 4.4 and section 4.2).
"""
from __future__ import annotations

import math
import types

import torch

# Unit roundoff of each type (half the distance from 1 to the next number): 2^-(mantissa bits + 1).
UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}

# The orders the backends sum a row of n terms in (the depth h of each; rows along the last, contiguous dim):
# - PyTorch's CPU kernels (the reference backend, eager): one accumulator per lane of a vector register, then the
#   lanes' tree and a scalar tail. The narrowest vector unit holds 32 bytes (AVX2: 8 float32 or 4 float64), so a term
#   goes through at most ceil(n / lanes) additions in its lane; the tree (<= 4 levels), the tail (< 8 terms) and
#   torch's chunking add at most SLACK, plus one per 4096 elements;
# - our CPU kernels (csrc/cpu/softmax_cpu.cpp): chunks of CPU_CHUNK elements summed in CPU_LANES partial sums, then
#   chunk after chunk, each step a rescale and an addition (2 roundings): ceil(min(n, 4096) / 16) + 2 ceil(n / 4096);
# - Triton and CUDA kernels: at least one warp of 32 threads, each summing its elements in order, then trees of
#   depth log2: ceil(n / 32) + ceil(log2 n), and the online rescaling per block is bounded by the same SLACK;
# - a row along another dim (inner > 1), and the per-channel sums of parameter gradients: the terms may be added
#   one after another: depth n - 1.
VECTOR_BYTES = 32
SLACK = 16
CPU_CHUNK, CPU_LANES = 4096, 16


def opmath(dtype: torch.dtype) -> torch.dtype:
    """The type the kernels (and the reference backend) compute a dtype in."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def unit_roundoff(dtype: torch.dtype) -> float:
    """u of the arithmetic for data of `dtype` (opmath)."""
    return UNIT_ROUNDOFF[opmath(dtype)]


def gamma(k: float, dtype: torch.dtype) -> float:
    """gamma(k) = k u / (1 - k u): the relative error of k chained roundings in dtype's opmath. The tests compare with
    a float64 reference: for float64 data that reference makes the same kinds of roundings as the op under test, so
    the bound of their difference counts both (2 gamma(k)); for other dtypes its own error is below 2^-29 of ours."""
    ku = k * unit_roundoff(dtype)
    assert ku < 0.5, f"gamma({k}) in {dtype}: no useful bound"
    return ku / (1 - ku) * (2 if opmath(dtype) == torch.float64 else 1)


def sum_depth(n: int, dtype: torch.dtype, contiguous: bool = True, backend: str | None = None) -> int:
    """Longest chain of additions a term of an n-term sum goes through, in the orders described above (backend None:
    PyTorch's CPU kernels, as the reference backend and eager)."""
    if n <= 1:
        return 0
    if not contiguous:
        return n - 1
    if backend == "cpu":
        depth = math.ceil(min(n, CPU_CHUNK) / CPU_LANES) + 2 * math.ceil(n / CPU_CHUNK)
    elif backend in ("triton", "cuda"):
        depth = math.ceil(n / 32) + math.ceil(math.log2(n))
    else:
        depth = math.ceil(n / (VECTOR_BYTES // opmath(dtype).itemsize)) + math.ceil(n / CPU_CHUNK)
    return min(n - 1, depth + SLACK)


def sum_gamma(n: int, dtype: torch.dtype, contiguous: bool = True, backend: str | None = None) -> float:
    """Relative (to the sum of |terms|) error bound of an n-term sum in dtype's opmath."""
    return gamma(sum_depth(n, dtype, contiguous, backend), dtype)


# Roundings along one element's path through an op's formula: the softmax family forms (x - max), / T, exp, the row
# sum's quotient or log, and in backward a product with dy, a difference and / T: about 8 operations, each within
# 2 ulp (libm's, Triton's and our exp / log / expm1 included), i.e. 4u: 32u.
ROUNDINGS_PER_ELEMENT = 32


def element_gamma(dtype: torch.dtype) -> float:
    """Relative error of one element's chain of roundings in opmath (ROUNDINGS_PER_ELEMENT of them)."""
    return gamma(ROUNDINGS_PER_ELEMENT, dtype)


def output_rounding(dtype: torch.dtype) -> float:
    """The final rounding of an opmath result to dtype (0 where opmath is dtype itself: counted in the chain)."""
    return 0.0 if opmath(dtype) == dtype else UNIT_ROUNDOFF[dtype]


def softmax_tol(dtype: torch.dtype) -> float:
    """Relative error of one element of the softmax family: its chain of roundings in opmath, plus, for 16-bit data,
    the roundings of the values stored in dtype between the passes (the output, and the saved y read by backward)."""
    return element_gamma(dtype) + 2 * output_rounding(dtype)


def gated_subnormal_floor(a64: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The absolute error floor of act(a) = a * f(a) (SiLU: f = sigmoid; GELU: f = Phi) where f(a) lies among
    opmath's subnormals (a < -87.3 in float32, < -708.4 in float64 for SiLU): there a rounding of f is not relative but
    up to half the smallest subnormal step. f is formed by at most 2 such roundings (exp's result, within a step of
    the exact value, and a product) and then scaled by |a|; the product with a adds one more half step. The kernel
    and the float64 reference each do so: 2 (1.5 |a| + 0.5) <= 3 (|a| + 1) steps. A gated unit multiplies act(a) by
    b (and its gradient db = dy act(a) by dy), which multiplies this floor too (b up to 1.8e308: a relative
    tolerance alone cannot hold there). Elementwise, float64 on the CPU; NaN / inf give 0."""
    step = torch.finfo(opmath(dtype)).smallest_normal * torch.finfo(opmath(dtype)).eps  # smallest subnormal
    return 3 * (finite(a64).abs() + 1) * step


# ---- rows of the softmax family (float64 tensors on the CPU; NaN / inf do not scale rounding errors) ----
def finite(t: torch.Tensor) -> torch.Tensor:
    """t in float64 on the CPU with NaN / inf replaced by 0 (for error floors)."""
    t = t.detach().double().cpu()
    return torch.where(torch.isfinite(t), t, torch.zeros_like(t))


def _per_row(t: torch.Tensor, dim: int, groups, reduce) -> torch.Tensor:
    if t.dim() == 0 or t.numel() == 0:
        return t
    parts = [t] if groups is None else t.split(list(groups), dim)
    return torch.cat([reduce(q).expand_as(q) for q in parts], dim)


def row_max(x: torch.Tensor, dim: int, groups=None) -> torch.Tensor:
    """The max of each row (or group) along dim, broadcast back; 0 where it is not finite."""
    x = x.detach().double().cpu()
    if x.numel() == 0:
        return torch.zeros_like(x)
    m = _per_row(x, dim, groups, lambda q: q.amax(dim, keepdim=True))
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def row_scale(t: torch.Tensor, dim: int, groups=None) -> torch.Tensor:
    """max |t| over each row (group), finite values, broadcast back: the normwise floor of row-wise ops."""
    return _per_row(finite(t).abs(), dim, groups, lambda q: q.amax(dim, keepdim=True))


def row_sum(t: torch.Tensor, dim: int, groups=None) -> torch.Tensor:
    """Sum over each row (group) along dim, broadcast back."""
    return _per_row(t, dim, groups, lambda q: q.sum(dim, keepdim=True))


def _row_geometry(shape, dim: int, groups, dtype, backend):
    """(n, gamma of the row sums): the longest row (group), summed contiguously when inner == 1."""
    if len(shape) == 0:
        return 1, 0.0
    n = max(groups) if groups else shape[dim]
    contiguous = math.prod(shape[dim + 1:]) == 1
    return n, sum_gamma(n, dtype, contiguous, backend)


def softmax_forward_atol(x64, y64, dim: int, temperature: float, dtype, log: bool, groups=None,
                         backend: str | None = None) -> torch.Tensor:
    """Absolute error allowed per element of softmax / log_softmax(x / T) (rel = softmax_tol besides):
    - each row of y sums to 1 (log: of exp y): y's row maximum bounds the error of its row (normwise floor);
    - the row's sum s = sum exp(...) carries gamma(depth) relative error: y = e / s gets it relatively, log y = ... -
      log s absolutely;
    - the argument of exp, (x - max) / T, carries 2 roundings: 2u |arg| absolute, which exp turns relative."""
    tol = softmax_tol(dtype)
    x64 = x64.detach().double().cpu()
    _, acc = _row_geometry(tuple(y64.shape), dim, groups, dtype, backend)
    arg = finite((x64 - row_max(x64, dim, groups)) / temperature).abs()
    y = finite(y64).abs()
    floor_y = row_scale(y64, dim, groups) if y64.dim() else y
    two_u = 2 * unit_roundoff(dtype)
    return tol * floor_y + (acc if log else acc * y) + two_u * arg * (1 if log else y)


def softmax_backward_atol(x64, y64, g64, dy, dim: int, temperature: float, dtype, log: bool,
                          groups=None, backend: str | None = None) -> torch.Tensor:
    """Absolute error allowed per element of the softmax family's dx = y (dy - sum dy y) / T (log: (dy - exp(y) sum
    dy) / T), rel = softmax_tol besides:
    - dy - sum(dy y) cancels: the rounding of |dy| (row max) scaled by p / T, and the row max of dx;
    - the row sum (sum dy y, or sum dy) over n elements carries gamma(depth) of its |terms|, scaled by p / T;
    - p's relative error 2u |arg| (exp's argument) enters dx_j directly and, weighted, the row sum;
    - log: the saved output y_j = log p_j is stored in dtype, off by u |y_j| (|y_j| includes log Z: log n for a flat
      row of n), so exp(y_j) is off by that much relatively, times |sum dy| / T (found by GLO_TEST_SEED=1712021591:
      float16, 4097 equal logits, T = 0.1, dy constant: dx off by 0.023 |dy| while the bound without it was 0.02 |dy|)."""
    tol = softmax_tol(dtype)
    x64 = x64.detach().double().cpu()
    T = temperature
    _, acc = _row_geometry(tuple(y64.shape), dim, groups, dtype, backend)
    dy = finite(dy)
    p = finite(y64.detach().exp() if log else y64)
    dys = row_scale(dy, dim, groups) if dy.dim() else dy.abs()
    cancel = p * dys / T
    if log:  # dy - exp(y) sum dy: sum dy is up to n |dy|, each exp(y_j) off by its rounding
        cancel = cancel * (dy.shape[dim] if dy.dim() else 1) + dys / T
    floor = (row_scale(g64, dim, groups) if g64.dim() else finite(g64).abs()) + cancel
    row_terms = dy.abs() if log else (dy * p).abs()
    rsum = row_sum(row_terms, dim, groups) if row_terms.dim() else row_terms
    arg = finite((x64 - row_max(x64, dim, groups)) / T).abs()
    cond_sum = row_sum(row_terms * arg, dim, groups) if row_terms.dim() else row_terms * arg
    two_u = 2 * unit_roundoff(dtype)
    bound = (tol * floor + acc * p * rsum / T
             + two_u * (arg * finite(g64).abs() + p * (arg * rsum if log else cond_sum) / T))
    if log:  # the stored y's rounding, relative to |y| (output_rounding, or opmath's u where y is stored in opmath)
        u_y = output_rounding(dtype) or unit_roundoff(dtype)
        bound = bound + u_y * finite(y64).abs() * p * rsum / T
    return bound


def distillation_terms(s64: torch.Tensor, t64: torch.Tensor, temperature: float):
    """Per element of the float64 reference: p, q (teacher and student probabilities), r = log p - log q, and A, the
    magnitude of the pieces log p and log q are formed from: (x - m) / T and log Z of both rows, the one-pass form's
    (t - s) / T and (m_t - m_s) / T, the rows' mean |exp argument| (each exp's 2u |arg| relative error reaches Z,
    weighted by q or p), and 1. Each of log p, log q carries an absolute rounding error of a few u * A."""
    T = float(temperature)
    s, t = s64.detach().double().cpu(), t64.detach().double().cpu()
    if s.numel() == 0:
        z = torch.zeros_like(s)
        return z, z, z, z
    ms, mt = row_max(s, -1), row_max(t, -1)
    ls = torch.log_softmax((s - ms) / T, -1)
    lt = torch.log_softmax((t - mt) / T, -1)
    p, q = lt.exp(), ls.exp()
    lzs = torch.logsumexp((s - ms) / T, -1, keepdim=True)
    lzt = torch.logsumexp((t - mt) / T, -1, keepdim=True)
    arg_s, arg_t = finite((s - ms) / T).abs(), finite((t - mt) / T).abs()
    mean_args = (finite(q) * arg_s).sum(-1, keepdim=True) + (finite(p) * arg_t).sum(-1, keepdim=True)
    A = arg_s + arg_t + ((t - s).abs() + (mt - ms).abs()) / T + lzt.abs() + lzs.abs() + mean_args + 1
    return finite(p), finite(q), finite(lt - ls), finite(A)


def distillation_bounds(s64, t64, temperature: float, reduction: str, dtype, grad=None, backend: str | None = None):
    """Error bounds of distillation_loss(s, t, T, reduction) and, with the upstream gradient `grad`, of its two
    gradients: a namespace of rel (relative) and the absolute parts loss, student, teacher (tensors shaped like the
    loss and the logits).

    Per row of C logits, every log p_j, log q_j carries an absolute error of at most E_j = c A_j + 2 gamma(depth(C)):
    its chain of roundings (c = element_gamma) on pieces of size A_j, and the row sums Z_s, Z_t, whose relative error
    moves every log of the row together (the root of a failure at 2 x 70000 float32: that shared error times the
    row's KL). p_j carries E_j relatively, the term p_j r_j about p_j E_j (1 + |r_j|), the row's sum of terms adds
    gamma(depth(C)) sum |p_j r_j|, and a reduction over R rows gamma(depth(R)) of the rows' |losses|."""
    T = float(temperature)
    s = s64.detach().double().cpu()
    p, q, r, A = distillation_terms(s, t64, T)
    n, cols = s.numel(), (s.shape[-1] if s.dim() else 1)
    rows = n // max(cols, 1)
    factor = {"batchmean": 1 / s.shape[0] if s.dim() and s.shape[0] else math.nan, "sum": 1.0,
              "mean": 1 / n if n else math.nan, "none": 1.0}[reduction]
    factor = abs(factor) if math.isfinite(factor) else 0.0  # (0/0 = NaN losses: no finite values to compare)
    g_row = sum_gamma(cols, dtype, backend=backend)
    E = softmax_tol(dtype) * A + 2 * g_row
    rr = 1 + r.abs()
    if reduction == "none":
        loss = T**2 * p * E * rr
    else:
        row_abs = (p * r.abs()).sum(-1)
        row_err = (p * E * rr).sum(-1) + g_row * row_abs
        loss = T**2 * factor * (row_err.sum() + sum_gamma(rows, dtype, backend=backend) * (row_abs + row_err).sum())
    out = {"rel": softmax_tol(dtype), "loss": loss, "student": None, "teacher": None}
    if grad is not None and n:
        # From the backward formulas of docs/softmax_contract.md: each p_j, q_j carries E_j relatively, each r_j
        # E_j absolutely, and the backward's row sums their gamma(depth(C)) (below E); G is the incoming gradient
        # times T^2 (and the reduction's factor).
        g = finite(grad).abs()
        if reduction == "none":
            G = g * T**2  # (the loss is per element: g is shaped like the logits)

            def row(t):
                return t.sum(-1, keepdim=True)

            floor_s = (G * p * E + q * E * row(G * p) + q * row(G * p * E)) / T
            floor_t = (G * p * E * rr + p * E * row(G * p * rr) + p * row(G * p * E * rr)) / T
        else:
            G = g * T**2 * factor
            kl_scale = (p * E * rr).sum(-1, keepdim=True)
            floor_s = G / T * (q + p) * E
            floor_t = G / T * p * (E * (rr + (p * rr).sum(-1, keepdim=True)) + kl_scale)
        out["student"], out["teacher"] = floor_s, floor_t
    return types.SimpleNamespace(**out)


def temperature_grad_atol(x64, g64, atol_g, dim: int, temperature: float, dtype, groups=None) -> float:
    """Absolute error allowed in dL/dT = -sum(dx * x) / T (over the whole tensor), from our dx:
    each term carries dx's allowed error (atol_g, its relative part and the rounding of dx to dtype) times |x|, and
    the N-term sum gamma(depth(N)) of its |terms|, N = numel, summed in any order (depth N - 1), plus the rounding of
    dT to the temperature's dtype (the caller's rel). Since sum(dx) = 0 per row, x may be shifted by any constant
    per row: the kernels use x, the reference backend's autograd x - max (it divides x - max by T); dx's error enters
    weighted by whichever, so the bound takes the larger of |x|, |x - max|."""
    x64 = x64.detach().double().cpu()
    T = temperature
    xs = torch.maximum(finite(x64).abs(), finite(x64 - row_max(x64, dim, groups)).abs())
    g = finite(g64).abs()
    dx_allowed = atol_g + (softmax_tol(dtype) + UNIT_ROUNDOFF[dtype]) * g + torch.finfo(dtype).tiny
    terms = (g * xs).sum() / T
    return float((xs * dx_allowed).sum() / T + sum_gamma(x64.numel(), dtype, contiguous=False) * terms)
