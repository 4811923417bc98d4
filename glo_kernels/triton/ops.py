"""The operators of glo_kernels on Triton: ``torch.ops.glo_kernels_triton.*``.

Same schemas and semantics as the C++ operators ``torch.ops.glo_kernels.*`` (csrc/registration.cpp), with the glue
of csrc/include/glo/op_impls.h written once below: argument checks with the same error texts, inputs made contiguous
(the element-wise ops keep a channels_last input's format: dense_format), outputs freshly allocated in that format
(never aliasing an input; the mask has 0 elements unless save_mask), empty
tensors handled without a launch, in-place operators on a non-contiguous x computed on a contiguous copy and copied
back. The kernels (glo_kernels/triton/kernels.py) run on the tensors' device: CUDA, or CPU under the Triton
interpreter (TRITON_INTERPRET=1).

Only the device implementations are defined here; autograd and fake (meta) kernels of both namespaces are registered
by name in glo_kernels/ops.py.
"""

from __future__ import annotations

import torch
from torch import Tensor

from glo_kernels._layout import dense_format, empty_like_dense, maxout_format
from glo_kernels.ops import scalar_type_name

from . import kernels as _k

NAMESPACE = "glo_kernels_triton"

_MASK_BITS = 32
_MASK_PAD = 2  # zero words after the bits (kMaskPad of csrc/include/glo/activations.h)

_SUPPORTED = (torch.float64, torch.float32, torch.bfloat16, torch.float16)
_type_name = scalar_type_name  # (the C++ error texts' names of dtypes)


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
    """The length of a saved mask: ceil(numel / 32) words of bits, then _MASK_PAD zero words."""
    return (numel + _MASK_BITS - 1) // _MASK_BITS + _MASK_PAD


def _check_mask(grad: Tensor, mask: Tensor, op: str) -> None:
    _check_same_device(grad, mask, op, "grad", "mask")
    words = _mask_words(grad.numel())
    if not (mask.dtype == torch.int32 and mask.dim() == 1 and mask.numel() == words):
        raise RuntimeError(f"glo_kernels.{op}: argument 'mask' must be the int32 mask of {words} words saved by the "
                           f"forward for {grad.numel()} elements; got {_type_name(mask.dtype)} of shape "
                           f"{_sizes(mask)} (was the forward called with save_mask=False?)")


def _new_mask(x: Tensor, save: bool) -> Tensor:
    """Empty when not saved; else filled by the kernel (bits and padding); an empty x launches nothing: zeros."""
    if not save:
        return torch.empty((0,), dtype=torch.int32, device=x.device)
    alloc = torch.zeros if x.numel() == 0 else torch.empty
    return alloc((_mask_words(x.numel()),), dtype=torch.int32, device=x.device)


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
    xc = x.contiguous(memory_format=dense_format(x))  # (channels_last kept: dense_format in glo_kernels/ops.py)
    y = empty_like_dense(xc)
    mask = _new_mask(xc, save_mask)
    if xc.numel() > 0:
        _k.mask_forward(xc, y, mask, kind, slope)
    return y, mask


def _mask_op_(x: Tensor, save_mask: bool, op: str, kind: int, slope: float) -> Tensor:
    _check_floating(x, op, "x")
    mask = _new_mask(x, save_mask)
    if x.numel() == 0:
        return mask
    if x.is_contiguous(memory_format=dense_format(x)):
        _k.mask_forward(x, x, mask, kind, slope)
    else:
        tmp = x.contiguous()
        _k.mask_forward(tmp, tmp, mask, kind, slope)
        x.copy_(tmp)
    return mask


def _mask_backward(grad: Tensor, mask: Tensor, op: str, kind: int, slope: float) -> Tensor:
    _check_floating(grad, op, "grad")
    _check_mask(grad, mask, op)
    gc = grad.contiguous(memory_format=dense_format(grad))  # (the mask's bit order)
    dx = empty_like_dense(gc)
    if gc.numel() > 0:
        _k.mask_backward(gc, mask.contiguous(), dx, kind, slope)
    return dx


def _unary_op(x: Tensor, op: str, kind: int, alpha: float = 0.0) -> Tensor:
    _check_floating(x, op, "x")
    xc = x.contiguous(memory_format=dense_format(x))
    y = empty_like_dense(xc)
    if xc.numel() > 0:
        _k.unary_forward(xc, y, kind, alpha)
    return y


def _unary_op_(x: Tensor, op: str, kind: int, alpha: float = 0.0) -> None:
    _check_floating(x, op, "x")
    if x.numel() == 0:
        return
    if x.is_contiguous(memory_format=dense_format(x)):
        _k.unary_forward(x, x, kind, alpha)
    else:
        tmp = x.contiguous()
        _k.unary_forward(tmp, tmp, kind, alpha)
        x.copy_(tmp)


