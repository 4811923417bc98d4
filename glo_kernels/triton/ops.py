"""The operators of glo_kernels on Triton: ``torch.ops.glo_kernels_triton.*``.

Same schemas and semantics as the C++ operators ``torch.ops.glo_kernels.*`` (csrc/registration.cpp), with the glue
of csrc/include/glo/op_impls.h written once below: argument checks with the same error texts, inputs made contiguous,
outputs freshly allocated and contiguous (never aliasing an input; the mask has 0 elements unless save_mask), empty
tensors handled without a launch, in-place operators on a non-contiguous x computed on a contiguous copy and copied
back. The kernels (glo_kernels/triton/kernels.py) run on the tensors' device: CUDA, or CPU under the Triton
interpreter (TRITON_INTERPRET=1).

Only the device implementations are defined here; autograd and fake (meta) kernels of both namespaces are registered
by name in glo_kernels/ops.py.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import kernels as _k

NAMESPACE = "glo_kernels_triton"

_MASK_BITS = 32

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
_SUPPORTED = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


def _type_name(dtype: torch.dtype) -> str:
    name = _SCALAR_TYPE_NAMES.get(dtype)
    if name is None:
        name = str(dtype).removeprefix("torch.")
        name = name[:1].upper() + name[1:]
    return name


def _sizes(t: Tensor) -> str:
    return str(list(t.shape))


# ---------------------------------------------------------------------------------------------------------------
# Checks, allocation and geometry (op_impls.h).
# ---------------------------------------------------------------------------------------------------------------
def _check_floating(t: Tensor, op: str, arg: str) -> None:
    if not t.is_floating_point():
        raise RuntimeError(f"glo_kernels.{op}: argument '{arg}' must be a floating-point tensor (float64, float32, "
                           f"bfloat16 or float16), got {_type_name(t.dtype)}")
    if t.dtype not in _SUPPORTED:
        raise RuntimeError(f"glo_kernels.{op}: argument '{arg}' has unsupported dtype {_type_name(t.dtype)}")


def _check_same_device(a: Tensor, b: Tensor, op: str, arg_a: str, arg_b: str) -> None:
    if a.device != b.device:
        raise RuntimeError(f"glo_kernels.{op}: argument '{arg_b}' is on {b.device} but '{arg_a}' is on {a.device}; "
                           f"they must be on the same device")


def _mask_words(numel: int) -> int:
    return (numel + _MASK_BITS - 1) // _MASK_BITS


def _check_mask(grad: Tensor, mask: Tensor, op: str) -> None:
    _check_same_device(grad, mask, op, "grad", "mask")
    words = _mask_words(grad.numel())
    if not (mask.dtype == torch.int32 and mask.dim() == 1 and mask.numel() == words):
        raise RuntimeError(f"glo_kernels.{op}: argument 'mask' must be the int32 mask of {words} words saved by the "
                           f"forward for {grad.numel()} elements; got {_type_name(mask.dtype)} of shape "
                           f"{_sizes(mask)} (was the forward called with save_mask=False?)")


def _new_mask(x: Tensor, save: bool) -> Tensor:
    return torch.empty((_mask_words(x.numel()) if save else 0,), dtype=torch.int32, device=x.device)


def _channel_geometry(x: Tensor, w: Tensor, op: str, arg: str) -> tuple[int, int, int]:
    """(outer, channels, inner) of x for a weight of 1 element (shared) or one per channel (dim 1);
    torch.nn.functional.prelu's rules: 1-D inputs have a single channel."""
    _check_same_device(x, w, op, "x", arg)
    if w.dtype != x.dtype:
        raise RuntimeError(f"glo_kernels.{op}: argument '{arg}' has dtype {_type_name(w.dtype)} but 'x' has dtype "
                           f"{_type_name(x.dtype)}; they must match")
    if w.dim() > 1:
        raise RuntimeError(f"glo_kernels.{op}: argument '{arg}' must be a scalar or a 1-D tensor, got {w.dim()} "
                           f"dimensions")
    if w.numel() == 1:
        return 1, 1, x.numel()
    channels = x.size(1) if x.dim() >= 2 else 1
    if not (x.dim() >= 1 and w.numel() == channels):
        raise RuntimeError(f"glo_kernels.{op}: argument '{arg}' has {w.numel()} elements; it must have 1 or as many "
                           f"as the channels of 'x' (size of dim 1 = {channels}, input shape {_sizes(x)})")
    inner = 1
    for d in range(2, x.dim()):
        inner *= x.size(d)
    return x.size(0), channels, inner


def _mask_op(x: Tensor, save_mask: bool, op: str, kind: int, slope: float) -> tuple[Tensor, Tensor]:
    _check_floating(x, op, "x")
    xc = x.contiguous()
    y = torch.empty(xc.shape, dtype=xc.dtype, device=xc.device)
    mask = _new_mask(xc, save_mask)
    if xc.numel() > 0:
        _k.mask_forward(xc, y, mask, kind, slope)
    return y, mask


