"""Triton kernels of glo_kernels and their launchers.

Every kernel mirrors a functor of csrc/include/glo/activations.h (the comment above each says which); keep the three
implementations (C++ functors, these kernels, glo_kernels/reference.py) in step.

Conventions, as in the CUDA/CPU kernels:
  * loads and stores in the tensor's dtype, math in "opmath": float32 for float16/bfloat16/float32 data, float64 for
    float64 data; scalar parameters (the slope, ELU's alpha) arrive as float64 and are rounded once to opmath inside
    the kernel (as static_cast<T>(slope) in C++);
  * bfloat16 <-> float32 conversions are written with integer ops (_upcast/_downcast): exactly c10's conversions
    (round to nearest even, NaN -> 0x7FC0), both on a GPU and in the Triton interpreter, whose own bfloat16 casts
    truncate (on a GPU the channel backward uses the hardware conversion, its NaN set to 0x7FC0: the same bits);
  * transcendentals: on a GPU exp, expm1 and tanh are libdevice's (expf, expm1f, tanhf and their double forms, as
    the C++ functors), except for 16-bit results, which take the cheaper forms of _fast16 (bounds below); the
    interpreter has no libdevice, so there (LIBDEVICE: tl.constexpr, set at trace time from
    whether the interpreter runs) exp is tl.exp (numpy) and expm1 and tanh are built from it with formulas accurate
    to ~2 ulp (see _expm1 and _tanh); tl.exp in float32 is approximate on a GPU (ex2.approx, error growing with
    |x|). Divisions in float32 are IEEE (tl.math.div_rn), as in C++;
  * 64-bit element offsets everywhere, so tensors of 2^31 elements or more are right;
  * packed masks: bit j of int32 word w is element 32*w + j in row-major order; bits past numel are 0;
  * the parameter gradients of the per-channel-parameter ops (PReLU's weight, PELU's a and b) are reduced
    deterministically: each program of the one pass over x and dy writes its per-channel partial sums of every
    parameter to a small buffer per parameter, which a second kernel sums in a fixed order. No atomics; the tiling
    depends only on the shape;
  * Maxout compares exactly (values upcast to opmath) and stores the winner's own bits; indices are uint8.

The element math of the unary kernels is a forward / backward pair of glo_kernels/triton/math.py, handed to the
kernel as a tl.constexpr (FWD, BWD); the transcendentals live there too.

The launchers at the bottom take contiguous, non-empty tensors of one floating dtype on one device (the C++ glue of
the glo_kernels_triton operators guarantees it, csrc/triton_ops.cpp), like the kernel sets K of
csrc/include/glo/op_impls.h; glo_kernels/triton/launch.py calls them.
"""

from __future__ import annotations

import contextlib
import math
import os

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from .math import (  # noqa: F401  (re-exported: the kernels' element math, tested through this module)
    EXP_MIN, EXPM1_COEFFS, EXPM1_T, FAST16_REL_ERROR, LN2, LOG2E_HI, LOG2E_LO, PTX, TANH_COEFFS, TANH_T, _div,
    _div_approx, _exp, _exp16, _expm1, _expm1_16, _expm1_series, _fast16, _slope, _tanh, _tanh16, unary_pair)

# Operator ids of the mask kernels (tl.constexpr OP).
RELU = 0
LEAKY_RELU = 1
# Operator ids of the per-channel-parameter kernels (tl.constexpr OP) and their parameter counts (kParams).
PRELU = 6  # PReLU<T>: weight
PELU = 7  # PELU<T>: a, b
BIAS_ACT = 8  # BiasAct<T, Act>: bias (the activation: a pair of math.py, FWD / BWD)
# (the same ids as the kernels see them: a jit function reads only globals made tl.constexpr)
_RELU_ID = tl.constexpr(RELU)
_PRELU_ID = tl.constexpr(PRELU)
_BIAS_ACT_ID = tl.constexpr(BIAS_ACT)
CHANNEL_PARAMS = {PRELU: 1, PELU: 2, BIAS_ACT: 1}

# Mask kernels: each program handles MASK_WORDS words of 32 elements (a [MASK_WORDS, 32] tile).
MASK_WORDS = 128  # 4096 elements per program
MASK_NUM_WARPS = 8

# Element-wise kernels (ELU, sigmoid, tanh): BLOCK elements per program.
UNARY_BLOCK = 4096
UNARY_NUM_WARPS = 8

# Autotuning of the element-wise kernels (mask and unary, forward and backward) on a GPU: a few tile sizes, tuned once
# per process for each size bucket (_size_bucket), operator and dtype. Every element is computed alone (the mask's
# words are exact ORs of 32 bits), so the bits of the result do not depend on which configuration wins. The first
# configuration is the default: the one used in the Triton interpreter (no tuning there), during CUDA-graph capture
# (no benchmarking inside a capture) and when GLO_TRITON_AUTOTUNE=0. The softmax family and the per-channel
# kernels are not tuned: their reductions' order follows the tile, which is a function of the shape only
# (softmax_plan, channel_tiles), so their bits never depend on a timing.
AUTOTUNE = os.environ.get("GLO_TRITON_AUTOTUNE", "1") not in ("", "0")
UNARY_CONFIGS = [triton.Config({"BLOCK": UNARY_BLOCK}, num_warps=UNARY_NUM_WARPS),
                 triton.Config({"BLOCK": 2048}, num_warps=4),
                 triton.Config({"BLOCK": 8192}, num_warps=16)]
MASK_CONFIGS = [triton.Config({"WORDS": MASK_WORDS}, num_warps=MASK_NUM_WARPS),
                triton.Config({"WORDS": 64}, num_warps=4),
                triton.Config({"WORDS": 256}, num_warps=16)]

# Per-channel-parameter kernels (PReLU, PELU): each program handles NB outer rows x CB channels x SB inner positions
# of the [outer, channels, inner] view, as a 2-D [NB, CB*SB] tile (see _channel_tile and channel_tiles).
CHANNEL_TILE = 4096  # elements per program (NB * CB * SB, at most)
CHANNEL_RUN = 64  # contiguous elements a tile's row should at least span when inner is short
CHANNEL_MIN_SB = 32  # smallest tile along inner considered when inner is long (> 32)
CHANNEL_NUM_WARPS = 8
# The backward of 16-bit data: the forward's tile on 4 warps (channel_backward_num_warps): twice the elements per
# thread amortize the tile's two per-channel sums (shuffles, shared memory) and the prologue (bench/triton_sass.py,
# PELU bfloat16 backward on sm_90: 41.8 SASS per element instead of 47.5 for NCHW, 45.5 instead of 57 for inner 1;
# 80 and 128 registers, no spills). float32 / float64 keep 8 warps: 4 would save 4 of 65 per element (within the
# budget either way) at 178 registers instead of 93.
CHANNEL_BACKWARD_NUM_WARPS_16 = 4
CONSTANTS_BLOCK = 1024  # parameter elements per program of _pelu_constants_kernel
# Second pass of the parameter gradients: [RB, CB] tiles of a [rows, channels] partial buffer.
REDUCE_TILE = 4096
REDUCE_MAX_CB = 1024
REDUCE_NUM_WARPS = 4

