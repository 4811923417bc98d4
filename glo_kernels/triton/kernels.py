"""Triton kernels of glo_kernels and their launchers.

Every kernel mirrors a functor of csrc/include/glo/activations.h (the comment above each says which); keep the three
implementations (C++ functors, these kernels, glo_kernels/reference.py) in step.

Conventions, as in the CUDA/CPU kernels:
  * loads and stores in the tensor's dtype, math in "opmath": float32 for float16/bfloat16/float32 data, float64 for
    float64 data; scalar parameters (the slope) arrive as float64 and are rounded once to opmath inside the kernel
    (as static_cast<T>(slope) in C++);
  * bfloat16 <-> float32 conversions are written with integer ops (_upcast/_downcast): exactly c10's conversions
    (round to nearest even, NaN -> 0x7FC0), both on a GPU and in the Triton interpreter, whose own bfloat16 casts
    truncate;
  * 64-bit element offsets everywhere, so tensors of 2^31 elements or more are right;
  * packed masks: bit j of int32 word w is element 32*w + j in row-major order; bits past numel are 0;
  * PReLU's weight gradient is reduced deterministically: each program of the one pass over x and dy writes its
    per-channel partial sums to a small buffer, which a second kernel sums in a fixed order. No atomics; the tiling
    depends only on the shape.

The launchers at the bottom take contiguous, non-empty tensors of one floating dtype on one device (the glue in
glo_kernels/triton/ops.py guarantees it), like the kernel sets K of csrc/include/glo/op_impls.h.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

# Operator ids of the mask kernels (tl.constexpr OP).
RELU = 0
LEAKY_RELU = 1

# Mask kernels: each program handles MASK_WORDS words of 32 elements (a [MASK_WORDS, 32] tile).
MASK_WORDS = 128  # 4096 elements per program
MASK_NUM_WARPS = 8

# PReLU kernels: each program handles NB outer rows x CB channels x SB inner positions of the [outer, channels,
# inner] view, as a 2-D [NB, CB*SB] tile (see _prelu_tile and prelu_tiles).
PRELU_TILE = 4096  # elements per program (NB * CB * SB, at most)
PRELU_RUN = 64  # contiguous elements a tile's row should at least span when inner is short
PRELU_MIN_SB = 32  # smallest tile along inner considered when inner is long (> 32)
PRELU_NUM_WARPS = 8
# Second pass of the PReLU weight gradient: [RB, CB] tiles of the [rows, channels] partial buffer.
REDUCE_TILE = 4096
REDUCE_MAX_CB = 1024
REDUCE_NUM_WARPS = 4


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
def _downcast(v, DTYPE: tl.constexpr):
    """Opmath -> storage dtype DTYPE, rounding to nearest even (for bfloat16 exactly as c10::BFloat16)."""
    if DTYPE == tl.bfloat16:
        b = v.to(tl.uint32, bitcast=True)
        r = (b + (0x7FFF + ((b >> 16) & 1))) >> 16
        r = tl.where(v != v, 0x7FC0, r)
        out = r.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        out = v.to(DTYPE)
    return out


@triton.jit
def _bit_or(a, b):
    return a | b


# ---------------------------------------------------------------------------------------------------------------
# Activations whose backward needs one bit per element: ReLU<T> and LeakyReLU<T> of activations.h.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _mask_forward_kernel(x_ptr, y_ptr, mask_ptr, numel, slope: tl.float64, OP: tl.constexpr,
                         SAVE_MASK: tl.constexpr, OPMATH: tl.constexpr, WORDS: tl.constexpr):
    """y = f.forward(x) and, if SAVE_MASK, the packed bits f.keep(x); f = ReLU (OP 0) or LeakyReLU (OP 1).

    x_ptr and y_ptr may be the same tensor (in place): each element is read, then written, by one program.
    """
    pid = tl.program_id(0).to(tl.int64)
    words = pid * WORDS + tl.arange(0, WORDS)  # [WORDS] int64
    lane = tl.arange(0, 32)
    offs = words[:, None] * 32 + lane[None, :]  # [WORDS, 32]: row w is element 32*w + j
    inb = offs < numel
    x = _upcast(tl.load(x_ptr + offs, mask=inb, other=0.0), OPMATH)
    if OP == 0:
        # ReLU<T>: forward(x) = x < 0 ? 0 : x;  keep(x) = !(x <= 0)
        y = tl.where(x < 0.0, 0.0, x)
        keep = ~(x <= 0.0)
    else:
        # LeakyReLU<T>: forward(x) = x > 0 ? x : x * slope;  keep(x) = x > 0
        s = tl.full([], slope, OPMATH)
        y = tl.where(x > 0.0, x, x * s)
        keep = x > 0.0
    tl.store(y_ptr + offs, _downcast(y, y_ptr.dtype.element_ty), mask=inb)
    if SAVE_MASK:
        bits = tl.where(keep & inb, 1, 0).to(tl.uint32) << lane[None, :].to(tl.uint32)
        word = tl.reduce(bits, 1, _bit_or)
        tl.store(mask_ptr + words, word.to(tl.int32, bitcast=True), mask=words * 32 < numel)


@triton.jit
def _mask_backward_kernel(g_ptr, mask_ptr, dx_ptr, numel, slope: tl.float64, OP: tl.constexpr,
                          OPMATH: tl.constexpr, WORDS: tl.constexpr):
    """dx = f.backward(dy, bit); f = ReLU (OP 0) or LeakyReLU (OP 1)."""
    pid = tl.program_id(0).to(tl.int64)
    words = pid * WORDS + tl.arange(0, WORDS)
    lane = tl.arange(0, 32)
    offs = words[:, None] * 32 + lane[None, :]
    inb = offs < numel
    m = tl.load(mask_ptr + words, mask=words * 32 < numel, other=0).to(tl.uint32, bitcast=True)
    keep = ((m[:, None] >> lane[None, :].to(tl.uint32)) & 1) != 0
    g = _upcast(tl.load(g_ptr + offs, mask=inb, other=0.0), OPMATH)
    if OP == 0:
        # ReLU<T>: backward(dy, keep) = keep ? dy : 0
        dx = tl.where(keep, g, 0.0)
    else:
        # LeakyReLU<T>: backward(dy, keep) = keep ? dy : dy * slope
        s = tl.full([], slope, OPMATH)
        dx = tl.where(keep, g, g * s)
    tl.store(dx_ptr + offs, _downcast(dx, dx_ptr.dtype.element_ty), mask=inb)


# ---------------------------------------------------------------------------------------------------------------
# PReLU<T> of activations.h. x is seen as [N, C, S] (outer, channels, inner); program p handles the tile
# (it, ic, is) = (p // (CT*ST), (p // ST) % CT, p % ST): rows n of [it*NB, it*NB + NB) times the CB*SB columns
# k = (channel ic*CB + k // SB, inner position is*SB + k % SB). The columns are contiguous in memory in runs of SB
# (of CB*SB when S == 1), so loads vectorize along them.
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _prelu_tile(pid, N, C, S, CT, ST, NB: tl.constexpr, CB: tl.constexpr, SB: tl.constexpr):
    it = pid // (CT * ST)
    ic = (pid // ST) % CT
    i_s = pid % ST
    n = it * NB + tl.arange(0, NB)  # [NB] int64, as pid
    k = tl.arange(0, CB * SB)
    c = ic * CB + k // SB  # [CB*SB] channel of each column
    s = i_s * SB + k % SB  # [CB*SB] inner position of each column
    offs = n[:, None] * C * S + (c * S + s)[None, :]
    inb = (n < N)[:, None] & ((c < C) & (s < S))[None, :]
    return it, ic, i_s, c, offs, inb


@triton.jit
def _load_weight(w_ptr, ic, c, C, OPMATH: tl.constexpr, CB: tl.constexpr):
    """The weight of each column of the tile, in opmath: one scalar when the tile has a single channel."""
    if CB == 1:
        w = _upcast(tl.load(w_ptr + ic), OPMATH)
    else:
        w = _upcast(tl.load(w_ptr + c, mask=c < C, other=0.0), OPMATH)[None, :]
    return w


@triton.jit
def _prelu_forward_kernel(x_ptr, w_ptr, y_ptr, N, C, S, CT, ST, OPMATH: tl.constexpr, NB: tl.constexpr,
                          CB: tl.constexpr, SB: tl.constexpr):
    """PReLU<T>::forward(x, w) = x > 0 ? x : w * x."""
    pid = tl.program_id(0).to(tl.int64)
    it, ic, i_s, c, offs, inb = _prelu_tile(pid, N, C, S, CT, ST, NB, CB, SB)
    w = _load_weight(w_ptr, ic, c, C, OPMATH, CB)
    x = _upcast(tl.load(x_ptr + offs, mask=inb, other=0.0), OPMATH)
    y = tl.where(x > 0.0, x, w * x)
    tl.store(y_ptr + offs, _downcast(y, y_ptr.dtype.element_ty), mask=inb)


@triton.jit
def _prelu_backward_kernel(g_ptr, x_ptr, w_ptr, dx_ptr, partial_ptr, N, C, S, CT, ST, OPMATH: tl.constexpr,
                           NB: tl.constexpr, CB: tl.constexpr, SB: tl.constexpr):
    """dx = PReLU<T>::backward_input(x, w, dy) = x > 0 ? dy : w * dy, and
    partial[it * ST + is, c] = sum over the tile's (n, s) of backward_weight(x, dy) = x > 0 ? 0 : x * dy
    (a tree sum over the NB rows, then over the SB positions of each channel)."""
    pid = tl.program_id(0).to(tl.int64)
    it, ic, i_s, c, offs, inb = _prelu_tile(pid, N, C, S, CT, ST, NB, CB, SB)
    w = _load_weight(w_ptr, ic, c, C, OPMATH, CB)
    x = _upcast(tl.load(x_ptr + offs, mask=inb, other=0.0), OPMATH)
    g = _upcast(tl.load(g_ptr + offs, mask=inb, other=0.0), OPMATH)
    pos = x > 0.0
    tl.store(dx_ptr + offs, _downcast(tl.where(pos, g, w * g), dx_ptr.dtype.element_ty), mask=inb)
    dw = tl.where(inb & ~pos, x * g, 0.0)
    part = tl.sum(tl.reshape(tl.sum(dw, axis=0), (CB, SB)), axis=1)  # [CB]
    cc = ic * CB + tl.arange(0, CB)
    tl.store(partial_ptr + (it * ST + i_s) * C + cc, part, mask=cc < C)


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
# Launchers.
# ---------------------------------------------------------------------------------------------------------------
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


def mask_forward(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, op: int, slope: float = 0.0) -> None:
    """y = f(x) (y may be x) and, if mask is not empty, its bits f.keep(x); f is RELU or LEAKY_RELU."""
    n = x.numel()
    save = mask.numel() > 0
    grid = (triton.cdiv(n, 32 * MASK_WORDS),)
    with _on_device(x):
        _mask_forward_kernel[grid](x, y, mask if save else None, n, float(slope), OP=op, SAVE_MASK=save,
                                   OPMATH=_opmath(x.dtype), WORDS=MASK_WORDS, num_warps=MASK_NUM_WARPS)


def mask_backward(grad: torch.Tensor, mask: torch.Tensor, dx: torch.Tensor, op: int, slope: float = 0.0) -> None:
    """dx = f.backward(grad, bit)."""
    n = grad.numel()
    grid = (triton.cdiv(n, 32 * MASK_WORDS),)
    with _on_device(grad):
        _mask_backward_kernel[grid](grad, mask, dx, n, float(slope), OP=op, OPMATH=_opmath(grad.dtype),
                                    WORDS=MASK_WORDS, num_warps=MASK_NUM_WARPS)


def prelu_tiles(outer: int, channels: int, inner: int) -> tuple[int, int, int]:
    """(NB, CB, SB): the PReLU tile over [outer, channels, inner], chosen from the shape only.

    SB: the whole inner extent when it is at most 32 (rounded up to a power of 2); otherwise the power of 2 in
    [lo, PRELU_TILE] that pads inner least (ties: the larger), e.g. 64 for 3136 = 49 * 64, 4096 for 2^24, where lo is
    32, or more when outer and channels are too few to fill a tile of PRELU_TILE elements with SB = 32.
    CB: enough channels for rows of PRELU_RUN contiguous elements when inner is short; NB: outer rows up to
    PRELU_TILE elements; then CB grows if NB was capped by outer. Each program thus covers ~PRELU_TILE elements
    and the partial buffer of the backward has (outer/NB) * (inner/SB) * channels ~ numel * CB / PRELU_TILE entries
    (and at least channels).
    """
    cp, np_ = _next_pow2(channels), _next_pow2(outer)
    sp = _next_pow2(inner)
    if sp <= PRELU_MIN_SB:
        sb = sp
    else:
        lo = min(sp, PRELU_TILE, max(PRELU_MIN_SB, PRELU_TILE // (np_ * cp)))
        sb, best = 0, None
        cand = min(sp, PRELU_TILE)
        while cand >= lo:
            padded = -(-inner // cand) * cand
            if best is None or padded < best:
                sb, best = cand, padded
            cand //= 2
    cb = min(cp, max(1, PRELU_RUN // sb))
    nb = min(np_, max(1, PRELU_TILE // (cb * sb)))
    cb = min(cp, max(cb, PRELU_TILE // (nb * sb)))
    return nb, cb, sb


def _prelu_grid(outer: int, channels: int, inner: int):
    nb, cb, sb = prelu_tiles(outer, channels, inner)
    nt, ct, st = triton.cdiv(outer, nb), triton.cdiv(channels, cb), triton.cdiv(inner, sb)
    return (nb, cb, sb), (nt, ct, st)


def prelu_partial_rows(outer: int, channels: int, inner: int) -> int:
    """Rows of the [rows, channels] partial buffer of prelu_backward for this geometry."""
    _, (nt, _, st) = _prelu_grid(outer, channels, inner)
    return nt * st


def prelu_forward(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, geom: tuple[int, int, int]) -> None:
    """y = PReLU(x, w[c]) over x seen as geom = (outer, channels, inner)."""
    outer, channels, inner = geom
    (nb, cb, sb), (nt, ct, st) = _prelu_grid(outer, channels, inner)
    with _on_device(x):
        _prelu_forward_kernel[(nt * ct * st,)](x, w, y, outer, channels, inner, ct, st, OPMATH=_opmath(x.dtype),
                                               NB=nb, CB=cb, SB=sb, num_warps=PRELU_NUM_WARPS)


def prelu_backward(grad: torch.Tensor, x: torch.Tensor, w: torch.Tensor, dx: torch.Tensor, dw: torch.Tensor,
                   geom: tuple[int, int, int]) -> None:
    """dx and dw (per-channel sum, in dw's dtype) of PReLU; one pass over x and grad, then a fixed-order sum."""
    outer, channels, inner = geom
    (nb, cb, sb), (nt, ct, st) = _prelu_grid(outer, channels, inner)
    partial = torch.empty((nt * st, channels), dtype=_acc_dtype(x.dtype), device=x.device)
    with _on_device(x):
        _prelu_backward_kernel[(nt * ct * st,)](grad, x, w, dx, partial, outer, channels, inner, ct, st,
                                                OPMATH=_opmath(x.dtype), NB=nb, CB=cb, SB=sb,
                                                num_warps=PRELU_NUM_WARPS)
    channel_sum(partial, dw)


def channel_sum(partial: torch.Tensor, out: torch.Tensor) -> None:
    """out[c] = sum over r of partial[r, c] (contiguous [rows, channels]), in a fixed order, rounded to out's dtype."""
    rows, channels = partial.shape
    cb = min(_next_pow2(channels), REDUCE_MAX_CB)
    rb = min(_next_pow2(rows), max(1, REDUCE_TILE // cb))
    with _on_device(partial):
        _channel_sum_kernel[(triton.cdiv(channels, cb),)](partial, out, rows, channels, RB=rb, CB=cb,
                                                          num_warps=REDUCE_NUM_WARPS)
