"""Autograd and fake (meta) kernels of the registered ops, for every namespace that implements them.

The C++ extension (namespace ``glo_kernels``) and the Triton backend (``glo_kernels_triton``) expose the same
schemas; the same registration code serves both. Every forward op's backward calls a registered backward op, and every
backward op has its own autograd formula, so gradgradcheck and torch.compile see registered ops all the way down.
"""
from __future__ import annotations

import torch

from glo_kernels._layout import (channel_view_shape, dense_format, empty_like_dense, fused_dtype_pair, leading_rows,
                                 mask_shape, maxout_format, opmath_dtype, reduce_to_param)
from glo_kernels import reference
from glo_kernels._math import (maxout_gather, pelu_double_backward, softmax_backward_formula, temperature_grad)

__all__ = ["register", "check_dtype_arg", "scalar_type_name", "dense_format", "fused_dtype_pair"]


def _register_autograd(qualname: str, backward, setup_context) -> None:
    """torch.library.register_autograd, unless the operator has an autograd kernel in C++ (csrc/autograd.cpp: the
    forward ops of the glo_kernels namespace, where a Python autograd kernel would cost several microseconds per call,
    grad or not)."""
    # (Only the C++ namespace: torch.library.custom_op, which defines the Triton ops, registers an Autograd kernel of
    # its own that register_autograd replaces.)
    if qualname.startswith("glo_kernels::") and torch._C._dispatch_has_kernel_for_dispatch_key(qualname, "Autograd"):
        return
    torch.library.register_autograd(qualname, backward, setup_context=setup_context)