# Maxout kernels: [RB, SB] tiles of the [outer * groups, inner] output (RB * SB = MAXOUT_TILE).
MAXOUT_TILE = 1024
MAXOUT_NUM_WARPS = 4


# ---------------------------------------------------------------------------------------------------------------
# Conversions between the storage dtype and opmath.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _upcast(v, OPMATH: tl.constexpr):
    """Storage dtype -> opmath (exact)."""
    if v.dtype == tl.bfloat16:
        r = (v.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    else:
        r = v.to(OPMATH)
    return r


@triton.jit
def _downcast(v, DTYPE: tl.constexpr, HW: tl.constexpr = False):
    """Opmath -> storage dtype DTYPE, rounding to nearest even (for bfloat16 exactly as c10::BFloat16).

    HW (on an NVIDIA GPU only): bfloat16 by the hardware conversion (cvt.rn.bf16x2.f32, one instruction per two
    elements: IEEE round to nearest even, subnormals kept, overflow to inf, as c10::BFloat16's own device path
    __float2bfloat16), with NaN replaced by c10's 0x7FC0 (the hardware writes 0x7FFF): the same bits as the integer
    form below, in about 2 instead of 5 SASS instructions per element."""
    if DTYPE == tl.bfloat16 and HW and PTX:
        hb = v.to(tl.bfloat16).to(tl.uint16, bitcast=True)
        out = tl.where(v != v, 0x7FC0, hb).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    elif DTYPE == tl.bfloat16:
        b = v.to(tl.uint32, bitcast=True)
        r = (b + (0x7FFF + ((b >> 16) & 1))) >> 16
        r = tl.where(v != v, 0x7FC0, r)
        out = r.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        out = v.to(DTYPE)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Activations whose backward needs one bit per element: ReLU<T> and LeakyReLU<T> of activations.h.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["size_bucket"])
def _mask_forward_kernel(x_ptr, y_ptr, mask_ptr, numel, mask_len, slope: tl.float64, size_bucket, OP: tl.constexpr,
                         SAVE_MASK: tl.constexpr, OPMATH: tl.constexpr, WORDS: tl.constexpr,
                         NEG_ZERO: tl.constexpr = False):
    """y = f.forward(x) and, if SAVE_MASK, the packed bits f.keep(x); f = ReLU (OP RELU) or LeakyReLU (LEAKY_RELU).

    x_ptr and y_ptr may be the same tensor (in place): each element is read, then written, by one program.
    """
    pid = tl.program_id(0).to(tl.int64)
    words = pid * WORDS + tl.arange(0, WORDS)  # [WORDS] int64
    lane = tl.arange(0, 32)
    offs = words[:, None] * 32 + lane[None, :]  # [WORDS, 32]: row w is element 32*w + j
    inb = offs < numel
    x = _upcast(tl.load(x_ptr + offs, mask=inb, other=0.0), OPMATH)
    if OP == _RELU_ID:
        # ReLU<T>: forward(x) = x < 0 ? 0 : x;  keep(x) = !(x <= 0)
        y = tl.where(x < 0.0, 0.0, x)
        keep = ~(x <= 0.0)
    else:
        # LeakyReLU<T>: forward(x) = x > 0 ? x : x * slope;  keep(x) = x > 0
        s = _slope(slope, OPMATH, NEG_ZERO)
        y = tl.where(x > 0.0, x, x * s)
        keep = x > 0.0
    tl.store(y_ptr + offs, _downcast(y, y_ptr.dtype.element_ty), mask=inb)
    if SAVE_MASK:
        bits = tl.where(keep & inb, 1, 0).to(tl.uint32) << lane[None, :].to(tl.uint32)
        # the 32 bits are distinct: their sum is their OR (a sum is native in the interpreter, a custom reduce is not)
        word = tl.sum(bits, 1)
        tl.store(mask_ptr + words, word.to(tl.int32, bitcast=True), mask=words < mask_len)  # (0 past the bits)


@triton.jit(do_not_specialize=["size_bucket"])
def _mask_backward_kernel(g_ptr, mask_ptr, dx_ptr, numel, slope: tl.float64, size_bucket, OP: tl.constexpr,
                          OPMATH: tl.constexpr, WORDS: tl.constexpr, NEG_ZERO: tl.constexpr = False):
    """dx = f.backward(dy, bit); f = ReLU (OP RELU) or LeakyReLU (LEAKY_RELU)."""
    pid = tl.program_id(0).to(tl.int64)
    words = pid * WORDS + tl.arange(0, WORDS)
    lane = tl.arange(0, 32)
    offs = words[:, None] * 32 + lane[None, :]
    inb = offs < numel
    m = tl.load(mask_ptr + words, mask=words * 32 < numel, other=0).to(tl.uint32, bitcast=True)
    keep = ((m[:, None] >> lane[None, :].to(tl.uint32)) & 1) != 0
    g = _upcast(tl.load(g_ptr + offs, mask=inb, other=0.0), OPMATH)
    if OP == _RELU_ID:
        # ReLU<T>: backward(dy, keep) = keep ? dy : 0
        dx = tl.where(keep, g, 0.0)
    else:
        # LeakyReLU<T>: backward(dy, keep) = keep ? dy : dy * slope
        s = _slope(slope, OPMATH, NEG_ZERO)
        dx = tl.where(keep, g, g * s)
    tl.store(dx_ptr + offs, _downcast(dx, dx_ptr.dtype.element_ty), mask=inb)


