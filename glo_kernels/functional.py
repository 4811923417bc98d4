"""The functional API: argument checks, backend choice, autograd wiring. Re-exported by ``glo_kernels``."""
from __future__ import annotations

import numbers

import torch

from glo_kernels import backends, reference
from glo_kernels.backends import op_namespace

_FLOAT_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


def _check_x(x, op: str, arg: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"glo_kernels.{op}: argument '{arg}' must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"glo_kernels.{op}: argument '{arg}' must be a float64, float32, bfloat16 or float16 tensor, got {x.dtype}"
        )


def _check_number(v, op: str, arg: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"glo_kernels.{op}: argument '{arg}' must be a real number, got {type(v).__name__}")
    return float(v)


def _check_channel_param(x: torch.Tensor, w, op: str, arg: str) -> None:
    """A learned parameter with 1 element or one per channel (x.size(1)), as torch.nn.functional.prelu."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"glo_kernels.{op}: argument '{arg}' must be a torch.Tensor, got {type(w).__name__}")
    if w.dtype != x.dtype:
        raise TypeError(f"glo_kernels.{op}: argument '{arg}' has dtype {w.dtype} but 'x' has dtype {x.dtype}")
    if w.device != x.device:
        raise ValueError(
            f"glo_kernels.{op}: argument '{arg}' is on {w.device} but 'x' is on {x.device}; they must be on the "
            "same device"
        )
    if w.dim() > 1:
        raise ValueError(f"glo_kernels.{op}: argument '{arg}' must be a scalar or a 1-D tensor, got shape {tuple(w.shape)}")
    if w.numel() != 1:
        channels = x.shape[1] if x.dim() >= 2 else 1
        if x.dim() == 0 or w.numel() != channels:
            raise ValueError(
                f"glo_kernels.{op}: argument '{arg}' has {w.numel()} elements; it must have 1 or as many as the "
                f"channels of 'x' (size of dim 1 = {channels}, input shape {tuple(x.shape)})"
            )


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class _ReLUInplace(torch.autograd.Function):
    """In-place ReLU under autograd: the mutated input is marked dirty; only the 1-bit mask is saved."""

    @staticmethod
    def forward(ctx, x, backend):
        mask = op_namespace(backend).relu_(x, True)
        ctx.mark_dirty(x)
        ctx.save_for_backward(mask)
        ctx.backend = backend
        return x

    @staticmethod
    def backward(ctx, grad_y):
        (mask,) = ctx.saved_tensors
        return op_namespace(ctx.backend).relu_backward(grad_y, mask), None


class _LeakyReLUInplace(torch.autograd.Function):
    """In-place Leaky ReLU under autograd; any slope works since the mask, not the output, drives backward."""

    @staticmethod
    def forward(ctx, x, negative_slope, backend):
        mask = op_namespace(backend).leaky_relu_(x, negative_slope, True)
        ctx.mark_dirty(x)
        ctx.save_for_backward(mask)
        ctx.negative_slope = negative_slope
        ctx.backend = backend
        return x

    @staticmethod
    def backward(ctx, grad_y):
        (mask,) = ctx.saved_tensors
        return op_namespace(ctx.backend).leaky_relu_backward(grad_y, mask, ctx.negative_slope), None, None


def relu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """ReLU, ``max(x, 0)``, as ``torch.nn.functional.relu`` (NaN propagates, gradient 0 at 0).

    Forward and backward are one fused pass each; for backward only a packed 1-bit mask is saved (1/32 of a float32
    input), not the input or output. ``inplace=True`` overwrites and returns ``x`` (autograd stays right).
    Any shape and strides; float64, float32, bfloat16, float16 (16-bit computed in float32).
    """
    _check_x(x, "relu")
    backend = backends.backend_for(x.device, "relu")
    if backend == "reference":
        return reference.relu(x, inplace=inplace)
    ns = op_namespace(backend)
    if inplace:
        if _needs_grad(x):
            return _ReLUInplace.apply(x, backend)
        ns.relu_(x, False)
        return x
    return ns.relu(x, _needs_grad(x))[0]


def leaky_relu(x: torch.Tensor, negative_slope: float = 0.01, inplace: bool = False) -> torch.Tensor:
    """Leaky ReLU, ``x if x > 0 else negative_slope * x``, as ``torch.nn.functional.leaky_relu``.

    Saves a 1-bit mask for backward. In place, unlike PyTorch, any slope (negative too) has a right backward.
    """
    _check_x(x, "leaky_relu")
    negative_slope = _check_number(negative_slope, "leaky_relu", "negative_slope")
    backend = backends.backend_for(x.device, "leaky_relu")
    if backend == "reference":
        return reference.leaky_relu(x, negative_slope, inplace=inplace)
    ns = op_namespace(backend)
    if inplace:
        if _needs_grad(x):
            return _LeakyReLUInplace.apply(x, negative_slope, backend)
        ns.leaky_relu_(x, negative_slope, False)
        return x
    return ns.leaky_relu(x, negative_slope, _needs_grad(x))[0]


def prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PReLU, ``x if x > 0 else weight[c] * x``, as ``torch.nn.functional.prelu``.

    ``weight`` has 1 element or one per channel (C = ``x.size(1)``; 1-D inputs have one channel). Backward computes
    the input gradient and the weight gradient in one pass over x and the upstream gradient, with a deterministic
    per-channel reduction.
    """
    _check_x(x, "prelu")
    _check_channel_param(x, weight, "prelu", "weight")
    backend = backends.backend_for(x.device, "prelu")
    if backend == "reference":
        return reference.prelu(x, weight)
    return op_namespace(backend).prelu(x, weight)