def _register(ns: str) -> None:
    lib = torch.library
    ops = getattr(torch.ops, ns)

    # ---- fake kernels: outputs of the input's shape, contiguous (element-wise ops: in dense_format(x)); the mask is
    # int32 [mask_length(numel)] or [0] ----
    @lib.register_fake(f"{ns}::relu")
    def _(x, save_mask):
        return empty_like_dense(x), x.new_empty(mask_shape(x, save_mask), dtype=torch.int32)

    @lib.register_fake(f"{ns}::relu_")
    def _(x, save_mask):
        return x.new_empty(mask_shape(x, save_mask), dtype=torch.int32)

    @lib.register_fake(f"{ns}::relu_backward")
    def _(grad, mask):
        return empty_like_dense(grad)

    @lib.register_fake(f"{ns}::leaky_relu")
    def _(x, negative_slope, save_mask):
        return empty_like_dense(x), x.new_empty(mask_shape(x, save_mask), dtype=torch.int32)

    @lib.register_fake(f"{ns}::leaky_relu_")
    def _(x, negative_slope, save_mask):
        return x.new_empty(mask_shape(x, save_mask), dtype=torch.int32)

    @lib.register_fake(f"{ns}::leaky_relu_backward")
    def _(grad, mask, negative_slope):
        return empty_like_dense(grad)

    @lib.register_fake(f"{ns}::prelu")
    def _(x, weight):
        return empty_like_dense(x)

    @lib.register_fake(f"{ns}::prelu_backward")
    def _(grad, x, weight):
        return empty_like_dense(x), weight.new_empty(weight.shape)

    @lib.register_fake(f"{ns}::pelu")
    def _(x, a, b):
        return empty_like_dense(x)

    @lib.register_fake(f"{ns}::pelu_backward")
    def _(grad, x, a, b):
        return empty_like_dense(x), a.new_empty(a.shape), b.new_empty(b.shape)

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

    @lib.register_fake(f"{ns}::elu")
    def _(x, alpha):
        return empty_like_dense(x)

    @lib.register_fake(f"{ns}::elu_")
    def _(x, alpha):
        return None

    @lib.register_fake(f"{ns}::elu_backward")
    def _(grad, saved, alpha, is_result):
        return empty_like_dense(saved)  # (dx follows the format of the saved tensor)

    for name in ("sigmoid", "tanh"):
        lib.register_fake(f"{ns}::{name}", lambda x: empty_like_dense(x))
        lib.register_fake(f"{ns}::{name}_", lambda x: None)
        lib.register_fake(f"{ns}::{name}_backward", lambda grad, y: empty_like_dense(y))

    # ---- autograd: ReLU / Leaky ReLU save only the 1-bit mask ----
    def _save_mask(ctx, inputs, output):
        ctx.set_materialize_grads(False)  # the mask gets no gradient: don't build a zero tensor for it
        ctx.format = dense_format(inputs[0])  # the mask's bit order: grad must come in the same format
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.extra = inputs[1:-1]  # scalar parameters between x and save_mask (the slope)

    def _relu_bwd(ctx, grad_y, _grad_mask):
        if grad_y is None:  # grads are not materialized (see _save_mask)
            return None, None
        (mask,) = ctx.saved_tensors
        return ops.relu_backward(grad_y.contiguous(memory_format=ctx.format), mask), None

    def _leaky_bwd(ctx, grad_y, _grad_mask):
        if grad_y is None:
            return None, None, None
        (mask,) = ctx.saved_tensors
        return ops.leaky_relu_backward(grad_y.contiguous(memory_format=ctx.format), mask, ctx.extra[0]), None, None

    _register_autograd(f"{ns}::relu", _relu_bwd, setup_context=_save_mask)
    _register_autograd(f"{ns}::leaky_relu", _leaky_bwd, setup_context=_save_mask)

    # The backward ops are linear in grad: their own backward applies the same op to the incoming gradient.
    def _save_bwd_mask(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])
        ctx.extra = inputs[2:]
        ctx.format = dense_format(inputs[0])

    def _relu_bwd_bwd(ctx, gg):
        (mask,) = ctx.saved_tensors
        return ops.relu_backward(gg.contiguous(memory_format=ctx.format), mask), None

    def _leaky_bwd_bwd(ctx, gg):
        (mask,) = ctx.saved_tensors
        return ops.leaky_relu_backward(gg.contiguous(memory_format=ctx.format), mask, ctx.extra[0]), None, None

    _register_autograd(f"{ns}::relu_backward", _relu_bwd_bwd, setup_context=_save_bwd_mask)
    _register_autograd(f"{ns}::leaky_relu_backward", _leaky_bwd_bwd, setup_context=_save_bwd_mask)

    # ---- autograd: ELU saves its input (out of place), sigmoid and tanh their output ----
    def _elu_setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.alpha = inputs[1]

    def _elu_bwd(ctx, grad_y):
        (x,) = ctx.saved_tensors
        return ops.elu_backward(grad_y, x, ctx.alpha, False), None

    _register_autograd(f"{ns}::elu", _elu_bwd, setup_context=_elu_setup)

    def _save_output(ctx, inputs, output):
        ctx.save_for_backward(output)

    _register_autograd(f"{ns}::sigmoid", lambda ctx, g: ops.sigmoid_backward(g, ctx.saved_tensors[0]),
                          setup_context=_save_output)
    _register_autograd(f"{ns}::tanh", lambda ctx, g: ops.tanh_backward(g, ctx.saved_tensors[0]),
                          setup_context=_save_output)

    # Double backward of the saved-tensor ops, in plain torch ops: each backward is linear in grad (same op on the
    # incoming gradient) plus the derivative through the saved tensor.
    def _save_bwd_inputs(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], inputs[1])
        ctx.extra = inputs[2:]

    def _elu_bwd_bwd(ctx, gg):
        grad, saved = ctx.saved_tensors
        alpha, is_result = ctx.extra
        d_grad = ops.elu_backward(gg, saved, alpha, is_result)
        zero = torch.zeros((), dtype=saved.dtype, device=saved.device)
        if is_result:  # dx = grad * (y + alpha) unless y > 0
            d_saved = torch.where(saved > 0, zero, gg * grad)
        else:  # dx = grad * alpha * exp(x) unless x > 0
            d_saved = torch.where(saved > 0, zero, gg * grad * alpha * torch.exp(saved))
        return d_grad, d_saved, None, None

    def _sigmoid_bwd_bwd(ctx, gg):
        grad, y = ctx.saved_tensors  # dx = grad * (1 - y) * y
        return ops.sigmoid_backward(gg, y), gg * grad * (1 - 2 * y)

    def _tanh_bwd_bwd(ctx, gg):
        grad, y = ctx.saved_tensors  # dx = grad * (1 - y^2)
        return ops.tanh_backward(gg, y), -2 * gg * grad * y

    _register_autograd(f"{ns}::elu_backward", _elu_bwd_bwd, setup_context=_save_bwd_inputs)
    _register_autograd(f"{ns}::sigmoid_backward", _sigmoid_bwd_bwd, setup_context=_save_bwd_inputs)
    _register_autograd(f"{ns}::tanh_backward", _tanh_bwd_bwd, setup_context=_save_bwd_inputs)

    # ---- autograd: PReLU saves x and the weight ----
    def _prelu_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _prelu_bwd(ctx, grad_y):
        x, weight = ctx.saved_tensors
        grad_x, grad_w = ops.prelu_backward(grad_y, x, weight)
        return grad_x, grad_w

    _register_autograd(f"{ns}::prelu", _prelu_bwd, setup_context=_prelu_setup)

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

    _register_autograd(f"{ns}::prelu_backward", _prelu_bwd_bwd, setup_context=_prelu_bwd_setup)

    # ---- autograd: PELU saves x, a, b; its backward op gets an analytic double backward ----
    def _pelu_setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _pelu_bwd(ctx, grad_y):
        x, a, b = ctx.saved_tensors
        return ops.pelu_backward(grad_y, x, a, b)

    _register_autograd(f"{ns}::pelu", _pelu_bwd, setup_context=_pelu_setup)

    def _pelu_bwd_bwd(ctx, gg_x, gg_a, gg_b):
        grad, x, a, b = ctx.saved_tensors
        return pelu_double_backward(grad, x, a, b, gg_x, gg_a, gg_b)

    _register_autograd(f"{ns}::pelu_backward", _pelu_bwd_bwd, setup_context=_pelu_setup)

    # ---- autograd: Maxout saves the uint8 winner indices ----
    def _maxout_setup(ctx, inputs, output):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(output[1])
        ctx.pieces, ctx.dim = inputs[1], inputs[2]

    def _maxout_bwd(ctx, grad_y, _grad_idx):
        if grad_y is None:
            return None, None, None, None
        (idx,) = ctx.saved_tensors
        return ops.maxout_backward(grad_y, idx, ctx.pieces, ctx.dim), None, None, None

    _register_autograd(f"{ns}::maxout", _maxout_bwd, setup_context=_maxout_setup)

    def _maxout_bwd_setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])
        ctx.pieces, ctx.dim = inputs[2], inputs[3]

    def _maxout_bwd_bwd(ctx, gg):
        (idx,) = ctx.saved_tensors  # maxout_backward is linear in grad: its adjoint gathers gg at the winners
        return maxout_gather(gg, idx, ctx.pieces, ctx.dim), None, None, None

    _register_autograd(f"{ns}::maxout_backward", _maxout_bwd_bwd, setup_context=_maxout_bwd_setup)

    _register_softmax(ns)


