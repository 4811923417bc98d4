"""The softmax family on Triton: ``torch.ops.glo_kernels_triton.{softmax, log_softmax, softmax_backward,
log_softmax_backward, grouped_softmax, grouped_softmax_backward, distillation_loss, distillation_loss_backward}``.

Same schemas, checks (error texts), temperature handling, allocation and loss reduction as the C++ glue
(csrc/include/glo/softmax_impls.h); the contract is docs/softmax_contract.md. The kernels are
glo_kernels/triton/softmax_kernels.py. Autograd and fake kernels are registered in glo_kernels/ops.py, not here.
Imported at the end of glo_kernels/triton/ops.py.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from glo_kernels._layout import fused_dtype_pair
from glo_kernels.ops import check_dtype_arg

from . import softmax_kernels as _sk
from .kernels import _acc_dtype
from .ops import NAMESPACE, _check_floating, _check_same_device, _cpp_double, _sizes, _type_name

_REDUCTIONS = ("none", "mean", "sum", "batchmean")
_DISTILL_STATS = 5
_KL = 4


# ---------------------------------------------------------------------------------------------------------------
# Checks and glue (softmax_impls.h).
# ---------------------------------------------------------------------------------------------------------------
def _check_temperature_value(t: float, op: str) -> None:
    if not (math.isfinite(t) and t > 0):
        raise RuntimeError(f"glo_kernels.{op}: argument 'temperature' must be a finite number > 0, got "
                           f"{_cpp_double(t)}")


def _make_temperature(x: Tensor, t: float, tt: Optional[Tensor], op: str) -> tuple[float, Optional[Tensor]]:
    """(T, None) for a host value (the float, or a CPU temperature_tensor's value), both checked; (t, tensor) for a
    temperature_tensor on x's device: a 1-element opmath tensor read by the kernel (no synchronization, no check)."""
    if tt is None:
        _check_temperature_value(t, op)
        return t, None
    if not (tt.numel() == 1 and tt.is_floating_point() and (tt.device == x.device or tt.device.type == "cpu")):
        raise RuntimeError(f"glo_kernels.{op}: argument 'temperature_tensor' must be a floating-point tensor of one "
                           f"element on {x.device} or the CPU, got {_type_name(tt.dtype)} of shape {_sizes(tt)} on "
                           f"{tt.device}")
    if tt.device.type == "cpu":
        value = float(tt.detach().to(torch.float64).reshape(()))
        _check_temperature_value(value, op)
        return value, None
    return t, tt.detach().to(dtype=_acc_dtype(x.dtype), device=x.device).reshape(1).contiguous()


def _wrap_dim(dim: int, t: Tensor, op: str) -> int:
    nd = max(t.dim(), 1)
    if not (-nd <= dim < nd):
        raise RuntimeError(f"glo_kernels.{op}: argument 'dim' ({dim}) is out of range for a {t.dim()}-d tensor")
    return dim + nd if dim < 0 else dim


def _geometry(t: Tensor, dim: int) -> tuple[int, int, int]:
    if t.dim() == 0:
        return 1, 1, 1
    outer = inner = 1
    for d in range(dim):
        outer *= t.size(d)
    for d in range(dim + 1, t.dim()):
        inner *= t.size(d)
    return outer, t.size(dim), inner


def _check_like(grad: Tensor, other: Tensor, op: str, name: str) -> None:
    _check_same_device(grad, other, op, "grad", name)
    if other.shape != grad.shape or other.dtype != grad.dtype:
        raise RuntimeError(f"glo_kernels.{op}: argument '{name}' ({_type_name(other.dtype)} {_sizes(other)}) must "
                           f"have the shape and dtype of 'grad' ({_type_name(grad.dtype)} {_sizes(grad)})")


def _new_like(t: Tensor) -> Tensor:
    return torch.empty(t.shape, dtype=t.dtype, device=t.device)


def _forward(x: Tensor, dim: int, temperature: float, tt: Optional[Tensor], dtype: Optional[torch.dtype], log: bool,
             op: str) -> Tensor:
    """y in dtype (x's when None): one kernel for x's dtype or a fused pair (the kernel loads x's dtype and stores
    y's), else x cast to dtype (one contiguous copy) and the op."""
    _check_floating(x, op, "x")
    check_dtype_arg(dtype, op, "dtype")
    out = x.dtype if dtype is None else dtype
    dim = _wrap_dim(dim, x, op)
    fused = out == x.dtype or fused_dtype_pair(x.dtype, out)
    xc = x.contiguous() if fused else x.to(dtype=out, memory_format=torch.contiguous_format)
    t, t_tensor = _make_temperature(xc, temperature, tt, op)
    y = torch.empty(xc.shape, dtype=out, device=xc.device)
    if xc.numel() > 0:
        _sk.softmax_forward(xc, y, _geometry(xc, dim), t, t_tensor, log)
    return y


def _backward(grad: Tensor, y: Tensor, dim: int, temperature: float, tt: Optional[Tensor],
              input_dtype: Optional[torch.dtype], log: bool, op: str) -> Tensor:
    """dx in input_dtype (grad's when None): one kernel for a fused pair (loads grad's dtype, stores dx's), else dx
    in grad's dtype cast to input_dtype (the backward of the forward's cast)."""
    _check_floating(grad, op, "grad")
    _check_like(grad, y, op, "y")
    check_dtype_arg(input_dtype, op, "input_dtype")
    into = grad.dtype if input_dtype is None else input_dtype
    dim = _wrap_dim(dim, grad, op)
    t, t_tensor = _make_temperature(grad, temperature, tt, op)
    gc = grad.contiguous()
    dx = torch.empty(gc.shape, dtype=into if fused_dtype_pair(into, gc.dtype) else gc.dtype, device=gc.device)
    if gc.numel() > 0:
        _sk.softmax_backward(gc, y.contiguous(), dx, _geometry(gc, dim), t, t_tensor, log)
    return dx if dx.dtype == into else dx.to(into)


def _group_offsets(x: Tensor, sizes: list[int], geom: tuple[int, int, int], dim: int, op: str) -> Tensor:
    sizes = [int(s) for s in sizes]
    if not (sizes and all(s >= 1 for s in sizes) and sum(sizes) == geom[1]):
        raise RuntimeError(f"glo_kernels.{op}: argument 'group_sizes' must be positive sizes summing to the size of "
                           f"dim {dim} ({geom[1]}), got {sizes}")
    offsets = [0]
    for s in sizes:
        offsets.append(offsets[-1] + s)
    return torch.tensor(offsets, dtype=torch.int64).to(x.device)


# ---------------------------------------------------------------------------------------------------------------
# Softmax, log-softmax and their backward ops.
# ---------------------------------------------------------------------------------------------------------------
@torch.library.custom_op(f"{NAMESPACE}::softmax", mutates_args=(),
                         schema="(Tensor x, int dim, float temperature, Tensor? temperature_tensor, "
                                "ScalarType? dtype=None) -> Tensor")
def softmax(x: Tensor, dim: int, temperature: float, temperature_tensor: Optional[Tensor],
            dtype: Optional[torch.dtype] = None) -> Tensor:
    """softmax(x / T) along dim, computed as exp((x - max) * inv_t) / sum, in dtype (x's when None)."""
    return _forward(x, dim, temperature, temperature_tensor, dtype, False, "softmax")


@torch.library.custom_op(f"{NAMESPACE}::log_softmax", mutates_args=(),
                         schema="(Tensor x, int dim, float temperature, Tensor? temperature_tensor, "
                                "ScalarType? dtype=None) -> Tensor")
def log_softmax(x: Tensor, dim: int, temperature: float, temperature_tensor: Optional[Tensor],
                dtype: Optional[torch.dtype] = None) -> Tensor:
    """log_softmax(x / T) along dim: (x - max) * inv_t - log(sum), in dtype (x's when None)."""
    return _forward(x, dim, temperature, temperature_tensor, dtype, True, "log_softmax")


@torch.library.custom_op(f"{NAMESPACE}::softmax_backward", mutates_args=(),
                         schema="(Tensor grad, Tensor y, int dim, float temperature, Tensor? temperature_tensor, "
                                "ScalarType? input_dtype=None) -> Tensor")
def softmax_backward(grad: Tensor, y: Tensor, dim: int, temperature: float, temperature_tensor: Optional[Tensor],
                     input_dtype: Optional[torch.dtype] = None) -> Tensor:
    """dx = y * (grad - sum(grad * y)) * inv_t from the forward's output y, in input_dtype (grad's when None)."""
    return _backward(grad, y, dim, temperature, temperature_tensor, input_dtype, False, "softmax_backward")


@torch.library.custom_op(f"{NAMESPACE}::log_softmax_backward", mutates_args=(),
                         schema="(Tensor grad, Tensor y, int dim, float temperature, Tensor? temperature_tensor, "
                                "ScalarType? input_dtype=None) -> Tensor")
def log_softmax_backward(grad: Tensor, y: Tensor, dim: int, temperature: float,
                         temperature_tensor: Optional[Tensor], input_dtype: Optional[torch.dtype] = None) -> Tensor:
    """dx = (grad - exp(y) * sum(grad)) * inv_t from the forward's output y, in input_dtype (grad's when None)."""
    return _backward(grad, y, dim, temperature, temperature_tensor, input_dtype, True, "log_softmax_backward")


# ---------------------------------------------------------------------------------------------------------------
# Grouped softmax: consecutive groups of group_sizes along dim, each its own softmax.
# ---------------------------------------------------------------------------------------------------------------
@torch.library.custom_op(f"{NAMESPACE}::grouped_softmax", mutates_args=(),
                         schema="(Tensor x, int[] group_sizes, int dim, float temperature, "
                                "Tensor? temperature_tensor) -> Tensor")
def grouped_softmax(x: Tensor, group_sizes: list[int], dim: int, temperature: float,
                    temperature_tensor: Optional[Tensor]) -> Tensor:
    """A softmax per group of consecutive elements along dim."""
    op = "grouped_softmax"
    _check_floating(x, op, "x")
    dim = _wrap_dim(dim, x, op)
    t, t_tensor = _make_temperature(x, temperature, temperature_tensor, op)
    xc = x.contiguous()
    geom = _geometry(xc, dim)
    offsets = _group_offsets(xc, group_sizes, geom, dim, op)
    y = _new_like(xc)
    if xc.numel() > 0:
        _sk.grouped_softmax_forward(xc, y, geom, offsets, len(group_sizes), t, t_tensor,
                                    max_group=max(int(g) for g in group_sizes))
    return y


@torch.library.custom_op(f"{NAMESPACE}::grouped_softmax_backward", mutates_args=(),
                         schema="(Tensor grad, Tensor y, int[] group_sizes, int dim, float temperature, "
                                "Tensor? temperature_tensor) -> Tensor")
def grouped_softmax_backward(grad: Tensor, y: Tensor, group_sizes: list[int], dim: int, temperature: float,
                             temperature_tensor: Optional[Tensor]) -> Tensor:
    """dx of grouped_softmax from its output y (a dot product per group)."""
    op = "grouped_softmax_backward"
    _check_floating(grad, op, "grad")
    _check_like(grad, y, op, "y")
    dim = _wrap_dim(dim, grad, op)
    t, t_tensor = _make_temperature(grad, temperature, temperature_tensor, op)
    gc = grad.contiguous()
    geom = _geometry(gc, dim)
    offsets = _group_offsets(gc, group_sizes, geom, dim, op)
    dx = _new_like(gc)
    if gc.numel() > 0:
        _sk.grouped_softmax_backward(gc, y.contiguous(), dx, geom, offsets, len(group_sizes), t, t_tensor,
                                     max_group=max(int(g) for g in group_sizes))
    return dx


# ---------------------------------------------------------------------------------------------------------------
# Distillation loss: T^2 KL(softmax(teacher / T) || softmax(student / T)) over the last dim, reduced.
# ---------------------------------------------------------------------------------------------------------------
def _check_pair(s: Tensor, t: Tensor, op: str) -> None:
    _check_floating(s, op, "student")
    _check_floating(t, op, "teacher")
    _check_same_device(s, t, op, "student", "teacher")
    if s.shape != t.shape or s.dtype != t.dtype:
        raise RuntimeError(f"glo_kernels.{op}: argument 'teacher' ({_type_name(t.dtype)} {_sizes(t)}) must have the "
                           f"shape and dtype of 'student' ({_type_name(s.dtype)} {_sizes(s)})")
    if s.dim() < 1:
        raise RuntimeError(f"glo_kernels.{op}: argument 'student' must have at least one dimension")


def _check_reduction(r: str, op: str) -> str:
    if r not in _REDUCTIONS:
        raise RuntimeError(f"glo_kernels.{op}: argument 'reduction' must be one of 'none', 'mean', 'sum', "
                           f"'batchmean', got '{r}'")
    return r


def _leading_rows(s: Tensor) -> int:
    n = 1
    for d in range(s.dim() - 1):
        n *= s.size(d)
    return n


def _loss_scale(r: str, s: Tensor, t: float) -> float:
    """T^2 times the reduction's factor (as C++ doubles: x / 0 = inf)."""
    t2 = t * t
    if r == "mean":
        return t2 / s.numel() if s.numel() else math.inf
    if r == "batchmean":
        return t2 / s.size(0) if s.size(0) else math.inf
    return t2


@torch.library.custom_op(f"{NAMESPACE}::distillation_loss", mutates_args=(),
                         schema="(Tensor student, Tensor teacher, float temperature, str reduction) "
                                "-> (Tensor, Tensor)")
def distillation_loss(student: Tensor, teacher: Tensor, temperature: float, reduction: str) -> tuple[Tensor, Tensor]:
    """(loss, stats): loss = T^2 KL(softmax(teacher / T) || softmax(student / T)) over the last dim, reduced
    ("none": the pointwise loss); stats = [rows, 5] opmath (m_s, logZ_s, m_t, logZ_t, kl_row) for the backward."""
    op = "distillation_loss"
    _check_pair(student, teacher, op)
    _check_temperature_value(temperature, op)
    r = _check_reduction(reduction, op)
    s, tc = student.contiguous(), teacher.contiguous()
    cols = s.size(-1)
    rows = _leading_rows(s)
    stats = torch.zeros((rows, _DISTILL_STATS), dtype=_acc_dtype(s.dtype), device=s.device)
    loss_none = _new_like(s) if r == "none" else None
    if s.numel() > 0:
        _sk.distill_forward(s, tc, stats, loss_none, rows, cols, temperature)
    if r == "none":
        return loss_none, stats
    kl = stats.select(1, _KL)
    if kl.device.type == "cpu":  # as the C++ glue: a sequential double sum (torch's CPU sum depends on the threads)
        total = torch.cumsum(kl.double(), 0)[-1] if kl.numel() else kl.new_zeros((), dtype=torch.float64)
        loss = (total * _loss_scale(r, s, temperature)).to(s.dtype)
    else:
        loss = kl.sum().mul(_loss_scale(r, s, temperature)).to(s.dtype)
    return loss, stats


@torch.library.custom_op(f"{NAMESPACE}::distillation_loss_backward", mutates_args=(),
                         schema="(Tensor grad, Tensor student, Tensor teacher, Tensor stats, float temperature, "
                                "str reduction, bool teacher_grad) -> (Tensor, Tensor)")
def distillation_loss_backward(grad: Tensor, student: Tensor, teacher: Tensor, stats: Tensor, temperature: float,
                               reduction: str, teacher_grad: bool) -> tuple[Tensor, Tensor]:
    """(d student, d teacher) of distillation_loss from the saved stats; d teacher is an empty [0] tensor unless
    teacher_grad."""
    op = "distillation_loss_backward"
    _check_pair(student, teacher, op)
    _check_temperature_value(temperature, op)
    r = _check_reduction(reduction, op)
    _check_floating(grad, op, "grad")
    _check_same_device(student, grad, op, "student", "grad")
    _check_same_device(student, stats, op, "student", "stats")
    s, tc = student.contiguous(), teacher.contiguous()
    cols = s.size(-1)
    rows = _leading_rows(s)
    opmath = _acc_dtype(s.dtype)
    if not (stats.dim() == 2 and stats.size(1) == _DISTILL_STATS and stats.dtype == opmath
            and stats.size(0) == rows):
        raise RuntimeError(f"glo_kernels.{op}: argument 'stats' must be the [{rows}, {_DISTILL_STATS}] "
                           f"{_type_name(opmath)} statistics saved by distillation_loss, got "
                           f"{_type_name(stats.dtype)} of shape {_sizes(stats)}")
    none = r == "none"
    if none:
        if grad.shape != s.shape:
            raise RuntimeError(f"glo_kernels.{op}: argument 'grad' must have the shape of 'student' {_sizes(s)} for "
                               f"reduction 'none', got {_sizes(grad)}")
    elif not (grad.numel() == 1 and grad.dim() == 0):
        raise RuntimeError(f"glo_kernels.{op}: argument 'grad' must be 0-d for a reduced loss, got shape "
                           f"{_sizes(grad)}")
    ds = _new_like(s)
    dt = _new_like(s) if teacher_grad else torch.empty((0,), dtype=s.dtype, device=s.device)
    if s.numel() > 0:
        g = grad.to(s.dtype).contiguous() if none else grad.to(opmath).reshape(1).contiguous()
        _sk.distill_backward(g, s, tc, stats.contiguous(), ds, dt if teacher_grad else None, rows, cols, temperature,
                             none, _loss_scale(r, s, temperature))
    return ds, dt
