"""Layout and geometry rules shared by the fake kernels, the autograd formulas, the reference and the tests.

A leaf module: it imports only torch. Each rule here is the Python twin of one in csrc/include/glo/ (named beside it),
so that fake (meta) kernels give outputs of exactly the shape, dtype and memory format the C++ kernels return.
"""
from __future__ import annotations

import torch

# A saved 1-bit mask: ceil(numel / 32) int32 words of bits, then MASK_PAD zero words (kMaskBits and kMaskPad of
# csrc/include/glo/activations.h: the length is never 0 or 1, so tracing with a dynamic dim needs no guard on it).
MASK_BITS = 32
MASK_PAD = 2


def mask_length(numel: int) -> int:
    """The number of int32 words of a saved mask for `numel` elements (mask_length of activations.h)."""
    return (numel + MASK_BITS - 1) // MASK_BITS + MASK_PAD


def mask_shape(x: torch.Tensor, save_mask: bool) -> tuple:
    """The shape of the mask a ReLU-like forward returns for x: [mask_length(numel)] when saved, else [0]."""
    return (mask_length(x.numel()) if save_mask else 0,)


def dense_format(x: torch.Tensor) -> torch.memory_format:
    """The memory format the element-wise ops (PReLU and PELU included) keep (dense_format of
    csrc/include/glo/op_impls.h, the same rule): channels_last (4-d) / channels_last_3d (5-d) when x is dense in it
    and not contiguous, else contiguous. Their outputs are in that format; a saved mask's bits follow its storage
    order."""
    if x.is_contiguous():
        return torch.contiguous_format
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def empty_like_dense(x: torch.Tensor) -> torch.Tensor:
    """An uninitialized tensor of x's shape, dtype and device in dense_format(x): an element-wise op's output."""
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=dense_format(x))


def maxout_format(t: torch.Tensor, dim: int) -> torch.memory_format:
    """The memory format Maxout keeps (maxout_format of csrc/include/glo/op_impls.h): dense_format(t) when it runs
    over the channels (dim 1) of a channels_last t, whose groups of pieces are then consecutive in storage; else
    contiguous. The backward reads it off the saved indices."""
    return dense_format(t) if t.dim() >= 1 and dim % t.dim() == 1 else torch.contiguous_format


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


def leading_rows(shape) -> int:
    """The number of rows of a tensor seen as [rows, last dim] (1 for 0-d and 1-d shapes)."""
    n = 1
    for s in list(shape)[:-1]:
        n *= s
    return n


def opmath_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute in: float64 for float64, float32 for the others (opmath)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def fused_dtype_pair(src: torch.dtype, dst: torch.dtype) -> bool:
    """Whether softmax / log_softmax with dtype=dst of a src input runs one fused kernel (reads src, writes dst; the
    backward reads dst, writes src): bfloat16 / float16 -> float32 (fused_dtype_pair of csrc/include/glo/
    softmax_impls.h). Other pairs cast x first, then run the op: torch's semantics, softmax(x.to(dtype))."""
    return dst == torch.float32 and src in (torch.bfloat16, torch.float16)
