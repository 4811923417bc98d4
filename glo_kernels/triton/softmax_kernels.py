"""Triton kernels of the softmax family (softmax, log-softmax, grouped softmax, distillation loss) and their launchers.

The contract (formulas, special values, statistics) is docs/softmax_contract.md; the element math mirrors
csrc/include/glo/softmax.h (DistillRow) and the glue mirrors csrc/include/glo/softmax_impls.h. Conventions are those
of glo_kernels/triton/kernels.py, whose helpers are reused: loads and stores in the data dtype, math in opmath
(float32 for 16-bit and float32 data, float64 for float64), bfloat16 converted with integer ops (_upcast/_downcast),
exp and log from libdevice on a GPU (accurate, as the C++ kernels) and numpy's in the interpreter, float32 divisions
IEEE (_div), 64-bit element offsets everywhere, no atomics (every sum has a fixed order, independent of the run).

Temperature: inv_t = 1 / T rounded once to opmath (T: the float64 `temperature` argument rounded to opmath, or, with
HAS_T, the single opmath element behind t_ptr, read by the kernel: no host synchronization). T is never applied to x
itself: every kernel computes (x - m) * inv_t.

Geometry of the softmax kernels. x is seen as [outer, size, inner]; a "row" is the `size` elements at fixed (outer,
inner), of stride `inner`; a "segment" is [start, end) of a row: the whole row (start 0, end size) or, in the grouped
kernels, group g of it (offsets[g], offsets[g + 1]). Each program handles an [R, S] tile: R rows of one segment
(axis 0) times S consecutive elements of it (axis 1), and reduces along axis 1:
  * inner == 1 (INNER1): the R rows are consecutive rows of the [outer, size] matrix (several short rows per program);
    axis 1 is contiguous in memory;
  * inner > 1: the R rows are R consecutive inner positions of one outer index (tile (pid // IT, pid % IT)); axis 0
    is contiguous in memory (coalesced along inner), axis 1 has stride inner.
  * SINGLE (the segment fits in S): one load, the row's values stay in registers between the reduction and the write;
    otherwise a loop over the segment in chunks of S: an online (max, sum) pass (forward) or a sum pass (backward),
    then a second pass writing the output.
Grouped kernels: program pid handles group pid % n_groups of the rows of tile pid // n_groups.

Distillation kernels: [R, S] tiles of R rows of the [rows, cols] matrices, SINGLE when a row fits in S, else one
online pass computing (m_s, Z_s, m_t, Z_t, W = sum e_j (t_j - s_j)) with rescaling, and, for the pointwise loss of
reduction "none" and the backward of "none", a second pass.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from .kernels import (
    INTERPRETED,
    _div,
    _downcast,
    _exp,
    _libdevice_options,
    _next_pow2,
    _on_device,
    _opmath,
    _upcast,
)

__all__ = ["softmax_forward", "softmax_backward", "grouped_softmax_forward", "grouped_softmax_backward",
           "distill_forward", "distill_backward", "softmax_plan", "distill_plan"]

# Sizes below were chosen so that no variant spills registers on sm_90 (ptxas -v of the kernels compiled for sm_90a
# here, without a GPU; 32 warps = 64 registers per thread at most, 16 warps = 128): a 32768-element float32 or
# bfloat16 row of the forward in one program of 32 warps uses 64 registers and spills nothing; the backward holds two
# values per element (dy and y) and does the same up to 16384 elements (50 registers; 32768 spills 56 bytes), float64
# a quarter of those (a value takes two registers). A row of 65536 bfloat16 elements spills 396 bytes in the forward.
# Softmax kernels (elements of the [R, S] tile, see softmax_plan).
SOFTMAX_TILE = 4096  # elements of a tile of several short rows (inner == 1) or of a loop chunk (inner > 1)
# Longest segment (times R when inner > 1) kept in registers, read once: SOFTMAX_SINGLE_MAX opmath-float32 values
# per program in the forward, half in the backward (two live values per element), a quarter in float64. Module
# level, read at each launch: the tests lower it to cover the long-row path with small rows.
SOFTMAX_SINGLE_MAX = 32768
SOFTMAX_CHUNK = 4096  # chunk of the online loop over a long row (inner == 1)
SOFTMAX_INNER_TILE = 64  # inner positions per program (inner > 1): at most, and preferred
SOFTMAX_INNER_MIN = 16  # inner positions per program at the least when shrinking the tile to stay SINGLE
# Distillation kernels: two (forward) or three (backward of "none") tiles live at once.
DISTILL_TILE = 2048
DISTILL_SINGLE_MAX = 4096
DISTILL_SINGLE_MAX_F64 = 2048
DISTILL_CHUNK = 2048


def _num_warps(elements: int, dtype: torch.dtype, live: int = 1) -> int:
    """Warps of a program holding `live` tiles of `elements` opmath values: 4 up to 1024 float32 values (8 per
    thread), 8 up to 2048, 16 up to 16384, else 32 (at most 32 values per thread in 64 registers, see
    SOFTMAX_SINGLE_MAX); a float64 value counts twice (two registers)."""
    return _warps_for(elements * live * (2 if dtype == torch.float64 else 1), 1024)


def _single_warps(elements: int, dtype: torch.dtype, live: int = 1) -> int:
    """Warps of a program holding a whole segment (SINGLE) of `elements` opmath values `live` times: up to 32 values
    per thread, so that the block reductions' fixed cost is spread over enough elements (sm_90 SASS of a bfloat16
    forward tile of 4096 elements: 29 instructions per element in 4 warps, 49 in 16): 4 warps up to 4096 float32
    values, 8 up to 8192, 16 up to 16384, else 32; a float64 value counts twice."""
    return _warps_for(elements * live * (2 if dtype == torch.float64 else 1), 4096)


def _warps_for(weight: int, four_up_to: int) -> int:
    """4 warps up to four_up_to weighted values, 8 up to twice that, 16 up to 16384, else 32."""
    if weight <= four_up_to:
        return 4
    if weight <= 2 * four_up_to:
        return 8
    if weight <= 16384:
        return 16
    return 32


def softmax_single_max(dtype: torch.dtype, backward: bool = False, inner1: bool = True, grouped: bool = False) -> int:
    """Elements of the longest segment (times R when inner > 1) the softmax kernels keep in registers, read once:
    SOFTMAX_SINGLE_MAX, halved in the backward (dy and y live) and along a strided dim (inner > 1: 32768 float32
    values spill 40 bytes, 16384 none, in 16 warps of 96 registers), quartered in float64 (two registers a value;
    a log-softmax row of 16384 spills 124 bytes in 32 warps) and for grouped rows of inner == 1 (a group starts
    anywhere: scalar loads, one address each; 16384 spill 76 bytes). Sizes from ptxas -v for sm_90a."""
    n = SOFTMAX_SINGLE_MAX // (4 if dtype == torch.float64 else 1) // (2 if backward else 1)
    if not inner1:
        n //= 2
    elif grouped:
        n //= 4
    return max(n, 1)


# ---------------------------------------------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _log(x, LIBDEVICE: tl.constexpr):
    """log(x): libdevice's (accurate, as C++'s logf/log) on a GPU, tl.log (numpy) in the interpreter."""
    if LIBDEVICE:
        r = libdevice.log(x)
    else:
        r = tl.log(x)
    return r


@triton.jit
def _inv_temperature(t_ptr, temperature, HAS_T: tl.constexpr, OPMATH: tl.constexpr):
    """inv_t = 1 / T in opmath; T = t_ptr[0] (an opmath tensor, HAS_T) or the float64 argument rounded to opmath."""
    if HAS_T:
        t = tl.load(t_ptr).to(OPMATH)
    else:
        t = tl.full([], temperature, OPMATH)
    return _div(tl.full([], 1.0, OPMATH), t, OPMATH)


@triton.jit
def _segment_rows(pid, outer, size, inner, IT, R: tl.constexpr, INNER1: tl.constexpr):
    """Offsets of element 0 of the tile's R rows and which of them exist (see the module docstring)."""
    if INNER1:
        r = pid * R + tl.arange(0, R)  # int64, as pid
        base = r * size
        valid = r < outer
    else:
        o = pid // IT
        i = (pid % IT) * R + tl.arange(0, R)
        base = o * size * inner + i
        valid = i < inner
    return base, valid