def _unary_backward(grad: Tensor, saved: Tensor, op: str, saved_name: str, kind: int, alpha: float = 0.0) -> Tensor:
    _check_floating(grad, op, "grad")
    _check_same_device(grad, saved, op, "grad", saved_name)
    if saved.shape != grad.shape or saved.dtype != grad.dtype:
        raise RuntimeError(f"glo_kernels.{op}: argument '{saved_name}' ({_type_name(saved.dtype)} {_sizes(saved)}) "
                           f"must have the shape and dtype of 'grad' ({_type_name(grad.dtype)} {_sizes(grad)})")
    fmt = dense_format(saved)  # grad follows the saved tensor's format
    gc = grad.contiguous(memory_format=fmt)
    dx = empty_like_dense(saved)
    if gc.numel() > 0:
        _k.unary_backward(gc, saved.contiguous(memory_format=fmt), dx, kind, alpha)
    return dx


def _cpp_double(v: float) -> str:
    """A double as C++'s default ostream << prints it (6 significant digits, %g): -0.333333, -1e-07, nan, -inf."""
    return f"{v:g}"


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
# ELU
# ---------------------------------------------------------------------------------------------------------------
@torch.library.custom_op(f"{NAMESPACE}::elu", mutates_args=())
def elu(x: Tensor, alpha: float) -> Tensor:
    """ELU: alpha * expm1(x) for x < 0, x otherwise."""
    return _unary_op(x, "elu", _k.ELU, alpha)


@torch.library.custom_op(f"{NAMESPACE}::elu_", mutates_args=("x",), schema="(Tensor(a!) x, float alpha) -> ()")
def elu_(x: Tensor, alpha: float) -> None:
    """In-place ELU (its backward then reads the output: elu_backward(..., is_result=True))."""
    _unary_op_(x, "elu_", _k.ELU, alpha)


@torch.library.custom_op(f"{NAMESPACE}::elu_backward", mutates_args=())
def elu_backward(grad: Tensor, saved: Tensor, alpha: float, is_result: bool) -> Tensor:
    """dx from the upstream gradient and the saved input (is_result=False) or output (is_result=True)."""
    if is_result:
        if not alpha >= 0:
            raise RuntimeError("glo_kernels.elu_backward: argument 'alpha' must be >= 0 when the backward is computed "
                               f"from the output (is_result=True), got {_cpp_double(alpha)}")
        return _unary_backward(grad, saved, "elu_backward", "saved", _k.ELU_FROM_RESULT, alpha)
    return _unary_backward(grad, saved, "elu_backward", "saved", _k.ELU, alpha)


# ---------------------------------------------------------------------------------------------------------------
# Sigmoid, tanh
# ---------------------------------------------------------------------------------------------------------------
@torch.library.custom_op(f"{NAMESPACE}::sigmoid", mutates_args=())
def sigmoid(x: Tensor) -> Tensor:
    """Logistic sigmoid; its backward reads the output y."""
    return _unary_op(x, "sigmoid", _k.SIGMOID)


@torch.library.custom_op(f"{NAMESPACE}::sigmoid_", mutates_args=("x",), schema="(Tensor(a!) x) -> ()")
def sigmoid_(x: Tensor) -> None:
    """In-place sigmoid (its backward then reads x, which holds the output: sigmoid_backward(grad, x))."""
    _unary_op_(x, "sigmoid_", _k.SIGMOID)


@torch.library.custom_op(f"{NAMESPACE}::sigmoid_backward", mutates_args=())
def sigmoid_backward(grad: Tensor, y: Tensor) -> Tensor:
    """dx = grad * (1 - y) * y."""
    return _unary_backward(grad, y, "sigmoid_backward", "y", _k.SIGMOID)


@torch.library.custom_op(f"{NAMESPACE}::tanh", mutates_args=())
def tanh(x: Tensor) -> Tensor:
    """tanh; its backward reads the output y."""
    return _unary_op(x, "tanh", _k.TANH)


@torch.library.custom_op(f"{NAMESPACE}::tanh_", mutates_args=("x",), schema="(Tensor(a!) x) -> ()")
def tanh_(x: Tensor) -> None:
    """In-place tanh (backward: tanh_backward(grad, x))."""
    _unary_op_(x, "tanh_", _k.TANH)


@torch.library.custom_op(f"{NAMESPACE}::tanh_backward", mutates_args=())
def tanh_backward(grad: Tensor, y: Tensor) -> Tensor:
    """dx = grad * (1 - y * y)."""
    return _unary_backward(grad, y, "tanh_backward", "y", _k.TANH)


