"""Fake (meta) kernels of the registered ops and the autograd of their backward ops, for both operator namespaces.

Both namespaces, ``glo_kernels`` (the CPU and CUDA kernels) and ``glo_kernels_triton`` (the Triton kernels), are
defined in C++ from one op list (csrc/include/glo/op_list.h), with the same glue and the same C++ autograd of the forward
ops (csrc/autograd.cpp); the same code here serves both. Every forward op's backward calls a registered backward op,
and every backward op has its own autograd formula below (the double backward), so gradgradcheck and torch.compile see
registered ops all the way down.
"""
from __future__ import annotations

import torch

from glo_kernels._layout import (channel_view_shape, dense_format, empty_like_dense, leading_rows, mask_shape,
                                 maxout_format, opmath_dtype, reduce_to_param)
from glo_kernels import reference
from glo_kernels.ops.bias import BIAS
from glo_kernels.ops.gated import GATED
from glo_kernels.ops.unary import UNARY
from glo_kernels._math import maxout_gather, pelu_double_backward, softmax_backward_formula

__all__ = ["register"]


def _register(ns: str) -> None:
    """Fake kernels of every op and the autograd of the backward ops (double backward) of namespace ns. (The forward
    ops' autograd is C++, csrc/autograd.cpp, for both namespaces.)"""
    lib = torch.library
    ops = getattr(torch.ops, ns)

    def autograd(name, backward, setup_context):
        lib.register_autograd(f"{ns}::{name}", backward, setup_context=setup_context)

    # ---- fake kernels: outputs of the input's shape, contiguous (element-wise ops: in dense_format(x)); the mask is
    # int32 [mask_length(numel)] or [0] ----
    def new_mask(x, save_mask):
        return x.new_empty(mask_shape(x, save_mask), dtype=torch.int32)

    lib.register_fake(f"{ns}::relu", lambda x, save_mask: (empty_like_dense(x), new_mask(x, save_mask)))
    lib.register_fake(f"{ns}::relu_", lambda x, save_mask: new_mask(x, save_mask))
    lib.register_fake(f"{ns}::relu_backward", lambda grad, mask: empty_like_dense(grad))
    lib.register_fake(f"{ns}::leaky_relu", lambda x, negative_slope, save_mask: (empty_like_dense(x),
                                                                                new_mask(x, save_mask)))
    lib.register_fake(f"{ns}::leaky_relu_", lambda x, negative_slope, save_mask: new_mask(x, save_mask))
    lib.register_fake(f"{ns}::leaky_relu_backward", lambda grad, mask, negative_slope: empty_like_dense(grad))

    lib.register_fake(f"{ns}::prelu", lambda x, weight: empty_like_dense(x))
    lib.register_fake(f"{ns}::prelu_backward", lambda grad, x, weight: (empty_like_dense(x),
                                                                        weight.new_empty(weight.shape)))
    lib.register_fake(f"{ns}::pelu", lambda x, a, b: empty_like_dense(x))
    lib.register_fake(f"{ns}::pelu_backward", lambda grad, x, a, b: (empty_like_dense(x), a.new_empty(a.shape),
                                                                     b.new_empty(b.shape)))

    @lib.register_fake(f"{ns}::maxout")
    def _(x, pieces, dim, save_indices):
        shape = list(x.shape)
        shape[dim] = shape[dim] // pieces
        fmt = maxout_format(x, dim)
        idx = torch.empty(shape if save_indices else (0,), dtype=torch.uint8, device=x.device,
                          memory_format=fmt if save_indices else torch.contiguous_format)
        return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt), idx

    @lib.register_fake(f"{ns}::maxout_backward")
    def _(grad, indices, pieces, dim):
        shape = list(grad.shape)
        shape[dim] = shape[dim] * pieces
        return torch.empty(shape, dtype=grad.dtype, device=grad.device, memory_format=maxout_format(indices, dim))

    lib.register_fake(f"{ns}::elu", lambda x, alpha: empty_like_dense(x))
    lib.register_fake(f"{ns}::elu_", lambda x, alpha: None)
    # (dx follows the format of the saved tensor)
    lib.register_fake(f"{ns}::elu_backward", lambda grad, saved, alpha, is_result: empty_like_dense(saved))

    lib.register_fake(f"{ns}::softplus", lambda x, beta, threshold: empty_like_dense(x))
    lib.register_fake(f"{ns}::softplus_backward", lambda grad, x, beta, threshold: empty_like_dense(x))

    for spec in UNARY:  # (the family of GLO_UNARY_OPS; glo_kernels/ops/unary.py)
        lib.register_fake(f"{ns}::{spec.name}", lambda x: empty_like_dense(x))
        lib.register_fake(f"{ns}::{spec.name}_", lambda x: None)
        lib.register_fake(f"{ns}::{spec.name}_backward", lambda grad, saved: empty_like_dense(saved))

    # ---- double backward: every backward op is linear in grad (its derivative there is the op itself, applied to
    # the incoming gradient gg), plus the derivative through the saved tensor ----
    def save_grad_and_saved(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])
        ctx.extra = inputs[2:]
        ctx.format = dense_format(inputs[0])

    def relu_bwd_bwd(ctx, gg):  # (the mask's bits follow grad's format)
        _, mask = ctx.saved_tensors
        return ops.relu_backward(gg.contiguous(memory_format=ctx.format), mask), None

    def leaky_bwd_bwd(ctx, gg):
        _, mask = ctx.saved_tensors
        return ops.leaky_relu_backward(gg.contiguous(memory_format=ctx.format), mask, ctx.extra[0]), None, None

    autograd("relu_backward", relu_bwd_bwd, save_grad_and_saved)
    autograd("leaky_relu_backward", leaky_bwd_bwd, save_grad_and_saved)

    def elu_bwd_bwd(ctx, gg):
        grad, saved = ctx.saved_tensors
        alpha, is_result = ctx.extra
        d_grad = ops.elu_backward(gg, saved, alpha, is_result)
        zero = torch.zeros((), dtype=saved.dtype, device=saved.device)
        if is_result:  # dx = grad * (y + alpha) unless y > 0
            d_saved = torch.where(saved > 0, zero, gg * grad)
        else:  # dx = grad * alpha * exp(x) unless x > 0
            d_saved = torch.where(saved > 0, zero, gg * grad * alpha * torch.exp(saved))
        return d_grad, d_saved, None, None

    autograd("elu_backward", elu_bwd_bwd, save_grad_and_saved)

    def softplus_bwd_bwd(ctx, gg):  # dx = grad * sigmoid(x * beta) unless x * beta > threshold
        grad, x = ctx.saved_tensors
        beta, threshold = ctx.extra
        d_grad = ops.softplus_backward(gg, x, beta, threshold)
        u = x * beta
        s = torch.sigmoid(u)
        d_x = torch.where(u > threshold, torch.zeros((), dtype=x.dtype, device=x.device), gg * grad * beta * s * (1 - s))
        return d_grad, d_x, None, None

    autograd("softplus_backward", softplus_bwd_bwd, save_grad_and_saved)

    def unary_bwd_bwd(name, d_saved):
        backward_op = getattr(ops, name + "_backward")

        def bwd_bwd(ctx, gg):
            grad, saved = ctx.saved_tensors
            return backward_op(gg, saved), d_saved(gg, grad, saved)

        return bwd_bwd

    for spec in UNARY:
        autograd(spec.name + "_backward", unary_bwd_bwd(spec.name, spec.d_saved), save_grad_and_saved)

    def save_inputs(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    # ---- gated units (glo_kernels/ops/gated.py): y = act(a) * b. Their backward maps grad to (da, db) =
    # (grad * b * act'(a), grad * act(a)): linear in grad, its adjoint gives d grad = gg_a * b * act'(a) +
    # gg_b * act(a); through a and b: d a = gg_a * grad * b * act''(a) + gg_b * grad * act'(a), d b =
    # gg_a * grad * act'(a) ----
    def gated_double_backward(spec, grad, a, b, gga, ggb):
        act, d_act, d2_act = spec.act_fn(ops), spec.act_grad(ops), spec.act_second()
        gga = torch.zeros_like(a) if gga is None else gga
        ggb = torch.zeros_like(b) if ggb is None else ggb
        gga_act1 = d_act(gga, a)  # gg_a act'(a)
        d_grad = gga_act1 * b + ggb * act(a)
        d_a = d2_act(gga, grad * b, a) + d_act(ggb * grad, a)
        d_b = gga_act1 * grad
        return d_grad, d_a, d_b

    def gated_fakes_and_double_backward(spec):
        name = spec.name

        def half_shape(x):
            return (*x.shape[:-1], x.shape[-1] // 2)

        lib.register_fake(f"{ns}::{name}", lambda x: x.new_empty(half_shape(x)))
        lib.register_fake(f"{ns}::{name}_backward", lambda grad, x: x.new_empty(x.shape))
        lib.register_fake(f"{ns}::{name}_pair", lambda a, b: empty_like_dense(a))
        lib.register_fake(f"{ns}::{name}_pair_backward", lambda grad, a, b: (empty_like_dense(a),
                                                                             empty_like_dense(a)))

        def bwd_bwd(ctx, gg):
            grad, x = ctx.saved_tensors
            a, b = x.chunk(2, dim=-1)
            gga, ggb = gg.chunk(2, dim=-1)
            d_grad, d_a, d_b = gated_double_backward(spec, grad, a, b, gga, ggb)
            return d_grad, torch.cat([d_a, d_b], dim=-1)

        def pair_bwd_bwd(ctx, gga, ggb):
            grad, a, b = ctx.saved_tensors
            return gated_double_backward(spec, grad, a, b, gga, ggb)

        autograd(f"{name}_backward", bwd_bwd, save_inputs)
        autograd(f"{name}_pair_backward", pair_bwd_bwd, save_inputs)

    for spec in GATED:
        gated_fakes_and_double_backward(spec)

    # ---- bias + activation (glo_kernels/ops/bias.py): (dx, dbias) = (grad * act'(u), sum over the rows of dx), u =
    # x + bias. Linear in grad: d grad = act'(u) * gg, gg = gg_dx + gg_dbias (dbias's adjoint broadcasts it over the
    # rows); through u: d x = gg * grad * act''(u), d bias its sum over the rows ----
    def bias_fakes_and_double_backward(spec):
        name = spec.name
        lib.register_fake(f"{ns}::{name}", lambda x, bias: x.new_empty(x.shape))
        lib.register_fake(f"{ns}::{name}_backward", lambda grad, x, bias: (x.new_empty(x.shape),
                                                                           bias.new_empty(bias.shape)))

        def bwd_bwd(ctx, gg_dx, gg_dbias):
            grad, x, bias = ctx.saved_tensors
            if gg_dx is None:
                gg_dx = torch.zeros_like(x)
            gg = gg_dx if gg_dbias is None else gg_dx + gg_dbias
            u = x + bias
            d_grad = spec.act_grad(ops)(gg, u)
            d_x = spec.act_second()(gg, grad, u)
            d_bias = d_x.reshape(-1, bias.shape[0]).sum(0) if x.numel() else torch.zeros_like(bias)
            return d_grad, d_x, d_bias

        autograd(f"{name}_backward", bwd_bwd, save_inputs)

    for spec in BIAS:
        bias_fakes_and_double_backward(spec)

    # PReLU: grad_x = where(x > 0, g, w*g),  grad_w = sum_c where(x > 0, 0, x*g)
    def prelu_bwd_bwd(ctx, gg_x, gg_w):
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

    autograd("prelu_backward", prelu_bwd_bwd, save_inputs)

    def pelu_bwd_bwd(ctx, gg_x, gg_a, gg_b):
        grad, x, a, b = ctx.saved_tensors
        return pelu_double_backward(grad, x, a, b, gg_x, gg_a, gg_b)

    autograd("pelu_backward", pelu_bwd_bwd, save_inputs)

    def maxout_bwd_setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])
        ctx.pieces, ctx.dim = inputs[2], inputs[3]

    def maxout_bwd_bwd(ctx, gg):
        (idx,) = ctx.saved_tensors  # maxout_backward is linear in grad: its adjoint gathers gg at the winners
        return maxout_gather(gg, idx, ctx.pieces, ctx.dim), None, None, None

    autograd("maxout_backward", maxout_bwd_bwd, maxout_bwd_setup)

    _register_softmax(ns)