@triton.jit
def _segment_offsets(base, j, inner, INNER1: tl.constexpr):
    """[R, S] offsets of elements j (int64, [S]) of the R rows."""
    if INNER1:
        offs = base[:, None] + j[None, :]
    else:
        offs = base[:, None] + j[None, :] * inner
    return offs


@triton.jit
def _segment_chunk(base, valid, j, end, inner, INNER1: tl.constexpr):
    """(mask, offsets) [R, S] of elements j (int64, [S]) of the R rows, those before `end` of the rows that exist."""
    return valid[:, None] & (j < end)[None, :], _segment_offsets(base, j, inner, INNER1)


@triton.jit
def _segment(pid, offs_ptr, size, n_groups, GROUPED: tl.constexpr):
    """(tile, start, end): the program's tile of rows and its segment of them."""
    if GROUPED:
        g = pid % n_groups
        tile = pid // n_groups
        start = tl.load(offs_ptr + g)
        end = tl.load(offs_ptr + g + 1)
    else:
        tile = pid
        start = tl.zeros([], tl.int64)
        end = size + tl.zeros([], tl.int64)
    return tile, start, end


@triton.jit
def _segment_setup(offs_ptr, t_ptr, temperature, outer, size, inner, IT, n_groups, HAS_T: tl.constexpr,
                   GROUPED: tl.constexpr, INNER1: tl.constexpr, OPMATH: tl.constexpr, R: tl.constexpr,
                   S: tl.constexpr):
    """What every softmax kernel starts from: its segment [start, end), inv_t, the offsets of element 0 of its R rows
    and which exist, and the S chunk columns."""
    pid = tl.program_id(0).to(tl.int64)
    tile, start, end = _segment(pid, offs_ptr, size, n_groups, GROUPED)
    inv_t = _inv_temperature(t_ptr, temperature, HAS_T, OPMATH)
    base, valid = _segment_rows(tile, outer, size, inner, IT, R, INNER1)
    return start, end, inv_t, base, valid, tl.arange(0, S).to(tl.int64)