# ---------------------------------------------------------------------------------------------------------------
# Ops with learned per-channel parameters (PReLU: weight; PELU: a, b). All parameters follow
# torch.nn.functional.prelu's rule (1 element, or one per channel of dim 1) and have the same number of elements.
# ---------------------------------------------------------------------------------------------------------------
def _param_geometry(x: Tensor, params: tuple, names: tuple, op: str) -> tuple[int, int, int]:
    geom = _channel_geometry(x, params[0], op, names[0])
    for k in range(1, len(params)):
        _channel_geometry(x, params[k], op, names[k])
        if params[k].numel() != params[0].numel():
            raise RuntimeError(f"glo_kernels.{op}: argument '{names[k]}' has {params[k].numel()} elements but "
                               f"'{names[0]}' has {params[0].numel()}; they must match")
    return geom


def _storage_geometry(x: Tensor, geom: tuple[int, int, int], fmt: torch.memory_format) -> tuple[int, int, int]:
    """The geometry of x's storage in format fmt (op_impls.h storage_geometry): channels_last stores
    [outer, spatial..., channels], i.e. (numel / C, C, 1); a shared parameter sees one run in any format."""
    if fmt == torch.contiguous_format or geom[1] == 1:
        return geom
    return x.numel() // geom[1], geom[1], 1


def _channel_op(x: Tensor, params: tuple, names: tuple, op: str, kind: int) -> Tensor:
    _check_floating(x, op, "x")
    fmt = dense_format(x)  # (channels_last kept, as by the element-wise ops)
    geom = _storage_geometry(x, _param_geometry(x, params, names, op), fmt)
    xc = x.contiguous(memory_format=fmt)
    y = torch.empty(xc.shape, dtype=xc.dtype, device=xc.device, memory_format=fmt)
    if xc.numel() > 0:
        _k.channel_forward(xc, tuple(p.contiguous() for p in params), y, geom, kind)
    return y


def _channel_backward(grad: Tensor, x: Tensor, params: tuple, names: tuple, op: str, kind: int) -> tuple:
    """(dx, dparam...) in one pass over x and grad."""
    _check_floating(grad, op, "grad")
    _check_floating(x, op, "x")
    _check_same_device(x, grad, op, "x", "grad")
    if grad.shape != x.shape:
        raise RuntimeError(f"glo_kernels.{op}: argument 'grad' has shape {_sizes(grad)} but 'x' has shape "
                           f"{_sizes(x)}")
    if grad.dtype != x.dtype:
        raise RuntimeError(f"glo_kernels.{op}: argument 'grad' has dtype {_type_name(grad.dtype)} but 'x' has "
                           f"dtype {_type_name(x.dtype)}")
    fmt = dense_format(x)  # grad follows x's format (one copy if not)
    geom = _storage_geometry(x, _param_geometry(x, params, names, op), fmt)
    xc = x.contiguous(memory_format=fmt)
    dx = torch.empty(xc.shape, dtype=xc.dtype, device=xc.device, memory_format=fmt)
    dparams = tuple(torch.zeros(p.shape, dtype=p.dtype, device=p.device) for p in params)
    if xc.numel() > 0:
        _k.channel_backward(grad.contiguous(memory_format=fmt), xc, tuple(p.contiguous() for p in params), dx, dparams, geom, kind)
    return (dx,) + dparams


@torch.library.custom_op(f"{NAMESPACE}::prelu", mutates_args=())
def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """PReLU with a weight of 1 or C (= x.size(1)) elements."""
    return _channel_op(x, (weight,), ("weight",), "prelu", _k.PRELU)