# ---------------------------------------------------------------------------------------------------------------
# Softmax family (docs/softmax_contract.md)
# ---------------------------------------------------------------------------------------------------------------
_FLOAT_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)

# c10::ScalarType names, as the C++ error messages print them.
_SCALAR_TYPE_NAMES = {
    torch.float64: "Double",
    torch.float32: "Float",
    torch.float16: "Half",
    torch.bfloat16: "BFloat16",
    torch.int64: "Long",
    torch.int32: "Int",
    torch.int16: "Short",
    torch.int8: "Char",
    torch.uint8: "Byte",
    torch.bool: "Bool",
    torch.complex32: "ComplexHalf",
    torch.complex64: "ComplexFloat",
    torch.complex128: "ComplexDouble",
}


def scalar_type_name(dtype: torch.dtype) -> str:
    """A dtype as c10::ScalarType prints it in the C++ error messages (Float, Half, Int, ...)."""
    name = _SCALAR_TYPE_NAMES.get(dtype)
    if name is None:
        name = str(dtype).removeprefix("torch.")
        name = name[:1].upper() + name[1:]
    return name


def check_dtype_arg(dtype, op: str, arg: str) -> None:
    """The registered ops' check of a ScalarType? argument (the C++ glue's resolve_dtype, same text)."""
    if dtype is not None and dtype not in _FLOAT_DTYPES:
        raise RuntimeError(f"glo_kernels.{op}: argument '{arg}' must be a floating-point dtype (float64, float32, "
                           f"bfloat16 or float16), got {scalar_type_name(dtype)}")