# ---------------------------------------------------------------------------------------------------------------
# Activations whose backward reads one saved tensor (ELU, ELUFromResult and the GLO_UNARY_OPS of op_list.h): one
# kernel each way, the element math a pair of glo_kernels/triton/math.py handed as FWD / BWD.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["size_bucket"])
def _unary_forward_kernel(x_ptr, y_ptr, numel, alpha: tl.float64, alpha2: tl.float64, size_bucket, FWD: tl.constexpr,
                          OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, BLOCK: tl.constexpr,
                          NEG_ZERO: tl.constexpr = False):
    """y = FWD(x, alpha) (math.py's <name>_forward). x_ptr and y_ptr may be the same tensor (in place): each element
    is read, then written, by one program."""
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inb = offs < numel
    x = _upcast(tl.load(x_ptr + offs, mask=inb, other=0.0), OPMATH)
    FAST16: tl.constexpr = _fast16(y_ptr.dtype.element_ty, LIBDEVICE)
    y = FWD(x, _slope(alpha, OPMATH, NEG_ZERO), tl.full([], alpha2, OPMATH), OPMATH, LIBDEVICE, FAST16)
    tl.store(y_ptr + offs, _downcast(y, y_ptr.dtype.element_ty), mask=inb)


@triton.jit(do_not_specialize=["size_bucket"])
def _unary_backward_kernel(g_ptr, s_ptr, dx_ptr, numel, alpha: tl.float64, alpha2: tl.float64, size_bucket, BWD: tl.constexpr,
                           OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, BLOCK: tl.constexpr,
                           NEG_ZERO: tl.constexpr = False):
    """dx = BWD(dy, saved, alpha) (math.py's <name>_backward); saved is the op's input or output."""
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    inb = offs < numel
    g = _upcast(tl.load(g_ptr + offs, mask=inb, other=0.0), OPMATH)
    s = _upcast(tl.load(s_ptr + offs, mask=inb, other=0.0), OPMATH)
    dx = BWD(g, s, _slope(alpha, OPMATH, NEG_ZERO), tl.full([], alpha2, OPMATH), OPMATH, LIBDEVICE)
    tl.store(dx_ptr + offs, _downcast(dx, dx_ptr.dtype.element_ty), mask=inb)


# ---------------------------------------------------------------------------------------------------------------
# Activations with learned per-channel parameters: PReLU<T> (1 parameter) and PELU<T> (2) of activations.h, one
# forward and one backward kernel for both (tl.constexpr OP; in the backward, NP partial buffers q0, q1). The
# parameters arrive as their per-channel constants k, rows of a [KC, C] tensor prepared once per call on the host
# (channel_constants, as the functors' prepare): PReLU's weight itself (KC = 1, in x's dtype); PELU's
# (a, a / b, 1 / b) in opmath (KC = 3), so that no element pays a division. x is seen as [N, C, S] (outer, channels,
# inner); program p handles the tile (it, ic, is) = (p // (CT*ST), (p // ST) % CT, p % ST): rows n of
# [it*NB, it*NB + NB) times the CB*SB columns k = (channel ic*CB + k // SB, inner position is*SB + k % SB). The
# columns are contiguous in memory in runs of SB (of CB*SB when S == 1), so loads vectorize along them.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _channel_tile(pid, N, C, S, CT, ST, NB: tl.constexpr, CB: tl.constexpr, SB: tl.constexpr):
    q = pid // ST  # (two integer divisions, not three: it = pid // (CT * ST), ic = (pid // ST) % CT, is = pid % ST)
    i_s = pid - q * ST
    it = q // CT
    ic = q - it * CT
    n = it * NB + tl.arange(0, NB)  # [NB] int64, as pid
    if SB == 1:
        # inner == 1 (channels_last, [N, C] inputs): the columns are CB consecutive channels of a row, contiguous;
        # written without the // SB and % SB of the general case so that the compiler sees the contiguity and
        # vectorizes the loads and stores: 128-bit when C is a multiple of 16 (Triton's divisibility specialization
        # of C; sm_90 SASS: PReLU float32 forward with C = 64, 13 instructions per element instead of 28). Other C
        # stay scalar (the mask c < C is not constant over a vector; a hint that C is a multiple of 8 did not help)
        c = ic * CB + tl.arange(0, CB)
        offs = n[:, None] * C + c[None, :]
        inb = (n < N)[:, None] & (c < C)[None, :]
    else:
        k = tl.arange(0, CB * SB)
        c = ic * CB + k // SB  # [CB*SB] channel of each column
        s = i_s * SB + k % SB  # [CB*SB] inner position of each column
        offs = n[:, None] * C * S + (c * S + s)[None, :]
        inb = (n < N)[:, None] & ((c < C) & (s < S))[None, :]
    return it, ic, i_s, c, offs, inb


@triton.jit
def _load_param(p_ptr, ic, c, C, OPMATH: tl.constexpr, CB: tl.constexpr):
    """A parameter of each column of the tile, in opmath: one scalar when the tile has a single channel."""
    if CB == 1:
        p = _upcast(tl.load(p_ptr + ic), OPMATH)
    else:
        p = _upcast(tl.load(p_ptr + c, mask=c < C, other=0.0), OPMATH)[None, :]
    return p


@triton.jit
def _store_partial(q_ptr, terms, it, ic, i_s, C, ST, CB: tl.constexpr, SB: tl.constexpr):
    """q[it * ST + is, c] = sum over the tile's (n, s) of a parameter's gradient terms (0 outside the tensor): a tree
    sum over the NB rows, then over the SB positions of each channel."""
    if CB == 1:
        # one channel: a single reduction over the whole tile (one cross-warp exchange, not one per axis)
        tl.store(q_ptr + (it * ST + i_s) * C + ic, tl.sum(terms))
    else:
        if SB == 1:
            part = tl.sum(terms, axis=0)  # [CB] (no reshape: its layout conversion costs a shared-memory trip)
        else:
            part = tl.sum(tl.reshape(tl.sum(terms, axis=0), (CB, SB)), axis=1)  # [CB]
        cc = ic * CB + tl.arange(0, CB)
        tl.store(q_ptr + (it * ST + i_s) * C + cc, part, mask=cc < C)


