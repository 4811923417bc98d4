"""The unary family: element-wise activations without learned parameters or arguments whose backward reads one saved
tensor, the input x or the output y. One UnarySpec per op; everything else of the op follows from it.

An op of this family is written in five places (docs/adding_an_op.md):
  - its math: the functor glo::<Functor><T> in csrc/include/glo/activations.h (forward(x), backward(dy, saved)), the
    pair <name>_forward / <name>_backward in glo_kernels/triton/math.py, and reference.<name>(x, inplace=False) in
    glo_kernels/reference.py (plain torch, the ground truth of the tests);
  - its line X(name, Functor, saved) in GLO_UNARY_OPS of csrc/include/glo/op_list.h (schemas, device kernels and C++
    autograd of <name>, <name>_ and <name>_backward in both operator namespaces);
  - its UnarySpec below, from which come: the functional glo_kernels.<name>(x, inplace=False), the module
    glo_kernels.nn.<Twin> (subclassing its torch.nn twin) and its replace_activations swap, the fake kernels and the
    double backward (glo_kernels/library.py), the entries of the op table of tests and benchmarks
    (glo_kernels/_registry.py), hence every generic test, benchmark and report row.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import torch


@dataclasses.dataclass(frozen=True)
class UnarySpec:
    """One op of the unary family."""

    name: str  # glo_kernels.<name>; torch.ops.<namespace>.<name>, <name>_, <name>_backward
    doc: str  # the docstring of glo_kernels.<name>
    twin: Callable  # PyTorch's function with the same conventions (tests compare; benchmarks time it as eager)
    torch_module: type  # its torch.nn twin: glo_kernels.nn.<torch_module.__name__> subclasses it
    saved: str  # "x" or "y": the tensor the backward reads (the third field of its GLO_UNARY_OPS line)
    # gg * the derivative of <name>_backward(grad, saved) with respect to saved: the double backward's second term
    # (the first, with respect to grad, is the backward op itself applied to gg: it is linear in grad). Plain torch.
    d_saved: Callable  # (gg, grad, saved) -> tensor
    # |x| where the math changes branch, saturates or underflows (float32 / float64 thresholds): the fuzz tests put
    # inputs on both sides of each, and of its negative.
    edges: tuple[float, ...] = ()
    ulps: float = 4.0  # values and gradients within this many roundings of the dtype of the float64 reference
    opinfo: str | None = None  # its OpInfo in torch.testing._internal.common_methods_invocations.op_db, if any
    # What is bit for bit torch's twin in every dtype (the same operations in the same order): "values", "grads"
    # (the input gradient, NaN inputs aside: torch's loops disagree there). tests/test_ops.py checks it.
    bitwise: tuple[str, ...] = ()
    # An op whose torch twin picks its formula by a string argument (F.gelu's approximate): each formula is a kernel
    # of its own (a line of GLO_UNARY_OPS, a spec here). The default one's spec names the argument, its default and
    # the spec of each value, choice = (argument, default, ((value, spec name), ...)); glo_kernels.<name> and the
    # module take the argument and run the spec it names. The other specs name the default one's in variant_of (they
    # get a function glo_kernels.<their name>(x, inplace=False) and a table entry, no module of their own) and the
    # twin's arguments that select them in twin_kwargs.
    choice: tuple | None = None
    variant_of: str | None = None
    twin_kwargs: tuple[tuple[str, object], ...] = ()

    @property
    def module_name(self) -> str:
        return self.torch_module.__name__


UNARY: tuple[UnarySpec, ...] = (
    UnarySpec(
        name="sigmoid",
        doc="""Logistic sigmoid ``1 / (1 + exp(-x))``, as ``torch.sigmoid``; the backward reads the saved output.

    ``inplace=True`` overwrites and returns ``x``, as ``torch.sigmoid_`` (any strides; a non-contiguous x is computed
    on a contiguous copy and written back): autograd stays right, since the backward needs only the output, which x
    then holds. As with torch's in-place ops, a leaf that requires grad (or a view of one) raises, and a later
    in-place change of the output is caught at backward.
    """,
        twin=torch.sigmoid,
        torch_module=torch.nn.Sigmoid,
        saved="y",
        d_saved=lambda gg, grad, y: gg * grad * (1 - 2 * y),  # dx = grad * (1 - y) * y
        edges=(8.0, 9.0, 16.6, 17.0, 36.7, 37.0, 88.72, 89.0, 103.9, 104.0, 709.0, 746.0),
        opinfo="sigmoid",
    ),
    UnarySpec(
        name="tanh",
        doc="""``tanh(x)``, as ``torch.tanh``; the backward reads the saved output. ``inplace=True`` overwrites and returns
    ``x``, as ``Tensor.tanh_`` (see :func:`sigmoid`).""",
        twin=torch.tanh,
        torch_module=torch.nn.Tanh,
        saved="y",
        d_saved=lambda gg, grad, y: -2 * gg * grad * y,  # dx = grad * (1 - y^2)
        edges=(0.55, 0.625, 8.7, 9.01, 9.1, 18.4, 19.1, 44.0),
        opinfo="tanh",
    ),
    UnarySpec(
        name="silu",
        doc="""SiLU (Swish), ``x * sigmoid(x)``, as ``torch.nn.functional.silu``; the backward reads the saved input.

    One fused pass each way: ``dx = dy * s * (1 + x * (1 - s))`` with ``s = sigmoid(x)``. ``inplace=True`` overwrites
    and returns ``x``, as ``F.silu(x, inplace=True)`` (under autograd the op runs on a copy of x, which its backward
    reads). Conventions are torch's (NaN propagates; the gradient at +-inf is NaN), with two differences in accuracy
    only: tiny results keep their precision where torch's ``x / (1 + exp(-x))`` flushes them to -0.0 (x below -88.7
    in float32), and ``1 - s`` is formed as ``sigmoid(-x)``, accurate for large x, where torch's subtraction loses
    about |x| ulps of the gradient.
    """,
        twin=torch.nn.functional.silu,
        torch_module=torch.nn.SiLU,
        saved="x",
        # d/dx of s (1 + x (1 - s)) = s (1 - s) (2 + x (1 - 2 s))
        d_saved=lambda gg, grad, x: gg * grad * (torch.sigmoid(x) * (1 - torch.sigmoid(x))
                                                 * (2 + x * (1 - 2 * torch.sigmoid(x)))),
        # the gradient's zero (1.2785) and the second derivative's (2.3994); sigmoid's saturation points
        edges=(1.2785, 2.3994, 8.0, 9.0, 16.6, 17.0, 36.7, 37.0, 88.72, 89.0, 103.9, 104.0, 709.0, 746.0),
        opinfo="nn.functional.silu",
    ),
    UnarySpec(
        name="mish",
        doc="""Mish, ``x * tanh(softplus(x))``, as ``torch.nn.functional.mish``; the backward reads the saved input.

    One fused pass each way, written with one exp: with ``e = exp(x)`` and ``w = e (e + 2)``,
    ``tanh(softplus(x)) = w / (w + 2)`` (1 from x = 20, where torch's softplus switches to x), stable for large |x|;
    ``dx = dy * (t + x * sigmoid(x) * (1 - t**2))``. ``inplace=True`` overwrites and returns ``x``, as
    ``F.mish(x, inplace=True)``. Conventions are torch's: NaN propagates, ``mish(-inf)`` is NaN (``-inf * 0``) and
    the gradient at +-inf is NaN.
    """,
        twin=torch.nn.functional.mish,
        torch_module=torch.nn.Mish,
        saved="x",
        # mish'' = s (1 - t^2) (2 + x (1 - s) - 2 x t s), t = tanh(softplus(x)), s = sigmoid(x)
        d_saved=lambda gg, grad, x: gg * grad * _mish_second(x),
        # the gradient's zero (-1.1924) and the second derivative's (-2.2564, 1.4906); the switch at 20; exp's
        # underflow (float32, float64)
        edges=(1.1924, 1.4906, 2.2564, 20.0, 87.3, 88.72, 103.9, 104.0, 708.4, 709.0, 745.0, 746.0),
        opinfo="nn.functional.mish",
    ),
    UnarySpec(
        name="hardsigmoid",
        doc="""Hard sigmoid, ``min(max(x + 3, 0), 6) / 6``, as ``torch.nn.functional.hardsigmoid``; the backward reads
    the saved input.

    Values are bitwise torch's (the same operations in the same order). The gradient is ``dy / 6`` for
    ``-3 < x < 3`` and 0 elsewhere, torch's values at the kinks +-3 and at NaN; ``1/6`` is rounded to the data's
    precision (torch multiplies by the float32 ``1/6`` also for float64 data, 3e-8 relative off). ``inplace=True``
    overwrites and returns ``x``, as ``F.hardsigmoid(x, inplace=True)``.
    """,
        twin=torch.nn.functional.hardsigmoid,
        torch_module=torch.nn.Hardsigmoid,
        saved="x",
        d_saved=lambda gg, grad, x: torch.zeros_like(gg),  # dx = dy / 6 (or 0): linear in dy, constant in x
        edges=(3.0,),
        ulps=2.0,  # (x + 3 or x * c) and the division by 6: two roundings
        opinfo="nn.functional.hardsigmoid",
        bitwise=("values",),  # (its float64 gradient is dy / 6 in float64: torch's is off by 3e-8)
    ),
    UnarySpec(
        name="hardswish",
        doc="""Hard swish, ``x * min(max(x + 3, 0), 6) / 6``, as ``torch.nn.functional.hardswish``; the backward reads
    the saved input.

    Values and gradients are bitwise torch's (the same operations in the same order). The gradient is 0 for
    ``x <= -3``, ``dy`` for ``x >= 3`` and ``dy * (x / 3 + 1/2)`` between: torch's values at the kinks. A NaN input
    gives a NaN gradient (torch's vectorized loop; its scalar loop passes ``dy`` there). ``inplace=True`` overwrites
    and returns ``x``, as ``F.hardswish(x, inplace=True)``.
    """,
        twin=torch.nn.functional.hardswish,
        torch_module=torch.nn.Hardswish,
        saved="x",
        # d/dx of dy * (x / 3 + 1/2) between the kinks (NaN included, as the backward's own select)
        d_saved=lambda gg, grad, x: torch.where((x <= -3) | (x >= 3), torch.zeros_like(gg), gg * grad / 3),
        edges=(3.0,),
        ulps=2.0,  # (x + 3 or x * c) and the division by 6: two roundings
        opinfo="nn.functional.hardswish",
        bitwise=("values", "grads"),
    ),
    UnarySpec(
        name="gelu",
        doc="""GELU, ``x * Phi(x)`` (Phi the standard normal CDF), as ``torch.nn.functional.gelu(x,
    approximate="none")``; ``approximate="tanh"`` runs :func:`gelu_tanh`. The backward reads the saved input.

    One fused pass each way: ``dx = dy * (Phi(x) + x * phi(x))``. Accurate for every x: float32 (and 16-bit data,
    computed in float32) without erf, from ``erfc(|x| / sqrt 2) = exp(-x^2 / 2) R(|x|)`` (a fitted rational form,
    docs/numerics/gelu_float32.py), within 4 ulp; torch's ``1 + erf(x / sqrt 2)`` cancels for x < 0 (its float32
    ``gelu(-6)`` is -0.0; the value is -5.9e-9). float64: ``x / 2 * erfc(-x / sqrt 2)``. Conventions: NaN propagates,
    ``gelu(-inf)`` is NaN (as torch), ``gelu(+inf)`` is +inf (torch's float32 kernel gives NaN), the gradient at +-inf
    is NaN. ``inplace=True`` (an extension: F.gelu has no in-place form) overwrites and returns ``x``.
    """,
        twin=torch.nn.functional.gelu,
        torch_module=torch.nn.GELU,
        saved="x",
        # gelu'' = phi(x) (2 - x^2)
        d_saved=lambda gg, grad, x: gg * grad * (torch.exp(-0.5 * x * x) * 0.3989422804014327 * (2 - x * x)),
        # the derivative's zero (0.7518), the branch points (0.35, 1.0607: a = 0.75), the second derivative's zero
        # (sqrt 2); where the value (14.2) and the derivative (14.4) underflow float32, and float64 (38.5)
        edges=(0.35, 0.7518, 1.0607, 1.4142, 14.23, 14.42, 38.5),
        opinfo="nn.functional.gelu",
        choice=("approximate", "none", (("none", "gelu"), ("tanh", "gelu_tanh"))),
    ),
    UnarySpec(
        name="gelu_tanh",
        doc="""GELU, tanh form: ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))``, as
    ``torch.nn.functional.gelu(x, approximate="tanh")`` (the same as ``glo_kernels.gelu(x, approximate="tanh")``); the
    backward reads the saved input.

    Computed as ``x * sigmoid(z)``, ``z = 2 sqrt(2/pi) (x + 0.044715 x^3)``, with the sigmoid from ``exp(-|z|)`` and
    z carried in twice the working precision, so that values and gradients are within a few ulp for every x (torch's
    ``1 + tanh`` cancels for x < 0: in float32 from x = -3 on). Conventions are torch's: NaN propagates,
    ``gelu_tanh(-inf)`` is NaN, ``gelu_tanh(+inf)`` is +inf, the gradient at +-inf is NaN. ``inplace=True`` (an
    extension) overwrites and returns ``x``.
    """,
        twin=functools.partial(torch.nn.functional.gelu, approximate="tanh"),
        torch_module=torch.nn.GELU,
        saved="x",
        d_saved=lambda gg, grad, x: gg * grad * _gelu_tanh_second(x),
        # the derivative's zero (0.7523); the clamp (12); where sigmoid(z) underflows float32 (10.6) and float64 (22)
        edges=(0.7523, 10.6, 12.0, 22.0, 24.0),
        variant_of="gelu",
        twin_kwargs=(("approximate", "tanh"),),
    ),
)


def _mish_second(x: torch.Tensor) -> torch.Tensor:
    """mish''(x) = s (1 - t^2) (2 + x (1 - s) - 2 x t s), t = tanh(softplus(x)), s = sigmoid(x) (plain torch)."""
    t = torch.tanh(torch.nn.functional.softplus(x))
    s = torch.sigmoid(x)
    return s * (1 - t * t) * (2 + x * (1 - s) - 2 * x * t * s)

def _gelu_tanh_second(x: torch.Tensor) -> torch.Tensor:
    """d^2/dx^2 of x sigmoid(z), z = k1 x + k3 x^3: s (1 - s) (2 z' + x ((1 - 2 s) z'^2 + 6 k3 x)) (plain torch)."""
    k1, k3 = 1.5957691216057308, 0.07135481627260025
    xc = x.clamp(-24.0, 24.0)  # (beyond, s (1 - s) is 0: as the kernels' clamp)
    z = k1 * xc + k3 * xc**3
    s, sn = torch.sigmoid(z), torch.sigmoid(-z)
    zp = k1 + 3 * k3 * xc * xc
    return s * sn * (2 * zp + xc * ((sn - s) * zp * zp + 6 * k3 * xc)) + x * 0


UNARY_BY_NAME = {spec.name: spec for spec in UNARY}


# An activation inside another op (a gated unit's gate, bias + activation): an op of this family, or "relu" (the
# gated units' ReGLU), as the pieces the double backward of that op needs.
def activation(name: str, ops) -> Callable:
    """act(a): the registered op of namespace `ops` (plain torch for ReLU)."""
    return torch.relu if name == "relu" else getattr(ops, name)


def activation_grad(name: str, ops) -> Callable:
    """(v, a) -> v * act'(a): the registered backward op (ReLU: torch's rule, 0 where a <= 0)."""
    if name == "relu":
        return lambda v, a: torch.where(a <= 0, torch.zeros((), dtype=v.dtype, device=v.device), v)
    return getattr(ops, name + "_backward")


def activation_second(name: str) -> Callable:
    """(gg, v, a) -> gg * v * act''(a) (plain torch): the derivative of activation_grad through a."""
    if name == "relu":
        return lambda gg, v, a: torch.zeros_like(gg)
    return UNARY_BY_NAME[name].d_saved
