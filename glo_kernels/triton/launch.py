"""The kernel calls of the Triton backend: Python implementations of the ``glo_triton_launch`` operators.

The operators ``torch.ops.glo_kernels_triton.*`` are defined in C++ (csrc/triton_ops.cpp) by the same glue as the CPU
and CUDA ones (checks, error texts, layout, allocation: csrc/include/glo/op_impls.h and softmax_impls.h), with a kernel
set that hands each kernel call to one of the launch operators below (schemas: GLO_TRITON_LAUNCH_OPS in
csrc/include/glo/op_list.h). The tensors arrive checked, dense, non-empty and on one device; each call launches the
kernels of glo_kernels/triton/kernels.py or softmax_kernels.py on that device: CUDA, or CPU under the Triton
interpreter (TRITON_INTERPRET=1).

Importing this module registers the implementations (needs the C++ extension, which defines the schemas, and triton).
"""
from __future__ import annotations

import torch

from . import kernels as _k
from . import softmax_kernels as _sk

NAMESPACE = "glo_triton_launch"

# The element functions the C++ factories name (Factory::name() in csrc/include/glo/op_impls.h) -> kernel ids (the
# unary kernels take the name itself: math.py's pair <name>_forward / <name>_backward).
_MASK_FNS = {"relu": _k.RELU, "leaky_relu": _k.LEAKY_RELU}
_CHANNEL_FNS = {"prelu": _k.PRELU, "pelu": _k.PELU}


def _fn(table: dict, fn: str, kind: str) -> int:
    try:
        return table[fn]
    except KeyError:
        raise RuntimeError(f"glo_kernels_triton: no Triton {kind} kernel for the element function {fn!r}") from None


def _scalar(scalars) -> float:
    return float(scalars[0]) if len(scalars) else 0.0


def _scalars2(scalars) -> tuple[float, float]:
    """The (up to) two scalar parameters of a unary element function, 0 for those it does not have."""
    assert len(scalars) <= 2, scalars
    return tuple(float(v) for v in scalars) + (0.0,) * (2 - len(scalars))


def mask_forward(x, y, mask, fn, scalars):
    _k.mask_forward(x, y, mask, _fn(_MASK_FNS, fn, "mask"), _scalar(scalars))


def mask_backward(grad, mask, dx, fn, scalars):
    _k.mask_backward(grad, mask, dx, _fn(_MASK_FNS, fn, "mask"), _scalar(scalars))


def unary_forward(x, y, fn, scalars):
    _k.unary_forward(x, y, fn, *_scalars2(scalars))  # (the element math: glo_kernels/triton/math.py's pair of fn)


def unary_backward(grad, saved, dx, fn, scalars):
    _k.unary_backward(grad, saved, dx, fn, *_scalars2(scalars))


def _channel_fn(fn: str) -> tuple[int, str | None]:
    """(kernel id, activation): bias_<act> is BiasAct with math.py's pair of <act> (GLO_BIAS_OPS of op_list.h)."""
    if fn.startswith("bias_"):
        return _k.BIAS_ACT, fn[len("bias_"):]
    return _fn(_CHANNEL_FNS, fn, "channel"), None


def channel_forward(x, params, y, outer, channels, inner, fn):
    op, act = _channel_fn(fn)
    _k.channel_forward(x, tuple(params), y, (outer, channels, inner), op, act)


def channel_backward(grad, x, params, dx, dparams, outer, channels, inner, fn):
    op, act = _channel_fn(fn)
    _k.channel_backward(grad, x, tuple(params), dx, tuple(dparams), (outer, channels, inner), op, act)


def maxout_forward(x, y, indices, outer, groups, pieces, inner):
    _k.maxout_forward(x, y, indices, (outer, groups, pieces, inner))


def maxout_backward(grad, indices, dx, outer, groups, pieces, inner):
    _k.maxout_backward(grad, indices, dx, (outer, groups, pieces, inner))


def gated_forward(a, b, y, fn):
    _k.gated_forward(a, b, y, fn)  # (the gate's activation: glo_kernels/triton/math.py's pair of fn)


def gated_backward(grad, a, b, da, db, fn):
    _k.gated_backward(grad, a, b, da, db, fn)


def softmax_forward(x, y, outer, size, inner, temperature, temperature_tensor, log):
    _sk.softmax_forward(x, y, (outer, size, inner), temperature, temperature_tensor, log)


def softmax_backward(grad, y, dx, outer, size, inner, temperature, temperature_tensor, log):
    _sk.softmax_backward(grad, y, dx, (outer, size, inner), temperature, temperature_tensor, log)


def _groups(offsets: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, int, int]:
    """The host offsets (0, g0, g0 + g1, ..., size) on the device, the number of groups and the longest group."""
    sizes = offsets[1:] - offsets[:-1]
    return offsets.to(device), sizes.numel(), int(sizes.max())


def grouped_softmax_forward(x, y, outer, size, inner, offsets, temperature, temperature_tensor):
    dev_offsets, n, longest = _groups(offsets, x.device)
    _sk.grouped_softmax_forward(x, y, (outer, size, inner), dev_offsets, n, temperature, temperature_tensor,
                                max_group=longest)


def grouped_softmax_backward(grad, y, dx, outer, size, inner, offsets, temperature, temperature_tensor):
    dev_offsets, n, longest = _groups(offsets, grad.device)
    _sk.grouped_softmax_backward(grad, y, dx, (outer, size, inner), dev_offsets, n, temperature, temperature_tensor,
                                 max_group=longest)


def distill_forward(s, t, stats, loss_none, rows, cols, temperature):
    _sk.distill_forward(s, t, stats, loss_none, rows, cols, temperature)


def distill_backward(grad, s, t, stats, ds, dt, rows, cols, temperature, none, scale):
    _sk.distill_backward(grad, s, t, stats, ds, dt, rows, cols, temperature, none, scale)


_LAUNCHERS = (mask_forward, mask_backward, unary_forward, unary_backward, channel_forward, channel_backward,
              maxout_forward, maxout_backward, gated_forward, gated_backward, softmax_forward, softmax_backward,
              grouped_softmax_forward, grouped_softmax_backward, distill_forward, distill_backward)

_lib = torch.library.Library(NAMESPACE, "IMPL")  # (kept alive: dropping it would unregister the kernels)
for _f in _LAUNCHERS:
    for _key in ("CPU", "CUDA"):
        _lib.impl(_f.__name__, _f, _key)