@triton.jit
def _channel_forward_kernel(x_ptr, k_ptr, y_ptr, N, C, S, CT, ST, OP: tl.constexpr, OPMATH: tl.constexpr,
                            LIBDEVICE: tl.constexpr, NB: tl.constexpr, CB: tl.constexpr, SB: tl.constexpr,
                            FWD: tl.constexpr, BWD: tl.constexpr):
    """y = f.forward(x, k) with k the column's channel constants (channel_constants); f = PReLU (OP PRELU: k =
    weight), PELU (PELU: k = a, a / b, 1 / b) or BiasAct (BIAS_ACT: k = bias, the activation FWD)."""
    pid = tl.program_id(0).to(tl.int64)
    it, ic, i_s, c, offs, inb = _channel_tile(pid, N, C, S, CT, ST, NB, CB, SB)
    x = _upcast(tl.load(x_ptr + offs, mask=inb, other=0.0), OPMATH)
    if OP == _PRELU_ID:
        # PReLU<T>: forward(x, w) = x > 0 ? x : w * x
        p0 = _load_param(k_ptr, ic, c, C, OPMATH, CB)
        y = tl.where(x > 0.0, x, p0 * x)
    elif OP == _BIAS_ACT_ID:
        # BiasAct<T, Act>: forward(x, bias) = act(x + bias)
        p0 = _load_param(k_ptr, ic, c, C, OPMATH, CB)
        zero = tl.full([], 0.0, OPMATH)
        y = FWD(x + p0, zero, zero, OPMATH, LIBDEVICE, _fast16(y_ptr.dtype.element_ty, LIBDEVICE))
    else:
        # PELU<T>: forward(x, a, b) = x >= 0 ? (a / b) * x : a * expm1(x * (1 / b)); a / b and 1 / b computed once
        # per channel on the host (channel_constants), as PELU<T>::prepare. Only the selected side is computed (the
        # other one on 0), so no overflow or NaN of the unselected side is ever formed
        a = _load_param(k_ptr, ic, c, C, OPMATH, CB)
        r = _load_param(k_ptr + C, ic, c, C, OPMATH, CB)
        ib = _load_param(k_ptr + 2 * C, ic, c, C, OPMATH, CB)
        pos = x >= 0.0
        if _fast16(y_ptr.dtype.element_ty, LIBDEVICE):
            # 16-bit data on a GPU: the cheaper expm1 above, on u itself (its inf or NaN for x >= 0 is not selected)
            u = x * ib
            em1 = _expm1_16(u, _exp16(u, False))
        else:
            em1 = _expm1(tl.where(pos, 0.0, x * ib), OPMATH, LIBDEVICE)
        y = tl.where(pos, r * x, a * em1)
    tl.store(y_ptr + offs, _downcast(y, y_ptr.dtype.element_ty), mask=inb)


@triton.jit
def _channel_backward_kernel(g_ptr, x_ptr, k_ptr, dx_ptr, q0_ptr, q1_ptr, N, C, S, CT, ST,
                             OP: tl.constexpr, NP: tl.constexpr, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr,
                             NB: tl.constexpr, CB: tl.constexpr, SB: tl.constexpr, FWD: tl.constexpr,
                             BWD: tl.constexpr):
    """dx = f.backward(x, dy, k, dp) and, for each of the NP parameters j, the tile's per-channel sums of its
    gradient terms dp[j] in q_j[it * ST + is, c] (see _store_partial); f = PReLU (OP PRELU, NP 1), PELU (NP 2) or
    BiasAct (BIAS_ACT, NP 1, the activation's backward BWD); k: the channel constants, as in the forward."""
    pid = tl.program_id(0).to(tl.int64)
    it, ic, i_s, c, offs, inb = _channel_tile(pid, N, C, S, CT, ST, NB, CB, SB)
    x = _upcast(tl.load(x_ptr + offs, mask=inb, other=0.0), OPMATH)
    g = _upcast(tl.load(g_ptr + offs, mask=inb, other=0.0), OPMATH)
    if OP == _PRELU_ID:
        # PReLU<T>: dx = x > 0 ? dy : w * dy;  dw term = x > 0 ? 0 : x * dy
        p0 = _load_param(k_ptr, ic, c, C, OPMATH, CB)
        pos = x > 0.0
        dx = tl.where(pos, g, p0 * g)
        t0 = tl.where(inb & ~pos, x * g, 0.0)
        t1 = t0
    elif OP == _BIAS_ACT_ID:
        # BiasAct<T, Act>: dx = act.backward(dy, x + bias), also the bias's term
        p0 = _load_param(k_ptr, ic, c, C, OPMATH, CB)
        zero = tl.full([], 0.0, OPMATH)
        dx = BWD(g, x + p0, zero, zero, OPMATH, LIBDEVICE)
        t0 = tl.where(inb, dx, 0.0)
        t1 = t0
    else:
        # PELU<T>, with r = a / b, u = x * (1 / b) (a / b and 1 / b per channel: channel_constants) and ge = E dy
        # (E = exp(u) on the negative side, 1 on the positive; exp itself, not 1 + expm1, whose rounding would swamp a
        # small E, as PELU<T>::backward):
        #   dx = r * ge;  da term = (x >= 0 ? u : expm1(u)) * dy;  db term = -(r * u) * ge
        # exp and expm1 get u on the negative side and 0 on the positive one: only the selected side is formed.
        r = _load_param(k_ptr + C, ic, c, C, OPMATH, CB)
        ib = _load_param(k_ptr + 2 * C, ic, c, C, OPMATH, CB)
        pos = x >= 0.0
        u = x * ib
        un = tl.where(pos, 0.0, u)
        if _fast16(dx_ptr.dtype.element_ty, LIBDEVICE):
            # 16-bit data on a GPU: the cheaper exp (precise: E scales dx) and expm1 from it (see _exp16); the
            # parameter terms, summed in float32 and rounded to the 16-bit parameter dtype, keep ~1e-6 of relative
            # error per term
            # (both on un clamped once as _exp16 clamps it: em1 is e - 1 below -EXPM1_T either way, the same bits, and
            # un's select is not formed twice)
            unc = tl.maximum(un, EXP_MIN, propagate_nan=tl.PropagateNan.ALL)
            e = _exp16(unc, True)
            em1 = _expm1_16(unc, e)
        else:
            e = _exp(un, LIBDEVICE)
            em1 = _expm1(un, OPMATH, LIBDEVICE)
        # (no select: on the positive side un = +0.0 and exp(+0.0) is exactly 1 in every form used, numpy's, libdevice's
        # expf / exp (special case of the CUDA math library), ex2.approx (PTX special case) and so _exp16's, hence
        # g * e is g there, bit for bit; one predicate fewer kept alive, about 3 SASS per element in bfloat16)
        ge = g * e
        dx = r * ge
        # (one product: the selected factor times dy. A masked-out element has x = 0, so pos, un = 0 and em1 = 0:
        # selecting em1 there gives 0 * 0 even where 1 / b is infinite and u = 0 * inf is NaN)
        t0 = tl.where(pos & inb, u, em1) * g
        t1 = tl.where(inb, -(r * u) * ge, 0.0)
    tl.store(dx_ptr + offs, _downcast(dx, dx_ptr.dtype.element_ty, LIBDEVICE), mask=inb)
    _store_partial(q0_ptr, t0, it, ic, i_s, C, ST, CB, SB)
    if NP == 2:
        _store_partial(q1_ptr, t1, it, ic, i_s, C, ST, CB, SB)