@triton.jit
def _online_update(m, z, x, msk, inv_t, LIBDEVICE: tl.constexpr):
    """Merges a chunk x ([R, S], masked lanes -inf) into the running (m, z) of each row ([R]):
    m' = max(m, max_j x_j), z' = z exp((m - m') inv_t) + sum_j exp((x_j - m') inv_t).
    The shift is m' unless m' = -inf (everything so far is -inf: no contribution), where it is 0, so an all -inf
    chunk adds 0 instead of exp(-inf - -inf) = NaN; a NaN or +inf in x still makes z NaN (NaN - shift, inf - inf)."""
    mn = tl.maximum(m, tl.max(x, axis=1))
    shift = tl.where(mn == float("-inf"), 0.0, mn)
    e = tl.where(msk, _exp((x - shift[:, None]) * inv_t, LIBDEVICE), 0.0)
    alpha = _exp((m - shift) * inv_t, LIBDEVICE)
    return mn, z * alpha + tl.sum(e, axis=1), shift, alpha, e


# ---------------------------------------------------------------------------------------------------------------
# Softmax / log-softmax (grouped or not): forward and backward.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _softmax_forward_kernel(x_ptr, y_ptr, t_ptr, offs_ptr, outer, size, inner, IT, n_groups, temperature: tl.float64,
                            HAS_T: tl.constexpr, LOG: tl.constexpr, GROUPED: tl.constexpr, INNER1: tl.constexpr,
                            SINGLE: tl.constexpr, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, R: tl.constexpr,
                            S: tl.constexpr):
    """Per segment: m = max x, e = exp((x - m) inv_t), z = sum e; y = e * (1 / z) or (LOG) (x - m) inv_t - log z.

    Special values (contract): a NaN or +inf in the segment makes it NaN (NaN enters z, or inf - inf); an all -inf
    segment is NaN (-inf - -inf); -inf among finite values gives 0 (LOG: -inf)."""
    start, end, inv_t, base, valid, cols = _segment_setup(offs_ptr, t_ptr, temperature, outer, size, inner, IT,
                                                          n_groups, HAS_T, GROUPED, INNER1, OPMATH, R, S)
    if SINGLE:
        j = start + cols
        msk, offs = _segment_chunk(base, valid, j, end, inner, INNER1)
        x = _upcast(tl.load(x_ptr + offs, mask=msk, other=float("-inf")), OPMATH)
        m = tl.max(x, axis=1)
        d = (x - m[:, None]) * inv_t
        e = tl.where(msk, _exp(d, LIBDEVICE), 0.0)
        z = tl.sum(e, axis=1)
        if LOG:
            y = d - _log(z, LIBDEVICE)[:, None]
        else:
            y = e * _div(tl.full([R], 1.0, OPMATH), z, OPMATH)[:, None]
        tl.store(y_ptr + offs, _downcast(y, y_ptr.dtype.element_ty), mask=msk)
    else:
        m = tl.full([R], float("-inf"), OPMATH)
        z = tl.zeros([R], OPMATH)
        for j0 in range(start, end, S):
            j = j0 + cols
            msk, offs = _segment_chunk(base, valid, j, end, inner, INNER1)
            x = _upcast(tl.load(x_ptr + offs, mask=msk, other=float("-inf")), OPMATH)
            m, z, _shift, _alpha, _e = _online_update(m, z, x, msk, inv_t, LIBDEVICE)
        # With the true max m (-inf for an all -inf segment: NaN below, as in the SINGLE path).
        if LOG:
            lz = _log(z, LIBDEVICE)
        else:
            rz = _div(tl.full([R], 1.0, OPMATH), z, OPMATH)
        for j0 in range(start, end, S):
            j = j0 + cols
            msk, offs = _segment_chunk(base, valid, j, end, inner, INNER1)
            x = _upcast(tl.load(x_ptr + offs, mask=msk, other=float("-inf")), OPMATH)
            d = (x - m[:, None]) * inv_t
            if LOG:
                y = d - lz[:, None]
            else:
                y = _exp(d, LIBDEVICE) * rz[:, None]
            tl.store(y_ptr + offs, _downcast(y, y_ptr.dtype.element_ty), mask=msk)