@torch.library.custom_op(f"{NAMESPACE}::prelu_backward", mutates_args=())
def prelu_backward(grad: Tensor, x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """(dx, dweight) in one pass over x and grad, dweight reduced deterministically."""
    return _channel_backward(grad, x, (weight,), ("weight",), "prelu_backward", _k.PRELU)


@torch.library.custom_op(f"{NAMESPACE}::pelu", mutates_args=())
def pelu(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """PELU with parameters a, b (1 or C elements each, the same number)."""
    return _channel_op(x, (a, b), ("a", "b"), "pelu", _k.PELU)


@torch.library.custom_op(f"{NAMESPACE}::pelu_backward", mutates_args=())
def pelu_backward(grad: Tensor, x: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, da, db) in one pass over x and grad, da and db reduced deterministically."""
    return _channel_backward(grad, x, (a, b), ("a", "b"), "pelu_backward", _k.PELU)


# ---------------------------------------------------------------------------------------------------------------
# Maxout: max over groups of `pieces` consecutive elements along `dim`; uint8 index of the winner saved.
# ---------------------------------------------------------------------------------------------------------------
def _maxout_geometry(x_like: Tensor, size_of_dim: int, pieces: int, dim: int, op: str) -> tuple[int, int, int, int]:
    """(outer, groups, pieces, inner) of x seen as [outer, groups * pieces, inner] around dim."""
    if not (1 <= pieces <= 256):
        raise RuntimeError(f"glo_kernels.{op}: argument 'pieces' must be in [1, 256], got {pieces}")
    if size_of_dim % pieces != 0:
        raise RuntimeError(f"glo_kernels.{op}: argument 'pieces' ({pieces}) must divide the size of dim {dim} "
                           f"({size_of_dim})")
    outer = inner = 1
    for d in range(dim):
        outer *= x_like.size(d)
    for d in range(dim + 1, x_like.dim()):
        inner *= x_like.size(d)
    return outer, size_of_dim // pieces, pieces, inner


def _maxout_storage_geometry(geom: tuple[int, int, int, int], fmt: torch.memory_format) -> tuple[int, int, int, int]:
    """The geometry of the storage in format fmt (op_impls.h maxout_storage_geometry): channels_last puts the channels
    innermost, (outer * inner, groups, pieces, 1)."""
    if fmt == torch.contiguous_format:
        return geom
    outer, groups, pieces, inner = geom
    return outer * inner, groups, pieces, 1


def _wrap_dim(dim: int, t: Tensor, op: str) -> int:
    nd = max(t.dim(), 1)
    if t.dim() < 1:
        raise RuntimeError(f"glo_kernels.{op}: argument 'x' must have at least one dimension")
    if not (-nd <= dim < nd):
        raise RuntimeError(f"glo_kernels.{op}: argument 'dim' ({dim}) is out of range for a {t.dim()}-d tensor")
    return dim + nd if dim < 0 else dim


@torch.library.custom_op(f"{NAMESPACE}::maxout", mutates_args=(),
                         schema="(Tensor x, int pieces, int dim, bool save_indices) -> (Tensor, Tensor)")
def maxout(x: Tensor, pieces: int, dim: int, save_indices: bool) -> tuple[Tensor, Tensor]:
    """Maxout over groups of `pieces` along `dim`: (y, uint8 index of each group's winner, empty unless
    save_indices)."""
    _check_floating(x, "maxout", "x")
    dim = _wrap_dim(dim, x, "maxout")
    fmt = maxout_format(x, dim)  # (channels_last kept over the channels: op_impls.h maxout_format)
    geom = _maxout_storage_geometry(_maxout_geometry(x, x.size(dim), pieces, dim, "maxout"), fmt)
    xc = x.contiguous(memory_format=fmt)
    out_sizes = list(x.shape)
    out_sizes[dim] //= pieces
    y = torch.empty(out_sizes, dtype=xc.dtype, device=xc.device, memory_format=fmt)
    idx = (torch.empty(out_sizes, dtype=torch.uint8, device=xc.device, memory_format=fmt) if save_indices
           else torch.empty([0], dtype=torch.uint8, device=xc.device))
    if y.numel() > 0:
        _k.maxout_forward(xc, y, idx, geom)
    return y, idx


@torch.library.custom_op(f"{NAMESPACE}::maxout_backward", mutates_args=(),
                         schema="(Tensor grad, Tensor indices, int pieces, int dim) -> Tensor")
def maxout_backward(grad: Tensor, indices: Tensor, pieces: int, dim: int) -> Tensor:
    """dx: the upstream gradient routed to each group's winner, 0 at the other pieces."""
    op = "maxout_backward"
    _check_floating(grad, op, "grad")
    _check_same_device(grad, indices, op, "grad", "indices")
    dim = _wrap_dim(dim, grad, op)
    if not (indices.dtype == torch.uint8 and indices.shape == grad.shape):
        raise RuntimeError(f"glo_kernels.{op}: argument 'indices' must be the uint8 indices saved by the forward, of "
                           f"the shape of 'grad' {_sizes(grad)}; got {_type_name(indices.dtype)} of shape "
                           f"{_sizes(indices)} (was the forward called with save_indices=False?)")
    if not (1 <= pieces <= 256):
        raise RuntimeError(f"glo_kernels.{op}: argument 'pieces' must be in [1, 256], got {pieces}")
    fmt = maxout_format(indices, dim)  # the forward's storage order
    geom = _maxout_storage_geometry(_maxout_geometry(grad, grad.size(dim) * pieces, pieces, dim, op), fmt)
    in_sizes = list(grad.shape)
    in_sizes[dim] *= pieces
    dx = torch.empty(in_sizes, dtype=grad.dtype, device=grad.device, memory_format=fmt)
    if dx.numel() > 0:
        _k.maxout_backward(grad.contiguous(memory_format=fmt), indices.contiguous(memory_format=fmt), dx, geom)
    return dx


from . import softmax_ops  # noqa: E402,F401  (softmax family)