@triton.jit
def _pelu_constants_kernel(a_ptr, b_ptr, k_ptr, P, OPMATH: tl.constexpr, BLOCK: tl.constexpr):
    """PELU<T>::prepare per parameter element: k[0] = a, k[1] = a / b, k[2] = 1 / b in opmath ([3, P] k)."""
    i = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = i < P
    a = _upcast(tl.load(a_ptr + i, mask=m, other=1.0), OPMATH)
    b = _upcast(tl.load(b_ptr + i, mask=m, other=1.0), OPMATH)
    tl.store(k_ptr + i, a, mask=m)
    tl.store(k_ptr + P + i, _div(a, b, OPMATH), mask=m)
    tl.store(k_ptr + 2 * P + i, _div(tl.full(b.shape, 1.0, OPMATH), b, OPMATH), mask=m)


@triton.jit
def _channel_sum_kernel(partial_ptr, out_ptr, R, C, RB: tl.constexpr, CB: tl.constexpr):
    """out[c] = sum over r of partial[r, c], in a fixed order (RB-row tiles in sequence, then a tree over RB)."""
    pid = tl.program_id(0).to(tl.int64)
    c = pid * CB + tl.arange(0, CB)
    cm = c < C
    acc = tl.zeros([RB, CB], dtype=partial_ptr.dtype.element_ty)
    for r0 in range(0, R, RB):
        r = r0 + tl.arange(0, RB).to(tl.int64)
        acc += tl.load(partial_ptr + r[:, None] * C + c[None, :], mask=(r < R)[:, None] & cm[None, :], other=0.0)
    tl.store(out_ptr + c, _downcast(tl.sum(acc, axis=0), out_ptr.dtype.element_ty), mask=cm)