@triton.jit
def _softmax_backward_kernel(g_ptr, y_ptr, dx_ptr, t_ptr, offs_ptr, outer, size, inner, IT, n_groups,
                             temperature: tl.float64, HAS_T: tl.constexpr, LOG: tl.constexpr, GROUPED: tl.constexpr,
                             INNER1: tl.constexpr, SINGLE: tl.constexpr, OPMATH: tl.constexpr,
                             LIBDEVICE: tl.constexpr, R: tl.constexpr, S: tl.constexpr):
    """Per segment: softmax: dot = sum dy y, dx = y (dy - dot) inv_t;
    LOG: S = sum dy, dx = (dy - exp(y) S) inv_t. Sums: per-lane accumulators over the chunks, then a tree."""
    start, end, inv_t, base, valid, cols = _segment_setup(offs_ptr, t_ptr, temperature, outer, size, inner, IT,
                                                          n_groups, HAS_T, GROUPED, INNER1, OPMATH, R, S)
    if SINGLE:
        j = start + cols
        msk, offs = _segment_chunk(base, valid, j, end, inner, INNER1)
        g = _upcast(tl.load(g_ptr + offs, mask=msk, other=0.0), OPMATH)
        y = _upcast(tl.load(y_ptr + offs, mask=msk, other=0.0), OPMATH)
        if LOG:
            red = tl.sum(g, axis=1)
            dx = (g - _exp(y, LIBDEVICE) * red[:, None]) * inv_t
        else:
            red = tl.sum(g * y, axis=1)
            dx = y * (g - red[:, None]) * inv_t
        tl.store(dx_ptr + offs, _downcast(dx, dx_ptr.dtype.element_ty), mask=msk)
    else:
        acc = tl.zeros([R, S], OPMATH)
        for j0 in range(start, end, S):
            j = j0 + cols
            msk, offs = _segment_chunk(base, valid, j, end, inner, INNER1)
            g = _upcast(tl.load(g_ptr + offs, mask=msk, other=0.0), OPMATH)
            if LOG:
                acc += g
            else:
                y = _upcast(tl.load(y_ptr + offs, mask=msk, other=0.0), OPMATH)
                acc += g * y
        red = tl.sum(acc, axis=1)
        for j0 in range(start, end, S):
            j = j0 + cols
            msk, offs = _segment_chunk(base, valid, j, end, inner, INNER1)
            g = _upcast(tl.load(g_ptr + offs, mask=msk, other=0.0), OPMATH)
            y = _upcast(tl.load(y_ptr + offs, mask=msk, other=0.0), OPMATH)
            if LOG:
                dx = (g - _exp(y, LIBDEVICE) * red[:, None]) * inv_t
            else:
                dx = y * (g - red[:, None]) * inv_t
            tl.store(dx_ptr + offs, _downcast(dx, dx_ptr.dtype.element_ty), mask=msk)


# ---------------------------------------------------------------------------------------------------------------
# Distillation loss: T^2 KL(softmax(t / T) || softmax(s / T)) per row of [rows, cols] (DistillRow of softmax.h).
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _distill_rows(pid, rows, R: tl.constexpr):
    r = pid * R + tl.arange(0, R)  # int64, as pid
    return r, r < rows


@triton.jit
def _distill_pointwise(sv, tv, m_s, lz_s, m_t, lz_t, inv_t, LIBDEVICE: tl.constexpr):
    """(p, r) of each element: log p = (t - m_t) inv_t - logZ_t, p = exp(log p),
    r = ((t - m_t) - (s - m_s)) inv_t - logZ_t + logZ_s (the difference formed before scaling)."""
    dt = tv - m_t[:, None]
    p = _exp(dt * inv_t - lz_t[:, None], LIBDEVICE)
    r = (dt - (sv - m_s[:, None])) * inv_t - lz_t[:, None] + lz_s[:, None]
    return p, r


@triton.jit
def _zero_term(lz_s):
    """[R, 1]: the value of a term whose teacher probability p is 0 (DistillRow::zero_term of softmax.h): 0, except in
    a student row holding NaN or +inf (or only -inf), whose logZ_s is NaN: there every term is NaN."""
    return tl.where(lz_s == lz_s, 0.0, lz_s)[:, None]


