"""Pure-torch formulas shared by the autograd of the registered ops and by the reference backend.

A leaf module (it imports only torch and glo_kernels._layout): the double backward of the backward ops, in plain
torch ops, differentiable, on any device. (The temperature gradient and its fixed-order sum are C++: csrc/autograd.cpp,
for both operator namespaces.)
"""
from __future__ import annotations

import torch

from glo_kernels._layout import channel_view_shape, opmath_dtype, reduce_to_param


def maxout_gather(t: torch.Tensor, idx: torch.Tensor, pieces: int, dim: int) -> torch.Tensor:
    """t (the input's shape) at each group's winner: the output's shape."""
    dim = dim % t.dim()
    groups = t.shape[dim] // pieces
    grouped = t.unflatten(dim, (groups, pieces))
    return grouped.gather(dim + 1, idx.long().unsqueeze(dim + 1)).squeeze(dim + 1)


def pelu_parts(x, a, b):
    """Broadcast a, b; x >= 0; u = x/b; E = exp(u) on the negative side, 1 on the positive side; r = a/b."""
    shape = channel_view_shape(x, a)
    a_, b_ = a.reshape(shape), b.reshape(shape)
    pos = x >= 0
    u = x / b_
    e = torch.where(pos, torch.ones_like(x), torch.exp(torch.where(pos, torch.zeros_like(x), u)))
    return a_, b_, pos, u, e, a_ / b_


def pelu_double_backward(grad, x, a, b, gg_x, gg_a, gg_b):
    """Vector-Jacobian product of pelu_backward (dx, da, db) w.r.t. (grad, x, a, b), in plain torch ops.

    With r = a/b, u = x/b, E = exp(u) on the negative side (1 on the positive side), s = x >= 0:
      dx = r E g,  da = sum (s ? u : E - 1) g,  db = sum -r u E g.
    """
    a_, b_, pos, u, e, r = pelu_parts(x, a, b)
    shape = a_.shape
    gx = gg_x if gg_x is not None else torch.zeros_like(x)
    ga = gg_a.reshape(shape) if gg_a is not None else torch.zeros_like(a_)
    gb = gg_b.reshape(shape) if gg_b is not None else torch.zeros_like(b_)
    one = torch.ones_like(x)
    d_grad = gx * r * e + ga * torch.where(pos, u, e - 1) + gb * (-r * u * e)
    d_x = (gx * torch.where(pos, torch.zeros_like(x), r * e / b_) + ga * e / b_
           + gb * (-(a_ / (b_ * b_)) * e * torch.where(pos, one, 1 + u))) * grad
    d_a = reduce_to_param(grad * (gx * e / b_ + gb * (-u / b_) * e), a)
    d_b = reduce_to_param(grad * (gx * (-(a_ / (b_ * b_))) * e * torch.where(pos, one, 1 + u)
                                  + ga * (-u / b_) * e
                                  + gb * (a_ / (b_ * b_)) * u * e * torch.where(pos, 2 * one, 2 + u)), b)
    return d_grad, d_x, d_a, d_b


def _temperature_value(t: float, tt, like: torch.Tensor):
    """T as a number, or as a 0-d opmath tensor on like's device when given as a tensor."""
    if tt is None:
        return t
    return tt.to(dtype=opmath_dtype(like.dtype), device=like.device).reshape(())


def _group_sum(t: torch.Tensor, dim: int, group_sizes) -> torch.Tensor:
    """Per-group sums along dim, broadcast back over each group (group_sizes None: one group)."""
    if group_sizes is None:
        return t.sum(dim, keepdim=True)
    return torch.cat([p.sum(dim, keepdim=True).expand_as(p) for p in t.split(list(group_sizes), dim)], dim)


def softmax_backward_formula(grad, y, dim, t, tt, log=False, group_sizes=None, input_dtype=None):
    """The backward ops in plain torch ops (differentiable in grad, y and a temperature tensor): used for their own
    backward (double backward) and as documentation of what the kernels compute. dx in input_dtype (grad's if
    None)."""
    acc = opmath_dtype(grad.dtype)
    squeeze = grad.dim() == 0
    g, yy = grad.to(acc), y.to(acc)
    if squeeze:
        g, yy, dim = g.reshape(1), yy.reshape(1), 0
    inv_t = 1.0 / _temperature_value(t, tt, g)
    if log:
        dx = (g - torch.exp(yy) * _group_sum(g, dim, group_sizes)) * inv_t
    else:
        dx = yy * (g - _group_sum(g * yy, dim, group_sizes)) * inv_t
    return (dx.reshape(()) if squeeze else dx).to(grad.dtype if input_dtype is None else input_dtype)