def _mask_op_(x: Tensor, save_mask: bool, op: str, kind: int, slope: float) -> Tensor:
    _check_floating(x, op, "x")
    mask = _new_mask(x, save_mask)
    if x.numel() == 0:
        return mask
    if x.is_contiguous():
        _k.mask_forward(x, x, mask, kind, slope)
    else:
        tmp = x.contiguous()
        _k.mask_forward(tmp, tmp, mask, kind, slope)
        x.copy_(tmp)
    return mask


def _mask_backward(grad: Tensor, mask: Tensor, op: str, kind: int, slope: float) -> Tensor:
    _check_floating(grad, op, "grad")
    _check_mask(grad, mask, op)
    gc = grad.contiguous()
    dx = torch.empty(gc.shape, dtype=gc.dtype, device=gc.device)
    if gc.numel() > 0:
        _k.mask_backward(gc, mask.contiguous(), dx, kind, slope)
    return dx


# ---------------------------------------------------------------------------------------------------------------
# ReLU
# ---------------------------------------------------------------------------------------------------------------
@torch.library.custom_op(f"{NAMESPACE}::relu", mutates_args=())
def relu(x: Tensor, save_mask: bool) -> tuple[Tensor, Tensor]:
    """(y, mask): y = relu(x); mask = packed int32 bits of !(x <= 0), empty unless save_mask."""
    return _mask_op(x, save_mask, "relu", _k.RELU, 0.0)


@torch.library.custom_op(f"{NAMESPACE}::relu_", mutates_args=("x",),
                         schema="(Tensor(a!) x, bool save_mask) -> Tensor")
def relu_(x: Tensor, save_mask: bool) -> Tensor:
    """In-place ReLU on x; returns the mask."""
    return _mask_op_(x, save_mask, "relu_", _k.RELU, 0.0)


@torch.library.custom_op(f"{NAMESPACE}::relu_backward", mutates_args=())
def relu_backward(grad: Tensor, mask: Tensor) -> Tensor:
    """dx from the upstream gradient and the forward's mask."""
    return _mask_backward(grad, mask, "relu_backward", _k.RELU, 0.0)


# ---------------------------------------------------------------------------------------------------------------
# Leaky ReLU
# ---------------------------------------------------------------------------------------------------------------
@torch.library.custom_op(f"{NAMESPACE}::leaky_relu", mutates_args=())
def leaky_relu(x: Tensor, negative_slope: float, save_mask: bool) -> tuple[Tensor, Tensor]:
    """(y, mask) of Leaky ReLU; mask = packed int32 bits of x > 0, empty unless save_mask."""
    return _mask_op(x, save_mask, "leaky_relu", _k.LEAKY_RELU, negative_slope)


@torch.library.custom_op(f"{NAMESPACE}::leaky_relu_", mutates_args=("x",),
                         schema="(Tensor(a!) x, float negative_slope, bool save_mask) -> Tensor")
def leaky_relu_(x: Tensor, negative_slope: float, save_mask: bool) -> Tensor:
    """In-place Leaky ReLU on x; returns the mask."""
    return _mask_op_(x, save_mask, "leaky_relu_", _k.LEAKY_RELU, negative_slope)


@torch.library.custom_op(f"{NAMESPACE}::leaky_relu_backward", mutates_args=())
def leaky_relu_backward(grad: Tensor, mask: Tensor, negative_slope: float) -> Tensor:
    """dx from the upstream gradient, the mask and the slope."""
    return _mask_backward(grad, mask, "leaky_relu_backward", _k.LEAKY_RELU, negative_slope)


# ---------------------------------------------------------------------------------------------------------------
# PReLU
# ---------------------------------------------------------------------------------------------------------------
@torch.library.custom_op(f"{NAMESPACE}::prelu", mutates_args=())
def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """PReLU with a weight of 1 or C (= x.size(1)) elements."""
    _check_floating(x, "prelu", "x")
    geom = _channel_geometry(x, weight, "prelu", "weight")
    xc = x.contiguous()
    y = torch.empty(xc.shape, dtype=xc.dtype, device=xc.device)
    if xc.numel() > 0:
        _k.prelu_forward(xc, weight.contiguous(), y, geom)
    return y


@torch.library.custom_op(f"{NAMESPACE}::prelu_backward", mutates_args=())
def prelu_backward(grad: Tensor, x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """(dx, dweight) in one pass over x and grad, dweight reduced deterministically."""
    op = "prelu_backward"
    _check_floating(grad, op, "grad")
    _check_floating(x, op, "x")
    _check_same_device(x, grad, op, "x", "grad")
    if grad.shape != x.shape:
        raise RuntimeError(f"glo_kernels.{op}: argument 'grad' has shape {_sizes(grad)} but 'x' has shape "
                           f"{_sizes(x)}")
    if grad.dtype != x.dtype:
        raise RuntimeError(f"glo_kernels.{op}: argument 'grad' has dtype {_type_name(grad.dtype)} but 'x' has "
                           f"dtype {_type_name(x.dtype)}")
    geom = _channel_geometry(x, weight, op, "weight")
    xc = x.contiguous()
    dx = torch.empty(xc.shape, dtype=xc.dtype, device=xc.device)
    dw = torch.zeros(weight.shape, dtype=weight.dtype, device=weight.device)
    if xc.numel() > 0:
        _k.prelu_backward(grad.contiguous(), xc, weight.contiguous(), dx, dw, geom)
    return dx, dw