@triton.jit
def _distill_forward_kernel(s_ptr, t_ptr, stats_ptr, loss_ptr, rows, cols, temperature: tl.float64,
                            NONE: tl.constexpr, SINGLE: tl.constexpr, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr,
                            R: tl.constexpr, S: tl.constexpr):
    """stats[r] = (m_s, logZ_s, m_t, logZ_t, kl_row) and (NONE) loss[r, j] = T^2 p_j r_j (_zero_term where p_j == 0).

    kl_row = W inv_t / Z_t - (m_t - m_s) inv_t - logZ_t + logZ_s, W = sum_j e_j (t_j - s_j), e_j = exp((t_j - m_t)
    inv_t), terms with e_j == 0 skipped (so -inf logits where p_j = 0 add 0, not 0 * inf)."""
    pid = tl.program_id(0).to(tl.int64)
    r, valid = _distill_rows(pid, rows, R)
    base = r * cols
    inv_t = _inv_temperature(None, temperature, False, OPMATH)
    cols_ = tl.arange(0, S).to(tl.int64)
    if SINGLE:
        msk = valid[:, None] & (cols_ < cols)[None, :]
        offs = base[:, None] + cols_[None, :]
        sv = _upcast(tl.load(s_ptr + offs, mask=msk, other=float("-inf")), OPMATH)
        tv = _upcast(tl.load(t_ptr + offs, mask=msk, other=float("-inf")), OPMATH)
        m_s = tl.max(sv, axis=1)
        m_t = tl.max(tv, axis=1)
        es = tl.where(msk, _exp((sv - m_s[:, None]) * inv_t, LIBDEVICE), 0.0)
        et = tl.where(msk, _exp((tv - m_t[:, None]) * inv_t, LIBDEVICE), 0.0)
        z_s = tl.sum(es, axis=1)
        z_t = tl.sum(et, axis=1)
        w = tl.sum(tl.where(et == 0.0, 0.0, et * (tv - sv)), axis=1)
    else:
        m_s = tl.full([R], float("-inf"), OPMATH)
        m_t = tl.full([R], float("-inf"), OPMATH)
        z_s = tl.zeros([R], OPMATH)
        z_t = tl.zeros([R], OPMATH)
        w = tl.zeros([R], OPMATH)
        for j0 in range(0, cols, S):
            j = j0 + cols_
            msk = valid[:, None] & (j < cols)[None, :]
            offs = base[:, None] + j[None, :]
            sv = _upcast(tl.load(s_ptr + offs, mask=msk, other=float("-inf")), OPMATH)
            tv = _upcast(tl.load(t_ptr + offs, mask=msk, other=float("-inf")), OPMATH)
            m_s, z_s, _shift_s, _alpha_s, _es = _online_update(m_s, z_s, sv, msk, inv_t, LIBDEVICE)
            m_t, z_t, _shift_t, alpha_t, et = _online_update(m_t, z_t, tv, msk, inv_t, LIBDEVICE)
            # W is rescaled with Z_t; a rescale factor of 0 (all earlier e_j underflow to p_j = 0) drops it
            # exactly, also when it is +-inf (0 * inf would be NaN); a NaN row stays NaN through Z_t.
            w = tl.where(alpha_t == 0.0, 0.0, w * alpha_t) + tl.sum(tl.where(et == 0.0, 0.0, et * (tv - sv)), axis=1)
        # An all -inf row gives NaN statistics, as in the SINGLE path (-inf - -inf).
        z_s = tl.where(m_s == float("-inf"), float("nan"), z_s)
        z_t = tl.where(m_t == float("-inf"), float("nan"), z_t)
    lz_s = _log(z_s, LIBDEVICE)
    lz_t = _log(z_t, LIBDEVICE)
    kl = _div(w * inv_t, z_t, OPMATH) - (m_t - m_s) * inv_t - lz_t + lz_s
    so = stats_ptr + r * 5
    tl.store(so + 0, m_s, mask=valid)
    tl.store(so + 1, lz_s, mask=valid)
    tl.store(so + 2, m_t, mask=valid)
    tl.store(so + 3, lz_t, mask=valid)
    tl.store(so + 4, kl, mask=valid)
    if NONE:
        t2 = tl.full([], temperature * temperature, OPMATH)
        if SINGLE:
            p, rr = _distill_pointwise(sv, tv, m_s, lz_s, m_t, lz_t, inv_t, LIBDEVICE)
            loss = tl.where(p == 0.0, _zero_term(lz_s), t2 * (p * rr))
            tl.store(loss_ptr + offs, _downcast(loss, loss_ptr.dtype.element_ty), mask=msk)
        else:
            for j0 in range(0, cols, S):
                j = j0 + cols_
                msk = valid[:, None] & (j < cols)[None, :]
                offs = base[:, None] + j[None, :]
                sv = _upcast(tl.load(s_ptr + offs, mask=msk, other=0.0), OPMATH)
                tv = _upcast(tl.load(t_ptr + offs, mask=msk, other=0.0), OPMATH)
                p, rr = _distill_pointwise(sv, tv, m_s, lz_s, m_t, lz_t, inv_t, LIBDEVICE)
                loss = tl.where(p == 0.0, _zero_term(lz_s), t2 * (p * rr))
                tl.store(loss_ptr + offs, _downcast(loss, loss_ptr.dtype.element_ty), mask=msk)


@triton.jit
def _distill_load_stats(stats_ptr, r, valid):
    so = stats_ptr + r * 5
    m_s = tl.load(so + 0, mask=valid, other=0.0)
    lz_s = tl.load(so + 1, mask=valid, other=0.0)
    m_t = tl.load(so + 2, mask=valid, other=0.0)
    lz_t = tl.load(so + 3, mask=valid, other=0.0)
    kl = tl.load(so + 4, mask=valid, other=0.0)
    return m_s, lz_s, m_t, lz_t, kl