# ---------------------------------------------------------------------------------------------------------------
# Softmax family (docs/softmax_contract.md)
# ---------------------------------------------------------------------------------------------------------------
def _register_softmax(ns: str) -> None:
    lib = torch.library

    def autograd(name, backward, setup_context):
        lib.register_autograd(f"{ns}::{name}", backward, setup_context=setup_context)

    # y in dtype (x's when None); dx in input_dtype (grad's when None). (A dtype that is not floating passes here:
    # the op itself refuses it when it runs, and the functional API before it is traced.)
    for name in ("softmax", "log_softmax"):
        lib.register_fake(f"{ns}::{name}", lambda x, dim, t, tt, dtype=None: x.new_empty(
            x.shape, dtype=x.dtype if dtype is None else dtype))
        lib.register_fake(f"{ns}::{name}_backward", lambda grad, y, dim, t, tt, input_dtype=None: grad.new_empty(
            grad.shape, dtype=grad.dtype if input_dtype is None else input_dtype))
    lib.register_fake(f"{ns}::grouped_softmax", lambda x, sizes, dim, t, tt: x.new_empty(x.shape))
    lib.register_fake(f"{ns}::grouped_softmax_backward", lambda grad, y, sizes, dim, t, tt: grad.new_empty(grad.shape))

    @lib.register_fake(f"{ns}::distillation_loss")
    def _(student, teacher, temperature, reduction):
        loss = student.new_empty(student.shape if reduction == "none" else ())
        return loss, student.new_empty((leading_rows(student.shape), 5), dtype=opmath_dtype(student.dtype))

    @lib.register_fake(f"{ns}::distillation_loss_backward")
    def _(grad, student, teacher, stats, temperature, reduction, teacher_grad):
        return student.new_empty(student.shape), student.new_empty(student.shape if teacher_grad else (0,))

    # ---- backward ops: their backward differentiates softmax_backward_formula (plain torch ops); softmax_backward and
    # log_softmax_backward end with input_dtype (dx's) ----
    def _make_bwd_setup(has_dtype):
        def bwd_setup(ctx, inputs, output):
            grad, y, *rest = inputs
            ctx.in_dtype = (rest.pop(),) if has_dtype else ()
            tt = rest[-1]
            ctx.args = rest[:-1]
            ctx.save_for_backward(grad, y, tt)

        return bwd_setup

    def _make_bwd_bwd(log, grouped):
        def bwd_bwd(ctx, gg):
            grad, y, tt = ctx.saved_tensors
            if grouped:
                group_sizes, dim, t = ctx.args
            else:
                (dim, t), group_sizes = ctx.args, None
            with torch.enable_grad():
                g_ = grad.detach().requires_grad_()
                y_ = y.detach().requires_grad_()
                tt_ = tt.detach().requires_grad_() if tt is not None and tt.requires_grad else None
                out = softmax_backward_formula(g_, y_, dim, t, tt_ if tt_ is not None else tt, log, group_sizes,
                                               *ctx.in_dtype)
                wrt = [g_, y_] + ([tt_] if tt_ is not None else [])
                grads = torch.autograd.grad(out, wrt, gg, allow_unused=True)
            d_tt = grads[2] if tt_ is not None else None
            return (grads[0], grads[1]) + (None,) * len(ctx.args) + (d_tt,) + (None,) * len(ctx.in_dtype)

        return bwd_bwd

    autograd("softmax_backward", _make_bwd_bwd(False, False), setup_context=_make_bwd_setup(True))
    autograd("log_softmax_backward", _make_bwd_bwd(True, False), setup_context=_make_bwd_setup(True))
    autograd("grouped_softmax_backward", _make_bwd_bwd(False, True), setup_context=_make_bwd_setup(False))

    # ---- distillation loss: its backward op differentiates the reference formula (plain torch ops) ----
    def _distill_bwd_setup(ctx, inputs, output):
        grad, s, t, stats, temperature, reduction, teacher_grad = inputs
        ctx.temperature, ctx.reduction, ctx.teacher_grad = temperature, reduction, teacher_grad
        ctx.save_for_backward(grad, s, t)

    def _distill_bwd_bwd(ctx, gg_s, gg_t):
        grad, s, t = ctx.saved_tensors
        acc = opmath_dtype(s.dtype)
        with torch.enable_grad():
            g_ = grad.detach().to(acc).requires_grad_()
            s_ = s.detach().to(acc).requires_grad_()
            t_ = t.detach().to(acc).requires_grad_()
            loss = reference.distillation_loss(s_, t_, ctx.temperature, ctx.reduction)
            first = torch.autograd.grad(loss, [s_, t_], g_, create_graph=True)
            outs, ggs = [first[0]], [gg_s if gg_s is not None else torch.zeros_like(first[0])]
            if ctx.teacher_grad and gg_t is not None:
                outs.append(first[1])
                ggs.append(gg_t.to(acc))
            ggs[0] = ggs[0].to(acc)
            d_g, d_s, d_t = torch.autograd.grad(outs, [g_, s_, t_], ggs, allow_unused=True)

        def cast(v, like):
            return None if v is None else v.to(like.dtype)

        return cast(d_g, grad), cast(d_s, s), cast(d_t, t), None, None, None, None

    autograd("distillation_loss_backward", _distill_bwd_bwd, setup_context=_distill_bwd_setup)


_registered: set[str] = set()


def register(ns: str) -> None:
    """Register autograd and fake kernels for the ops of namespace ``ns`` (once)."""
    if ns not in _registered:
        _register(ns)
        _registered.add(ns)
