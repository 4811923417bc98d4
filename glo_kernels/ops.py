"""Autograd and fake (meta) kernels of the registered ops, for every namespace that implements them.

The C++ extension (namespace ``glo_kernels``) and the Triton backend (``glo_kernels_triton``) expose the same
schemas; the same registration code serves both. Every forward op's backward calls a registered backward op, and every
backward op has its own autograd formula, so gradgradcheck and torch.compile see registered ops all the way down.
"""
from __future__ import annotations

import torch

_MASK_BITS = 32


def _mask_shape(x: torch.Tensor, save_mask: bool) -> tuple:
    return (((x.numel() + _MASK_BITS - 1) // _MASK_BITS) if save_mask else 0,)


def channel_view_shape(x: torch.Tensor, weight: torch.Tensor) -> list[int]:
    """Shape that broadcasts a PReLU-like parameter against x (channels at dim 1, or one shared value)."""
    shape = [1] * x.dim()
    if weight.numel() != 1 and x.dim() >= 2:
        shape[1] = weight.numel()
    return shape


def reduce_to_param(t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Sum a full-size gradient contribution down to the shape of the parameter ``weight``."""
    if weight.numel() == 1 or t.dim() < 2:
        return t.sum().reshape(weight.shape)
    dims = [d for d in range(t.dim()) if d != 1]
    return t.sum(dim=dims).reshape(weight.shape)


def _register(ns: str) -> None:
    lib = torch.library
    ops = getattr(torch.ops, ns)

    # ---- fake kernels: contiguous outputs of the input's shape; the mask is int32 [ceil(numel/32)] or [0] ----
    @lib.register_fake(f"{ns}::relu")
    def _(x, save_mask):
        return x.new_empty(x.shape), x.new_empty(_mask_shape(x, save_mask), dtype=torch.int32)

    @lib.register_fake(f"{ns}::relu_")
    def _(x, save_mask):
        return x.new_empty(_mask_shape(x, save_mask), dtype=torch.int32)

    @lib.register_fake(f"{ns}::relu_backward")
    def _(grad, mask):
        return grad.new_empty(grad.shape)

    @lib.register_fake(f"{ns}::leaky_relu")
    def _(x, negative_slope, save_mask):
        return x.new_empty(x.shape), x.new_empty(_mask_shape(x, save_mask), dtype=torch.int32)

    @lib.register_fake(f"{ns}::leaky_relu_")
    def _(x, negative_slope, save_mask):
        return x.new_empty(_mask_shape(x, save_mask), dtype=torch.int32)

    @lib.register_fake(f"{ns}::leaky_relu_backward")
    def _(grad, mask, negative_slope):
        return grad.new_empty(grad.shape)

    @lib.register_fake(f"{ns}::prelu")
    def _(x, weight):
        return x.new_empty(x.shape)

    @lib.register_fake(f"{ns}::prelu_backward")
    def _(grad, x, weight):
        return x.new_empty(x.shape), weight.new_empty(weight.shape)

    # ---- autograd: ReLU / Leaky ReLU save only the 1-bit mask ----
    def _save_mask(ctx, inputs, output):
        ctx.set_materialize_grads(False)  # the mask gets no gradient: don't build a zero tensor for it
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.extra = inputs[1:-1]  # scalar parameters between x and save_mask (the slope)

    def _relu_bwd(ctx, grad_y, _grad_mask):
        if grad_y is None:  # grads are not materialized (see _save_mask)
            return None, None
        (mask,) = ctx.saved_tensors
        return ops.relu_backward(grad_y, mask), None

    def _leaky_bwd(ctx, grad_y, _grad_mask):
        if grad_y is None:
            return None, None, None
        (mask,) = ctx.saved_tensors
        return ops.leaky_relu_backward(grad_y, mask, ctx.extra[0]), None, None

    lib.register_autograd(f"{ns}::relu", _relu_bwd, setup_context=_save_mask)
    lib.register_autograd(f"{ns}::leaky_relu", _leaky_bwd, setup_context=_save_mask)

    # The backward ops are linear in grad: their own backward applies the same op to the incoming gradient.
    def _save_bwd_mask(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])
        ctx.extra = inputs[2:]

    def _relu_bwd_bwd(ctx, gg):
        (mask,) = ctx.saved_tensors
        return ops.relu_backward(gg, mask), None

    def _leaky_bwd_bwd(ctx, gg):
        (mask,) = ctx.saved_tensors
        return ops.leaky_relu_backward(gg, mask, ctx.extra[0]), None, None

    lib.register_autograd(f"{ns}::relu_backward", _relu_bwd_bwd, setup_context=_save_bwd_mask)
    lib.register_autograd(f"{ns}::leaky_relu_backward", _leaky_bwd_bwd, setup_context=_save_bwd_mask)

    # ---- autograd: PReLU saves x and the weight ----
    def _prelu_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _prelu_bwd(ctx, grad_y):
        x, weight = ctx.saved_tensors
        grad_x, grad_w = ops.prelu_backward(grad_y, x, weight)
        return grad_x, grad_w

    lib.register_autograd(f"{ns}::prelu", _prelu_bwd, setup_context=_prelu_setup)

    # Double backward of PReLU, in plain torch ops (used only by higher-order gradients):
    #   grad_x = where(x > 0, g, w*g),  grad_w = sum_c where(x > 0, 0, x*g)
    def _prelu_bwd_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _prelu_bwd_bwd(ctx, gg_x, gg_w):
        grad, x, weight = ctx.saved_tensors
        shape = channel_view_shape(x, weight)
        w = weight.reshape(shape)
        pos = x > 0
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        if gg_x is None:
            gg_x = torch.zeros_like(x)
        ggw = gg_w.reshape(shape) if gg_w is not None else torch.zeros_like(w)
        d_grad = torch.where(pos, gg_x, w * gg_x + ggw * x)
        d_x = torch.where(pos, zero, ggw * grad)
        d_w = reduce_to_param(torch.where(pos, zero, gg_x * grad), weight)
        return d_grad, d_x, d_w

    lib.register_autograd(f"{ns}::prelu_backward", _prelu_bwd_bwd, setup_context=_prelu_bwd_setup)


_registered: set[str] = set()


def register(ns: str) -> None:
    """Register autograd and fake kernels for the ops of namespace ``ns`` (once)."""
    if ns not in _registered:
        _register(ns)
        _registered.add(ns)