# ---------------------------------------------------------------------------------------------------------------
# Maxout (maxout_better and MaxoutGeometry of activations.h). x is seen as [R * P, S] (R = outer * groups rows of
# outputs, P pieces per group, S inner positions), y and the indices as [R, S]; program p handles the [RB, SB] tile
# (p // ST, p % ST) of the output, whose rows are contiguous runs of S.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _maxout_tile(pid, R, S, ST, RB: tl.constexpr, SB: tl.constexpr):
    r = (pid // ST) * RB + tl.arange(0, RB)  # [RB] int64, as pid
    s = (pid % ST) * SB + tl.arange(0, SB)
    inb = (r < R)[:, None] & (s < S)[None, :]
    return r, s, inb


@triton.jit
def _maxout_forward_kernel(x_ptr, y_ptr, idx_ptr, R, P, S, ST, SAVE_INDICES: tl.constexpr, OPMATH: tl.constexpr,
                           RB: tl.constexpr, SB: tl.constexpr):
    """y[r, s] = the first maximal x[r * P + p, s] over p, a NaN winning (the first NaN stays):
    maxout_better(v, best) = v > best || (v != v && best == best); idx[r, s] = its p (uint8), if SAVE_INDICES.
    Values are compared in opmath (exact) and y gets the winner's own bits."""
    pid = tl.program_id(0).to(tl.int64)
    r, s, inb = _maxout_tile(pid, R, S, ST, RB, SB)
    xo = r[:, None] * P * S + s[None, :]  # int64 offsets of piece 0, then of piece p
    raw = tl.load(x_ptr + xo, mask=inb, other=0.0)
    best = _upcast(raw, OPMATH)
    arg = tl.zeros([RB, SB], dtype=tl.int32)
    for p in range(1, P):
        xo += S
        v_raw = tl.load(x_ptr + xo, mask=inb, other=0.0)
        v = _upcast(v_raw, OPMATH)
        take = (v > best) | ((v != v) & (best == best))
        best = tl.where(take, v, best)
        raw = tl.where(take, v_raw, raw)
        arg = tl.where(take, p, arg)
    yo = r[:, None] * S + s[None, :]
    tl.store(y_ptr + yo, raw, mask=inb)
    if SAVE_INDICES:
        tl.store(idx_ptr + yo, arg.to(tl.uint8), mask=inb)


@triton.jit
def _maxout_backward_kernel(g_ptr, idx_ptr, dx_ptr, R, P, S, ST, RB: tl.constexpr, SB: tl.constexpr):
    """dx[r * P + p, s] = grad[r, s] if p == idx[r, s] else 0, every p written (the P pieces of a tile in turn)."""
    pid = tl.program_id(0).to(tl.int64)
    r, s, inb = _maxout_tile(pid, R, S, ST, RB, SB)
    go = r[:, None] * S + s[None, :]
    g = tl.load(g_ptr + go, mask=inb, other=0.0)
    idx = tl.load(idx_ptr + go, mask=inb, other=0).to(tl.int32)
    zero = tl.zeros_like(g)
    xo = r[:, None] * P * S + s[None, :]
    for p in range(0, P):
        tl.store(dx_ptr + xo, tl.where(idx == p, g, zero), mask=inb)
        xo += S


# ---------------------------------------------------------------------------------------------------------------
# Launchers.
# ---------------------------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------------------------
# Gated units (Gated<T, Act> of activations.h: y = act(a) * b), the activation a pair of math.py (FWD / BWD) over
# [R, H] views: a and b (da and db) with unit column stride and row strides SA, SB (SDA, SDB), y and dy contiguous.
# Program p handles the tile of rows (p // CT) * RB + [0, RB) and columns (p % CT) * CB + [0, CB).
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _gated_tile(pid, R, H, CT, RB: tl.constexpr, CB: tl.constexpr):
    r = (pid // CT) * RB + tl.arange(0, RB)
    c = (pid % CT) * CB + tl.arange(0, CB)
    return r[:, None], c[None, :], (r < R)[:, None] & (c < H)[None, :]


@triton.jit
def _gated_forward_kernel(a_ptr, b_ptr, y_ptr, R, H, SA, SB, CT, FWD: tl.constexpr, OPMATH: tl.constexpr,
                          LIBDEVICE: tl.constexpr, RB: tl.constexpr, CB: tl.constexpr):
    """y = FWD(a) * b."""
    r, c, inb = _gated_tile(tl.program_id(0).to(tl.int64), R, H, CT, RB, CB)
    a = _upcast(tl.load(a_ptr + r * SA + c, mask=inb, other=0.0), OPMATH)
    b = _upcast(tl.load(b_ptr + r * SB + c, mask=inb, other=0.0), OPMATH)
    FAST16: tl.constexpr = _fast16(y_ptr.dtype.element_ty, LIBDEVICE)
    zero = tl.full([], 0.0, OPMATH)
    y = FWD(a, zero, zero, OPMATH, LIBDEVICE, FAST16) * b
    tl.store(y_ptr + r * H + c, _downcast(y, y_ptr.dtype.element_ty), mask=inb)


@triton.jit
def _gated_backward_kernel(g_ptr, a_ptr, b_ptr, da_ptr, db_ptr, R, H, SA, SB, SDA, SDB, CT, FWD: tl.constexpr,
                           BWD: tl.constexpr, OPMATH: tl.constexpr, LIBDEVICE: tl.constexpr, RB: tl.constexpr,
                           CB: tl.constexpr):
    """da = BWD(dy * b, a), db = dy * FWD(a)."""
    r, c, inb = _gated_tile(tl.program_id(0).to(tl.int64), R, H, CT, RB, CB)
    g = _upcast(tl.load(g_ptr + r * H + c, mask=inb, other=0.0), OPMATH)
    a = _upcast(tl.load(a_ptr + r * SA + c, mask=inb, other=0.0), OPMATH)
    b = _upcast(tl.load(b_ptr + r * SB + c, mask=inb, other=0.0), OPMATH)
    FAST16: tl.constexpr = _fast16(da_ptr.dtype.element_ty, LIBDEVICE)
    zero = tl.full([], 0.0, OPMATH)
    da = BWD(g * b, a, zero, zero, OPMATH, LIBDEVICE)
    db = g * FWD(a, zero, zero, OPMATH, LIBDEVICE, FAST16)
    tl.store(da_ptr + r * SDA + c, _downcast(da, da_ptr.dtype.element_ty), mask=inb)
    tl.store(db_ptr + r * SDB + c, _downcast(db, db_ptr.dtype.element_ty), mask=inb)


INTERPRETED = type(_mask_forward_kernel).__name__ == "InterpretedFunction"


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _opmath(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _on_device(t: torch.Tensor):
    """Context for launching on t's device: the CUDA device of t, or the Triton interpreter for CPU tensors."""
    if t.device.type == "cuda":
        return torch.cuda.device(t.device)
    if not INTERPRETED and t.device.type == "cpu":
        raise RuntimeError(
            "glo_kernels_triton: the Triton kernels run CPU tensors only in the Triton interpreter; set the "
            "environment variable TRITON_INTERPRET=1 before triton and glo_kernels are imported, or use the C++ "
            "operators torch.ops.glo_kernels.*")
    return contextlib.nullcontext()


def _is_neg_zero(v: float) -> bool:
    return v == 0.0 and math.copysign(1.0, v) < 0


def _size_bucket(n: int) -> int:
    """The autotuning key's size: 0 below 2^20 elements, 1 below 2^24, 2 from there."""
    return 0 if n < (1 << 20) else (1 if n < (1 << 24) else 2)


def _quick_bench(fn, quantiles):
    """Autotuning trials: 5 ms of warm-up and 20 of timing per configuration (Triton's default: 25 and 100)."""
    import triton.testing

    return triton.testing.do_bench(fn, warmup=5, rep=20, quantiles=quantiles)


def _autotuned(kernel, configs, key, restore):
    """kernel under triton.autotune (None in the interpreter); restore: the outputs that may alias an input (in place:
    each trial would apply the op again), saved before the trials and put back after each."""
    if INTERPRETED:
        return None
    try:
        return triton.autotune(configs=configs, key=key, restore_value=restore, do_bench=_quick_bench)(kernel)
    except TypeError:  # a Triton without autotune's do_bench argument: its default benchmark (longer trials)
        return triton.autotune(configs=configs, key=key, restore_value=restore)(kernel)


_mask_forward_tuned = _autotuned(_mask_forward_kernel, MASK_CONFIGS, ["size_bucket", "OP", "SAVE_MASK"], ["y_ptr"])
_mask_backward_tuned = _autotuned(_mask_backward_kernel, MASK_CONFIGS, ["size_bucket", "OP"], None)
_unary_forward_tuned = _autotuned(_unary_forward_kernel, UNARY_CONFIGS, ["size_bucket", "FWD"], ["y_ptr"])
_unary_backward_tuned = _autotuned(_unary_backward_kernel, UNARY_CONFIGS, ["size_bucket", "BWD"], None)


def _launch_tuned(tuned, kernel, configs, grid, t: torch.Tensor, *args, **kwargs) -> None:
    """Runs the autotuned kernel, or `kernel` with the first (default) configuration in the interpreter, under
    GLO_TRITON_AUTOTUNE=0 and while a CUDA graph is being captured; grid(meta) -> the launch grid."""
    if tuned is None or not AUTOTUNE or (t.device.type == "cuda" and torch.cuda.is_current_stream_capturing()):
        cfg = configs[0]
        kernel[grid(cfg.kwargs)](*args, **kwargs, **cfg.kwargs, num_warps=cfg.num_warps)
    else:
        tuned[grid](*args, **kwargs)


def mask_forward(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, op: int, slope: float = 0.0) -> None:
    """y = f(x) (y may be x) and, if mask is not empty, its bits f.keep(x); f is RELU or LEAKY_RELU."""
    n = x.numel()
    save = mask.numel() > 0

    def grid(meta):  # (with a mask: programs for all of its words, the zero padding after the bits included)
        return (triton.cdiv(mask.numel(), meta["WORDS"]) if save else triton.cdiv(n, 32 * meta["WORDS"]),)

    with _on_device(x):
        _launch_tuned(_mask_forward_tuned, _mask_forward_kernel, MASK_CONFIGS, grid, x, x, y, mask if save else None,
                      n, mask.numel(), float(slope), _size_bucket(n), OP=op, SAVE_MASK=save, OPMATH=_opmath(x.dtype),
                      NEG_ZERO=_is_neg_zero(slope))


def mask_backward(grad: torch.Tensor, mask: torch.Tensor, dx: torch.Tensor, op: int, slope: float = 0.0) -> None:
    """dx = f.backward(grad, bit)."""
    n = grad.numel()
    with _on_device(grad):
        _launch_tuned(_mask_backward_tuned, _mask_backward_kernel, MASK_CONFIGS,
                      lambda meta: (triton.cdiv(n, 32 * meta["WORDS"]),), grad, grad, mask, dx, n, float(slope),
                      _size_bucket(n), OP=op, OPMATH=_opmath(grad.dtype), NEG_ZERO=_is_neg_zero(slope))


def _libdevice_options(t: torch.Tensor) -> dict:
    """Compile options of the kernels calling libdevice: on CUDA, its functions without flushing subnormals to zero
    (Triton's default turns libdevice's FTZ variants on; nvcc's, used by the C++ kernels, does not)."""
    if not INTERPRETED and t.device.type == "cuda" and torch.version.hip is None:
        return {"enable_reflect_ftz": False}
    return {}


def unary_forward(x: torch.Tensor, y: torch.Tensor, fn: str, alpha: float = 0.0, alpha2: float = 0.0) -> None:
    """y = f(x) (y may be x); f is math.py's pair of the element function `fn` (elu, sigmoid, tanh, ...), alpha and
    alpha2 its scalar parameters."""
    n = x.numel()
    fwd, _ = unary_pair(fn)
    with _on_device(x):
        _launch_tuned(_unary_forward_tuned, _unary_forward_kernel, UNARY_CONFIGS,
                      lambda meta: (triton.cdiv(n, meta["BLOCK"]),), x, x, y, n, float(alpha), float(alpha2),
                      _size_bucket(n),
                      FWD=fwd, OPMATH=_opmath(x.dtype), LIBDEVICE=not INTERPRETED, NEG_ZERO=_is_neg_zero(alpha),
                      **_libdevice_options(x))


def unary_backward(grad: torch.Tensor, saved: torch.Tensor, dx: torch.Tensor, fn: str, alpha: float = 0.0,
                   alpha2: float = 0.0) -> None:
    """dx = f.backward(grad, saved) of the element function `fn`; saved is the op's input or output."""
    n = grad.numel()
    _, bwd = unary_pair(fn)
    with _on_device(grad):
        _launch_tuned(_unary_backward_tuned, _unary_backward_kernel, UNARY_CONFIGS,
                      lambda meta: (triton.cdiv(n, meta["BLOCK"]),), grad, grad, saved, dx, n, float(alpha),
                      float(alpha2), _size_bucket(n), BWD=bwd, OPMATH=_opmath(grad.dtype), LIBDEVICE=not INTERPRETED,
                      NEG_ZERO=_is_neg_zero(alpha), **_libdevice_options(grad))


def channel_tiles(outer: int, channels: int, inner: int) -> tuple[int, int, int]:
    """(NB, CB, SB): the tile of the per-channel-parameter kernels over [outer, channels, inner], from the shape only.

    SB: the whole inner extent when it is at most 32 (rounded up to a power of 2); otherwise the power of 2 in
    [lo, CHANNEL_TILE] that pads inner least (ties: the larger), e.g. 64 for 3136 = 49 * 64, 4096 for 2^24, where lo
    is 32, or more when outer and channels are too few to fill a tile of CHANNEL_TILE elements with SB = 32.
    CB: enough channels for rows of CHANNEL_RUN contiguous elements when inner is short; NB: outer rows up to
    CHANNEL_TILE elements; then CB grows if NB was capped by outer. Each program thus covers ~CHANNEL_TILE elements
    and each partial buffer of the backward has (outer/NB) * (inner/SB) * channels ~ numel * CB / CHANNEL_TILE
    entries (and at least channels).
    """
    cp, np_ = _next_pow2(channels), _next_pow2(outer)
    sp = _next_pow2(inner)
    if sp <= CHANNEL_MIN_SB:
        sb = sp
    else:
        lo = min(sp, CHANNEL_TILE, max(CHANNEL_MIN_SB, CHANNEL_TILE // (np_ * cp)))
        sb, best = 0, None
        cand = min(sp, CHANNEL_TILE)
        while cand >= lo:
            padded = -(-inner // cand) * cand
            if best is None or padded < best:
                sb, best = cand, padded
            cand //= 2
    cb = min(cp, max(1, CHANNEL_RUN // sb))
    nb = min(np_, max(1, CHANNEL_TILE // (cb * sb)))
    cb = min(cp, max(cb, CHANNEL_TILE // (nb * sb)))
    return nb, cb, sb


def channel_backward_num_warps(dtype: torch.dtype) -> int:
    """Warps of _channel_backward_kernel for data of this dtype (see CHANNEL_BACKWARD_NUM_WARPS_16)."""
    return CHANNEL_BACKWARD_NUM_WARPS_16 if dtype.itemsize == 2 else CHANNEL_NUM_WARPS


def _channel_grid(outer: int, channels: int, inner: int):
    nb, cb, sb = channel_tiles(outer, channels, inner)
    nt, ct, st = triton.cdiv(outer, nb), triton.cdiv(channels, cb), triton.cdiv(inner, sb)
    return (nb, cb, sb), (nt, ct, st)


def channel_partial_rows(outer: int, channels: int, inner: int) -> int:
    """Rows of each [rows, channels] partial buffer of channel_backward for this geometry."""
    _, (nt, _, st) = _channel_grid(outer, channels, inner)
    return nt * st


def _check_params(op: int, params) -> None:
    if len(params) != CHANNEL_PARAMS[op]:
        raise ValueError(f"operator id {op} takes {CHANNEL_PARAMS[op]} parameters, got {len(params)}")


def channel_constants(op: int, params) -> torch.Tensor:
    """The per-channel constants the kernels read (as the functors' prepare), a [KC, P] tensor of the P parameter
    elements: PRELU: the weight itself ([1, P], its dtype, no copy); PELU: rows (a, a / b, 1 / b) in opmath (float64
    for float64 parameters, else float32), made by _pelu_constants_kernel in one launch with the kernels' own
    _upcast and _div (IEEE), so the bits are those the element kernels computed per column before, NaN payloads
    included (torch's float16 -> float32 conversion writes other NaN payloads than the interpreter's)."""
    _check_params(op, params)
    if op in (PRELU, BIAS_ACT):
        return params[0].reshape(1, -1)
    a, b = params
    n = a.numel()
    k = torch.empty((3, n), dtype=_acc_dtype(a.dtype), device=a.device)
    with _on_device(a):
        _pelu_constants_kernel[(triton.cdiv(n, CONSTANTS_BLOCK),)](a, b, k, n, OPMATH=_opmath(a.dtype),
                                                                   BLOCK=CONSTANTS_BLOCK, num_warps=4)
    return k


def _act_pair(act: str | None):
    """(FWD, BWD) of BIAS_ACT's activation `act`; another op's kernels take math.py's relu pair, unused."""
    return unary_pair(act or "relu")


def channel_forward(x: torch.Tensor, params, y: torch.Tensor, geom: tuple[int, int, int], op: int,
                    act: str | None = None) -> None:
    """y = f(x, p[c]) over x seen as geom = (outer, channels, inner); f is PRELU (params: (weight,)), PELU
    ((a, b)) or BIAS_ACT ((bias,), the activation math.py's pair of `act`), each parameter of 1 or `channels`
    elements."""
    _check_params(op, params)
    outer, channels, inner = geom
    (nb, cb, sb), (nt, ct, st) = _channel_grid(outer, channels, inner)
    k = channel_constants(op, params)
    fwd, bwd = _act_pair(act)
    with _on_device(x):
        _channel_forward_kernel[(nt * ct * st,)](x, k, y, outer, channels, inner, ct, st, OP=op,
                                                 OPMATH=_opmath(x.dtype), LIBDEVICE=not INTERPRETED, NB=nb, CB=cb,
                                                 SB=sb, FWD=fwd, BWD=bwd, num_warps=CHANNEL_NUM_WARPS,
                                                 **_libdevice_options(x))


def channel_backward(grad: torch.Tensor, x: torch.Tensor, params, dx: torch.Tensor, dparams,
                     geom: tuple[int, int, int], op: int, act: str | None = None) -> None:
    """dx and every parameter's gradient (per-channel sums, in dparams[k]'s dtype) of f (PRELU, PELU or BIAS_ACT):
    one pass over x and grad writing dx and a partial buffer per parameter, then a fixed-order sum of each buffer."""
    _check_params(op, params)
    npar = len(params)
    outer, channels, inner = geom
    (nb, cb, sb), (nt, ct, st) = _channel_grid(outer, channels, inner)
    partial = torch.empty((npar, nt * st, channels), dtype=_acc_dtype(x.dtype), device=x.device)
    q1 = partial[1] if npar > 1 else None
    k = channel_constants(op, params)
    fwd, bwd = _act_pair(act)
    with _on_device(x):
        _channel_backward_kernel[(nt * ct * st,)](grad, x, k, dx, partial[0], q1, outer, channels, inner,
                                                  ct, st, OP=op, NP=npar, OPMATH=_opmath(x.dtype),
                                                  LIBDEVICE=not INTERPRETED, NB=nb, CB=cb, SB=sb, FWD=fwd, BWD=bwd,
                                                  num_warps=channel_backward_num_warps(x.dtype),
                                                  **_libdevice_options(x))
    for k in range(npar):
        channel_sum(partial[k], dparams[k])


def channel_sum(partial: torch.Tensor, out: torch.Tensor) -> None:
    """out[c] = sum over r of partial[r, c] (contiguous [rows, channels]), in a fixed order, rounded to out's dtype."""
    rows, channels = partial.shape
    cb = min(_next_pow2(channels), REDUCE_MAX_CB)
    rb = min(_next_pow2(rows), max(1, REDUCE_TILE // cb))
    with _on_device(partial):
        _channel_sum_kernel[(triton.cdiv(channels, cb),)](partial, out, rows, channels, RB=rb, CB=cb,
                                                          num_warps=REDUCE_NUM_WARPS)


def _maxout_grid(rows: int, inner: int):
    sb = min(_next_pow2(inner), MAXOUT_TILE)
    rb = min(_next_pow2(rows), MAXOUT_TILE // sb)
    st = triton.cdiv(inner, sb)
    return (rb, sb), (triton.cdiv(rows, rb) * st, st)


def maxout_forward(x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor, geom: tuple[int, int, int, int]) -> None:
    """y (and, if indices is not empty, the uint8 winner indices) of Maxout over x seen as geom = (outer, groups,
    pieces, inner); y non-empty."""
    outer, groups, pieces, inner = geom
    rows = outer * groups
    (rb, sb), (programs, st) = _maxout_grid(rows, inner)
    save = indices.numel() > 0
    with _on_device(x):
        _maxout_forward_kernel[(programs,)](x, y, indices if save else None, rows, pieces, inner, st,
                                            SAVE_INDICES=save, OPMATH=_opmath(x.dtype), RB=rb, SB=sb,
                                            num_warps=MAXOUT_NUM_WARPS)


def maxout_backward(grad: torch.Tensor, indices: torch.Tensor, dx: torch.Tensor,
                    geom: tuple[int, int, int, int]) -> None:
    """dx of Maxout: grad at each group's winner, 0 at the other pieces; dx non-empty."""
    outer, groups, pieces, inner = geom
    rows = outer * groups
    (rb, sb), (programs, st) = _maxout_grid(rows, inner)
    with _on_device(grad):
        _maxout_backward_kernel[(programs,)](grad, indices, dx, rows, pieces, inner, st, RB=rb, SB=sb,
                                             num_warps=MAXOUT_NUM_WARPS)


GATED_TILE = 4096  # elements per program of the gated kernels (RB * CB)
GATED_NUM_WARPS = 8


def _gated_grid(rows: int, h: int):
    cb = min(_next_pow2(h), GATED_TILE)
    rb = min(_next_pow2(rows), GATED_TILE // cb)
    ct = triton.cdiv(h, cb)
    return (rb, cb), (triton.cdiv(rows, rb) * ct, ct)


def gated_forward(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor, fn: str) -> None:
    """y = act(a) * b over [rows, h] views (a, b: unit column stride; y contiguous); act is math.py's pair of the
    element function `fn`; y non-empty."""
    rows, h = y.shape
    fwd, _ = unary_pair(fn)
    (rb, cb), (programs, ct) = _gated_grid(rows, h)
    with _on_device(a):
        _gated_forward_kernel[(programs,)](a, b, y, rows, h, a.stride(0), b.stride(0), ct, FWD=fwd,
                                           OPMATH=_opmath(a.dtype), LIBDEVICE=not INTERPRETED, RB=rb, CB=cb,
                                           num_warps=GATED_NUM_WARPS, **_libdevice_options(a))


def gated_backward(grad: torch.Tensor, a: torch.Tensor, b: torch.Tensor, da: torch.Tensor, db: torch.Tensor,
                   fn: str) -> None:
    """da = act'(a) * grad * b, db = grad * act(a) over [rows, h] views (see gated_forward); grad non-empty."""
    rows, h = grad.shape
    fwd, bwd = unary_pair(fn)
    (rb, cb), (programs, ct) = _gated_grid(rows, h)
    with _on_device(a):
        _gated_backward_kernel[(programs,)](grad, a, b, da, db, rows, h, a.stride(0), b.stride(0), da.stride(0),
                                            db.stride(0), ct, FWD=fwd, BWD=bwd, OPMATH=_opmath(a.dtype),
                                            LIBDEVICE=not INTERPRETED, RB=rb, CB=cb, num_warps=GATED_NUM_WARPS,
                                            **_libdevice_options(a))