@triton.jit
def _distill_none_terms(g_ptr, s_ptr, t_ptr, offs, msk, m_s, lz_s, m_t, lz_t, inv_t, t2, OPMATH: tl.constexpr,
                        LIBDEVICE: tl.constexpr):
    """(q, p, G p, G p (r + 1)) of reduction "none" at offsets `offs` with G = grad T^2 (the last two _zero_term where
    p == 0)."""
    gv = _upcast(tl.load(g_ptr + offs, mask=msk, other=0.0), OPMATH)
    sv = _upcast(tl.load(s_ptr + offs, mask=msk, other=0.0), OPMATH)
    tv = _upcast(tl.load(t_ptr + offs, mask=msk, other=0.0), OPMATH)
    q = _exp((sv - m_s[:, None]) * inv_t - lz_s[:, None], LIBDEVICE)
    p, rr = _distill_pointwise(sv, tv, m_s, lz_s, m_t, lz_t, inv_t, LIBDEVICE)
    gp = gv * t2 * p
    gp = tl.where(p == 0.0, _zero_term(lz_s), gp)
    gpr = tl.where(p == 0.0, _zero_term(lz_s), gp * (rr + 1.0))
    return q, p, gp, gpr


@triton.jit
def _distill_backward_kernel(g_ptr, s_ptr, t_ptr, stats_ptr, ds_ptr, dt_ptr, rows, cols, temperature: tl.float64,
                             scale: tl.float64, NONE: tl.constexpr, HAS_DT: tl.constexpr, SINGLE: tl.constexpr,
                             OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, R: tl.constexpr, S: tl.constexpr):
    """Reduced (NONE false): G = grad[0] * scale (scale = T^2 * factor); ds = G inv_t (q - p),
    dt = G inv_t p (r - kl) (_zero_term where p == 0): one pass, no reduction.
    "none": G_j = grad_j * scale (scale = T^2); A = sum G_j p_j, B = sum G_j p_j (r_j + 1);
    ds = -inv_t (G_j p_j - q_j A), dt = inv_t (G_j p_j (r_j + 1) - p_j B) (_zero_term where p_j == 0)."""
    pid = tl.program_id(0).to(tl.int64)
    r, valid = _distill_rows(pid, rows, R)
    base = r * cols
    inv_t = _inv_temperature(None, temperature, False, OPMATH)
    m_s, lz_s, m_t, lz_t, kl = _distill_load_stats(stats_ptr, r, valid)
    cols_ = tl.arange(0, S).to(tl.int64)
    if not NONE:
        gi = tl.load(g_ptr).to(OPMATH) * tl.full([], scale, OPMATH) * inv_t
        for j0 in range(0, cols, S):
            j = j0 + cols_
            msk = valid[:, None] & (j < cols)[None, :]
            offs = base[:, None] + j[None, :]
            sv = _upcast(tl.load(s_ptr + offs, mask=msk, other=0.0), OPMATH)
            tv = _upcast(tl.load(t_ptr + offs, mask=msk, other=0.0), OPMATH)
            q = _exp((sv - m_s[:, None]) * inv_t - lz_s[:, None], LIBDEVICE)
            p, rr = _distill_pointwise(sv, tv, m_s, lz_s, m_t, lz_t, inv_t, LIBDEVICE)
            tl.store(ds_ptr + offs, _downcast(gi * (q - p), ds_ptr.dtype.element_ty), mask=msk)
            if HAS_DT:
                dt = tl.where(p == 0.0, _zero_term(lz_s), gi * p * (rr - kl[:, None]))
                tl.store(dt_ptr + offs, _downcast(dt, dt_ptr.dtype.element_ty), mask=msk)
    else:
        t2 = tl.full([], scale, OPMATH)
        if SINGLE:
            msk = valid[:, None] & (cols_ < cols)[None, :]
            offs = base[:, None] + cols_[None, :]
            q, p, gp, gpr = _distill_none_terms(g_ptr, s_ptr, t_ptr, offs, msk, m_s, lz_s, m_t, lz_t, inv_t, t2,
                                                OPMATH, LIBDEVICE)
            a = tl.sum(tl.where(msk, gp, 0.0), axis=1)
            b = tl.sum(tl.where(msk, gpr, 0.0), axis=1)
            ds = -inv_t * (gp - q * a[:, None])
            tl.store(ds_ptr + offs, _downcast(ds, ds_ptr.dtype.element_ty), mask=msk)
            if HAS_DT:
                dt = tl.where(p == 0.0, _zero_term(lz_s), inv_t * (gpr - p * b[:, None]))
                tl.store(dt_ptr + offs, _downcast(dt, dt_ptr.dtype.element_ty), mask=msk)
        else:
            acc_a = tl.zeros([R, S], OPMATH)
            acc_b = tl.zeros([R, S], OPMATH)
            for j0 in range(0, cols, S):
                j = j0 + cols_
                msk = valid[:, None] & (j < cols)[None, :]
                offs = base[:, None] + j[None, :]
                q, p, gp, gpr = _distill_none_terms(g_ptr, s_ptr, t_ptr, offs, msk, m_s, lz_s, m_t, lz_t, inv_t, t2,
                                                    OPMATH, LIBDEVICE)
                acc_a += tl.where(msk, gp, 0.0)
                acc_b += tl.where(msk, gpr, 0.0)
            a = tl.sum(acc_a, axis=1)
            b = tl.sum(acc_b, axis=1)
            for j0 in range(0, cols, S):
                j = j0 + cols_
                msk = valid[:, None] & (j < cols)[None, :]
                offs = base[:, None] + j[None, :]
                q, p, gp, gpr = _distill_none_terms(g_ptr, s_ptr, t_ptr, offs, msk, m_s, lz_s, m_t, lz_t, inv_t, t2,
                                                    OPMATH, LIBDEVICE)
                ds = -inv_t * (gp - q * a[:, None])
                tl.store(ds_ptr + offs, _downcast(ds, ds_ptr.dtype.element_ty), mask=msk)
                if HAS_DT:
                    dt = tl.where(p == 0.0, _zero_term(lz_s), inv_t * (gpr - p * b[:, None]))
                    tl.store(dt_ptr + offs, _downcast(dt, dt_ptr.dtype.element_ty), mask=msk)