def _register_softmax(ns: str) -> None:
    lib = torch.library
    ops = getattr(torch.ops, ns)

    def _fake_forward(name):
        def fake(x, dim, t, tt, dtype=None):  # y in dtype (x's when None)
            check_dtype_arg(dtype, name, "dtype")
            return x.new_empty(x.shape, dtype=x.dtype if dtype is None else dtype)
        return fake

    def _fake_backward(name):
        def fake(grad, y, dim, t, tt, input_dtype=None):  # dx in input_dtype (grad's when None)
            check_dtype_arg(input_dtype, name, "input_dtype")
            return grad.new_empty(grad.shape, dtype=grad.dtype if input_dtype is None else input_dtype)
        return fake

    for name in ("softmax", "log_softmax"):
        lib.register_fake(f"{ns}::{name}", _fake_forward(name))
        lib.register_fake(f"{ns}::{name}_backward", _fake_backward(name + "_backward"))
    lib.register_fake(f"{ns}::grouped_softmax", lambda x, sizes, dim, t, tt: x.new_empty(x.shape))
    lib.register_fake(f"{ns}::grouped_softmax_backward", lambda grad, y, sizes, dim, t, tt: grad.new_empty(grad.shape))

    @lib.register_fake(f"{ns}::distillation_loss")
    def _(student, teacher, temperature, reduction):
        loss = student.new_empty(student.shape if reduction == "none" else ())
        return loss, student.new_empty((leading_rows(student.shape), 5), dtype=opmath_dtype(student.dtype))

    @lib.register_fake(f"{ns}::distillation_loss_backward")
    def _(grad, student, teacher, stats, temperature, reduction, teacher_grad):
        return student.new_empty(student.shape), student.new_empty(student.shape if teacher_grad else (0,))

    # ---- forward ops: save the output (and x when a temperature tensor needs its gradient). softmax and log_softmax
    # end with dtype (the output's): their backward op then gets x's dtype as input_dtype (dx in x's dtype) ----
    def _make_setup(has_dtype):
        def setup(ctx, inputs, output):
            x, *rest = inputs
            if has_dtype:
                rest = rest[:-1]
                ctx.in_dtype = (x.dtype,) if output.dtype != x.dtype else (None,)
            else:
                ctx.in_dtype = ()
            tt = rest[-1]
            ctx.args = rest[:-1]  # (dim, t) or (group_sizes, dim, t)
            ctx.tt_grad = tt is not None and tt.requires_grad
            ctx.save_for_backward(output, x if ctx.tt_grad else None, tt)

        return setup

    def _make_bwd(name):
        backward_op = getattr(ops, name + "_backward")

        def bwd(ctx, grad_y):
            y, x, tt = ctx.saved_tensors
            dx = backward_op(grad_y, y, *ctx.args, tt, *ctx.in_dtype)
            d_tt = temperature_grad(dx, x, tt) if ctx.tt_grad else None
            return (dx,) + (None,) * len(ctx.args) + (d_tt,) + (None,) * len(ctx.in_dtype)

        return bwd

    for name in ("softmax", "log_softmax", "grouped_softmax"):
        _register_autograd(f"{ns}::{name}", _make_bwd(name), setup_context=_make_setup(name != "grouped_softmax"))

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

    _register_autograd(f"{ns}::softmax_backward", _make_bwd_bwd(False, False), setup_context=_make_bwd_setup(True))
    _register_autograd(f"{ns}::log_softmax_backward", _make_bwd_bwd(True, False), setup_context=_make_bwd_setup(True))
    _register_autograd(f"{ns}::grouped_softmax_backward", _make_bwd_bwd(False, True),
                       setup_context=_make_bwd_setup(False))

    # ---- distillation loss: saves both logits (inputs, no copy) and 5 statistics per row ----
    def _distill_setup(ctx, inputs, output):
        student, teacher, temperature, reduction = inputs
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(output[1])
        ctx.temperature, ctx.reduction = temperature, reduction
        ctx.teacher_grad = teacher.requires_grad
        ctx.save_for_backward(student, teacher, output[1])

    def _distill_bwd(ctx, grad_loss, _grad_stats):
        if grad_loss is None:
            return None, None, None, None
        s, t, stats = ctx.saved_tensors
        ds, dt = ops.distillation_loss_backward(grad_loss, s, t, stats, ctx.temperature, ctx.reduction,
                                                ctx.teacher_grad)
        return ds, (dt if ctx.teacher_grad else None), None, None

    _register_autograd(f"{ns}::distillation_loss", _distill_bwd, setup_context=_distill_setup)

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

    _register_autograd(f"{ns}::distillation_loss_backward", _distill_bwd_bwd, setup_context=_distill_bwd_setup)


_registered: set[str] = set()


def register(ns: str) -> None:
    """Register autograd and fake kernels for the ops of namespace ``ns`` (once)."""
    if ns not in _registered:
        _register(ns)
        _registered.add(ns)