# ---------------------------------------------------------------------------------------------------------------
# Launchers: contiguous, non-empty tensors of one floating dtype on one device (glo_kernels/triton/softmax_ops.py).
# ---------------------------------------------------------------------------------------------------------------
def softmax_plan(geom: tuple[int, int, int], dtype: torch.dtype, segment: int | None = None,
                 backward: bool = False, grouped: bool = False) -> dict:
    """Tiling of the softmax kernels (forward, or backward) for geom = (outer, size, inner) and the longest segment
    (None: the whole row; the longest group; -1: unknown, at most size), from the shape only (so the bits of every
    reduction depend on the shape only, never on a run or a timing):

      inner == 1: a segment of at most softmax_single_max(...) elements (SOFTMAX_SINGLE_MAX = 32768 float32 /
        bfloat16 / float16 values forward, 16384 backward, a quarter in float64 and for groups) is one tile row in
        registers, read once (S = its next power of 2), with R = SOFTMAX_TILE // S rows per program (several short
        rows, at most the rows there are); a longer one, or an unknown one, is looped over in chunks of
        S = SOFTMAX_CHUNK, R = 1 (two reads).
      inner > 1: R = SOFTMAX_INNER_TILE inner positions (fewer if inner is smaller); SINGLE when R * next_pow2(segment)
        fits softmax_single_max (16384 forward), R shrinking to SOFTMAX_INNER_MIN if that makes it fit; otherwise
        chunks of S = SOFTMAX_TILE // R along the row.

    Returns R, S, SINGLE, INNER1, IT (inner tiles per outer index), tiles (row tiles in all) and num_warps
    (_single_warps: up to 32 values per thread in registers, 32 warps for the longest rows; 16 for the loop).
    """
    outer, size, inner = geom
    single_max = softmax_single_max(dtype, backward, inner == 1, grouped)
    if segment is None:
        segment = size
    known = segment >= 0
    seg = segment if known else size
    sp = _next_pow2(max(seg, 1))
    if inner == 1:
        single = known and sp <= single_max
        s = sp if single else min(sp, SOFTMAX_CHUNK)
        r = min(_next_pow2(outer), max(1, SOFTMAX_TILE // s)) if single else 1
        it, tiles = 1, triton.cdiv(outer, r)
    else:
        r = min(_next_pow2(inner), SOFTMAX_INNER_TILE)
        single = False
        if known:
            if r * sp <= single_max:
                single = True
            elif min(r, SOFTMAX_INNER_MIN) * sp <= single_max:
                r, single = single_max // sp, True
        s = sp if single else max(1, min(sp, SOFTMAX_TILE // r))
        it = triton.cdiv(inner, r)
        tiles = outer * it
    # (the looped path keeps 16 warps for its 4096-element chunks: one program per long row, and few rows)
    warps = (_single_warps if single else _num_warps)(r * s, dtype, 2 if backward else 1)
    return dict(R=r, S=s, SINGLE=single, INNER1=inner == 1, IT=it, tiles=tiles, num_warps=warps)


def _softmax_launch(kernel, tensors, geom, temperature, t_tensor, log, offsets, n_groups, segment):
    outer, size, inner = geom
    grouped = offsets is not None
    plan = softmax_plan(geom, tensors[0].dtype, segment, backward=kernel is _softmax_backward_kernel, grouped=grouped)
    grid = (plan["tiles"] * (n_groups if grouped else 1),)
    with _on_device(tensors[0]):
        kernel[grid](*tensors, t_tensor, offsets, outer, size, inner, plan["IT"], n_groups if grouped else 1,
                     float(temperature), HAS_T=t_tensor is not None, LOG=log, GROUPED=grouped,
                     INNER1=plan["INNER1"], SINGLE=plan["SINGLE"], OPMATH=_opmath(tensors[0].dtype),
                     LIBDEVICE=not INTERPRETED, R=plan["R"], S=plan["S"], num_warps=plan["num_warps"],
                     **_libdevice_options(tensors[0]))


def softmax_forward(x: torch.Tensor, y: torch.Tensor, geom: tuple[int, int, int], temperature: float,
                    t_tensor: torch.Tensor | None, log: bool) -> None:
    """y = softmax (log: log_softmax) of x seen as geom = (outer, size, inner), along size, at temperature T
    (t_tensor[0] if t_tensor, a 1-element opmath tensor on x's device, is given: read by the kernel)."""
    _softmax_launch(_softmax_forward_kernel, (x, y), geom, temperature, t_tensor, log, None, 1, geom[1])


def softmax_backward(grad: torch.Tensor, y: torch.Tensor, dx: torch.Tensor, geom: tuple[int, int, int],
                     temperature: float, t_tensor: torch.Tensor | None, log: bool) -> None:
    """dx of softmax (log: log_softmax) from the upstream gradient and the forward's output y."""
    _softmax_launch(_softmax_backward_kernel, (grad, y, dx), geom, temperature, t_tensor, log, None, 1, geom[1])


def grouped_softmax_forward(x: torch.Tensor, y: torch.Tensor, geom: tuple[int, int, int], offsets: torch.Tensor,
                            n_groups: int, temperature: float, t_tensor: torch.Tensor | None, *,
                            max_group: int | None = None) -> None:
    """y = a softmax per group [offsets[g], offsets[g + 1]) of every row (offsets: int64 on x's device,
    n_groups + 1 entries). max_group, the longest group if the caller knows it (the group sizes are on the host
    in the op), lets groups that fit a tile stay in registers; without it every group is looped over."""
    _softmax_launch(_softmax_forward_kernel, (x, y), geom, temperature, t_tensor, False, offsets, int(n_groups),
                    -1 if max_group is None else int(max_group))


def grouped_softmax_backward(grad: torch.Tensor, y: torch.Tensor, dx: torch.Tensor, geom: tuple[int, int, int],
                             offsets: torch.Tensor, n_groups: int, temperature: float,
                             t_tensor: torch.Tensor | None, *, max_group: int | None = None) -> None:
    """dx of grouped_softmax (a dot product per group)."""
    _softmax_launch(_softmax_backward_kernel, (grad, y, dx), geom, temperature, t_tensor, False, offsets,
                    int(n_groups), -1 if max_group is None else int(max_group))


def distill_plan(rows: int, cols: int, dtype: torch.dtype) -> dict:
    """Tiling of the distillation kernels: rows of at most DISTILL_SINGLE_MAX elements (2048 in float64) in
    registers (S = next_pow2(cols), R = DISTILL_TILE // S rows per program), longer rows in chunks of
    DISTILL_CHUNK, one row per program."""
    single_max = DISTILL_SINGLE_MAX_F64 if dtype == torch.float64 else DISTILL_SINGLE_MAX
    sp = _next_pow2(max(cols, 1))
    single = sp <= single_max
    s = sp if single else DISTILL_CHUNK
    r = min(_next_pow2(rows), max(1, DISTILL_TILE // s)) if single else 1
    return dict(R=r, S=s, SINGLE=single, tiles=triton.cdiv(rows, r), num_warps=_num_warps(r * s, dtype, 2))


def distill_forward(s: torch.Tensor, t: torch.Tensor, stats: torch.Tensor, loss_none: torch.Tensor | None,
                    rows: int, cols: int, temperature: float) -> None:
    """stats ([rows, 5] opmath) of the distillation loss of s, t ([rows, cols]) and, if loss_none is given
    ([rows, cols], s's dtype), the pointwise loss of reduction "none"."""
    plan = distill_plan(rows, cols, s.dtype)
    with _on_device(s):
        _distill_forward_kernel[(plan["tiles"],)](s, t, stats, loss_none, rows, cols, float(temperature),
                                                  NONE=loss_none is not None, SINGLE=plan["SINGLE"],
                                                  OPMATH=_opmath(s.dtype), LIBDEVICE=not INTERPRETED, R=plan["R"],
                                                  S=plan["S"], num_warps=plan["num_warps"], **_libdevice_options(s))


def distill_backward(grad: torch.Tensor, s: torch.Tensor, t: torch.Tensor, stats: torch.Tensor, ds: torch.Tensor,
                     dt: torch.Tensor | None, rows: int, cols: int, temperature: float, none: bool,
                     scale: float) -> None:
    """ds (and dt unless None) of the distillation loss. Reduced modes: grad is a 1-element opmath tensor on the
    device and scale = T^2 * factor (the kernel reads grad[0]); "none": grad is [rows, cols] in s's dtype and
    scale = T^2."""
    plan = distill_plan(rows, cols, s.dtype)
    with _on_device(s):
        _distill_backward_kernel[(plan["tiles"],)](grad, s, t, stats, ds, dt, rows, cols, float(temperature),
                                                   float(scale), NONE=bool(none), HAS_DT=dt is not None,
                                                   SINGLE=plan["SINGLE"], OPMATH=_opmath(s.dtype),
                                                   LIBDEVICE=not INTERPRETED, R=plan["R"], S=plan["S"],
                                                   num_warps=plan["num_warps"], **_libdevice_options(s))

